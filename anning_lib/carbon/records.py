"""Carbon data in the store: entered activity records (``activity_data``) and accounts (``carbon_run``/``carbon_line``).

Thin I/O around the pure engine. An account is stored per enterprise, period and factor-set version: computing it
again with the same version replaces it; with another version it is added, so earlier results stay retrievable.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.carbon.accounting import KINDS, Activity, Line
from anning_lib.errors import CarbonError
from anning_lib.store.schema import TABLES

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def version_key(version: str) -> tuple:
    """Sort key of factor-set versions: ``2026.2`` after ``2026.1``, ``2026.10`` after ``2026.9``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-_]", str(version)))


def newest_version(versions) -> str | None:
    """The newest of some factor-set versions (by :func:`version_key`), or None if there are none."""
    versions = [v for v in versions if v is not None]
    return max(versions, key=version_key) if versions else None


def month_bounds(month: str, tz: str = "Asia/Shanghai") -> tuple[pd.Timestamp, pd.Timestamp]:
    """``"2026-10"`` -> the local month ``[start, end)`` as UTC instants."""
    m = _MONTH.match(str(month))
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise CarbonError(f"month: expected YYYY-MM, got {month!r}")
    start = pd.Timestamp(f"{month}-01", tz=tz)
    return start.tz_convert("UTC"), (start + pd.offsets.MonthBegin(1)).tz_convert("UTC")


def _utc(ts: pd.Timestamp) -> dt.datetime:
    return pd.Timestamp(ts).tz_convert("UTC").to_pydatetime()


def check_record(r: dict) -> dict:
    """An activity record to store, checked (pure): kind known, amount finite and not negative, unit given."""
    for key in ("enterprise_id", "kind", "item", "amount", "unit", "period_start", "period_end"):
        if key not in r or r[key] is None or (isinstance(r[key], str) and not r[key].strip()):
            raise CarbonError(f"{key}: missing in activity record {r!r:.120}")
    if r["kind"] not in KINDS:
        raise CarbonError(f"kind: unknown activity kind {r['kind']!r} (one of {', '.join(KINDS)})")
    amount = r["amount"]
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise CarbonError(f"amount: {r['item']} amount must be a finite number, got {amount!r}")
    if amount < 0 and r["kind"] != "electricity":
        raise CarbonError(f"amount: {r['kind']} {r['item']} must not be negative, got {amount:g} {r['unit']}")
    if pd.Timestamp(r["period_end"]) <= pd.Timestamp(r["period_start"]):
        raise CarbonError(f"period_end: {r['period_end']} is not after period_start {r['period_start']}")
    return r


def save_activities(engine: Engine, records: list[dict], fs=None) -> int:
    """Upsert entered activity records by (enterprise, kind, item, period start), all or nothing.

    Each record: ``enterprise_id, kind, item, amount, unit, period_start, period_end`` (aware timestamps) and
    optionally ``source``. With a factor set ``fs`` each record is also accounted once, so an unknown fuel or a
    unit that does not fit it is refused here rather than when the month is computed. Raises CarbonError naming
    the first bad field and the record; nothing is stored then.
    """
    from anning_lib.carbon.accounting import METERED_KINDS, account
    from anning_lib.store.assets import upsert

    rows = []
    for r in records:
        check_record(r)
        if r["kind"] in METERED_KINDS:
            raise CarbonError(f"kind: {r['kind']} of {r['enterprise_id']} is measured by its meters; an entered "
                              f"record would count it twice")
        if fs is not None:
            try:
                account([Activity(r["kind"], r["item"], float(r["amount"]), r["unit"])], fs)
            except CarbonError as err:
                raise CarbonError(f"{err} (record of {r['enterprise_id']}: {r['kind']} {r['item']})") from None
        rows.append({"enterprise_id": r["enterprise_id"], "kind": r["kind"], "item": r["item"],
                     "amount": float(r["amount"]), "unit": r["unit"], "source": str(r.get("source", "entered"))[:64],
                     "period_start": _utc(r["period_start"]), "period_end": _utc(r["period_end"])})
    ent = TABLES["enterprise"]
    with engine.begin() as conn:
        known = {e for (e,) in conn.execute(sa.select(ent.c.id))}
        for r in rows:
            if r["enterprise_id"] not in known:
                raise CarbonError(f"enterprise_id: unknown enterprise {r['enterprise_id']!r}")
        upsert(conn, TABLES["activity_data"], rows, ["enterprise_id", "kind", "item", "period_start"])
    return len(rows)


def entered_activities(engine: Engine, enterprise_id: str, start: pd.Timestamp, end: pd.Timestamp,
                       tz: str = "Asia/Shanghai") -> list[Activity]:
    """Entered or imported records of the enterprise whose period lies within ``[start, end)``; the period each
    covers is named in local time in the activity's source."""
    t = TABLES["activity_data"]
    q = sa.select(t).where(t.c.enterprise_id == enterprise_id, t.c.period_start >= _utc(start),
                           t.c.period_end <= _utc(end)).order_by(t.c.kind, t.c.item, t.c.period_start)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    return [Activity(r.kind, r.item, r.amount, r.unit, f"{r.source}, {_local_period(r.period_start, r.period_end, tz)}")
            for r in rows]


def _local_period(start: dt.datetime, end: dt.datetime, tz: str) -> str:
    """``2026-10`` for a whole local month, else ``2026-10-03..2026-10-09`` (end day inclusive)."""
    s, e = pd.Timestamp(start).tz_convert(tz), pd.Timestamp(end).tz_convert(tz)
    if s == s.normalize() and s.day == 1 and e == s + pd.offsets.MonthBegin(1):
        return f"{s:%Y-%m}"
    return f"{s:%Y-%m-%d}..{(e - pd.Timedelta('1ns')):%Y-%m-%d}"


def store_run(engine: Engine, enterprise_id: str, start: pd.Timestamp, end: pd.Timestamp, version: str,
              lines: list[Line], total_co2_t: float) -> int:
    """Replace the account of (enterprise, period, version) by ``lines``; returns the run id."""
    with engine.begin() as conn:
        return _store_run(conn, enterprise_id, start, end, version, lines, total_co2_t)


def store_runs(engine: Engine, runs: list[tuple]) -> list[int]:
    """Several :func:`store_run` argument tuples ``(enterprise_id, start, end, version, lines, total)`` in one
    transaction: all are stored or none."""
    with engine.begin() as conn:
        return [_store_run(conn, *r) for r in runs]


def _store_run(conn, enterprise_id: str, start: pd.Timestamp, end: pd.Timestamp, version: str,
               lines: list[Line], total_co2_t: float) -> int:
    run, line = TABLES["carbon_run"], TABLES["carbon_line"]
    key = (run.c.enterprise_id == enterprise_id) & (run.c.period_start == _utc(start)) & (
        run.c.period_end == _utc(end)) & (run.c.factor_version == version)
    old = [r for (r,) in conn.execute(sa.select(run.c.id).where(key))]
    if old:
        conn.execute(sa.delete(line).where(line.c.run_id.in_(old)))
        conn.execute(sa.delete(run).where(run.c.id.in_(old)))
    run_id = conn.execute(sa.insert(run).values(
        enterprise_id=enterprise_id, period_start=_utc(start), period_end=_utc(end), factor_version=version,
        computed_at=dt.datetime.now(dt.UTC), total_co2_t=total_co2_t).returning(run.c.id)).scalar_one()
    if lines:
        conn.execute(sa.insert(line), [{"run_id": run_id, **ln.__dict__} for ln in lines])
    return run_id


def load_run(engine: Engine, enterprise_id: str, start: pd.Timestamp, end: pd.Timestamp,
             version: str | None = None) -> tuple[dict, pd.DataFrame] | None:
    """A stored account (the given factor version, else the newest version stored) and its lines; or None."""
    run, line = TABLES["carbon_run"], TABLES["carbon_line"]
    q = sa.select(run).where(run.c.enterprise_id == enterprise_id, run.c.period_start == _utc(start),
                             run.c.period_end == _utc(end))
    with engine.connect() as conn:
        runs = {r.factor_version: r for r in conn.execute(q)}
        r = runs.get(version if version is not None else newest_version(runs))
        if r is None:
            return None
        lines = pd.read_sql(sa.select(line).where(line.c.run_id == r.id).order_by(line.c.id), conn)
    return dict(r._mapping), lines.drop(columns=["id", "run_id"])


def run_versions(engine: Engine, enterprise_id: str) -> pd.DataFrame:
    """Every stored account of an enterprise: period, factor version, total, when computed."""
    run = TABLES["carbon_run"]
    with engine.connect() as conn:
        return pd.read_sql(sa.select(run.c.period_start, run.c.period_end, run.c.factor_version,
                                     run.c.total_co2_t, run.c.computed_at)
                           .where(run.c.enterprise_id == enterprise_id).order_by(run.c.period_start), conn)


def sync_factors(engine: Engine, fs) -> int:
    """Keep the factor set's rows in ``emission_factor`` (key, region, version): rows not yet stored are added;
    a stored row is never changed, so every version used stays as it was beside the accounts that cite it.

    Raises
    ------
    CarbonError
        if a row of an already stored version has a different value: a revised factor needs a new version.
    """
    ef = TABLES["emission_factor"]
    rows = [{"key": r.key[:64], "region": r.region, "value": float(r.value), "unit": r.unit, "version": r.version,
             "source": f"{r.source}, {r.clause} ({r.year})"} for r in fs.rows().itertuples()]
    with engine.begin() as conn:
        stored = {(r.key, r.region, r.version): (r.value, r.unit) for r in
                  conn.execute(sa.select(ef.c.key, ef.c.region, ef.c.version, ef.c.value, ef.c.unit)
                               .where(ef.c.version == fs.version))}
        new = []
        for r in rows:
            old = stored.get((r["key"], r["region"], r["version"]))
            if old is None:
                new.append(r)
            elif not (math.isclose(old[0], r["value"], rel_tol=1e-12) and old[1] == r["unit"]):
                raise CarbonError(f"version: factor {r['key']} ({r['region']}) of set {r['version']} was "
                                  f"{old[0]:g} {old[1]} and is now {r['value']:g} {r['unit']}; give a revised "
                                  f"factor set a new version in data/emission_factors/manifest.yaml")
        if new:
            conn.execute(sa.insert(ef), new)
    return len(new)


def last_complete_month(engine: Engine, tz: str = "Asia/Shanghai") -> str:
    """The latest local month the stored measurements cover from its first to its last day, as ``YYYY-MM``."""
    from anning_lib.store.timeseries import data_range

    rng = data_range(engine, tz)
    if rng is None:
        raise CarbonError("period: the store holds no measurements yet (run `anning demo` or the gateway)")
    first, last = rng
    running = (last + pd.Timedelta("15min")).tz_localize(None).to_period("M")
    month = running - 1                                             # the month before the one still running
    if month.start_time.tz_localize(tz) < first.floor("D"):
        raise CarbonError(f"period: the stored history {first:%Y-%m-%d}..{last:%Y-%m-%d} covers no whole month")
    return str(month)


def year_lines(engine: Engine, year: int, version: str | None = None, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Stored account lines of every enterprise for the months of a local year (one factor version: the given one,
    else the newest stored for that year), with columns ``enterprise_id, month, scope, category, item, co2_t``.
    Months not accounted with that version are missing: :func:`anning_lib.carbon.compute.summary` counts them."""
    run, line = TABLES["carbon_run"], TABLES["carbon_line"]
    start = pd.Timestamp(f"{year}-01-01", tz=tz).tz_convert("UTC").to_pydatetime()
    end = pd.Timestamp(f"{year + 1}-01-01", tz=tz).tz_convert("UTC").to_pydatetime()
    in_year = (run.c.period_start >= start) & (run.c.period_end <= end)
    with engine.connect() as conn:
        if version is None:
            version = newest_version(conn.execute(sa.select(run.c.factor_version).where(in_year).distinct()).scalars())
        if version is None:
            raise CarbonError(f"year: no stored carbon accounts in {year} (run `anning carbon compute` first)")
        q = (sa.select(run.c.enterprise_id, run.c.period_start, line.c.scope, line.c.category, line.c.item,
                       line.c.co2_t).join(line, line.c.run_id == run.c.id)
             .where(in_year, run.c.factor_version == version))
        df = pd.read_sql(q, conn)
    df["month"] = pd.to_datetime(df.pop("period_start"), utc=True).dt.tz_convert(tz).dt.strftime("%Y-%m")
    return df.assign(factor_version=version)
