"""Row counts and content checksums of the store's tables, equal for the same data on SQLite and PostgreSQL.

A backup's manifest records them (:func:`table_checksums`); a restore or a verify compares the copy with it
(:func:`compare_tables`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

CHECKSUM_METHOD = ("sha256 of one line per row, rows ordered by primary key (text by code point), values "
                   "normalised: null, bool, int, float repr, JSON-quoted text, UTC ISO instants, canonical JSON")
"""How :func:`table_checksums` is computed, in words (stored in each backup's manifest)."""


def _norm(v: Any) -> str:
    """One value as text, the same for the same logical value on SQLite and PostgreSQL."""
    if v is None:
        return "~"
    t = type(v)
    if t is bool:
        return "T" if v else "F"
    if t is int:
        return str(v)
    if t is float:
        return repr(v)
    if t is str:
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dt.datetime):
        return (v.astimezone(dt.UTC) if v.tzinfo is not None else v).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if isinstance(v, Decimal):
        return str(v.normalize())
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "x" + bytes(v).hex()
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(v))
    return json.dumps(str(v), ensure_ascii=False)


def _checksum_tables(conn: Connection) -> list[sa.Table]:
    """The store's tables (the models of :mod:`anning_lib.store.schema`) when the database is at the head revision,
    else the tables reflected from the database (then checksums compare only within one database kind)."""
    from alembic.runtime.migration import MigrationContext

    from anning_lib.store.engine import head_revision
    from anning_lib.store.schema import TABLES

    if MigrationContext.configure(conn).get_current_revision() == head_revision():
        return [TABLES[name] for name in sorted(TABLES)]
    md = sa.MetaData()
    md.reflect(conn)
    return [md.tables[name] for name in sorted(md.tables) if name != "alembic_version"]


def _table_sum(conn: Connection, table: sa.Table) -> dict[str, Any]:
    pg = conn.dialect.name == "postgresql"
    cols = list(table.primary_key.columns) or list(table.columns)
    order = [c.collate("C") if pg and isinstance(c.type, sa.String) else c for c in cols]
    h = hashlib.sha256()
    n = 0
    result = conn.execute(sa.select(*table.columns).order_by(*order),  # options for this statement only
                          execution_options={"stream_results": True, "yield_per": 5000})
    norm = _norm
    for part in result.partitions():
        h.update("".join("\t".join([norm(v) for v in row]) + "\n" for row in part).encode())
        n += len(part)
    return {"rows": n, "sha256": h.hexdigest()}


def table_checksums(bind: Engine | Connection) -> dict[str, dict[str, Any]]:
    """Row count and content checksum of every table of the store, ``{table: {"rows": n, "sha256": hex}}``.

    The checksum is the SHA-256 of one line per row, rows ordered by primary key (text keys by code point, the
    same order on SQLite and PostgreSQL), each value normalised: NULL, booleans, integers, floats (shortest
    round-trip repr), text (JSON-quoted), instants (UTC ISO 8601, read through the store's own column types, so a
    SQLite millisecond integer and a PostgreSQL ``timestamptz`` compare equal) and JSON documents (canonical, keys
    sorted). The same data gives the same checksum in the original database and in its restored copy.

    With an engine, every table is read in one transaction (``REPEATABLE READ`` on PostgreSQL: one snapshot).
    """
    if isinstance(bind, Connection):
        return {t.name: _table_sum(bind, t) for t in _checksum_tables(bind)}
    with bind.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return {t.name: _table_sum(conn, t) for t in _checksum_tables(conn)}


def compare_tables(expected: dict[str, dict], actual: dict[str, dict]) -> list[dict[str, Any]]:
    """Row counts and checksums side by side, one dict per table of either side, with ``ok``."""
    rows = []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name) or {}, actual.get(name) or {}
        rows.append({"table": name, "rows_expected": e.get("rows"), "rows_actual": a.get("rows"),
                     "sha256_expected": e.get("sha256"), "sha256_actual": a.get("sha256"),
                     "ok": bool(e) and bool(a) and e.get("rows") == a.get("rows") and e.get("sha256") == a.get("sha256")})
    return rows


