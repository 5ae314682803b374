"""Rolling-origin backtests (expanding window) and forecast accuracy metrics.

A backtest walks an origin through the series: at each origin the model knows only the values before it,
forecasts the next ``horizon`` steps, and the forecasts are compared with what happened. The origin is the
issue time: the timestamp of the first forecast step, whose value is not yet known.

References
----------
.. [1] Tashman, L. J. (2000). Out-of-sample tests of forecasting accuracy: an analysis and review.
   International Journal of Forecasting 16(4), 437-450 (rolling origin evaluation).
.. [2] Hyndman, R. J., Koehler, A. B. (2006). Another look at measures of forecast accuracy. International
   Journal of Forecasting 22(4), 679-688 (MAE, RMSE, MAPE, sMAPE).
.. [3] Koenker, R., Bassett, G. (1978). Regression quantiles. Econometrica 46(1), 33-50 (pinball loss).
.. [4] Murphy, A. H. (1988). Skill scores based on the mean square error and their relationships to the
   correlation coefficient. Monthly Weather Review 116(12), 2417-2424 (skill = 1 - score / reference score).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from anning_lib.errors import ForecastError
from anning_lib.forecast.models import COLUMNS, QUANTILES, Forecaster, Persistence
from anning_lib.forecast.series import Seasons, check_series, min_length

Factory = Callable[[], Forecaster]
ROW_COLUMNS = ["origin", "ts", "step", "actual", "p10", "p50", "p90", "model"]


# ------------------------------------------------------------------------------------------- metrics
def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error ``mean|A - F|`` [unit of y] [2]_."""
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(forecast))))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error ``sqrt(mean (A - F)^2)`` [unit of y] [2]_."""
    return float(np.sqrt(np.mean((np.asarray(actual) - np.asarray(forecast)) ** 2)))


def mape(actual: np.ndarray, forecast: np.ndarray) -> tuple[float, int]:
    """Mean absolute percentage error ``100 mean|A - F| / |A|`` [%] over non-zero actuals [2]_.

    Returns
    -------
    (float, int)
        MAPE [%] (NaN when every actual is zero) and the number of zero actuals skipped.
    """
    a, f = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    nz = a != 0
    value = float(100 * np.mean(np.abs(a[nz] - f[nz]) / np.abs(a[nz]))) if nz.any() else math.nan
    return value, int((~nz).sum())


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE ``mean 200 |A - F| / (|A| + |F|)`` [%], 0..200, pairs with A = F = 0 count 0 [2]_."""
    a, f = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    den = np.abs(a) + np.abs(f)
    return float(np.mean(np.where(den > 0, 200 * np.abs(a - f) / np.where(den > 0, den, 1.0), 0.0)))


def pinball_loss(actual: np.ndarray, forecast: np.ndarray, q: float) -> float:
    """Pinball (quantile) loss ``mean max(q (A - F), (q - 1)(A - F))`` [unit of y] [3]_."""
    d = np.asarray(actual, dtype=float) - np.asarray(forecast, dtype=float)
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


def _scores(g: pd.DataFrame) -> dict:
    """All metrics of one set of rows (see :func:`metrics`)."""
    a = g["actual"].to_numpy(dtype=float)
    mean_a = float(np.mean(a))
    r = rmse(a, g["p50"])
    m, skipped = mape(a, g["p50"])
    return {"n": len(g), "mae": mae(a, g["p50"]), "rmse": r, "nrmse": r / mean_a if mean_a else math.nan,
            "mape_pct": m, "mape_zero_actuals_skipped": skipped, "smape_pct": smape(a, g["p50"]),
            "pinball": float(np.mean([pinball_loss(a, g[f"p{round(q * 100)}"], q) for q in QUANTILES])),
            "coverage_p10": float(np.mean(a <= g["p10"])), "coverage_p90": float(np.mean(a <= g["p90"])),
            "interval_coverage": float(np.mean((a >= g["p10"]) & (a <= g["p90"])))}


def _clean(d: dict) -> dict:
    """NaN -> None, so the result prints as strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def metrics(frame: pd.DataFrame, persistence_frame: pd.DataFrame | None = None) -> dict:
    """Accuracy of a backtest, overall and per horizon step.

    Parameters
    ----------
    frame : DataFrame
        Rows of :func:`backtest` (one model).
    persistence_frame : DataFrame, optional
        Rows of the persistence backtest on the same origins; adds ``skill``.

    Returns
    -------
    dict
        ``{"model", "origins", "overall": {...}, "per_step": [{"step": 1, ...}, ...]}`` with, computed on P50
        unless said otherwise: ``mae``, ``rmse`` [unit of y]; ``nrmse`` = RMSE / mean actual [-];
        ``mape_pct`` [%] skipping zero actuals (``mape_zero_actuals_skipped`` counts them); ``smape_pct``
        [%] [2]_; ``pinball`` [unit of y], the pinball loss averaged over P10/P50/P90 [3]_;
        ``coverage_p10`` / ``coverage_p90`` (share of actuals <= P10 / P90, ideally 0.1 / 0.9),
        ``interval_coverage`` (share within P10..P90, ideally 0.8); ``skill`` = 1 - MAE / MAE_persistence
        on the rows both frames share [-] [4]_. Undefined values are None.
    """
    if frame.empty:
        raise ForecastError("frame: no backtest rows to score")
    per = frame.groupby("step")
    overall, steps = _scores(frame), {s: _scores(g) for s, g in per}
    if persistence_frame is not None:
        both = frame.merge(persistence_frame[["origin", "step", "p50"]], on=["origin", "step"], suffixes=("", "_ref"))
        if both.empty:
            raise ForecastError("persistence_frame: shares no (origin, step) rows with frame")
        for target, rows in [(overall, both), *((steps[s], g) for s, g in both.groupby("step"))]:
            ref = mae(rows["actual"], rows["p50_ref"])
            target["skill"] = 1 - mae(rows["actual"], rows["p50"]) / ref if ref > 0 else math.nan
    return {"model": str(frame["model"].iloc[0]), "origins": int(frame["origin"].nunique()),
            "overall": _clean(overall), "per_step": [_clean({"step": int(s), **v}) for s, v in steps.items()]}


# ------------------------------------------------------------------------------------------- backtest
def origin_positions(index: pd.DatetimeIndex, seasons: Seasons, horizon: int, *, train_min_days: int = 14,
                     origins_every: int | None = None, max_origins: int | None = None) -> np.ndarray:
    """Positions of the backtest origins in ``index`` (the first forecast step of each).

    By default every day start (midnight in the index's time zone, so local days across DST changes; for
    data without a midnight stamp, the phase of the first value) after ``train_min_days`` days while a full
    horizon fits; with ``origins_every`` the first such day start and then one every ``origins_every``
    steps. ``max_origins`` keeps the latest ones.
    """
    every = seasons.day if origins_every is None else origins_every
    for name, v in (("train_min_days", train_min_days), ("origins_every", every)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ForecastError(f"{name}: must be a positive whole number, got {v!r}")
    n, first = len(index), train_min_days * seasons.day
    candidates = np.arange(first, n - horizon + 1)
    at_midnight = np.asarray(index[candidates] == index[candidates].normalize())
    aligned = candidates[at_midnight] if at_midnight.any() else candidates[candidates % seasons.day == 0]
    if len(aligned) == 0:
        raise ForecastError(f"series: length {n} leaves no origin after {train_min_days} training days "
                            f"with a horizon of {horizon} steps")
    pos = aligned if origins_every is None else np.arange(aligned[0], n - horizon + 1, every)
    if max_origins is not None:
        if max_origins < 1:
            raise ForecastError(f"max_origins: must be at least 1, got {max_origins!r}")
        pos = pos[-max_origins:]
    return pos


def backtest(y: pd.Series, make_model: Factory, horizon: int, *, train_min_days: int = 14,
             origins_every: int | None = None, retrain_every_days: int = 7, X: pd.DataFrame | None = None,
             max_origins: int | None = None, freq: str | None = None, name: str | None = None) -> pd.DataFrame:
    """Rolling-origin backtest with an expanding window [1]_.

    Parameters
    ----------
    y : pandas.Series
        The series [any unit], regular and gap-free (:func:`~anning_lib.forecast.series.check_series`).
    make_model : callable
        Returns a fresh :class:`~anning_lib.forecast.models.Forecaster`.
    horizon : int
        Steps forecast at each origin [steps], 1 .. one week.
    train_min_days : int
        Days of history before the first origin [d].
    origins_every : int, optional
        Steps between origins [steps]; default every day start.
    retrain_every_days : int
        The model is refitted on all values before the origin when this many days have passed since the
        last fit [d]; in between it only gets the longer history.
    X : DataFrame, optional
        Exogenous values on the series' index (e.g. temperature [degC]); the backtest uses the observed
        values as a perfect forecast of them.
    max_origins : int, optional
        Keep only the latest origins.
    freq : str, optional
        The series' step, default inferred.
    name : str, optional
        Model name in the rows, default the model's ``name``.

    Returns
    -------
    DataFrame
        Long rows ``origin, ts, step (1..horizon), actual, p10, p50, p90, model`` [unit of y].

    Raises
    ------
    ForecastError
        unusable series (too short, gaps, non-numeric), bad horizon or options.
    """
    y, step = check_series(y, freq)
    seasons = Seasons(step)
    min_length(seasons, horizon, len(y))
    if isinstance(retrain_every_days, bool) or not isinstance(retrain_every_days, int) or retrain_every_days < 1:
        raise ForecastError(f"retrain_every_days: must be a positive whole number, got {retrain_every_days!r}")
    origins = origin_positions(y.index, seasons, horizon, train_min_days=train_min_days,
                               origins_every=origins_every, max_origins=max_origins)
    model, fitted_at, parts = None, None, []
    for p in origins:
        history = y.iloc[:p]
        if model is None or p - fitted_at >= retrain_every_days * seasons.day:
            model, fitted_at = make_model().fit(history, X, horizon=horizon), p
        target = y.index[p:p + horizon]
        pred = model.predict(target, history, X)
        if not pred.index.equals(target) or not set(COLUMNS) <= set(pred.columns):
            raise ForecastError(f"model {model.name!r}: predict must return columns {COLUMNS} on the asked index")
        parts.append(pd.DataFrame({"origin": y.index[p], "ts": target, "step": np.arange(1, horizon + 1),
                                   "actual": y.iloc[p:p + horizon].to_numpy(),
                                   **{c: pred[c].to_numpy() for c in COLUMNS}}))
    out = pd.concat(parts, ignore_index=True)
    out["model"] = name or model.name
    return out[ROW_COLUMNS]


def compare(y: pd.Series, horizon: int, models: dict[str, Factory], **options) -> dict:
    """Backtest every model on the same origins and score each against persistence.

    Parameters
    ----------
    y : pandas.Series
    horizon : int
        Steps ahead [steps].
    models : dict of str -> callable
        Name -> factory of a fresh forecaster.
    **options
        Passed to :func:`backtest` (``train_min_days``, ``origins_every``, ``retrain_every_days``, ``X``,
        ``max_origins``, ``freq``).

    Returns
    -------
    dict
        ``{"horizon", "origins", "first_origin", "last_origin", "models": {name: metrics(...)}}``.
    """
    if not models:
        raise ForecastError("models: at least one model is needed")
    reference = backtest(y, Persistence, horizon, name="persistence", **options)
    scored = {}
    for name, make in models.items():
        frame = backtest(y, make, horizon, name=name, **options)
        scored[name] = metrics(frame, reference)
    return {"horizon": int(horizon), "origins": int(reference["origin"].nunique()),
            "first_origin": str(reference["origin"].iloc[0]), "last_origin": str(reference["origin"].iloc[-1]),
            "models": scored}
