"""A period of the energy-flow graph (:mod:`anning_lib.twin.flows`) summed into the links of an energy and a carbon
Sankey, closed by loss links that equal the energy balance's residual and the boilers' losses, with the carbon of
each link as the enterprises' accounts compute it (method: ``docs/flows.md``).

References
----------
.. [1] GB/T 3484-2009 企业能量平衡通则 (energy supplied = energy used + losses, at a system boundary).
.. [2] GB/T 32150-2015 工业企业温室气体排放核算和报告通则, formula (2).
.. [3] GHG Protocol Scope 2 Guidance (WRI, 2015): location-based method.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_visible
from anning_lib.carbon.accounting import Activity, electricity_lines, fuel_line
from anning_lib.carbon.factors import FactorSet, load_factor_set
from anning_lib.errors import AnningError
from anning_lib.park.catalogue import Catalogue
from anning_lib.park.schema import Park
from anning_lib.reports.balance import (
    balance_points,
    boiler_balance,
    electricity_balance,
)
from anning_lib.store.timeseries import read_series, refresh_rollups
from anning_lib.twin.flows import (
    CARBON_COLUMNS,
    GRID,
    GRID_REGION,
    LINK_COLUMNS,
    LOSSES,
    SUBSTATION,
    aware_bounds,
    balance,
    default_catalogue,
    flow_tags,
    interval_flows,
    nodes,
)


# ------------------------------------------------------------------------------------------------ a period
@dataclass(frozen=True)
class PeriodSankey:
    """The links of one period. ``energy``: :data:`LINK_COLUMNS` [kWh]; ``carbon``: :data:`CARBON_COLUMNS`
    [tCO2]; ``carbon_lines``: the carbon module's lines behind each carbon link (activity, factor with its
    source, formula); ``electricity``: the park's :func:`electricity_balance` over the period (None for one
    enterprise); ``boilers``: :func:`boiler_balance` of the boilers in scope."""

    start: pd.Timestamp
    end: pd.Timestamp
    enterprise_id: str | None
    energy: pd.DataFrame
    carbon: pd.DataFrame
    carbon_lines: pd.DataFrame
    electricity: pd.DataFrame | None
    boilers: pd.DataFrame


def _check_residual(net: pd.DataFrame, node: str, expected_e_kwh: float) -> None:
    """A node's net from the links must be the residual the balance module found (else a bug)."""
    row = net.set_index("node").reindex([node]).fillna(0.0).iloc[0]
    got, scale = float(row["net_e_kwh"]), max(1.0, float(row["in_e_kwh"]))
    if abs(got - expected_e_kwh) > 1e-9 * scale:
        raise AnningError(f"{node}: the links leave {got:.6g} kWh, the balance {expected_e_kwh:.6g} kWh")


def loss_links(energy: pd.DataFrame, electricity: pd.DataFrame | None, boilers: pd.DataFrame,
               catalogue: Catalogue | None = None) -> pd.DataFrame:
    """The residual of the substation and of each boiler as a link to (or, if negative, from) ``LOSSES`` (pure).

    Parameters
    ----------
    energy : pandas.DataFrame
        measured period links :data:`LINK_COLUMNS` [kWh].
    electricity : pandas.DataFrame or None
        :func:`electricity_balance` of the period (one row): its ``residual_e_kwh`` [kWh] is the substation's.
    boilers : pandas.DataFrame
        :func:`boiler_balance` of the period: each boiler's ``loss_gj`` [GJ], × kWh per GJ.
    catalogue : Catalogue, optional

    Returns
    -------
    pandas.DataFrame
        :data:`LINK_COLUMNS`, carrier ``electricity`` (substation) or ``heat`` (boilers). Raises AnningError if a
        residual differs from the node's net in ``energy`` (both are computed the same way: a bug).
    """
    kwh_per_gj = (catalogue or default_catalogue()).quantities["energy"].to_canonical("GJ")
    net = balance(energy)
    found = []
    if electricity is not None and pd.notna(electricity["residual_e_kwh"].iloc[0]):
        found.append((SUBSTATION, float(electricity["residual_e_kwh"].iloc[0]), "electricity"))
    for dev, loss_gj in boilers[["device_id", "loss_gj"]].itertuples(index=False):
        if pd.notna(loss_gj) and dev in set(energy["dst"]):
            found.append((dev, float(loss_gj) * kwh_per_gj, "heat"))
    rows = []
    for node, e_kwh, carrier in found:
        _check_residual(net, node, e_kwh)
        rows.append((node, LOSSES, carrier, e_kwh) if e_kwh >= 0 else (LOSSES, node, carrier, -e_kwh))
    return pd.DataFrame(rows, columns=LINK_COLUMNS)


def carbon_links(energy: pd.DataFrame, park: Park, fs: FactorSet, *, region: str = GRID_REGION,
                 data_year: int | None = None, catalogue: Catalogue | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The period's CO2 as links from where it is emitted to whom it is accounted (pure).

    Method: the enterprises' accounts of :mod:`anning_lib.carbon.accounting` (the park's account is their sum,
    ``docs/carbon.md``). Location-based scope 2: electricity an enterprise takes from the park network
    (``SUBSTATION → E``) × the region's grid factor, as a link ``GRID → E``; what it feeds in (``E →
    SUBSTATION``) × the same factor as ``E → GRID``, so the net at E is its net purchase × factor.
    Scope 1: fuel on ``<fuel> → boiler`` and ``<fuel> → E``, by :func:`~anning_lib.carbon.accounting.fuel_line`
    with the amount in the fuel's unit (kWh ÷ NCV); a boiler passes its CO2 on to its enterprise.

    Parameters
    ----------
    energy : pandas.DataFrame
        period links :data:`LINK_COLUMNS` [kWh].
    park : Park
    fs : FactorSet
        the emission factors (their version and sources go into the lines).
    region, data_year : str, int
        grid region and data year of the factor (default the newest year in ``fs``) [-].
    catalogue : Catalogue, optional

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        links :data:`CARBON_COLUMNS` ``src, dst, carrier, co2_t`` [tCO2], and the lines behind them: ``src, dst``
        and the columns of :class:`~anning_lib.carbon.accounting.Line`.

    References
    ----------
    GB/T 32150-2015 formula (2) (E = AD × NCV × CC × OF × 44/12); NDRC sector guidelines (net purchased
    electricity × grid factor); GHG Protocol Scope 2 Guidance (location-based).
    """
    cat = catalogue or default_catalogue()
    kwh_per_gj = cat.quantities["energy"].to_canonical("GJ")
    kind = nodes(park).set_index("node")["kind"]
    year = data_year if data_year is not None else fs.latest_grid_year(region, "location")
    rows, lines = [], []
    for src, dst, carrier, e_kwh in energy[LINK_COLUMNS].itertuples(index=False):
        via = f"flow {src} → {dst} ({carrier}), {e_kwh:,.10g} kWh"
        if carrier == "electricity" and SUBSTATION in (src, dst) and "enterprise" in (kind.get(src), kind.get(dst)):
            line = electricity_lines([Activity("electricity", "electricity", e_kwh, "kWh", via)], [], fs, region,
                                     year)[0]
            pairs = [(GRID, dst) if src == SUBSTATION else (src, GRID)]
        elif kind.get(src) in ("gas_supply", "coal_supply", "fuel_supply"):
            unit = cat.carriers[carrier].unit
            amount = e_kwh / (cat.carriers[carrier].ncv_gj_per_unit * kwh_per_gj)
            line = fuel_line(Activity("fuel", carrier, amount, unit, via), fs)
            pairs = [(src, dst)] + ([(dst, park.enterprise_of(dst))] if kind.get(dst) == "boiler" else [])
        else:
            continue
        for a, b in pairs:
            rows.append((a, b, carrier, line.co2_t))
        lines.append({"src": pairs[0][0], "dst": pairs[0][1], **line.__dict__})
    links = pd.DataFrame(rows, columns=CARBON_COLUMNS).groupby(["src", "dst", "carrier"], sort=False,
                                                               as_index=False)["co2_t"].sum()
    return links[CARBON_COLUMNS], pd.DataFrame(lines)


def period_sankey(means_kw: pd.DataFrame, park: Park, start: object, end: object, *,
                  enterprise_id: str | None = None, catalogue: Catalogue | None = None, fs: FactorSet | None = None,
                  region: str = GRID_REGION, data_year: int | None = None, losses: bool = True) -> PeriodSankey:
    """Sum a period into the links of an energy Sankey and a carbon Sankey (pure).

    Parameters
    ----------
    means_kw, park, start, end, enterprise_id, catalogue
        as :func:`interval_flows`.
    fs : FactorSet, optional
        emission factors (default the factor set of ``data/emission_factors``).
    region, data_year
        the grid factor, as :func:`carbon_links`.
    losses : bool
        add the loss links of :func:`loss_links` (the substation's residual from
        :func:`~anning_lib.reports.balance.electricity_balance`, park scope only, and each boiler's loss from
        :func:`~anning_lib.reports.balance.boiler_balance`), so every transit node closes.

    Returns
    -------
    PeriodSankey
        ``energy`` links [kWh] (``grid import`` = the ``GRID → SUBSTATION`` link = ``electricity_balance``'s
        ``grid_import_e_kwh``), ``carbon`` links [tCO2] and their ``carbon_lines``.

    References
    ----------
    GB/T 3484-2009; GB/T 10180-2017 (direct method); GB/T 32150-2015 formula (2); GHG Protocol Scope 2 Guidance.
    """
    s, e = aware_bounds(start, end)
    cat = catalogue or default_catalogue()
    fs = fs or load_factor_set()
    flows = interval_flows(means_kw, park, s, e, enterprise_id=enterprise_id, catalogue=cat)
    energy = flows.groupby(["src", "dst", "carrier"], sort=False, as_index=False)["e_kwh"].sum()[LINK_COLUMNS]
    elec = electricity_balance(means_kw, balance_points(park), s, e, freq=None) if enterprise_id is None else None
    boilers = boiler_balance(means_kw, park, cat.carriers, s, e)
    if enterprise_id is not None:
        boilers = boilers[boilers["enterprise_id"] == enterprise_id].reset_index(drop=True)
    if losses:
        extra = loss_links(energy, elec, boilers, cat)
        energy = pd.concat([energy, extra], ignore_index=True) if len(extra) else energy
    carbon, lines = carbon_links(energy, park, fs, region=region, data_year=data_year, catalogue=cat)
    return PeriodSankey(s, e, enterprise_id, energy, carbon, lines, elec, boilers)


# ------------------------------------------------------------------------------------------------ I/O
def read_period(engine: Engine, park: Park, actor: Actor, start: object, end: object, *,
                enterprise_id: str | None = None, refresh: bool = False, **kw) -> PeriodSankey:
    """Read a period's 15-minute rollups through the actor's scope and return its Sankey links.

    Parameters
    ----------
    engine, park
        the store and the park model.
    actor : Actor
        whole park (``enterprise_id`` None): admin, operator, system only (the grid, shared storage and park PV
        are park-level points); one enterprise: those roles or that enterprise's own users.
    start, end : aware timestamp
        ``[start, end)``.
    enterprise_id : str, optional
    refresh : bool
        recompute the period's rollups of these tags first (idempotent); a page that must not write passes
        False (the default) and reads them as the gateway left them.
    **kw
        ``catalogue``, ``fs``, ``region``, ``data_year``, ``losses`` of :func:`period_sankey`.

    Raises
    ------
    AccessError
        for a scope the actor may not see (before anything is read); StoreError for an unknown enterprise.
    """
    require_visible(actor, "the energy flows", enterprise_id)
    tags = flow_tags(park, enterprise_id)
    s, e = aware_bounds(start, end)
    if refresh:
        refresh_rollups(engine, s, e, tags=tags)
    means = read_series(engine, tags, s, e, resolution="15min", tz=park.meta.site.timezone)
    return period_sankey(means, park, s, e, enterprise_id=enterprise_id, **kw)
