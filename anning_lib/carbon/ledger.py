"""Carbon-asset ledger in the store: record movements, read a year's ledger, the compliance position.

Thin I/O around the pure functions of :mod:`anning_lib.carbon.assets`. A refused movement raises
:class:`~anning_lib.errors.CarbonError` naming the field and its value, and changes nothing in the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anning_lib.carbon.assets import (
    CCER_CAP_FRAC,
    LEDGER_COLUMNS,
    TZ,
    _year,
    compliance_position,
    project_year_end,
    validate_movement,
)
from anning_lib.carbon.records import newest_version
from anning_lib.errors import CarbonError
from anning_lib.store.schema import TABLES


def _check_enterprise(conn: Connection, enterprise_id: object, lock: bool = False) -> str:
    """The enterprise id if it exists (row locked for update on PostgreSQL when ``lock``), else CarbonError."""
    if not isinstance(enterprise_id, str) or not enterprise_id:
        raise CarbonError(f"enterprise_id: expected an enterprise id, got {enterprise_id!r}")
    ent = TABLES["enterprise"]
    q = sa.select(ent.c.id).where(ent.c.id == enterprise_id)
    if conn.execute(q.with_for_update() if lock else q).first() is None:
        raise CarbonError(f"enterprise_id: unknown enterprise {enterprise_id!r}")
    return enterprise_id


def _balance_t(conn: Connection, enterprise_id: str, year: int, instrument: str) -> float:
    """Stored balance of one instrument for one enterprise and year [t CO2]."""
    t = TABLES["carbon_ledger"]
    signed = sa.case((t.c.kind.in_(("allocated", "bought")), t.c.quantity_t), else_=-t.c.quantity_t)
    q = sa.select(sa.func.coalesce(sa.func.sum(signed), 0.0)).where(
        t.c.enterprise_id == enterprise_id, t.c.year == year, t.c.instrument == instrument)
    return float(conn.execute(q).scalar_one())


def record_movement(engine: Engine, enterprise_id: str, movement: Mapping, *, check_balance: bool = True) -> int:
    """Validate a movement and store it as one ``carbon_ledger`` row, in one transaction.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        A store at head revision.
    enterprise_id : str
        The enterprise (must exist in table ``enterprise``).
    movement : mapping
        See :func:`validate_movement`; a missing ``ts`` is the time of recording.
    check_balance : bool
        Refuse a ``sold`` or ``surrendered`` movement larger than the stored balance of that instrument for that
        enterprise and year [t CO2] (a short position is almost always a typing error). False records it anyway.

    Returns
    -------
    int
        The id of the new row.

    Raises
    ------
    CarbonError
        naming the field and value: a bad movement, an unknown enterprise or (with ``check_balance``) a sale or
        surrender beyond the balance. Nothing is stored then.
    """
    m = validate_movement(movement)
    if m["ts"] is None:
        m["ts"] = dt.datetime.now(dt.timezone.utc)
    t = TABLES["carbon_ledger"]
    with engine.begin() as conn:
        _check_enterprise(conn, enterprise_id, lock=True)
        if check_balance and m["kind"] in ("sold", "surrendered"):
            held = _balance_t(conn, enterprise_id, m["year"], m["instrument"])
            if m["quantity_t"] > held:
                raise CarbonError(f"quantity_t: {m['kind']} {m['quantity_t']:,.3f} t {m['instrument']} exceeds the "
                                  f"{m['year']} balance of {enterprise_id} ({held:,.3f} t)")
        return int(conn.execute(sa.insert(t).values(enterprise_id=enterprise_id, **m).returning(t.c.id)).scalar_one())


def read_ledger(engine: Engine, enterprise_id: str, year: int, *, tz: str = TZ) -> pd.DataFrame:
    """The ledger movements of one enterprise and compliance year, oldest first.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``enterprise_id``, ``year``, ``instrument``, ``kind``, ``quantity_t`` [t CO2],
        ``price_cny_per_t`` [CNY/t] (NaN where not given), ``ts`` (aware, in ``tz``), ``market``, ``note``;
        ordered by ``ts`` then ``id``. Empty (same columns) when nothing is recorded.

    Raises
    ------
    CarbonError
        for an unknown enterprise or a year outside 2000..2100.
    """
    year = _year(year)
    t = TABLES["carbon_ledger"]
    q = sa.select(*[t.c[c] for c in LEDGER_COLUMNS]).where(t.c.enterprise_id == enterprise_id, t.c.year == year)
    with engine.connect() as conn:
        _check_enterprise(conn, enterprise_id)
        rows = [tuple(r) for r in conn.execute(q.order_by(t.c.ts, t.c.id))]
    df = pd.DataFrame(rows, columns=list(LEDGER_COLUMNS))
    df = df.astype({"id": "int64", "year": "int64", "quantity_t": "float64", "price_cny_per_t": "float64"})
    df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.tz_convert(tz)
    return df


COMPLIANCE_SCOPES = ("scope1",)
"""What the national carbon market covers: direct emissions (MEE's accounting guidelines for the covered sectors
count fuel combustion and process CO2; purchased electricity is outside the allowance cap since 2021). Check the
guideline of the enterprise's sector; pass ``verified_co2_t`` to override."""


def _year_runs(conn: Connection, enterprise_id: str, year: int) -> pd.DataFrame:
    """``carbon_run`` rows of the enterprise whose period lies within the local calendar year, with their
    compliance emissions (the :data:`COMPLIANCE_SCOPES` lines) as ``total_co2_t``."""
    run, line = TABLES["carbon_run"], TABLES["carbon_line"]
    y0, y1 = (pd.Timestamp(f"{y}-01-01", tz=TZ).tz_convert("UTC").to_pydatetime() for y in (year, year + 1))
    covered = (sa.select(sa.func.coalesce(sa.func.sum(line.c.co2_t), 0.0))
               .where(line.c.run_id == run.c.id, line.c.scope.in_(COMPLIANCE_SCOPES)).scalar_subquery())
    q = sa.select(run.c.period_start, run.c.period_end, run.c.factor_version, run.c.computed_at,
                  covered).where(run.c.enterprise_id == enterprise_id, run.c.period_start >= y0,
                                 run.c.period_end <= y1)
    df = pd.DataFrame([tuple(r) for r in conn.execute(q)],
                      columns=["start", "end", "factor_version", "computed_at", "total_co2_t"])
    for col in ("start", "end", "computed_at"):
        df[col] = pd.to_datetime(df[col], utc=True).dt.tz_convert(TZ)
    return df.astype({"total_co2_t": "float64"}).sort_values(["start", "end"], ignore_index=True)


def _newest_version(runs: pd.DataFrame) -> str | None:
    """The newest factor version among the runs (:func:`anning_lib.carbon.records.newest_version`)."""
    return newest_version(runs["factor_version"].unique())


def _verified_from_runs(runs: pd.DataFrame, version: str | None, enterprise_id: str, year: int) -> tuple[float, dict]:
    """Emissions of the year from stored accounts of one factor version, and where they came from."""
    sel = runs[runs["factor_version"] == version] if version is not None else runs.iloc[0:0]
    if sel.empty:
        raise CarbonError(f"verified_co2_t: no carbon account (carbon_run) of {enterprise_id} in {year}"
                          f"{'' if version is None else f' with factor version {version!r}'}; compute the "
                          "account first or pass verified_co2_t")
    y0, y1 = pd.Timestamp(f"{year}-01-01", tz=TZ), pd.Timestamp(f"{year + 1}-01-01", tz=TZ)
    whole = sel[(sel["start"] == y0) & (sel["end"] == y1)]
    if not whole.empty:
        sel = whole
    else:
        overlap = sel["start"].iloc[1:].to_numpy() < sel["end"].iloc[:-1].to_numpy()
        if overlap.any():
            i = int(np.argmax(overlap)) + 1
            raise CarbonError(f"verified_co2_t: accounts of {enterprise_id} overlap ({sel['start'].iloc[i]:%Y-%m-%d}"
                              f" starts before {sel['end'].iloc[i - 1]:%Y-%m-%d}); pass verified_co2_t")
    covered = float(((sel["end"] - sel["start"]).sum()) / (y1 - y0))
    source = {"from": "carbon_run", "factor_version": version, "runs": len(sel),
              "first_start": sel["start"].min(), "last_end": sel["end"].max(), "covered_frac": covered}
    return float(sel["total_co2_t"].sum()), source


def _monthly(runs: pd.DataFrame, version: str | None) -> pd.Series:
    """Totals of the runs of ``version`` that cover exactly one local calendar month, by month number [t CO2]."""
    sel = runs[runs["factor_version"] == version]
    month = sel[(sel["start"] == sel["start"].dt.normalize()) & (sel["start"].dt.day == 1)
                & (sel["end"] == sel["start"] + pd.offsets.MonthBegin(1))]
    return pd.Series(month["total_co2_t"].to_numpy(), index=pd.Index(month["start"].dt.month.to_numpy(),
                                                                     name="month"), name="co2_t", dtype=float)


def position(engine: Engine, enterprise_id: str, year: int, price_cny_per_t: float,
             verified_co2_t: float | None = None, *, ccer_cap_frac: float = CCER_CAP_FRAC,
             factor_version: str | None = None) -> dict:
    """Compliance position of an enterprise for a year from the store, with the year-end projection.

    Emissions: ``verified_co2_t`` when given. When None, they are taken from the stored carbon accounts
    (``carbon_run``) of the enterprise whose period lies within the year (Asia/Shanghai calendar year), counting
    the :data:`COMPLIANCE_SCOPES` (direct emissions), all of one factor version: ``factor_version`` if given,
    else the newest version stored. If a run of that version covers the whole year it is used alone; otherwise the runs
    are summed (overlapping periods are refused). For a year still under way this is the year to date;
    ``verified_source["covered_frac"]`` says how much of the year the accounts cover.

    Projection inputs: the runs of that version that cover exactly one calendar month give
    ``monthly_co2_t``; last year's monthly runs (same version if one was given, else last year's newest) give
    ``last_year_monthly_co2_t`` when all 12 months are there. :func:`project_year_end` projects them, and
    ``projected_position`` is :func:`compliance_position` of today's holdings against each projected total.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
    enterprise_id : str
    year : int
        Compliance year.
    price_cny_per_t : float
        Price to value the surplus or deficit at [CNY/t].
    verified_co2_t : float, optional
        Verified emissions of the year [t CO2]; None = from ``carbon_run`` as described above.
    ccer_cap_frac : float
        Cap on CCER offsets as a fraction of the allowances due [-].
    factor_version : str, optional
        Factor version of the accounts to use (default: the newest, as described above).

    Returns
    -------
    dict
        ``enterprise_id``, ``year``, ``verified_co2_t`` [t CO2], ``verified_source`` (``{"from": "argument"}``
        or the runs used), ``position`` (:func:`compliance_position`), ``ledger`` (:func:`read_ledger`),
        ``monthly_co2_t`` and ``last_year_monthly_co2_t`` (Series by month number [t CO2], the latter None
        unless complete), ``projection`` (:func:`project_year_end`, None without monthly accounts) and
        ``projected_position`` (``{"linear": ..., "seasonal": ...}`` of :func:`compliance_position`, each
        None where that projection is not available; None as a whole without a projection).

    Raises
    ------
    CarbonError
        for an unknown enterprise, a bad year, price or cap, or (``verified_co2_t`` None) no usable account.
    """
    year = _year(year)
    ledger = read_ledger(engine, enterprise_id, year)
    with engine.connect() as conn:
        runs, prev = _year_runs(conn, enterprise_id, year), _year_runs(conn, enterprise_id, year - 1)
    version = factor_version if factor_version is not None else _newest_version(runs)
    if verified_co2_t is None:
        verified_co2_t, source = _verified_from_runs(runs, version, enterprise_id, year)
    else:
        source = {"from": "argument"}
    pos = compliance_position(ledger, verified_co2_t, price_cny_per_t, ccer_cap_frac)
    monthly = _monthly(runs, version)
    last = _monthly(prev, factor_version if factor_version is not None else _newest_version(prev))
    last = last.sort_index() if len(last) == 12 else None
    projection = project_year_end(monthly, year, last) if len(monthly) else None
    projected = None
    if projection is not None:
        projected = {method: None if p is None or p["year_end_co2_t"] is None else
                     compliance_position(ledger, p["year_end_co2_t"], price_cny_per_t, ccer_cap_frac)
                     for method, p in ((m, projection[m]) for m in ("linear", "seasonal"))}
    return {"enterprise_id": enterprise_id, "year": year, "verified_co2_t": float(verified_co2_t),
            "verified_source": source, "position": pos, "ledger": ledger, "monthly_co2_t": monthly,
            "last_year_monthly_co2_t": last, "projection": projection, "projected_position": projected}
