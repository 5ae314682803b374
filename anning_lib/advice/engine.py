"""The advice engine: each measure of the catalogue sized and valued for one enterprise from its own data, ranked
by net present value and by abatement cost; the park's marginal abatement cost curve (MACC).

For an enterprise and a period (default: up to the last three complete months of the store), the engine reads the
diagnostics (:func:`anning_lib.advice.readings.enterprise_diagnostics`), scales them to a year
(``365 / days``), checks each measure's conditions (``applies_to`` of the catalogue), estimates its effect
(:mod:`anning_lib.advice.effects`) at the enterprise's own tariff prices and the factor set's grid and gas
factors, and values it (:mod:`anning_lib.advice.finance`). Every item keeps the numbers it used and their
sources. Seasonality is not modelled: a period of a few months stands for the year.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.advice import effects as fx
from anning_lib.advice.benchmark import enterprise_benchmarks, load_map
from anning_lib.advice.catalogue import Catalogue, Measure, load_catalogue
from anning_lib.advice.finance import abatement_cost_cny_per_t, npv_cny, payback_a
from anning_lib.advice.readings import enterprise_diagnostics
from anning_lib.carbon.factors import FactorSet, load_factor_set
from anning_lib.carbon.units import convert
from anning_lib.config import get_settings
from anning_lib.dispatch.tariff import prices, tariff_for
from anning_lib.errors import ConfigError
from anning_lib.park.schema import Park

PV_PEAK_FRAC = 0.8
"""AC peak of a PV array as a share of its kWp (DC/AC ratio and losses, ASSUMPTION): the base load absorbs all
of the PV while ``base_kw >= PV_PEAK_FRAC × kWp``, else the share ``base_kw / (PV_PEAK_FRAC × kWp)``."""
BOILER_MARGIN = 1.25
"""Electric boilers are sized at the mean steam raised × this margin (ASSUMPTION: peaks above the mean), not at
the rated capacity of every gas boiler (one is often a standby)."""
STEAM_KW_PER_T_H = 1e6 / 3600.0
"""1 t/h of steam carrying 1 GJ/t is 277.8 kW of heat."""


def tariff_prices(enterprise_id: str, data_dir, year: int = 2026, tz: str = "Asia/Shanghai") -> dict:
    """Mean import price per band over a year of the enterprise's tariff, the daytime (09-17 h) mean and the demand
    charge: ``{"peak", "flat", "valley", "day"}`` [CNY/kWh], ``"demand_charge"`` [CNY/kW/month], ``"tariff"``."""
    tariff, bands, mult = tariff_for(enterprise_id, data_dir)
    idx = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", inclusive="left", tz=tz)
    p = prices(tariff, bands, mult, idx, tz)
    by_band = p.groupby("band")["import_price_cny_per_kwh"].mean().to_dict()
    day = p.loc[(idx.hour >= 9) & (idx.hour < 17), "import_price_cny_per_kwh"].mean()
    return {**{b: float(by_band.get(b, np.nan)) for b in ("peak", "flat", "valley")}, "day": float(day),
            "demand_charge": tariff.demand_charge_cny_per_kw_month, "tariff": tariff.id}


def factors(fs: FactorSet, region: str = "yunnan") -> dict:
    """Grid factor [tCO2/kWh] (location-based, the latest data year: what the statements use for scope 2 and, with
    the default residual, market-based scope 2) and natural gas NCV [GJ/Nm3] and EF [tCO2/Nm3]."""
    grid = fs.grid(region, fs.latest_grid_year(region))
    gas = fs.fuel("natural_gas")
    per_nm3 = gas.to_basis(1.0, "Nm3")
    if not grid.unit.startswith("tCO2/"):
        raise ConfigError(f"grid factor {region}: expected a unit tCO2/<energy>, got {grid.unit!r}")
    return {"grid_t_per_kwh": grid.value / convert(1.0, grid.per_unit, "kWh"),
            "grid_source": grid.citation,
            "gas_ncv_gj_per_nm3": gas.ncv_gj_per_unit * per_nm3, "gas_t_per_nm3": gas.co2_t_per_unit * per_nm3}


def free_roof_m2(diag: dict, m: Measure) -> float:
    """Roof not yet under PV [m2]: the buildings' roofs minus the existing arrays at the modules' full density."""
    used = (diag.get("pv_kwp") or 0.0) / m.value("module_kwp_per_m2")
    return max((diag.get("roof_m2") or 0.0) - used, 0.0)


def _boilers(park: Park, enterprise_id: str) -> list:
    ent = park.enterprise(enterprise_id)
    return [d for d in ent.devices if d.type == "boiler" and (d.params or {}).get("fuel") == "natural_gas"]


def conditions(diag: dict, park: Park, enterprise_id: str, price: dict, pv: Measure) -> dict[str, bool]:
    """The catalogue's ``applies_to`` vocabulary evaluated for the enterprise."""
    base = (diag.get("base") or {}).get("night_kw") or 0.0
    return {"roof_area_m2 > 0": free_roof_m2(diag, pv) > 0, "daytime_load": base > 0,
            "no_bess": not diag.get("has_bess"), "peak_import": ((diag.get("bands_kwh") or {}).get("peak") or 0) > 0,
            "flexible_load": (diag.get("flexible_peak_kwh") or 0) > 0,
            "demand_charge": price["demand_charge"] > 0 and ((diag.get("demand") or {}).get("max_kw") or 0) > 0,
            "boiler": bool(_boilers(park, enterprise_id)), "gas_use": (diag.get("gas_nm3") or 0) > 0,
            "motors": (diag.get("consumption_kwh") or 0) > 0, "grid_import": (diag.get("grid_kwh") or 0) > 0}


def _effect(mid: str, m: Measure, d: dict, year: float, price: dict, f: dict, gas_price: float, park: Park,
            enterprise_id: str) -> fx.Effect:
    """The effect of measure ``mid`` for the diagnosed enterprise (figures scaled to a year by ``year``)."""
    grid_t = f["grid_t_per_kwh"]
    base = (d.get("base") or {}).get("night_kw") or 0.0
    bands = d.get("bands_kwh") or {}
    mean_price = (sum(bands.get(b, 0.0) * price[b] for b in ("peak", "flat", "valley"))
                  / max(sum(bands.values()), 1e-9)) if bands else price["flat"]
    if mid == "rooftop_pv":
        kwp = free_roof_m2(d, m) * m.value("kwp_per_m2")
        gen = kwp * m.value("yield_kwh_per_kwp_a")
        used = gen * min(1.0, base / (PV_PEAK_FRAC * kwp)) if kwp > 0 else 0.0
        return fx.rooftop_pv(free_roof_m2(d, m), m.value("kwp_per_m2"), m.value("yield_kwh_per_kwp_a"),
                             m.value("capex_cny_per_kwp"), m.value("opex_frac_a"), used, price["day"], grid_t)
    if mid == "battery_storage":
        return fx.battery(bands.get("peak", 0.0) * year, m.value("days_a"), m.value("cycles_per_day"),
                          m.value("dod_frac"), m.value("rte_frac"), m.value("max_kwh"), m.value("capex_cny_per_kwh"),
                          m.value("opex_frac_a"), price["peak"], price["valley"], grid_t)
    if mid == "load_shifting":
        return fx.load_shifting((d.get("flexible_peak_kwh") or 0.0) * year, m.value("shift_frac"),
                                m.value("capex_cny"), price["peak"], price["valley"])
    if mid == "demand_limit":
        return fx.demand_limit((d.get("demand") or {}).get("max_kw") or 0.0, m.value("reduction_frac"),
                               price["demand_charge"], m.value("capex_cny"))
    if mid == "boiler_electrification":
        boilers = _boilers(park, enterprise_id)
        heat_gj = (d.get("steam_t") or 0.0) * year * m.value("steam_heat_gj_per_t")
        eff_gas = float(np.mean([b.params.get("efficiency", m.value("eff_gas")) for b in boilers]))
        hours = max(d.get("days") or 0.0, 1e-9) * 24.0
        steam_t_h = min((d.get("steam_t") or 0.0) / hours * BOILER_MARGIN,            # running boilers, not standby
                        sum(b.params.get("steam_rated_t_h", 0.0) for b in boilers))
        kw = steam_t_h * m.value("steam_heat_gj_per_t") * STEAM_KW_PER_T_H
        gas = heat_gj / eff_gas / f["gas_ncv_gj_per_nm3"]
        return fx.boiler_electrification(gas, kw, f["gas_ncv_gj_per_nm3"], f["gas_t_per_nm3"], eff_gas,
                                         m.value("eff_elec"), gas_price, mean_price, m.value("capex_cny_per_kw"),
                                         grid_t)
    if mid == "heat_recovery":                  # on the boilers' gas: their steam's heat over their efficiency
        boilers = _boilers(park, enterprise_id)
        eff_gas = float(np.mean([b.params.get("efficiency", 0.9) for b in boilers])) if boilers else 0.9
        gas = (d.get("steam_t") or 0.0) * year * f["steam_gj_per_t"] / eff_gas / f["gas_ncv_gj_per_nm3"]
        saved = gas * m.value("saving_frac") * gas_price
        return fx.fuel_saving(gas, m.value("saving_frac"), saved * m.value("simple_payback_a"), gas_price,
                              f["gas_t_per_nm3"])
    if mid == "motor_drive_upgrade":
        return fx.electricity_saving((d.get("consumption_kwh") or 0.0) * year * m.value("motor_share_of_electricity"),
                                     m.value("saving_frac"), m.value("capex_cny_per_kwh_a"), mean_price, grid_t)
    if mid == "green_electricity":
        return fx.green_electricity((d.get("grid_kwh") or 0.0) * year, m.value("share"),
                                    m.value("premium_cny_per_kwh"), grid_t)
    return fx.none_effect(f"no estimator for measure {mid!r}")


def _lifetime(mid: str, m: Measure) -> float:
    life = m.value("lifetime_a")
    if mid == "battery_storage":                 # cycle wear ends it first at two cycles a day
        life = min(life, m.value("cycle_life") / (m.value("cycles_per_day") * m.value("days_a")))
    return life


def _item(mid: str, m: Measure, e: fx.Effect, applies: bool, reason: str, rate: float) -> dict:
    life = _lifetime(mid, m)
    gain = applies and (e.annual_net_cny != 0 or e.co2_t_a != 0)
    return {"id": mid, "name": m.name, "name_en": m.name_en, "applies": applies, "recommended": False,
            "reason": reason or e.basis.get("reason", ""), "capex_cny": e.capex_cny,
            "annual_net_cny": e.annual_net_cny, "co2_t_a": e.co2_t_a, "grid_kwh_a": e.grid_kwh_a,
            "gas_nm3_a": e.gas_nm3_a, "lifetime_a": life,
            "npv_cny": npv_cny(e.capex_cny, e.annual_net_cny, rate, life) if gain else 0.0,
            "payback_a": payback_a(e.capex_cny, e.annual_net_cny) if gain else None,
            "abatement_cost_cny_per_t": (abatement_cost_cny_per_t(e.capex_cny, e.annual_net_cny, e.co2_t_a, rate, life)
                                         if gain else None),
            "size": e.size, "basis": e.basis,
            "sources": {k: m.cite(k) for k in m.quantities if m.cite(k)}}


def default_period(engine: Engine, tz: str = "Asia/Shanghai", months: int = 3) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Up to ``months`` whole local months ending with the last complete month of the store."""
    from anning_lib.carbon.records import last_complete_month
    from anning_lib.store.timeseries import data_range

    last = pd.Period(last_complete_month(engine, tz), "M")
    end = (last + 1).start_time.tz_localize(tz)
    first = data_range(engine, tz)[0].ceil("D")
    start = max((last - (months - 1)).start_time.tz_localize(tz), first)
    return start, end


def advise(engine: Engine, park: Park, enterprise_id: str, start=None, end=None, *, data_dir=None,
           fs: FactorSet | None = None, catalogue: Catalogue | None = None, refresh: bool = False) -> dict:
    """Every measure of the catalogue for one enterprise, ranked.

    Returns
    -------
    dict
        ``enterprise_id, start, end, days, catalogue_version, discount_rate, prices`` (:func:`tariff_prices`),
        ``factors`` (:func:`factors`), ``diagnostics`` and ``measures``: a list of items, best net present value
        first: ``id, name, name_en, applies, recommended`` (applies, and either NPV > 0 or it abates at a cost),
        ``reason`` (why not, when it does not apply or has nothing to gain), ``capex_cny``, ``annual_net_cny``
        [CNY/a], ``co2_t_a`` [tCO2/a], ``grid_kwh_a``, ``gas_nm3_a``, ``lifetime_a``, ``npv_cny``, ``payback_a``,
        ``abatement_cost_cny_per_t`` (None without abatement), ``size``, ``basis`` (the numbers used),
        ``sources`` (each catalogue value's citation), ``rank_npv`` and ``rank_macc`` (1 = best; None when not
        ranked); ``benchmark``: the enterprise's process against its national standard
        (:func:`anning_lib.advice.benchmark.enterprise_benchmarks`; None when none applies).

    ``refresh`` recomputes the period's rollups of the enterprise's points first (the command line and reports
    do; a portal page reads them as the gateway keeps them).
    """
    settings = get_settings()
    tz = park.meta.site.timezone
    data_dir = data_dir or settings.data_dir
    if start is None or end is None:
        start, end = default_period(engine, tz)
    d = enterprise_diagnostics(engine, park, enterprise_id, start, end, data_dir=data_dir, refresh=refresh)
    cat = catalogue or load_catalogue()
    year_of = (pd.Timestamp(end) - pd.Timedelta("1ns")).tz_convert(tz).year       # the tariff in force then
    price, f = tariff_prices(enterprise_id, data_dir, year_of, tz=tz), factors(fs or load_factor_set())
    f["steam_gj_per_t"] = cat.measures["boiler_electrification"].value("steam_heat_gj_per_t")
    year = 365.0 / d["days"] if d.get("days") else 0.0
    cond = conditions(d, park, enterprise_id, price, cat.measures["rooftop_pv"])
    items = []
    for mid, m in cat.measures.items():
        missing = [c for c in m.applies_to if not cond.get(c, False)]
        e = (fx.none_effect(f"condition not met: {', '.join(missing)}") if missing else
             _effect(mid, m, d, year, price, f, cat.gas_price_cny_per_nm3(), park, enterprise_id))
        items.append(_item(mid, m, e, not missing, "", cat.rate()))
    kgce_per_nm3 = f["gas_ncv_gj_per_nm3"] * 1000.0 / load_map()["kgce_mj"]["value"]
    return {"enterprise_id": enterprise_id, "start": start, "end": end, "days": d.get("days"),
            "catalogue_version": cat.version, "discount_rate": cat.rate(), "prices": price, "factors": f,
            "diagnostics": d, "measures": rank(items, cat.carbon_price_cny_per_t()),
            "benchmark": enterprise_benchmarks(engine, park, enterprise_id, start, end, gas_kgce_per_nm3=kgce_per_nm3,
                                               refresh=refresh)}


def rank(items: list[dict], carbon_price_cny_per_t: float) -> list[dict]:
    """Mark and rank (pure): recommended = applies and (NPV > 0, or it abates at a cost at or below the carbon
    price); ``rank_npv`` by NPV among the recommended, ``rank_macc`` by abatement cost among those that abate;
    sorted by NPV, best first."""
    for it in items:
        mac = it["abatement_cost_cny_per_t"]
        it["recommended"] = it["applies"] and (it["npv_cny"] > 0 or (mac is not None and mac <= carbon_price_cny_per_t))
    rec = sorted((it for it in items if it["recommended"]), key=lambda it: -it["npv_cny"])
    for i, it in enumerate(rec, 1):
        it["rank_npv"] = i
    macc = sorted((it for it in rec if it["abatement_cost_cny_per_t"] is not None),
                  key=lambda it: it["abatement_cost_cny_per_t"])
    for i, it in enumerate(macc, 1):
        it["rank_macc"] = i
    for it in items:
        it.setdefault("rank_npv", None)
        it.setdefault("rank_macc", None)
    return sorted(items, key=lambda it: (not it["recommended"], -it["npv_cny"], it["id"]))


def macc(advice: list[dict]) -> pd.DataFrame:
    """The marginal abatement cost curve of several enterprises' advice (pure): one row per applying measure that
    abates (recommended or not: the curve shows the expensive ones too), cheapest first, with ``enterprise_id, id, name, co2_t_a, abatement_cost_cny_per_t`` and the cumulative
    abatement ``cum_co2_t_a`` (the bar's right edge) [tCO2/a]."""
    rows = [{"enterprise_id": a["enterprise_id"], "id": it["id"], "name": it["name"], "co2_t_a": it["co2_t_a"],
             "abatement_cost_cny_per_t": it["abatement_cost_cny_per_t"], "npv_cny": it["npv_cny"]}
            for a in advice for it in a["measures"]
            if it["applies"] and it["abatement_cost_cny_per_t"] is not None
            and math.isfinite(it["abatement_cost_cny_per_t"])]
    df = pd.DataFrame(rows, columns=["enterprise_id", "id", "name", "co2_t_a", "abatement_cost_cny_per_t", "npv_cny"])
    df = df.sort_values(["abatement_cost_cny_per_t", "enterprise_id", "id"], ignore_index=True)
    df["cum_co2_t_a"] = df["co2_t_a"].cumsum()
    return df
