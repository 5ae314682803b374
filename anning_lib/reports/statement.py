"""The monthly carbon statement of one enterprise (企业月度碳排放报告): its data from the store, and its sections as
HTML for the template ``reports/monthly_statement.ipynb``.

Everything is read as the enterprise itself would see it (an ``enterprise`` actor of that enterprise), so peers
of its sector appear as ``peer 1``, ``peer 2``... and nothing of another enterprise leaves the park office.
Emissions are the month's stored account (``anning carbon compute``; computed and stored here if missing) with
every line's activity, factor, factor source and formula; the reported total is scope 1 + location-based
scope 2 (docs/carbon.md).

References
----------
.. [1] GB/T 32150-2015, 工业企业温室气体排放核算和报告通则 (General guideline of greenhouse gas emissions
   accounting and reporting for industrial enterprises): report structure (boundary, sources, activity data,
   factors, emissions).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.advice.engine import advise
from anning_lib.auth.access import Actor
from anning_lib.carbon.compute import compare, compute_enterprise
from anning_lib.carbon.factors import load_factor_set
from anning_lib.carbon.records import month_bounds, newest_version
from anning_lib.errors import AnningError, CarbonError
from anning_lib.park.schema import Park
from anning_lib.portal.energy import carbon_month, trade_price
from anning_lib.portal.views import enterprise_overview
from anning_lib.store.schema import TABLES

TREND_MONTHS = 12
"""Months shown in the statement's trend, the statement's month included."""
DEC = {"co2_t": 3, "activity_amount": 3, "factor_value": 4}
"""Decimals of the statement's numbers (tCO2 to the kilogram)."""


def enterprise_actor(enterprise_id: str) -> Actor:
    """The enterprise's own view: what its users may see."""
    return Actor(None, "enterprise", enterprise_id, f"statement:{enterprise_id}")


def ensure_account(engine: Engine, park: Park, enterprise_id: str, month: str, *, tz: str = "Asia/Shanghai") -> bool:
    """Compute and store the month's account of the enterprise if none is stored; True if one was computed."""
    start, end = month_bounds(month, tz)
    run = TABLES["carbon_run"]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(run.c.id).where(
            run.c.enterprise_id == enterprise_id, run.c.period_start == start.to_pydatetime(),
            run.c.period_end == end.to_pydatetime()).limit(1)).first()
    if stored is not None:
        return False
    compute_enterprise(engine, park, load_factor_set(), enterprise_id, month, store=True, tz=tz)
    return True


def monthly_totals(engine: Engine, enterprise_id: str, month: str, version: str | None, *,
                   n: int = TREND_MONTHS, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Stored monthly totals [tCO2] of the ``n`` months up to ``month``: ``month`` (YYYY-MM), ``total_co2_t``
    (NaN where no account), ``factor_version`` (``version`` where stored in it, else the newest stored)."""
    months = pd.period_range(end=pd.Period(month, "M"), periods=n, freq="M")
    first, _ = month_bounds(str(months[0]), tz)
    _, last = month_bounds(month, tz)
    run = TABLES["carbon_run"]
    q = sa.select(run.c.period_start, run.c.period_end, run.c.factor_version, run.c.total_co2_t).where(
        run.c.enterprise_id == enterprise_id, run.c.period_start >= first.to_pydatetime(),
        run.c.period_end <= last.to_pydatetime())
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    by_month: dict[str, dict[str, float]] = {}
    for r in rows:
        s, e = pd.Timestamp(r.period_start).tz_convert(tz), pd.Timestamp(r.period_end).tz_convert(tz)
        if s.day == 1 and s == s.normalize() and e == s + pd.offsets.MonthBegin(1):
            by_month.setdefault(f"{s:%Y-%m}", {})[r.factor_version] = float(r.total_co2_t)
    out = []
    for m in map(str, months):
        versions = by_month.get(m, {})
        use = version if version in versions else newest_version(versions)
        out.append({"month": m, "total_co2_t": versions.get(use, float("nan")), "factor_version": use})
    return pd.DataFrame(out)


def statement_data(engine: Engine, park: Park, enterprise_id: str, month: str, *,
                   tz: str = "Asia/Shanghai") -> dict:
    """Everything the statement shows, read as the enterprise sees it.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
    park : Park
    enterprise_id : str
    month : str
        ``YYYY-MM``, local (Asia/Shanghai).

    Returns
    -------
    dict
        ``enterprise_id, name, sector, month, factor_version``; ``totals`` [tCO2] per scope and ``total``;
        ``lines`` (the account's lines: scope, category, item, activity amount/unit/source, factor value/unit/source,
        formula, co2_t); ``energy`` and ``peers`` (:func:`anning_lib.portal.views.enterprise_overview`);
        ``intensity`` (the enterprise's own peer row: tCO2/t product, tCO2/10^4 CNY; None without one);
        ``trend`` (:func:`monthly_totals`); ``change`` (:func:`anning_lib.carbon.compute.compare`);
        ``position`` (:func:`anning_lib.carbon.ledger.position` of the month's year at the last traded price, or
        None without ledger movements); ``price`` (:func:`anning_lib.portal.energy.trade_price` or None);
        ``advice`` (:func:`anning_lib.advice.engine.advise` on the month, or ``{"error": ...}``).

    Raises
    ------
    CarbonError
        for a malformed month or no account that can be computed (no data at all).
    StoreError
        for an unknown enterprise.
    """
    from anning_lib.carbon.ledger import position

    ensure_account(engine, park, enterprise_id, month, tz=tz)
    actor = enterprise_actor(enterprise_id)
    acc = carbon_month(engine, actor, enterprise_id, month, tz=tz)
    ov = enterprise_overview(engine, park, actor, enterprise_id, month)
    own = ov["peers"][ov["peers"]["is_self"]]
    price = trade_price(engine, actor, enterprise_id, tz=tz)
    try:
        pos = position(engine, enterprise_id, int(month[:4]), price["price_cny_per_t"] if price else 0.0,
                       factor_version=acc["factor_version"])
        pos = pos if len(pos["ledger"]) else None
    except CarbonError:
        pos = None
    start, end = month_bounds(month, tz)
    try:
        advice = advise(engine, park, enterprise_id, start, end, refresh=True)
    except AnningError as err:                 # no data to diagnose: the statement says so instead
        advice = {"error": str(err)}
    return {"enterprise_id": enterprise_id, "name": ov["name"], "sector": ov["sector"], "month": month,
            "advice": advice,
            "factor_version": acc["factor_version"], "totals": acc["totals"], "lines": acc["lines"],
            "energy": ov["energy"], "peers": ov["peers"],
            "intensity": None if own.empty else own.iloc[0][["co2_t_per_t", "co2_t_per_10k_cny"]].to_dict(),
            "trend": monthly_totals(engine, enterprise_id, month, acc["factor_version"], tz=tz),
            "change": compare(engine, enterprise_id, month, acc["factor_version"], tz),
            "position": pos, "price": price,
            "produced_at": dt.datetime.now(ZoneInfo(tz)).replace(microsecond=0)}
