"""Plane polygons of the park model (building footprints, device yards): area, centroid, simplicity check and
triangulation (pure). Vertices are ``(x east, y north)`` in park metres, in order, not closed by repeating the
first.

References
----------
.. [1] B. Braden, "The Surveyor's Area Formula", *The College Mathematics Journal* 17(4), 326-337 (1986)
   (shoelace area and centroid).
.. [2] mapbox/earcut (ear clipping with hole elimination and z-order hashing), via the ``mapbox_earcut`` Python
   binding: a kept library rather than our own ear clipping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mapbox_earcut
import numpy as np

Vertex = tuple[float, float]


def cross(o: Sequence[float], a: Sequence[float], b: Sequence[float]) -> float:
    """z of ``(a − o) × (b − o)``: > 0 when ``o, a, b`` turn counter-clockwise, 0 when collinear [m2]."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def signed_area_m2(polygon_m: Sequence[Vertex] | np.ndarray) -> float:
    """Shoelace area [m2], positive when the vertices run counter-clockwise (seen from above) [1]_."""
    p = np.asarray(polygon_m, dtype="float64").reshape(-1, 2)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def area_m2(polygon_m: Sequence[Vertex] | np.ndarray) -> float:
    """Area of a polygon whatever its orientation [m2]; a flat roof has its footprint's area."""
    return abs(signed_area_m2(polygon_m))


def centroid_m(polygon_m: Sequence[Vertex] | np.ndarray) -> tuple[float, float]:
    """Area centroid of a simple polygon [m] [1]_."""
    p = np.asarray(polygon_m, dtype="float64")
    x, y, x1, y1 = p[:, 0], p[:, 1], np.roll(p[:, 0], -1), np.roll(p[:, 1], -1)
    c = x * y1 - x1 * y
    a = c.sum() / 2.0
    return float(((x + x1) * c).sum() / (6 * a)), float(((y + y1) * c).sum() / (6 * a))


def segments_cross(p1: Vertex, p2: Vertex, q1: Vertex, q2: Vertex) -> bool:
    """Whether closed segments p1-p2 and q1-q2 share a point (orientation test, collinear overlaps included)."""
    d1, d2, d3, d4 = cross(q1, q2, p1), cross(q1, q2, p2), cross(p1, p2, q1), cross(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0) and ((d3 > 0) != (d4 > 0) and d3 != 0 and d4 != 0):
        return True

    def on(a, b, c, d) -> bool:      # c on segment a-b, given collinear (d == 0)
        return d == 0 and min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])
    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def simple_polygon(vertices: list[Vertex]) -> list[Vertex]:
    """Check a footprint: finite vertices, not closed by repeating the first, an area, no edge crossing another.

    Raises
    ------
    ValueError
        naming the problem (a repeated or non-finite vertex, zero area, two crossing edges).
    """
    pts = [(float(x), float(y)) for x, y in vertices]
    if not all(math.isfinite(c) for p in pts for c in p):
        raise ValueError(f"footprint {vertices} has a vertex that is not a finite number")
    n = len(pts)
    for i in range(n):
        if pts[i] == pts[(i + 1) % n]:
            raise ValueError(f"footprint repeats vertex {pts[i]} (do not close the ring by repeating the first)")
    if signed_area_m2(pts) == 0:
        raise ValueError(f"footprint {vertices} has no area")
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:          # adjacent through the closing edge
                continue
            if segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                raise ValueError(f"footprint edges {pts[i]}-{pts[(i + 1) % n]} and {pts[j]}-{pts[(j + 1) % n]} cross "
                                 "(a footprint must be a simple polygon)")
    return vertices


def triangulate(polygon_m: Sequence[Vertex] | np.ndarray) -> np.ndarray:
    """Triangles ``(m, 3)`` of vertex indices covering a simple polygon, each counter-clockwise, none of zero area
    (earcut [2]_; a vertex in the middle of an edge makes no triangle).

    Raises
    ------
    ValueError
        when the polygon cannot be covered (it crosses itself).
    """
    p = np.asarray(polygon_m, dtype="float64").reshape(-1, 2)
    flat = mapbox_earcut.triangulate_float64(p, np.array([len(p)], dtype=np.uint32))
    tris = np.asarray(flat, dtype=np.int64).reshape(-1, 3)
    turn = np.array([cross(p[a], p[b], p[c]) for a, b, c in tris]) if len(tris) else np.zeros(0)
    tris = np.where((turn < 0)[:, None], tris[:, [0, 2, 1]], tris)[turn != 0]
    covered = sum(abs(t) for t in turn) / 2.0
    if len(tris) == 0 or not math.isclose(covered, area_m2(p), rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"polygon {p.tolist()} cannot be triangulated (does it cross itself?)")
    return tris
