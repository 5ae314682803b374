"""The diagnostics of one enterprise read from the store (I/O): its stored 15-minute rollups composed by the pure
figures of :mod:`anning_lib.advice.diagnostics` (definitions and references there)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.advice.diagnostics import (
    QUARTER_H,
    band_energy_kwh,
    base_load_kw,
    flexible_peak_kwh,
    load_factor,
    peak_demand,
    power_factor,
    specific_use,
)
from anning_lib.dispatch.tariff import tariff_for
from anning_lib.errors import DispatchError, StoreError
from anning_lib.park.catalogue import load_catalogue
from anning_lib.park.polygon import area_m2
from anning_lib.park.schema import Device, Enterprise, Park, point_tag
from anning_lib.store.timeseries import read_series, refresh_rollups
from anning_lib.store.validate import instant


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
        :func:`anning_lib.park.polygon.area_m2` of all its buildings [m2]; ``tariff``: the tariff file (``<id>.yaml`` in
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
        "roof_m2": float(sum(area_m2(b.footprint_m) for b in ent.buildings)),
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
