"""What the portal's pages show, read through the role and enterprise scope of the user (ARCHITECTURE.md §6).

Every function takes the :class:`~anning_lib.auth.access.Actor` of the page's user and raises
:class:`~anning_lib.errors.AccessError` (naming user and enterprise) for anything it may not see; the dashboards
only lay out what these functions return. Times are shown in the park's time zone (``park.meta.site.timezone``).

==================  ==================================  ==============================  ======================
function            admin, operator, system             enterprise user                 visitor
==================  ==================================  ==============================  ======================
latest_values       every tag                           tags of its own devices         refused
park_snapshot       park totals, every enterprise row   park totals, its own row        park totals, no rows
enterprise_overview any enterprise; peers named         its own; peers "peer 1", ...    refused
devices_of          every device (park-level too)       its own devices                 none (empty frame)
point_history       every tag                           tags of its own devices         refused
==================  ==================================  ==============================  ======================

Park-level devices (grid connection, shared storage, park PV, weather station) are the park operator's: an
enterprise user does not see their points, but the park totals built from them are public figures.

Power and energy (signs of ``docs/glossary.md``)
------------------------------------------------
* ``load_kw`` of an enterprise is its gross consumption, ``main.p_kw + sum(pv.p_kw) + sum(bess.p_kw)`` over its
  own devices (the glossary's balance; the main meter alone is the net import, which drops when its PV
  produces). The park's ``load_kw`` is their sum, so the big screen's rows add up to it; the park grid meter is
  ``grid_import_kw`` (it also carries the park PV, the shared storage and the 110 kV transformer losses).
* Energy is Σ 15-minute mean × hours of the quarter-hour (as :mod:`anning_lib.carbon.metered`); the running
  quarter-hour counts for the time elapsed in it. Today's ``today_co2_t`` is location-based scope 2 of the
  electricity the enterprises bought (Σ main meters, as their monthly accounts, ``docs/carbon.md``) × the newest
  Yunnan location-based grid factor of the factor set; fuels and processes are in the monthly accounts only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, can_see, require_role, require_visible
from anning_lib.carbon.accounting import Activity
from anning_lib.carbon.compute import intensity
from anning_lib.carbon.factors import FactorSet, load_factor_set
from anning_lib.carbon.metered import QUARTER_H, integrate_quarters, metered_activities
from anning_lib.carbon.records import (
    entered_activities,
    load_run,
    month_bounds,
)
from anning_lib.carbon.units import convert
from anning_lib.errors import AnningError, CarbonError, StoreError
from anning_lib.park.schema import Device, Enterprise, Park, point_tag
from anning_lib.store.assets import unknown_tags_message
from anning_lib.store.schema import TABLES
from anning_lib.store.timeseries import MAX_ROLLUP_QUALITY, read_series, refresh_rollups
from anning_lib.store.validate import instant

STALE_AFTER_S = 900.0
"""A reading older than this is not used by :func:`park_snapshot` (it is named in ``missing_tags``) [s]."""
REFRESH_S = 3600.0
""":func:`park_snapshot` refreshes the 15-minute rollups of its energy tags over this last stretch [s]."""
GRID_REGION = "yunnan"
"""Grid region of the park's location-based electricity factor (``data/emission_factors/grid.csv``)."""
ENERGY_CARRIER_COLUMNS = ["carrier", "amount", "unit", "e_gj"]
PEER_COLUMNS = ["enterprise_id", "name", "is_self", "co2_t_per_t", "co2_t_per_10k_cny", "co2_t", "production_t"]


# ------------------------------------------------------------------------------------------------ helpers
def _tz(park: Park) -> str:
    return park.meta.site.timezone


def _now(now: object) -> pd.Timestamp:
    return instant(now, "now") if now is not None else pd.Timestamp.now(tz="UTC")


def _owners(park: Park) -> dict[str, str | None]:
    """Point tag -> id of the enterprise owning its device (None: park-level) (pure)."""
    return {point_tag(d.id, p.id): eid for eid, d, p in park.iter_points()}


def _check_tags(park: Park, actor: Actor, tags: Sequence[str]) -> None:
    """StoreError for a tag not in the park model, AccessError for one the actor may not see."""
    owners = _owners(park)
    if unknown := [t for t in tags if t not in owners]:
        raise StoreError(unknown_tags_message(unknown))
    for t in tags:
        require_visible(actor, f"point {t}", owners[t])


def _enterprise(park: Park, enterprise_id: str) -> Enterprise:
    try:
        return park.enterprise(enterprise_id)
    except KeyError:
        raise StoreError(f"enterprise_id: unknown enterprise {enterprise_id!r}") from None


def _p_tags(devices: Sequence[Device], *types: str) -> list[str]:
    """``p_kw`` tags of the devices of the given types (pure)."""
    return [point_tag(d.id, "p_kw") for d in devices if d.type in types and any(p.id == "p_kw" for p in d.points)]


def _total(values: dict[str, float], tags: Sequence[str]) -> float | None:
    """Sum of the values present among ``tags``; None when none is present (pure)."""
    have = [values[t] for t in tags if t in values]
    return float(sum(have)) if have else None


@lru_cache(maxsize=4)
def _factor_set(version: str | None = None) -> FactorSet:
    return load_factor_set(version=version)


# --------------------------------------------------------------------------------------------- latest values
def latest_values(engine: Engine, park: Park, actor: Actor, tags: str | Sequence[str],
                  max_age_s: float | None = None, now: object = None, *,
                  max_quality: int | None = None) -> pd.DataFrame:
    """The newest stored measurement of each tag, in one query.

    Parameters
    ----------
    tags : str or sequence of str
        point tags ``DEV.point``, each of a device the actor sees (a few hundred: one indexed look-up each).
    max_age_s : float, optional
        leave out readings older than ``now - max_age_s`` [s].
    now : aware timestamp, optional
        only readings at or before it count (a replay, a test); default the wall clock, with no upper bound.
    max_quality : int, optional
        only readings of this quality code or better (0 good, 1 uncertain, 2 bad, 3 stale).

    Returns
    -------
    pandas.DataFrame
        one row per requested tag, in order: ``tag``, ``ts`` (park time zone; NaT without a reading),
        ``value`` [the point's unit; NaN without a reading], ``quality`` (Int64; <NA> without a reading).

    Raises
    ------
    AccessError
        for a tag the actor may not see (StoreError for a tag not in the park model).
    """
    tags = [tags] if isinstance(tags, str) else list(dict.fromkeys(tags))
    _check_tags(park, actor, tags)
    return _latest(engine, tags, _tz(park), max_age_s, now, max_quality)


def _latest(engine: Engine, tags: list[str], tz: str, max_age_s: float | None, now: object,
            max_quality: int | None) -> pd.DataFrame:
    """:func:`latest_values` without the scope check: ``measurement`` joined on its newest instant per point,
    found by a correlated ``ORDER BY ts DESC LIMIT 1`` on the primary key ``(point_id, ts)``."""
    m, pt = TABLES["measurement"], TABLES["point"]
    newer = m.alias("newer")
    conds = [newer.c.point_id == pt.c.id]
    if now is not None:
        conds.append(newer.c.ts <= _now(now).to_pydatetime())
    if max_age_s is not None:
        if not max_age_s >= 0:
            raise StoreError(f"max_age_s: must be a number >= 0, got {max_age_s!r}")
        conds.append(newer.c.ts >= (_now(now) - pd.Timedelta(seconds=max_age_s)).to_pydatetime())
    if max_quality is not None:
        conds.append(newer.c.quality <= max_quality)
    newest = sa.select(newer.c.ts).where(*conds).order_by(newer.c.ts.desc()).limit(1).scalar_subquery()
    q = (sa.select(pt.c.tag, m.c.ts, m.c.value, m.c.quality).join_from(pt, m, m.c.point_id == pt.c.id)
         .where(pt.c.tag.in_(tags), m.c.ts == newest))
    with engine.connect() as conn:
        rows = {r.tag: r for r in conn.execute(q)} if tags else {}
    got = [rows.get(t) for t in tags]
    return pd.DataFrame({"tag": pd.Series(tags, dtype=object),
                         "ts": pd.to_datetime([r.ts if r else None for r in got], utc=True).tz_convert(tz),
                         "value": np.array([r.value if r else np.nan for r in got], dtype="float64"),
                         "quality": pd.array([r.quality if r else None for r in got], dtype="Int64")})


# ---------------------------------------------------------------------------------------------- park snapshot
def park_snapshot(engine: Engine, park: Park, actor: Actor, now: object = None, *, fs: FactorSet | None = None,
                  region: str = GRID_REGION, refresh: bool = True) -> dict:
    """The big screen's figures: power now and today's electricity and emissions (method: module docstring).

    Readings are the newest of good or uncertain quality within :data:`STALE_AFTER_S` of ``now``; a missing one
    is left out of its sum and named in ``missing_tags``. With ``refresh`` the rollups of the last
    :data:`REFRESH_S` are recomputed first (idempotent), so today's energy includes the running quarter-hour.

    Returns
    -------
    dict
        ``now`` and ``as_of`` (newest reading used; None without any) in the park time zone;
        ``load_kw`` (Σ enterprise gross consumption) [kW], ``pv_kw`` (all PV) [kW], ``grid_import_kw`` (park grid
        meter, > 0 import) [kW], ``bess_p_kw`` (all storage, > 0 discharge) [kW], ``bess_soc_frac`` (weighted by
        each storage's ``energy_kwh``) [-], ``bess_stored_e_kwh`` [kWh] (each None without readings);
        ``today_start`` (local midnight), ``today_e_kwh`` (consumed) and ``today_grid_e_kwh`` (bought, Σ main
        meters) [kWh], ``today_co2_t`` [tCO2], ``today_co2_t_per_mwh`` (per MWh consumed) [tCO2/MWh],
        ``today_coverage_frac`` (share of today's quarter-hours with every main meter) [-],
        ``grid_factor_t_per_mwh`` [tCO2/MWh] and ``grid_factor_source``; ``enterprises``: list of
        ``{enterprise_id, name, sector, p_kw (main meter, net import), load_kw}`` the actor may see (all for
        park-wide roles, its own for an enterprise user, none for a visitor); ``missing_tags`` (visible ones).
    """
    require_role(actor, "page.overview")
    now_utc, tz = _now(now), _tz(park)
    devices = [d for _e, d in park.iter_devices()]
    mains = {e.id: _p_tags(e.devices, "main_meter") for e in park.enterprises}
    behind = {e.id: _p_tags(e.devices, "pv", "bess") for e in park.enterprises}
    pv, bess = _p_tags(devices, "pv"), [d for d in devices if d.type == "bess"]
    soc = {point_tag(d.id, "soc_frac"): d.p.energy_kwh for d in bess if any(p.id == "soc_frac" for p in d.points)}
    grid = _p_tags(park.park_devices, "grid_meter")
    tags = list(dict.fromkeys([t for ts in mains.values() for t in ts] + pv + _p_tags(bess, "bess") + list(soc)
                              + grid))
    latest = _latest(engine, tags, tz, STALE_AFTER_S, now_utc, MAX_ROLLUP_QUALITY).dropna(subset=["value"])
    val = dict(zip(latest["tag"], latest["value"]))
    rows = []
    for e in park.enterprises:
        main = _total(val, mains[e.id]) if all(t in val for t in mains[e.id]) else None
        load = None if main is None else main + sum(val.get(t, 0.0) for t in behind[e.id])
        rows.append({"enterprise_id": e.id, "name": e.name, "sector": e.sector, "p_kw": main, "load_kw": load})
    loads = [r["load_kw"] for r in rows if r["load_kw"] is not None]
    have_soc = {t: w for t, w in soc.items() if t in val}
    stored = sum(val[t] * w for t, w in have_soc.items()) if have_soc else None
    out = {"now": now_utc.tz_convert(tz), "as_of": latest["ts"].max() if len(latest) else None,
           "load_kw": float(sum(loads)) if loads else None, "pv_kw": _total(val, pv),
           "grid_import_kw": _total(val, grid), "bess_p_kw": _total(val, _p_tags(bess, "bess")),
           "bess_soc_frac": stored / sum(have_soc.values()) if have_soc else None, "bess_stored_e_kwh": stored}
    out.update(_today(engine, park, now_utc, mains, behind, fs or _factor_set(), region, refresh))
    out["enterprises"] = [r for r in rows if can_see(actor, r["enterprise_id"])]
    owners = _owners(park)
    out["missing_tags"] = [t for t in tags if t not in val and can_see(actor, owners[t])]
    return out


def _today(engine: Engine, park: Park, now: pd.Timestamp, mains: dict[str, list[str]],
           behind: dict[str, list[str]], fs: FactorSet, region: str, refresh: bool) -> dict:
    """Today's (local day) electricity bought and consumed [kWh] and its location-based emissions [tCO2]."""
    start = now.tz_convert(_tz(park)).normalize().tz_convert("UTC")
    bought = [t for ts in mains.values() for t in ts]
    own = [t for ts in behind.values() for t in ts]
    if refresh:
        refresh_rollups(engine, max(start, now - pd.Timedelta(seconds=REFRESH_S)), now, tags=bought + own)
    means = read_series(engine, bought + own, start, now, resolution="15min", tz="UTC")
    begins = means.index.to_series()
    hours = ((begins + pd.Timedelta("15min")).clip(upper=now) - begins).dt.total_seconds() / 3600.0
    grid_e = float(means[bought].sum(axis=1).mul(hours).sum())
    e_kwh = grid_e + float(means[own].sum(axis=1).mul(hours).sum()) if own else grid_e
    elapsed = int(np.ceil((now - start) / pd.Timedelta("15min")))
    covered = int(means[bought].notna().all(axis=1).sum()) if bought else 0
    f = fs.grid(region, fs.latest_grid_year(region, "location"), "location")
    per_mwh = f.value * convert(1.0, "MWh", f.per_unit, fits="electricity")
    co2 = grid_e / 1000.0 * per_mwh
    return {"today_start": start.tz_convert(_tz(park)), "today_e_kwh": e_kwh, "today_grid_e_kwh": grid_e,
            "today_co2_t": co2, "today_co2_t_per_mwh": co2 / (e_kwh / 1000.0) if e_kwh > 0 else None,
            "today_coverage_frac": covered / elapsed if elapsed else 0.0, "grid_factor_t_per_mwh": per_mwh,
            "grid_factor_source": f.citation}


# ----------------------------------------------------------------------------------------- enterprise overview
def enterprise_overview(engine: Engine, park: Park, actor: Actor, enterprise_id: str, month: str) -> dict:
    """One enterprise's month: energy by carrier, emissions by scope, daily electricity and its sector peers.

    Emissions from the month's stored account (newest factor set; ``anning carbon compute``); energy from its
    lines or, for a month not yet accounted, from the meters (:func:`metered_activities`, reading the month's
    rollups). Peers: the enterprises of the same sector with an account of the month in that factor set; an
    enterprise user sees other peers' intensities only, as ``peer 1``, ``peer 2``... in order of intensity.

    Returns
    -------
    dict
        ``enterprise_id, name, sector, month``; ``factor_version`` (None without a stored account);
        ``energy_source`` ("account", "meters" or None); ``energy``: DataFrame ``carrier`` (``electricity`` =
        bought net, ``pv_self_use``, fuel or heat keys), ``amount`` [``unit``], ``unit``, ``e_gj`` [GJ; NaN
        if not convertible]; ``emissions``: None or dict ``total_co2_t`` (scope 1 + location-based scope 2),
        ``scope1_co2_t``, ``scope2_location_co2_t``, ``scope2_market_co2_t``, ``scope3_co2_t``, ``computed_at``;
        ``daily``: :func:`daily_electricity`; ``peers``: DataFrame with :data:`PEER_COLUMNS`
        (``co2_t_per_t`` per tonne of product [tCO2/t], ``co2_t_per_10k_cny`` [tCO2/10^4 CNY]).

    Raises
    ------
    AccessError
        for a visitor, or an enterprise user asking for another enterprise; StoreError for an unknown
        enterprise; CarbonError for a malformed month.
    """
    require_visible(actor, "the enterprise overview", enterprise_id)
    ent = _enterprise(park, enterprise_id)
    start, end = month_bounds(month, _tz(park))
    stored = load_run(engine, enterprise_id, start, end)
    if stored is not None:
        run, lines = stored
        version, source, emissions = run["factor_version"], "account", _scopes(run, lines)
        energy = energy_table(energy_lines(lines), version)
    else:
        version, emissions = None, None
        try:                                   # refreshes the month's rollups
            acts = metered_activities(engine, park, enterprise_id, start, end, _tz(park), refresh=False)[0]
        except CarbonError:                    # no metered data in the month
            acts = []
        source = "meters" if acts else None
        energy = energy_table([(a.kind if a.kind == "pv_self_use" else a.item, a.amount, a.unit) for a in acts
                                if a.kind in ("electricity", "pv_self_use", "fuel")], None)
    peers = _peers(engine, park, actor, ent, start, end, version) if version else pd.DataFrame(columns=PEER_COLUMNS)
    return {"enterprise_id": ent.id, "name": ent.name, "sector": ent.sector, "month": month,
            "factor_version": version, "energy_source": source, "energy": energy, "emissions": emissions,
            "daily": daily_electricity(engine, park, actor, enterprise_id, month), "peers": peers}


def _scopes(run: dict, lines: pd.DataFrame) -> dict:
    """Emissions by scope of a stored account [tCO2] (pure)."""
    by = lines[lines["scope"] != "memo"].groupby("scope")["co2_t"].sum()
    return {"total_co2_t": float(run["total_co2_t"]),
            **{f"{s}_co2_t": float(by.get(s, 0.0)) for s in ("scope1", "scope2_location", "scope2_market", "scope3")},
            "computed_at": pd.Timestamp(run["computed_at"])}


def energy_lines(lines: pd.DataFrame) -> list[tuple[str, float, str]]:
    """``(carrier, amount, unit)`` of the energy used by a stored account's lines, each counted once (pure):
    electricity and heat from location-based scope 2, fuels from scope-1 combustion, PV from its memo line."""
    keep = (((lines["scope"] == "scope2_location") & lines["category"].isin(["electricity", "heat"]))
            | ((lines["scope"] == "scope1") & (lines["category"] == "combustion"))
            | ((lines["scope"] == "memo") & (lines["category"] == "pv_self_use")))
    return [(r.category if r.category == "pv_self_use" else r.item, float(r.activity_amount), r.activity_unit)
            for r in lines[keep].itertuples()]


def energy_table(records: list[tuple[str, float, str]], version: str | None) -> pd.DataFrame:
    """Energy by carrier: amounts summed per carrier and unit, and in GJ (fuels by their NCV)."""
    df = pd.DataFrame(records, columns=["carrier", "amount", "unit"])
    df = df.groupby(["carrier", "unit"], as_index=False, sort=True)["amount"].sum()
    try:
        fs = _factor_set(version)
    except AnningError:  # a factor version no longer in the files: no NCVs
        fs = None
    df["e_gj"] = pd.Series([_to_gj(r.carrier, r.amount, r.unit, fs) for r in df.itertuples()], dtype="float64")
    return df[ENERGY_CARRIER_COLUMNS]


def _to_gj(carrier: str, amount: float, unit: str, fs: FactorSet | None) -> float:
    """An amount of energy [GJ]: an energy unit converted, a fuel by its NCV; NaN if neither fits (pure)."""
    try:
        return convert(amount, unit, "GJ", fits=carrier)
    except CarbonError:
        pass
    try:
        f = fs.fuel(carrier) if fs is not None else None
        return f.to_basis(amount, unit) * f.ncv_gj_per_unit if f is not None else np.nan
    except CarbonError:
        return np.nan


def daily_electricity(engine: Engine, park: Park, actor: Actor, enterprise_id: str, month: str) -> pd.DataFrame:
    """Electricity of an enterprise per local day of a month, from the stored 15-minute rollups.

    Returns
    -------
    pandas.DataFrame
        index ``date`` (every local midnight of the month, park time zone); ``e_kwh`` consumed (= ``grid_e_kwh``
        + ``pv_e_kwh`` + ``bess_e_kwh``; NaN without main-meter data), ``grid_e_kwh`` bought net at the main
        meter, ``pv_e_kwh`` own PV, ``bess_e_kwh`` own storage (> 0 net discharge) [kWh];
        ``coverage_frac`` quarter-hours with every main meter / quarter-hours of the day [-].
    """
    require_visible(actor, "the electricity", enterprise_id)
    ent, tz = _enterprise(park, enterprise_id), _tz(park)
    start, end = month_bounds(month, tz)
    cols = {"grid_e_kwh": _p_tags(ent.devices, "main_meter"), "pv_e_kwh": _p_tags(ent.devices, "pv"),
            "bess_e_kwh": _p_tags(ent.devices, "bess")}
    means = read_series(engine, [t for ts in cols.values() for t in ts], start, end, resolution="15min", tz=tz)
    naive = pd.date_range(*(t.tz_convert(tz).tz_localize(None) for t in (start, end)), freq="D", inclusive="left")
    days = naive.tz_localize(tz).rename("date")
    key = means.index.normalize()
    out = pd.DataFrame(index=days)
    for name, tags in cols.items():
        e = means[tags].sum(axis=1, min_count=1).mul(QUARTER_H).groupby(key).sum(min_count=1)
        out[name] = e.reindex(days) if tags else 0.0
    out["e_kwh"] = out["grid_e_kwh"] + out["pv_e_kwh"].fillna(0.0) + out["bess_e_kwh"].fillna(0.0)
    full = means[cols["grid_e_kwh"]].notna().all(axis=1).groupby(key).sum()
    quarters = ((naive + pd.Timedelta("1D")).tz_localize(tz) - days) / pd.Timedelta("15min")
    out["coverage_frac"] = full.reindex(days).fillna(0).to_numpy() / np.asarray(quarters, dtype="float64")
    return out[["e_kwh", "grid_e_kwh", "pv_e_kwh", "bess_e_kwh", "coverage_frac"]]


def _production(engine: Engine, ent: Enterprise, start: pd.Timestamp, end: pd.Timestamp, tz: str) -> list[Activity]:
    """Production [t] metered on the product lines (stored rollups) plus entered production and output value."""
    tags = [point_tag(d.id, "production_t_h") for d in ent.product_lines()]
    acts = [a for a in entered_activities(engine, ent.id, start, end, tz) if a.kind in ("production", "output_value")]
    if tags:
        amount, _n = integrate_quarters(read_series(engine, tags, start, end, resolution="15min", tz="UTC"))
        acts.append(Activity("production", "product", amount, "t", "metered"))
    return acts


def _peers(engine: Engine, park: Park, actor: Actor, ent: Enterprise, start: pd.Timestamp, end: pd.Timestamp,
           version: str) -> pd.DataFrame:
    """The sector comparison of :func:`enterprise_overview` (peers the actor may not see are anonymous)."""
    sector, run = [e for e in park.enterprises if e.sector == ent.sector], TABLES["carbon_run"]
    q = sa.select(run.c.enterprise_id, run.c.total_co2_t).where(      # the stored totals of the month [tCO2]
        run.c.enterprise_id.in_([e.id for e in sector]), run.c.period_start == start.to_pydatetime(),
        run.c.period_end == end.to_pydatetime(), run.c.factor_version == version)
    with engine.connect() as conn:
        totals = {r.enterprise_id: float(r.total_co2_t) for r in conn.execute(q)}
    rows = []
    for e in sector:
        if e.id not in totals:
            continue
        acts = _production(engine, e, start, end, _tz(park))
        ratio = intensity(acts, totals[e.id])
        rows.append({"enterprise_id": e.id, "name": e.name, "is_self": e.id == ent.id,
                     "co2_t_per_t": ratio["co2_t_per_t"], "co2_t_per_10k_cny": ratio["co2_t_per_10k_cny"],
                     "co2_t": totals[e.id], "production_t": ratio["production_t"]})
    rows.sort(key=lambda r: (r["co2_t_per_t"] is None, r["co2_t_per_t"] or 0.0, r["enterprise_id"]))
    hidden = 0
    for r in rows:
        if not r["is_self"] and not can_see(actor, r["enterprise_id"]):
            hidden += 1
            r.update(enterprise_id=None, name=f"peer {hidden}", co2_t=None, production_t=None)
    return pd.DataFrame(rows, columns=PEER_COLUMNS).astype(
        {c: "float64" for c in ("co2_t_per_t", "co2_t_per_10k_cny", "co2_t", "production_t")})


# ------------------------------------------------------------------------------------------ devices and points
def devices_of(park: Park, actor: Actor, enterprise_id: str | None = None) -> pd.DataFrame:
    """The devices the actor may see: of one enterprise, or (``enterprise_id`` None) all it may see.

    Returns
    -------
    pandas.DataFrame
        columns ``device_id, name, type, enterprise_id`` (missing, ``isna``, for park-level), ``tags`` (list of
        the device's point tags); park-level devices first, then the enterprises in park order. Empty for a visitor.

    Raises
    ------
    AccessError
        for an enterprise the actor may not see; StoreError for an unknown enterprise.
    """
    if enterprise_id is not None:
        require_visible(actor, "the devices", enterprise_id)
        pairs = [(enterprise_id, d) for d in _enterprise(park, enterprise_id).devices]
    else:
        pairs = [(eid, d) for eid, d in park.iter_devices() if can_see(actor, eid)]
    rows = [{"device_id": d.id, "name": d.name, "type": d.type, "enterprise_id": eid,
             "tags": [point_tag(d.id, p.id) for p in d.points]} for eid, d in pairs]
    return pd.DataFrame(rows, columns=["device_id", "name", "type", "enterprise_id", "tags"])


def point_history(engine: Engine, park: Park, actor: Actor, tag: str, start: object, end: object,
                  max_points: int = 2000) -> pd.Series:
    """A point's stored readings over ``[start, end)``, min-max downsampled (:func:`minmax_indices`) when longer
    than ``max_points``.

    Returns
    -------
    pandas.Series
        named ``tag``, index ``ts`` (park time zone), values in the point's unit (every quality; NaN readings
        dropped); ``attrs``: ``unit``, ``n_raw`` (readings before downsampling), ``downsampled`` (bool).

    Raises
    ------
    AccessError
        unless the actor sees the tag's device (park-level devices: admin, operator, system only);
        StoreError for an unknown tag, naive times or ``max_points`` < 4.
    """
    _check_tags(park, actor, [tag])
    if not isinstance(max_points, int) or max_points < 4:
        raise StoreError(f"max_points: must be an integer >= 4, got {max_points!r}")
    s = read_series(engine, [tag], start, end, tz=_tz(park))[tag].dropna()
    n = len(s)
    if n > max_points:
        s = s.iloc[minmax_indices(s.to_numpy(), max_points)]
    device, point = tag.split(".", 1)
    s = s.rename(tag)
    s.attrs = {"unit": park.device(device).point(point).unit, "n_raw": n, "downsampled": n > max_points}
    return s


def minmax_indices(y: np.ndarray, max_points: int) -> np.ndarray:
    """Positions of at most ``max_points`` samples of ``y`` that keep its shape for display (pure numpy).

    The first and last sample, and the minimum and maximum of each of ``(max_points - 2) // 2`` buckets of equal
    sample count, in time order: every peak survives, the global extremes always. A min-max (M4-style) reduction
    draws the raw line's envelope at one bucket per pixel column [1]_. LTTB (holoviews' default) may drop an
    extreme; holoviews' ``minmax`` needs the compiled ``tsdownsample`` package (not installed) and HoloViews
    elements. This is a vectorised reshape: about 10 ms for a year of minutes.

    Parameters
    ----------
    y : ndarray
        values in time order [any unit]; NaN never chosen unless a whole bucket is NaN.
    max_points : int
        at most this many positions (>= 4).

    Returns
    -------
    ndarray of int
        sorted unique positions into ``y`` (all when ``len(y) <= max_points``).

    References
    ----------
    .. [1] U. Jugel, Z. Jerzak, G. Hackenbroich, V. Markl, "M4: A Visualization-Oriented Time Series Data
       Aggregation", PVLDB 7(10), 2014.
    """
    y = np.asarray(y, dtype="float64")
    n = y.size
    if n <= max_points:
        return np.arange(n)
    if max_points < 4:
        raise StoreError(f"max_points: must be >= 4, got {max_points!r}")
    body, buckets = y[1:-1], (max_points - 2) // 2
    k = -(-body.size // buckets)            # samples per bucket (ceil)
    nb = -(-body.size // k)                 # buckets used (<= buckets); padding < k
    pad = nb * k - body.size
    lo = np.concatenate([np.where(np.isnan(body), np.inf, body), np.full(pad, np.inf)]).reshape(nb, k)
    hi = np.concatenate([np.where(np.isnan(body), -np.inf, body), np.full(pad, -np.inf)]).reshape(nb, k)
    first = np.arange(nb) * k + 1
    return np.unique(np.concatenate([[0], first + lo.argmin(axis=1), first + hi.argmax(axis=1), [n - 1]]))
