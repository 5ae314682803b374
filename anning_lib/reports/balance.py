"""The park's energy balance over a period: what enters the park's network, what the enterprises use, and the
residual (losses and what no meter sees). Pure functions on 15-minute mean powers and flows; no I/O.

Electricity (signs of ``docs/glossary.md``)
--------------------------------------------
Per quarter-hour, from the 15-minute mean powers [kW] of the points named by :func:`balance_points`::

    supply   = grid import + PV generation (park and enterprises) + storage discharge
    use      = Σ enterprise consumption + storage charge + grid export
    residual = supply - use
    enterprise consumption = main.p_kw + Σ own pv.p_kw + Σ own bess.p_kw

An enterprise's consumption is its gross load without its storage (the glossary's "gross load": the main meter
is the net import, which drops when its own PV produces or its battery discharges). Grid and storage powers are
split by sign per meter and per storage before summing, so one storage charging while another discharges counts
twice, as it should. The PV and storage behind the main meters cancel between supply and use, so the residual
is ``grid + park PV + shared storage - Σ main meters``: the 110 kV transformer losses (``loss_frac`` of the grid
meter in the park model), the metering errors within the meters' accuracy classes, and any consumption on no
main meter. This is the balance of an energy system boundary, "energy supplied = energy used + losses", of
GB/T 3484-2009 (企业能量平衡通则, General principles for enterprise energy balance), with the park's 110 kV
network as the boundary.

Energy is Σ mean × 0.25 h over the quarter-hours of a period (as :mod:`anning_lib.carbon.metered`). Only
*complete* quarter-hours, in which every point of the balance has a value, are counted, so the two sides
always cover the same time; ``coverage_frac`` is their share of the period's quarter-hours.

Heat
----
:func:`boiler_balance`: fuel into each boiler against the steam it raises, both in GJ (fuel by its net calorific
value, steam by its net heat per tonne, ``data/carriers.yaml``); the difference is the boiler's loss and the
ratio its efficiency by the direct (input-output) method of GB/T 10180-2017 (工业锅炉热工性能试验规程, 正平衡法).
:func:`fuel_use` is each enterprise's metered fuel (no park-level gas meter exists, so gas has no residual).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from anning_lib.carbon.metered import QUARTER_H, metered_points
from anning_lib.park.catalogue import Carrier
from anning_lib.park.schema import Park, point_tag
from anning_lib.quality.rules import balance_terms

STEP = pd.Timedelta("15min")
POINT_COLUMNS = ["tag", "term", "enterprise_id", "device_id"]
TERMS = ("grid", "pv", "bess", "main")
BALANCE_COLUMNS = ["grid_import_e_kwh", "pv_e_kwh", "bess_discharge_e_kwh", "supply_e_kwh", "consumption_e_kwh",
                   "bess_charge_e_kwh", "grid_export_e_kwh", "use_e_kwh", "residual_e_kwh", "residual_frac",
                   "coverage_frac"]
SUBMETER_COLUMNS = ["consumption_e_kwh", "submetered_e_kwh", "unmetered_e_kwh", "unmetered_frac", "loss_frac",
                    "coverage_frac"]
BOILER_COLUMNS = ["period", "enterprise_id", "device_id", "fuel", "fuel_amount", "fuel_unit", "fuel_gj", "steam_t",
                  "steam_gj", "loss_gj", "efficiency_frac", "rated_efficiency_frac", "coverage_frac"]
FUEL_COLUMNS = ["period", "enterprise_id", "fuel", "amount", "unit", "e_gj", "coverage_frac"]


# ------------------------------------------------------------------------------------------------ points
def balance_points(park: Park) -> pd.DataFrame:
    """The ``p_kw`` points of the park's electricity balance (pure).

    Returns
    -------
    pandas.DataFrame
        one row per point, in park order, with :data:`POINT_COLUMNS`: ``tag``; ``term``: ``grid`` (grid meter,
        > 0 import), ``pv`` (generation), ``bess`` (storage, > 0 discharge) or ``main`` (an enterprise's main
        meter, > 0 import); ``enterprise_id`` (missing, NaN, for park-level devices); ``device_id``.
    """
    types = {"grid_meter": "grid", "pv": "pv", "bess": "bess", "main_meter": "main"}
    rows = [(point_tag(d.id, "p_kw"), types[d.type], eid, d.id) for eid, d in park.iter_devices()
            if d.type in types and any(p.id == "p_kw" for p in d.points)]
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


# ------------------------------------------------------------------------------------------------ helpers
def _quarters(means: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """Every quarter-hour start of ``[start, end)`` in the time zone of ``means``' index."""
    tz = means.index.tz if isinstance(means.index, pd.DatetimeIndex) and means.index.tz is not None else "UTC"
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s.tzinfo is None or e.tzinfo is None:
        raise ValueError(f"start, end: need time-zone-aware instants, got {start!r}, {end!r}")
    return pd.date_range(s.tz_convert(tz), e.tz_convert(tz), freq=STEP, inclusive="left", name="ts")


def _on_grid(means: pd.DataFrame, tags: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """The columns ``tags`` of ``means`` on the full quarter-hour grid of ``[start, end)`` (missing: NaN)."""
    idx = _quarters(means, start, end)
    return means.reindex(index=idx, columns=tags).astype("float64")


def _per_period(flows: pd.DataFrame, start: pd.Timestamp, freq: str | None) -> pd.DataFrame:
    """Σ of each column over the quarter-hours of each period (NaN where a period has no value)."""
    if freq is None:
        label = pd.DatetimeIndex([pd.Timestamp(start).tz_convert(flows.index.tz)], name="period")
        return pd.DataFrame([flows.sum(min_count=1)], index=label)
    out = flows.resample(freq).sum(min_count=1)
    out.index.name = "period"
    return out


def _coverage(mask: pd.Series, start: pd.Timestamp, freq: str | None) -> pd.Series:
    """Share of each period's quarter-hours where ``mask`` is True [-]."""
    m = mask.astype("float64")
    if freq is None:
        return pd.Series([m.mean() if len(m) else np.nan], index=pd.DatetimeIndex(
            [pd.Timestamp(start).tz_convert(mask.index.tz)], name="period"))
    out = m.resample(freq).mean()
    out.index.name = "period"
    return out


def _split(p_kw: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``(Σ positive parts, Σ negative parts as positive)`` of each column, per row [kW] (NaN kept)."""
    return p_kw.clip(lower=0.0).sum(axis=1, min_count=1), (-p_kw).clip(lower=0.0).sum(axis=1, min_count=1)


def _flows_kw(means: pd.DataFrame, points: pd.DataFrame, start, end) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Park flows and enterprise consumption per quarter-hour [kW] (NaN outside complete quarter-hours), and the
    mask of complete quarter-hours."""
    grid_df = _on_grid(means, list(points["tag"]), start, end)
    complete = grid_df.notna().all(axis=1) if len(points) else pd.Series(False, index=grid_df.index)
    cols = {term: list(points.loc[points["term"] == term, "tag"]) for term in TERMS}
    zero = pd.Series(0.0, index=grid_df.index)
    grid_in, grid_out = _split(grid_df[cols["grid"]]) if cols["grid"] else (zero, zero)
    dis, ch = _split(grid_df[cols["bess"]]) if cols["bess"] else (zero, zero)
    pv = grid_df[cols["pv"]].sum(axis=1) if cols["pv"] else zero
    ents = {}
    for eid, rows in points[points["enterprise_id"].notna()].groupby("enterprise_id", sort=False):
        ents[eid] = grid_df[list(rows["tag"])].sum(axis=1)
    ent = pd.DataFrame(ents, index=grid_df.index)
    park = pd.DataFrame({"grid_import": grid_in, "pv": pv, "bess_discharge": dis,
                         "consumption": ent.sum(axis=1) if len(ents) else zero,
                         "bess_charge": ch, "grid_export": grid_out})
    return park.where(complete), ent.where(complete), complete


# ------------------------------------------------------------------------------------------------ electricity
def electricity_balance(means_kw: pd.DataFrame, points: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                        *, freq: str | None = "D") -> pd.DataFrame:
    """The park's electricity balance per period [kWh] (method: module docstring).

    Parameters
    ----------
    means_kw : pandas.DataFrame
        15-minute mean powers [kW], index the quarter-hour starts (time-zone aware; periods are cut in its time
        zone), one column per tag of ``points`` (a missing column or row is no data), e.g.
        ``read_series(engine, points.tag, start, end, resolution="15min", tz="Asia/Shanghai")``.
    points : pandas.DataFrame
        :func:`balance_points` of the park (or a subset with the same columns).
    start, end : aware pandas.Timestamp
        the half-open interval ``[start, end)``; its quarter-hours are the denominators of ``coverage_frac``.
    freq : str or None
        pandas offset of the periods (``"D"``: local days, ``"MS"``: months); None: one row for the whole
        interval, labelled ``start``.

    Returns
    -------
    pandas.DataFrame
        index ``period`` (period start); columns :data:`BALANCE_COLUMNS`: supply side ``grid_import_e_kwh``,
        ``pv_e_kwh``, ``bess_discharge_e_kwh`` and their sum ``supply_e_kwh``; use side ``consumption_e_kwh``
        (Σ enterprises, :func:`enterprise_consumption`), ``bess_charge_e_kwh``, ``grid_export_e_kwh`` and their
        sum ``use_e_kwh`` [kWh]; ``residual_e_kwh = supply_e_kwh - use_e_kwh`` [kWh]; ``residual_frac =
        residual / supply`` [-]; ``coverage_frac`` complete quarter-hours / quarter-hours of the period [-].
        Energies are NaN in a period without a complete quarter-hour.

    References
    ----------
    GB/T 3484-2009, 企业能量平衡通则 (energy supplied = energy used + losses).
    """
    park, _ent, complete = _flows_kw(means_kw, points, start, end)
    e = _per_period(park * QUARTER_H, start, freq)
    out = pd.DataFrame(index=e.index)
    for name in ("grid_import", "pv", "bess_discharge"):
        out[f"{name}_e_kwh"] = e[name]
    out["supply_e_kwh"] = e[["grid_import", "pv", "bess_discharge"]].sum(axis=1, min_count=3)
    for name in ("consumption", "bess_charge", "grid_export"):
        out[f"{name}_e_kwh"] = e[name]
    out["use_e_kwh"] = e[["consumption", "bess_charge", "grid_export"]].sum(axis=1, min_count=3)
    out["residual_e_kwh"] = out["supply_e_kwh"] - out["use_e_kwh"]
    out["residual_frac"] = out["residual_e_kwh"] / out["supply_e_kwh"].where(out["supply_e_kwh"] != 0)
    out["coverage_frac"] = _coverage(complete, start, freq).reindex(out.index)
    return out[BALANCE_COLUMNS]


def enterprise_consumption(means_kw: pd.DataFrame, points: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp,
                           *, freq: str | None = "D") -> pd.DataFrame:
    """Each enterprise's consumption per period [kWh]: main meter + own PV + own storage (> 0 discharge), over the
    complete quarter-hours of the whole balance, so the columns add up to :func:`electricity_balance`'s
    ``consumption_e_kwh``.

    Parameters
    ----------
    means_kw, points, start, end, freq
        as :func:`electricity_balance`.

    Returns
    -------
    pandas.DataFrame
        index ``period``; one column per enterprise id (park order) [kWh].
    """
    _park, ent, _complete = _flows_kw(means_kw, points, start, end)
    return _per_period(ent * QUARTER_H, start, freq)


def check_balance(balance: pd.DataFrame, total: pd.DataFrame | None = None, *, tol_kwh: float = 1e-6) -> pd.DataFrame:
    """Check a balance table: every row closes (supply = use + residual, each side = the sum of its terms) and,
    given ``total`` (the same balance over the whole interval, one row), the periods add up to it.

    Parameters
    ----------
    balance : pandas.DataFrame
        :func:`electricity_balance` by period.
    total : pandas.DataFrame, optional
        :func:`electricity_balance` of the same interval with ``freq=None``.
    tol_kwh : float
        largest difference still counted as equal, per 1 kWh of supply [kWh/kWh] (rounding of float sums).

    Returns
    -------
    pandas.DataFrame
        one row per check: ``check``, ``difference_e_kwh`` (largest absolute difference found) [kWh], ``ok``.
    """
    b = balance.dropna(subset=["supply_e_kwh"])
    scale = max(1.0, float(b["supply_e_kwh"].abs().max()) if len(b) else 1.0)
    diffs = {
        "supply = use + residual": b["supply_e_kwh"] - b["use_e_kwh"] - b["residual_e_kwh"],
        "supply = grid import + PV + storage discharge":
            b["supply_e_kwh"] - b[["grid_import_e_kwh", "pv_e_kwh", "bess_discharge_e_kwh"]].sum(axis=1),
        "use = consumption + storage charge + grid export":
            b["use_e_kwh"] - b[["consumption_e_kwh", "bess_charge_e_kwh", "grid_export_e_kwh"]].sum(axis=1),
    }
    if total is not None:
        cols = [c for c in BALANCE_COLUMNS if c.endswith("_e_kwh")]
        diffs["periods add up to the total"] = balance[cols].sum() - total[cols].iloc[0]
    rows = []
    for name, d in diffs.items():
        worst = float(d.abs().max()) if len(d) else 0.0
        rows.append({"check": name, "difference_e_kwh": worst, "ok": bool(worst <= tol_kwh * scale)})
    return pd.DataFrame(rows, columns=["check", "difference_e_kwh", "ok"])


def submetering(means_kw: pd.DataFrame, park: Park, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Inside each enterprise: its consumption against the sum of its sub-metered loads over ``[start, end)``.

    Consumption is as in :func:`enterprise_consumption`; the loads are its ``sub_meter``, ``process_line`` and
    ``boiler`` ``p_kw`` (:func:`anning_lib.quality.rules.balance_terms`, the alarm rules' balance). The
    difference is the internal distribution losses (``loss_frac`` of the main meter in the park model: the
    simulator's ``main = Σ loads × (1 + loss_frac) - pv - bess``, ``docs/glossary.md``) and any unmetered load.
    Each enterprise counts its own complete quarter-hours (every one of its points with a value).

    Parameters
    ----------
    means_kw : pandas.DataFrame
        15-minute mean powers [kW] of every tag :func:`balance_terms` names (missing: no data).
    park : Park
    start, end : aware pandas.Timestamp

    Returns
    -------
    pandas.DataFrame
        index ``enterprise_id``; columns :data:`SUBMETER_COLUMNS`: ``consumption_e_kwh``, ``submetered_e_kwh``,
        ``unmetered_e_kwh`` [kWh]; ``unmetered_frac`` = unmetered / sub-metered [-] (comparable with
        ``loss_frac`` [-]); ``coverage_frac`` [-].
    """
    rows = {}
    for e in park.enterprises:
        mains = [d for d in e.devices if d.type == "main_meter"]
        if not mains:
            continue
        cons_tags, load_tags, loss = [], [], []
        for m in mains:
            main, loads, sources, loss_frac = balance_terms(park, m.id)
            cons_tags.append(main)
            load_tags += [t for t in loads if t not in load_tags]
            cons_tags += [t for t in sources if t not in cons_tags]
            loss.append(loss_frac)
        df = _on_grid(means_kw, cons_tags + load_tags, start, end)
        complete = df.notna().all(axis=1)
        cons = float(df.loc[complete, cons_tags].sum().sum() * QUARTER_H)
        sub = float(df.loc[complete, load_tags].sum().sum() * QUARTER_H)
        has = bool(complete.any())
        rows[e.id] = {"consumption_e_kwh": cons if has else np.nan, "submetered_e_kwh": sub if has else np.nan,
                      "unmetered_e_kwh": cons - sub if has else np.nan,
                      "unmetered_frac": (cons - sub) / sub if has and sub else np.nan,
                      "loss_frac": float(np.mean(loss)), "coverage_frac": float(complete.mean()) if len(df) else np.nan}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=SUBMETER_COLUMNS)
    out.index.name = "enterprise_id"
    return out


def submetering_tags(park: Park) -> list[str]:
    """Every tag :func:`submetering` reads (pure)."""
    tags: list[str] = []
    for e in park.enterprises:
        for m in (d for d in e.devices if d.type == "main_meter"):
            main, loads, sources, _loss = balance_terms(park, m.id)
            tags += [t for t in [main, *loads, *sources] if t not in tags]
    return tags


# ------------------------------------------------------------------------------------------------ heat and fuel
def boiler_tags(park: Park) -> list[str]:
    """The ``gas_nm3_h`` and ``steam_t_h`` tags of every boiler :func:`boiler_balance` reads (pure)."""
    return [point_tag(d.id, p) for _e, d in park.iter_devices() if d.type == "boiler"
            for p in ("gas_nm3_h", "steam_t_h") if any(pt.id == p for pt in d.points)]


def boiler_balance(means: pd.DataFrame, park: Park, carriers: Mapping[str, Carrier], start: pd.Timestamp,
                   end: pd.Timestamp, *, freq: str | None = None) -> pd.DataFrame:
    """Fuel in and steam out of every boiler per period, in GJ, its loss and efficiency (method: module docstring).

    Parameters
    ----------
    means : pandas.DataFrame
        15-minute means of the boilers' ``gas_nm3_h`` [Nm3/h] and ``steam_t_h`` [t/h] (:func:`boiler_tags`).
    park : Park
    carriers : mapping of carrier id to Carrier
        ``load_catalogue(data_dir).carriers``: the fuel's ``ncv_gj_per_unit`` [GJ/Nm3] and the steam's
        ``heat_gj_per_unit`` [GJ/t].
    start, end : aware pandas.Timestamp
    freq : str or None
        as :func:`electricity_balance` (default: one row per boiler for the whole interval).

    Returns
    -------
    pandas.DataFrame
        one row per period and boiler, :data:`BOILER_COLUMNS`: ``fuel_amount`` [``fuel_unit``], ``fuel_gj`` =
        amount × NCV, ``steam_t``, ``steam_gj`` = t × net heat per tonne, ``loss_gj`` = fuel_gj - steam_gj [GJ],
        ``efficiency_frac`` = steam_gj / fuel_gj [-] (NaN without fuel), ``rated_efficiency_frac`` from the park
        model [-]; ``coverage_frac`` quarter-hours with both points / quarter-hours of the period [-].

    References
    ----------
    GB/T 10180-2017, 工业锅炉热工性能试验规程 (direct method, 正平衡); GB/T 32150-2015 Table B.1 (NCV).
    """
    steam_gj_per_t = carriers["steam"].heat_gj_per_unit
    rows = []
    for eid, d in park.iter_devices():
        if d.type != "boiler" or not {"gas_nm3_h", "steam_t_h"} <= {p.id for p in d.points}:
            continue
        fuel = carriers[d.p.fuel]
        df = _on_grid(means, [point_tag(d.id, "gas_nm3_h"), point_tag(d.id, "steam_t_h")], start, end)
        complete = df.notna().all(axis=1)
        e = _per_period(df.where(complete, axis=0) * QUARTER_H, start, freq)
        cov = _coverage(complete, start, freq).reindex(e.index)
        for period, (gas, steam) in zip(e.index, e.to_numpy()):
            fuel_gj, steam_gj = gas * fuel.ncv_gj_per_unit, steam * steam_gj_per_t
            rows.append({"period": period, "enterprise_id": eid, "device_id": d.id, "fuel": fuel.id,
                         "fuel_amount": gas, "fuel_unit": fuel.unit, "fuel_gj": fuel_gj, "steam_t": steam,
                         "steam_gj": steam_gj, "loss_gj": fuel_gj - steam_gj,
                         "efficiency_frac": steam_gj / fuel_gj if fuel_gj > 0 else np.nan,
                         "rated_efficiency_frac": d.p.efficiency, "coverage_frac": float(cov[period])})
    return pd.DataFrame(rows, columns=BOILER_COLUMNS)


def fuel_tags(park: Park) -> list[str]:
    """Every tag :func:`fuel_use` reads (pure)."""
    return [t for e in park.enterprises for kind, _i, _u, ts in metered_points(park, e.id) if kind == "fuel"
            for t in ts]


def fuel_use(means: pd.DataFrame, park: Park, carriers: Mapping[str, Carrier], start: pd.Timestamp,
             end: pd.Timestamp, *, freq: str | None = None) -> pd.DataFrame:
    """Each enterprise's metered fuel per period (process lines and boilers,
    :func:`anning_lib.carbon.metered.metered_points`), in its unit and in GJ.

    Parameters
    ----------
    means : pandas.DataFrame
        15-minute mean flows [unit/h] of :func:`fuel_tags`.
    park, carriers, start, end, freq
        as :func:`boiler_balance`.

    Returns
    -------
    pandas.DataFrame
        :data:`FUEL_COLUMNS`: ``period``, ``enterprise_id``, ``fuel``, ``amount`` [``unit``], ``unit``,
        ``e_gj`` = amount × NCV [GJ] (NaN for a fuel without one), ``coverage_frac`` quarter-hours with every one
        of its points / quarter-hours of the period [-].
    """
    rows = []
    for e in park.enterprises:
        for kind, item, unit, tags in metered_points(park, e.id):
            if kind != "fuel":
                continue
            df = _on_grid(means, tags, start, end)
            amount = _per_period(df * QUARTER_H, start, freq).sum(axis=1, min_count=1)
            cov = _coverage(df.notna().all(axis=1), start, freq).reindex(amount.index)
            ncv = carriers[item].ncv_gj_per_unit if item in carriers else None
            for period, a in amount.items():
                rows.append({"period": period, "enterprise_id": e.id, "fuel": item, "amount": a, "unit": unit,
                             "e_gj": a * ncv if ncv is not None else np.nan, "coverage_frac": float(cov[period])})
    return pd.DataFrame(rows, columns=FUEL_COLUMNS)
