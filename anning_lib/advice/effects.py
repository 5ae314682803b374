"""What each measure of the catalogue does to one enterprise in a year (pure): energy, cost, CO2, investment.

Every estimator takes the enterprise's diagnosed figures (:mod:`anning_lib.advice.diagnostics`) scaled to a
year, the catalogue's parameters (``data/advice/measures.yaml``) and prices, and returns an :class:`Effect`
whose ``basis`` lists every number it used, so the advice shows the data behind it. Signs: savings and
abatement > 0; ``grid_kwh_a`` is the change of electricity bought (< 0: less bought).

References
----------
.. [1] Yunnan time-of-use rules (云发改价格〔2024〕924号, 〔2026〕51号): two peak and two valley periods a day,
   so a battery can charge in each valley and discharge in the following peak (two cycles a day).
.. [2] GB/T 32150-2015, 附录B: natural gas NCV 389.31 GJ/10^4 Nm3 (via the factor set), EF via the factor set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KWH_PER_GJ = 1e6 / 3600.0
"""277.78 kWh in a GJ (1 kWh = 3.6 MJ)."""


@dataclass(frozen=True)
class Effect:
    """A measure's yearly effect on one enterprise."""

    capex_cny: float
    annual_net_cny: float                    # savings minus running costs [CNY/a]
    co2_t_a: float                           # abatement [tCO2/a]; < 0 adds emissions
    grid_kwh_a: float = 0.0                  # change of electricity bought [kWh/a]
    gas_nm3_a: float = 0.0                   # change of natural gas burnt [Nm3/a]
    size: dict = field(default_factory=dict)
    basis: dict = field(default_factory=dict)


def none_effect(reason: str) -> Effect:
    """A measure that does not apply or has nothing to gain, with the reason."""
    return Effect(0.0, 0.0, 0.0, basis={"reason": reason})


def rooftop_pv(free_roof_m2: float, kwp_per_m2: float, yield_kwh_per_kwp_a: float, capex_cny_per_kwp: float,
               opex_frac_a: float, daytime_base_kwh_a: float, price_cny_per_kwh: float,
               grid_t_per_kwh: float) -> Effect:
    """Rooftop PV on the roof not yet covered: generation used on site up to the daytime base use.

    Parameters
    ----------
    free_roof_m2 : float
        Roof area without PV [m2].
    kwp_per_m2 : float
        Peak power per m2 of roof [kWp/m2].
    yield_kwh_per_kwp_a : float
        Specific yield at the site [kWh/kWp/a].
    capex_cny_per_kwp, opex_frac_a : float
        Installed cost [CNY/kWp]; running cost per year as a share of it [-/a].
    daytime_base_kwh_a : float
        Electricity the enterprise uses at least in daylight hours in a year [kWh/a]: PV beyond it would be
        exported, which the park's connections do not pay for, so it is not counted.
    price_cny_per_kwh : float
        Import price the PV replaces (the daytime average) [CNY/kWh].
    grid_t_per_kwh : float
        Location-based grid factor [tCO2/kWh].
    """
    kwp = max(free_roof_m2, 0.0) * kwp_per_m2
    if kwp <= 0:
        return none_effect("no free roof area")
    gen = kwp * yield_kwh_per_kwp_a
    used = min(gen, max(daytime_base_kwh_a, 0.0))
    capex = kwp * capex_cny_per_kwp
    net = used * price_cny_per_kwh - capex * opex_frac_a
    return Effect(capex, net, used * grid_t_per_kwh, grid_kwh_a=-used, size={"kwp": kwp},
                  basis={"free_roof_m2": free_roof_m2, "generation_kwh_a": gen, "used_kwh_a": used,
                         "price_cny_per_kwh": price_cny_per_kwh, "grid_t_per_kwh": grid_t_per_kwh})


def battery(peak_kwh_a: float, days_a: float, cycles_per_day: float, dod_frac: float, rte_frac: float,
            max_kwh: float, capex_cny_per_kwh: float, opex_frac_a: float, p_peak: float, p_valley: float,
            grid_t_per_kwh: float) -> Effect:
    """A battery that charges in the valleys and discharges in the peaks [1]_, sized to the peak-hour purchase.

    Usable energy ``E = min(peak_kwh_a / days_a / cycles_per_day, max_kwh)``; per year it discharges
    ``D = E × cycles_per_day × days_a`` and charges ``D / rte``; value ``D × p_peak − D / rte × p_valley``.
    Its losses ``D / rte − D`` are bought from the grid, so its abatement is negative.

    Parameters
    ----------
    peak_kwh_a : float
        Electricity bought in peak hours in a year [kWh/a].
    days_a : float
        Operating days a year [d].
    cycles_per_day, dod_frac, rte_frac : float
        Full cycles a day [1/d], depth of discharge [-], round-trip efficiency [-].
    max_kwh : float
        Largest usable energy considered [kWh].
    capex_cny_per_kwh, opex_frac_a : float
        Installed cost per kWh of nameplate energy [CNY/kWh]; running cost per year as a share of it [-/a].
    p_peak, p_valley : float
        Import prices in the peak and valley bands [CNY/kWh].
    grid_t_per_kwh : float
        [tCO2/kWh]
    """
    if peak_kwh_a <= 0 or days_a <= 0:
        return none_effect("no electricity bought in peak hours")
    usable = min(peak_kwh_a / days_a / cycles_per_day, max_kwh)
    nameplate = usable / dod_frac
    discharged = usable * cycles_per_day * days_a
    charged = discharged / rte_frac
    capex = nameplate * capex_cny_per_kwh
    net = discharged * p_peak - charged * p_valley - capex * opex_frac_a
    losses = charged - discharged
    return Effect(capex, net, -losses * grid_t_per_kwh, grid_kwh_a=losses,
                  size={"usable_kwh": usable, "nameplate_kwh": nameplate},
                  basis={"peak_kwh_a": peak_kwh_a, "discharged_kwh_a": discharged, "charged_kwh_a": charged,
                         "p_peak": p_peak, "p_valley": p_valley, "rte_frac": rte_frac})


def load_shifting(flexible_peak_kwh_a: float, shift_frac: float, capex_cny: float, p_peak: float,
                  p_valley: float) -> Effect:
    """Moving part of the load above the continuous base out of peak hours into valley hours.

    Only load above the base (``flexible_peak_kwh_a``, batch processes, pumps, charging) can move; a flat load
    has none, so nothing to gain. Value ``shift_frac × flexible × (p_peak − p_valley)``; energy and CO2 unchanged.

    Parameters
    ----------
    flexible_peak_kwh_a : float
        Energy above the night base load in peak hours [kWh/a].
    shift_frac : float
        Share of it that can move [-].
    capex_cny : float
        Controls and scheduling [CNY].
    p_peak, p_valley : float
        [CNY/kWh]
    """
    moved = max(flexible_peak_kwh_a, 0.0) * shift_frac
    if moved <= 0:
        return none_effect("no load above the base load in peak hours")
    return Effect(capex_cny, moved * (p_peak - p_valley), 0.0, size={"moved_kwh_a": moved},
                  basis={"flexible_peak_kwh_a": flexible_peak_kwh_a, "shift_frac": shift_frac, "p_peak": p_peak,
                         "p_valley": p_valley})


def demand_limit(max_kw: float, reduction_frac: float, demand_charge_cny_per_kw_month: float,
                 capex_cny: float) -> Effect:
    """Demand-limit control: the month's peak demand lowered by ``reduction_frac``; value at the demand charge.

    Parameters
    ----------
    max_kw : float
        Highest 15-minute demand [kW].
    reduction_frac : float
        [-]
    demand_charge_cny_per_kw_month : float
        [CNY/kW/month]
    capex_cny : float
        [CNY]
    """
    if max_kw <= 0 or demand_charge_cny_per_kw_month <= 0:
        return none_effect("no demand charge in the enterprise's tariff" if max_kw > 0 else "no demand metered")
    cut = max_kw * reduction_frac
    return Effect(capex_cny, 12 * cut * demand_charge_cny_per_kw_month, 0.0, size={"peak_cut_kw": cut},
                  basis={"max_kw": max_kw, "reduction_frac": reduction_frac,
                         "demand_charge_cny_per_kw_month": demand_charge_cny_per_kw_month})


def boiler_electrification(gas_nm3_a: float, boiler_kw: float, ncv_gj_per_nm3: float, gas_t_per_nm3: float,
                           eff_gas: float, eff_elec: float, gas_price_cny_per_nm3: float,
                           elec_price_cny_per_kwh: float, capex_cny_per_kw: float, grid_t_per_kwh: float) -> Effect:
    """Gas boilers replaced by electric ones delivering the same heat [2]_.

    Heat ``Q = gas × NCV × eff_gas``; electricity ``Q / eff_elec`` (in kWh); abatement ``gas × EF_gas −
    electricity × grid factor`` (large where the grid is hydro-rich, as Yunnan's).

    Parameters
    ----------
    gas_nm3_a : float
        Gas burnt in the boilers [Nm3/a].
    boiler_kw : float
        Boiler capacity to replace [kW thermal].
    ncv_gj_per_nm3, gas_t_per_nm3 : float
        Gas net calorific value [GJ/Nm3] and emission factor [tCO2/Nm3].
    eff_gas, eff_elec : float
        Boiler efficiencies [-].
    gas_price_cny_per_nm3, elec_price_cny_per_kwh : float
        [CNY/Nm3], [CNY/kWh] (the average price the electric boiler would pay).
    capex_cny_per_kw : float
        [CNY/kW]
    grid_t_per_kwh : float
        [tCO2/kWh]
    """
    if gas_nm3_a <= 0:
        return none_effect("no gas-fired boiler metered")
    heat_gj = gas_nm3_a * ncv_gj_per_nm3 * eff_gas
    elec = heat_gj * KWH_PER_GJ / eff_elec
    net = gas_nm3_a * gas_price_cny_per_nm3 - elec * elec_price_cny_per_kwh
    co2 = gas_nm3_a * gas_t_per_nm3 - elec * grid_t_per_kwh
    return Effect(boiler_kw * capex_cny_per_kw, net, co2, grid_kwh_a=elec, gas_nm3_a=-gas_nm3_a,
                  size={"boiler_kw": boiler_kw},
                  basis={"gas_nm3_a": gas_nm3_a, "heat_gj_a": heat_gj, "electricity_kwh_a": elec,
                         "gas_price_cny_per_nm3": gas_price_cny_per_nm3, "elec_price_cny_per_kwh": elec_price_cny_per_kwh})


def fuel_saving(gas_nm3_a: float, saving_frac: float, capex_cny: float, gas_price_cny_per_nm3: float,
                gas_t_per_nm3: float) -> Effect:
    """Heat recovery: ``saving_frac`` of the gas no longer burnt.

    Parameters
    ----------
    gas_nm3_a : float
        [Nm3/a]
    saving_frac : float
        [-]
    capex_cny : float
        [CNY]
    gas_price_cny_per_nm3, gas_t_per_nm3 : float
        [CNY/Nm3], [tCO2/Nm3]
    """
    saved = max(gas_nm3_a, 0.0) * saving_frac
    if saved <= 0:
        return none_effect("no gas use metered")
    return Effect(capex_cny, saved * gas_price_cny_per_nm3, saved * gas_t_per_nm3, gas_nm3_a=-saved,
                  size={"gas_saved_nm3_a": saved}, basis={"gas_nm3_a": gas_nm3_a, "saving_frac": saving_frac})


def electricity_saving(kwh_a: float, saving_frac: float, capex_cny_per_kwh_a: float, price_cny_per_kwh: float,
                       grid_t_per_kwh: float) -> Effect:
    """Motor and drive upgrades: ``saving_frac`` of the motors' electricity, at a cost per kWh saved a year.

    Parameters
    ----------
    kwh_a : float
        Electricity of the motors [kWh/a].
    saving_frac : float
        [-]
    capex_cny_per_kwh_a : float
        Investment per kWh saved a year [CNY/(kWh/a)].
    price_cny_per_kwh, grid_t_per_kwh : float
        [CNY/kWh], [tCO2/kWh]
    """
    saved = max(kwh_a, 0.0) * saving_frac
    if saved <= 0:
        return none_effect("no electricity use metered")
    return Effect(saved * capex_cny_per_kwh_a, saved * price_cny_per_kwh, saved * grid_t_per_kwh,
                  grid_kwh_a=-saved, size={"saved_kwh_a": saved},
                  basis={"motor_kwh_a": kwh_a, "saving_frac": saving_frac, "price_cny_per_kwh": price_cny_per_kwh})


def green_electricity(grid_kwh_a: float, share: float, premium_cny_per_kwh: float, grid_t_per_kwh: float) -> Effect:
    """Green electricity (certificates or green power contracts) for ``share`` of the purchase: lowers
    market-based scope 2 by that electricity × the grid factor, at the premium; no investment.

    Parameters
    ----------
    grid_kwh_a : float
        [kWh/a]
    share : float
        [-]
    premium_cny_per_kwh, grid_t_per_kwh : float
        [CNY/kWh], [tCO2/kWh]
    """
    kwh = max(grid_kwh_a, 0.0) * share
    if kwh <= 0:
        return none_effect("no electricity bought")
    return Effect(0.0, -kwh * premium_cny_per_kwh, kwh * grid_t_per_kwh, size={"green_kwh_a": kwh},
                  basis={"grid_kwh_a": grid_kwh_a, "share": share, "premium_cny_per_kwh": premium_cny_per_kwh,
                         "scope": "market-based scope 2"})
