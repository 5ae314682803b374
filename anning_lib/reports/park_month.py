"""The monthly park energy and carbon report (园区月度能碳报告): its data from the store, read as the park office
sees it (every enterprise by name), and its sections as HTML for ``reports/park_monthly.ipynb``.

Emissions are the enterprises' stored accounts of the month (``anning carbon compute``; computed and stored here
for any enterprise without one); the park's figures are their sums (docs/carbon.md: the park-level assets belong
to the park operator, not to an enterprise).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.auth.access import SYSTEM
from anning_lib.carbon.records import month_bounds
from anning_lib.park.schema import Park
from anning_lib.portal.energy import carbon_month, totals_by_enterprise
from anning_lib.portal.views import energy_lines, energy_table
from anning_lib.reports.statement import ensure_account, monthly_totals
from anning_lib.store.schema import TABLES

SEVERITIES = ("critical", "high", "medium", "low")


def alarms_of_month(engine: Engine, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Alarms raised in ``[start, end)`` by enterprise (None: park-level) and severity: ``enterprise_id``, one
    column per severity and ``total`` [count]."""
    a = TABLES["alarm"]
    q = (sa.select(a.c.enterprise_id, a.c.severity, sa.func.count().label("n"))
         .where(a.c.raised_at >= start.to_pydatetime(), a.c.raised_at < end.to_pydatetime())
         .group_by(a.c.enterprise_id, a.c.severity))
    with engine.connect() as conn:
        rows = pd.DataFrame([tuple(r) for r in conn.execute(q)], columns=["enterprise_id", "severity", "n"])
    out = rows.pivot_table(index="enterprise_id", columns="severity", values="n", aggfunc="sum", fill_value=0,
                           dropna=False) if len(rows) else pd.DataFrame()
    out = out.reindex(columns=list(SEVERITIES), fill_value=0).astype(int)
    out["total"] = out.sum(axis=1)
    return out.sort_values("total", ascending=False).reset_index()


def park_month_data(engine: Engine, park: Park, month: str, *, tz: str = "Asia/Shanghai") -> dict:
    """Everything the park report shows.

    Returns
    -------
    dict
        ``month, factor_version``; ``totals`` [tCO2] per scope and ``total`` (scope 1 + location-based scope 2);
        ``by_enterprise`` (``enterprise_id, name, sector``, tCO2 per scope, ``total``, ``share_frac``; largest
        first); ``by_sector`` (the same summed by sector); ``energy`` (the park's energy by carrier, amounts in
        their unit and GJ); ``trend`` (the park's total of each of the last 12 months, from the enterprises'
        stored accounts [tCO2]); ``alarms`` (:func:`alarms_of_month`); ``produced_at``.
    """
    for e in park.enterprises:
        ensure_account(engine, park, e.id, month, tz=tz)
    acc = carbon_month(engine, SYSTEM, None, month, tz=tz)
    names = {e.id: (e.name, e.sector) for e in park.enterprises}
    by_ent = totals_by_enterprise(acc["lines"]).reset_index(names="enterprise_id")
    by_ent.insert(1, "name", by_ent["enterprise_id"].map(lambda i: names.get(i, (i, ""))[0]))
    by_ent.insert(2, "sector", by_ent["enterprise_id"].map(lambda i: names.get(i, ("", ""))[1]))
    total = acc["totals"]["total"]
    by_ent["share_frac"] = by_ent["total"] / total if total else float("nan")
    by_sector = by_ent.drop(columns=["enterprise_id", "name"]).groupby("sector", as_index=False).sum()
    by_sector = by_sector.sort_values("total", ascending=False, ignore_index=True)
    trend = None
    for e in park.enterprises:
        m = monthly_totals(engine, e.id, month, acc["factor_version"], tz=tz).set_index("month")["total_co2_t"]
        trend = m if trend is None else trend.add(m, fill_value=0.0)
    start, end = month_bounds(month, tz)
    return {"month": month, "factor_version": acc["factor_version"], "totals": acc["totals"],
            "by_enterprise": by_ent, "by_sector": by_sector,
            "energy": energy_table(energy_lines(acc["lines"]), acc["factor_version"]),
            "trend": trend.rename("total_co2_t").reset_index(), "alarms": alarms_of_month(engine, start, end),
            "produced_at": dt.datetime.now(ZoneInfo(tz)).replace(microsecond=0)}
