"""Checking a series before it is forecast: a regular, gap-free, numeric time series.

Every refusal is a :class:`~anning_lib.errors.ForecastError` whose message names the offending timestamp,
value or length, so that the CLI can print it as one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anning_lib.errors import ForecastError

DAY = pd.Timedelta(days=1)
MIN_WEEKS = 3
"""Shortest usable series: this many weeks of history plus one horizon [weeks]."""


def _step(freq: str | pd.Timedelta) -> pd.Timedelta:
    """A fixed duration from a frequency string such as ``"30min"``, ``"h"``, ``"D"``."""
    try:
        step = pd.Timedelta(freq)
    except (ValueError, TypeError):
        try:
            step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq).nanos, unit="ns")
        except (ValueError, TypeError, AttributeError):
            raise ForecastError(f"freq: not a fixed duration: {freq!r}") from None
    if step <= pd.Timedelta(0):
        raise ForecastError(f"freq: must be positive, got {freq!r}")
    return step


def _numeric(y: pd.Series) -> pd.Series:
    """Float values, or ForecastError naming the first non-numeric or non-finite value."""
    if pd.api.types.is_bool_dtype(y.dtype):
        raise ForecastError(f"value: non-numeric (boolean) at {y.index[0]}: {bool(y.iloc[0])}")
    values = pd.to_numeric(y, errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        i = int(np.argmax(bad))
        kind = "non-numeric" if pd.notna(y.iloc[i]) and pd.isna(values.iloc[i]) else "missing or non-finite"
        v = y.iloc[i]
        shown = float(v) if isinstance(v, (float, np.floating)) else repr(v)
        raise ForecastError(f"value: {kind} at {y.index[i]}: {shown} ({int(bad.sum())} bad values in all)")
    return values


def _diffs(index: pd.DatetimeIndex, daily: bool) -> pd.TimedeltaIndex:
    """Differences between consecutive stamps; for daily data on local wall time (DST days are 23 or 25 h)."""
    if daily and index.tz is not None:
        index = index.tz_localize(None)
    return pd.TimedeltaIndex(index[1:] - index[:-1])


def check_series(y: pd.Series, freq: str | None = None) -> tuple[pd.Series, pd.Timedelta]:
    """Check that ``y`` is a regular, gap-free numeric time series.

    Parameters
    ----------
    y : pandas.Series
        Values [any unit] on a DatetimeIndex (time-zone aware or naive). Unsorted input is sorted.
    freq : str, optional
        The expected step (``"15min"``, ``"30min"``, ``"h"``, ``"D"``). Default: the most common difference
        between consecutive timestamps.

    Returns
    -------
    y : pandas.Series
        Sorted float copy, same index.
    step : pandas.Timedelta
        The step between values.

    Raises
    ------
    ForecastError
        not a Series on a DatetimeIndex, fewer than 3 values, duplicated timestamps (the first is named),
        differences that are not a whole number of steps (irregular), missing steps (the first gap and the
        number of missing steps are named), non-numeric, missing or non-finite values (the first timestamp
        and value are named).
    """
    if not isinstance(y, pd.Series) or not isinstance(y.index, pd.DatetimeIndex):
        raise ForecastError(f"series: expected a pandas Series on a DatetimeIndex, got {type(y).__name__}")
    if len(y) < 3:
        raise ForecastError(f"series: length {len(y)} is too short (at least 3 values needed to find a step)")
    y = y.sort_index(kind="stable")
    dup = y.index.duplicated()
    if dup.any():
        raise ForecastError(f"ts: duplicated timestamp {y.index[dup][0]} ({int(dup.sum())} duplicates in all)")
    if freq is not None:
        step = _step(freq)
    else:
        abs_diffs = pd.TimedeltaIndex(y.index[1:] - y.index[:-1])
        step = pd.Series(abs_diffs).mode().iloc[0]
        if step >= pd.Timedelta(hours=23) and step <= pd.Timedelta(hours=25):
            step = DAY
    diffs = _diffs(y.index, step >= DAY)
    ratio = diffs / step
    irregular = (ratio < 1) | (ratio != np.round(ratio))
    if irregular.any():
        i = int(np.argmax(irregular))
        raise ForecastError(f"ts: irregular step {diffs[i]} after {y.index[i]} (expected multiples of {step})")
    gaps = np.flatnonzero(ratio > 1)
    if len(gaps):
        i = int(gaps[0])
        missing = int(ratio[i]) - 1
        total = int(np.sum(ratio[gaps] - 1))
        raise ForecastError(f"ts: gap of {missing} missing steps of {step} after {y.index[i]} "
                            f"(next value at {y.index[i + 1]}; {len(gaps)} gaps, {total} missing steps in all)")
    return _numeric(y), step


@dataclass(frozen=True)
class Seasons:
    """Seasonal periods of a series in steps.

    Parameters
    ----------
    step : pandas.Timedelta
        The series' step; daily, or finer and dividing a day.

    Attributes
    ----------
    day : int
        Steps per day [steps] (1 for daily data).
    week : int
        Steps per week [steps], ``7 * day``.
    """

    step: pd.Timedelta

    def __post_init__(self) -> None:
        step = pd.Timedelta(self.step)
        if step <= pd.Timedelta(0) or step > DAY or DAY % step != pd.Timedelta(0):
            raise ForecastError(f"freq: {step} - frequency must be daily or finer and divide a day")
        object.__setattr__(self, "step", step)

    @property
    def day(self) -> int:
        return int(DAY // self.step)

    @property
    def week(self) -> int:
        return 7 * self.day


def check_horizon(seasons: Seasons, horizon: int) -> int:
    """A horizon of 1 .. one week of steps [steps]; ForecastError otherwise."""
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or not 1 <= horizon <= seasons.week:
        raise ForecastError(f"horizon: must be a whole number of steps from 1 to {seasons.week} "
                            f"(one week), got {horizon!r}")
    return int(horizon)


def min_length(seasons: Seasons, horizon: int, n: int | None = None) -> int:
    """Shortest usable series: :data:`MIN_WEEKS` weeks of history plus one horizon [steps].

    Parameters
    ----------
    seasons : Seasons
    horizon : int
        Steps ahead [steps].
    n : int, optional
        The series' length [steps]; when given, a shorter series is refused.

    Returns
    -------
    int
        The minimum length [steps].

    Raises
    ------
    ForecastError
        bad horizon, or ``n`` below the minimum (naming both).
    """
    need = MIN_WEEKS * seasons.week + check_horizon(seasons, horizon)
    if n is not None and n < need:
        raise ForecastError(f"series: length {n} is too short; at least {need} values are needed "
                            f"({MIN_WEEKS} weeks of {seasons.step} steps plus a horizon of {horizon})")
    return need
