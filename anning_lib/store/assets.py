"""The park's assets in the database: upsert from the park model, look up point ids and tags."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from anning_lib.errors import StoreError
from anning_lib.store.schema import TABLES

if TYPE_CHECKING:
    from anning_lib.park import Park


def upsert(conn: Connection, table: sa.Table, rows: Sequence[dict], keys: Sequence[str]) -> int:
    """Insert ``rows`` into ``table``, updating the other columns where the natural key ``keys`` exists.

    Columns not named in the rows (such as a surrogate ``id``) are left as they are, so ids stay stable.

    Returns
    -------
    int
        Number of rows given (inserted or updated).
    """
    if not rows:
        return 0
    name = conn.dialect.name
    if name == "sqlite":
        stmt = sqlite.insert(table)
    elif name == "postgresql":
        stmt = postgresql.insert(table)
    else:  # pragma: no cover - normalise_url refuses other backends
        raise StoreError(f"database: backend {name!r} is not supported")
    update = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=update) if update else (
        stmt.on_conflict_do_nothing(index_elements=list(keys))
    )
    conn.execute(stmt, list(rows))
    return len(rows)


def _stored_addresses(engine: Engine) -> dict[str, dict]:
    """The protocol columns already stored, by tag (empty before the first sync)."""
    point, device = TABLES["point"], TABLES["device"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(point.c.tag, point.c.address, point.c.dtype, point.c.scale, device.c.unit_id)
                            .join(device, device.c.id == point.c.device_id)).all()
    return {r.tag: {"address": r.address, "dtype": r.dtype, "scale": r.scale, "unit_id": r.unit_id} for r in rows}


def sync_park(engine: Engine, park: Park, addresses: dict[str, dict] | None = None) -> dict[str, int]:
    """Upsert the park model's enterprises, buildings, devices and points by natural key, in one transaction.

    ``addresses`` (tag -> ``{"address", "dtype", "scale", "unit_id"}``, from
    :func:`anning_lib.ingest.pointmap.describe_addresses`) fills the point's protocol columns, which are
    descriptive only: the gateway reads its point maps, not these columns. Without it (``anning db init`` on an
    upgrade) the columns keep what is stored.

    Natural keys: enterprise ``id``, building ``(enterprise_id, code)``, device ``id``, point ``tag``
    (``DEV.point``). Existing rows are updated in place, so a point's surrogate ``id`` never changes and
    running this twice changes nothing. Rows that are no longer in the park model are *not* deleted (their
    history stays readable); their number is returned as ``stale_points``.

    Returns
    -------
    dict of str to int
        ``enterprises``, ``buildings``, ``devices``, ``points`` upserted and ``stale_points``.
    """
    from anning_lib.park import point_tag

    addr = addresses if addresses is not None else _stored_addresses(engine)
    ent_rows = [
        {"id": e.id, "name": e.name, "name_en": e.name_en, "sector": e.sector} for e in park.enterprises
    ]
    bld_rows = [
        {
            "enterprise_id": e.id,
            "code": b.id,
            "name": b.name,
            "footprint_m": json.dumps([list(v) for v in b.footprint_m]),
            "height_m": float(b.height_m),
            "use": b.use,
        }
        for e in park.enterprises
        for b in e.buildings
    ]
    pt_rows = [
        {
            "tag": point_tag(d.id, p.id),
            "device_id": d.id,
            "code": p.id,
            "quantity": p.quantity,
            "unit": p.unit,
            "min": p.min,
            "max": p.max,
            "scale": float(addr.get(point_tag(d.id, p.id), {}).get("scale", 1.0)),
            "address": str(addr.get(point_tag(d.id, p.id), {}).get("address", "")),
            "dtype": str(addr.get(point_tag(d.id, p.id), {}).get("dtype", "")),
            "writable": bool(p.writable),
        }
        for _eid, d, p in park.iter_points()
    ]
    unit_ids = {tag.split(".")[0]: a["unit_id"] for tag, a in addr.items() if a.get("unit_id") is not None}
    building, device, point = TABLES["building"], TABLES["device"], TABLES["point"]
    with engine.begin() as conn:
        upsert(conn, TABLES["enterprise"], ent_rows, ["id"])
        upsert(conn, building, bld_rows, ["enterprise_id", "code"])
        bid = {
            (r.enterprise_id, r.code): r.id
            for r in conn.execute(sa.select(building.c.id, building.c.enterprise_id, building.c.code))
        }
        dev_rows = [
            {
                "id": d.id,
                "enterprise_id": eid,
                "building_id": bid.get((eid, d.building)) if d.building else None,
                "name": d.name,
                "type": d.type,
                "carrier": d.carrier,
                "protocol": d.protocol,
                "unit_id": unit_ids.get(d.id),
                "params": dict(d.params),
            }
            for eid, d in park.iter_devices()
        ]
        upsert(conn, device, dev_rows, ["id"])
        upsert(conn, point, pt_rows, ["tag"])
        known = {r["tag"] for r in pt_rows}
        stale = sum(1 for (tag,) in conn.execute(sa.select(point.c.tag)) if tag not in known)
    return {
        "enterprises": len(ent_rows),
        "buildings": len(bld_rows),
        "devices": len(dev_rows),
        "points": len(pt_rows),
        "stale_points": stale,
    }


def point_ids(conn: Connection | Engine, tags: Iterable[str] | None = None) -> dict[str, int]:
    """Map point tags to surrogate ids.

    Parameters
    ----------
    conn : Connection or Engine
    tags : iterable of str, optional
        The tags wanted; all points if None.

    Raises
    ------
    StoreError
        naming the first unknown tags, if any tag is not in the ``point`` table.
    """
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return point_ids(c, tags)
    point = TABLES["point"]
    all_ids = {tag: pid for pid, tag in conn.execute(sa.select(point.c.id, point.c.tag))}
    if tags is None:
        return all_ids
    wanted = list(dict.fromkeys(tags))
    unknown = [t for t in wanted if t not in all_ids]
    if unknown:
        raise StoreError(unknown_tags_message(unknown))
    return {t: all_ids[t] for t in wanted}


def unknown_tags_message(unknown: Sequence[object]) -> str:
    """``"tag: unknown point tag 'X.y' (and 2 more: 'A.b', 'C.d')"`` for the first few unknown tags."""
    first, rest = unknown[0], list(unknown[1:])
    more = ""
    if rest:
        shown = ", ".join(repr(t) for t in rest[:5])
        more = f" (and {len(rest)} more: {shown}{', ...' if len(rest) > 5 else ''})"
    return f"tag: unknown point tag {first!r}{more}; add it to the park model and run `anning db init`"


def enterprise_tags(conn: Connection | Engine, enterprise_id: str, quantity: str | None = None) -> list[str]:
    """The point tags of an enterprise's devices (optionally of one ``quantity``), sorted.

    Raises
    ------
    StoreError
        if ``enterprise_id`` is not in the ``enterprise`` table.
    """
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return enterprise_tags(c, enterprise_id, quantity)
    ent, dev, pt = TABLES["enterprise"], TABLES["device"], TABLES["point"]
    if conn.execute(sa.select(ent.c.id).where(ent.c.id == enterprise_id)).first() is None:
        raise StoreError(f"enterprise_id: unknown enterprise {enterprise_id!r}")
    q = sa.select(pt.c.tag).join(dev, dev.c.id == pt.c.device_id).where(dev.c.enterprise_id == enterprise_id)
    if quantity is not None:
        q = q.where(pt.c.quantity == quantity)
    return [t for (t,) in conn.execute(q.order_by(pt.c.tag))]


ROLES: dict[str, str] = {
    "admin": "everything: users, devices, points, factors, tariffs, strategies, system config",
    "operator": "everything operational: acknowledge alarms, work orders, dispatch, reports",
    "enterprise": "only its own enterprise's data; acknowledges its alarms",
    "visitor": "park overview and public figures; no actions",
}
"""The roles of the ``role`` table (ARCHITECTURE.md §6). ``system`` is not a login role: it is the actor of
the library's own jobs and never stored."""


def sync_roles(engine: Engine) -> None:
    """Insert the rows of :data:`ROLES` missing from the ``role`` table (idempotent)."""
    roles = TABLES["role"]
    with engine.begin() as conn:
        have = set(conn.execute(sa.select(roles.c.id)).scalars())
        missing = [{"id": k, "description": v} for k, v in ROLES.items() if k not in have]
        if missing:
            conn.execute(sa.insert(roles), missing)

