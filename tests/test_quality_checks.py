"""Quality detectors and batch checks on tiny hand-made sequences; expected values are worked out in comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from anning_lib.park.schema import Point
from anning_lib.quality.checks import (
    BalanceDetector,
    CommLossDetector,
    FaultDetector,
    FlatlineDetector,
    QualityDetector,
    RangeDetector,
    SpikeDetector,
    StaleDetector,
    balance_violation,
    flatline_flags,
    gaps,
    make_detector,
    range_flags,
    spike_flags,
)
from anning_lib.quality.rules import (
    FlatlineCondition,
    QualityCondition,
    RangeCondition,
    SpikeCondition,
    StaleCondition,
)

T0 = 1_790_000_000.0   # an epoch second in 2026


def _series(seconds, values):
    return pd.Series(values, index=pd.to_datetime([T0 + s for s in seconds], unit="s", utc=True), dtype=float)


# ---------------------------------------------------------------------------------------------- range
def test_range_hysteresis_on_the_high_side():
    r = RangeDetector(None, 104.0, deadband=2.0)
    # 100 <= 104: fine; 105 > 104: true; 103 is inside but not below 104 - 2 = 102: still true; 101.9 <= 102: false
    assert [r.update(T0 + i, v) for i, v in enumerate([100, 105, 103, 101.9])] == [False, True, True, False]
    # back at 103 after clearing: not above 104, so false (hysteresis only holds an active alarm)
    assert r.update(T0 + 4, 103) is False


def test_range_low_side_limit_and_detail():
    r = RangeDetector(10.0, None, deadband=1.0)
    assert r.update(T0, 9.0) is True                # 9 < 10
    assert r.detail["limit"] == 10.0 and "below the low limit 10" in r.detail["text"]
    assert r.update(T0 + 1, 10.5) is True           # 10.5 < 10 + 1
    assert r.update(T0 + 2, 11.0) is False          # 11 >= 11: inside the closed interval


def test_range_skips_bad_samples_and_flags_non_finite():
    r = RangeDetector(0.0, 10.0)
    assert r.update(T0, 50.0, quality=2) is None    # BAD: no information, state unchanged
    assert r.active is False
    assert r.update(T0 + 1, math.nan) is True       # a NaN of good quality is no plausible value


def test_make_detector_range_takes_the_points_limits_and_deadband_frac():
    point = Point(id="p_kw", quantity="active_power", unit="kW", min=0.0, max=1000.0)
    det = make_detector(RangeCondition(kind="range", deadband_frac=0.01), point)
    # deadband = 1 % of (1000 - 0) = 10 kW -> clears at <= 990
    assert (det.low, det.high, det.deadband) == (0.0, 1000.0, 10.0)
    assert [det.update(T0 + i, v) for i, v in enumerate([1001, 995, 990])] == [True, True, False]
    with pytest.raises(ValueError):
        make_detector(RangeCondition(kind="range"), Point(id="x", quantity="status", unit="1"))


# ---------------------------------------------------------------------------------------------- spike
def test_spike_at_a_known_rate():
    s = SpikeDetector(max_change_per_s=10.0)
    assert s.update(T0, 100.0) is None              # first sample: no rate yet
    assert s.update(T0 + 5, 140.0) is False         # 40 / 5 s = 8 /s <= 10
    assert s.update(T0 + 10, 200.0) is True         # 60 / 5 s = 12 /s > 10
    assert s.detail["rate_per_s"] == pytest.approx(12.0)
    assert s.update(T0 + 10, 900.0) is None         # same timestamp: no rate
    assert s.update(T0 + 12, 210.0) is False        # 10 / 2 s = 5 /s (against 200, the repeat was ignored)
    assert s.update(T0 + 13, 999.0, quality=3) is None


# ---------------------------------------------------------------------------------------------- flatline
def test_flatline_with_exactly_three_samples_in_the_window():
    f = FlatlineDetector(window_s=10.0, min_change=0.0)
    assert f.update(T0, 5.0) is None                # window not yet observed for 10 s
    assert f.update(T0 + 5, 5.0) is None
    assert f.update(T0 + 10, 5.0) is True           # [0, 10] holds 0, 5, 10: span 0 <= 0
    assert f.detail["n"] == 3
    assert f.update(T0 + 15, 5.1) is False          # [5, 15]: 5, 5, 5.1 -> span 0.1 > 0
    g = FlatlineDetector(window_s=10.0, min_change=0.2)
    for i, v in enumerate([5.0, 5.0, 5.0, 5.1]):
        out = g.update(T0 + 5 * i, v)
    assert out is True                              # span 0.1 <= 0.2


def test_flatline_needs_three_samples_after_a_gap():
    f = FlatlineDetector(window_s=10.0)
    for t in (0, 5, 10):
        f.update(T0 + t, 1.0)
    assert f.update(T0 + 30, 1.0) is None           # [20, 30] holds only 30
    assert f.update(T0 + 35, 1.0) is None           # [25, 35]: 30, 35 -> 2 samples
    assert f.update(T0 + 40, 1.0) is True           # [30, 40]: 30, 35, 40


def test_flatline_running_min_max_matches_brute_force():
    rng = np.random.default_rng(4)
    t = np.cumsum(rng.uniform(0.5, 3.0, 400))
    v = np.round(rng.normal(0, 1, 400), 1)
    v[100:160] = 2.0                                # a stuck stretch
    f = FlatlineDetector(window_s=20.0, min_change=0.15)
    for i in range(len(t)):
        got = f.update(t[i], v[i])
        inw = (t >= t[i] - 20.0) & (t <= t[i])
        inw[i + 1:] = False
        if inw.sum() < 3 or t[0] > t[i] - 20.0:
            assert got is None, i
        else:
            assert got == (v[inw].max() - v[inw].min() <= 0.15), i
            assert f.detail["span"] == pytest.approx(v[inw].max() - v[inw].min())


# ---------------------------------------------------------------------------------------------- stale
def test_stale_tick():
    s = StaleDetector(max_age_s=30.0)
    assert s.tick(T0) is None                       # never seen, no start time: cannot tell
    assert s.update(T0, 1.0) is False
    assert s.tick(T0 + 29) is False
    assert s.tick(T0 + 30) is False                 # age 30 is not > 30
    assert s.tick(T0 + 30.5) is True
    assert s.update(T0 + 40, 1.0, quality=3) is True    # a STALE-quality repeat is no data: age 40 s
    assert s.update(T0 + 41, 1.0, quality=1) is False   # an uncertain sample is data
    assert StaleDetector(30.0, since_s=T0).tick(T0 + 31) is True


# ---------------------------------------------------------------------------------------------- fault, quality
def test_fault_word_decodes_its_bits():
    f = FaultDetector({1: "cell under-voltage", 4: "charge over-current"})
    assert f.update(T0, 0.0) is False
    # 0x0012 = 0b1_0010: bits 1 and 4
    assert f.update(T0 + 1, float(0x0012)) is True
    assert f.detail["bits"] == [1, 4]
    assert f.detail["text"] == "fault word 0x0012: cell under-voltage; charge over-current"
    assert f.update(T0 + 2, float(1 << 9)) is True
    assert f.detail["text"] == "fault word 0x0200: bit 9"


def test_quality_levels():
    bad = QualityDetector("bad")
    assert [bad.update(T0, 1.0, q) for q in (0, 1, 2, 3)] == [False, False, True, True]
    unc = make_detector(QualityCondition(kind="quality", at_least="uncertain"))
    assert [unc.update(T0, 1.0, q) for q in (0, 1)] == [False, True]


def test_comm_loss_follows_the_connection():
    c = CommLossDetector()
    assert c.update_health(T0, connected=False, last_error="timeout") is True
    assert c.detail["text"] == "source disconnected: timeout"
    assert c.update_health(T0 + 5, connected=True) is False


# ---------------------------------------------------------------------------------------------- balance
def test_balance_with_hand_numbers():
    # 1000 - 900 * 1.01 = 1000 - 909 = 91 kW; allowed 0.05 * max(1000, 500) = 50 kW -> violated
    bad, mismatch = balance_violation(1000.0, {"a": 900.0}, 0.01, 0.05, 500.0)
    assert bad is True and mismatch == pytest.approx(91.0)
    # loads 1200, PV 150 and BESS discharge 60 behind the meter: 1000 - 1200 + 150 + 60 = 10 kW <= 50
    bad, mismatch = balance_violation(1000.0, {"l": 1200.0}, 0.0, 0.05, 0.0, {"pv": 150.0, "bess": 60.0})
    assert bad is False and mismatch == pytest.approx(10.0)
    # small reading: 100 - 60 = 40 kW; min_kw 500 -> allowed 25 (violated), min_kw 1000 -> allowed 50 (fine)
    assert balance_violation(100.0, {"l": 60.0}, 0.0, 0.05, 500.0)[0] is True
    assert balance_violation(100.0, {"l": 60.0}, 0.0, 0.05, 1000.0)[0] is False


def test_balance_detector_waits_for_all_tags_and_fresh_values():
    b = BalanceDetector("M.p_kw", ["A.p_kw", "B.p_kw"], ["PV.p_kw"], loss_frac=0.01, tolerance_frac=0.05,
                        min_kw=500.0, max_skew_s=30.0)
    assert b.update_values(T0, {"M.p_kw": 1000.0, "A.p_kw": 500.0}) is None
    # 1000 - (500 + 400) * 1.01 + 0 = 91 kW > 50
    assert b.update_values(T0 + 1, {"B.p_kw": 400.0, "PV.p_kw": 0.0, "X.p_kw": 7.0}) is True
    assert b.detail["value"] == pytest.approx(91.0) and b.detail["limit"] == pytest.approx(50.0)
    # PV 80 kW behind the meter adds to the mismatch: 1000 - 909 + 80 = 171 kW > 50
    assert b.update_tag("PV.p_kw", T0 + 2, 80.0) is True
    assert b.detail["value"] == pytest.approx(171.0)
    assert b.update_tag("M.p_kw", T0 + 3, 829.0) is False      # 829 - 909 + 80 = 0
    assert b.update_tag("M.p_kw", T0 + 4, 5000.0, quality=2) is None   # a BAD sample is no information
    assert b.update_tag("A.p_kw", T0 + 5, 500.0) is False               # main still 829: mismatch 0
    assert b.update_values(T0 + 40, {"M.p_kw": 829.0}) is None  # A, B, PV older than 30 s


# ---------------------------------------------------------------------------------------------- make_detector
@pytest.mark.parametrize("cond, cls", [
    (SpikeCondition(kind="spike", max_change_per_s=1.0), SpikeDetector),
    (FlatlineCondition(kind="flatline", window_s=60.0), FlatlineDetector),
    (StaleCondition(kind="stale", max_age_s=30.0), StaleDetector),
])
def test_make_detector_builds_the_right_class(cond, cls):
    assert isinstance(make_detector(cond), cls)


def test_make_detector_stale_counts_from_the_start_when_given():
    cond = StaleCondition(kind="stale", max_age_s=30.0)
    assert make_detector(cond).tick(T0 + 100) is None
    assert make_detector(cond, since_s=T0).tick(T0 + 31) is True


# ---------------------------------------------------------------------------------------------- batch
def test_range_flags():
    s = _series([0, 1, 2, 3], [1.0, 5.0, 11.0, np.nan])
    # 1 < 2 low; 5 inside; 11 > 10 high; NaN is missing, not out of range
    assert range_flags(s, 2.0, 10.0).tolist() == [True, False, True, False]
    assert range_flags(s, None, 10.0).tolist() == [False, False, True, False]


def test_spike_flags():
    s = _series([0, 10, 20, 30], [0.0, 50.0, 60.0, 200.0])
    # rates: 50/10 = 5 > 4; 10/10 = 1; 140/10 = 14 > 4
    assert spike_flags(s, 4.0).tolist() == [False, True, False, True]
    s2 = _series([0, 10, 20], [0.0, np.nan, 100.0])
    # NaN skipped: 100 / 20 s = 5 > 4 at the third sample; 5 > 6 is false
    assert spike_flags(s2, 4.0).tolist() == [False, False, True]
    assert spike_flags(s2, 6.0).tolist() == [False, False, False]
    assert spike_flags(s, 5.0).tolist() == [False, False, False, True]    # exactly 5 /s is no spike


def test_flatline_flags_match_the_streaming_detector():
    secs = [0, 5, 10, 15, 20, 25, 30, 35, 40]
    vals = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    # t=10: [0,10] 1,1,1 -> T; 15: 1,1,1 T; 20: 1,1,2 F; 25: 1,2,2 F; 30..40: 2,2,2 T; t=0, 5: window not observed
    expected = [False, False, True, True, False, False, True, True, True]
    flags = flatline_flags(_series(secs, vals), 10.0)
    assert flags.tolist() == expected
    det = FlatlineDetector(10.0)
    assert [det.update(T0 + t, v) is True for t, v in zip(secs, vals)] == expected
    # three flat samples within 2 s are not yet a 10 s window; at t=10 the window [0, 10] is observed
    assert flatline_flags(_series([0, 1, 2, 10], [1.0] * 4), 10.0).tolist() == [False, False, False, True]


def test_gaps_on_a_small_series():
    s = _series([0, 60, 120, 300, 360, 600], [1.0, np.nan, 1.0, 1.0, 1.0, 1.0])
    g = gaps(s, 60)
    # present: 0, 120, 300, 360, 600. Steps: 120 (1 missing), 180 (2 missing), 60, 240 (3 missing)
    assert g["missing_steps"].tolist() == [1, 2, 3]
    assert [(a - s.index[0]).total_seconds() for a in g["start"]] == [0, 120, 360]
    assert [(b - s.index[0]).total_seconds() for b in g["end"]] == [120, 300, 600]
    assert gaps(s, "1min")["missing_steps"].tolist() == [1, 2, 3]
    # 89 s between samples rounds to 1 step: jitter is no gap
    assert gaps(_series([0, 89, 150], [1.0, 1.0, 1.0]), 60).empty
