"""``anning forecast``: backtests of any series, and forecasts of the park's loads and PV into the store.

With ``--json`` a command prints only JSON on standard output; everything else goes to standard error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer

from anning_lib.cli.files import read_csv_text
from anning_lib.config import get_settings
from anning_lib.errors import ForecastError

forecast_app = typer.Typer(no_args_is_help=True, help="Load and PV forecasting.")


def read_series_csv(path: Path, ts_col: str, value_col: str) -> pd.Series:
    """A CSV's time and value columns as a series (I/O; the checks are :func:`check_series`'s)."""
    raw = read_csv_text(path, "--csv", ForecastError)
    for opt, col in (("--ts-col", ts_col), ("--value-col", value_col)):
        if col not in raw.columns:
            raise ForecastError(f"{opt}: no column {col!r} in {path.name} (columns: {', '.join(raw.columns)})")
    ts = pd.to_datetime(raw[ts_col], errors="coerce", format="mixed")
    bad = ts.isna()
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise ForecastError(f"{ts_col}: line {i + 2}: not a time: {raw[ts_col].iloc[i]!r}")
    return pd.Series(raw[value_col].to_numpy(), index=pd.DatetimeIndex(ts), name=value_col)


@forecast_app.command("backtest")
def backtest_cmd(
    csv: Path = typer.Option(..., "--csv", help="CSV file with a time column and a value column"),
    ts_col: str = typer.Option(..., help="name of the time column"),
    value_col: str = typer.Option(..., help="name of the value column"),
    horizon: int = typer.Option(..., help="steps ahead to forecast at each origin (at most one day of steps)"),
    freq: str = typer.Option(None, help="the series' step, e.g. 30min (default: inferred)"),
    calendar: str = typer.Option("none", help="working-day calendar: CN (Chinese holidays, make-up days) or none"),
    origins: int = typer.Option(28, help="latest daily origins to backtest"),
    as_json: bool = typer.Option(False, "--json", help="print JSON only"),
):
    """Rolling-origin backtest of the gradient-boosting model and of every baseline on any regular series."""
    from anning_lib.forecast.backtest import compare
    from anning_lib.forecast.models import (
        GradientBoosting,
        MeanOfWeekdays,
        Persistence,
        SeasonalNaive,
    )
    from anning_lib.forecast.series import check_series

    cal = {"cn": "CN", "none": None}.get(calendar.lower(), calendar)
    if cal not in ("CN", None):
        raise ForecastError(f"--calendar: must be CN or none, got {calendar!r}")
    y, step = check_series(read_series_csv(csv, ts_col, value_col), freq)
    models = {"gradient_boosting": lambda: GradientBoosting(horizon, calendar=cal),
              "persistence": Persistence, "seasonal_naive": SeasonalNaive, "mean_of_4_weekdays": MeanOfWeekdays}
    result = compare(y, horizon, models, freq=freq, max_origins=origins)
    result["series"] = {"file": str(csv), "n": len(y), "step": str(step), "start": str(y.index[0]),
                        "end": str(y.index[-1])}
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(f"{csv.name}: {len(y):,d} values every {step}, {result['origins']} origins, horizon {horizon}")
    def num(v, fmt):
        return "n/a" if v is None else format(v, fmt)

    for name, m in result["models"].items():
        o = m["overall"]
        typer.echo(f"  {name:<20} MAE {num(o['mae'], '>12,.3f')}  RMSE {num(o['rmse'], '>12,.3f')}  "
                   f"sMAPE {num(o['smape_pct'], '6.2f')} %  skill {num(o['skill'], '+.3f')}  "
                   f"P90 coverage {num(o['coverage_p90'], '.2f')}")


@forecast_app.command("run")
def run_cmd(retrain: bool = typer.Option(False, help="retrain every model now (default: when older than a day)"),
            as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Train (when due) and forecast the next day of every enterprise's load, the grid exchange and every PV."""
    from anning_lib.forecast.operate import run_all
    from anning_lib.park import load_park
    from anning_lib.store.engine import check_schema, make_engine

    settings = get_settings()
    engine = make_engine(settings.database_url)
    check_schema(engine)
    now = pd.Timestamp.now(tz="UTC")
    say = (lambda m: typer.echo(m, err=True))
    out = run_all(engine, load_park(), settings.var_dir, now,
                  retrain_after=pd.Timedelta(0) if retrain else pd.Timedelta(days=1), say=say)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
    else:
        ok = sum("rows" in v for v in out.values())
        typer.echo(f"forecasts of {ok} of {len(out)} targets stored from {now.floor('15min')}")
