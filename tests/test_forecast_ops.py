"""Forecasting in operation (models saved with metadata, forecasts in the store), the PV model, and the generic
`anning forecast backtest` on a real measured series shipped with a package (Taylor's half-hourly demand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from anning_lib.forecast.backtest import backtest
from anning_lib.forecast.operate import (
    latest_model,
    park_targets,
    read_forecast,
    regular_history,
    run_all,
)
from anning_lib.forecast.pv import ClearSkyIndexPv
from anning_lib.park import load_park
from anning_lib.sim import ParkSimulator, to_long
from anning_lib.store import init_db, write_measurements

PARK = load_park()


@lru_cache(maxsize=2)
def simulated(start: date, end: date) -> pd.DataFrame:
    return pd.concat(list(ParkSimulator(PARK, 20261125, REPO / "data").run(start, end, "15min")))


def test_regular_history_interpolates_short_gaps_and_cuts_at_long_ones():
    idx = pd.date_range("2026-01-01", periods=20, freq="15min", tz="UTC")
    y = pd.Series(np.arange(20.0), index=idx, name="t")
    short = y.drop(idx[[5, 6]])                        # 2 steps missing: filled on the line from 4 to 7
    out = regular_history(short, idx[-1] + pd.Timedelta("15min"))
    assert out.loc[idx[5]] == 5.0 and out.loc[idx[6]] == 6.0 and len(out) == 20
    long = y.drop(idx[3:9])                            # 6 steps (> 4) missing: history restarts after the gap
    out = regular_history(long, idx[-1] + pd.Timedelta("15min"))
    assert out.index[0] == idx[9] and len(out) == 11


def test_pv_model_beats_seasonal_naive_in_spring():
    frames = simulated(date(2026, 4, 6), date(2026, 6, 15))
    y = frames["PARK-PV.p_kw"]
    site, params = PARK.meta.site, PARK.device("PARK-PV").p
    fc = backtest(y, lambda: ClearSkyIndexPv(params, site.latitude_deg, site.longitude_deg, site.altitude_m),
                  96, train_min_days=21, max_origins=28)
    # seasonal naive computed here, independently: the value one week (672 quarter-hours) before each target
    week_before = y.shift(672).reindex(pd.DatetimeIndex(fc["ts"]))
    mae_naive = np.mean(np.abs(fc["actual"].to_numpy() - week_before.to_numpy()))
    mae_model = np.mean(np.abs(fc["actual"] - fc["p50"]))
    assert mae_model < mae_naive
    assert (fc["p10"] <= fc["p50"]).all() and (fc["p50"] <= fc["p90"]).all()
    assert (fc["p90"] <= params.ac_kw).all() and (fc["p10"] >= 0).all()
    day = fc[fc["actual"] > 0]
    assert 0.75 <= (day["actual"] <= day["p90"]).mean() <= 0.97      # calibrated P90 in daylight


def test_train_save_and_forecast_into_the_store(engine, tmp_path):
    init_db(engine, PARK)
    write_measurements(engine, to_long(simulated(date(2026, 4, 6), date(2026, 5, 18))))
    now = pd.Timestamp("2026-05-17T16:00:00Z")         # 2026-05-18 00:00 in Anning
    wanted = {"grid:park", "load:E01", "pv:PARK-PV"}
    out = run_all(engine, PARK, tmp_path, now, score_days=2, only=wanted)
    assert set(out) == wanted and all(out[t] == {"trained": True, "rows": 96} for t in wanted)
    again = run_all(engine, PARK, tmp_path, now, only=wanted)   # the models are fresh: forecast without retraining
    assert all(v == {"trained": False, "rows": 96} for v in again.values())
    target = next(t for t in park_targets(PARK) if t.name == "load:E01")
    model, meta = latest_model(tmp_path, target)
    assert meta["tag"] == "E01-MM.p_kw" and meta["version"].startswith("20260517T1600Z-")   # data end, then a stamp
    from anning_lib.forecast.operate import history
    h = history(engine, "E01-MM.p_kw", now, 7)
    assert str(h.index.tz) == "Asia/Shanghai" and h.index[-1] == now - pd.Timedelta("15min")   # local calendar
    assert set(meta["metrics"]) == {"model", "persistence", "seasonal_naive"}
    fc = read_forecast(engine, "load:E01")
    assert len(fc) == 96 and pd.Timestamp(fc["ts"].iloc[0]) == now
    assert (fc["lower"] <= fc["value"]).all() and (fc["value"] <= fc["upper"]).all()


@lru_cache(maxsize=1)
def taylor() -> pd.Series:
    from pmdarima.datasets import load_taylor

    y = load_taylor(as_series=True)
    y.index = pd.date_range("2000-06-05", periods=len(y), freq="30min")   # Mon 5 June 2000 (Taylor 2003)
    return y


def anning(*args):
    return subprocess.run([sys.executable, "-m", "anning_lib.cli.main", *args], capture_output=True, text=True,
                          env=dict(os.environ))


def test_generic_backtest_cli_on_real_demand(tmp_path):
    path = tmp_path / "taylor.csv"
    taylor().rename("demand_mw").rename_axis("time").to_csv(path)
    out = anning("forecast", "backtest", "--csv", str(path), "--ts-col", "time", "--value-col", "demand_mw",
                 "--horizon", "48", "--origins", "14", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    y = taylor()
    last = pd.Timestamp(doc["last_origin"])
    targets = pd.date_range(pd.Timestamp(doc["first_origin"]), last + pd.Timedelta("23h30min"), freq="30min")
    # seasonal naive here, independently: the demand one week (336 half-hours) earlier at the same targets
    naive = np.mean(np.abs(y.loc[targets].to_numpy() - y.shift(336).loc[targets].to_numpy()))
    assert doc["models"]["seasonal_naive"]["overall"]["mae"] == pytest.approx(naive)
    assert doc["models"]["gradient_boosting"]["overall"]["mae"] < naive
    assert 0.8 <= doc["models"]["gradient_boosting"]["overall"]["coverage_p90"] <= 0.97


@pytest.mark.parametrize("rows, says", [
    (["time,v", "2026-01-01 00:00,1", "2026-01-01 00:30,2"], "too short"),
    (["time,v"] + [f"2026-01-{d:02d} {h:02d}:00,{d}" for d in range(1, 30) for h in range(24) if (d, h) != (5, 3)],
     "gap"),
    (["time,v"] + [f"2026-01-{d:02d} {h:02d}:00,{'x' if (d, h) == (9, 9) else d}" for d in range(1, 30)
                   for h in range(24)], "x"),
])
def test_generic_backtest_refuses_unusable_input(tmp_path, rows, says):
    path = tmp_path / "s.csv"
    path.write_text("\n".join(rows) + "\n")
    out = anning("forecast", "backtest", "--csv", str(path), "--ts-col", "time", "--value-col", "v",
                 "--horizon", "24")
    assert out.returncode == 2 and out.stdout == ""
    assert says in out.stderr and len(out.stderr.strip().splitlines()) == 1
