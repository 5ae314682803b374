"""Diagnostics of an enterprise from its metered data (issue 11 point 1): the figures the advice is built on.

Pure functions take 15-minute MEAN power series ``p_kw`` [kW] with a time-zone-aware DatetimeIndex (the stored
rollups, labelled at the start of their quarter-hour, ``docs/glossary.md``) and return numbers; the energy of a
quarter-hour is ``p × 0.25 h``. NaN is "no reading" and is left out of every sum, mean and extreme.
:func:`enterprise_diagnostics` reads the store and composes them for one enterprise and period.

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
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.dispatch.tariff import BANDS, band_of, tariff_for
from anning_lib.errors import AnningError, DispatchError, StoreError
from anning_lib.park.catalogue import load_catalogue
from anning_lib.park.schema import Device, Enterprise, Park, point_tag
from anning_lib.store.timeseries import read_series, refresh_rollups
from anning_lib.store.validate import instant

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


def footprint_area_m2(footprint_m: Sequence[tuple[float, float]]) -> float:
    """Area of a building's footprint polygon by the shoelace (surveyor's) formula [m2].

    ``A = |Σ (x_i · y_{i+1} − x_{i+1} · y_i)| / 2`` over the vertices in order (either orientation; the polygon
    closes by itself). A flat roof has the footprint's area.

    Parameters
    ----------
    footprint_m : sequence of (float, float)
        vertices ``(x east, y north)`` in park metres [m].

    Returns
    -------
    float
        [m2]

    References
    ----------
    B. Braden, "The Surveyor's Area Formula", *The College Mathematics Journal* 17(4), 326-337 (1986).
    """
    xy = np.asarray(footprint_m, dtype="float64").reshape(-1, 2)
    if len(xy) < 3:
        return 0.0
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2.0)


# ------------------------------------------------------------------------------------------------ from the store
def _enterprise(park: Park, enterprise_id: str) -> Enterprise:
    """The enterprise, or the StoreError :func:`anning_lib.portal.views` raises for an unknown one."""
    try:
        return park.enterprise(enterprise_id)
    except KeyError:
        raise StoreError(f"enterprise_id: unknown enterprise {enterprise_id!r}") from None


def _tags(devices: Sequence[Device], point: str, *types: str) -> list[str]:
    """Tags of ``point`` on the devices (of the given types; any type when none given) (pure)."""
    return [point_tag(d.id, point) for d in devices
            if (not types or d.type in types) and any(p.id == point for p in d.points)]


def _quantity_tags(devices: Sequence[Device], quantity: str, *types: str) -> list[str]:
    """Tags of every point of ``quantity`` on the devices (of the given types) (pure)."""
    return [point_tag(d.id, p.id) for d in devices if not types or d.type in types
            for p in d.points if p.quantity == quantity]


def _sum(means: pd.DataFrame, tags: list[str], complete: bool) -> pd.Series:
    """Σ of the tags per quarter-hour: NaN where any is missing (``complete``) or where all are (pure)."""
    if not tags:
        return pd.Series(np.nan, index=means.index, dtype="float64")
    return means[tags].sum(axis=1, min_count=len(tags) if complete else 1)


def _amount(means: pd.DataFrame, tags: list[str]) -> float | None:
    """Σ mean × 0.25 h over the tags [unit × h]; None when the enterprise has no such point (pure)."""
    return float(means[tags].sum(skipna=True).sum() * QUARTER_H) if tags else None


def enterprise_diagnostics(engine: Engine, park: Park, enterprise_id: str, start: object, end: object, *,
                           data_dir: Path | str | None = None, refresh: bool = False) -> dict:
    """The diagnostics of one enterprise over ``[start, end)`` from the stored 15-minute rollups.

    Reads, as 15-minute means: the main meters' ``p_kw`` (summed; a quarter-hour counts when every main meter has
    a reading) and ``q_kvar`` (when every main meter has one), the enterprise's own PV and storage ``p_kw``, its
    natural-gas flows (every ``volume_flow_gas`` point), the boilers' steam (``mass_flow``) and the product lines'
    production (``production_rate`` of :meth:`Enterprise.product_lines`), each converted to its canonical unit
    (``data/units.yaml``). Consumption is the glossary's gross load, ``main + Σ own PV + Σ own storage`` (storage
    > 0 discharging), over the quarter-hours with main-meter data. Missing kinds of data give None (no such
    point) or 0 (no readings); nothing raises for want of data.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        the store.
    park : Park
        the park model.
    enterprise_id : str
        the enterprise (``E01``...).
    start, end : timestamp
        time-zone-aware bounds of the period (local midnights for whole days) [instant]; a quarter-hour counts when
        its start is in ``[start, end)``.
    data_dir : path, optional
        reference data folder (tariffs, units); default the settings' ``data_dir``.
    refresh : bool
        recompute the period's rollups of the enterprise's tags first (the accounting's way); default False, the
        rollups as the gateway left them (a page must not write).

    Returns
    -------
    dict
        ``enterprise_id``; ``start``, ``end`` (park time zone); ``quarters`` with main-meter data [-];
        ``coverage_frac`` = quarters / quarter-hours of the period [-]; ``grid_kwh`` bought net at the main meters
        [kWh]; ``consumption_kwh`` (grid + own PV + own storage net discharge) [kWh]; ``base``:
        :func:`base_load_kw` of the consumption; ``load_factor`` of the consumption [-]; ``bands_kwh``:
        :func:`band_energy_kwh` of the grid import with the enterprise's tariff bands [kWh]; ``peak_share`` = peak
        band / all bands [-] (None when the total is not positive); ``flexible_peak_kwh``:
        :func:`flexible_peak_kwh` of the grid import above the night base load [kWh] (None without a night base);
        ``demand``: :func:`peak_demand` of the grid import with Σ main meters' ``rated_kva``; ``power_factor``:
        :func:`power_factor` of the main meters (None without ``q_kvar``); ``gas_nm3`` [Nm3], ``steam_t`` [t],
        ``production_t`` [t] (None when the enterprise has no such point); ``specific``: ``kwh_per_t``
        (consumption) [kWh/t], ``gas_nm3_per_t`` [Nm3/t], ``steam_t_per_t`` [t/t] (:func:`specific_use`);
        ``has_bess``, ``has_pv`` (own devices); ``pv_kwp``: Σ own PV ``dc_kwp`` [kWp]; ``roof_m2``: Σ
        :func:`footprint_area_m2` of all its buildings [m2]; ``tariff``: the tariff file (``<id>.yaml`` in
        ``data/tariffs``) its main meter pays (:func:`anning_lib.dispatch.tariff.tariff_for` of the enterprise id,
        as :mod:`anning_lib.dispatch.sites` names the connection); ``days``: length of the period [d].

    Raises
    ------
    StoreError
        for an unknown enterprise or naive / reversed bounds; DispatchError for a tariff file that cannot be read.
    """
    from anning_lib.config import get_settings

    ent = _enterprise(park, enterprise_id)
    tz = park.meta.site.timezone
    s, e = instant(start, "start"), instant(end, "end")
    if e < s:
        raise StoreError(f"end: {end!r} is before start {start!r}")
    data_dir = Path(data_dir) if data_dir is not None else get_settings().data_dir

    devs = ent.devices
    mains = [d for d in devs if d.type == "main_meter"]
    main_p = _tags(mains, "p_kw")
    main_q = _tags(mains, "q_kvar") if mains and all(any(p.id == "q_kvar" for p in d.points) for d in mains) else []
    pv_devs, bess_devs = [d for d in devs if d.type == "pv"], [d for d in devs if d.type == "bess"]
    pv_p, bess_p = _tags(pv_devs, "p_kw"), _tags(bess_devs, "p_kw")
    gas = _quantity_tags(devs, "volume_flow_gas")
    steam = _quantity_tags(devs, "mass_flow", "boiler")
    prod = _quantity_tags(ent.product_lines(), "production_rate")
    tags = list(dict.fromkeys(main_p + main_q + pv_p + bess_p + gas + steam + prod))

    if refresh and tags:
        refresh_rollups(engine, s, e, tags=tags)
    means = read_series(engine, tags, s, e, resolution="15min", tz=tz) if tags else pd.DataFrame(
        index=pd.DatetimeIndex([], tz=tz, name="ts"))
    units = load_catalogue(data_dir).quantities
    for tag in tags:                                    # to each quantity's canonical unit (kW, Nm3/h, t/h)
        dev, pid = tag.split(".", 1)
        pt = next(d for d in devs if d.id == dev).point(pid)
        factor = units[pt.quantity].to_canonical(pt.unit) if pt.quantity in units else 1.0
        if factor != 1.0:
            means[tag] = means[tag] * factor

    grid = _sum(means, main_p, complete=True).dropna()
    own = means.reindex(grid.index)[pv_p + bess_p].sum(axis=1) if pv_p + bess_p else 0.0
    consumption = grid + own
    q = _sum(means, main_q, complete=True).reindex(grid.index) if main_q else None

    expected = len(pd.date_range(s.ceil("15min"), e, freq="15min", inclusive="left")) if e > s else 0
    tariff, bands, _mult = _tariff(enterprise_id, data_dir)
    grid_kwh = float(grid.sum() * QUARTER_H)
    bands_kwh = band_energy_kwh(grid, bands, tz)
    total = sum(bands_kwh.values())
    base = base_load_kw(consumption, tz)
    kvas = [d.p.rated_kva for d in mains if d.p.rated_kva is not None]
    gas_nm3, steam_t, production_t = _amount(means, gas), _amount(means, steam), _amount(means, prod)
    consumption_kwh = float(consumption.sum() * QUARTER_H)
    return {
        "enterprise_id": ent.id, "start": s.tz_convert(tz), "end": e.tz_convert(tz),
        "quarters": len(grid), "coverage_frac": len(grid) / expected if expected else 0.0,
        "grid_kwh": grid_kwh, "consumption_kwh": consumption_kwh,
        "base": base, "load_factor": load_factor(consumption),
        "bands_kwh": bands_kwh, "peak_share": bands_kwh.get("peak", 0.0) / total if total > 0 else None,
        "flexible_peak_kwh": (flexible_peak_kwh(grid, bands, base["night_kw"], tz)
                              if base["night_kw"] is not None else None),
        "demand": peak_demand(grid, float(sum(kvas)) if kvas else None),
        "power_factor": power_factor(grid, q) if q is not None else None,
        "gas_nm3": gas_nm3, "steam_t": steam_t, "production_t": production_t,
        "specific": {"kwh_per_t": specific_use(consumption_kwh if len(grid) else None, production_t),
                     "gas_nm3_per_t": specific_use(gas_nm3, production_t),
                     "steam_t_per_t": specific_use(steam_t, production_t)},
        "has_bess": bool(bess_devs), "has_pv": bool(pv_devs),
        "pv_kwp": float(sum(d.p.dc_kwp for d in pv_devs)),
        "roof_m2": float(sum(footprint_area_m2(b.footprint_m) for b in ent.buildings)),
        "tariff": f"{tariff.id}.yaml",
        "days": (e - s) / pd.Timedelta("1D"),
    }


def _tariff(enterprise_id: str, data_dir: Path):
    """:func:`tariff_for` of the enterprise's connection (``sites_from_park``: the enterprise id); a missing file
    is a DispatchError naming it."""
    try:
        return tariff_for(enterprise_id, data_dir)
    except OSError as err:
        raise DispatchError(f"tariff: cannot read {getattr(err, 'filename', None) or err}") from None
