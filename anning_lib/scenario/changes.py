"""The changes a scenario makes to a :class:`~anning_lib.scenario.parkcase.ParkCase` (pure functions but for
reading reference files).

Each ``apply_<type>`` takes the case, the change (:mod:`anning_lib.scenario.spec`) and the context, and returns
a new case; numbers a change leaves out come from the measures catalogue ``data/advice/measures.yaml`` and the
carriers file, with their sources recorded in the case's :class:`~anning_lib.scenario.parkcase.Investment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anning_lib.advice.catalogue import Catalogue
from anning_lib.dispatch.tariff import band_of
from anning_lib.park.catalogue import load_catalogue as load_carriers
from anning_lib.park.schema import Device, Park
from anning_lib.scenario import spec as S
from anning_lib.scenario.parkcase import Investment, ParkCase, tariff_by_id

KW_PER_GJ_H = 1e6 / 3600.0
"""1 GJ/h = 277.78 kW (1 kWh = 3.6 MJ)."""
QUARTER_H = 0.25


@dataclass(frozen=True)
class Context:
    park: Park
    data_dir: Path
    measures: Catalogue


def _invest(ctx: Context, measure: str, label: str, capex_cny: float, capex_key: str, given: bool) -> Investment:
    m = ctx.measures.measures[measure]
    opex = m.value("opex_frac_a") * capex_cny if "opex_frac_a" in m.quantities else 0.0
    src = "scenario file" if given else f"measures.yaml {measure}.{capex_key}: {m.cite(capex_key)}"
    return Investment(label, capex_cny, opex, m.value("lifetime_a"), src)


def apply_add_pv(case: ParkCase, c: S.AddPv, ctx: Context, k: int) -> ParkCase:
    """New PV behind ``c.site``: the measured output per kWp of the PV already behind that meter (the park's
    arrays where it has none) times ``c.dc_kwp``. Same weather, same orientation class: a simplification named
    in docs/scenario.md."""
    ref = [d for d in ctx.park.iter_devices() if d[1].type == "pv"]
    own = [d for e, d in ref if (e or "park") == c.site and d.id in case.pv_kw.columns]
    ref_devices = own or [d for e, d in ref if e is None and d.id in case.pv_kw.columns]
    kwp = sum(d.p.dc_kwp for d in ref_devices)
    specific = case.pv_kw[[d.id for d in ref_devices]].sum(axis=1) / kwp
    out = case.copy()
    new_id = f"{c.site}-new-pv{k}"
    out.pv_kw[new_id], out.pv_site[new_id] = specific * c.dc_kwp, c.site
    per = c.capex_cny_per_kwp
    if per is None:
        per = ctx.measures.measures["rooftop_pv"].value("capex_cny_per_kwp")
    out.investments.append(_invest(ctx, "rooftop_pv", f"add_pv {c.site} {c.dc_kwp:g} kWp", per * c.dc_kwp,
                                   "capex_cny_per_kwp", c.capex_cny_per_kwp is not None))
    return out


def new_storage(device_id: str, c: S.AddStorage) -> Device:
    """A storage device for the optimiser and simulator (state of charge between 10 % and 95 %, starting at
    50 %, as the park model's defaults)."""
    return Device.model_validate({
        "id": device_id, "name": device_id, "type": "bess", "protocol": "modbus",
        "params": {"capacity_kwh": c.energy_kwh, "p_max_kw": c.p_max_kw, "eta_charge": c.eta_charge,
                   "eta_discharge": c.eta_discharge, "control": "advisory"},
        "points": [{"id": "p_kw", "quantity": "active_power", "unit": "kW"}]})


def apply_add_storage(case: ParkCase, c: S.AddStorage, ctx: Context, k: int) -> ParkCase:
    out = case.copy()
    out.storages.setdefault(c.site, []).append(new_storage(f"{c.site}-new-bess{k}", c))
    m = ctx.measures.measures["battery_storage"]
    per_kwh = c.capex_cny_per_kwh if c.capex_cny_per_kwh is not None else m.value("capex_cny_per_kwh")
    capex = per_kwh * c.energy_kwh + (0.0 if c.capex_cny_per_kwh is not None else
                                      m.value("capex_cny_per_kw") * c.p_max_kw)
    out.investments.append(_invest(ctx, "battery_storage", f"add_storage {c.site} {c.energy_kwh:g} kWh / "
                                   f"{c.p_max_kw:g} kW", capex, "capex_cny_per_kwh", c.capex_cny_per_kwh is not None))
    return out


def apply_tariff(case: ParkCase, c: S.ChangeTariff, ctx: Context, k: int) -> ParkCase:
    out = case.copy()
    targets = list(case.tariffs) if c.connection == "all" else [c.connection]
    for t in targets:
        out.tariffs[t] = tariff_by_id(c.tariff, ctx.data_dir)
    return out


def electric_boiler_kw(steam_t_h: pd.Series, steam_gj_per_t: float, eff_elec: float) -> pd.Series:
    """Electric power that raises the same steam [kW]: ``steam × h_steam / eff_elec`` (direct method of
    GB/T 10180-2017: output heat / efficiency = input).

    Parameters
    ----------
    steam_t_h : Series
        steam raised [t/h].
    steam_gj_per_t : float
        net heat per tonne of steam [GJ/t] (``data/carriers.yaml`` steam).
    eff_elec : float
        electric boiler efficiency [-].
    """
    return steam_t_h.clip(lower=0.0) * steam_gj_per_t / eff_elec * KW_PER_GJ_H


def apply_electrify_boiler(case: ParkCase, c: S.ElectrifyBoiler, ctx: Context, k: int,
                           steam_t_h: pd.Series | None = None) -> ParkCase:
    """The boiler's gas goes; an electrode boiler raising its measured steam adds its power to the enterprise's
    gross load, times ``1 + loss_frac`` of the main meter (the plant network carries it)."""
    dev = ctx.park.device(c.device)
    eid = ctx.park.enterprise_of(c.device)
    m = ctx.measures.measures["boiler_electrification"]
    eff = c.eff_elec if c.eff_elec is not None else m.value("eff_elec")
    h = load_carriers(ctx.data_dir).carriers["steam"].heat_gj_per_unit
    main = next(d for d in ctx.park.enterprise(eid).devices if d.type == "main_meter")
    out = case.copy()
    out.gross_kw[eid] = out.gross_kw[eid] + electric_boiler_kw(steam_t_h, h, eff) * (1.0 + main.p.loss_frac)
    out.fuel = out.fuel.drop(columns=[c.device])
    out.fuel_of.pop(c.device, None)
    per_kw = c.capex_cny_per_kw if c.capex_cny_per_kw is not None else m.value("capex_cny_per_kw")
    kw_th = dev.p.steam_rated_t_h * h * KW_PER_GJ_H
    out.investments.append(_invest(ctx, "boiler_electrification", f"electrify_boiler {c.device} "
                                   f"{kw_th:,.0f} kW_th", per_kw * kw_th, "capex_cny_per_kw",
                                   c.capex_cny_per_kw is not None))
    return out


def water_fill(room: np.ndarray, total: float) -> np.ndarray:
    """Split ``total`` over steps as evenly as possible with step ``i`` taking at most ``room[i]`` (pure):
    ``min(level, room)`` with the level at which the parts sum to ``total`` (``total <= Σ room``)."""
    r = np.sort(room)
    n = len(r)
    left = total
    for i, cap in enumerate(r):
        if cap * (n - i) >= left:
            return np.minimum(room, left / (n - i))
        left -= cap
    return room.copy()


def shift_energy(p_kw: pd.Series, band: np.ndarray, share_frac: float, from_band: str, to_band: str,
                 rated_kw: float) -> pd.Series:
    """Move ``share_frac`` of each day's energy in ``from_band`` to the quarter-hours of ``to_band`` of the same
    day, spread evenly and never above ``rated_kw``; a day whose ``to_band`` has too little headroom moves less.
    Each day's energy is unchanged (pure).

    Parameters
    ----------
    p_kw : Series
        the load's power, 15-minute means, local time index [kW].
    band : ndarray
        tariff band of each step.
    share_frac : float
        [-].
    rated_kw : float
        the load's rating [kW].
    """
    p = p_kw.to_numpy(dtype=float).copy()
    days = p_kw.index.normalize()
    src, dst = band == from_band, band == to_band
    for day in np.unique(days):
        on = days == day
        s, d = on & src, on & dst
        if not s.any() or not d.any():
            continue
        want_kw = share_frac * p[s].sum() / d.sum()            # per to_band step, before the cap
        room_kw = np.maximum(rated_kw - p[d], 0.0)
        moved_kwh = min(want_kw * d.sum(), room_kw.sum()) * QUARTER_H
        if moved_kwh <= 0:
            continue
        add = water_fill(room_kw, moved_kwh / QUARTER_H)
        p[d] += add
        p[s] -= p[s] * (moved_kwh / (p[s].sum() * QUARTER_H))
    return pd.Series(p, index=p_kw.index)


def apply_shift_process(case: ParkCase, c: S.ShiftProcess, ctx: Context, k: int,
                        p_kw: pd.Series | None = None) -> ParkCase:
    """Shift part of a load's energy between tariff bands (:func:`shift_energy`) on the enterprise's tariff
    bands; the gross load changes by the difference times ``1 + loss_frac`` of the main meter."""
    dev = ctx.park.device(c.device)
    eid = ctx.park.enterprise_of(c.device)
    _tariff, bands, _mult = case.tariffs[eid]
    band = band_of(case.index, bands)
    shifted = shift_energy(p_kw, band, c.share_frac, c.from_band, c.to_band, dev.p.rated_kw)
    main = next(d for d in ctx.park.enterprise(eid).devices if d.type == "main_meter")
    out = case.copy()
    out.gross_kw[eid] = out.gross_kw[eid] + (shifted - p_kw) * (1.0 + main.p.loss_frac)
    if c.capex_cny:
        out.investments.append(Investment(f"shift_process {c.device}", c.capex_cny, 0.0,
                                          ctx.measures.measures["load_shifting"].value("lifetime_a"), "scenario file"))
    return out


def apply_green_electricity(case: ParkCase, c: S.GreenElectricity, ctx: Context, k: int) -> ParkCase:
    m = ctx.measures.measures["green_electricity"]
    premium = c.premium_cny_per_kwh if c.premium_cny_per_kwh is not None else m.value("premium_cny_per_kwh")
    out = case.copy()
    for eid in (list(case.gross_kw.columns) if c.enterprise == "all" else [c.enterprise]):
        out.green_frac[eid], out.green_premium[eid] = c.share_frac, premium
    return out


def apply_changes(case: ParkCase, sc: S.Scenario, ctx: Context, wide: pd.DataFrame) -> ParkCase:
    """Every change of ``sc`` in order; ``wide`` is the history (steam of boilers, power of shifted loads)."""
    for k, c in enumerate(sc.changes, start=1):
        if isinstance(c, S.AddPv):
            case = apply_add_pv(case, c, ctx, k)
        elif isinstance(c, S.AddStorage):
            case = apply_add_storage(case, c, ctx, k)
        elif isinstance(c, S.ChangeTariff):
            case = apply_tariff(case, c, ctx, k)
        elif isinstance(c, S.ElectrifyBoiler):
            case = apply_electrify_boiler(case, c, ctx, k, wide[f"{c.device}.steam_t_h"])
        elif isinstance(c, S.ShiftProcess):
            case = apply_shift_process(case, c, ctx, k, wide[f"{c.device}.p_kw"])
        elif isinstance(c, S.GreenElectricity):
            case = apply_green_electricity(case, c, ctx, k)
    return case
