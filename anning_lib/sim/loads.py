"""Sector load profiles: relative activity of a sub-metered load, minute by minute.

The activity ``a(t)`` is the load's demand relative to its mean running demand, so that
``p_kw = rated_kw * load_factor * a(t)`` and ``production_t_h = production_t_per_h * a(t)`` while running.
Standby, shifts, weekends, public holidays (python-``holidays``, China), planned maintenance outages,
unplanned stops and noise are all drawn deterministically from the seed, per device and per day.
"""

from __future__ import annotations

import zlib
from datetime import date

import holidays
import numpy as np
import pandas as pd

from anning_lib.park.schema import LoadParams

STANDBY_FRAC_OF_RATED = {"office": 0.12, "utility": 0.25}
"""Demand while not running, as a fraction of rated [-]; 0.05 for process profiles. ASSUMPTION."""
SHIFT_HOURS = {"continuous": (0.0, 24.0), "two_shift": (6.0, 22.0), "day": (8.0, 18.0)}
OFFICE_HOURS = (8.5, 18.0)
EAF_POWER_ON_FRAC = 0.70    # power-on share of a tap-to-tap cycle [-]; ASSUMPTION (modern EAF 45-60 min heats)
EAF_CYCLE_MIN = 60


def _rng(seed: int, device_id: str, key: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(device_id.encode()), key])


_CN = holidays.country_holidays("CN", years=range(2015, 2036))


def is_workday(day: date) -> bool:
    """A working day in China: Monday to Friday except public holidays and the State Council's substitute days
    off, plus the weekend days declared working days in lieu (调休上班)."""
    return _CN.is_working_day(day)


def outage_days(seed: int, device_id: str, year: int, days_per_year: float) -> set[date]:
    """Planned maintenance outage: one block of ``days_per_year`` days per year at a seeded position."""
    n = int(round(days_per_year))
    if n <= 0:
        return set()
    start = pd.Timestamp(year=year, month=1, day=1) + pd.Timedelta(days=int(_rng(seed, device_id, year).integers(0, 365 - n)))
    return {(start + pd.Timedelta(days=i)).date() for i in range(n)}


def _hours(times: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(times.hour + times.minute / 60.0, dtype=float)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average (ramps instead of steps at starts and stops)."""
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width // 2, x[0]), x, np.full(width - 1 - width // 2, x[-1])])
    return np.convolve(padded, kernel, mode="valid")


def _ar1(rng: np.random.Generator, n: int, sigma: float, phi: float) -> np.ndarray:
    eps = rng.standard_normal(n) * sigma * np.sqrt(1 - phi**2)
    out = np.empty(n)
    out[0] = rng.standard_normal() * sigma
    for i in range(1, n):
        out[i] = phi * out[i - 1] + eps[i]
    return out


def _shape(profile: str, n: int, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Running-state shape with mean about 1."""
    if profile == "steel_eaf":
        phase = rng.integers(0, EAF_CYCLE_MIN)
        minute = (np.arange(n) + phase) % EAF_CYCLE_MIN
        on = minute < EAF_POWER_ON_FRAC * EAF_CYCLE_MIN
        arc = 1.0 + 0.12 * rng.standard_normal(n)          # arc fluctuation, bore-down to flat bath
        return np.where(on, arc / EAF_POWER_ON_FRAC, 0.04)
    if profile == "steel_rolling":
        passes = np.where(rng.random(n) < 0.8, 1.15, 0.45)  # billet in the stands / gap between billets
        shape = passes + 0.05 * rng.standard_normal(n)
        for _ in range(rng.poisson(2.0)):                   # roll changes and cobbles, 20-40 min
            s = rng.integers(0, n)
            shape[s : s + rng.integers(20, 41)] = 0.15
        return shape / max(shape.mean(), 0.3) * 0.95
    if profile in ("continuous", "battery_line"):
        return 1.0 + _ar1(rng, n, 0.03, 0.995) + 0.01 * rng.standard_normal(n)
    if profile == "utility":
        return 1.0 + 0.15 * np.sin((hours - 9.0) / 24 * 2 * np.pi) + 0.03 * rng.standard_normal(n)
    if profile == "office":
        return 1.0 + 0.05 * rng.standard_normal(n)
    raise ValueError(f"unknown load profile '{profile}'")


def running_mask(profile: str, shifts: str, works_weekends: bool, day: date, hours: np.ndarray) -> np.ndarray:
    """Whether the load runs at each time of ``day`` (before outages and unplanned stops)."""
    workday = is_workday(day)
    if profile == "office":
        lo, hi = OFFICE_HOURS
        return np.full(hours.shape, workday) & (hours >= lo) & (hours < hi)
    if profile == "utility" or shifts == "continuous":
        return np.ones(hours.shape, dtype=bool)
    if not workday and not (works_weekends and day not in _CN):  # weekend-working plants still stop on holidays
        return np.zeros(hours.shape, dtype=bool)
    lo, hi = SHIFT_HOURS[shifts]
    return (hours >= lo) & (hours < hi)


def load_activity(
    times: pd.DatetimeIndex, day: date, device_id: str, params: LoadParams, shifts: str, works_weekends: bool, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Activity of one load over one local day.

    Parameters
    ----------
    times : DatetimeIndex
        the day's timestamps, local time, 1-minute steps.
    day : date
        the local calendar day.
    device_id, params, shifts, works_weekends, seed
        the load and its enterprise's working pattern.

    Returns
    -------
    activity : ndarray
        demand relative to the mean running demand [-].
    running : ndarray
        share of the time the load produces, 0..1 after ramps [-].
    """
    rng = _rng(seed, device_id, day.toordinal())
    hours = _hours(times)
    n = len(times)
    run = running_mask(params.profile, shifts, works_weekends, day, hours).astype(float)
    if params.profile not in ("office", "utility"):
        if day in outage_days(seed, device_id, day.year, params.outage_days_per_year):
            run[:] = 0.0
        n_stops = rng.poisson(0.35 if params.profile == "battery_line" else 0.08)
        for _ in range(n_stops):                           # unplanned stops, 1-4 h
            s = rng.integers(0, n)
            run[s : s + rng.integers(60, 241)] = 0.0
    run = np.clip(_smooth(run, 31), 0.0, 1.0)
    standby = STANDBY_FRAC_OF_RATED.get(params.profile, 0.05) / params.load_factor
    shape = np.clip(_shape(params.profile, n, hours, rng), 0.0, 1.05 / params.load_factor)
    activity = run * shape + (1.0 - run) * standby
    return activity, run
