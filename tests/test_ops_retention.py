"""Retention: pruning raw rows keeps every 15-minute value equal to its value before pruning (issue 12)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.errors import StoreError
from anning_lib.ops.retention import cutoff_for, prune_measurements
from anning_lib.store import init_db, refresh_rollups, write_measurements
from anning_lib.store.schema import TABLES

T0 = pd.Timestamp("2026-10-01T00:00:00Z")


def minute_data() -> pd.DataFrame:
    """Three days of 1-minute readings of two points (a sine and a ramp), with a gap."""
    ts = pd.date_range(T0, T0 + pd.Timedelta("3D"), freq="1min", inclusive="left")
    k = np.arange(len(ts))
    a = pd.DataFrame({"ts": ts, "tag": "E01-M0.p_kw", "value": 1000 + 300 * np.sin(k / 50.0)})
    b = pd.DataFrame({"ts": ts, "tag": "E02-M0.p_kw", "value": k * 0.5})
    b = b[(b["ts"] < T0 + pd.Timedelta("30h")) | (b["ts"] >= T0 + pd.Timedelta("31h"))]       # an hour missing
    return pd.concat([a, b], ignore_index=True)


def by_hand(df: pd.DataFrame) -> pd.DataFrame:
    """15-minute buckets computed here with pandas: n, mean, min, max per tag and UTC quarter-hour."""
    g = df.assign(ts_start=df["ts"].dt.floor("15min")).groupby(["tag", "ts_start"])["value"]
    return g.agg(n="count", mean="mean", min="min", max="max").reset_index()


def stored_rollups(engine) -> pd.DataFrame:
    r, p = TABLES["rollup_15min"], TABLES["point"]
    q = sa.select(p.c.tag, r.c.ts_start, r.c.n, r.c.mean, r.c.min, r.c.max).join(p, p.c.id == r.c.point_id)
    with engine.connect() as conn:
        out = pd.DataFrame([tuple(x) for x in conn.execute(q)], columns=["tag", "ts_start", "n", "mean", "min", "max"])
    out["ts_start"] = pd.to_datetime(out["ts_start"], utc=True)
    return out.sort_values(["tag", "ts_start"], ignore_index=True)


def test_cutoff_is_a_quarter_hour_and_refuses_nonsense():
    assert cutoff_for(1, pd.Timestamp("2026-10-03T12:07:30Z")) == pd.Timestamp("2026-10-02T12:00:00Z")
    with pytest.raises(StoreError, match="keep_days"):
        cutoff_for(0)
    with pytest.raises(StoreError, match="now"):
        cutoff_for(1, pd.Timestamp("2026-10-03T12:00"))


def test_pruning_keeps_every_rollup_and_counts_late_rows(engine, tiny_park):
    init_db(engine, tiny_park)
    data = minute_data()
    write_measurements(engine, data)
    refresh_rollups(engine, T0, T0 + pd.Timedelta("3D"))
    # a reading that arrives late for day 1, after the rollups were made: pruning must count it before it goes
    late = pd.DataFrame({"ts": [T0 + pd.Timedelta("10h7min30s")], "tag": ["E02-M0.p_kw"], "value": [99_999.0]})
    write_measurements(engine, late)
    everything = pd.concat([data, late], ignore_index=True)
    now = T0 + pd.Timedelta("3D") + pd.Timedelta("3min")          # keep 1 day: cut-off at the start of day 3
    m = TABLES["measurement"]

    dry = prune_measurements(engine, 1, now=now, dry_run=True)
    assert dry["cutoff"] == T0 + pd.Timedelta("2D") and dry["rows"] == int((everything["ts"] < dry["cutoff"]).sum())
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(m)).scalar_one() == len(everything)

    res = prune_measurements(engine, 1, now=now)
    assert res["rows"] == dry["rows"]
    with engine.connect() as conn:
        left = pd.to_datetime([r for (r,) in conn.execute(sa.select(m.c.ts))], utc=True)
    assert left.min() >= res["cutoff"] and len(left) == int((everything["ts"] >= res["cutoff"]).sum())

    want = by_hand(everything).sort_values(["tag", "ts_start"], ignore_index=True)
    got = stored_rollups(engine)
    assert list(got["ts_start"]) == list(want["ts_start"]) and list(got["tag"]) == list(want["tag"])
    assert got["n"].tolist() == want["n"].tolist()
    for col in ("mean", "min", "max"):
        assert got[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-12), col
    bucket = got[(got["tag"] == "E02-M0.p_kw") & (got["ts_start"] == T0 + pd.Timedelta("10h"))].iloc[0]
    assert bucket["n"] == 16 and bucket["max"] == 99_999.0            # the late row is in its bucket

    # a second pass finds nothing more to do
    assert prune_measurements(engine, 1, now=now)["rows"] == 0
