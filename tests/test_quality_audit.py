"""The data-quality audit of stored history (anning_lib.quality.audit) on hand-made quarter-hours; expected values
are worked out in comments. The two store reads run on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from anning_lib.park import load_park
from anning_lib.quality.audit import (
    ALARM_SUMMARY_COLUMNS,
    alarm_summary,
    completeness,
    completeness_by_period,
    device_completeness,
    flatline_findings,
    ingest_health,
    missing_runs,
    quality_counts,
    range_findings,
)
from anning_lib.quality.rules import AlarmRule
from anning_lib.store import init_db, write_measurements
from anning_lib.store.schema import TABLES

TZ = "Asia/Shanghai"
START = pd.Timestamp("2026-10-01 00:00", tz=TZ)
END = START + pd.Timedelta("2h")                       # 8 quarter-hours
Q = [START + pd.Timedelta(minutes=15 * i) for i in range(8)]


@pytest.fixture
def counts() -> pd.DataFrame:
    """Samples per quarter-hour, as the rollups' ``n``: A.x in q0, q1, q4, q5, q6; A.y in all; C.w from q3 on;
    B.z never (a column of NaN, as read_series gives). Rows exist only where some tag has data (all 8 here)."""
    nan = np.nan
    return pd.DataFrame({"A.x": [60, 60, nan, nan, 60, 60, 60, nan], "A.y": [1] * 8,
                         "C.w": [nan, nan, nan, 4, 4, 4, 4, 4], "B.z": [nan] * 8},
                        index=pd.DatetimeIndex(Q, name="ts"))


def test_completeness_per_point(counts):
    out = completeness(counts, START, END).set_index("tag")
    assert out.loc["A.x", "quarters"] == 8 and out.loc["A.x", "quarters_with_data"] == 5
    assert out.loc["A.x", "completeness_frac"] == pytest.approx(5 / 8)
    assert (out.loc["A.x", "first"], out.loc["A.x", "last"]) == (Q[0], Q[6])
    assert out.loc["A.y", "completeness_frac"] == 1.0 and out.loc["A.x", "device_id"] == "A"
    assert out.loc["B.z", "completeness_frac"] == 0.0 and pd.isna(out.loc["B.z", "first"])
    # a quarter-hour missing from the frame altogether is missing for every tag
    assert completeness(counts.drop(index=[Q[7]]), START, END).set_index("tag").loc["A.y", "quarters_with_data"] == 7


def test_device_completeness_needs_every_point(counts):
    out = device_completeness(counts, START, END).set_index("device_id")
    assert out.loc["A", "points"] == 2
    assert out.loc["A", "completeness_frac"] == pytest.approx(5 / 8)     # both A.x and A.y: as A.x
    assert (out.loc["A", "worst_tag"], out.loc["A", "worst_completeness_frac"]) == ("A.x", pytest.approx(5 / 8))
    assert out.loc["B", "completeness_frac"] == 0.0
    assert out.loc["C", "completeness_frac"] == pytest.approx(5 / 8)


def test_missing_runs_longest_first_with_the_edges(counts):
    """B.z: the whole 2 h; C.w: q0-q2 before its first sample (3); A.x: q2-q3 inside (2) and q7 at the end (1)."""
    out = missing_runs(counts, START, END)
    got = [(r.tag, r.gap_start, r.gap_end, r.missing_quarters, r.duration_h) for r in out.itertuples()]
    assert got == [("B.z", Q[0], END, 8, 2.0), ("C.w", Q[0], Q[3], 3, 0.75), ("A.x", Q[2], Q[4], 2, 0.5),
                   ("A.x", Q[7], END, 1, 0.25)]


def _rule(**kw) -> AlarmRule:
    return AlarmRule.model_validate({"name": "test", "severity": "medium", **kw})


def test_range_findings_on_the_rollups_min_and_max():
    """GRID.p_kw, limits -100..1000: q1's smallest sample -150 and q2's largest 1200 are out; q0 and q3 are in.
    The rule without limits uses the point's own (±440,000 kW in the park model): q3's 500,000 is out."""
    park = load_park()
    idx = pd.DatetimeIndex(Q[:4], name="ts")
    mn = pd.DataFrame({"GRID.p_kw": [0.0, -150.0, 100.0, 200.0]}, index=idx)
    mx = pd.DataFrame({"GRID.p_kw": [900.0, 500.0, 1200.0, 500_000.0]}, index=idx)
    rules = [_rule(id="r.explicit", target={"tag": "GRID.p_kw"}, condition={"kind": "range", "low": -100,
                                                                              "high": 1000}),
             _rule(id="r.model", target={"device_type": "grid_meter", "point": "p_kw"}, condition={"kind": "range"}),
             _rule(id="r.off", target={"tag": "GRID.p_kw"}, condition={"kind": "range", "high": 1}, enabled=False),
             _rule(id="r.absent", target={"tag": "SES.p_kw"}, condition={"kind": "range", "high": 1})]
    out = range_findings(mn, mx, rules, park).set_index("rule_id")
    assert list(out.index) == ["r.explicit", "r.model"]           # disabled rule and absent column not checked
    r = out.loc["r.explicit"]
    assert (r["tag"], r["quarters"], r["first"], r["last"]) == ("GRID.p_kw", 3, Q[1], Q[3])  # q3 max 500,000 too
    assert (r["lowest"], r["highest"], r["low"], r["high"]) == (-150.0, 500_000.0, -100.0, 1000.0)
    m = out.loc["r.model"]
    assert (m["quarters"], m["first"], m["low"], m["high"]) == (1, Q[3], -440_000.0, 440_000.0)


def test_flatline_findings_widen_the_window_on_means():
    """Means 1, 2, 3, 3, 3, 3, 3, 4. With a 3,600 s window (five means, q_k-4..q_k) only q6's window q2..q6 is
    constant; with 1,800 s (three means) q4, q5 and q6 are."""
    park = load_park()
    means = pd.DataFrame({"GRID.p_kw": [1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 4.0]}, index=pd.DatetimeIndex(Q, name="ts"))
    rules = [_rule(id="flat", target={"device_type": "grid_meter", "point": "p_kw"},
                   condition={"kind": "flatline", "window_s": 900, "min_change": 0})]
    out = flatline_findings(means, rules, park)
    assert len(out) == 1
    r = out.iloc[0]
    assert (r["tag"], r["window_s"], r["quarters"], r["first"], r["last"], r["value"]) == (
        "GRID.p_kw", 3600.0, 1, Q[6], Q[6], 3.0)
    r = flatline_findings(means, rules, park, min_window_s=1800).iloc[0]
    assert (r["window_s"], r["quarters"], r["first"], r["last"]) == (1800.0, 3, Q[4], Q[6])
    assert flatline_findings(means.drop(columns="GRID.p_kw"), rules, park).empty


def test_alarm_summary_by_rule_and_severity():
    t0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    rows = [{"rule_id": "r1", "severity": "high", "state": "active_unack", "raised_at": t0, "target": "A.x"},
            {"rule_id": "r1", "severity": "high", "state": "active_ack", "raised_at": t0 - dt.timedelta(hours=1),
             "target": "A.y"},
            {"rule_id": "r2", "severity": "low", "state": "cleared_unack", "raised_at": t0, "target": "B.z"},
            {"rule_id": None, "severity": "medium", "state": "active_unack", "raised_at": t0, "target": "GRID"}]
    out = alarm_summary(rows)
    assert list(out["rule_id"]) == ["r1", "-", "r2"]
    r1 = out.iloc[0]
    assert (r1["open"], r1["active_unack"], r1["active_ack"], r1["cleared_unack"]) == (2, 1, 1, 0)
    assert r1["oldest_raised_at"] == pd.Timestamp(t0 - dt.timedelta(hours=1)) and r1["targets"] == "A.x, A.y"
    assert str(r1["oldest_raised_at"].tz) == TZ
    assert list(alarm_summary([]).columns) == ALARM_SUMMARY_COLUMNS and alarm_summary([]).empty


def test_quality_counts_and_ingest_health_from_the_store(engine):
    park = load_park()
    init_db(engine, park)
    ts = pd.date_range("2026-10-01 00:00", periods=4, freq="1min", tz="UTC")
    write_measurements(engine, pd.DataFrame({"tag": "GRID.p_kw", "ts": ts, "value": 1.0, "quality": [0, 1, 2, 3]}))
    write_measurements(engine, pd.DataFrame({"tag": "SES.p_kw", "ts": ts[:2], "value": 1.0, "quality": 0}))
    out = quality_counts(engine, ["GRID.p_kw", "SES.p_kw", "PARK-PV.p_kw"], ts[0], ts[3]).set_index("tag")
    # [ts0, ts3): the stale sample at ts3 is outside
    assert list(out.loc["GRID.p_kw", ["n_good", "n_uncertain", "n_bad", "n_stale"]]) == [1, 1, 1, 0]
    assert out.loc["GRID.p_kw", "bad_frac"] == pytest.approx(1 / 3)
    assert out.loc["SES.p_kw", "n_good"] == 2 and out.loc["SES.p_kw", "bad_frac"] == 0.0
    assert out.loc["PARK-PV.p_kw", "n_good"] == 0 and np.isnan(out.loc["PARK-PV.p_kw", "bad_frac"])

    assert ingest_health(engine).empty
    seen = dt.datetime(2026, 10, 1, 0, 0, tzinfo=dt.UTC)
    with engine.begin() as conn:
        conn.execute(TABLES["ingest_health"].insert(), [
            {"source": "modbus:127.0.0.1:5020", "protocol": "modbus", "connected": True, "last_seen": seen,
             "n_samples": 100, "n_bad": 1, "n_errors": 0, "last_error": "", "lag_s": 0.2, "updated_at": seen},
            {"source": "opcua:anning", "protocol": "opcua", "connected": False, "last_seen": None, "n_samples": 0,
             "n_bad": 0, "n_errors": 3, "last_error": "refused", "lag_s": None, "updated_at": seen}])
    health = ingest_health(engine, now=seen + dt.timedelta(seconds=90), tz=TZ)
    assert list(health["source"]) == ["opcua:anning", "modbus:127.0.0.1:5020"]     # disconnected first
    assert np.isnan(health.iloc[0]["age_s"]) and health.iloc[1]["age_s"] == pytest.approx(90.0)
    assert str(health.iloc[1]["last_seen"].tz) == TZ


def test_completeness_by_period_per_device(counts):
    """Hours: 00:00-01:00 is q0-q3, 01:00-02:00 q4-q7. A (A.x and A.y): 2/4 then 3/4; C: 1/4 then 4/4; B: 0."""
    out = completeness_by_period(counts, START, END, freq="1h")
    assert list(out.index) == [Q[0], Q[4]] and list(out.columns) == ["A", "C", "B"]
    assert list(out["A"]) == [0.5, 0.75] and list(out["C"]) == [0.25, 1.0] and list(out["B"]) == [0.0, 0.0]
