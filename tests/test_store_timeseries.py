"""Time-series write/read and 15-minute rollups (SQLite and PostgreSQL).

Expected values are worked out by hand in the comments, not taken from a run of the code.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.errors import StoreError
from anning_lib.store import (
    count_rows,
    read_enterprise,
    read_series,
    refresh_rollups,
    write_measurements,
)

UTC = dt.timezone.utc
T0 = pd.Timestamp("2026-01-01T00:00:00Z")
MIN5 = pd.Timedelta(minutes=5)


def _frame(rows):
    return pd.DataFrame(rows, columns=["tag", "ts", "value"])


def _stored(engine):
    with engine.connect() as c:
        return sorted(tuple(r) for r in c.execute(sa.text("select point_id, value, quality from measurement")))


def test_upsert_is_idempotent_and_updates(db):
    rows = [
        ("G0.p_kw", T0, 1.0), ("G0.p_kw", T0 + MIN5, 2.0), ("G0.p_kw", T0 + 2 * MIN5, 3.0),
        ("E01-M0.p_kw", T0, 10.0), ("E01-M0.p_kw", T0 + MIN5, 20.0),
        ("E01-M0.p_kw", T0 + MIN5, 21.0),  # same point and instant again within the frame: last one wins
        ("E01-M0.p_kw", T0 + 2 * MIN5, 30.0),
    ]
    unique = len({(tag, ts) for tag, ts, _v in rows})
    assert unique == 6
    assert write_measurements(db, _frame(rows)) == unique
    assert write_measurements(db, _frame(rows)) == unique
    assert count_rows(db, "measurement") == unique
    wide = read_series(db, ["E01-M0.p_kw", "G0.p_kw"], T0, T0 + pd.Timedelta(hours=1), tz="UTC")
    assert list(wide.columns) == ["E01-M0.p_kw", "G0.p_kw"]
    assert wide["E01-M0.p_kw"].tolist() == [10.0, 21.0, 30.0]
    # an update of one instant replaces its value and quality, and adds no row
    upd = pd.DataFrame({"tag": ["G0.p_kw"], "ts": [T0 + MIN5], "value": [99.5], "quality": [2]})
    assert write_measurements(db, upd) == 1
    assert count_rows(db, "measurement") == unique
    wide = read_series(db, "G0.p_kw", T0, T0 + pd.Timedelta(hours=1), tz="UTC")
    assert wide["G0.p_kw"].tolist() == [1.0, 99.5, 3.0]
    with db.connect() as c:
        q = c.execute(sa.text("select quality from measurement where value = 99.5")).scalar_one()
    assert q == 2


def test_write_by_point_id_and_exact_floats(db):
    from anning_lib.store import point_ids

    pid = point_ids(db, ["E02-M0.p_kw"])["E02-M0.p_kw"]
    values = [0.1 + 0.2, 1 / 3, -1e-300, 123456789.123456789]
    df = pd.DataFrame({"point_id": pid, "ts": [T0 + i * MIN5 for i in range(4)], "value": values})
    assert write_measurements(db, df) == 4
    got = read_series(db, "E02-M0.p_kw", T0, T0 + pd.Timedelta(hours=1))["E02-M0.p_kw"].tolist()
    assert got == values  # bit-exact round trip


def test_unknown_tag_names_the_tag_and_writes_nothing(db):
    write_measurements(db, _frame([("G0.p_kw", T0, 5.0)]))
    before = _stored(db)
    bad = _frame([("G0.p_kw", T0, 6.0), ("G0.p_kw", T0 + MIN5, 7.0), ("NOPE-9.p_kw", T0, 1.0)])
    with pytest.raises(StoreError, match=r"NOPE-9\.p_kw"):
        write_measurements(db, bad)
    assert _stored(db) == before
    with pytest.raises(StoreError, match=r"'NOPE-9\.p_kw'"):
        read_series(db, ["G0.p_kw", "NOPE-9.p_kw"], T0, T0 + MIN5)


def test_naive_timestamps_rejected(db):
    naive = _frame([("G0.p_kw", pd.Timestamp("2026-01-01 00:00"), 1.0)])
    with pytest.raises(StoreError, match=r"naive timestamp .*2026-01-01"):
        write_measurements(db, naive)
    mixed = pd.DataFrame({"tag": ["G0.p_kw", "G0.p_kw"], "value": [1.0, 2.0],
                          "ts": [dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 1, 2, 3, 4)]})
    with pytest.raises(StoreError, match=r"naive timestamp datetime\.datetime\(2026, 1, 2, 3, 4\)"):
        write_measurements(db, mixed)
    assert count_rows(db, "measurement") == 0
    with pytest.raises(StoreError, match="start: naive"):
        read_series(db, "G0.p_kw", "2026-01-01 00:00", T0)


def test_nan_skipped_or_rejected_and_bad_values(db):
    write_measurements(db, _frame([("G0.p_kw", T0 + MIN5, 4.0)]))
    df = _frame([("G0.p_kw", T0, 1.0), ("G0.p_kw", T0 + MIN5, np.nan), ("G0.p_kw", T0 + 2 * MIN5, 3.0)])
    with pytest.raises(StoreError, match="NaN for G0.p_kw"):
        write_measurements(db, df, nan="raise")
    assert write_measurements(db, df) == 2  # the NaN row is a missing reading: skipped
    wide = read_series(db, "G0.p_kw", T0, T0 + pd.Timedelta(hours=1))
    assert wide["G0.p_kw"].tolist() == [1.0, 4.0, 3.0]  # 4.0 kept at the NaN instant
    with pytest.raises(StoreError, match="infinite"):
        write_measurements(db, _frame([("G0.p_kw", T0, np.inf)]))
    with pytest.raises(StoreError, match="'abc' is not a number"):
        write_measurements(db, _frame([("G0.p_kw", T0, "abc")]))
    with pytest.raises(StoreError, match="quality"):
        write_measurements(db, pd.DataFrame({"tag": ["G0.p_kw"], "ts": [T0], "value": [1.0], "quality": [-1]}))
    with pytest.raises(StoreError, match="missing column"):
        write_measurements(db, pd.DataFrame({"tag": ["G0.p_kw"], "value": [1.0]}))
    assert count_rows(db, "measurement") == 3
    assert write_measurements(db, _frame([])) == 0


def test_read_series_shows_asia_shanghai(db):
    write_measurements(db, _frame([("E01-M0.p_kw", T0, 42.0)]))
    wide = read_series(db, ["E01-M0.p_kw", "G0.p_kw"], "2025-12-31T16:00Z", "2026-01-01T16:00Z")
    assert wide.index.name == "ts"
    assert str(wide.index.tz) == "Asia/Shanghai"
    assert len(wide) == 1
    # UTC midnight is 08:00 in Beijing (UTC+8, no daylight saving)
    assert wide.index[0].strftime("%Y-%m-%d %H:%M %z") == "2026-01-01 08:00 +0800"
    assert wide.iloc[0].tolist()[0] == 42.0 and np.isnan(wide.iloc[0].tolist()[1])
    # half-open interval: an end equal to the instant excludes it
    assert read_series(db, "E01-M0.p_kw", "2025-12-31T00:00Z", T0).empty


def test_rollups_by_hand(db):
    # E01-M0.p_kw: 1..7 every 5 min from 00:00 UTC
    #   [00:00, 00:15) -> 1, 2, 3: n 3, mean 2, min 1, max 3
    #   [00:15, 00:30) -> 4, 5, 6: n 3, mean 5, min 4, max 6
    #   [00:30, 00:45) -> 7:       n 1, mean 7, min 7, max 7
    # E02-M0.p_kw: 10 at 00:00:00 and 20 at 00:14:59.999 -> one bucket [00:00, 00:15): n 2, mean 15
    rows = [("E01-M0.p_kw", T0 + i * MIN5, float(i + 1)) for i in range(7)]
    rows += [("E02-M0.p_kw", T0, 10.0), ("E02-M0.p_kw", T0 + pd.Timedelta("14min 59.999s"), 20.0)]
    write_measurements(db, _frame(rows))
    assert refresh_rollups(db, T0, T0 + pd.Timedelta(hours=1)) == 4
    assert refresh_rollups(db, T0, T0 + pd.Timedelta(hours=1)) == 4
    assert count_rows(db, "rollup_15min") == 4
    end = T0 + pd.Timedelta(hours=1)
    tags = ["E01-M0.p_kw", "E02-M0.p_kw"]
    mean = read_series(db, tags, T0, end, resolution="15min")
    assert [t.strftime("%H:%M") for t in mean.index] == ["08:00", "08:15", "08:30"]
    assert mean["E01-M0.p_kw"].tolist() == [2.0, 5.0, 7.0]
    assert mean["E02-M0.p_kw"].iloc[0] == 15.0 and mean["E02-M0.p_kw"].iloc[1:].isna().all()
    assert read_series(db, tags, T0, end, resolution="15min", stat="min")["E01-M0.p_kw"].tolist() == [1, 4, 7]
    assert read_series(db, tags, T0, end, resolution="15min", stat="max")["E01-M0.p_kw"].tolist() == [3, 6, 7]
    assert read_series(db, tags, T0, end, resolution="15min", stat="n")["E01-M0.p_kw"].tolist() == [3, 3, 1]
    # change 6 -> 12 at 00:25 and refresh from an unaligned start (00:20): the whole 00:15 bucket is redone
    # [00:15, 00:30) -> 4, 5, 12: mean 7, max 12
    write_measurements(db, _frame([("E01-M0.p_kw", T0 + 5 * MIN5, 12.0)]))
    assert refresh_rollups(db, T0 + 4 * MIN5, T0 + 5 * MIN5, tags=["E01-M0.p_kw"]) == 1
    assert read_series(db, tags, T0, end, resolution="15min")["E01-M0.p_kw"].tolist() == [2.0, 7.0, 7.0]
    assert read_series(db, tags, T0, end, resolution="15min", stat="max")["E01-M0.p_kw"].tolist() == [3, 12, 7]
    assert count_rows(db, "rollup_15min") == 4


def test_read_enterprise(db):
    rows = [("E01-M0.p_kw", T0, 1.0), ("E01-L1.p_kw", T0, 2.0), ("E01-M0.e_kwh", T0, 3.0), ("E02-M0.p_kw", T0, 4.0)]
    write_measurements(db, _frame(rows))
    end = T0 + MIN5
    wide = read_enterprise(db, "E01", T0, end)
    assert list(wide.columns) == ["E01-L1.p_kw", "E01-M0.e_kwh", "E01-M0.p_kw"]
    assert wide.iloc[0].tolist() == [2.0, 3.0, 1.0]
    power = read_enterprise(db, "E01", T0, end, quantity="active_power")
    assert list(power.columns) == ["E01-L1.p_kw", "E01-M0.p_kw"]
    with pytest.raises(StoreError, match="'E77'"):
        read_enterprise(db, "E77", T0, end)
    with pytest.raises(StoreError, match="'temperature'"):
        read_enterprise(db, "E01", T0, end, quantity="temperature")


def test_bad_read_arguments(db):
    with pytest.raises(StoreError, match="resolution"):
        read_series(db, "G0.p_kw", T0, T0 + MIN5, resolution="1h")
    with pytest.raises(StoreError, match="before start"):
        read_series(db, "G0.p_kw", T0 + MIN5, T0)
    empty = read_series(db, ["G0.p_kw"], T0, T0 + MIN5)
    assert empty.empty and list(empty.columns) == ["G0.p_kw"] and str(empty.index.tz) == "Asia/Shanghai"


def test_write_joins_callers_transaction(db):
    with pytest.raises(RuntimeError), db.begin() as conn:
        write_measurements(conn, _frame([("G0.p_kw", T0, 1.0)]))
        raise RuntimeError("caller fails after the write")
    assert count_rows(db, "measurement") == 0


def test_rollup_buckets_before_1970_and_on_postgresql_13(db, monkeypatch):
    # 1969-12-31 23:50 and 23:55 UTC fall in the bucket [23:45, 00:00); 00:00 starts the next one
    e = pd.Timestamp("1970-01-01T00:00Z")
    rows = [("G0.p_kw", e - 2 * MIN5, 1.0), ("G0.p_kw", e - MIN5, 2.0), ("G0.p_kw", e, 5.0)]
    write_measurements(db, _frame(rows))
    if db.dialect.name == "postgresql":  # the to_timestamp(floor(epoch / 900) * 900) path of PostgreSQL < 14
        monkeypatch.setattr(db.dialect, "server_version_info", (13, 11))
    assert refresh_rollups(db, e - pd.Timedelta(hours=1), e + pd.Timedelta(hours=1)) == 2
    got = read_series(db, "G0.p_kw", e - pd.Timedelta(hours=1), e + pd.Timedelta(hours=1),
                      resolution="15min", tz="UTC")["G0.p_kw"]
    assert [t.strftime("%H:%M") for t in got.index] == ["23:45", "00:00"]
    assert got.tolist() == [1.5, 5.0]


def test_instants_closer_than_storage_resolution_collapse(db):
    # 0.1 us and 0.9 us after midnight are one microsecond (PostgreSQL) and one millisecond (SQLite): last wins
    ts = pd.to_datetime(["2026-01-01T00:00:00.0000001Z", "2026-01-01T00:00:00.0000009Z"])
    df = pd.DataFrame({"tag": ["G0.p_kw", "G0.p_kw"], "ts": ts, "value": [1.0, 2.0]})
    assert write_measurements(db, df) == 1
    assert count_rows(db, "measurement") == 1
    assert read_series(db, "G0.p_kw", T0, T0 + MIN5)["G0.p_kw"].tolist() == [2.0]
    # 0.2 ms and 0.7 ms: one row on SQLite (whole ms), two on PostgreSQL (us)
    ts = pd.to_datetime(["2026-01-01T00:01:00.0002Z", "2026-01-01T00:01:00.0007Z"])
    df = pd.DataFrame({"tag": ["G0.p_kw", "G0.p_kw"], "ts": ts, "value": [3.0, 4.0]})
    expected = 1 if db.dialect.name == "sqlite" else 2
    assert write_measurements(db, df) == expected
    assert count_rows(db, "measurement") == 1 + expected


def test_unless_worse_keeps_good_data_across_and_within_frames(db):
    t = pd.Timestamp("2026-11-01T00:00:00Z")
    write_measurements(db, pd.DataFrame({"tag": ["E01-M0.p_kw"], "ts": [t], "value": [10.0], "quality": [0]}))
    late_bad = pd.DataFrame({"tag": ["E01-M0.p_kw"], "ts": [t], "value": [99.0], "quality": [2]})
    write_measurements(db, late_bad, replace="unless_worse")
    # within one frame: good then bad for the same instant -> good kept; uncertain then good -> good wins
    t2 = t + pd.Timedelta("1min")
    frame = pd.DataFrame({"tag": ["E01-M0.p_kw"] * 4, "ts": [t2, t2, t2 + pd.Timedelta("1min")] + [t2],
                          "value": [20.0, 98.0, 30.0, 97.0], "quality": [0, 2, 1, 3]})
    write_measurements(db, frame, replace="unless_worse")
    s = read_series(db, ["E01-M0.p_kw"], t, t + pd.Timedelta("1h"), tz="UTC")["E01-M0.p_kw"]
    assert s.tolist() == [10.0, 20.0, 30.0]
    write_measurements(db, late_bad, replace="always")          # an explicit correction still replaces
    assert read_series(db, ["E01-M0.p_kw"], t, t2, tz="UTC")["E01-M0.p_kw"].tolist() == [99.0]


def test_rollups_leave_out_bad_and_stale_readings(db):
    t = pd.Timestamp("2026-11-01T00:00:00Z")
    # one quarter-hour: good 10, uncertain 20, bad 1000, stale 5000 -> mean of 10 and 20 = 15 from n = 2
    frame = pd.DataFrame({"tag": ["E01-M0.p_kw"] * 4, "ts": [t + pd.Timedelta(minutes=m) for m in (0, 1, 2, 3)],
                          "value": [10.0, 20.0, 1000.0, 5000.0], "quality": [0, 1, 2, 3]})
    write_measurements(db, frame)
    refresh_rollups(db, t, t + pd.Timedelta("15min"))
    mean = read_series(db, ["E01-M0.p_kw"], t, t + pd.Timedelta("15min"), resolution="15min", tz="UTC")
    n = read_series(db, ["E01-M0.p_kw"], t, t + pd.Timedelta("15min"), resolution="15min", stat="n", tz="UTC")
    assert mean.iloc[0, 0] == 15.0 and n.iloc[0, 0] == 2
