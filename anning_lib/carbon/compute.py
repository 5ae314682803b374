"""Carbon accounts of enterprises and the park for a month: gather activity, account, store, compare.

Composition of :mod:`~anning_lib.carbon.metered` (meters), :mod:`~anning_lib.carbon.records` (entered data and
stored accounts) and the pure engine :mod:`~anning_lib.carbon.accounting`. The park's account is the sum of its
enterprises' accounts (park-level assets, the shared storage station and the park PV plant, belong to the park
operator and are not an enterprise of the park model).
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.carbon.accounting import METERED_KINDS, Activity, account, totals
from anning_lib.carbon.factors import FactorSet
from anning_lib.carbon.metered import metered_activities
from anning_lib.carbon.records import (
    entered_activities,
    load_run,
    month_bounds,
    store_run,
    store_runs,
)
from anning_lib.carbon.units import convert
from anning_lib.errors import CarbonError
from anning_lib.park.schema import Park

MIN_COVERAGE = 0.95
"""Below this share of quarter-hours with metered data a month's account is flagged ``partial`` [-]."""


def intensity(activities: list[Activity], total_co2_t: float) -> dict[str, float | None]:
    """Emission intensity per tonne of product [tCO2/t] and per 10^4 CNY of output value [tCO2/10^4 CNY]."""
    prod_t = sum(convert(a.amount, a.unit, "t") for a in activities if a.kind == "production")
    for a in activities:
        if a.kind == "output_value" and a.unit.replace(" ", "") not in ("10^4CNY", "万元"):
            raise CarbonError(f"unit: output value must be in 10^4 CNY (万元), got {a.unit!r} ({a.source})")
    value = sum(a.amount for a in activities if a.kind == "output_value")
    return {"production_t": prod_t or None, "output_value_10k_cny": value or None,
            "co2_t_per_t": total_co2_t / prod_t if prod_t else None,
            "co2_t_per_10k_cny": total_co2_t / value if value else None}


def no_double_counting(metered: list[Activity], entered: list[Activity], enterprise_id: str) -> None:
    """Refuse an entered record of something the meters already measure (it would be counted twice)."""
    measured = {(a.kind, a.item) for a in metered if a.amount} | {(k, "electricity") for k in METERED_KINDS}
    for a in entered:
        if a.kind in METERED_KINDS or (a.kind, a.item) in measured:
            raise CarbonError(f"kind: {enterprise_id}'s {a.kind} {a.item} is metered; the entered record "
                              f"({a.source}) would count it twice: remove it")


def compute_enterprise(engine: Engine, park: Park, fs: FactorSet, enterprise_id: str, month: str, *,
                       store: bool = True, **kw) -> dict:
    """Account one enterprise for one local month and (by default) store it under the factor set's version.

    Returns
    -------
    dict
        ``enterprise_id, month, factor_version, totals`` (tCO2 per scope and ``total``), ``intensity``,
        ``coverage_frac`` (share of quarter-hours with metered data) and ``partial`` (coverage below
        :data:`MIN_COVERAGE`), ``lines`` (list of dicts: activity, factor with source, formula, tCO2).
    """
    result, pending = _account(engine, park, fs, enterprise_id, month, **kw)
    if store:
        store_run(engine, *pending)
    return result


def _account(engine: Engine, park: Park, fs: FactorSet, enterprise_id: str, month: str, *, region: str = "yunnan",
             residual: str = "location", tz: str = "Asia/Shanghai") -> tuple[dict, tuple]:
    """One enterprise's account and the arguments that store it (:func:`store_run`)."""
    park.enterprise(enterprise_id)  # KeyError -> the CLI reports an unknown enterprise
    start, end = month_bounds(month, tz)
    metered, coverage = metered_activities(engine, park, enterprise_id, start, end, tz)
    entered = entered_activities(engine, enterprise_id, start, end, tz)
    no_double_counting(metered, entered, enterprise_id)
    activities = metered + entered
    lines = account(activities, fs, region=region, residual=residual)
    tot = totals(lines)
    result = {"enterprise_id": enterprise_id, "month": month, "factor_version": fs.version, "region": region,
              "totals": tot, "intensity": intensity(activities, tot["total"]), "coverage_frac": coverage,
              "partial": coverage < MIN_COVERAGE, "lines": [ln.__dict__ for ln in lines]}
    return result, (enterprise_id, start, end, fs.version, lines, tot["total"])


def compute_park(engine: Engine, park: Park, fs: FactorSet, month: str, *, store: bool = True, **kw) -> dict:
    """Every enterprise's account for the month and the park's totals (their sums).

    All enterprises are computed first and stored together in one transaction, so a refused enterprise leaves
    nothing half-stored.
    """
    done = [_account(engine, park, fs, e.id, month, **kw) for e in park.enterprises]
    if store:
        store_runs(engine, [pending for _r, pending in done])
    results = [r for r, _pending in done]
    keys = results[0]["totals"].keys() if results else []
    park_totals = {k: sum(r["totals"][k] for r in results) for k in keys}
    return {"month": month, "factor_version": fs.version, "totals": park_totals, "enterprises": results}


def by_enterprise(result: dict, park: Park) -> pd.DataFrame:
    """A park result as a table: one row per enterprise with its sector and tCO2 per scope (pure)."""
    rows = []
    for r in result["enterprises"]:
        e = park.enterprise(r["enterprise_id"])
        rows.append({"enterprise_id": e.id, "name": e.name, "sector": e.sector, **r["totals"],
                     **{k: v for k, v in r["intensity"].items() if k.startswith("co2")}})
    return pd.DataFrame(rows).set_index("enterprise_id")


def compare(engine: Engine, enterprise_id: str, month: str, version: str, tz: str = "Asia/Shanghai") -> dict:
    """Month-on-month and year-on-year change of the stored total [tCO2 and fraction], same factor version."""
    start, end = month_bounds(month, tz)
    now = load_run(engine, enterprise_id, start, end, version)
    if now is None:
        return {"mom": None, "yoy": None}
    first = pd.Timestamp(f"{month}-01")
    out = {}
    for key, prev in (("mom", first - pd.offsets.MonthBegin(1)), ("yoy", first - pd.DateOffset(years=1))):
        s, e = month_bounds(f"{prev:%Y-%m}", tz)
        old = load_run(engine, enterprise_id, s, e, version)
        if old is None or not old[0]["total_co2_t"]:
            out[key] = None
            continue
        a, b = now[0]["total_co2_t"], old[0]["total_co2_t"]
        out[key] = {"previous_month": f"{prev:%Y-%m}", "previous_co2_t": b, "change_co2_t": a - b,
                    "change_frac": (a - b) / b}
    return out


def summary(lines: pd.DataFrame, park: Park) -> dict[str, pd.DataFrame]:
    """Totals [tCO2] by enterprise, by sector and for the park, per scope, from stored lines (pure).

    ``lines``: :func:`anning_lib.carbon.records.year_lines` (or any frame with ``enterprise_id, month, scope,
    co2_t``). ``total`` = scope 1 + location-based scope 2; ``months`` = months with an account.
    """
    sector = {e.id: e.sector for e in park.enterprises}
    kept = lines[lines["scope"] != "memo"]
    by_ent = kept.pivot_table(index="enterprise_id", columns="scope", values="co2_t", aggfunc="sum", fill_value=0.0)
    for col in ("scope1", "scope2_location", "scope2_market", "scope3"):
        if col not in by_ent:
            by_ent[col] = 0.0
    by_ent = by_ent[["scope1", "scope2_location", "scope2_market", "scope3"]]
    by_ent["total"] = by_ent["scope1"] + by_ent["scope2_location"]
    by_ent["months"] = lines.groupby("enterprise_id")["month"].nunique()
    by_ent.insert(0, "sector", by_ent.index.map(sector))
    by_sector = by_ent.drop(columns="months").groupby("sector").sum(numeric_only=True)
    park_row = by_ent.drop(columns=["sector", "months"]).sum().to_frame("park").T
    return {"enterprises": by_ent, "sectors": by_sector, "park": park_row}
