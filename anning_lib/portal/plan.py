"""The park plan (2-D footprints of every building) for the big screen's twin thumbnail.

The 3-D twin (pythreejs) is its own page; the overview shows the same geometry from above
(:func:`anning_lib.portal.svg.plan`), each building coloured by its enterprise's current load on the twin's legend,
so a manager sees at a glance where the power goes.
"""

from __future__ import annotations

from anning_lib.park.schema import Park


def footprints(park: Park, load_kw: dict[str, float | None] | None = None) -> list[dict]:
    """One polygon per building: ``x``, ``y`` (footprint corners, local metres east/north of the park origin),
    ``building``, ``name``, ``enterprise_id``, ``enterprise``, ``height_m`` and ``load_kw`` (the enterprise's
    current load from ``load_kw`` [kW]; NaN when unknown or not visible to the user)."""
    load_kw = load_kw or {}
    out = []
    for e in park.enterprises:
        for b in e.buildings:
            xs, ys = zip(*b.footprint_m)
            v = load_kw.get(e.id)
            out.append({"x": list(xs), "y": list(ys), "building": b.id, "name": b.name, "enterprise_id": e.id,
                        "enterprise": e.name, "height_m": b.height_m,
                        "load_kw": float("nan") if v is None else float(v)})
    return out
