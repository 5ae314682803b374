"""The 3-D twin's geometry, computed from the park model (pure: numpy and pandas, no pythreejs, no I/O but the
drawing rules of ``data/twin/scene.yaml``).

Coordinates
-----------
Everything here is in park metres: **x east, y north, z up**, origin the 110 kV substation (``docs/glossary.md``).
three.js is y-up; :func:`to_three` is the one place that maps a park point to three.js axes,
``(X, Y, Z) = (x, z, -y)``: a rotation of -90 degrees about the x axis, so handedness, triangle winding and
normals carry over unchanged (a roof seen from above, counter-clockwise in the park, faces three.js's +Y).

What is drawn (nothing is placed by hand in code; every position comes from the park model and the rules)
--------------------------------------------------------------------------------------------------------
* a building: its footprint extruded to ``height_m`` (:func:`prism`); the roof is the surface coloured by the
  chosen metric, the walls are shaded;
* a PV array: rows of tilted panels facing its ``azimuth_deg`` at ``tilt_deg`` (:func:`pv_rows`), on the roof of
  its ``building`` or over its own ``footprint_m`` (a ground field);
* a storage: ``ceil(capacity_kwh / kwh_per_container)`` containers inside its ``footprint_m``
  (:func:`containers`); without a footprint, in a row ``south_of_enterprise_m`` south of its enterprise's
  buildings, from their west end;
* the substation (the grid meter's ``footprint_m``): a pad, ``ceil(rated_kva / transformer_kva)`` transformers
  and the incoming-line gantry (:func:`substation`);
* the energy-flow nodes (:func:`node_positions`) and the routes between them (:func:`route_path`), drawn
  ``clearance_m`` above the tallest building so no roof hides them.

Polygons (area, centroid, triangulation by earcut) are :mod:`anning_lib.park.polygon`'s; footprints are simple
polygons, possibly concave (checked when the park model loads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.path import Path as MplPath

from anning_lib.park.polygon import centroid_m, signed_area_m2, triangulate
from anning_lib.park.schema import Device, Park

NODE_COLUMNS = ["kind", "enterprise_id", "device_id", "x_m", "y_m", "z_m"]


@dataclass(frozen=True)
class Mesh:
    """Triangles as consecutive vertex triples (not indexed, so every face has its own normal).

    ``positions_m`` (3k, 3) park metres; ``normals`` (3k, 3) unit vectors, one per vertex (flat shading)."""

    positions_m: np.ndarray
    normals: np.ndarray

    @property
    def n_triangles(self) -> int:
        return len(self.positions_m) // 3


@dataclass(frozen=True)
class Part:
    """One pickable thing of the scene: a building or a piece of equipment.

    ``key`` is ``<enterprise>/<building>`` for a building and the device id for equipment; ``top`` is the mesh
    coloured by the metric (a roof) or the equipment itself, ``sides`` the walls (None for equipment);
    ``outline_m`` (k, 2, 3) the edges drawn when an alarm is active; ``top_m`` its height [m]."""

    key: str
    kind: str
    enterprise_id: str | None
    device_id: str | None
    building_id: str | None
    name: str
    footprint_m: np.ndarray
    top_m: float
    top: Mesh
    sides: Mesh | None
    outline_m: np.ndarray


# ------------------------------------------------------------------------------------------------ basics
def to_three(xyz_m) -> np.ndarray:
    """Park ``(x east, y north, z up)`` -> three.js ``(X, Y up, Z)`` = ``(x, z, -y)``, for points and normals."""
    a = np.asarray(xyz_m, dtype="float64")
    return np.stack([a[..., 0], a[..., 2], -a[..., 1]], axis=-1)


@lru_cache(maxsize=4)
def load_rules(path: Path | None = None) -> dict:
    """The drawing rules (``data/twin/scene.yaml``)."""
    from anning_lib.config import get_settings

    path = Path(path or get_settings().data_dir / "twin" / "scene.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _mesh(triangles_m: np.ndarray) -> Mesh:
    """A :class:`Mesh` of triangles ``(m, 3, 3)`` with their face normals (right-hand rule)."""
    t = np.asarray(triangles_m, dtype="float64").reshape(-1, 3, 3)
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return Mesh(t.reshape(-1, 3), np.repeat(n, 3, axis=0))


def merge(meshes) -> Mesh:
    """One mesh of several (None entries skipped)."""
    ms = [m for m in meshes if m is not None and m.n_triangles]
    if not ms:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3)))
    return Mesh(np.vstack([m.positions_m for m in ms]), np.vstack([m.normals for m in ms]))


# ------------------------------------------------------------------------------------------------ solids
def prism(footprint_m, height_m: float, base_m: float = 0.0) -> tuple[Mesh, Mesh, np.ndarray]:
    """A footprint extruded from ``base_m`` to ``base_m + height_m`` [m].

    Returns
    -------
    (roof, walls, outline)
        roof: ``n - 2`` triangles at the top, facing up; walls: two triangles per edge, facing out;
        outline ``(3n, 2, 3)``: the top, bottom and vertical edges as segments.
    """
    p = np.asarray(footprint_m, dtype="float64")
    if signed_area_m2(p) < 0:
        p = p[::-1]
    z0, z1 = base_m, base_m + height_m
    top = np.column_stack([p, np.full(len(p), z1)])
    bottom = np.column_stack([p, np.full(len(p), z0)])
    roof = _mesh(top[triangulate(p)])
    nxt = np.roll(np.arange(len(p)), -1)
    walls = np.concatenate([np.stack([bottom, bottom[nxt], top[nxt]], axis=1),
                            np.stack([bottom, top[nxt], top], axis=1)])
    outline = np.concatenate([np.stack([top, top[nxt]], axis=1), np.stack([bottom, bottom[nxt]], axis=1),
                              np.stack([bottom, top], axis=1)])
    return roof, _mesh(walls), outline


def box(centre_m, size_m, yaw_deg: float = 0.0) -> Mesh:
    """A box (roof and walls; its floor is never seen): ``centre_m`` (x, y) of its base at ``centre_m[2]``,
    ``size_m`` (length along the yaw direction, width, height) [m]; yaw counter-clockwise from east [deg]."""
    cx, cy, z0 = centre_m
    length, width, height = size_m
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    local = np.array([[-length, -width], [length, -width], [length, width], [-length, width]]) / 2
    foot = local @ np.array([[c, s], [-s, c]]) + [cx, cy]
    roof, walls, _ = prism(foot, height, z0)
    return merge([roof, walls])


def _bbox(polygon_m) -> tuple[float, float, float, float]:
    p = np.asarray(polygon_m, dtype="float64")
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def _span_at(polygon_m: np.ndarray, v: float) -> tuple[float, float] | None:
    """The u-interval where the line ``v = const`` crosses a polygon given in (u, v) (outermost crossings)."""
    p, q = polygon_m, np.roll(polygon_m, -1, axis=0)
    us = [p[i, 0] + (v - p[i, 1]) * (q[i, 0] - p[i, 0]) / (q[i, 1] - p[i, 1])
          for i in range(len(p)) if min(p[i, 1], q[i, 1]) <= v <= max(p[i, 1], q[i, 1]) and q[i, 1] != p[i, 1]]
    return (min(us), max(us)) if us else None


def pv_rows(footprint_m, tilt_deg: float, azimuth_deg: float, base_m: float, rule: dict) -> Mesh:
    """Rows of panels over a footprint, facing ``azimuth_deg`` (180 = south) tilted ``tilt_deg`` [deg].

    A row is ``row_depth_m`` deep along its slope; rows repeat every ``row_depth_m / ground_coverage_ratio``
    across the facing direction, ``inset_m`` inside the footprint (exact for convex footprints; a row across a
    concave notch spans it). The lower edge is ``low_edge_m`` above ``base_m``. Each row is two triangles facing
    up and towards the azimuth.
    """
    az, tilt = math.radians(azimuth_deg), math.radians(tilt_deg)
    f = np.array([math.sin(az), math.cos(az)])            # horizontal facing direction
    r = np.array([-f[1], f[0]])                            # along the row (90 deg counter-clockwise of f)
    uv = np.asarray(footprint_m, dtype="float64") @ np.column_stack([r, f])
    depth, inset = rule["row_depth_m"], rule["inset_m"]
    run, rise = depth * math.cos(tilt), depth * math.sin(tilt)
    pitch = depth / rule["ground_coverage_ratio"]
    v_low, v_min = uv[:, 1].max() - inset, uv[:, 1].min() + inset
    quads = []
    while v_low - run >= v_min:
        spans = [_span_at(uv, v_low), _span_at(uv, v_low - run)]
        if all(spans):
            u0, u1 = max(s[0] for s in spans) + inset, min(s[1] for s in spans) - inset
            if u1 > u0:
                quads.append((u0, u1, v_low))
        v_low -= pitch
    z0 = base_m + rule["low_edge_m"]
    tris = []
    for u0, u1, v in quads:
        lo0, lo1 = u0 * r + v * f, u1 * r + v * f
        hi0, hi1 = lo0 - run * f, lo1 - run * f
        a, b = np.append(lo0, z0), np.append(lo1, z0)
        c, d = np.append(hi1, z0 + rise), np.append(hi0, z0 + rise)
        tris += [(a, b, c), (a, c, d)]              # (b - a) x (c - a) has z > 0: the row faces up
    return _mesh(np.array(tris)) if tris else merge([])


def container_slots(footprint_m, n: int, rule: dict) -> list[tuple[float, float, float]]:
    """Where ``n`` containers stand in a footprint: ``(x, y, yaw_deg)`` of each, in rows along the longer side of
    its bounding box, ``gap_m`` apart and from the edges; only slots wholly inside the footprint, at most ``n``."""
    x0, y0, x1, y1 = _bbox(footprint_m)
    length, width, gap = rule["length_m"], rule["width_m"], rule["gap_m"]
    along_x = (x1 - x0) >= (y1 - y0)
    a0, a1, b0, b1 = (x0, x1, y0, y1) if along_x else (y0, y1, x0, x1)
    inside = MplPath(np.asarray(footprint_m, dtype="float64"))
    slots = []
    b = b0 + gap + width / 2
    while b + width / 2 <= b1 - gap + 1e-9 and len(slots) < n:
        a = a0 + gap + length / 2
        while a + length / 2 <= a1 - gap + 1e-9 and len(slots) < n:
            x, y = (a, b) if along_x else (b, a)
            hx, hy = (length / 2, width / 2) if along_x else (width / 2, length / 2)
            corners = [(x - hx, y - hy), (x + hx, y - hy), (x + hx, y + hy), (x - hx, y + hy)]
            if inside.contains_points(corners).all():
                slots.append((x, y, 0.0 if along_x else 90.0))
            a += length + gap
        b += width + gap
    return slots


def containers(footprint_m, capacity_kwh: float, rule: dict) -> Mesh:
    """The containers of a storage of ``capacity_kwh`` [kWh] in its footprint (:func:`container_slots`)."""
    n = max(1, math.ceil(capacity_kwh / rule["kwh_per_container"]))
    size = (rule["length_m"], rule["width_m"], rule["height_m"])
    return merge([box((x, y, 0.0), size, yaw) for x, y, yaw in container_slots(footprint_m, n, rule)])


def substation(footprint_m, rated_kva: float | None, rule: dict) -> Mesh:
    """The pad, ``ceil(rated_kva / transformer_kva)`` transformers in a row along the footprint's longer side,
    and the incoming-line gantry (two posts and a beam) at its west end."""
    x0, y0, x1, y1 = _bbox(footprint_m)
    pad = merge(prism(footprint_m, rule["pad_height_m"])[:2])
    n = max(1, math.ceil((rated_kva or rule["transformer_kva"]) / rule["transformer_kva"]))
    tl, tw, th = rule["transformer_m"]
    along_x = (x1 - x0) >= (y1 - y0)
    span = (x1 - x0) if along_x else (y1 - y0)
    step = span / n
    parts = []
    for i in range(n):
        a = (x0 if along_x else y0) + step * (i + 0.5)
        cx, cy = (a, (y0 + y1) / 2) if along_x else ((x0 + x1) / 2, a)
        parts.append(box((cx, cy, rule["pad_height_m"]), (tl, tw, th), 90.0 if along_x else 0.0))
    gh, gx = rule["gantry_height_m"], x0 + 2.0
    posts = [box((gx, y, 0.0), (0.8, 0.8, gh)) for y in (y0 + 0.2 * (y1 - y0), y0 + 0.8 * (y1 - y0))]
    beam = box((gx, (y0 + y1) / 2, gh - 0.8), (0.6 * (y1 - y0) + 0.8, 0.8, 0.8), 90.0)
    return merge([pad, *parts, *posts, beam])


# ------------------------------------------------------------------------------------------------ the park
def _roof_pv(enterprise) -> set[str]:
    """Ids of the enterprise's buildings that carry one of its PV arrays."""
    return {d.building for d in enterprise.devices if d.type == "pv" and d.building}


def _outline(footprint_m, base_m: float, top_m: float) -> np.ndarray:
    return prism(footprint_m, max(top_m - base_m, 0.1), base_m)[2]


def _yard_south_of(park: Park, enterprise_id: str, n: int, rule: dict) -> np.ndarray:
    """A footprint for ``n`` containers in a row ``south_of_enterprise_m`` south of the enterprise's buildings,
    starting at their west end (the rule for a storage without a ``footprint_m``)."""
    feet = np.vstack([np.asarray(b.footprint_m) for b in park.enterprise(enterprise_id).buildings])
    x0, y0 = feet[:, 0].min(), feet[:, 1].min()
    length = n * (rule["length_m"] + rule["gap_m"]) + rule["gap_m"]
    width = rule["width_m"] + 2 * rule["gap_m"]
    y1 = y0 - rule["south_of_enterprise_m"]
    return np.array([[x0, y1 - width], [x0 + length, y1 - width], [x0 + length, y1], [x0, y1]])


def _equipment(park: Park, enterprise_id: str | None, d: Device, rules: dict) -> Part | None:
    """The part of a PV array, a storage or the grid connection (None for devices that are not drawn)."""
    if d.type == "pv":
        b = next((b for b in park.enterprise(enterprise_id).buildings if b.id == d.building), None) \
            if d.building and enterprise_id else None
        foot, base, rule = (b.footprint_m, b.height_m, rules["pv_roof"]) if b else \
            (d.footprint_m, 0.0, rules["pv_ground"])
        if foot is None:
            return None
        mesh = pv_rows(foot, d.p.tilt_deg, d.p.azimuth_deg, base, rule)
        top = base + rule["low_edge_m"] + rule["row_depth_m"] * math.sin(math.radians(d.p.tilt_deg))
    elif d.type == "bess":
        rule = rules["container"]
        foot = d.footprint_m
        if foot is None and enterprise_id is not None:
            foot = _yard_south_of(park, enterprise_id, max(1, math.ceil(d.p.capacity_kwh / rule["kwh_per_container"])),
                                  rule)
        if foot is None:
            return None
        mesh, base, top = containers(foot, d.p.capacity_kwh, rule), 0.0, rule["height_m"]
    elif d.type == "grid_meter" and d.footprint_m is not None:
        rule = rules["substation"]
        foot, base, top = d.footprint_m, 0.0, rule["gantry_height_m"]
        mesh = substation(foot, d.p.rated_kva, rule)
    else:
        return None
    kind = "substation" if d.type == "grid_meter" else d.type
    return Part(d.id, kind, enterprise_id, d.id, d.building, d.name, np.asarray(foot, dtype="float64"), top, mesh,
                None, _outline(foot, base, top))


def parts(park: Park, rules: dict | None = None) -> list[Part]:
    """Every building (one part each, in the park model's order), then the drawn equipment: PV arrays, storages
    and the substation (devices of other types have no geometry of their own)."""
    rules = rules or load_rules()
    out = []
    for e in park.enterprises:
        for b in e.buildings:
            roof, walls, outline = prism(b.footprint_m, b.height_m)
            out.append(Part(f"{e.id}/{b.id}", "building", e.id, None, b.id, b.name,
                            np.asarray(b.footprint_m, dtype="float64"), b.height_m, roof, walls, outline))
    for eid, d in park.iter_devices():
        part = _equipment(park, eid, d, rules)
        if part is not None:
            out.append(part)
    return out


def _distance_m(polygon_m: np.ndarray, x_m: float, y_m: float) -> float:
    """Distance from a point to a polygon [m]: 0 inside or on it."""
    if MplPath(polygon_m).contains_point((x_m, y_m)):
        return 0.0
    a, b = polygon_m, np.roll(polygon_m, -1, axis=0)
    ab, ap = b - a, np.array([x_m, y_m]) - a
    t = np.clip((ap * ab).sum(axis=1) / (ab * ab).sum(axis=1), 0.0, 1.0)
    return float(np.linalg.norm(ap - t[:, None] * ab, axis=1).min())


def part_at(parts_: list[Part], x_m: float, y_m: float, enterprise_id: str | None = None) -> Part | None:
    """The part nearest the ground point ``(x_m, y_m)`` [m] (a point on a wall lies on its footprint's edge):
    containing it first, equipment before buildings (a rooftop array before its roof); optionally only among one
    enterprise's parts (``enterprise_id``)."""
    cands = [p for p in parts_ if enterprise_id is None or p.enterprise_id == enterprise_id]
    if not cands:
        return None
    return min(cands, key=lambda p: (round(_distance_m(p.footprint_m, x_m, y_m), 6), p.kind == "building"))


def enterprise_anchor(park: Park, enterprise_id: str) -> tuple[float, float, float]:
    """An enterprise's node: the roof centre ``(x, y, z)`` of its largest building that carries none of its PV
    arrays (so the flow from a rooftop array to its enterprise has a length), or of its largest building."""
    e = park.enterprise(enterprise_id)
    if not e.buildings:
        raise ValueError(f"enterprise {enterprise_id} has no building to place it")
    free = [b for b in e.buildings if b.id not in _roof_pv(e)] or list(e.buildings)
    b = max(free, key=lambda b: abs(signed_area_m2(b.footprint_m)))
    return (*centroid_m(b.footprint_m), b.height_m)


def node_positions(park: Park, nodes: pd.DataFrame, parts_: list[Part] | None = None,
                   rules: dict | None = None) -> pd.DataFrame:
    """Where each energy-flow node is drawn (``anning_lib.twin.flows.nodes``: columns ``node, kind, carrier,
    enterprise_id, device_id``).

    * substation: the centre of the grid meter's footprint at the gantry's height ((0, 0) without one);
    * grid: ``feed_margin_m`` west of the substation (the incoming 110 kV line); fuel supplies (kind
      ``*_supply``): ``feed_margin_m`` west of the westernmost building, at the boilers' mean y;
    * PV, storage: the centre of its drawn footprint at its top; a boiler: its building's roof centre;
    * an enterprise: :func:`enterprise_anchor`; a device without geometry: its enterprise's node;
    * virtual nodes (kind ``losses``) have no place and are left out.

    Returns
    -------
    pandas.DataFrame
        indexed by ``node``: :data:`NODE_COLUMNS` (``x_m, y_m, z_m`` [m], park axes).
    """
    rules = rules or load_rules()
    parts_ = parts_ if parts_ is not None else parts(park, rules)
    by_key = {p.key: p for p in parts_}
    sub = next((p for p in parts_ if p.kind == "substation"), None)
    gantry = rules["substation"]["gantry_height_m"]
    sub_xyz = (*centroid_m(sub.footprint_m), gantry) if sub else (0.0, 0.0, gantry)
    margin = rules["routes"]["feed_margin_m"]
    west = min(float(p.footprint_m[:, 0].min()) for p in parts_ if p.kind == "building") - margin
    pos: dict[str, tuple] = {}
    for r in nodes.itertuples(index=False):
        if r.kind == "losses":
            continue
        ent = r.enterprise_id if isinstance(r.enterprise_id, str) else None
        dev = r.device_id if isinstance(r.device_id, str) else None
        if r.kind == "substation":
            xyz = sub_xyz
        elif r.kind == "enterprise":
            xyz = enterprise_anchor(park, ent or r.node)
        elif dev in by_key:
            xyz = (*centroid_m(by_key[dev].footprint_m), by_key[dev].top_m)
        elif r.kind == "boiler" and dev and ent and park.device(dev).building:
            b = next(b for b in park.enterprise(ent).buildings if b.id == park.device(dev).building)
            xyz = (*centroid_m(b.footprint_m), b.height_m)
        elif r.kind == "grid" or r.kind.endswith("_supply"):
            xyz = None                                   # after the boilers: a fuel feed takes their mean y
        else:
            xyz = enterprise_anchor(park, ent) if ent else sub_xyz
        pos[r.node] = (r.kind, ent, dev, xyz)
    boilers_y = [v[3][1] for v in pos.values() if v[0] == "boiler" and v[3] is not None]
    for node, (kind, ent, dev, xyz) in pos.items():
        if kind == "grid":
            pos[node] = (kind, ent, dev, (sub_xyz[0] - margin, sub_xyz[1], gantry))
        elif kind.endswith("_supply"):
            pos[node] = (kind, ent, dev, (west, float(np.mean(boilers_y)) if boilers_y else sub_xyz[1], gantry))
    return pd.DataFrame([(n, k, e, d, *xyz) for n, (k, e, d, xyz) in pos.items()],
                        columns=["node", *NODE_COLUMNS]).set_index("node")


# ------------------------------------------------------------------------------------------------ flows
def route_height_m(park: Park, rules: dict | None = None) -> float:
    """The height flows are drawn at: the tallest building plus ``clearance_m`` [m]."""
    rules = rules or load_rules()
    return max(b.height_m for e in park.enterprises for b in e.buildings) + rules["routes"]["clearance_m"]


def route_path(a_m, b_m, z_m: float) -> np.ndarray:
    """The polyline ``(4, 3)`` of a flow from node ``a_m`` to ``b_m`` (x, y, z) [m]: up to ``z_m``, across, down."""
    a, b = np.asarray(a_m, dtype="float64"), np.asarray(b_m, dtype="float64")
    return np.array([a, [a[0], a[1], z_m], [b[0], b[1], z_m], b])


def arrow_pose(path_m: np.ndarray, forward: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Where a flow's arrow head sits (the middle of the elevated segment) and its unit direction (park axes),
    from the path's start to its end when ``forward`` (straight up or down for a path with no horizontal run)."""
    a, b = path_m[1], path_m[2]
    d = b - a
    if np.linalg.norm(d) < 1e-9:
        d = path_m[3] - path_m[0]
    d = d / (np.linalg.norm(d) or 1.0)
    return (a + b) / 2, d if forward else -d


def flow_width_px(p_kw: float, rules: dict | None = None) -> float:
    """Line width of a flow [px]: 0 for no flow, else ``w0 + (w1 - w0) * sqrt(min(p, p_ref) / p_ref)`` with
    ``width_px = [w0, w1]`` and ``reference_kw = p_ref`` of the rules (an area-true width for a Sankey-like view)."""
    r = (rules or load_rules())["routes"]
    if not p_kw > 0:
        return 0.0
    w0, w1 = r["width_px"]
    return w0 + (w1 - w0) * math.sqrt(min(p_kw, r["reference_kw"]) / r["reference_kw"])


# ------------------------------------------------------------------------------------------------ view
def extent_m(parts_: list[Part], positions: pd.DataFrame | None = None) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` around every part and node [m]."""
    xy = [p.footprint_m for p in parts_]
    if positions is not None and len(positions):
        xy.append(positions[["x_m", "y_m"]].to_numpy())
    a = np.vstack(xy)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()), float(a[:, 1].max())


def label_anchors(nodes_xyz: pd.DataFrame, rules: dict | None = None) -> pd.DataFrame:
    """Where labels float: above every enterprise node, the substation, the grid and fuel feeds and park-level PV
    and storage (columns ``x_m, y_m, z_m`` [m], indexed by node)."""
    up = (rules or load_rules())["labels"]["above_roof_m"]
    keep = (nodes_xyz["kind"].isin(["enterprise", "substation", "grid"]) | nodes_xyz["kind"].str.endswith("_supply")
            | (nodes_xyz["kind"].isin(["pv", "bess"]) & nodes_xyz["enterprise_id"].isna()))
    out = nodes_xyz.loc[keep, ["x_m", "y_m", "z_m"]].copy()
    out["z_m"] += up
    return out
