"""Billing connections with storage ("sites") and the dispatch case of each, from the park model and the store.

A site is one meter that is billed on its own tariff with the storages behind it: each enterprise that owns
storage (its main meter), and the park's 110 kV connection with the shared station. The optimiser needs the
site's load *without* its storages, which no meter reads, so it is rebuilt from the balance of docs/glossary.md::

    uncontrolled_kw = meter.p_kw + sum(bess.p_kw) + sum(pv.p_kw)     (gross load behind the meter)

and PV is handed to the optimiser separately. For the park site the enterprises' storages count as load at
their planned power (their sites are planned first), since the park meter sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.dispatch.case import DispatchCase, parse_case
from anning_lib.dispatch.tariff import Tariff, prices, tariff_for
from anning_lib.errors import ForecastError
from anning_lib.forecast.models import MeanOfWeekdays, Persistence
from anning_lib.forecast.operate import regular_history
from anning_lib.park.schema import Device, Park
from anning_lib.store.timeseries import read_series, refresh_rollups

POWER_FACTOR_FOR_LIMIT = 0.95
"""Import limit = meter ``rated_kva`` x this power factor [-]; ASSUMPTION (the park compensates to about 0.95)."""


@dataclass
class Site:
    """One billing connection with storage behind it."""

    connection: str                      # "park" or the enterprise id
    meter: Device
    storages: list[Device]
    pv: list[Device]
    tariff: Tariff
    bands: list = field(repr=False, default_factory=list)
    multipliers: dict = field(repr=False, default_factory=dict)
    sub_storages: list[Device] = field(default_factory=list)   # park site: the enterprises' storages


    @property
    def import_limit_kw(self) -> float:
        kva = getattr(self.meter.p, "rated_kva", None)
        return 1e9 if kva is None else float(kva) * POWER_FACTOR_FOR_LIMIT

    @property
    def gross_tags(self) -> list[str]:
        """The tags whose sum is the load without the storages (module docstring)."""
        return [f"{self.meter.id}.p_kw"] + [f"{d.id}.p_kw" for d in self.storages + self.sub_storages + self.pv]


def sites_from_park(park: Park, data_dir: Path) -> list[Site]:
    """Every site with storage: enterprises first, the park connection last (it sees their plans)."""
    out = []
    for e in park.enterprises:
        bess = [d for d in e.devices if d.type == "bess"]
        if bess:
            meter = next(d for d in e.devices if d.type == "main_meter")
            pv = [d for d in e.devices if d.type == "pv"]
            out.append(Site(e.id, meter, bess, pv, *tariff_for(e.id, data_dir)))
    bess = park.devices_of(None, "bess")
    if bess:
        meter = next(d for d in park.park_devices if d.type == "grid_meter")
        others = [d for _e, d in park.iter_devices() if d.type == "bess" and d not in bess]
        pv = park.devices_of(None, "pv")
        out.append(Site("park", meter, bess, pv, *tariff_for("park", data_dir), sub_storages=others))
    return out


def site_history(engine: Engine, site: Site, end: pd.Timestamp, days: int = 28,
                 tz: str = "Asia/Shanghai", refresh_days: int | None = 1) -> tuple[pd.Series, pd.Series]:
    """15-minute history of the site's gross load and PV before ``end`` [kW] (I/O).

    A quarter-hour where any of the site's meters is missing is missing; gaps up to an hour are interpolated and
    history before a longer gap is dropped (:func:`anning_lib.forecast.operate.regular_history`), which raises a
    ForecastError naming the tag when the last hour has no data. The 15-minute rollups of the last
    ``refresh_days`` are refreshed first (the MPC: one day, older ones are up to date), of the whole window when
    None (a store loaded without rollups).
    """
    tags = site.gross_tags
    start = end - pd.Timedelta(days=days)
    refresh_rollups(engine, start if refresh_days is None else end - pd.Timedelta(days=refresh_days), end, tags=tags)
    wide = read_series(engine, tags, start, end, resolution="15min", tz=tz)
    end_local = pd.Timestamp(end).tz_convert(tz)
    try:
        gross = regular_history(wide[tags].sum(axis=1, min_count=len(tags)).rename(f"site {site.connection}"),
                                end_local)
    except ForecastError as err:
        recent = wide[wide.index >= end_local - pd.Timedelta("1h")]
        silent = [t for t in tags if recent[t].isna().all()]
        raise ForecastError(f"{err}; silent: {', '.join(silent) or 'none'}") from None
    pv_tags = [f"{d.id}.p_kw" for d in site.pv]
    pv = wide[pv_tags].sum(axis=1).reindex(gross.index).fillna(0.0) if pv_tags else gross * 0.0
    return gross.rename("gross_kw"), pv.rename("pv_kw")


def forecast_next(history: pd.Series, index: pd.DatetimeIndex, tau_steps: float = 8.0) -> pd.DataFrame:
    """Forecast (``p10``, ``p50``, ``p90``) of the steps ``index`` right after ``history`` [unit of history] (pure).

    The seasonal baseline of :mod:`anning_lib.forecast.models` (mean of the last weeks' same weekday and time;
    yesterday's with under two weeks of history), corrected by its error at the newest reading, the correction
    decaying as ``exp(-h / tau_steps)``: in the first hours the newest reading says more than last week does.

    References
    ----------
    R. J. Hyndman, G. Athanasopoulos, *Forecasting: principles and practice*, 3rd ed. (2021), 5.2 (seasonal
    naive); the decaying level correction is the usual blend of persistence and a seasonal profile for
    intraday horizons.
    """
    days = len(history) / 96
    model = MeanOfWeekdays(k=min(4, int(days // 7))) if days >= 14 else Persistence()
    step = pd.Timedelta("15min")
    if index[0] > history.index[-1] + step:     # the newest quarter-hours are missing: forecast them too
        full = pd.date_range(history.index[-1] + step, index[-1], freq=step)
        return forecast_next(history, full, tau_steps).iloc[-len(index):].set_axis(index)
    out = model.predict(index, history)
    if len(history) > 1:
        last = model.predict(history.index[-1:], history.iloc[:-1])["p50"].to_numpy()[0]
        error = float(history.iloc[-1] - last)
        if np.isfinite(error):
            out = out + (error * np.exp(-np.arange(1, len(index) + 1) / tau_steps))[:, None]
    # steps the seasonal rule cannot see (history shorter than its lag): the newest reading, held
    return out.ffill().fillna(float(history.iloc[-1]))


def expected_peak_kw(net_history_kw: pd.Series, q: float = 0.95) -> float:
    """The demand threshold: the ``q`` quantile of the recent uncontrolled net load [kW] (pure).

    A noisy load (EAF heats) sets a month's peak in a quarter-hour no forecast sees. The MPC lets storage raise
    the import only up to this threshold (``tariff.demand_threshold_kw`` of its case) and the peak guard
    (:mod:`anning_lib.dispatch.guard`) discharges to hold the import at it. q = 0.95 was chosen on a simulated
    June of the park (docs/decisions.md #19); the year backtest (``make bench``) checks it on the other months.
    """
    return float(net_history_kw.quantile(q)) if len(net_history_kw) else 0.0


def latest(engine: Engine, tags: list[str], now: pd.Timestamp, within: str = "30min") -> dict[str, float]:
    """The newest reading of each tag in the last ``within`` (missing tags are left out) (I/O)."""
    wide = read_series(engine, tags, now - pd.Timedelta(within), now + pd.Timedelta("1s"))
    return {t: float(wide[t].dropna().iloc[-1]) for t in tags if t in wide and wide[t].notna().any()}


def month_peak_kw(engine: Engine, site: Site, now: pd.Timestamp, tz: str = "Asia/Shanghai") -> float:
    """The billing month's highest 15-minute import of the site's meter so far [kW] (I/O)."""
    start = now.tz_convert(tz).normalize().replace(day=1)
    tag = f"{site.meter.id}.p_kw"
    refresh_rollups(engine, now - pd.Timedelta("1h"), now, tags=[tag])
    s = read_series(engine, [tag], start, now, resolution="15min", tz=tz)[tag]
    return float(max(s.max(), 0.0)) if s.notna().any() else 0.0


def site_case(site: Site, index: pd.DatetimeIndex, gross_kw: np.ndarray, pv_kw: np.ndarray,
              soc_frac: dict[str, float], peak_so_far_kw: float, *, degradation_cny_per_kwh: float = 0.05,
              other_storage_kw: np.ndarray | None = None, threshold_kw: float | None = None) -> DispatchCase:
    """The dispatch case of a site over ``index`` (pure).

    Parameters
    ----------
    gross_kw, pv_kw : ndarray
        forecast gross load and PV per step [kW].
    soc_frac : dict
        storage id -> measured state of charge [-]; a storage without a reading starts at its ``soc_init_frac``.
    peak_so_far_kw : float
        the billing month's peak import so far [kW].
    degradation_cny_per_kwh : float
        throughput cost [CNY/kWh]; ASSUMPTION: LFP cells about 0.6 CNY/Wh over 6,000 full cycles, i.e. 0.1 CNY
        per kWh cycled, half charged to each direction.
    other_storage_kw : ndarray, optional
        planned power of storages behind sub-sites (> 0 discharges), which lowers this site's load [kW].
    threshold_kw : float, optional
        demand threshold (:func:`expected_peak_kw`) [kW].
    """
    p = prices(site.tariff, site.bands, site.multipliers, index)
    load = np.asarray(gross_kw, float) - (0.0 if other_storage_kw is None else np.asarray(other_storage_kw, float))
    storages = []
    for d in site.storages:
        b = d.p
        soc = float(np.clip(soc_frac.get(d.id, b.soc_init_frac), b.soc_min_frac, b.soc_max_frac))
        storages.append({"id": d.id, "energy_kwh": b.energy_kwh, "power_kw": b.p_max_kw,
                         "eta_charge": b.eta_charge, "eta_discharge": b.eta_discharge,
                         "soc_min_frac": b.soc_min_frac, "soc_max_frac": b.soc_max_frac,
                         "soc_initial_frac": soc, "soc_final_frac": b.soc_init_frac,   # back to the reserve level
                         "degradation_cny_per_kwh": degradation_cny_per_kwh})
    t = site.tariff
    return parse_case({
        "timestep_minutes": (index[1] - index[0]).total_seconds() / 60.0, "start": index[0].to_pydatetime(),
        "load_kw": np.maximum(load, 0.0).tolist(), "pv_kw": np.maximum(np.asarray(pv_kw, float), 0.0).tolist(),
        "tariff": {"import_price_cny_per_kwh": p["import_price_cny_per_kwh"].tolist(),
                   "export_price_cny_per_kwh": t.export_price_cny_per_kwh,
                   "demand_charge_cny_per_kw": t.demand_charge_cny_per_kw_month,
                   "demand_peak_so_far_kw": peak_so_far_kw,
                   "demand_threshold_kw": threshold_kw,
                   "carbon_price_cny_per_t": t.carbon_shadow_price_cny_per_t,
                   "grid_factor_t_per_kwh": t.grid_factor_t_per_kwh},
        "grid": {"import_limit_kw": site.import_limit_kw, "export_limit_kw": t.export_limit_kw},
        "storage": storages})
