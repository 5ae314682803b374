"""Benchmark of forecasting: training and prediction time for a year of 15-minute data, per enterprise and for
the whole park, on this machine, beside the seasonal-naive baseline measured in the same run.

Data: one simulated year (2025-11-24 .. 2026-11-23 local, 35,040 quarter-hours) of every enterprise's main meter,
the grid exchange and every PV array, from the park simulator (no database, local time). For each series: fit its
operational model (gradient boosting for loads and the grid, the clear-sky-index model for PV; three quantile models
each) on the whole year and predict the next day (96 steps); the baseline has nothing to fit and predicts from the
history. "Whole park" is every target in turn, as
`anning forecast run` does.

Run: ``make bench`` or ``.venv/bin/python bench/forecast.py [--days 365]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.forecast.models import GradientBoosting, SeasonalNaive  # noqa: E402
from anning_lib.forecast.operate import HORIZON, park_targets  # noqa: E402
from anning_lib.park import load_park  # noqa: E402
from anning_lib.sim import ParkSimulator  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=365, help="days of history per series")
    args = ap.parse_args()
    park = load_park()
    end = date(2026, 11, 24)
    start = end - timedelta(days=args.days)
    targets = park_targets(park)
    tags = [t.tag for t in targets]
    frames, t_sim = timed(lambda: pd.concat([f[tags] for f in ParkSimulator(park, 20261125, REPO / "data")
                                             .run(start, end, "15min")]))
    print(f"{len(frames):,d} quarter-hours x {len(tags)} series simulated in {t_sim:.1f} s; "
          f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    index = pd.date_range(frames.index[-1] + pd.Timedelta("15min"), periods=HORIZON, freq="15min")
    rows = []
    for t in targets:
        y = frames[t.tag]
        model, fit_s = timed(lambda: t.make_model().fit(y, horizon=HORIZON))
        _p, pred_s = timed(lambda: model.predict(index, y))
        _b, base_s = timed(lambda: SeasonalNaive().fit(y).predict(index, y))
        rows.append({"target": t.name, "model": model.name, "fit_s": fit_s, "predict_s": pred_s,
                     "naive_predict_s": base_s})
    df = pd.DataFrame(rows).set_index("target")
    loads = df[df.index.str.startswith("load:")]
    print("\nper target (fit on the whole history, predict the next 96 quarter-hours):")
    print(df.round(3).to_string())
    print(f"\nper enterprise load, mean: fit {loads['fit_s'].mean():.2f} s, predict {loads['predict_s'].mean() * 1000:.0f} ms"
          f"  (seasonal naive predict {loads['naive_predict_s'].mean() * 1000:.1f} ms)")
    print(f"whole park ({len(df)} targets): fit {df['fit_s'].sum():.1f} s, predict {df['predict_s'].sum():.2f} s "
          f"(seasonal naive {df['naive_predict_s'].sum():.2f} s)")
    print(f"model: {GradientBoosting().params}")


if __name__ == "__main__":
    main()
