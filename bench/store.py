"""Benchmark of the store: bulk writes and a 90-day enterprise query, against naive baselines in the same run.

Data: 6 enterprises x 10 points x 90 days at 15-minute steps (86,400 rows per enterprise, 518,400 in all),
so the enterprise query must select one enterprise's points out of six.

Measured on SQLite (a fresh file in a temporary folder) and, when ``ANNING_TEST_PG_URL`` names a PostgreSQL
server, on a fresh database created on it (dropped afterwards):

* bulk ``write_measurements`` of all rows (insert), and again (every row an update);
* naive baseline: one ``INSERT`` and one commit per row, through SQLAlchemy, on a few thousand rows;
* ``refresh_rollups`` over the 90 days for every point;
* ``read_enterprise`` of one enterprise over 90 days, raw and from the 15-minute rollups (best of 3);
* naive read baseline: ORM objects for the same rows, pivoted in pandas.

Run: ``.venv/bin/python bench/store.py`` (or ``make bench``, which provides a PostgreSQL server).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.store import (  # noqa: E402
    init_db,
    make_engine,
    point_ids,
    read_enterprise,
    refresh_rollups,
    write_measurements,
)
from anning_lib.store.assets import upsert  # noqa: E402
from anning_lib.store.engine import normalise_url  # noqa: E402
from anning_lib.store.schema import TABLES, Measurement  # noqa: E402

N_ENTERPRISES = 6
POINTS_PER_ENTERPRISE = 10
DAYS = 90
STEP = pd.Timedelta(minutes=15)
NAIVE_ROWS = 3_000
START = pd.Timestamp("2026-01-01T00:00:00+08:00")
QUERY_ENTERPRISE = "E03"


def seed_assets(engine) -> list[str]:
    """Enterprises E01..E06, one meter each, 10 points per meter plus one point for the naive baseline."""
    ents = [{"id": f"E{i:02d}", "name": f"企业{i}", "name_en": f"enterprise {i}", "sector": "steel"}
            for i in range(1, N_ENTERPRISES + 1)]
    devs = [{"id": f"{e['id']}-M0", "enterprise_id": e["id"], "building_id": None, "name": "meter",
             "type": "main_meter", "carrier": "electricity", "protocol": "modbus", "unit_id": 1, "params": {}}
            for e in ents]
    devs.append(dict(devs[0], id="NAIVE", enterprise_id=None))
    pts = []
    for d in devs:
        for k in range(POINTS_PER_ENTERPRISE if d["id"] != "NAIVE" else 1):
            pts.append({"tag": f"{d['id']}.p{k}_kw", "device_id": d["id"], "code": f"p{k}_kw",
                        "quantity": "active_power", "unit": "kW", "min": None, "max": None, "scale": 1.0,
                        "address": str(k), "dtype": "float32", "writable": False})
    with engine.begin() as conn:
        upsert(conn, TABLES["enterprise"], ents, ["id"])
        upsert(conn, TABLES["device"], devs, ["id"])
        upsert(conn, TABLES["point"], pts, ["tag"])
    return [p["tag"] for p in pts if not p["tag"].startswith("NAIVE")]


def make_rows(tags: list[str], seed: int = 1) -> pd.DataFrame:
    steps = int(pd.Timedelta(days=DAYS) / STEP)
    ts = pd.date_range(START, periods=steps, freq=STEP).tz_convert("UTC")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tag": np.repeat(np.array(tags, dtype=object), steps),
        "ts": np.tile(ts, len(tags)),
        "value": rng.normal(1000.0, 150.0, steps * len(tags)),
    })


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def naive_insert(engine, n: int) -> None:
    pid = point_ids(engine, ["NAIVE.p0_kw"])["NAIVE.p0_kw"]
    m = TABLES["measurement"]
    t = START.to_pydatetime()
    for i in range(n):
        with engine.begin() as conn:  # one statement, one commit
            conn.execute(m.insert().values(point_id=pid, ts=t + i * STEP.to_pytimedelta(), value=float(i)))


def naive_read(engine, enterprise_id: str, start, end) -> pd.DataFrame:
    ids = point_ids(engine)
    ent_ids = {pid: tag for tag, pid in ids.items() if tag.startswith(enterprise_id + "-")}
    with Session(engine) as s:
        objs = s.scalars(sa.select(Measurement).where(
            Measurement.point_id.in_(ent_ids), Measurement.ts >= start, Measurement.ts < end)).all()
        recs = [(ent_ids[o.point_id], o.ts, o.value) for o in objs]
    df = pd.DataFrame(recs, columns=["tag", "ts", "value"])
    return df.pivot(index="ts", columns="tag", values="value").tz_convert("Asia/Shanghai")


def run(label: str, engine) -> list[tuple]:
    out = []

    def rec(op, rows, secs):
        out.append((label, op, rows, secs))
        print(f"  {label:<10} {op:<46} {rows:>9,} rows {secs:8.3f} s", file=sys.stderr)

    init_db(engine)
    tags = seed_assets(engine)
    df = make_rows(tags)
    end = START + pd.Timedelta(days=DAYS)
    secs, n = timed(lambda: write_measurements(engine, df))
    rec("bulk write_measurements (new rows)", n, secs)
    df2 = df.assign(value=df["value"] + 1.0)
    secs, n = timed(lambda: write_measurements(engine, df2))
    rec("bulk write_measurements (all rows updated)", n, secs)
    secs, _ = timed(lambda: naive_insert(engine, NAIVE_ROWS))
    rec("naive: one INSERT + commit per row", NAIVE_ROWS, secs)
    secs, n = timed(lambda: refresh_rollups(engine, START, end))
    rec("refresh_rollups, 90 d, all points (buckets)", n, secs)
    secs, w = timed(lambda: read_enterprise(engine, QUERY_ENTERPRISE, START, end), repeat=3)
    rec(f"read_enterprise {QUERY_ENTERPRISE} raw, 90 d", int(w.count().sum()), secs)
    secs, w15 = timed(lambda: read_enterprise(engine, QUERY_ENTERPRISE, START, end, resolution="15min"), 3)
    rec(f"read_enterprise {QUERY_ENTERPRISE} 15min rollups, 90 d", int(w15.count().sum()), secs)
    secs, wn = timed(lambda: naive_read(engine, QUERY_ENTERPRISE, START, end), repeat=3)
    rec("naive read: ORM objects + pandas pivot", int(wn.count().sum()), secs)
    assert w.shape == (DAYS * 96, POINTS_PER_ENTERPRISE) and np.allclose(w.to_numpy(), w15.to_numpy())
    assert np.allclose(wn.to_numpy(), w.to_numpy())
    return out


def main() -> int:
    results, notes = [], []
    print(f"store benchmark: {N_ENTERPRISES} enterprises x {POINTS_PER_ENTERPRISE} points x {DAYS} days at "
          f"15 min = {N_ENTERPRISES * POINTS_PER_ENTERPRISE * DAYS * 96:,} rows", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="anning-bench-") as tmp:
        eng = make_engine(f"sqlite:///{Path(tmp) / 'bench.sqlite'}")
        try:
            results += run(f"SQLite {sqlite3.sqlite_version}", eng)
        finally:
            eng.dispose()
    pg_url = os.environ.get("ANNING_TEST_PG_URL")
    if pg_url:
        server = normalise_url(pg_url)
        name = f"anning_bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            version = c.exec_driver_sql("show server_version").scalar().split()[0]
            fsync = c.exec_driver_sql("show fsync").scalar()
        eng = make_engine(server.set(database=name))
        try:
            results += run(f"PG {version}", eng)
        finally:
            eng.dispose()
            with admin.connect() as c:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
        notes.append(f"PostgreSQL server runs with fsync={fsync}: per-row commits are cheaper here than on a "
                     "production server")
    else:
        print("(ANNING_TEST_PG_URL not set: PostgreSQL skipped; `make bench` provides a server)", file=sys.stderr)

    print()
    print(f"{'backend':<13} {'operation':<46} {'rows':>9} {'seconds':>9} {'rows/s':>11}")
    print("-" * 92)
    for label, op, rows, secs in results:
        print(f"{label:<13} {op:<46} {rows:>9,} {secs:>9.3f} {rows / secs:>11,.0f}")
    print()
    by = {(lbl, op): rows / secs for lbl, op, rows, secs in results}
    for lbl in dict.fromkeys(r[0] for r in results):
        bulk = by[(lbl, "bulk write_measurements (new rows)")]
        naive = by[(lbl, "naive: one INSERT + commit per row")]
        read = next(v for (lb, op), v in by.items() if lb == lbl and op.startswith("read_enterprise") and "raw" in op)
        nread = by[(lbl, "naive read: ORM objects + pandas pivot")]
        print(f"{lbl}: bulk write {bulk / naive:,.0f}x the naive per-row insert; "
              f"read_enterprise {read / nread:,.1f}x the naive ORM read")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
