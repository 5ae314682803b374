"""Time-series write, read and 15-minute rollups.

Storage is UTC (ARCHITECTURE.md §4); readers return frames indexed in the display time zone
(Asia/Shanghai by default). Intervals are half-open: ``start <= ts < end``.

Write semantics (:func:`write_measurements`)
--------------------------------------------
* Idempotent upsert on ``(point_id, ts)``: writing the same frame twice leaves one row per point and instant;
  writing a new value for an existing instant replaces value and quality.
* One call is one transaction. Every row is checked before anything is written, so a rejected frame
  (unknown tag, naive or missing timestamp, infinite value, bad quality) changes nothing.
* NaN values mean "no reading": by default (``nan="skip"``) those rows are dropped and not counted, and an
  already stored value at that instant is kept. ``nan="raise"`` rejects the frame instead.
* ``replace="unless_worse"`` (the gateway's mode) keeps a stored value when the new one has a worse quality
  code (good 0 < uncertain 1 < bad 2 < stale 3), so a late bad reading never overwrites good data; among
  duplicates within the frame the best quality wins too.
* Rollups summarise good and uncertain readings only (quality 0 and 1): bad and stale values are kept for
  the record but never enter a 15-minute mean.
* Duplicate ``(point, ts)`` rows within one frame (after flooring to the stored resolution): the last wins.
* On SQLite instants are stored in whole milliseconds (finer parts are floored); on PostgreSQL in
  microseconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anning_lib.errors import StoreError
from anning_lib.store.assets import enterprise_tags, point_ids
from anning_lib.store.pgcopy import PGCOPY_HEADER, PGCOPY_TRAILER, pgcopy_binary
from anning_lib.store.schema import TABLES
from anning_lib.store.validate import (
    EPOCH_TS,
    epoch_ints,
    instant,
    prepare_measurements,
)

BUCKET_S = 900
"""Rollup bucket length [s] (15 min), aligned to UTC quarter hours (also Beijing quarter hours)."""
SQLITE_CHUNK_ROWS = 50_000
"""Rows per ``executemany`` batch on SQLite (all batches share one transaction)."""
PG_COPY_CHUNK_ROWS = 200_000
"""Rows per binary COPY block on PostgreSQL (one COPY, one transaction; bounds the memory of a block)."""
MAX_ROLLUP_QUALITY = 1
"""Highest quality code summarised in rollups: good (0) and uncertain (1); bad (2) and stale (3) are left out."""
RESOLUTIONS = ("raw", "15min")
STATS = ("mean", "min", "max", "n")
_STAGE = "_anning_measurement_stage"

Bind = Engine | Connection


@contextmanager
def _transaction(bind: Bind) -> Iterator[Connection]:
    """A connection in a transaction: a new one for an Engine, the caller's own for a Connection."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    elif bind.in_transaction():
        yield bind
    else:
        with bind.begin():
            yield bind


# ----------------------------------------------------------------------------------------------- write
_SQLITE_UPSERT = (
    "INSERT INTO measurement (point_id, ts, value, quality) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (point_id, ts) DO UPDATE SET value = excluded.value, quality = excluded.quality"
)
_PG_MERGE = (
    f"INSERT INTO measurement (point_id, ts, value, quality) "
    f"SELECT point_id, ts, value, quality FROM {_STAGE} "
    f"ON CONFLICT (point_id, ts) DO UPDATE SET value = EXCLUDED.value, quality = EXCLUDED.quality"
)
_UNLESS_WORSE = " WHERE excluded.quality <= measurement.quality"
REPLACE_MODES = ("always", "unless_worse")


def write_measurements(bind: Bind, df: pd.DataFrame, *, nan: str = "skip", replace: str = "always") -> int:
    """Upsert measurements from a long frame, in one transaction.

    Parameters
    ----------
    bind : Engine or Connection
        With a Connection the write joins its open transaction (or begins and commits one).
    df : pandas.DataFrame
        Columns ``tag`` (``"DEV.point"``) or ``point_id``; ``ts`` (time-zone-aware instants); ``value``
        (float, in the point's unit); optional ``quality`` (int 0..32767, 0 = good; default 0).
    nan : {"skip", "raise"}
        What a NaN value means: a missing reading to skip, or an error.
    replace : {"always", "unless_worse"}
        Whether a stored row at the same instant is always replaced, or kept when the new quality is worse.

    Returns
    -------
    int
        Rows written (inserted or updated): unique ``(point, ts)`` pairs with a non-NaN value.

    Raises
    ------
    StoreError
        naming the unknown tag, the naive timestamp or the bad value; nothing is written then.

    Notes
    -----
    SQLite: ``INSERT ... ON CONFLICT (point_id, ts) DO UPDATE`` with ``executemany`` in batches of
    :data:`SQLITE_CHUNK_ROWS`. PostgreSQL: ``COPY`` into a temporary table, then one
    ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.
    """
    if replace not in REPLACE_MODES:
        raise StoreError(f"replace: must be one of {REPLACE_MODES}, got {replace!r}")
    suffix = _UNLESS_WORSE if replace == "unless_worse" else ""
    with _transaction(bind) as conn:
        rows = prepare_measurements(conn, df, nan=nan, floor="ms" if conn.dialect.name == "sqlite" else "us",
                                    best_quality=replace == "unless_worse")
        if rows.empty:
            return 0
        if conn.dialect.name == "sqlite":
            _write_sqlite(conn, rows, suffix)
        else:
            _write_postgresql(conn, rows, suffix)
        return len(rows)


def _write_sqlite(conn: Connection, rows: pd.DataFrame, suffix: str = "") -> None:
    pid, ms = rows["point_id"].to_numpy(), epoch_ints(rows["ts"], "ms")
    value, quality = rows["value"].to_numpy(), rows["quality"].to_numpy()
    for i in range(0, len(rows), SQLITE_CHUNK_ROWS):
        sl = slice(i, i + SQLITE_CHUNK_ROWS)
        params = list(zip(pid[sl].tolist(), ms[sl].tolist(), value[sl].tolist(), quality[sl].tolist()))
        conn.exec_driver_sql(_SQLITE_UPSERT + suffix, params)


def _write_postgresql(conn: Connection, rows: pd.DataFrame, suffix: str = "") -> None:
    pid, us = rows["point_id"].to_numpy(), epoch_ints(rows["ts"], "us")
    value, quality = rows["value"].to_numpy(), rows["quality"].to_numpy()
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {_STAGE}")
        cur.execute(
            f"CREATE TEMP TABLE {_STAGE} (point_id integer, ts timestamptz, value double precision, "
            f"quality smallint) ON COMMIT DROP"
        )
        with cur.copy(f"COPY {_STAGE} (point_id, ts, value, quality) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(PGCOPY_HEADER)
            for i in range(0, len(rows), PG_COPY_CHUNK_ROWS):
                sl = slice(i, i + PG_COPY_CHUNK_ROWS)
                copy.write(pgcopy_binary(pid[sl], us[sl], value[sl], quality[sl]))
            copy.write(PGCOPY_TRAILER)
        cur.execute(_PG_MERGE + suffix.replace("excluded.", "EXCLUDED."))
        cur.execute(f"DROP TABLE {_STAGE}")


# ------------------------------------------------------------------------------------------------ read
def _ts_select(dialect: str, column: str) -> str:
    """SQL selecting a time column as integer epoch units, and the unit."""
    if dialect == "sqlite":
        return column  # already integer milliseconds
    return f"CAST(EXTRACT(EPOCH FROM {column}) * 1000000 AS BIGINT)"


def _bind_instant(dialect: str, ts: pd.Timestamp):
    if dialect == "sqlite":
        return int((ts - EPOCH_TS) // pd.Timedelta(1, "ms"))
    return ts.to_pydatetime()


def read_series(
    bind: Bind,
    tags: str | Sequence[str],
    start: object,
    end: object,
    *,
    resolution: str = "raw",
    stat: str = "mean",
    tz: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """Read points over ``[start, end)`` as a wide frame.

    Parameters
    ----------
    bind : Engine or Connection
    tags : str or sequence of str
        Point tags ``"DEV.point"``; the frame has one column per tag, in this order (all-NaN if no data).
    start, end : datetime, pandas.Timestamp or ISO string, time-zone aware
        Half-open interval. For ``"15min"`` a bucket is included when its start is in the interval.
    resolution : {"raw", "15min"}
        Raw measurements, or the 15-minute rollups (run :func:`refresh_rollups` first).
    stat : {"mean", "min", "max", "n"}
        Which rollup statistic to return (``"15min"`` only).
    tz : str
        Time zone of the returned index.

    Returns
    -------
    pandas.DataFrame
        Index ``ts`` (DatetimeIndex in ``tz``), columns the tags, values in each point's unit.

    Raises
    ------
    StoreError
        for an unknown tag, a naive ``start``/``end``, ``end < start``, or an unknown resolution/stat.
    """
    if resolution not in RESOLUTIONS:
        raise StoreError(f"resolution: expected one of {RESOLUTIONS}, got {resolution!r}")
    if resolution == "15min" and stat not in STATS:
        raise StoreError(f"stat: expected one of {STATS}, got {stat!r}")
    tags = [tags] if isinstance(tags, str) else list(tags)
    s, e = instant(start, "start"), instant(end, "end")
    if e < s:
        raise StoreError(f"end: {end!r} is before start {start!r}")
    with _transaction(bind) as conn:
        ids = point_ids(conn, tags)
        d = conn.dialect.name
        table, tcol, vcol = ("measurement", "ts", "value") if resolution == "raw" else (
            "rollup_15min", "ts_start", stat)
        q = sa.text(
            f"SELECT point_id, {_ts_select(d, tcol)} AS t, {vcol} AS v FROM {table} "
            f"WHERE point_id IN :ids AND {tcol} >= :s AND {tcol} < :e"
        ).bindparams(sa.bindparam("ids", expanding=True))
        rows = conn.execute(
            q, {"ids": list(ids.values()) or [-1], "s": _bind_instant(d, s), "e": _bind_instant(d, e)}
        ).all()
    unit = "ms" if d == "sqlite" else "us"
    pid, t, v = (list(col) for col in zip(*rows)) if rows else ([], [], [])
    tag_of = {p: tag for tag, p in ids.items()}
    frame = pd.DataFrame({
        "tag": pd.Series(np.asarray(pid, dtype="int64")).map(tag_of),
        "ts": pd.to_datetime(np.asarray(t, dtype="int64"), unit=unit, utc=True),
        "v": np.asarray(v, dtype="float64"),
    })
    wide = frame.pivot(index="ts", columns="tag", values="v").reindex(columns=tags).sort_index()
    wide = wide.astype("float64")
    wide.index = pd.DatetimeIndex(wide.index, name="ts").tz_convert(tz)
    wide.columns.name = None
    return wide


def read_enterprise(
    bind: Bind,
    enterprise_id: str,
    start: object,
    end: object,
    *,
    quantity: str | None = None,
    resolution: str = "raw",
    stat: str = "mean",
    tz: str = "Asia/Shanghai",
) -> pd.DataFrame:
    """:func:`read_series` of every point of an enterprise's devices (optionally one ``quantity``).

    Raises
    ------
    StoreError
        for an unknown enterprise, or if it has no points (of that quantity).
    """
    tags = enterprise_tags(bind, enterprise_id, quantity)
    if not tags:
        what = f" of quantity {quantity!r}" if quantity else ""
        raise StoreError(f"quantity: enterprise {enterprise_id!r} has no points{what}")
    return read_series(bind, tags, start, end, resolution=resolution, stat=stat, tz=tz)


# --------------------------------------------------------------------------------------------- rollups
def _bucket_sql(conn: Connection) -> str:
    """SQL expression of the bucket start of ``ts``: ``floor(ts / 900 s) * 900 s`` since the Unix epoch."""
    if conn.dialect.name == "sqlite":  # integer ms; the double modulo floors negative instants too
        b = BUCKET_S * 1000
        return f"ts - (((ts % {b}) + {b}) % {b})"
    if (conn.dialect.server_version_info or (0,)) >= (14,):  # date_bin: PostgreSQL 14+, ~25 % faster
        return f"date_bin('{BUCKET_S} seconds', ts, timestamptz '1970-01-01 00:00:00+00')"
    return f"to_timestamp(floor(extract(epoch FROM ts) / {BUCKET_S}) * {BUCKET_S})"


def bucket_bounds(start: object, end: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Widen ``[start, end)`` to whole 15-minute buckets (floor the start, ceil the end), in UTC."""
    s, e = instant(start, "start"), instant(end, "end")
    if e < s:
        raise StoreError(f"end: {end!r} is before start {start!r}")
    return s.floor(f"{BUCKET_S}s"), e.ceil(f"{BUCKET_S}s")


def refresh_rollups(bind: Bind, start: object, end: object, *, tags: Sequence[str] | None = None) -> int:
    """(Re)compute the 15-minute rollups (``n``, ``mean``, ``min``, ``max``) of every bucket touching
    ``[start, end)``, from the raw measurements, in one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE``.

    Idempotent. Buckets are aligned to UTC quarter hours: ``ts_start = floor(ts / 900 s) * 900 s``.
    A bucket whose measurements were all deleted keeps its old rollup (the store never deletes measurements).

    Returns
    -------
    int
        Number of bucket rows inserted or updated.
    """
    s, e = bucket_bounds(start, end)
    with _transaction(bind) as conn:
        d = conn.dialect.name
        where = "ts >= :s AND ts < :e"
        params: dict = {"s": _bind_instant(d, s), "e": _bind_instant(d, e)}
        if tags is not None:
            params["ids"] = list(point_ids(conn, tags).values()) or [-1]
            where += " AND point_id IN :ids"
        q = sa.text(
            f"INSERT INTO rollup_15min (point_id, ts_start, n, mean, min, max) "
            f"SELECT point_id, {_bucket_sql(conn)}, count(*), avg(value), min(value), max(value) "
            f"FROM measurement WHERE {where} AND quality <= {MAX_ROLLUP_QUALITY} GROUP BY 1, 2 "
            f"ON CONFLICT (point_id, ts_start) DO UPDATE SET n = excluded.n, mean = excluded.mean, "
            f"min = excluded.min, max = excluded.max"
        )
        if tags is not None:
            q = q.bindparams(sa.bindparam("ids", expanding=True))
        return conn.execute(q, params).rowcount


# ---------------------------------------------------------------------------------------------- helpers
def count_rows(bind: Bind, table: str) -> int:
    """Number of rows of a store table (``table`` must be one of the schema's tables)."""
    if table not in TABLES:
        raise StoreError(f"table: unknown table {table!r}")
    with _transaction(bind) as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(TABLES[table])).scalar_one())


def data_range(bind: Bind, tz: str = "Asia/Shanghai") -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last instant of any stored measurement (in ``tz``), or None for an empty store."""
    with _transaction(bind) as conn:
        d = conn.dialect.name
        row = conn.execute(sa.text("SELECT min(ts), max(ts) FROM measurement")).one()
    if row[0] is None:
        return None
    if d == "sqlite":
        return tuple(pd.Timestamp(int(v), unit="ms", tz="UTC").tz_convert(tz) for v in row)
    return tuple(pd.Timestamp(v).tz_convert(tz) for v in row)
