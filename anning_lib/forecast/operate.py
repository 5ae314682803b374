"""Forecasting in operation: the park's targets, versioned models, forecasts in the ``forecast`` table.

Targets: the load of every enterprise (its main meter ``p_kw``, net of its own PV and storage), the park's grid
exchange (``GRID.p_kw``) and every PV array. A model is trained on the last ``days`` of 15-minute means, scored by
a short rolling-origin backtest against persistence and seasonal naive, and saved under
``var/models/<target>/<version>/`` as ``model.joblib`` plus ``meta.json`` (target, tag, model, trained range, data
version of the code, metrics). Forecasts (P50 with P10/P90) of the next day are upserted into ``forecast``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.errors import ForecastError
from anning_lib.forecast.backtest import backtest, metrics
from anning_lib.forecast.models import (
    Forecaster,
    GradientBoosting,
    Persistence,
    SeasonalNaive,
)
from anning_lib.forecast.pv import ClearSkyIndexPv
from anning_lib.park.schema import Park
from anning_lib.store.assets import upsert
from anning_lib.store.schema import TABLES
from anning_lib.store.timeseries import read_series, refresh_rollups

STEP = pd.Timedelta("15min")
HORIZON = 96                 # one day of quarter-hours
MAX_GAP_STEPS = 4            # gaps up to an hour are interpolated; a longer one cuts the history


@dataclass(frozen=True)
class Target:
    """One forecast target: ``name`` (e.g. ``load:E01``), the point ``tag`` it forecasts, its ``kind``."""

    name: str
    tag: str
    kind: str   # load | grid | pv
    make_model: Callable[[], Forecaster]


def park_targets(park: Park, tz: str = "Asia/Shanghai") -> list[Target]:
    """Every enterprise's load, the park's grid exchange and every PV array."""
    site = park.meta.site
    out = [Target("grid:park", "GRID.p_kw", "grid", lambda: GradientBoosting(HORIZON))]
    for e in park.enterprises:
        main = next(d for d in e.devices if d.type == "main_meter")
        out.append(Target(f"load:{e.id}", f"{main.id}.p_kw", "load", lambda: GradientBoosting(HORIZON)))
    for _eid, d in park.iter_devices():
        if d.type == "pv":
            out.append(Target(f"pv:{d.id}", f"{d.id}.p_kw", "pv", lambda p=d.p: ClearSkyIndexPv(
                p, site.latitude_deg, site.longitude_deg, site.altitude_m, tz)))
    return out


def regular_history(raw: pd.Series, end: pd.Timestamp) -> pd.Series:
    """15-minute means up to ``end`` on a regular grid: short gaps interpolated, the part before the last long
    gap dropped (pure)."""
    raw = raw.dropna()
    if raw.empty:
        raise ForecastError(f"{raw.name}: no data before {end}")
    grid = pd.date_range(raw.index[0], end - STEP, freq=STEP)
    y = raw.reindex(grid)
    missing = y.isna()
    runs = missing.ne(missing.shift()).cumsum()[missing]
    long_gaps = runs.map(runs.value_counts()) > MAX_GAP_STEPS
    if long_gaps.any():
        y = y[y.index > long_gaps[long_gaps].index[-1]]
    y = y.interpolate(limit_area="inside").dropna().rename(raw.name)
    if y.empty:
        raise ForecastError(f"{raw.name}: no data in the last hour before {end} (the meter or the gateway is down)")
    return y


PARK_TZ = "Asia/Shanghai"
"""Time zone of the series handed to the models: their calendar features (local day, weekday, Chinese working
days) and the backtest's origins at local midnight follow the index's time zone."""


def history(engine: Engine, tag: str, end: pd.Timestamp, days: int, tz: str = PARK_TZ,
            refresh_days: int | None = None) -> pd.Series:
    """The last ``days`` of 15-minute means of ``tag`` before ``end``, regularised, indexed in local time ``tz``."""
    start = end - pd.Timedelta(days=days)
    # the whole window when training (history may have been written without rollups); only the last day when
    # forecasting every 15 minutes, since older rollups are already there
    fresh = start if refresh_days is None else end - pd.Timedelta(days=refresh_days)
    refresh_rollups(engine, fresh, end, tags=[tag])
    raw = read_series(engine, [tag], start, end, resolution="15min", tz=tz)[tag]
    return regular_history(raw, end.tz_convert(tz))


def train(engine: Engine, target: Target, end: pd.Timestamp, var_dir: Path, *, days: int = 56,
          score_days: int = 7) -> dict:
    """Fit the target's model on ``days`` before ``end``, score it, save it; returns its metadata."""
    y = history(engine, target.tag, end, days)
    meta_metrics = {}
    if score_days:
        try:
            have_days = len(y) // HORIZON
            scores = {name: backtest(y, factory, HORIZON, train_min_days=max(8, have_days - score_days),
                                     max_origins=score_days, retrain_every_days=score_days)
                      for name, factory in (("model", target.make_model), ("persistence", Persistence),
                                            ("seasonal_naive", SeasonalNaive))}
            meta_metrics = {k: metrics(v, scores["persistence"])["overall"] for k, v in scores.items()}
        except ForecastError as err:   # too little history to score: the model is still trained and saved
            meta_metrics = {"not_scored": str(err)}
    model = target.make_model().fit(y, horizon=HORIZON)
    now = dt.datetime.now(dt.UTC)
    version = pd.Timestamp(end).tz_convert("UTC").strftime("%Y%m%dT%H%MZ") + now.strftime("-%H%M%S%f")
    meta = {"target": target.name, "tag": target.tag, "kind": target.kind, "model": model.name, "version": version,
            "trained_from": str(y.index[0]), "trained_to": str(y.index[-1]), "n": len(y),
            "trained_at": now.isoformat(), "metrics": meta_metrics}
    root = Path(var_dir) / "models" / target.name.replace(":", "_")
    tmp = root / f".tmp-{version}"
    tmp.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, tmp / "model.joblib")
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    tmp.rename(root / version)          # a version appears complete or not at all
    return meta


def latest_model(var_dir: Path, target: Target) -> tuple[Forecaster, dict] | None:
    """The newest saved model of a target and its metadata, or None."""
    root = Path(var_dir) / "models" / target.name.replace(":", "_")
    versions = sorted(p for p in root.glob("[0-9]*") if (p / "model.joblib").exists() and (p / "meta.json").exists()
                      ) if root.exists() else []
    if not versions:
        return None
    return joblib.load(versions[-1] / "model.joblib"), json.loads((versions[-1] / "meta.json").read_text())


def forecast(engine: Engine, target: Target, model: Forecaster, meta: dict, issued_at: pd.Timestamp, *,
             days: int = 21) -> int:
    """Forecast the next :data:`HORIZON` steps after ``issued_at`` (floored to 15 min) and upsert them."""
    origin = issued_at.tz_convert("UTC").floor(STEP)
    hist = history(engine, target.tag, origin, days, refresh_days=1)
    if hist.index[-1] < origin - STEP:
        raise ForecastError(f"{target.tag}: history ends at {hist.index[-1]}, before the origin {origin}")
    index = pd.date_range(origin.tz_convert(PARK_TZ), periods=HORIZON, freq=STEP)
    pred = model.predict(index, hist)
    rows = [{"target": target.name, "model": f"{meta['model']}@{meta['version']}", "issued_at": origin.to_pydatetime(),
             "ts": ts.to_pydatetime(), "value": float(r.p50), "lower": float(r.p10), "upper": float(r.p90),
             "unit": "kW"} for ts, r in pred.iterrows()]
    with engine.begin() as conn:
        upsert(conn, TABLES["forecast"], rows, ["target", "model", "issued_at", "ts"])
    return len(rows)


def read_forecast(engine: Engine, target: str, issued_at: pd.Timestamp | None = None) -> pd.DataFrame:
    """The stored forecast of a target (the latest issue unless ``issued_at``): ``ts, value, lower, upper``."""
    t = TABLES["forecast"]
    with engine.connect() as conn:
        when = issued_at.to_pydatetime() if issued_at is not None else conn.execute(
            sa.select(sa.func.max(t.c.issued_at)).where(t.c.target == target)).scalar()
        if when is None:
            return pd.DataFrame(columns=["ts", "value", "lower", "upper", "model"])
        df = pd.read_sql(sa.select(t.c.ts, t.c.value, t.c.lower, t.c.upper, t.c.model)
                         .where(t.c.target == target, t.c.issued_at == when).order_by(t.c.ts), conn)
    newest = max(df["model"].unique(), key=lambda m: m.rsplit("@", 1)[-1])   # a retrain within the same issue
    return df[df["model"] == newest].reset_index(drop=True)


def run_all(engine: Engine, park: Park, var_dir: Path, now: pd.Timestamp, *, retrain_after: pd.Timedelta =
            pd.Timedelta(days=1), score_days: int = 7, say: Callable[[str], None] = lambda _m: None,
            should_stop: Callable[[], bool] = lambda: False, only: set[str] | None = None) -> dict:
    """Retrain the targets whose newest model was trained more than ``retrain_after`` ago (or that have none), then
    forecast the next
    day of every target from ``now``; returns ``{target: {"trained": bool, "rows": n} or {"error": text}}``.

    A target that fails (too little history, a meter without data) is reported and the others go on. ``only``
    restricts the run to some target names.
    """
    out = {}
    for t in park_targets(park):
        if should_stop():
            break
        if only is not None and t.name not in only:
            continue
        try:
            found = latest_model(var_dir, t)
            stale = found is None or pd.Timestamp.now(tz="UTC") - pd.Timestamp(found[1]["trained_at"]) > retrain_after
            if stale:
                meta = train(engine, t, now.floor(STEP), var_dir, score_days=score_days)
                say(f"forecast: trained {t.name} ({meta['model']}, MAE {meta['metrics']['model']['mae']:,.0f} kW "
                    f"vs seasonal naive {meta['metrics']['seasonal_naive']['mae']:,.0f} kW)" if score_days else
                    f"forecast: trained {t.name}")
                found = latest_model(var_dir, t)
            out[t.name] = {"trained": stale, "rows": forecast(engine, t, found[0], found[1], now)}
        except ForecastError as err:
            out[t.name] = {"error": str(err)}
            say(f"forecast: {t.name}: {err}")
        except Exception as err:  # noqa: BLE001 - one target's failure must not stop the others
            out[t.name] = {"error": f"{type(err).__name__}: {err}"}
            say(f"forecast: {t.name}: unexpected {type(err).__name__}: {err}")
    return out
