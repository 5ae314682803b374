"""Measurement and settlement of a demand-response event (需求响应效果核定与结算).

After an event allocated by :func:`anning_lib.dispatch.vpp.allocate`, a customer baseline load (what each
enterprise would have drawn without the call) gives the delivered reduction, and the settlement turns it into a
payment or a penalty per enterprise. A *reduction* is positive when less is imported than the baseline
(``docs/glossary.md``). Pure functions, no I/O; user guide ``docs/demand_response.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta

import numpy as np
import pandas as pd

from anning_lib.dispatch.vpp import _TOL_KW, Allocation, DrEvent, _num, _on
from anning_lib.errors import DispatchError
from anning_lib.sim.loads import is_workday


# ---------------------------------------------------------------------------------------------- baseline
def _local_time(field: str, v) -> time:
    try:
        return v if isinstance(v, time) else time.fromisoformat(str(v))
    except ValueError:
        raise DispatchError(f"{field}: {v!r} is not a time of day such as '14:00'") from None


@dataclass(frozen=True)
class _DayWindow:
    """The event window, and the same-day adjustment period before it, on any local day."""

    start: time
    end: time
    step: pd.Timedelta
    tz: str
    adjustment_h: float
    gap_h: float

    def stamps(self, day: date, adjust: bool = False) -> pd.DatetimeIndex:
        """Interval starts of the window (or, with ``adjust``, of the adjustment period) on ``day``."""
        a, b = (pd.Timestamp.combine(day, t).tz_localize(self.tz) for t in (self.start, self.end))
        if adjust:
            a, b = a - pd.Timedelta(hours=self.gap_h + self.adjustment_h), a - pd.Timedelta(hours=self.gap_h)
        return pd.date_range(a, b, freq=self.step, inclusive="left")


def _history(history_kw, tz: str) -> pd.Series:
    """The metered history as floats, sorted, without gaps or duplicate stamps, in local time."""
    if not isinstance(history_kw, pd.Series) or not isinstance(history_kw.index, pd.DatetimeIndex) \
            or history_kw.index.tz is None:
        raise DispatchError("history_kw: expected a Series on a tz-aware DatetimeIndex")
    hist = pd.to_numeric(history_kw, errors="coerce").astype(float).dropna().sort_index()
    hist = hist[~hist.index.duplicated()].tz_convert(tz)
    if len(hist) < 2:
        raise DispatchError(f"history_kw: {len(hist)} values, too few for a baseline")
    return hist


def _like_days(hist: pd.Series, event_day: date, win: _DayWindow, *, n_days: int, lookback: int, select: str,
               exclude, adjust: bool) -> tuple[np.ndarray, np.ndarray]:
    """Window values and adjustment-period values (rows) of the ``n_days`` most recent complete like days."""
    kind, rows, adj_rows = is_workday(event_day), [], []
    for k in range(1, lookback + 1):
        d = event_day - timedelta(days=k)
        if d in exclude or (select == "similar" and is_workday(d) != kind):
            continue
        vals = hist.reindex(win.stamps(d)).to_numpy()
        adj = hist.reindex(win.stamps(d, adjust=True)).to_numpy() if adjust else np.zeros(0)
        if not (np.isnan(vals).any() or np.isnan(adj).any()):
            rows.append(vals), adj_rows.append(adj)
        if len(rows) == n_days:
            break
    if len(rows) < n_days:
        what = ("working" if kind else "non-working") if select == "similar" else "usable"
        raise DispatchError(f"history_kw: only {len(rows)} complete {what} days in the {lookback} days before "
                            f"{event_day.isoformat()}, n_days={n_days} needed")
    return np.array(rows), np.array(adj_rows)


def _same_day_shift(hist: pd.Series, event_day: date, win: _DayWindow, adj_rows: np.ndarray, base: np.ndarray,
                    cap_frac: float | None) -> float:
    """Additive adjustment: event day minus like days over the adjustment period, capped if asked [kW]."""
    today = hist.reindex(win.stamps(event_day, adjust=True))
    if today.isna().any():
        raise DispatchError(f"history_kw: no value at {today.index[today.isna()][0].isoformat()}, needed "
                            "for the same-day adjustment")
    shift = float(today.mean() - np.mean(adj_rows))
    if cap_frac is not None:
        cap = _num("adjustment_cap_frac", cap_frac, ge=0) * abs(float(base.mean()))
        shift = float(np.clip(shift, -cap, cap))
    return shift


def customer_baseline(history_kw: pd.Series, event_day: date, window: tuple, *, n_days: int = 10,
                      select: str = "similar", exclude: frozenset[date] | set[date] = frozenset(),
                      adjustment: str | None = None, adjustment_h: float = 2.0, adjustment_gap_h: float = 1.0,
                      adjustment_cap_frac: float | None = None, lookback_days: int = 60,
                      tz: str = "Asia/Shanghai") -> pd.Series:
    """Customer baseline load (CBL): the mean of the ``n_days`` most recent like days, optionally adjusted.

    Day matching ("N of N", e.g. "10 of 10"): going back from the day before ``event_day`` (at most
    ``lookback_days``), keep the days of the event day's type — working or non-working in the Chinese calendar
    with its holidays and weekends worked in lieu (:func:`anning_lib.sim.loads.is_workday`) — that are not in
    ``exclude`` and have every interval of the window (and of the adjustment period) in ``history_kw``; average
    the first ``n_days`` interval by interval. The additive same-day adjustment adds ``mean(event day) -
    mean(those days)`` over the ``adjustment_h`` hours ending ``adjustment_gap_h`` before the window, at most
    ``adjustment_cap_frac`` times the mean unadjusted baseline either way.

    Parameters
    ----------
    history_kw : pandas.Series
        Metered demand, tz-aware DatetimeIndex, interval means labelled at their start [kW].
    event_day : datetime.date
        The event's local day.
    window : (datetime.time or str, datetime.time or str)
        Local start and end of the event window on that day (``"14:00"``), end after start.
    n_days, lookback_days : int
        Like days averaged, and calendar days searched for them [d].
    select : {"similar", "all"}
        Days of the same type only, or every day.
    exclude : set of datetime.date
        Days never used (earlier event days, outages).
    adjustment : {None, "additive"}
        Same-day adjustment.
    adjustment_h, adjustment_gap_h, adjustment_cap_frac : float
        Length of the adjustment period and its gap before the window [h]; largest adjustment as a fraction
        of the mean unadjusted baseline, None for no cap [-].
    tz : str
        Time zone of the days and the window.

    Returns
    -------
    pandas.Series
        ``baseline_kw`` on the window's interval starts of ``event_day``, local time [kW].

    References
    ----------
    - PJM, Manual 11: Energy & Ancillary Services Market Operations, Customer Baseline Load (CBL) for economic
      load response: like-day averages with a same-day additive adjustment.
    - NAESB WEQ-015, Measurement and Verification of Wholesale Electricity Demand Response: Baseline Type-I
      (interval-metered baseline from historical like days).
    - EnerNOC, The Demand Response Baseline (white paper): averaging and day-matching baselines ("10 of 10")
      and same-day adjustments.
    """
    n_days, lookback = int(_num("n_days", n_days, ge=1)), int(_num("lookback_days", lookback_days, ge=1))
    if select not in ("similar", "all"):
        raise DispatchError(f"select: {select!r} is not 'similar' or 'all'")
    if adjustment not in (None, "additive"):
        raise DispatchError(f"adjustment: {adjustment!r} is not None or 'additive'")
    adj_h, gap_h = _num("adjustment_h", adjustment_h, gt=0), _num("adjustment_gap_h", adjustment_gap_h, ge=0)
    hist = _history(history_kw, tz)
    t0, t1 = _local_time("window[0]", window[0]), _local_time("window[1]", window[1])
    if t1 <= t0:
        raise DispatchError(f"window[1]: {t1.isoformat()} is not after window[0] {t0.isoformat()}")
    step = pd.Series(hist.index[1:] - hist.index[:-1]).mode().iloc[0]
    win = _DayWindow(t0, t1, step, tz, adj_h, gap_h)
    rows, adj_rows = _like_days(hist, event_day, win, n_days=n_days, lookback=lookback, select=select,
                                exclude=exclude, adjust=adjustment is not None)
    base = rows.mean(axis=0)
    if adjustment == "additive":
        base = base + _same_day_shift(hist, event_day, win, adj_rows, base, adjustment_cap_frac)
    return pd.Series(base, index=win.stamps(event_day), name="baseline_kw")


def delivered_reduction(baseline_kw: pd.Series, measured_kw: pd.Series) -> pd.Series:
    """Delivered reduction ``baseline - measured`` per interval of the baseline [kW]; negative if more was used.

    Parameters
    ----------
    baseline_kw : pandas.Series
        Baseline on the event intervals, tz-aware [kW].
    measured_kw : pandas.Series
        Metered demand with a value at every baseline stamp [kW].
    """
    base = _on(baseline_kw, getattr(baseline_kw, "index", None), "baseline_kw")
    return pd.Series(base - _on(measured_kw, baseline_kw.index, "measured_kw"), index=baseline_kw.index,
                     name="reduction_kw")


# ---------------------------------------------------------------------------------------------- settlement
def _energies(allocation: Allocation, baseline_by_enterprise: Mapping[str, pd.Series],
              measured_by_enterprise: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Allocated, baseline, measured and delivered kWh of each enterprise with an allocation."""
    dt_h, win, rows = allocation.dt_h, allocation.kw.index, {}
    for eid, alloc_kwh in allocation.by_enterprise["energy_kwh"].items():
        if alloc_kwh <= _TOL_KW:
            continue
        series = []
        for name, given in (("baseline_by_enterprise", baseline_by_enterprise),
                            ("measured_by_enterprise", measured_by_enterprise)):
            if eid not in given:
                raise DispatchError(f"{name}[{eid}]: missing; enterprise {eid} has {alloc_kwh:g} kWh allocated")
            series.append(_on(given[eid], win, f"{name}[{eid}]"))
        base, meas = series
        rows[eid] = [alloc_kwh, base.sum() * dt_h, meas.sum() * dt_h, (base - meas).sum() * dt_h]
    return pd.DataFrame.from_dict(rows, orient="index", dtype=float,
                                  columns=["allocated_kwh", "baseline_kwh", "measured_kwh", "delivered_kwh"])


def settle(event: DrEvent, allocation: Allocation, baseline_by_enterprise: Mapping[str, pd.Series],
           measured_by_enterprise: Mapping[str, pd.Series], *, pay_cap_frac: float = 1.2,
           min_performance_frac: float = 0.5, penalty_frac: float = 0.5) -> pd.DataFrame:
    """Settlement of an event for each enterprise with an allocation, and a ``TOTAL`` row.

    Rule (configurable ASSUMPTIONS, not checked against Yunnan's DR rules): ``performance_frac = delivered /
    allocated``; at or above ``min_performance_frac`` the enterprise is paid ``price * min(max(delivered, 0),
    pay_cap_frac * allocated)``; below it nothing is paid and it owes ``penalty_frac * price * (allocated -
    max(delivered, 0))``; ``net_cny = payment_cny - penalty_cny``.

    Parameters
    ----------
    event : DrEvent
        The event; its ``event_id`` must be the allocation's.
    allocation : Allocation
        What each enterprise was asked for.
    baseline_by_enterprise, measured_by_enterprise : mapping of str to pandas.Series
        Baseline and metered grid import of each allocated enterprise on the window's intervals [kW] (park-level
        storage, ``"park"``: baseline 0, measured ``-p_kw``).
    pay_cap_frac, min_performance_frac, penalty_frac : float
        Paid-energy cap as a multiple of the allocation, performance below which the penalty applies, and
        penalty per kWh short as a fraction of the price [-].

    Returns
    -------
    pandas.DataFrame
        Index enterprise ids and ``TOTAL``; ``allocated_kwh, baseline_kwh, measured_kwh, delivered_kwh,
        paid_kwh`` [kWh], ``performance_frac`` [-], ``payment_cny, penalty_cny, net_cny`` [CNY].
    """
    if event.event_id != allocation.event.event_id:
        raise DispatchError(f"event.event_id: {event.event_id!r} is not the allocation's "
                            f"{allocation.event.event_id!r}")
    cap = _num("pay_cap_frac", pay_cap_frac, ge=1)
    min_perf = _num("min_performance_frac", min_performance_frac, ge=0, le=1)
    pen = _num("penalty_frac", penalty_frac, ge=0)
    price = event.price_cny_per_kwh
    out = _energies(allocation, baseline_by_enterprise, measured_by_enterprise)
    out["performance_frac"] = out["delivered_kwh"] / out["allocated_kwh"]
    ok, delivered = out["performance_frac"] >= min_perf, out["delivered_kwh"].clip(lower=0.0)
    out["paid_kwh"] = np.where(ok, np.minimum(delivered, cap * out["allocated_kwh"]), 0.0)
    out["payment_cny"] = price * out["paid_kwh"]
    out["penalty_cny"] = np.where(ok, 0.0, pen * price * (out["allocated_kwh"] - delivered))
    out["net_cny"] = out["payment_cny"] - out["penalty_cny"]
    total = out.sum()
    total["performance_frac"] = total["delivered_kwh"] / total["allocated_kwh"] if len(out) else math.nan
    out.loc["TOTAL"] = total
    out.index.name = "enterprise_id"
    return out
