"""The monthly dispatch and demand-response settlement of the park's storages (园区储能调度与需求响应月度结算):
pure settlement arithmetic on 15-minute mean powers, and the report's data from the store.

For each storage of the park model (the shared station behind the park's 110 kV connection and every enterprise
battery behind its main meter, :func:`anning_lib.dispatch.sites.sites_from_park`), over the local month and from
the measured 15-minute rollups of its ``p_kw`` point (> 0 discharges, docs/glossary.md)::

    discharged_kwh[band] = Σ_{q in band} max(p_q, 0) · Δt          charged_kwh[band] = Σ_{q in band} max(-p_q, 0) · Δt
    value_cny            = Σ_q p_q · price_q · Δt                   (discharge earns, charge costs)
    cycles               = discharged_kwh / usable_kwh
    efficiency_frac      = discharged_kwh / charged_kwh              (no state of charge metered)

with Δt = 0.25 h, ``price_q`` the import price of the storage's site at the quarter-hour
(:func:`anning_lib.dispatch.tariff.prices`: the site's own tariff, ``data/tariffs/assignments.yaml``) and
``usable_kwh`` the storage's usable energy, ``capacity_kwh × soh_frac`` (:attr:`BessParams.energy_kwh`, the
one figure the simulator, the optimiser and demand response use). Where the state of charge is metered, the
change of stored energy between the month's ends is taken into account in the round-trip efficiency
(:func:`round_trip_efficiency`). A quarter-hour without a reading counts no energy and no value; the
``coverage_frac`` column says how much of the month was read.

A 15-minute mean nets a charge and a discharge inside the same quarter-hour, so throughput of storages that
change direction within a quarter-hour is slightly under-counted (the storages here hold a setpoint for 15 min).

Plan against actual: the plan in force at a quarter-hour is the newest stored schedule (``dispatch_schedule``,
statuses :data:`PLAN_STATUSES`) whose horizon covers it, as the MPC re-plans every 15 minutes and sends the first
step (:func:`plan_in_force`). Demand-response events are not stored in the database (``anning dispatch dr``
works from JSON files), so the report says so and settles none.

References
----------
.. [1] PyPSA documentation, "Storage Unit Constraints": the energy balance
   ``e_t = e_{t-1} + Δt (η_c c_t - d_t / η_d)`` used by :func:`round_trip_efficiency`.
.. [2] 云发改价格〔2024〕924号 and 云发改价格〔2026〕51号 (Yunnan time-of-use bands and multipliers), through
   ``data/tariffs/``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.carbon.records import month_bounds
from anning_lib.dispatch.sites import sites_from_park
from anning_lib.dispatch.tariff import BANDS, prices
from anning_lib.park.schema import Park, point_tag
from anning_lib.store.schema import TABLES
from anning_lib.store.timeseries import read_series, refresh_rollups

QUARTER_H = 0.25
"""Length of a rollup step [h]."""
STEP = pd.Timedelta("15min")
PLAN_STATUSES = ("advisory", "executed", "approved")
"""Schedule statuses that count as a plan (a ``draft`` was never sent nor proposed to anybody)."""
SOC_WINDOW = pd.Timedelta("15min")
"""The state of charge at a month's end is the reading nearest the bound within this window."""
STORAGE_COLUMNS = (["site", "enterprise_id", "site_name", "storage_id", "name", "tariff_id", "usable_kwh"]
                   + [f"charged_kwh_{b}" for b in BANDS] + [f"discharged_kwh_{b}" for b in BANDS]
                   + ["charged_kwh", "discharged_kwh", "soc_start_frac", "soc_end_frac", "delta_stored_kwh",
                      "cycles", "efficiency_frac", "value_cny", "quarters", "coverage_frac"])
"""Columns of ``settlement_data(...)["storages"]``."""
DEC = {"usable_kwh": 0, "charged_kwh": 0, "discharged_kwh": 0, "cycles": 2, "efficiency_pct": 2, "value_cny": 2,
       "price_cny_per_kwh": 4, **{f"{k}_kwh_{b}": 0 for k in ("charged", "discharged") for b in BANDS}}
"""Decimals of the report's numbers (energy to the kWh, value to the fen)."""


# ============================================================================================ pure: storage
def band_energy(p_kw: pd.Series, band: Iterable[str], dt_h: float = QUARTER_H) -> pd.DataFrame:
    """Energy charged and discharged per tariff band [kWh] (pure).

    Parameters
    ----------
    p_kw : pandas.Series
        mean power per step [kW], > 0 discharges; NaN (no reading) counts nothing.
    band : iterable of str
        the tariff band of each step (``peak``, ``flat``, ``valley``), aligned with ``p_kw``.
    dt_h : float
        step length [h].

    Returns
    -------
    pandas.DataFrame
        index :data:`anning_lib.dispatch.tariff.BANDS`; ``charged_kwh = Σ max(-p, 0) Δt`` and
        ``discharged_kwh = Σ max(p, 0) Δt`` [kWh], both >= 0.
    """
    p = np.asarray(p_kw, dtype=float)
    b = np.asarray(list(band), dtype=object)
    if len(b) != len(p):
        raise ValueError(f"band: {len(b)} values but p_kw has {len(p)}")
    dis = np.where(np.isfinite(p), np.maximum(p, 0.0), 0.0) * dt_h
    chg = np.where(np.isfinite(p), np.maximum(-p, 0.0), 0.0) * dt_h
    rows = {name: (float(chg[b == name].sum()), float(dis[b == name].sum())) for name in BANDS}
    return pd.DataFrame.from_dict(rows, orient="index", columns=["charged_kwh", "discharged_kwh"])


def arbitrage_value_cny(p_kw: pd.Series, price_cny_per_kwh: Iterable[float], dt_h: float = QUARTER_H) -> float:
    """Value of storage operation at the import price: ``Σ p_t · price_t · Δt`` [CNY] (pure).

    A discharging step (``p > 0``) avoids buying ``p Δt`` kWh at that step's price; a charging step buys
    ``-p Δt`` kWh. Steps without a reading (NaN) count nothing. The demand charge and degradation are not in it.
    """
    p = np.asarray(p_kw, dtype=float)
    price = np.asarray(list(price_cny_per_kwh), dtype=float)
    if len(price) != len(p):
        raise ValueError(f"price_cny_per_kwh: {len(price)} values but p_kw has {len(p)}")
    return float(np.nansum(p * price) * dt_h)


def round_trip_efficiency(charged_kwh: float, discharged_kwh: float, delta_stored_kwh: float | None = None) -> float:
    """Measured round-trip efficiency [-] (pure): ``D / C``, corrected by the change of stored energy if known.

    With the stored energy changing by ``ΔE`` [kWh] over the period (state of charge at the end minus at the
    start, times the usable energy), the reservoir balance [1]_ ``ΔE = η_c C - D / η_d`` holds for the period.
    Splitting the round trip evenly, ``η_c = η_d = x``, gives ``C x² - ΔE x - D = 0``, so::

        x = (ΔE + sqrt(ΔE² + 4 C D)) / (2 C),      efficiency = x²

    which is ``D / C`` when ``ΔE = 0``; energy still stored at the end is not counted as lost.

    Parameters
    ----------
    charged_kwh, discharged_kwh : float
        ``C`` and ``D``, energy into and out of the storage at its terminals [kWh], >= 0.
    delta_stored_kwh : float, optional
        ``ΔE`` [kWh]; None (state of charge not metered): ``D / C``.

    Returns
    -------
    float
        NaN when nothing was charged.

    References
    ----------
    .. [1] PyPSA documentation, "Storage Unit Constraints" (energy balance with charge and discharge
       efficiencies, no standing loss).
    """
    c, d = float(charged_kwh), float(discharged_kwh)
    if not c > 0 or not math.isfinite(d):
        return float("nan")
    if delta_stored_kwh is None or not math.isfinite(float(delta_stored_kwh)):
        return d / c
    de = float(delta_stored_kwh)
    x = (de + math.sqrt(de * de + 4.0 * c * d)) / (2.0 * c)
    return x * x


def equivalent_full_cycles(discharged_kwh: float, usable_kwh: float) -> float:
    """Equivalent full cycles ``D / usable_kwh`` [-] (pure; NaN for a storage without usable energy)."""
    return float(discharged_kwh) / float(usable_kwh) if usable_kwh > 0 else float("nan")


def settle_storage(p_kw: pd.Series, price: pd.DataFrame, usable_kwh: float, *, soc_start_frac: float | None = None,
                   soc_end_frac: float | None = None, dt_h: float = QUARTER_H) -> dict:
    """One storage's month (pure).

    Parameters
    ----------
    p_kw : pandas.Series
        15-minute mean power [kW], > 0 discharges, one value per step of ``price``'s index (NaN: no reading).
    price : pandas.DataFrame
        :func:`anning_lib.dispatch.tariff.prices` of the storage's site over the same steps: ``band`` and
        ``import_price_cny_per_kwh`` [CNY/kWh].
    usable_kwh : float
        usable energy of the storage [kWh].
    soc_start_frac, soc_end_frac : float, optional
        state of charge at the period's start and end [-] (both or the correction is left out).
    dt_h : float
        step length [h].

    Returns
    -------
    dict
        ``charged_kwh_<band>``, ``discharged_kwh_<band>``, ``charged_kwh``, ``discharged_kwh`` [kWh];
        ``soc_start_frac``, ``soc_end_frac`` [-] and ``delta_stored_kwh`` [kWh] (None without them);
        ``cycles`` (:func:`equivalent_full_cycles`), ``efficiency_frac`` (:func:`round_trip_efficiency`),
        ``value_cny`` (:func:`arbitrage_value_cny`) and ``quarters`` (steps with a reading). Energies and value
        are NaN when no step has a reading.
    """
    p = pd.Series(np.asarray(p_kw, dtype=float), index=price.index)
    quarters = int(p.notna().sum())
    by_band = band_energy(p, price["band"], dt_h)
    out: dict = {}
    for name in BANDS:
        out[f"charged_kwh_{name}"] = by_band.at[name, "charged_kwh"]
        out[f"discharged_kwh_{name}"] = by_band.at[name, "discharged_kwh"]
    out["charged_kwh"] = float(by_band["charged_kwh"].sum())
    out["discharged_kwh"] = float(by_band["discharged_kwh"].sum())
    have_soc = soc_start_frac is not None and soc_end_frac is not None
    delta = (float(soc_end_frac) - float(soc_start_frac)) * usable_kwh if have_soc else None
    out.update(soc_start_frac=soc_start_frac, soc_end_frac=soc_end_frac, delta_stored_kwh=delta,
               cycles=equivalent_full_cycles(out["discharged_kwh"], usable_kwh),
               efficiency_frac=round_trip_efficiency(out["charged_kwh"], out["discharged_kwh"], delta),
               value_cny=arbitrage_value_cny(p, price["import_price_cny_per_kwh"], dt_h), quarters=quarters)
    if quarters == 0:           # no reading at all: unknown, not zero
        for k in (*[k for k in out if "_kwh_" in k], "charged_kwh", "discharged_kwh", "cycles", "efficiency_frac",
                  "value_cny"):
            out[k] = float("nan")
    return out


def park_totals(storages: pd.DataFrame) -> dict:
    """The park's row of the storage table (pure): sums of the energies, usable energy and value; cycles and
    efficiency of the fleet as one storage (``Σ D / Σ usable``, :func:`round_trip_efficiency` of the sums, with
    the stored-energy change only when every storage has one); ``coverage_frac`` the lowest of the storages."""
    def total(col: str) -> float:
        return float(storages[col].sum(min_count=1)) if len(storages) else float("nan")

    out = {c: total(c) for c in storages.columns if c.startswith(("charged_kwh", "discharged_kwh"))}
    out["usable_kwh"] = total("usable_kwh")
    out["value_cny"] = total("value_cny")
    delta = storages["delta_stored_kwh"]
    d_all = float(delta.astype(float).sum()) if len(delta) and delta.notna().all() else None
    out["delta_stored_kwh"] = d_all
    out["cycles"] = equivalent_full_cycles(out["discharged_kwh"], out["usable_kwh"]) \
        if math.isfinite(out["discharged_kwh"]) else float("nan")
    out["efficiency_frac"] = round_trip_efficiency(out["charged_kwh"], out["discharged_kwh"], d_all) \
        if math.isfinite(out["charged_kwh"]) else float("nan")
    out["coverage_frac"] = float(storages["coverage_frac"].min()) if len(storages) else float("nan")
    return out


def daily_value(p_kw: pd.DataFrame, price_cny_per_kwh: pd.DataFrame, dt_h: float = QUARTER_H) -> pd.DataFrame:
    """Value per local day and storage [CNY] (pure): ``Σ p · price · Δt`` over each day's steps.

    ``p_kw`` and ``price_cny_per_kwh`` are aligned frames (index: local step starts; one column per storage).
    """
    v = (p_kw * price_cny_per_kwh * dt_h).fillna(0.0)
    out = v.groupby(v.index.date).sum()
    out.index = pd.Index([str(d) for d in out.index], name="date")
    return out


# =============================================================================================== pure: plan
def plan_in_force(plans: Iterable[Mapping], start: pd.Timestamp, end: pd.Timestamp,
                  tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """The planned storage power in force at each quarter-hour of ``[start, end)`` [kW] (pure).

    Parameters
    ----------
    plans : iterable of mapping
        stored plans (``dispatch_schedule.plan``: :meth:`Schedule.to_dict` plus ``site``), **oldest first**
        (by horizon start, then id), each with ``horizon_start`` and ``horizon_end`` (aware) added.
    start, end : pandas.Timestamp
        aware bounds.

    Returns
    -------
    pandas.DataFrame
        index the quarter-hours (local) that any plan covers; one column per storage, ``p_kw`` planned =
        ``discharge_kw - charge_kw`` (> 0 discharges) of the newest plan whose horizon covers the step
        (NaN where none of that storage's plans does).

    Notes
    -----
    A later plan replaces an earlier one from its own horizon start on (the MPC re-plans every 15 minutes and
    sends only the first step); steps of a plan outside its ``[horizon_start, horizon_end)`` are ignored.
    """
    s, e = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    lo_s, hi_s = s.to_pydatetime(), e.to_pydatetime()
    cells: dict[tuple[dt.datetime, str], float] = {}
    for plan in plans:
        hs = pd.Timestamp(plan["horizon_start"]).tz_convert("UTC").to_pydatetime()
        he = pd.Timestamp(plan["horizon_end"]).tz_convert("UTC").to_pydatetime()
        lo, hi = max(lo_s, hs), min(hi_s, he)
        if lo >= hi:
            continue
        for step in plan.get("schedule") or []:
            ts = dt.datetime.fromisoformat(step["start"]).astimezone(dt.UTC)
            if not lo <= ts < hi:
                continue
            for dev, v in (step.get("storage") or {}).items():
                cells[(ts, dev)] = float(v["discharge_kw"]) - float(v["charge_kw"])
    if not cells:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz=tz, name="ts"))
    ser = pd.Series(cells)
    wide = ser.unstack()
    wide.index = pd.DatetimeIndex(pd.to_datetime(wide.index, utc=True), name="ts").tz_convert(tz)
    return wide.sort_index().sort_index(axis=1)


def plan_vs_measured(planned_kw: pd.DataFrame, measured_kw: pd.DataFrame, dt_h: float = QUARTER_H) -> pd.DataFrame:
    """Planned against measured energy of each storage over the quarter-hours its plan covers (pure).

    Parameters
    ----------
    planned_kw : pandas.DataFrame
        :func:`plan_in_force` (columns storage ids) [kW].
    measured_kw : pandas.DataFrame
        15-minute mean power, columns storage ids [kW]; same index type (local quarter-hours).

    Returns
    -------
    pandas.DataFrame
        one row per storage with a plan: ``storage_id``, ``quarters`` (planned steps that also have a reading),
        ``planned_discharged_kwh``, ``measured_discharged_kwh``, ``planned_charged_kwh``, ``measured_charged_kwh``
        [kWh] over those steps, and ``discharge_deviation_frac`` = measured / planned discharge - 1 [-]
        (NaN when nothing was planned).
    """
    rows = []
    for dev in planned_kw.columns:
        plan = planned_kw[dev].dropna()
        meas = measured_kw[dev].reindex(plan.index) if dev in measured_kw else pd.Series(np.nan, index=plan.index)
        both = meas.notna()
        plan, meas = plan[both].to_numpy(), meas[both].to_numpy()
        pd_kwh = float(np.maximum(plan, 0).sum() * dt_h)
        md_kwh = float(np.maximum(meas, 0).sum() * dt_h)
        rows.append({"storage_id": dev, "quarters": int(both.sum()), "planned_discharged_kwh": pd_kwh,
                     "measured_discharged_kwh": md_kwh,
                     "planned_charged_kwh": float(np.maximum(-plan, 0).sum() * dt_h),
                     "measured_charged_kwh": float(np.maximum(-meas, 0).sum() * dt_h),
                     "discharge_deviation_frac": md_kwh / pd_kwh - 1.0 if pd_kwh > 0 else float("nan")})
    return pd.DataFrame(rows, columns=["storage_id", "quarters", "planned_discharged_kwh", "measured_discharged_kwh",
                                       "planned_charged_kwh", "measured_charged_kwh", "discharge_deviation_frac"])


def count_by(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Rows of ``df`` counted by ``cols`` (pure): ``cols`` + ``n``, sorted by ``cols``; missing values as ``""``."""
    if df.empty:
        return pd.DataFrame(columns=[*cols, "n"])
    return (df[cols].fillna("").astype(str).value_counts().rename("n").reset_index()
            .sort_values(cols).reset_index(drop=True))


# ================================================================================================== store
def storage_list(park: Park, data_dir: Path) -> list[dict]:
    """Every storage of the park model with its site and tariff: the shared station first, then the enterprises'
    batteries in park order. Each: ``site`` (``park`` or the enterprise id), ``enterprise_id`` (None for the
    park), ``device`` (:class:`Device`), ``tariff``, ``bands``, ``multipliers``."""
    out = []
    for site in sites_from_park(park, data_dir):
        for d in site.storages:
            out.append({"site": site.connection, "enterprise_id": None if site.connection == "park" else
                        site.connection, "device": d, "tariff": site.tariff, "bands": site.bands,
                        "multipliers": site.multipliers})
    return sorted(out, key=lambda r: r["site"] != "park")


def _has_point(device, point_id: str) -> bool:
    return any(p.id == point_id for p in device.points)


def soc_at_ends(engine: Engine, tags: list[str], start: pd.Timestamp, end: pd.Timestamp,
                tz: str = "Asia/Shanghai") -> dict[str, tuple[float | None, float | None]]:
    """State of charge at the period's ends [-] (I/O): the first raw reading in ``[start, start + 15 min)`` and the
    last in ``[end - 15 min, end)`` of each tag; None where there is none."""
    first = read_series(engine, tags, start, start + SOC_WINDOW, tz=tz)
    last = read_series(engine, tags, end - SOC_WINDOW, end, tz=tz)

    def pick(frame: pd.DataFrame, tag: str, pos: int) -> float | None:
        s = frame[tag].dropna()
        return float(s.iloc[pos]) if len(s) else None

    return {tag: (pick(first, tag, 0), pick(last, tag, -1)) for tag in tags}


def month_schedules(engine: Engine, start: pd.Timestamp, end: pd.Timestamp, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Schedules whose horizon starts in ``[start, end)`` (I/O): ``id, site, status, strategy, horizon_start``
    (local), ``approved_by`` (user name, None if not approved), ``approved_by_name`` (display name)."""
    s, users = TABLES["dispatch_schedule"], TABLES["app_user"]
    q = (sa.select(s.c.id, s.c.plan["site"].as_string().label("site"), s.c.status, s.c.strategy, s.c.horizon_start,
                   users.c.username.label("approved_by"), users.c.display_name.label("approved_by_name"))
         .outerjoin(users, users.c.id == s.c.approved_by)
         .where(s.c.horizon_start >= start.to_pydatetime(), s.c.horizon_start < end.to_pydatetime())
         .order_by(s.c.id))
    cols = ["id", "site", "status", "strategy", "horizon_start", "approved_by", "approved_by_name"]
    with engine.connect() as conn:
        df = pd.DataFrame([tuple(r) for r in conn.execute(q)], columns=cols)
    df["horizon_start"] = pd.to_datetime(df["horizon_start"], utc=True).dt.tz_convert(tz)
    return df


def month_plans(engine: Engine, start: pd.Timestamp, end: pd.Timestamp) -> Iterable[dict]:
    """The plans (statuses :data:`PLAN_STATUSES`) whose horizon overlaps ``[start, end)``, oldest first, each with
    ``horizon_start`` and ``horizon_end`` (I/O; streamed one row at a time: a month of MPC plans is large)."""
    s = TABLES["dispatch_schedule"]
    q = (sa.select(s.c.horizon_start, s.c.horizon_end, s.c.plan)
         .where(s.c.status.in_(PLAN_STATUSES), s.c.horizon_start < end.to_pydatetime(),
                s.c.horizon_end > start.to_pydatetime())
         .order_by(s.c.horizon_start, s.c.id))
    with engine.connect() as conn:
        for r in conn.execution_options(stream_results=True, yield_per=200).execute(q):
            yield {**(r.plan or {}), "horizon_start": r.horizon_start, "horizon_end": r.horizon_end}


def month_commands(engine: Engine, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Setpoint commands due in ``[start, end)`` (I/O): ``device_id, mode, status, issued_by`` (user name; None:
    the control loop)."""
    c, users = TABLES["dispatch_command"], TABLES["app_user"]
    q = (sa.select(c.c.device_id, c.c.mode, c.c.status, users.c.username.label("issued_by"))
         .outerjoin(users, users.c.id == c.c.issued_by)
         .where(c.c.due_at >= start.to_pydatetime(), c.c.due_at < end.to_pydatetime()))
    with engine.connect() as conn:
        return pd.DataFrame([tuple(r) for r in conn.execute(q)], columns=["device_id", "mode", "status", "issued_by"])


def settlement_data(engine: Engine, park: Park, month: str, *, tz: str = "Asia/Shanghai",
                    data_dir: Path | None = None, refresh: bool = True) -> dict:
    """Everything the monthly dispatch settlement report shows (I/O: reads the store; refreshes the month's
    rollups of the storages' power points first unless ``refresh`` is False).

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
    park : Park
    month : str
        ``YYYY-MM``, local (``tz``).
    data_dir : Path, optional
        reference data (tariffs); default the settings' ``data_dir``.

    Returns
    -------
    dict
        ``month``; ``start``, ``end`` (local bounds); ``quarters`` (quarter-hours in the month);
        ``storages`` (:data:`STORAGE_COLUMNS`, one row per storage, :func:`settle_storage`; ``site_name`` the
        enterprise's name, None for the park; ``usable_kwh`` [kWh], ``value_cny`` [CNY]); ``totals``
        (:func:`park_totals`); ``tariffs`` (``tariff_id, name, band, price_cny_per_kwh``: the month's mean import
        price per band [CNY/kWh], each tariff used); ``daily``
        (:func:`daily_value`, columns storage ids) [CNY]; ``schedules`` (:func:`month_schedules`);
        ``schedule_counts`` (by site and status), ``approvals`` (approved schedules by approver: ``approved_by,
        approved_by_name, n``); ``commands`` (by ``mode, status``: ``n``); ``plan`` (:func:`plan_vs_measured`,
        empty without a stored plan); ``dr_events_stored`` (False: the store has no table for them);
        ``produced_at``.

    Raises
    ------
    CarbonError
        for a malformed month.
    """
    from anning_lib.config import get_settings

    data_dir = Path(data_dir or get_settings().data_dir)
    start, end = month_bounds(month, tz)
    stores = storage_list(park, data_dir)
    p_tags = [point_tag(r["device"].id, "p_kw") for r in stores]
    soc_tags = [point_tag(r["device"].id, "soc_frac") for r in stores if _has_point(r["device"], "soc_frac")]
    if refresh and p_tags:
        refresh_rollups(engine, start, end, tags=p_tags)
    index = pd.date_range(start, end, freq=STEP, inclusive="left").tz_convert(tz)
    means = read_series(engine, p_tags, start, end, resolution="15min", tz=tz).reindex(index) if p_tags else \
        pd.DataFrame(index=index)
    socs = soc_at_ends(engine, soc_tags, start, end, tz) if soc_tags else {}

    rows, price_cols, tariffs = [], {}, {}
    for r in stores:
        d = r["device"]
        price = prices(r["tariff"], r["bands"], r["multipliers"], index, tz)
        s0, s1 = socs.get(point_tag(d.id, "soc_frac"), (None, None))
        usable = float(d.p.energy_kwh)
        eid = r["enterprise_id"]
        row = {"site": r["site"], "enterprise_id": eid, "site_name": park.enterprise(eid).name if eid else None,
               "storage_id": d.id, "name": d.name,
               "tariff_id": r["tariff"].id, "usable_kwh": usable}
        row.update(settle_storage(means[point_tag(d.id, "p_kw")], price, usable, soc_start_frac=s0, soc_end_frac=s1))
        row["coverage_frac"] = row["quarters"] / len(index) if len(index) else float("nan")
        rows.append(row)
        price_cols[d.id] = price["import_price_cny_per_kwh"]
        if r["tariff"].id not in tariffs:
            mean = price.groupby("band")["import_price_cny_per_kwh"].mean()
            tariffs[r["tariff"].id] = [(r["tariff"].id, r["tariff"].name, b, float(mean[b])) for b in BANDS
                                       if b in mean]
    storages = pd.DataFrame(rows, columns=STORAGE_COLUMNS)
    p_by_storage = means.set_axis([r["device"].id for r in stores], axis=1)

    schedules = month_schedules(engine, start, end, tz)
    approved = schedules[schedules["status"] == "approved"]
    planned = plan_in_force(month_plans(engine, start, end), start, end, tz)
    commands = month_commands(engine, start, end)
    return {"month": month, "start": start.tz_convert(tz), "end": end.tz_convert(tz), "quarters": len(index),
            "storages": storages, "totals": park_totals(storages),
            "tariffs": pd.DataFrame([x for v in tariffs.values() for x in v],
                                    columns=["tariff_id", "name", "band", "price_cny_per_kwh"]),
            "daily": daily_value(p_by_storage, pd.DataFrame(price_cols, index=index)),
            "schedules": schedules, "schedule_counts": count_by(schedules, ["site", "status"]),
            "approvals": count_by(approved, ["approved_by", "approved_by_name"]),
            "commands": count_by(commands, ["mode", "status"]),
            "plan": plan_vs_measured(planned, p_by_storage),
            "dr_events_stored": False,
            "produced_at": dt.datetime.now(ZoneInfo(tz)).replace(microsecond=0)}
