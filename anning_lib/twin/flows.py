"""The park's energy-flow graph: carriers between nodes, built from the park model, balanced per interval, and
summed over a period into the links of an energy and a carbon Sankey (method and sign table: ``docs/flows.md``).

Nodes and edges come from the park model, never a hand-made list: the electricity terms of
:func:`anning_lib.reports.balance.balance_points` (``GRID ↔ SUBSTATION``, park PV and storage ↔ ``SUBSTATION``,
``SUBSTATION ↔`` enterprise by its main meter, enterprise PV and storage ↔ enterprise), the fuels of
:func:`anning_lib.carbon.metered.metered_points` (``GAS →`` boiler, ``GAS →`` enterprise for its process lines),
each boiler's steam (boiler → enterprise), and the derived ``SUBSTATION → LOSSES`` and boiler ``→ LOSSES``. An
edge's ``src → dst`` is the direction of a positive reading (``docs/glossary.md``); a negative one flows back;
flows are >= 0, each point split by its own sign as :mod:`anning_lib.reports.balance` does. Fuel and steam become
thermal power, ``P [kW] = flow [unit/h] × NCV or net heat [GJ/unit] × 277.78 kWh/GJ`` (natural gas:
``Nm3/h × 38.931 MJ/Nm3 / 3.6``), from ``data/carriers.yaml`` and ``data/units.yaml``.

References
----------
.. [1] GB/T 3484-2009 企业能量平衡通则 (energy supplied = energy used + losses, at a system boundary).
.. [2] GB/T 32150-2015 工业企业温室气体排放核算和报告通则, Table B.1 (net calorific values) and formula (2).
.. [3] GB/T 10180-2017 工业锅炉热工性能试验规程 (boiler loss by the direct method).
.. [4] GHG Protocol Scope 2 Guidance (WRI, 2015): location-based method.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from anning_lib.carbon.metered import QUARTER_H, metered_points
from anning_lib.errors import AnningError, StoreError
from anning_lib.park.catalogue import Catalogue, load_catalogue
from anning_lib.park.schema import Park, point_tag
from anning_lib.reports.balance import (
    balance_points,
)

GRID, SUBSTATION, LOSSES = "GRID", "SUBSTATION", "LOSSES"
FUEL_NODES = {"natural_gas": ("GAS", "gas_supply"), "coal": ("COAL", "coal_supply")}
"""Supply node id and kind of a fuel carrier; any other fuel: its carrier id upper-cased, kind ``fuel_supply``."""
SOURCE_KINDS = ("grid", "pv", "bess", "gas_supply", "coal_supply", "fuel_supply")
GRID_REGION = "yunnan"
"""Grid region of the location-based electricity factor (``data/emission_factors/grid.csv``), as the accounts."""
NODE_COLUMNS = ["node", "kind", "carrier", "enterprise_id", "device_id"]
EDGE_COLUMNS = ["src", "dst", "carrier"]
LIVE_COLUMNS = ["src", "dst", "carrier", "p_kw"]
INTERVAL_COLUMNS = ["ts", "src", "dst", "carrier", "e_kwh"]
LINK_COLUMNS = ["src", "dst", "carrier", "e_kwh"]
CARBON_COLUMNS = ["src", "dst", "carrier", "co2_t"]
_TERM_COLUMNS = ["tag", "src", "dst", "carrier", "enterprise_id", "device_id", "group", "conversion"]


# ------------------------------------------------------------------------------------------------ the graph
def _fuel_node(fuel: str) -> tuple[str, str]:
    return FUEL_NODES.get(fuel, (fuel.upper(), "fuel_supply"))


def _terms(park: Park) -> pd.DataFrame:
    """One row per measured point of the graph: its edge, owner, completeness group and conversion (pure).

    ``group``: the points that must all have a value in a quarter-hour for any of them to count (the whole
    electricity balance, as :func:`electricity_balance`; a boiler's fuel and steam, as :func:`boiler_balance`;
    a process line's fuel alone). ``conversion``: ``power`` (kW), ``fuel`` (× NCV) or ``steam`` (× net heat).
    """
    rows = []
    for tag, term, eid, dev in balance_points(park).itertuples(index=False):
        eid = None if pd.isna(eid) else eid
        src, dst = {"grid": (GRID, SUBSTATION), "main": (SUBSTATION, eid)}.get(term, (dev, eid or SUBSTATION))
        rows.append((tag, src, dst, "electricity", eid, dev, "electricity", "power"))
    for e in park.enterprises:
        for kind, fuel, _unit, tags in metered_points(park, e.id):
            for tag in tags if kind == "fuel" else []:
                dev = park.device(tag.split(".", 1)[0])
                boiler = dev.type == "boiler"
                rows.append((tag, _fuel_node(fuel)[0], dev.id if boiler else e.id, fuel, e.id, dev.id,
                             f"boiler:{dev.id}" if boiler else tag, "fuel"))
        for d in e.devices:
            if d.type == "boiler" and any(p.id == "steam_t_h" for p in d.points):
                rows.append((point_tag(d.id, "steam_t_h"), d.id, e.id, "steam", e.id, d.id, f"boiler:{d.id}",
                             "steam"))
    terms = pd.DataFrame(rows, columns=_TERM_COLUMNS)
    taken = {SUBSTATION, LOSSES} | {_fuel_node(f)[0] for f in terms.loc[terms["conversion"] == "fuel", "carrier"]}
    clash = sorted(taken & ({e.id for e in park.enterprises} | set(terms["device_id"])))
    if clash:
        raise AnningError(f"node: id {clash[0]!r} of the park model is reserved for a node of the flow graph")
    return terms


def _scoped(park: Park, enterprise_id: str | None) -> pd.DataFrame:
    """:func:`_terms` of the whole park (None) or of one enterprise's own devices."""
    terms = _terms(park)
    if enterprise_id is None:
        return terms
    if enterprise_id not in {e.id for e in park.enterprises}:
        raise StoreError(f"enterprise_id: unknown enterprise {enterprise_id!r}")
    return terms[terms["enterprise_id"] == enterprise_id].reset_index(drop=True)


def flow_tags(park: Park, enterprise_id: str | None = None) -> list[str]:
    """Every point tag the flows of the park (or of one enterprise) read (pure)."""
    return list(_scoped(park, enterprise_id)["tag"])


def nodes(park: Park) -> pd.DataFrame:
    """The nodes of the park's energy-flow graph (pure).

    Returns
    -------
    pandas.DataFrame
        :data:`NODE_COLUMNS`: ``node`` id; ``kind``: ``grid``, ``substation``, ``pv``, ``bess``, ``enterprise``,
        ``gas_supply`` (``coal_supply``, ``fuel_supply`` for other fuels), ``boiler`` or ``losses`` (a virtual
        node: the residual of the substation and the boilers); ``carrier`` the node's output carrier (None for
        enterprises and losses); ``enterprise_id`` (None: park level); ``device_id`` (None: no single device).
    """
    terms = _terms(park)
    measured = set(terms["device_id"])
    grid_dev = terms.loc[terms["src"] == GRID, "device_id"]
    rows = [(GRID, "grid", "electricity", None, grid_dev.iloc[0] if len(grid_dev) else None),
            (SUBSTATION, "substation", "electricity", None, None)]
    for fuel in dict.fromkeys(terms.loc[terms["conversion"] == "fuel", "carrier"]):
        node, kind = _fuel_node(fuel)
        rows.append((node, kind, fuel, None, None))
    for eid, d in park.iter_devices():
        if eid is None and d.type in ("pv", "bess") and d.id in measured:
            rows.append((d.id, d.type, "electricity", None, d.id))
    for e in park.enterprises:
        rows.append((e.id, "enterprise", None, e.id, None))
        for d in e.devices:
            if d.type in ("pv", "bess", "boiler") and d.id in measured:
                rows.append((d.id, d.type, "steam" if d.type == "boiler" else "electricity", e.id, d.id))
    rows.append((LOSSES, "losses", None, None, None))
    return pd.DataFrame(rows, columns=NODE_COLUMNS)


def edges(park: Park) -> pd.DataFrame:
    """The edges of the graph, each in its positive direction (module docstring), from the park model (pure).

    Returns
    -------
    pandas.DataFrame
        :data:`EDGE_COLUMNS` ``src, dst, carrier``: one row per measured edge (several points on one edge, e.g.
        two process lines' gas, are one edge), then the derived loss edges ``SUBSTATION → LOSSES``
        (electricity) and ``<boiler> → LOSSES`` (heat).
    """
    terms = _terms(park)
    measured = terms[EDGE_COLUMNS].drop_duplicates()
    boilers = terms.loc[terms["conversion"] == "steam", "src"].drop_duplicates()
    derived = [(SUBSTATION, LOSSES, "electricity")] + [(b, LOSSES, "heat") for b in boilers]
    return pd.concat([measured, pd.DataFrame(derived, columns=EDGE_COLUMNS)], ignore_index=True)


# ------------------------------------------------------------------------------------------------ flows
@lru_cache(maxsize=1)
def default_catalogue() -> Catalogue:
    from anning_lib.config import get_settings

    return load_catalogue(Path(get_settings().data_dir))


def kw_per_unit(park: Park, catalogue: Catalogue | None = None) -> pd.Series:
    """The factor that turns each point's reading into kW, by tag [kW per point unit] (pure).

    Power points: the unit's factor to kW (``data/units.yaml``). Fuel: ``to_canonical(unit) [carrier unit/h]
    × ncv_gj_per_unit [GJ/unit] × kWh per GJ``; steam the same with ``heat_gj_per_unit``; natural gas in Nm3/h:
    ``0.038931 GJ/Nm3 × 277.78 kWh/GJ = 38.931 / 3.6`` kW per Nm3/h.

    References
    ----------
    GB/T 32150-2015, Table B.1 (NCV); IAPWS-IF97 (steam net heat, ``data/carriers.yaml``); GB 3100-1993
    (1 kWh = 3.6 MJ).
    """
    cat = catalogue or default_catalogue()
    kwh_per_gj = cat.quantities["energy"].to_canonical("GJ")
    out = {}
    for tag, carrier, conversion in _terms(park)[["tag", "carrier", "conversion"]].itertuples(index=False):
        dev, pid = tag.split(".", 1)
        point = park.device(dev).point(pid)
        qty = cat.quantities[point.quantity]
        if conversion == "power":
            if qty.canonical != "kW":
                raise AnningError(f"{tag}: a power point must be an active power, got {point.quantity}")
            out[tag] = qty.to_canonical(point.unit)
            continue
        c = cat.carriers[carrier]
        heat = c.ncv_gj_per_unit if conversion == "fuel" else c.heat_gj_per_unit
        if heat is None or qty.canonical != f"{c.unit}/h":
            raise AnningError(f"{tag}: cannot convert {point.unit} of {carrier} to kW (carriers.yaml needs "
                              f"{'ncv' if conversion == 'fuel' else 'heat'}_gj_per_unit and a flow in {c.unit}/h)")
        out[tag] = qty.to_canonical(point.unit) * heat * kwh_per_gj
    return pd.Series(out, dtype="float64", name="kw_per_unit")


def _directed(kw: pd.DataFrame, terms: pd.DataFrame, value: str) -> pd.DataFrame:
    """Per row of ``kw`` (one column per tag [kW], NaN = no value), each edge's flow in the direction it flows:
    ``ts, src, dst, carrier, <value>``; an edge with a missing point is absent; a zero flow is kept forward."""
    parts = []
    for (src, dst, carrier), rows in terms.groupby(["src", "dst", "carrier"], sort=False):
        block = kw[list(rows["tag"])]
        present = block.notna().all(axis=1)
        fwd = block.clip(lower=0.0).sum(axis=1)[present]
        rev = (-block).clip(lower=0.0).sum(axis=1)[present]
        for a, b, v, keep in ((src, dst, fwd, (fwd > 0) | (rev == 0)), (dst, src, rev, rev > 0)):
            v = v[keep]
            parts.append(pd.DataFrame({"ts": v.index, "src": a, "dst": b, "carrier": carrier, value: v.to_numpy()}))
    if not parts:
        return pd.DataFrame(columns=["ts", *EDGE_COLUMNS, value])
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values("ts", kind="stable", ignore_index=True)


def live_flows(park: Park, latest: Mapping[str, float], *, catalogue: Catalogue | None = None) -> pd.DataFrame:
    """The flows now, from the newest reading of each point (pure).

    Parameters
    ----------
    park : Park
    latest : mapping of str to float
        newest value by point tag ``<device>.<point>`` [the point's unit: kW, Nm3/h, t/h], e.g.
        ``{"GRID.p_kw": 1000.0, "E04-B1.gas_nm3_h": 5000.0}`` (from
        :func:`anning_lib.portal.views.latest_values`); a missing or non-finite value is no reading.
    catalogue : Catalogue, optional
        units and carriers (default: ``data/units.yaml`` and ``data/carriers.yaml``).

    Returns
    -------
    pandas.DataFrame
        :data:`LIVE_COLUMNS`: ``src, dst, carrier, p_kw`` with ``p_kw >= 0`` [kW, thermal for fuel and steam]
        flowing ``src → dst`` (a discharging battery ``bess → SUBSTATION``, export ``SUBSTATION → GRID``). An
        edge with a point missing from ``latest`` is absent (not zero). No loss edges (see :func:`balance`).
    """
    terms = _terms(park)
    factors = kw_per_unit(park, catalogue)
    vals = pd.to_numeric(pd.Series({t: latest[t] for t in terms["tag"] if t in latest}, dtype=object),
                         errors="coerce")
    row = vals.reindex(terms["tag"]).astype("float64").to_frame().T
    kw = row.where(np.isfinite(row)) * factors
    return _directed(kw, terms, "p_kw")[LIVE_COLUMNS]


def aware_bounds(start: object, end: object) -> tuple[pd.Timestamp, pd.Timestamp]:
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s.tzinfo is None or e.tzinfo is None:
        raise ValueError(f"start, end: need time-zone-aware instants, got {start!r}, {end!r}")
    return s, e


def interval_flows(means_kw: pd.DataFrame, park: Park, start: object, end: object, *,
                   enterprise_id: str | None = None, catalogue: Catalogue | None = None) -> pd.DataFrame:
    """Every edge's energy in every quarter-hour of ``[start, end)`` (pure).

    Parameters
    ----------
    means_kw : pandas.DataFrame
        15-minute means [the points' units: kW, Nm3/h, t/h], index the quarter-hour starts (time-zone aware),
        one column per tag of :func:`flow_tags` (a missing column or value is no data), e.g.
        ``read_series(engine, flow_tags(park), start, end, resolution="15min")``.
    park : Park
    start, end : aware pandas.Timestamp
        the half-open interval.
    enterprise_id : str, optional
        only the edges of this enterprise's own devices (default: the whole park).
    catalogue : Catalogue, optional
        as :func:`live_flows`.

    Returns
    -------
    pandas.DataFrame
        :data:`INTERVAL_COLUMNS`: ``ts`` (quarter-hour start), ``src, dst, carrier``, ``e_kwh`` = mean kW ×
        0.25 h >= 0 [kWh]. Electricity counts only in quarter-hours where every point of the electricity
        balance in scope has a value (so the park's totals are those of
        :func:`anning_lib.reports.balance.electricity_balance`); a boiler's fuel and steam only where both
        have one (as :func:`~anning_lib.reports.balance.boiler_balance`).

    References
    ----------
    GB/T 3484-2009 (energy = Σ mean power × time), as :mod:`anning_lib.reports.balance`.
    """
    s, e = aware_bounds(start, end)
    terms = _scoped(park, enterprise_id)
    factors = kw_per_unit(park, catalogue)[terms["tag"]]
    idx = means_kw.index
    window = means_kw.loc[(idx >= s) & (idx < e)].reindex(columns=list(terms["tag"])).astype("float64")
    valid = window.notna()
    for _group, tags in terms.groupby("group", sort=False)["tag"]:
        complete = valid[list(tags)].all(axis=1)
        for tag in tags:
            valid[tag] = complete
    flows = _directed(window.where(valid) * factors, terms, "e_kwh")
    flows["e_kwh"] = flows["e_kwh"] * QUARTER_H
    return flows[INTERVAL_COLUMNS]


def balance(flows: pd.DataFrame, park: Park | None = None) -> pd.DataFrame:
    """Each node's balance: what flows in, what flows out, and ``net = in - out``, per interval (pure).

    Parameters
    ----------
    flows : pandas.DataFrame
        :func:`live_flows` (``p_kw``), :func:`interval_flows` (``ts`` and ``e_kwh``) or period links
        (``e_kwh``, no ``ts``).
    park : Park, optional
        adds the node's ``kind``.

    Returns
    -------
    pandas.DataFrame
        ``[ts,] node, [kind,] in_<u>, out_<u>, net_<u>`` with ``<u>`` ``kw`` [kW] or ``e_kwh`` [kWh]. A sink's net
        is what it uses (an enterprise's consumption), a source's is negative; at ``SUBSTATION`` the net is the
        residual of :func:`anning_lib.reports.balance.electricity_balance` (110 kV losses and metering errors),
        at a boiler its loss; both are 0 once the loss links of :func:`period_sankey` are included.

    References
    ----------
    GB/T 3484-2009 (energy supplied = energy used + losses).
    """
    value = "p_kw" if "p_kw" in flows.columns else "e_kwh"
    u = "kw" if value == "p_kw" else "e_kwh"
    keys = ["ts"] if "ts" in flows.columns else []
    inn = flows.groupby([*keys, "dst"], sort=False)[value].sum().rename_axis([*keys, "node"])
    out = flows.groupby([*keys, "src"], sort=False)[value].sum().rename_axis([*keys, "node"])
    df = pd.concat({f"in_{u}": inn, f"out_{u}": out}, axis=1).fillna(0.0).astype("float64")
    df[f"net_{u}"] = df[f"in_{u}"] - df[f"out_{u}"]
    df = df.reset_index()
    if park is not None:
        kinds = nodes(park).set_index("node")["kind"]
        df.insert(len(keys) + 1, "kind", df["node"].map(kinds))
    return df
