"""Diagnostics of an enterprise from its metered data (issue 11 point 1): the figures the advice is built on.

Pure functions take 15-minute MEAN power series ``p_kw`` [kW] with a time-zone-aware DatetimeIndex (the stored
rollups, labelled at the start of their quarter-hour, ``docs/glossary.md``) and return numbers; the energy of a
quarter-hour is ``p × 0.25 h``. NaN is "no reading" and is left out of every sum, mean and extreme.
:func:`anning_lib.advice.readings.enterprise_diagnostics` reads the store and composes them for one enterprise and
period.

================================  =======================================================================
figure                            definition
================================  =======================================================================
base load (:func:`base_load_kw`)  median over local nights of the mean power 01:00-05:00; idle days: local
                                  days with energy below half the median day's
load factor                       mean / max of the quarter-hour means [1]_
energy per tariff band            Σ p × 0.25 h over the quarter-hours of each time-of-use band (net: an
                                  export quarter-hour counts negative)
flexible peak energy              Σ over peak-band quarter-hours of max(p − base, 0) × 0.25 h
power factor                      monthly (period) mean: active / apparent energy, reactive energy counted
                                  in both directions, as the 功率因数调整电费办法 computes it [2]_
specific use                      amount per tonne of product (kWh/t, Nm3/t, t steam/t)
trend                             least-squares slope per month and last-vs-first change
================================  =======================================================================

References
----------
.. [1] IEEE Std 100-2000, *The Authoritative Dictionary of IEEE Standards Terms*, 7th ed., "load factor": the ratio
   of the average load over a designated period of time to the peak load occurring in that period.
.. [2] 水利电力部、国家物价局《功率因数调整电费办法》（(83)水电财字第215号, 1983-12-02）, 一 and 二 (read in a
   secondary copy of the text, https://777doc.com/doc-5713324.html): standard 0.90 for high-voltage industrial
   users of 160 kVA and above; the monthly mean power factor from the month's active and reactive energy, and,
   where reactive energy may flow back to the grid, from the sum of the absolute values of both directions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from anning_lib.dispatch.tariff import BANDS, band_of
from anning_lib.errors import AnningError

QUARTER_H = 0.25
"""Hours of one 15-minute step [h]."""
NIGHT_HOURS = (1.0, 5.0)
"""Local hours ``[start, end)`` whose mean power is a night's base load [h]."""
IDLE_DAY_FRAC = 0.5
"""A local day with energy below this share of the median day's energy is an idle day [-]."""
MIN_DAY_COVERAGE_FRAC = 0.5
"""A local day enters the idle-day test only with at least this share of its quarter-hours metered [-]."""
PF_THRESHOLD = 0.90
"""Power factor standard of high-voltage industrial users of 160 kVA and above [-]: 《功率因数调整电费办法》
(83)水电财字第215号, 1983, 一 (module References [2])."""
TREND_FLAT_FRAC = 0.02
"""A trend whose last-vs-first change is smaller than this (in magnitude) is "flat" [-]."""
PEAK_QUANTILE = 0.95
"""Quantile of the quarter-hour means reported as ``p95_kw`` by :func:`peak_demand` [-]."""


# ------------------------------------------------------------------------------------------------ helpers
def _clean(p: pd.Series) -> pd.Series:
    """The series as float64 without NaN (pure)."""
    return pd.Series(p, dtype="float64").dropna()


def _local(p: pd.Series, tz: str) -> pd.Series:
    if not isinstance(p.index, pd.DatetimeIndex) or p.index.tz is None:
        raise AnningError("p_kw: needs a time-zone-aware DatetimeIndex (15-minute means labelled at their start)")
    return p.tz_convert(tz)


def _day_quarters(days: pd.DatetimeIndex, tz: str) -> np.ndarray:
    """Quarter-hours in each local day (96, or 92/100 on a daylight-saving change) [-] (pure)."""
    naive = days.tz_localize(None)
    ends = (naive + pd.Timedelta("1D")).tz_localize(tz)
    return np.asarray((ends - days) / pd.Timedelta("15min"), dtype="float64")


# ------------------------------------------------------------------------------------------------ pure figures
def base_load_kw(p_kw: pd.Series, tz: str = "Asia/Shanghai") -> dict:
    """Base load of a load curve: the night level, and the level on idle days.

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean power [kW], time-zone-aware DatetimeIndex.
    tz : str
        time zone of the local nights and days [IANA name].

    Returns
    -------
    dict
        ``night_kw``: median over the local nights of each night's mean power over :data:`NIGHT_HOURS`
        (01:00-05:00) [kW], None without night readings; ``idle_day_kw``: mean power over the idle days [kW], None
        when there is none; ``idle_days``: number of idle days [-]. An idle day is a local day whose energy is below
        :data:`IDLE_DAY_FRAC` of the median day's energy (shutdown, maintenance, holiday). A day's energy is
        taken as its mean power × its hours, so a day with missing quarter-hours is not mistaken for an idle one;
        days with less than :data:`MIN_DAY_COVERAGE_FRAC` of their quarter-hours metered are left out of the
        test, and no day is idle when the median day's energy is not positive (an exporter).
    """
    p = _local(_clean(p_kw), tz)
    hours = p.index.hour + p.index.minute / 60.0
    night = p[(hours >= NIGHT_HOURS[0]) & (hours < NIGHT_HOURS[1])]
    night_kw = float(night.groupby(night.index.normalize()).mean().median()) if len(night) else None
    idle_kw, idle_n = None, 0
    if len(p):
        key = p.index.normalize()
        by_day = p.groupby(key).agg(["mean", "count"])
        days = pd.DatetimeIndex(by_day.index)
        full = by_day["count"].to_numpy() / _day_quarters(days, tz) >= MIN_DAY_COVERAGE_FRAC
        e_day = by_day["mean"].to_numpy() * _day_quarters(days, tz) * QUARTER_H          # [kWh]
        e_day = e_day[full]
        median = float(np.median(e_day)) if e_day.size else 0.0
        if median > 0:
            idle = days[full][e_day < IDLE_DAY_FRAC * median]
            idle_n = len(idle)
            if idle_n:
                idle_kw = float(p[key.isin(idle)].mean())
    return {"night_kw": night_kw, "idle_day_kw": idle_kw, "idle_days": idle_n}


def load_factor(p_kw: pd.Series) -> float | None:
    """Load factor: mean / max of the quarter-hour means [-] (module References [1]).

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean power [kW]; NaN left out.

    Returns
    -------
    float or None
        ``mean / max`` [-]; None without data or when the maximum is not positive.

    References
    ----------
    IEEE Std 100-2000, "load factor" (module References [1]).
    """
    p = _clean(p_kw)
    if p.empty:
        return None
    peak = float(p.max())
    return float(p.mean()) / peak if peak > 0 else None


def band_energy_kwh(p_kw: pd.Series, bands: Sequence[tuple[float, float, str]],
                    tz: str = "Asia/Shanghai") -> dict:
    """Energy per time-of-use band [kWh].

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean power [kW], time-zone-aware DatetimeIndex; a quarter-hour belongs to the band of its start.
    bands : list of (float, float, str)
        ``(start_h, end_h, band)`` in local hours [h], as :func:`anning_lib.dispatch.tariff.load_tou_bands` returns
        them (``[0]``).
    tz : str
        the tariff's time zone [IANA name].

    Returns
    -------
    dict
        ``{"peak": kWh, "flat": kWh, "valley": kWh}`` (each band of the file, 0.0 without readings): Σ p × 0.25 h
        [kWh], net (a quarter-hour of export counts negative).
    """
    p = _local(_clean(p_kw), tz)
    names = list(dict.fromkeys([*BANDS, *(b for _lo, _hi, b in bands)]))
    if p.empty:
        return {b: 0.0 for b in names}
    e = (p * QUARTER_H).groupby(band_of(p.index, list(bands))).sum()
    return {b: float(e.get(b, 0.0)) for b in names}


def flexible_peak_kwh(p_kw: pd.Series, bands: Sequence[tuple[float, float, str]], base_kw: float,
                      tz: str = "Asia/Shanghai") -> float:
    """Energy above the continuous base load that falls in the peak band [kWh]: what shifting or storage could move
    out of peak hours without touching the base load.

    ``Σ over peak-band quarter-hours of max(p − base_kw, 0) × 0.25 h``; a flat load (``p == base_kw``) gives 0.

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean power [kW], time-zone-aware DatetimeIndex.
    bands : list of (float, float, str)
        time-of-use bands ``(start_h, end_h, band)`` in local hours [h] (:func:`load_tou_bands` ``[0]``).
    base_kw : float
        the continuous base load [kW] (:func:`base_load_kw` ``night_kw``).
    tz : str
        the tariff's time zone [IANA name].

    Returns
    -------
    float
        [kWh]
    """
    p = _local(_clean(p_kw), tz)
    if p.empty:
        return 0.0
    peak = p[band_of(p.index, list(bands)) == "peak"]
    return float((peak - float(base_kw)).clip(lower=0.0).sum() * QUARTER_H)


def peak_demand(p_kw: pd.Series, rated_kva: float | None) -> dict:
    """Highest quarter-hour demand and how much of the connection's rating it uses.

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean power [kW] (the billed demand is a 15-minute mean).
    rated_kva : float or None
        transformer or connection rating [kVA]; None if unknown.

    Returns
    -------
    dict
        ``max_kw`` [kW], ``max_at`` (start of the first quarter-hour reaching it, timestamp of the series' zone),
        ``p95_kw`` (the :data:`PEAK_QUANTILE` quantile, linear interpolation) [kW], ``utilisation_frac`` =
        ``max_kw / rated_kva`` [-] (active over apparent power: a lower bound of the transformer's loading; None
        without a rating). Every value None without data.
    """
    p = _clean(p_kw)
    if p.empty:
        return {"max_kw": None, "max_at": None, "p95_kw": None, "utilisation_frac": None}
    max_kw = float(p.max())
    util = max_kw / float(rated_kva) if rated_kva else None
    return {"max_kw": max_kw, "max_at": p.idxmax(), "p95_kw": float(p.quantile(PEAK_QUANTILE)),
            "utilisation_frac": util}


def power_factor(p_kw: pd.Series, q_kvar: pd.Series | None, threshold: float = PF_THRESHOLD) -> dict | None:
    """Power factor over the period, as the power-factor adjustment of the electricity bill (功率因数调整电费)
    computes the monthly one.

    ``pf = W_P / sqrt(W_P² + W_Q²)`` with ``W_P = Σ P × 0.25 h`` and ``W_Q = Σ |Q| × 0.25 h`` over the quarter-hours
    with both readings: the ratio of active to apparent energy. Reactive energy is counted in both directions
    (lagging drawn + leading returned), as the method prescribes for users that may return reactive energy
    (module References [2]); with lagging-only readings this is ``Σ Q``.

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean active power [kW].
    q_kvar : pandas.Series or None
        15-minute mean reactive power, > 0 lagging [kvar]; None (or no reading) when not metered.
    threshold : float
        the power factor standard [-]; default :data:`PF_THRESHOLD` (0.90, large industrial users ≥ 160 kVA).

    Returns
    -------
    dict or None
        ``pf`` [-] (None when the apparent energy is 0), ``low_share``: share of the quarter-hours whose own
        ``|P| / sqrt(P² + Q²)`` is below ``threshold`` [-], ``threshold`` [-]; None when reactive power is missing.

    References
    ----------
    《功率因数调整电费办法》, (83)水电财字第215号, 1983, 一 (standards) and 二 (monthly mean from the active and
    reactive energy; absolute values of both directions) (module References [2]).
    """
    if q_kvar is None:
        return None
    both = pd.concat([pd.Series(p_kw, dtype="float64"), pd.Series(q_kvar, dtype="float64")], axis=1,
                     keys=["p", "q"]).dropna()
    if both.empty:
        return None
    p, q = both["p"].to_numpy(), np.abs(both["q"].to_numpy())
    w_p, w_q = abs(float(p.sum())) * QUARTER_H, float(q.sum()) * QUARTER_H
    s = math.hypot(w_p, w_q)
    inst_s = np.hypot(p, q)
    inst = np.divide(np.abs(p), inst_s, out=np.ones_like(p), where=inst_s > 0)   # no load: not a low pf
    return {"pf": w_p / s if s > 0 else None, "low_share": float(np.mean(inst < threshold)),
            "threshold": float(threshold)}


def specific_use(amount: float | None, production_t: float | None) -> float | None:
    """Specific use: an amount per tonne of product (kWh/t, Nm3/t of gas, t/t of steam).

    Parameters
    ----------
    amount : float or None
        energy or material used in the period [kWh, Nm3 or t].
    production_t : float or None
        product made in the same period [t].

    Returns
    -------
    float or None
        ``amount / production_t`` [unit of amount per t]; None when either is missing or production is not
        positive.
    """
    if amount is None or production_t is None:
        return None
    if not (np.isfinite(amount) and np.isfinite(production_t)) or production_t <= 0:
        return None
    return float(amount) / float(production_t)


def trend(monthly: pd.Series) -> dict:
    """Trend of a monthly figure (energy, specific use, emissions).

    Parameters
    ----------
    monthly : pandas.Series
        one value per month [any unit]; index month periods, ``'YYYY-MM'`` strings or timestamps. NaN months are
        left out; the slope is fitted against the month number, so a missing month leaves a gap, not a shift.

    Returns
    -------
    dict
        ``months``: months with a value [-]; ``slope_per_month``: ordinary least-squares slope [unit/month] (None
        under two months); ``change_frac``: ``(last − first) / |first|`` [-] (None if first is 0 or under two
        months); ``direction``: ``"up"``, ``"down"`` or ``"flat"`` (flat when ``|change_frac|`` <
        :data:`TREND_FLAT_FRAC`; by the sign of the slope when ``change_frac`` is None).
    """
    s = pd.Series(monthly, dtype="float64").dropna()
    idx = s.index
    if isinstance(idx, pd.PeriodIndex):
        months = idx.asfreq("M")
    elif isinstance(idx, pd.DatetimeIndex):
        months = (idx.tz_localize(None) if idx.tz is not None else idx).to_period("M")
    else:
        months = pd.PeriodIndex([pd.Period(str(m), freq="M") for m in idx], freq="M")
    s = pd.Series(s.to_numpy(), index=months).sort_index()
    n = len(s)
    if n < 2:
        return {"months": n, "slope_per_month": None, "change_frac": None, "direction": "flat"}
    x = np.asarray([m.ordinal for m in s.index], dtype="float64")
    y = s.to_numpy()
    slope = float(np.polyfit(x - x.mean(), y, 1)[0])
    first, last = float(y[0]), float(y[-1])
    change = (last - first) / abs(first) if first != 0 else None
    if change is not None:
        direction = "flat" if abs(change) < TREND_FLAT_FRAC else ("up" if change > 0 else "down")
    else:
        direction = "up" if slope > 0 else ("down" if slope < 0 else "flat")
    return {"months": n, "slope_per_month": slope, "change_frac": change, "direction": direction}
