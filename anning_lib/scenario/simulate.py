"""Run one :class:`~anning_lib.scenario.parkcase.ParkCase` over its period: storages dispatched site by site,
meters and the 110 kV connection rebuilt (equations in :mod:`anning_lib.scenario.parkcase`), bills, emissions.

Dispatch reuses the operational code: ``forecast`` replays the MPC of :func:`anning_lib.dispatch.backtest.replay`
(forecasts from the history before each origin, the optimiser, the peak guard, the storage simulator);
``perfect`` optimises each month on the actual load (:func:`anning_lib.dispatch.optimize.optimize`). Bills are
:func:`anning_lib.dispatch.schedule.cost_split` month by month (the demand charge on each month's peak), emissions
the carbon engine's :func:`anning_lib.carbon.accounting.account` on the period's activities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anning_lib.carbon.accounting import Activity, account, totals
from anning_lib.carbon.factors import FactorSet
from anning_lib.dispatch.backtest import replay
from anning_lib.dispatch.optimize import optimize
from anning_lib.dispatch.schedule import cost_split, grid_flows
from anning_lib.dispatch.sites import Site, site_case
from anning_lib.park.schema import Park
from anning_lib.scenario.parkcase import ParkCase

QUARTER_H = 0.25


@dataclass(frozen=True)
class RunOptions:
    """``mode`` (forecast, perfect, none), ``replan_steps`` [15-min steps], ``start`` of the period (the
    history before it is warm-up), gas price [CNY/Nm3]."""

    mode: str
    replan_steps: int
    start: pd.Timestamp
    gas_price_cny_per_nm3: float


@dataclass
class SiteRun:
    """One connection over the period per step [kW]: import, export, PV curtailed, storage spill (discharge the
    meter could not take: the MPC followed a forecast above the actual load and no export is allowed; the
    anti-backflow relay would stop it), storage power."""

    import_kw: pd.Series
    export_kw: pd.Series
    curtailed_kw: pd.Series
    spill_kw: pd.Series
    storage_kw: pd.DataFrame          # per storage, > 0 discharges
    cost_cny: dict


@dataclass
class CaseRun:
    """Everything a case produced: per-site runs, the grid meter, the KPI summary and the emissions."""

    sites: dict[str, SiteRun]
    grid_kw: pd.Series
    summary: dict
    enterprises: pd.DataFrame
    monthly: pd.DataFrame


def _site(park: Park, case: ParkCase, connection: str) -> Site:
    if connection == "park":
        meter = next(d for d in park.park_devices if d.type == "grid_meter")
    else:
        meter = next(d for d in park.enterprise(connection).devices if d.type == "main_meter")
    return Site(connection, meter, case.storages.get(connection, []), [], *case.tariffs[connection])


def _months(index: pd.DatetimeIndex):
    return index.tz_localize(None).to_period("M")


def dispatch(site: Site, gross: pd.Series, pv: pd.Series, opt: RunOptions) -> pd.DataFrame:
    """Storage power per step of the whole history (0 before the period and in mode ``none``) [kW]."""
    out = pd.DataFrame(0.0, index=gross.index, columns=[d.id for d in site.storages])
    if not site.storages or opt.mode == "none":
        return out
    if opt.mode == "forecast":
        flows, _stats = replay(site, gross, pv, opt.start, strategy="mpc", replan_steps=opt.replan_steps)
        for d in site.storages:
            out.loc[flows.index, d.id] = flows[f"{d.id}.p_kw"].to_numpy()
        return out
    soc0 = {d.id: d.p.soc_init_frac for d in site.storages}
    later = gross.index >= opt.start
    for _m, idx in gross[later].groupby(_months(gross.index[later])).groups.items():
        case = site_case(site, idx, gross[idx].to_numpy(), pv[idx].to_numpy(), soc0, 0.0)
        plan = optimize(case)
        for d in site.storages:
            out.loc[idx, d.id] = plan.frame[f"{d.id}.p_kw"].to_numpy()
    return out


def bill(site: Site, gross: pd.Series, pv: pd.Series, net: pd.Series, storage_kw: pd.DataFrame,
         opt: RunOptions) -> SiteRun:
    """Import, export, curtailment and the cost split of a site over the period, month by month [CNY]."""
    parts, cost = [], {}
    later = net.index >= opt.start
    soc0 = {d.id: d.p.soc_init_frac for d in site.storages}
    for _m, idx in net[later].groupby(_months(net.index[later])).groups.items():
        case = site_case(site, idx, gross[idx].to_numpy(), pv[idx].to_numpy(), soc0, 0.0)
        imp, exp, curt = grid_flows(case, net[idx].to_numpy())
        s = storage_kw.loc[idx]
        c = np.array([np.maximum(-s[d.id].to_numpy(), 0.0) for d in site.storages]).reshape(-1, len(idx))
        d = np.array([np.maximum(s[d.id].to_numpy(), 0.0) for d in site.storages]).reshape(-1, len(idx))
        for k, v in cost_split(case, imp, exp, c, d).items():
            cost[k] = cost.get(k, 0.0) + v
        pv_curt = np.minimum(curt, pv[idx].to_numpy())        # a surplus beyond the PV is storage output
        parts.append(pd.DataFrame({"imp": imp, "exp": exp, "curt": pv_curt, "spill": curt - pv_curt}, index=idx))
    f = pd.concat(parts)
    return SiteRun(f["imp"], f["exp"], f["curt"], f["spill"], storage_kw.loc[later], cost)


def run_enterprise(park: Park, case: ParkCase, eid: str, opt: RunOptions) -> SiteRun:
    site, gross, pv = _site(park, case, eid), case.gross_kw[eid], case.pv_of(eid)
    storage = dispatch(site, gross, pv, opt)
    return bill(site, gross, pv, gross - pv - storage.sum(axis=1), storage, opt)


def run_park(park: Park, case: ParkCase, mains_kw: pd.Series, opt: RunOptions) -> tuple[SiteRun, pd.Series]:
    """The 110 kV connection: the enterprises' net imports ``mains_kw`` (all history), the park's PV and storages;
    the grid meter adds the network losses ``loss_frac × |net|``. Returns the site run and the grid power [kW]."""
    site, pv = _site(park, case, "park"), case.pv_of("park")
    storage = dispatch(site, mains_kw, pv, opt)
    net = mains_kw - pv - storage.sum(axis=1)
    grid = net + case.loss_frac * net.abs()
    return bill(site, mains_kw, pv, grid, storage, opt), grid[grid.index >= opt.start]


def emissions(activities: list[Activity], fs: FactorSet) -> dict[str, float]:
    """tCO2 by scope of a list of activities (the carbon engine, Yunnan location-based grid factor)."""
    return totals(account(activities, fs, region="yunnan"))


def _activities(name: str, e_kwh: float, fuels: dict[str, float], green_kwh: float, pv_kwh: float) -> list:
    acts = [Activity("electricity", "electricity", e_kwh, "kWh", f"scenario: {name} net purchased")]
    acts += [Activity("fuel", f, v, "Nm3", f"scenario: {name} fuel") for f, v in sorted(fuels.items()) if v > 0]
    if green_kwh > 0:
        acts.append(Activity("green_certificate", "electricity", green_kwh, "kWh", f"scenario: {name} green share"))
    if pv_kwh > 0:
        acts.append(Activity("pv_self_use", "electricity", pv_kwh, "kWh", f"scenario: {name} PV used"))
    return acts


def enterprise_rows(park: Park, case: ParkCase, runs: dict[str, SiteRun], opt: RunOptions,
                    fs: FactorSet) -> pd.DataFrame:
    """Per enterprise: consumption, purchased electricity, PV used, fuel, bill, gas and green cost, emissions."""
    later = case.index >= opt.start
    rows = []
    for e in park.enterprises:
        r = runs[e.id]
        e_kwh = float((r.import_kw - r.export_kw).sum() * QUARTER_H)
        fuels: dict[str, float] = {}
        for dev, (eid, fuel) in case.fuel_of.items():
            if eid == e.id:
                fuels[fuel] = fuels.get(fuel, 0.0) + float(case.fuel[dev][later].sum() * QUARTER_H)
        green = case.green_frac.get(e.id, 0.0) * max(e_kwh, 0.0)
        pv = float(case.pv_of(e.id)[later].sum() * QUARTER_H - r.curtailed_kw.sum() * QUARTER_H)
        co2 = emissions(_activities(e.id, e_kwh, fuels, green, pv), fs)
        gas_nm3 = fuels.get("natural_gas", 0.0)
        rows.append({"enterprise_id": e.id, "consumption_e_kwh": float(case.gross_kw[e.id][later].sum() * QUARTER_H),
                     "purchased_e_kwh": e_kwh, "pv_used_e_kwh": pv, "gas_nm3": gas_nm3,
                     "peak_import_kw": float(r.import_kw.max()),
                     "electricity_cny": r.cost_cny["total"], "gas_cny": gas_nm3 * opt.gas_price_cny_per_nm3,
                     "green_cny": green * case.green_premium.get(e.id, 0.0), "green_e_kwh": green,
                     **{f"{k}_co2_t": v for k, v in co2.items()}})
    out = pd.DataFrame(rows).set_index("enterprise_id")
    out["cost_cny"] = out["electricity_cny"] + out["gas_cny"] + out["green_cny"]
    return out


def storage_rows(case: ParkCase, runs: dict[str, SiteRun]) -> list[dict]:
    """Per storage: energy discharged and charged, equivalent full cycles (discharged / usable energy)."""
    out = []
    for site, devices in case.storages.items():
        for d in devices:
            p = runs[site].storage_kw[d.id]
            dis, ch = float(p.clip(lower=0).sum() * QUARTER_H), float((-p).clip(lower=0).sum() * QUARTER_H)
            out.append({"site": site, "storage": d.id, "discharged_e_kwh": dis, "charged_e_kwh": ch,
                        "cycles": dis / d.p.energy_kwh})
    return out


def park_summary(case: ParkCase, runs: dict[str, SiteRun], grid_kw: pd.Series, ents: pd.DataFrame,
                 opt: RunOptions, fs: FactorSet) -> dict:
    """The park's figures over the period (docs/scenario.md defines each)."""
    park, later = runs["park"], case.index >= opt.start
    imp_kwh = float(park.import_kw.sum() * QUARTER_H)
    exp_kwh = float(park.export_kw.sum() * QUARTER_H)
    pv_kwh = float(case.pv_kw[later].to_numpy().sum() * QUARTER_H)
    curt_kwh = float(sum(r.curtailed_kw.sum() for r in runs.values()) * QUARTER_H)
    spill_kwh = float(sum(r.spill_kw.sum() for r in runs.values()) * QUARTER_H)
    pv_used = pv_kwh - curt_kwh - exp_kwh
    consumption = float(ents["consumption_e_kwh"].sum())
    fuels: dict[str, float] = {}
    for dev, (_eid, fuel) in case.fuel_of.items():
        fuels[fuel] = fuels.get(fuel, 0.0) + float(case.fuel[dev][later].sum() * QUARTER_H)
    green = float(ents["green_e_kwh"].sum())
    co2 = emissions(_activities("park", imp_kwh - exp_kwh, fuels, green, pv_used), fs)
    degradation = sum(runs[e].cost_cny.get("degradation", 0.0) for e in ents.index)
    cost = {"grid_energy_cny": park.cost_cny["energy"], "grid_demand_cny": park.cost_cny["demand"],
            "storage_degradation_cny": park.cost_cny["degradation"] + degradation,
            "gas_cny": float(ents["gas_cny"].sum()), "green_cny": float(ents["green_cny"].sum())}
    cost["total_cny"] = sum(cost.values())
    days = (case.index[-1] + pd.Timedelta("15min") - opt.start) / pd.Timedelta("1D")
    return {"period_days": float(days), "consumption_e_kwh": consumption, "grid_import_e_kwh": imp_kwh,
            "grid_export_e_kwh": exp_kwh, "peak_import_kw": float(park.import_kw.max()),
            "pv_e_kwh": pv_kwh, "pv_curtailed_e_kwh": curt_kwh, "pv_used_e_kwh": pv_used,
            "storage_spill_e_kwh": spill_kwh,
            "self_sufficiency_frac": pv_used / consumption if consumption > 0 else float("nan"),
            "gas_nm3": fuels.get("natural_gas", 0.0), "green_e_kwh": green,
            "cost_cny": cost, "co2_t": co2, "storage": storage_rows(case, runs)}


def run_case(park: Park, case: ParkCase, opt: RunOptions, fs: FactorSet) -> CaseRun:
    """Dispatch, meters, bills and emissions of one case (module docstring)."""
    runs: dict[str, SiteRun] = {}
    mains = pd.Series(0.0, index=case.index)
    for e in park.enterprises:
        r = run_enterprise(park, case, e.id, opt)
        runs[e.id] = r
        early = case.gross_kw[e.id] - case.pv_of(e.id)          # warm-up: no storage, no export
        mains = mains + early.clip(lower=0.0).where(case.index < opt.start, 0.0)
        mains.loc[r.import_kw.index] += (r.import_kw - r.export_kw).to_numpy()
    runs["park"], grid = run_park(park, case, mains, opt)
    ents = enterprise_rows(park, case, runs, opt, fs)
    summary = park_summary(case, runs, grid, ents, opt, fs)
    imp = runs["park"].import_kw
    monthly = pd.DataFrame({"grid_import_e_kwh": imp.groupby(_months(imp.index)).sum() * QUARTER_H,
                            "peak_import_kw": imp.groupby(_months(imp.index)).max()})
    monthly.index = monthly.index.astype(str)
    return CaseRun(runs, grid, summary, ents, monthly)
