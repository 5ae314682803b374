"""What the dispatch & VPP and the carbon & assets pages read and do, scoped by the logged-in user.

Thin, testable data access for ``dashboards/dispatch.py`` and ``dashboards/carbon.py`` on top of the library
(:mod:`anning_lib.dispatch`, :mod:`anning_lib.carbon`); every function takes the :class:`Actor` and checks it
here, not only in the page (ARCHITECTURE.md §6):

- dispatch (operators, admins, the system): the newest schedule of each site, a schedule's plan as a frame, the
  storages' measured power and state of charge, recent setpoint commands, the park's flexible resources, and
  :func:`approve_schedule` (``dispatch.approve``, audited). Nothing here writes a setpoint: execution stays
  with the control loop (:mod:`anning_lib.dispatch.mpc`, :mod:`anning_lib.dispatch.executor`).
- carbon (park-wide roles for any enterprise or the park; an enterprise user only its own enterprise): the
  months with stored accounts, a month's totals by scope and its lines with their factors and sources, and the
  allowance position of a year (:func:`anning_lib.carbon.ledger.position`).

Signs and units as in docs/glossary.md: storage ``p_kw > 0`` discharges; emissions in t CO2.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role, require_visible, scope_filter
from anning_lib.auth.audit import audit
from anning_lib.errors import CarbonError, DispatchError
from anning_lib.store.schema import TABLES

TZ = "Asia/Shanghai"
PARK = "park"
"""Site name of the park's 110 kV connection in ``dispatch_schedule.plan["site"]``."""

# ============================================================================================== dispatch
READ_DISPATCH = "page.dispatch"
"""The action that lets a role read schedules, commands and flexibility (operators, admins, the system)."""
APPROVABLE = ("draft", "advisory")
"""Schedule statuses an operator may approve: a plan nobody acted on yet (``executed`` ones were sent by the
control loop, ``approved`` ones are done)."""
APPROVED = "approved"
SCOPES = ("scope1", "scope2_location", "scope2_market", "scope3")


def _local(col: pd.Series | pd.Index, tz: str = TZ):
    """Stored instants (UTC, aware or naive) in local time."""
    s = pd.to_datetime(col, utc=True)
    return s.tz_convert(tz) if isinstance(s, pd.DatetimeIndex) else s.dt.tz_convert(tz)


def _site_expr():
    return TABLES["dispatch_schedule"].c.plan["site"].as_string()


def latest_schedules(engine: Engine, actor: Actor, *, since_days: float = 7.0,
                     now: dt.datetime | None = None) -> pd.DataFrame:
    """The newest schedule of each site created in the last ``since_days`` days.

    Returns
    -------
    pandas.DataFrame
        One row per site (park first, then enterprises by id): ``id, site, created_at`` (local),
        ``status, strategy, objective_cny`` [CNY], ``savings_cny`` [CNY] (against no storage over the horizon),
        ``horizon_start, horizon_end`` (local), ``approved_by`` (user name or None), ``approved_at`` (local).

    Raises
    ------
    AccessError
        unless ``actor`` may read dispatch data (:data:`READ_DISPATCH`).
    """
    require_role(actor, READ_DISPATCH)
    s, users = TABLES["dispatch_schedule"], TABLES["app_user"]
    since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=since_days)
    site = _site_expr()
    newest = (sa.select(sa.func.max(s.c.id).label("id")).where(s.c.created_at >= since)
              .group_by(site).subquery())
    q = (sa.select(s.c.id, site.label("site"), s.c.created_at, s.c.status, s.c.strategy, s.c.objective_cny,
                   s.c.plan["savings_cny"].as_float().label("savings_cny"), s.c.horizon_start, s.c.horizon_end,
                   users.c.username.label("approved_by"), s.c.approved_at)
         .join(newest, newest.c.id == s.c.id).outerjoin(users, users.c.id == s.c.approved_by))
    with engine.connect() as conn:
        df = pd.DataFrame([tuple(r) for r in conn.execute(q)],
                          columns=["id", "site", "created_at", "status", "strategy", "objective_cny", "savings_cny",
                                   "horizon_start", "horizon_end", "approved_by", "approved_at"])
    for col in ("created_at", "horizon_start", "horizon_end", "approved_at"):
        df[col] = _local(df[col])
    df["objective_cny"] = df["objective_cny"].astype(float)
    df["savings_cny"] = df["savings_cny"].astype(float)
    order = df["site"].map(lambda x: (x != PARK, str(x)))
    return df.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(drop=True)


def load_schedule(engine: Engine, actor: Actor, schedule_id: int) -> dict:
    """One ``dispatch_schedule`` row (with its ``plan`` JSON); DispatchError naming the id if there is none."""
    require_role(actor, READ_DISPATCH)
    s = TABLES["dispatch_schedule"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(s).where(s.c.id == schedule_id)).first()
    if row is None:
        raise DispatchError(f"schedule_id: no dispatch schedule {schedule_id!r}")
    return dict(row._mapping)


def plan_frame(plan: dict, tz: str = TZ) -> pd.DataFrame:
    """A stored plan (:meth:`anning_lib.dispatch.schedule.Schedule.to_dict` plus ``site``) per step (pure).

    Returns
    -------
    pandas.DataFrame
        Index: step start (local time); per storage ``<id>.p_kw`` = discharge - charge (> 0 discharges) [kW]
        and ``<id>.soc_frac`` at the end of the step [-]; ``grid_import_kw`` [kW]. Empty without steps.
    """
    rows, idx = [], []
    for step in (plan or {}).get("schedule", []):
        row = {"grid_import_kw": float(step.get("grid_import_kw", np.nan))}
        for dev, v in step.get("storage", {}).items():
            row[f"{dev}.p_kw"] = float(v["discharge_kw"]) - float(v["charge_kw"])
            row[f"{dev}.soc_frac"] = float(v["soc_frac"])
        rows.append(row)
        idx.append(pd.Timestamp(step["start"]))
    index = pd.DatetimeIndex(idx, name="ts")
    if len(index):
        index = index.tz_convert(tz)
    return pd.DataFrame(rows, index=index)


def plan_storages(plan: dict) -> list[str]:
    """The storage ids a plan sets (from its first step)."""
    steps = (plan or {}).get("schedule") or [{}]
    return list(steps[0].get("storage", {}))


def storage_actuals(engine: Engine, actor: Actor, storages: list[str], start, end, *, tz: str = TZ,
                    max_points: int = 3000) -> pd.DataFrame:
    """Measured ``<id>.p_kw`` [kW] and ``<id>.soc_frac`` [-] of the storages over ``[start, end)``, local time.

    Raw readings (the live gateway writes every few seconds); when there are more than ``max_points`` stamps
    they are averaged into equal buckets first, so a page never ships a day of 1-second data.
    """
    require_role(actor, READ_DISPATCH)
    from anning_lib.store.timeseries import read_series

    tags = [f"{d}.{p}" for d in storages for p in ("p_kw", "soc_frac")]
    wide = read_series(engine, tags, start, end, tz=tz)
    if len(wide) > max_points:
        span = (wide.index[-1] - wide.index[0]) / max_points
        step = pd.Timedelta(seconds=max(1, int(np.ceil(span.total_seconds()))))
        wide = wide.resample(step).mean().dropna(how="all")
    return wide


def recent_commands(engine: Engine, actor: Actor, *, devices: list[str] | None = None, limit: int = 50,
                    tz: str = TZ) -> pd.DataFrame:
    """The newest ``dispatch_command`` rows: ``id, schedule_id, device_id, due_at, issued_at`` (local),
    ``setpoint_p_kw`` [kW] (> 0 discharges), ``mode`` (auto/advisory), ``status``, ``result``, ``issued_by``."""
    require_role(actor, READ_DISPATCH)
    c, users = TABLES["dispatch_command"], TABLES["app_user"]
    q = (sa.select(c.c.id, c.c.schedule_id, c.c.device_id, c.c.due_at, c.c.setpoint_p_kw, c.c.mode, c.c.status,
                   c.c.result, c.c.issued_at, users.c.username.label("issued_by"))
         .outerjoin(users, users.c.id == c.c.issued_by).order_by(c.c.id.desc()).limit(int(limit)))
    if devices is not None:
        q = q.where(c.c.device_id.in_(list(devices)))
    cols = ["id", "schedule_id", "device_id", "due_at", "setpoint_p_kw", "mode", "status", "result", "issued_at",
            "issued_by"]
    with engine.connect() as conn:
        df = pd.DataFrame([tuple(r) for r in conn.execute(q)], columns=cols)
    for col in ("due_at", "issued_at"):
        df[col] = _local(df[col], tz)
    df["setpoint_p_kw"] = df["setpoint_p_kw"].astype(float)
    return df


def approve_schedule(engine: Engine, actor: Actor, schedule_id: int, *, now: dt.datetime | None = None) -> dict:
    """Approve a draft or advisory schedule: status ``approved``, who and when, and an ``audit_log`` row, in one
    transaction. No setpoint is written: the control loop executes plans; an advisory storage's operator acts on
    the approved plan at the device.

    Parameters
    ----------
    schedule_id : int
        ``dispatch_schedule.id``.
    now : datetime, optional
        the approval time (aware; default now).

    Returns
    -------
    dict
        ``id, site, previous_status, status, approved_by, approved_at``.

    Raises
    ------
    AccessError
        unless ``actor``'s role may ``dispatch.approve`` (nothing is changed).
    DispatchError
        naming the id and status for an unknown schedule or one not in :data:`APPROVABLE` (nothing is changed).
    """
    require_role(actor, "dispatch.approve")
    if isinstance(schedule_id, bool) or not isinstance(schedule_id, (int, np.integer)):
        raise DispatchError(f"schedule_id: expected an integer id, got {schedule_id!r}")
    when = now or dt.datetime.now(dt.UTC)
    s = TABLES["dispatch_schedule"]
    with engine.begin() as conn:
        row = conn.execute(sa.select(s.c.id, s.c.status, _site_expr().label("site"))
                           .where(s.c.id == int(schedule_id)).with_for_update()).first()
        if row is None:
            raise DispatchError(f"schedule_id: no dispatch schedule {schedule_id}")
        if row.status not in APPROVABLE:
            raise DispatchError(f"schedule {schedule_id}: status {row.status!r} cannot be approved (only "
                                f"{', '.join(APPROVABLE)})")
        done = conn.execute(sa.update(s).where(s.c.id == row.id, s.c.status == row.status)
                            .values(status=APPROVED, approved_by=actor.user_id, approved_at=when))
        if done.rowcount != 1:      # changed by someone else between the read and the write
            raise DispatchError(f"schedule {schedule_id}: status changed while approving; reload and retry")
        audit(conn, "dispatch_approved", f"dispatch_schedule:{row.id}",
              {"site": row.site, "previous_status": row.status}, actor.user_id, now=when)
    return {"id": row.id, "site": row.site, "previous_status": row.status, "status": APPROVED,
            "approved_by": actor.user_id, "approved_at": when}


def latest_soc(engine: Engine, actor: Actor, storages: list[str], now: dt.datetime | None = None,
               within: str = "30min") -> dict[str, float]:
    """The newest state of charge of each storage in the last ``within`` (missing ones are left out) [-]."""
    require_role(actor, READ_DISPATCH)
    from anning_lib.dispatch.sites import latest

    t = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    got = latest(engine, [f"{d}.soc_frac" for d in storages], t, within)
    return {k.removesuffix(".soc_frac"): float(np.clip(v, 0.0, 1.0)) for k, v in got.items()}


def flex_resources(park, soc_frac: dict[str, float] | None = None, *, step: str = "1h",
                   now: pd.Timestamp | None = None, tz: str = TZ) -> pd.DataFrame:
    """The park's flexible resources (:func:`anning_lib.dispatch.vpp.resources_from_park`) as a table (pure).

    Storages at ``soc_frac`` (default their ``soc_init_frac``); ``up_kw_held``/``down_kw_held`` is what each can
    hold through a whole ``step`` (:func:`anning_lib.dispatch.vpp.flexibility`; a storage is limited by its
    stored energy). Columns: ``id, enterprise_id, kind, up_kw, down_kw, up_kw_held, down_kw_held,
    max_duration_h, cost_cny_per_kwh, notice_min, rebound_frac, soc_frac, soc_measured`` (whether the state of
    charge came from ``soc_frac`` or is the model's default); the order of the park model.
    """
    from anning_lib.dispatch.vpp import flexibility, resources_from_park

    res = resources_from_park(park, soc_frac=soc_frac)
    start = (now if now is not None else pd.Timestamp.now(tz=tz)).tz_convert(tz).floor(step)
    f = flexibility(res, pd.date_range(start, periods=1, freq=step))
    rows = [{"id": r.id, "enterprise_id": r.enterprise_id, "kind": r.kind, "up_kw": r.up_kw, "down_kw": r.down_kw,
             "up_kw_held": float(f[f"{r.id}.up_kw"].iloc[0]), "down_kw_held": float(f[f"{r.id}.down_kw"].iloc[0]),
             "max_duration_h": r.max_duration_h, "cost_cny_per_kwh": r.cost_cny_per_kwh,
             "notice_min": r.notice_min, "rebound_frac": r.rebound_frac, "soc_frac": r.soc_frac,
             "soc_measured": r.kind == "storage" and r.id in (soc_frac or {})} for r in res]
    return pd.DataFrame(rows, columns=["id", "enterprise_id", "kind", "up_kw", "down_kw", "up_kw_held",
                                       "down_kw_held", "max_duration_h", "cost_cny_per_kwh", "notice_min",
                                       "rebound_frac", "soc_frac", "soc_measured"])


# ============================================================================================== carbon
def carbon_choices(actor: Actor, park) -> list[str | None]:
    """What ``actor`` may pick on the carbon page: None (the park) and every enterprise for park-wide roles;
    only its own enterprise for an enterprise user; nothing for a visitor."""
    from anning_lib.auth.access import can_see

    out: list[str | None] = [None] if can_see(actor, None) else []
    return out + [e.id for e in park.enterprises if can_see(actor, e.id)]


def _runs_query(enterprise_id: str | None):
    run = TABLES["carbon_run"]
    q = sa.select(run.c.id, run.c.enterprise_id, run.c.period_start, run.c.period_end, run.c.factor_version,
                  run.c.total_co2_t)
    return q if enterprise_id is None else q.where(run.c.enterprise_id == enterprise_id)


def carbon_months(engine: Engine, actor: Actor, enterprise_id: str | None, *, tz: str = TZ) -> pd.DataFrame:
    """Months with a stored account of the enterprise (None: any enterprise of the park), newest first.

    Returns
    -------
    pandas.DataFrame
        ``month`` (``YYYY-MM``, local), ``versions`` (factor-set versions stored, newest first), ``enterprises``
        (how many enterprises have an account of that month). Only accounts covering one whole local month.

    Raises
    ------
    AccessError
        when ``actor`` may not see the enterprise's accounts (an enterprise user asking for another
        enterprise or the park).
    """
    from anning_lib.carbon.records import version_key

    require_visible(actor, "carbon accounts", enterprise_id)
    with engine.connect() as conn:
        rows = conn.execute(_runs_query(enterprise_id)).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=["id", "enterprise_id", "start", "end", "version", "total"])
    if df.empty:
        return pd.DataFrame(columns=["month", "versions", "enterprises"])
    start, end = _local(df["start"], tz), _local(df["end"], tz)
    whole = (start == start.dt.normalize()) & (start.dt.day == 1) & (end == start + pd.offsets.MonthBegin(1))
    df = df[whole].assign(month=start[whole].dt.strftime("%Y-%m"))
    out = df.groupby("month").agg(versions=("version", lambda v: sorted(set(v), key=version_key, reverse=True)),
                                  enterprises=("enterprise_id", "nunique")).reset_index()
    return out.sort_values("month", ascending=False, ignore_index=True)


def carbon_month(engine: Engine, actor: Actor, enterprise_id: str | None, month: str, *,
                 version: str | None = None, tz: str = TZ) -> dict:
    """A month's stored account of an enterprise, or of the park (the sum of its enterprises' accounts).

    Parameters
    ----------
    enterprise_id : str or None
        The enterprise; None for the park.
    month : str
        ``YYYY-MM`` (local).
    version : str, optional
        Factor-set version; default the newest stored for that month.

    Returns
    -------
    dict
        ``month, factor_version, enterprises`` (ids with an account), ``totals`` (t CO2 per scope of
        :data:`SCOPES` and ``total`` = scope 1 + location-based scope 2, the reported total of docs/carbon.md),
        ``lines`` (DataFrame: ``enterprise_id, scope, category, item, activity_amount, activity_unit,
        activity_source, factor_value, factor_unit, factor_source`` (the citation stored with the line: document,
        clause, year, factor set) ``, factor_version, formula, co2_t``; memo lines last).

    Raises
    ------
    AccessError
        when ``actor`` may not see the enterprise (or the park).
    CarbonError
        when no account of that month (and version) is stored.
    """
    from anning_lib.carbon.records import month_bounds, newest_version

    require_visible(actor, "carbon accounts", enterprise_id)
    start, end = month_bounds(month, tz)
    run, line = TABLES["carbon_run"], TABLES["carbon_line"]
    with engine.connect() as conn:
        runs = conn.execute(_runs_query(enterprise_id).where(run.c.period_start == start.to_pydatetime(),
                                                             run.c.period_end == end.to_pydatetime())).all()
        use = version if version is not None else newest_version({r.factor_version for r in runs})
        runs = [r for r in runs if r.factor_version == use]
        if not runs:
            who = enterprise_id or "the park"
            raise CarbonError(f"month: no stored carbon account of {who} for {month}"
                              f"{'' if version is None else f' with factor version {version!r}'}")
        ids = {r.id: r.enterprise_id for r in runs}
        q = sa.select(line).where(line.c.run_id.in_(list(ids))).order_by(line.c.run_id, line.c.id)
        lines = pd.DataFrame([dict(r._mapping) for r in conn.execute(q)])
    cols = ["enterprise_id", "scope", "category", "item", "activity_amount", "activity_unit", "activity_source",
            "factor_value", "factor_unit", "factor_source", "factor_version", "formula", "co2_t"]
    if lines.empty:
        lines = pd.DataFrame(columns=cols)
    else:
        lines["enterprise_id"] = lines["run_id"].map(ids)
        lines["factor_version"] = use
        lines = lines[cols]
        lines = pd.concat([lines[lines["scope"] != "memo"], lines[lines["scope"] == "memo"]], ignore_index=True)
    kept = lines[lines["scope"] != "memo"]
    totals = {s: float(kept.loc[kept["scope"] == s, "co2_t"].sum()) for s in SCOPES}
    totals["total"] = totals["scope1"] + totals["scope2_location"]
    return {"month": month, "factor_version": use, "enterprise_id": enterprise_id,
            "enterprises": sorted(set(ids.values())), "totals": totals, "lines": lines}


def totals_by_enterprise(lines: pd.DataFrame) -> pd.DataFrame:
    """t CO2 per enterprise and scope of :func:`carbon_month`'s lines (memo lines left out), with ``total`` =
    scope 1 + location-based scope 2; largest total first (pure)."""
    kept = lines[lines["scope"] != "memo"]
    out = (kept.pivot_table(index="enterprise_id", columns="scope", values="co2_t", aggfunc="sum", fill_value=0.0)
           .reindex(columns=list(SCOPES), fill_value=0.0))
    out["total"] = out["scope1"] + out["scope2_location"]
    out.columns.name = None
    return out.sort_values("total", ascending=False)


def _ledger_scope(actor: Actor, enterprise_id: str | None):
    t = TABLES["carbon_ledger"]
    return t.c.enterprise_id == enterprise_id if enterprise_id is not None else scope_filter(actor, t.c.enterprise_id)


def trade_price(engine: Engine, actor: Actor, enterprise_id: str | None, *, instrument: str = "CEA",
                tz: str = TZ) -> dict | None:
    """The newest allowance trade (bought or sold) in the ledger of the enterprise (None: any enterprise of the
    park), as the default price to value a position: ``price_cny_per_t, ts`` (local), ``enterprise_id, kind,
    market, year``; None when no trade is recorded.

    The library takes the valuation price as an argument (:func:`anning_lib.carbon.ledger.position`) and
    ``data/`` holds no allowance price: the page offers the last traded price and lets the user enter another.
    """
    require_visible(actor, "carbon ledger", enterprise_id)
    t = TABLES["carbon_ledger"]
    q = (sa.select(t.c.price_cny_per_t, t.c.ts, t.c.enterprise_id, t.c.kind, t.c.market, t.c.year)
         .where(t.c.instrument == instrument, t.c.kind.in_(("bought", "sold")), t.c.price_cny_per_t.is_not(None))
         .order_by(t.c.ts.desc(), t.c.id.desc()).limit(1))
    if (cond := _ledger_scope(actor, enterprise_id)) is not None:
        q = q.where(cond)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    if row is None:
        return None
    return {"price_cny_per_t": float(row.price_cny_per_t), "ts": _local(pd.Index([row.ts]), tz)[0],
            "enterprise_id": row.enterprise_id, "kind": row.kind, "market": row.market, "year": row.year}


def ledger_enterprises(engine: Engine, actor: Actor, year: int) -> list[str]:
    """Enterprises (visible to ``actor``) with ledger movements in the compliance year."""
    t = TABLES["carbon_ledger"]
    q = sa.select(t.c.enterprise_id).where(t.c.year == int(year)).distinct().order_by(t.c.enterprise_id)
    if (cond := scope_filter(actor, t.c.enterprise_id)) is not None:
        q = q.where(cond)
    with engine.connect() as conn:
        return [e for (e,) in conn.execute(q)]


def allowance_position(engine: Engine, actor: Actor, enterprise_id: str, year: int, price_cny_per_t: float) -> dict:
    """The compliance position of an enterprise for a year (:func:`anning_lib.carbon.ledger.position`), scoped:
    ``position`` (holdings, outstanding emissions, surplus or deficit, value at ``price_cny_per_t``),
    ``verified_co2_t`` (year to date from the stored accounts, or verified), ``verified_source``, ``projection``
    and ``projected_position`` (year-end), ``ledger`` (movements).

    Raises
    ------
    AccessError
        when ``actor`` may not see the enterprise.
    CarbonError
        for an unknown enterprise, a bad year or price, or no stored account of the year.
    """
    from anning_lib.carbon.ledger import position

    require_visible(actor, "allowance position", enterprise_id)
    return position(engine, enterprise_id, int(year), price_cny_per_t)


def park_positions(engine: Engine, actor: Actor, year: int, price_cny_per_t: float) -> pd.DataFrame:
    """Positions of every enterprise with ledger movements in the year (park-wide roles only), one row each:
    ``enterprise_id, cea_balance_t, ccer_usable_t, verified_co2_t, covered_frac, surplus_t, value_cny,
    projected_co2_t, projected_surplus_t, status, error`` (an enterprise without a stored account of the year
    gets NaN figures and the reason in ``error``)."""
    require_visible(actor, "allowance positions", None)
    rows = []
    for eid in ledger_enterprises(engine, actor, year):
        try:
            p = allowance_position(engine, actor, eid, year, price_cny_per_t)
        except CarbonError as err:
            rows.append({"enterprise_id": eid, "error": str(err)})
            continue
        pos, proj = p["position"], (p["projected_position"] or {}).get("linear")
        rows.append({"enterprise_id": eid, "cea_balance_t": pos["cea_balance_t"],
                     "ccer_usable_t": pos["ccer_usable_t"], "verified_co2_t": p["verified_co2_t"],
                     "covered_frac": p["verified_source"].get("covered_frac", np.nan),
                     "surplus_t": pos["surplus_t"], "value_cny": pos["value_cny"],
                     "projected_co2_t": (p["projection"] or {}).get("linear", {}).get("year_end_co2_t", np.nan)
                     if p["projection"] else np.nan,
                     "projected_surplus_t": proj["surplus_t"] if proj else np.nan, "status": pos["status"],
                     "error": ""})
    cols = ["enterprise_id", "cea_balance_t", "ccer_usable_t", "verified_co2_t", "covered_frac", "surplus_t",
            "value_cny", "projected_co2_t", "projected_surplus_t", "status", "error"]
    return pd.DataFrame(rows, columns=cols)
