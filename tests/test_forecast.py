"""Forecasting: series checks, metrics worked by hand, baselines against hand-shifted values, the rolling-origin
backtest, and acceptance on real data (Taylor's half-hourly demand of England and Wales) and on the simulator.

Baseline errors in the acceptance tests are computed here with plain numpy (actual against the value one week
earlier over the same target timestamps), independently of the code under test.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from anning_lib.errors import AnningError, ForecastError
from anning_lib.forecast.backtest import (
    backtest,
    compare,
    mae,
    mape,
    metrics,
    pinball_loss,
    rmse,
    smape,
)
from anning_lib.forecast.models import (
    Forecaster,
    GradientBoosting,
    MeanOfWeekdays,
    Persistence,
    SeasonalNaive,
    features,
)
from anning_lib.forecast.series import Seasons, check_series, min_length

ROOT = Path(__file__).resolve().parent.parent
DAY30, WEEK30 = 48, 336          # half-hourly steps per day and per week


def synthetic(days: int = 35, freq: str = "30min", tz: str | None = None, seed: int = 1) -> pd.Series:
    """Daily and weekly shape plus noise [kW]."""
    idx = pd.date_range("2026-03-02", periods=days * (pd.Timedelta("1D") // pd.Timedelta(freq)), freq=freq, tz=tz)
    hours = idx.hour + idx.minute / 60
    shape = 100 + 30 * np.sin(2 * np.pi * (hours - 8) / 24) - 25 * (idx.day_of_week >= 5)
    return pd.Series(shape + np.random.default_rng(seed).normal(0, 3, len(idx)), index=idx, name="p_kw")


# ------------------------------------------------------------------------------------------- metrics by hand
def test_point_metrics_worked_by_hand():
    a, f = np.array([10.0, 20.0]), np.array([12.0, 17.0])
    assert mae(a, f) == pytest.approx(2.5)
    assert rmse(a, f) == pytest.approx(math.sqrt((4 + 9) / 2))              # 2.5495
    assert smape(a, f) == pytest.approx((200 * 2 / 22 + 200 * 3 / 37) / 2)  # 17.199 %
    assert mape(a, f) == pytest.approx(((2 / 10 + 3 / 20) / 2 * 100, 0))    # 17.5 %, nothing skipped
    # pinball q = 0.9: A - F = -2 -> max(-1.8, 0.2) = 0.2; A - F = 3 -> max(2.7, -0.3) = 2.7
    assert pinball_loss(a, f, 0.9) == pytest.approx((0.2 + 2.7) / 2)
    assert pinball_loss(a, f, 0.1) == pytest.approx((1.8 + 0.3) / 2)
    value, skipped = mape(np.array([0.0, 10.0]), np.array([1.0, 12.0]))
    assert (value, skipped) == (pytest.approx(20.0), 1)
    assert smape(np.array([0.0]), np.array([0.0])) == 0.0


def test_metrics_frame_overall_per_step_and_skill():
    origin = pd.Timestamp("2026-03-02")
    frame = pd.DataFrame({"origin": [origin] * 2, "ts": [origin, origin + pd.Timedelta("30min")], "step": [1, 2],
                          "actual": [10.0, 20.0], "p10": [9.0, 16.0], "p50": [12.0, 17.0], "p90": [13.0, 19.0],
                          "model": "m"})
    ref = frame.assign(p50=[15.0, 14.0])                                    # persistence MAE = (5 + 6) / 2
    m = metrics(frame, ref)
    o = m["overall"]
    assert (o["mae"], o["n"], m["origins"], m["model"]) == (pytest.approx(2.5), 2, 1, "m")
    assert o["nrmse"] == pytest.approx(math.sqrt(6.5) / 15)
    assert o["coverage_p90"] == 0.5 and o["coverage_p10"] == 0.0 and o["interval_coverage"] == 0.5
    pin = [pinball_loss(frame.actual, frame[c], q) for c, q in (("p10", .1), ("p50", .5), ("p90", .9))]
    assert o["pinball"] == pytest.approx(np.mean(pin))
    assert o["skill"] == pytest.approx(1 - 2.5 / 5.5)
    assert [s["step"] for s in m["per_step"]] == [1, 2]
    assert m["per_step"][1]["mae"] == pytest.approx(3.0) and m["per_step"][1]["skill"] == pytest.approx(0.5)
    json.dumps(m)                                                           # strict JSON for the CLI


# ------------------------------------------------------------------------------------------- series checks
def test_check_series_accepts_and_sorts():
    y = synthetic(3)
    out, step = check_series(y.iloc[::-1])
    assert step == pd.Timedelta("30min") and out.index.is_monotonic_increasing and out.dtype == float
    daily = pd.Series(1.0, index=pd.date_range("2026-03-20", "2026-04-10", freq="D", tz="Europe/London"))
    assert check_series(daily)[1] == pd.Timedelta("1D")                    # 23-hour DST day is still one day
    assert (Seasons(pd.Timedelta("15min")).day, Seasons(pd.Timedelta("15min")).week) == (96, 672)
    assert (Seasons(pd.Timedelta("1D")).day, Seasons(pd.Timedelta("1D")).week) == (1, 7)


def test_check_series_refusals_name_the_problem():
    y = synthetic(3)
    with pytest.raises(ForecastError, match=r"gap of 2 missing steps of 0 days 00:30:00 after 2026-03-02 05:00"):
        check_series(y.drop(y.index[11:13]))
    with pytest.raises(ForecastError, match="duplicated timestamp 2026-03-02 00:30"):
        check_series(pd.concat([y.iloc[:5], y.iloc[1:2]]))
    bad = y.astype(object)
    bad.iloc[7] = "n/a"
    with pytest.raises(ForecastError, match=r"non-numeric at 2026-03-02 03:30:00: 'n/a'"):
        check_series(bad)
    with pytest.raises(ForecastError, match="non-finite at 2026-03-02 01:00:00: inf"):
        check_series(y.where(y.index != y.index[2], np.inf))
    irregular = y.iloc[:6].copy()
    irregular.index = irregular.index[:5].append(pd.DatetimeIndex([irregular.index[4] + pd.Timedelta("20min")]))
    with pytest.raises(ForecastError, match="irregular step"):
        check_series(irregular)
    with pytest.raises(ForecastError, match="DatetimeIndex"):
        check_series(pd.Series([1.0, 2.0, 3.0]))
    with pytest.raises(ForecastError, match="frequency must be daily or finer and divide a day"):
        Seasons(pd.Timedelta("7h"))
    with pytest.raises(ForecastError, match="length 1000 is too short; at least 1056 values"):
        min_length(Seasons(pd.Timedelta("30min")), 48, 1000)
    with pytest.raises(ForecastError, match="horizon"):
        min_length(Seasons(pd.Timedelta("30min")), 0)
    assert issubclass(ForecastError, AnningError)


def test_backtest_refuses_unusable_series():
    y = synthetic(20)
    with pytest.raises(ForecastError, match="length 960 is too short"):
        backtest(y, SeasonalNaive, 48)
    with pytest.raises(ForecastError, match="gap"):
        backtest(synthetic(30).drop(synthetic(30).index[100]), SeasonalNaive, 48)
    with pytest.raises(ForecastError, match="horizon"):
        backtest(synthetic(30), SeasonalNaive, 48 * 8)


# ------------------------------------------------------------------------------------------- baselines
def test_baselines_equal_hand_shifted_values():
    y = synthetic(35)
    history, index = y.iloc[:-72], y.index[-72:]                     # 1.5 days ahead
    shifted = {1: y.shift(DAY30), 2: y.shift(2 * DAY30), 7: y.shift(WEEK30)}
    pers = Persistence().fit(history).predict(index, history)
    assert np.allclose(pers.p50.iloc[:48], shifted[1].loc[index[:48]])   # same time yesterday
    assert np.allclose(pers.p50.iloc[48:], shifted[2].loc[index[48:]])   # beyond one day: two days back
    snaive = SeasonalNaive().fit(history).predict(index, history)
    assert np.allclose(snaive.p50, shifted[7].loc[index])
    mean4 = MeanOfWeekdays(k=4).fit(history).predict(index, history)
    hand = sum(y.shift(j * WEEK30) for j in range(1, 5)) / 4
    assert np.allclose(mean4.p50, hand.loc[index])
    for out in (pers, snaive, mean4):
        assert list(out.columns) == ["p10", "p50", "p90"] and out.index.equals(index)
        assert (out.p10 <= out.p50).all() and (out.p50 <= out.p90).all() and (out.p90 > out.p10).any()


def test_daily_persistence_and_index_must_continue_history():
    y = pd.Series(np.arange(30.0), index=pd.date_range("2026-01-01", periods=30, freq="D"))
    out = Persistence().predict(y.index[-3:], y.iloc[:-3])
    assert out.p50.tolist() == [26.0, 26.0, 26.0]
    with pytest.raises(ForecastError, match="continue the history"):
        SeasonalNaive().predict(y.index[-2:], y.iloc[:-3])


# ------------------------------------------------------------------------------------------- model and backtest
def test_features_use_only_the_past():
    y = synthetic(30)
    history, index = y.iloc[:-48], y.index[-48:]
    f = features(index, history, calendar="CN")
    assert np.allclose(f.lag_day, y.shift(DAY30).loc[index]) and np.allclose(f.lag_week, y.shift(WEEK30).loc[index])
    assert (f.origin_value == history.iloc[-1]).all() and f.lead.tolist() == list(range(1, 49))
    assert f.workday.tolist() == [1.0] * 48                              # 2026-03-31 is a Tuesday
    assert not np.isnan(f.to_numpy()).any()
    with pytest.raises(ForecastError, match="X: column 't' has no value"):
        features(index, history, pd.DataFrame({"t": 1.0}, index=history.index))


def test_chinese_calendar_make_up_working_saturday():
    idx = pd.date_range("2026-05-09", periods=4, freq="6h", tz="Asia/Shanghai")   # make-up working Saturday
    before = pd.date_range(end=idx[0] - pd.Timedelta("6h"), periods=40, freq="6h", tz="Asia/Shanghai")
    hist = pd.Series(1.0, index=before)
    assert features(idx, hist, calendar="CN").workday.tolist() == [1.0] * 4
    assert features(idx, hist, calendar=None).workday.tolist() == [0.0] * 4


class Spy(Forecaster):
    """Records what the backtest lets it see."""

    fits: list = []

    def fit(self, y, X=None, *, horizon=None):
        Spy.fits.append(y.index[-1])
        return self

    def predict(self, index, history, X=None):
        assert history.index[-1] < index[0]
        return SeasonalNaive().predict(index, history)


def test_backtest_origins_retraining_and_no_look_ahead():
    y = synthetic(35)
    Spy.fits = []
    frame = backtest(y, Spy, 48, train_min_days=14, retrain_every_days=7)
    origins = frame.origin.unique()
    assert len(origins) == 35 - 14 and all(pd.Timestamp(o) == pd.Timestamp(o).normalize() for o in origins)
    assert len(Spy.fits) == 3 and frame.step.tolist()[:48] == list(range(1, 49))
    assert np.allclose(frame.actual, y.loc[frame.ts]) and (frame.ts >= frame.origin).all()
    assert list(frame.columns) == ["origin", "ts", "step", "actual", "p10", "p50", "p90", "model"]
    last = backtest(y, SeasonalNaive, 48, max_origins=5)
    assert last.origin.nunique() == 5 and last.origin.iloc[-1] == y.index[-48]


def test_compare_runs_every_model_on_the_same_origins():
    result = compare(synthetic(35), 48, {"persistence": Persistence, "seasonal_naive": SeasonalNaive})
    assert result["origins"] == 21 and set(result["models"]) == {"persistence", "seasonal_naive"}
    assert result["models"]["persistence"]["overall"]["skill"] == pytest.approx(0.0)
    assert result["models"]["seasonal_naive"]["origins"] == 21
    json.dumps(result)


def test_gradient_boosting_refusals():
    y = synthetic(30)
    model = GradientBoosting(calendar=None, max_iter=20).fit(y.iloc[:-48], horizon=24)
    with pytest.raises(ForecastError, match="fitted for 24"):
        model.predict(y.index[-48:], y.iloc[:-48])
    with pytest.raises(ForecastError, match="before fit"):
        GradientBoosting().predict(y.index[-48:], y.iloc[:-48])
    with pytest.raises(ForecastError, match="calendar"):
        GradientBoosting(calendar="UK")


# ------------------------------------------------------------------------------------------- acceptance
def independent_mae(y: pd.Series, ts: pd.Series, lag: int) -> float:
    """MAE of ``y(t - lag steps)`` as forecast of ``y(t)`` over the timestamps ``ts``, plain numpy."""
    values = y.to_numpy(dtype=float)
    pos = y.index.get_indexer(pd.DatetimeIndex(ts))
    assert (pos >= lag).all()
    return float(np.mean(np.abs(values[pos] - values[pos - lag])))


def test_acceptance_taylor_beats_seasonal_naive_and_is_calibrated():
    """Real measured data: England and Wales demand [MW], half-hourly, 2000-06-05 .. 2000-08-27 (Taylor 2003)."""
    from pmdarima.datasets import load_taylor

    y = pd.Series(np.asarray(load_taylor(), dtype=float), index=pd.date_range("2000-06-05", periods=4032, freq="30min"))
    frame = backtest(y, lambda: GradientBoosting(calendar=None, max_iter=200), 48, max_origins=28)
    assert frame.origin.nunique() == 28 and len(frame) == 28 * 48
    assert np.allclose(frame.actual, y.loc[frame.ts])
    model_mae = float(np.mean(np.abs(frame.actual - frame.p50)))
    snaive_mae = independent_mae(y, frame.ts, WEEK30)
    m = metrics(frame)["overall"]
    print(f"Taylor MAE [MW]: model {model_mae:.0f}, seasonal naive {snaive_mae:.0f}, "
          f"persistence {independent_mae(y, frame.ts, DAY30):.0f}; coverage P90 {m['coverage_p90']:.3f}")
    assert model_mae < snaive_mae
    assert 0.8 <= m["coverage_p90"] <= 0.97


@pytest.fixture(scope="module")
def park_grid() -> pd.Series:
    """Ten weeks of the simulated park's grid import [kW], 15-minute means, local time."""
    from anning_lib.park import load_park
    from anning_lib.sim import ParkSimulator

    data = ROOT / "data"
    sim = ParkSimulator(load_park(data / "park" / "anning.yaml", data), 11, data)
    frame = pd.concat(sim.run(date(2026, 3, 2), date(2026, 5, 11), "15min"))
    return frame["GRID.p_kw"].tz_convert("Asia/Shanghai")


def test_acceptance_simulator_beats_seasonal_naive(park_grid):
    y = park_grid
    assert len(y) == 70 * 96
    frame = backtest(y, lambda: GradientBoosting(calendar="CN", max_iter=200), 96, max_origins=28)
    assert frame.origin.nunique() == 28 and np.allclose(frame.actual, y.loc[frame.ts])
    model_mae = float(np.mean(np.abs(frame.actual - frame.p50)))
    snaive_mae = independent_mae(y, frame.ts, 7 * 96)
    m = metrics(frame)["overall"]
    print(f"Park GRID.p_kw MAE [kW]: model {model_mae:.0f}, seasonal naive {snaive_mae:.0f}, "
          f"persistence {independent_mae(y, frame.ts, 96):.0f}; coverage P90 {m['coverage_p90']:.3f}")
    assert model_mae < snaive_mae
    assert 0.8 <= m["coverage_p90"] <= 0.97
