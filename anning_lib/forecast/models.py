"""Forecasters with P10/P50/P90 behind one interface: three seasonal baselines and quantile gradient boosting.

Every forecaster is fitted on a past series and then asked for the steps right after a ``history`` (which may
be longer than the series it was fitted on): ``model.fit(y).predict(index, history)`` returns a frame with
columns ``p10, p50, p90`` [unit of y] on ``index``. Timestamps label the value of their interval; the
calendar features use the index's own time zone, so give park series in local time (Asia/Shanghai).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from anning_lib.errors import ForecastError
from anning_lib.forecast.series import DAY, Seasons, check_horizon, check_series
from anning_lib.sim.loads import is_workday

QUANTILES = (0.1, 0.5, 0.9)
COLUMNS = ["p10", "p50", "p90"]
CALENDARS = ("CN", None)


def _context(index: pd.DatetimeIndex, history: pd.Series) -> tuple[np.ndarray, Seasons, pd.Timedelta]:
    """History values, seasons and step, after checking that ``index`` continues ``history`` step by step."""
    history, step = check_series(history)
    if not isinstance(index, pd.DatetimeIndex) or len(index) == 0:
        raise ForecastError("index: expected a non-empty DatetimeIndex of the steps to forecast")
    joined = pd.Series(0.0, index=history.index[-2:].append(index))
    try:
        check_series(joined, freq=step)
    except ForecastError as err:
        raise ForecastError(f"index: must continue the history step by step ({step}): {err}") from None
    return history.to_numpy(), Seasons(step), step


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Row means ignoring NaN; NaN where a row has no value (without a warning)."""
    count = np.sum(~np.isnan(a), axis=1)
    return np.where(count > 0, np.nansum(a, axis=1) / np.maximum(count, 1), np.nan)


def _take(values: np.ndarray, pos: np.ndarray, known: np.ndarray | int) -> np.ndarray:
    """``values[pos]`` where ``0 <= pos < known``, else NaN."""
    ok = (pos >= 0) & (pos < known)
    return np.where(ok, values[np.clip(pos, 0, len(values) - 1)], np.nan)


class Forecaster(ABC):
    """The interface: ``fit(y, X)`` then ``predict(index, history, X)`` -> ``p10, p50, p90`` on ``index``."""

    name = "forecaster"

    def fit(self, y: pd.Series, X: pd.DataFrame | None = None, *, horizon: int | None = None) -> Forecaster:
        """Learn from the past series ``y`` [unit of y] (and exogenous ``X`` on the same index)."""
        return self

    @abstractmethod
    def predict(self, index: pd.DatetimeIndex, history: pd.Series, X: pd.DataFrame | None = None) -> pd.DataFrame:
        """Quantile forecasts for ``index``, the steps right after ``history``'s last timestamp."""


class _Seasonal(Forecaster):
    """A seasonal baseline: the mean of ``terms`` past values whole periods back, known at the origin.

    Beyond one period ahead the lag grows to ``period * (floor((h - 1) / period) + 1)`` [steps], the seasonal
    naive rule of Hyndman & Athanasopoulos (2021, *Forecasting: principles and practice*, 3rd ed., 5.2).

    P50 is the point forecast. P10 and P90 add the 10 % and 90 % quantiles of the rule's own in-sample errors
    ``y(t) - yhat(t)`` at the same lag and the same time of day over the last ``error_days`` days of
    ``history`` (clipped so that P10 <= P50 <= P90); with no past errors P10 = P50 = P90.
    """

    period, k = "week", 1   # which season of Seasons, and how many of its past values are averaged

    def __init__(self, error_days: int = 56):
        self.error_days = error_days

    def _point(self, values: np.ndarray, pos: np.ndarray, lag: np.ndarray, seasons: Seasons) -> np.ndarray:
        period = getattr(seasons, self.period)
        return _nanmean(np.column_stack([_take(values, pos - lag - j * period, len(values)) for j in range(self.k)]))

    def predict(self, index: pd.DatetimeIndex, history: pd.Series, X: pd.DataFrame | None = None) -> pd.DataFrame:
        values, seasons, _step = _context(index, history)
        n = len(values)
        lead = np.arange(1, len(index) + 1)
        period = getattr(seasons, self.period)
        lag = period * ((lead - 1) // period + 1)  # latest whole period known at the origin (H&A 2021, 5.2)
        point = self._point(values, n + lead - 1, lag, seasons)
        lo, hi = np.zeros(len(index)), np.zeros(len(index))
        past = np.arange(max(0, n - self.error_days * seasons.day), n)
        for one_lag in np.unique(lag):
            err = values[past] - self._point(values, past, np.full(len(past), one_lag), seasons)
            q = pd.Series(err).groupby(past % seasons.day).quantile([0.1, 0.9]).unstack()
            rows = lag == one_lag
            slot = pd.Index((n + lead[rows] - 1) % seasons.day)
            lo[rows] = q[0.1].reindex(slot).fillna(0.0).to_numpy()
            hi[rows] = q[0.9].reindex(slot).fillna(0.0).to_numpy()
        out = np.column_stack([point + np.minimum(lo, 0.0), point, point + np.maximum(hi, 0.0)])
        return pd.DataFrame(out, index=index, columns=COLUMNS)


class Persistence(_Seasonal):
    """Same time yesterday: ``y(t - 1 day)``; for daily data the previous day (Hyndman & Athanasopoulos 2021)."""

    name, period = "persistence", "day"


class SeasonalNaive(_Seasonal):
    """Same time last week: ``y(t - 7 days)`` (Hyndman & Athanasopoulos 2021, section 5.2)."""

    name = "seasonal_naive"


class MeanOfWeekdays(_Seasonal):
    """Mean of the last ``k`` values on the same weekday and time: ``mean_j y(t - j weeks)``, j = 1..k."""

    def __init__(self, k: int = 4, error_days: int = 56):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ForecastError(f"k: must be a positive whole number of weeks, got {k!r}")
        super().__init__(error_days)
        self.k, self.name = k, f"mean_of_{k}_weekdays"


def _workdays(times: pd.DatetimeIndex, calendar: str | None) -> np.ndarray:
    """1.0 on working days: the Chinese calendar with make-up weekends (``"CN"``) or Monday..Friday (None)."""
    if calendar not in CALENDARS:
        raise ForecastError(f"calendar: must be one of {CALENDARS}, got {calendar!r}")
    if calendar is None:
        return (times.day_of_week < 5).astype(float)
    days = pd.Index(times.date)
    lookup = {d: float(is_workday(d)) for d in days.unique()}
    return days.map(lookup).to_numpy(dtype=float)


def _exogenous(X: pd.DataFrame | None, times: pd.DatetimeIndex, strict: bool) -> pd.DataFrame:
    """Columns of X on ``times``; with ``strict`` every value must be there (forecast steps)."""
    if X is None:
        return pd.DataFrame(index=times)
    if not isinstance(X, pd.DataFrame) or not isinstance(X.index, pd.DatetimeIndex):
        raise ForecastError(f"X: expected a DataFrame on a DatetimeIndex, got {type(X).__name__}")
    out = X.reindex(times).apply(pd.to_numeric, errors="coerce").astype(float)
    if strict and out.isna().any().any():
        col = out.columns[out.isna().any()][0]
        raise ForecastError(f"X: column {col!r} has no value at {out.index[out[col].isna()][0]} (forecast step)")
    return out.rename(columns=lambda c: f"x_{c}")


def _design(values: np.ndarray, targets: np.ndarray, origins: np.ndarray, times: pd.DatetimeIndex,
            seasons: Seasons, horizon: int, calendar: str | None) -> pd.DataFrame:
    """Feature rows for target positions, each knowing ``values[:origin]`` only (no look-ahead)."""
    seconds = (times.hour * 3600 + times.minute * 60 + times.second).to_numpy() / 86400.0
    day, week = seasons.day, seasons.week
    cols = {"tod_sin": np.sin(2 * np.pi * seconds), "tod_cos": np.cos(2 * np.pi * seconds),
            "weekday": times.day_of_week.to_numpy().astype(float), "workday": _workdays(times, calendar),
            "workday_week_ago": _workdays(times - 7 * DAY, calendar), "lead": (targets - origins + 1).astype(float)}
    if horizon <= day:
        cols["workday_day_ago"] = _workdays(times - DAY, calendar)
        cols["lag_day"] = _take(values, targets - day, origins)
        cols["lag_day_change_week"] = cols["lag_day"] - _take(values, targets - day - week, origins)
    weeks = np.column_stack([_take(values, targets - j * week, origins) for j in range(1, 5)])
    cols["lag_week"] = weeks[:, 0]
    cols["mean_4_weekdays"] = _nanmean(weeks)
    cols["origin_value"] = _take(values, origins - 1, origins)
    cols["origin_change_week"] = cols["origin_value"] - _take(values, origins - 1 - week, origins)
    csum = np.concatenate([[0.0], np.cumsum(values)])     # last day's mean minus the same day a week before
    at = [csum[np.clip(origins - lag, 0, len(values))] for lag in (0, day, week, week + day)]
    change = (at[0] - at[1] - at[2] + at[3]) / day
    cols["last_day_change_week"] = np.where(origins >= week + day, change, np.nan)
    return pd.DataFrame(cols, index=times)


def features(index: pd.DatetimeIndex, history: pd.Series, X: pd.DataFrame | None = None,
             seasons: Seasons | None = None, *, calendar: str | None = "CN",
             horizon: int | None = None) -> pd.DataFrame:
    """Features of the steps ``index`` right after ``history``, using only what is known at its end.

    Parameters
    ----------
    index : DatetimeIndex
        The steps to forecast, continuing ``history``.
    history : pandas.Series
        The past [unit of y], regular and gap-free.
    X : DataFrame, optional
        Exogenous values (e.g. air temperature [degC]) covering ``index``; columns become ``x_<name>``.
    seasons : Seasons, optional
        Default: from the history's step.
    calendar : {"CN", None}
        Working days from the Chinese calendar (holidays and make-up working weekends) or plain Mon..Fri.
    horizon : int, optional
        The horizon the model serves [steps], default ``len(index)``; the one-day lags are features only when
        it is at most one day, so that every lag is known at the origin for every step.

    Returns
    -------
    DataFrame
        ``tod_sin, tod_cos`` (time of day), ``weekday`` (0 = Monday), ``workday``, ``workday_week_ago``,
        ``workday_day_ago`` (0/1), ``lead`` [steps]; [unit of y]: ``lag_day`` (y(t - 1 day)),
        ``lag_day_change_week`` (y(t - 1 day) - y(t - 8 days)), ``lag_week``, ``mean_4_weekdays``,
        ``origin_value`` (last known value), ``origin_change_week``, ``last_day_change_week`` (mean of the
        last day minus the mean of the same day a week before); then ``x_*``.
    """
    values, found, _step = _context(index, history)
    seasons = seasons or found
    horizon = check_horizon(seasons, horizon or len(index))
    n = len(values)
    design = _design(values, n + np.arange(len(index)), np.full(len(index), n), index, seasons, horizon, calendar)
    return design.join(_exogenous(X, index, strict=True))


def _base(design: pd.DataFrame) -> np.ndarray:
    """Level-adjusted seasonal naive [unit of y]: ``lag_week + last_day_change_week`` (0 where unknown)."""
    return design["lag_week"].to_numpy() + np.nan_to_num(design["last_day_change_week"].to_numpy())


class GradientBoosting(Forecaster):
    """Direct multi-step quantile gradient boosting (scikit-learn ``HistGradientBoostingRegressor``).

    One model per quantile q in 0.1/0.5/0.9 with the pinball loss (Koenker & Bassett 1978) learns the
    departure from a level-adjusted seasonal naive forecast, ``y(t) - [y(t - 1 week) + last_day_change_week]``
    (trees cannot extrapolate a level; a departure they can learn), from :func:`features`. Training rows are
    cut into blocks of ``horizon`` steps counted back from the end of the series; each row sees only the
    values before its block, exactly as at forecast time.

    P10 and P90 are calibrated by split conformal prediction (Romano, Patterson & Candes 2019, one-sided
    form): the models are first fitted without the last ``calibration_days`` days (at most half the rows),
    which they forecast out of sample; P10 moves by the 10 % quantile of ``y - P10`` there and P90 by the
    90 % quantile of ``y - P90``; then the models are refitted on everything. P50 is the median model; the
    quantiles are sorted and P10/P90 clipped to P50, so that P10 <= P50 <= P90.

    Parameters
    ----------
    horizon : int, optional
        Steps ahead the model serves [steps], default one day; ``fit(horizon=...)`` overrides.
    calendar : {"CN", None}
        Working-day calendar (see :func:`features`).
    calibration_days : int
        Days held out to calibrate P10/P90 [d]; 0 keeps the raw quantile models.
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        Passed to ``HistGradientBoostingRegressor``; ``random_state`` fixes the result.
    n_threads : int or None
        OpenMP threads for fit and predict; default 1: on these small training sets (thousands of rows) a
        second thread gains little, and on a busy machine spinning OpenMP threads made a fit 6x slower.

    References
    ----------
    Koenker, R., Bassett, G. (1978). Regression quantiles. Econometrica 46(1), 33-50.
    Romano, Y., Patterson, E., Candes, E. (2019). Conformalized quantile regression. NeurIPS 32.
    """

    name = "gradient_boosting"

    def __init__(self, horizon: int | None = None, *, calendar: str | None = "CN", calibration_days: int = 28,
                 max_iter: int = 200, learning_rate: float = 0.05, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 50, l2_regularization: float = 0.0, random_state: int = 0,
                 n_threads: int | None = 1):
        if calendar not in CALENDARS:
            raise ForecastError(f"calendar: must be one of {CALENDARS}, got {calendar!r}")
        self.horizon, self.calendar, self.calibration_days = horizon, calendar, calibration_days
        self.n_threads = n_threads
        self.params = dict(max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
                           min_samples_leaf=min_samples_leaf, l2_regularization=l2_regularization,
                           random_state=random_state)
        self.models_: dict[float, HistGradientBoostingRegressor] = {}
        self.shifts_ = np.zeros(3)

    def _fit_models(self, design: pd.DataFrame, actual: np.ndarray, quantiles=QUANTILES) -> dict:
        change = actual - _base(design)
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return {q: HistGradientBoostingRegressor(loss="quantile", quantile=q, **self.params).fit(design, change)
                    for q in quantiles}

    @staticmethod
    def _quantiles(models: dict, design: pd.DataFrame) -> np.ndarray:
        """Sorted predictions of ``models`` (ascending q) [unit of y], one column per model."""
        raw = _base(design)[:, None] + np.column_stack([models[q].predict(design) for q in sorted(models)])
        return np.sort(raw, axis=1)

    def fit(self, y: pd.Series, X: pd.DataFrame | None = None, *, horizon: int | None = None) -> GradientBoosting:
        """Fit the three quantile models on ``y`` [unit of y] and ``X`` (columns on y's index)."""
        y, step = check_series(y)
        seasons = Seasons(step)
        self.horizon_ = check_horizon(seasons, horizon or self.horizon or seasons.day)
        values, n = y.to_numpy(), len(y)
        targets = np.arange(n)
        origins = n - ((n - 1 - targets) // self.horizon_ + 1) * self.horizon_
        keep = origins >= seasons.week + seasons.day
        if keep.sum() < 2 * seasons.day:
            raise ForecastError(f"series: length {n} leaves {int(keep.sum())} training rows, {2 * seasons.day} needed "
                                f"(a row needs 8 days of values before its forecast origin); give more history")
        design = _design(values, targets[keep], origins[keep], y.index[keep], seasons, self.horizon_, self.calendar)
        design = design.join(_exogenous(X, y.index[keep], strict=False))
        self.columns_, actual = list(design.columns), values[keep]
        cal = min(self.calibration_days, int(keep.sum()) // seasons.day // 2) * seasons.day
        self.shifts_ = np.zeros(3)
        if cal:
            tails = self._fit_models(design.iloc[:-cal], actual[:-cal], (QUANTILES[0], QUANTILES[2]))
            held = self._quantiles(tails, design.iloc[-cal:])
            self.shifts_[0] = np.quantile(actual[-cal:] - held[:, 0], QUANTILES[0])
            self.shifts_[2] = np.quantile(actual[-cal:] - held[:, 1], QUANTILES[2])
        self.models_ = self._fit_models(design, actual)
        return self

    def predict(self, index: pd.DatetimeIndex, history: pd.Series, X: pd.DataFrame | None = None) -> pd.DataFrame:
        """P10/P50/P90 [unit of y] for ``index``, the steps right after ``history`` (X must cover them)."""
        if not self.models_:
            raise ForecastError("model: predict called before fit")
        if len(index) > self.horizon_:
            raise ForecastError(f"horizon: {len(index)} steps asked, the model was fitted for {self.horizon_}")
        design = features(index, history, X, calendar=self.calendar, horizon=self.horizon_)
        if list(design.columns) != self.columns_:
            raise ForecastError(f"X: columns {list(design.columns)} differ from the fitted {self.columns_}")
        if design["lag_week"].isna().any():
            raise ForecastError(f"history: {len(history)} values do not reach one week before every forecast step")
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            raw = self._quantiles(self.models_, design) + self.shifts_
        out = np.column_stack([np.minimum(raw[:, 0], raw[:, 1]), raw[:, 1], np.maximum(raw[:, 2], raw[:, 1])])
        return pd.DataFrame(out, index=index, columns=COLUMNS)
