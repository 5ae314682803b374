"""Demand response and the park's virtual power plant (需求响应 / 虚拟电厂): resources, flexibility, allocation.

Storage and the loads declared with ``params.flex`` in the park model are aggregated into up capacity (less grid
import) and down capacity (more import) per interval; a demand-response event (target, window, price) is split
across them by a linear programme (HiGHS). The customer baseline, delivered reduction and settlement after the
event are :mod:`anning_lib.dispatch.drbaseline`. A *reduction* is positive when the park imports less than its
baseline; storage ``p_kw > 0`` discharges (``docs/glossary.md``). Pure functions, no I/O; user guide
``docs/demand_response.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import cvxpy as cp
import numpy as np
import pandas as pd

from anning_lib.dispatch.optimize import highs_banner_to_stderr
from anning_lib.errors import DispatchError, InfeasibleError

PARK = "park"
"""``enterprise_id`` of park-level resources (the shared storage station)."""
KINDS = ("storage", "curtailable", "shiftable")
RAMP_TIE_BREAK_CNY_PER_KW = 1e-6
"""Tiny cost per kW of change between intervals: among equal-cost allocations, the steadiest [CNY/kW]."""
_TOL_KW = 1e-6


def _num(field: str, v, *, ge: float | None = None, gt: float | None = None, le: float | None = None) -> float:
    """``v`` as a finite float within the bounds, else a DispatchError naming ``field`` and ``v``."""
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
        raise DispatchError(f"{field}: {v!r} is not a finite number")
    for bound, bad, text in ((ge, ge is not None and v < ge, ">="), (gt, gt is not None and v <= gt, ">"),
                             (le, le is not None and v > le, "<=")):
        if bad:
            raise DispatchError(f"{field}: {v!r} must be {text} {bound:g}")
    return float(v)


def _step_h(index, field: str = "index") -> float:
    """The constant step of a tz-aware DatetimeIndex [h]."""
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or len(index) == 0:
        raise DispatchError(f"{field}: expected a non-empty tz-aware DatetimeIndex, got {index!r:.80}")
    if len(index) == 1:
        if index.freq is None:
            raise DispatchError(f"{field}: a single time stamp needs a freq to give the step")
        return pd.Timedelta(index.freq).total_seconds() / 3600.0
    steps = pd.TimedeltaIndex(index[1:] - index[:-1]).unique()
    if len(steps) != 1 or steps[0] <= pd.Timedelta(0):
        raise DispatchError(f"{field}: time stamps must increase by a constant step, got steps {list(steps[:3])}")
    return steps[0].total_seconds() / 3600.0


def _on(series, index: pd.DatetimeIndex, field: str) -> np.ndarray:
    """Values of ``series`` at every stamp of ``index``, none missing."""
    if not isinstance(series, pd.Series) or not isinstance(series.index, pd.DatetimeIndex) \
            or series.index.tz is None:
        raise DispatchError(f"{field}: expected a Series on a tz-aware DatetimeIndex, got {type(series).__name__}")
    vals = pd.to_numeric(series, errors="coerce").astype(float).reindex(index)
    if vals.isna().any():
        raise DispatchError(f"{field}: no value at {vals.index[vals.isna()][0].isoformat()}")
    return vals.to_numpy()


# ---------------------------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class FlexResource:
    """One flexible resource of the virtual power plant.

    Parameters
    ----------
    id, enterprise_id : str
        Device id (``E01-EAF``, ``SES``) and owner (``"park"`` for park-level devices).
    kind : {"storage", "curtailable", "shiftable"}
        Storage moves energy; a curtailable load loses the shed energy; a shiftable one uses
        ``rebound_frac`` of it again after the window.
    up_kw, down_kw, min_reduction_kw : float
        Largest decrease / increase of grid import (storage: inverter limit, counted from idle); smallest
        worthwhile reduction, reported but not enforced by the LP [kW].
    max_duration_h, notice_min : float
        Longest continuous reduction at ``up_kw`` (storage: usable range at full power) [h]; advance notice [min].
    cost_cny_per_kwh, rebound_frac : float
        Cost per kWh of reduction (loads: lost production; storage: degradation) [CNY/kWh]; share of the shed
        energy consumed again after the window [-].
    rated_kw : float, optional
        Rated demand of a load; bounds ``down_kw`` against a baseline [kW].
    energy_kwh, soc_frac, soc_min_frac, soc_max_frac, eta_charge, eta_discharge : float, optional
        Storage only: usable capacity [kWh], state of charge now and its limits [-], efficiencies [-].
    """

    id: str
    enterprise_id: str
    kind: str
    up_kw: float
    down_kw: float = 0.0
    max_duration_h: float = math.inf
    cost_cny_per_kwh: float = 0.0
    rebound_frac: float = 0.0
    notice_min: float = 0.0
    min_reduction_kw: float = 0.0
    rated_kw: float | None = None
    energy_kwh: float | None = None
    soc_frac: float | None = None
    soc_min_frac: float = 0.0
    soc_max_frac: float = 1.0
    eta_charge: float = 1.0
    eta_discharge: float = 1.0

    def __post_init__(self):
        f = f"resource[{self.id}]"
        if self.kind not in KINDS:
            raise DispatchError(f"{f}.kind: {self.kind!r} is not one of {KINDS}")
        for name in ("up_kw", "down_kw", "cost_cny_per_kwh", "notice_min", "min_reduction_kw"):
            _num(f"{f}.{name}", getattr(self, name), ge=0)
        _num(f"{f}.rebound_frac", self.rebound_frac, ge=0, le=1)
        if not (isinstance(self.max_duration_h, (int, float)) and self.max_duration_h > 0):
            raise DispatchError(f"{f}.max_duration_h: {self.max_duration_h!r} must be > 0")
        if self.kind == "storage":
            _num(f"{f}.energy_kwh", self.energy_kwh, gt=0)
            _num(f"{f}.soc_frac", self.soc_frac, ge=0, le=1)
            _num(f"{f}.eta_charge", self.eta_charge, gt=0, le=1)
            _num(f"{f}.eta_discharge", self.eta_discharge, gt=0, le=1)
            if not 0 <= self.soc_min_frac < self.soc_max_frac <= 1:
                raise DispatchError(f"{f}.soc_min_frac: {self.soc_min_frac!r} must be below soc_max_frac "
                                    f"{self.soc_max_frac!r}, both within [0, 1]")

    def deliverable_kwh(self) -> float:
        """Storage: energy it can still deliver at its terminals before ``soc_min_frac`` [kWh]."""
        return max(0.0, self.soc_frac - self.soc_min_frac) * self.energy_kwh * self.eta_discharge

    def absorbable_kwh(self) -> float:
        """Storage: energy it can still take at its terminals before ``soc_max_frac`` [kWh]."""
        return max(0.0, self.soc_max_frac - self.soc_frac) * self.energy_kwh / self.eta_charge


def resources_from_park(park, soc_frac: Mapping[str, float] | None = None,
                        degradation_cny_per_kwh: float = 0.0) -> list[FlexResource]:
    """Every storage (``bess``) and every load with ``params.flex`` of the park model, park-level first.

    Storage gets ``energy_kwh = capacity_kwh * soh_frac``; a shiftable load with rebound ``down_kw =
    min(max_reduction_kw, rated_kw * (1 - load_factor))``, its headroom above the mean running demand.

    Parameters
    ----------
    park : anning_lib.park.schema.Park
        The park model.
    soc_frac : mapping of str to float, optional
        Present state of charge by storage id [-]; default each storage's ``soc_init_frac``.
    degradation_cny_per_kwh : float
        Storage wear per kWh discharged, its ``cost_cny_per_kwh`` [CNY/kWh].
    """
    deg = _num("degradation_cny_per_kwh", degradation_cny_per_kwh, ge=0)
    socs, out = dict(soc_frac or {}), []
    for eid, d in park.iter_devices():
        p = d.p
        if d.type == "bess":
            soc = _num(f"soc_frac[{d.id}]", socs.pop(d.id, p.soc_init_frac), ge=0, le=1)
            e_kwh = p.energy_kwh
            full_h = (p.soc_max_frac - p.soc_min_frac) * e_kwh * p.eta_discharge / p.p_max_kw
            out.append(FlexResource(
                d.id, eid or PARK, "storage", up_kw=p.p_max_kw, down_kw=p.p_max_kw, max_duration_h=full_h,
                cost_cny_per_kwh=deg, energy_kwh=e_kwh, soc_frac=soc, soc_min_frac=p.soc_min_frac,
                soc_max_frac=p.soc_max_frac, eta_charge=p.eta_charge, eta_discharge=p.eta_discharge))
        elif d.type in ("sub_meter", "process_line") and p.flex is not None:
            f = p.flex
            down = 0.0 if f.kind == "curtailable" or f.rebound_frac == 0 else \
                min(f.max_reduction_kw, p.rated_kw * (1.0 - p.load_factor))
            out.append(FlexResource(
                d.id, eid or PARK, f.kind, up_kw=f.max_reduction_kw, down_kw=down, max_duration_h=f.max_duration_h,
                cost_cny_per_kwh=f.cost_cny_per_kwh, rebound_frac=f.rebound_frac, notice_min=f.notice_min,
                min_reduction_kw=f.min_reduction_kw, rated_kw=p.rated_kw))
    if socs:
        bad = next(iter(socs))
        raise DispatchError(f"soc_frac[{bad}]: {bad!r} is not a storage of the park")
    return out


def flexibility(resources: list[FlexResource], index: pd.DatetimeIndex,
                baseline_kw: Mapping[str, pd.Series] | None = None) -> pd.DataFrame:
    """Up and down capacity of each resource and of the whole set, per interval.

    Parameters
    ----------
    resources : list of FlexResource
        The resources (ids unique).
    index : pandas.DatetimeIndex
        Interval starts, tz-aware, constant step.
    baseline_kw : mapping of str to pandas.Series, optional
        Expected demand of a load by resource id [kW]: its reduction is at most this, its increase at most
        ``rated_kw`` minus this.

    Returns
    -------
    pandas.DataFrame
        On ``index``: ``<id>.up_kw``, ``<id>.down_kw``, the power each resource can hold through the whole
        interval (storage: limited by the energy between its state of charge and its limits) [kW];
        ``<id>.up_h``, how long it can hold its full ``up_kw`` (storage: energy-limited) [h]; and
        ``total.up_kw``, ``total.down_kw`` [kW].
    """
    dt_h, n, baseline_kw = _step_h(index), len(index), baseline_kw or {}
    ids = [r.id for r in resources]
    if len(set(ids)) != len(ids):
        raise DispatchError(f"resources: duplicate id {next(i for i in ids if ids.count(i) > 1)!r}")
    cols: dict[str, np.ndarray] = {}
    for r in resources:
        up, down, up_h = np.full(n, r.up_kw), np.full(n, r.down_kw), r.max_duration_h
        if r.kind == "storage":
            up = np.minimum(up, r.deliverable_kwh() / dt_h)
            down = np.minimum(down, r.absorbable_kwh() / dt_h)
            up_h = r.deliverable_kwh() / r.up_kw if r.up_kw > 0 else 0.0
        elif r.id in baseline_kw:
            b = _on(baseline_kw[r.id], index, f"baseline_kw[{r.id}]")
            up = np.minimum(up, np.maximum(b, 0.0))
            if r.rated_kw is not None:
                down = np.minimum(down, np.maximum(r.rated_kw - b, 0.0))
        cols[f"{r.id}.up_kw"], cols[f"{r.id}.down_kw"], cols[f"{r.id}.up_h"] = up, down, np.full(n, up_h)
    out = pd.DataFrame(cols, index=index)
    for side in ("up", "down"):
        out[f"total.{side}_kw"] = sum((cols[f"{i}.{side}_kw"] for i in ids), np.zeros(n))
    return out


# ---------------------------------------------------------------------------------------------- events
def _timestamp(field: str, v) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError):
        raise DispatchError(f"{field}: {v!r} is not a date-time") from None
    if ts is pd.NaT or ts.tz is None:
        raise DispatchError(f"{field}: {v} has no time zone (give an offset such as +08:00)")
    return ts


@dataclass(frozen=True)
class DrEvent:
    """A demand-response call: ``target_kw`` less park grid import over ``[window_start, window_end)``.

    Parameters
    ----------
    event_id : str
        The grid operator's or aggregator's reference.
    window_start, window_end : pandas.Timestamp
        The response window, tz-aware (ISO 8601 text with an offset is accepted).
    target_kw, price_cny_per_kwh, notice_min : float
        Reduction of park grid import to hold in every interval of the window [kW]; compensation per kWh of
        reduction [CNY/kWh]; time between the call and ``window_start`` [min].
    """

    event_id: str
    window_start: pd.Timestamp
    window_end: pd.Timestamp
    target_kw: float
    price_cny_per_kwh: float
    notice_min: float

    def __post_init__(self):
        if not isinstance(self.event_id, str) or not self.event_id.strip():
            raise DispatchError(f"event.event_id: {self.event_id!r} must be a non-empty text")
        start = _timestamp("event.window_start", self.window_start)
        end = _timestamp("event.window_end", self.window_end)
        if end <= start:
            raise DispatchError(f"event.window_end: {end.isoformat()} is not after window_start {start.isoformat()}")
        for name, value in (("window_start", start), ("window_end", end),
                            ("target_kw", _num("event.target_kw", self.target_kw, gt=0)),
                            ("price_cny_per_kwh", _num("event.price_cny_per_kwh", self.price_cny_per_kwh, ge=0)),
                            ("notice_min", _num("event.notice_min", self.notice_min, ge=0))):
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, raw: Mapping) -> DrEvent:
        """An event from a JSON-like mapping; unknown or missing fields are refused."""
        if not isinstance(raw, Mapping):
            raise DispatchError(f"event: expected a mapping, got {type(raw).__name__}")
        names = [f.name for f in fields(cls)]
        for k in [k for k in raw if k not in names] + [k for k in names if k not in raw]:
            raise DispatchError(f"event.{k}: " + ("missing" if k in names else f"unknown field (known: {names})"))
        return cls(**{k: raw[k] for k in names})

    def to_dict(self) -> dict:
        """The event as JSON-ready values."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat()}


@dataclass(frozen=True)
class Allocation:
    """The answer to a :class:`DrEvent`.

    ``kw``: reduction per interval (rows) and resource (columns) [kW]; ``resources``: per resource
    ``enterprise_id, kind, energy_kwh, peak_kw, cost_cny, rebound_kwh``; ``by_enterprise``: ``energy_kwh,
    cost_cny, rebound_kwh, peak_kw`` per enterprise; ``excluded``: resource id -> reason; ``notes``: warnings;
    ``cost_cny``, ``revenue_cny`` (price x allocated energy), ``margin_cny`` [CNY]; ``dt_h``: the step [h].
    """

    event: DrEvent
    kw: pd.DataFrame
    resources: pd.DataFrame
    by_enterprise: pd.DataFrame
    excluded: dict[str, str]
    notes: tuple[str, ...]
    cost_cny: float
    revenue_cny: float
    margin_cny: float
    dt_h: float

    def enterprise_kw(self) -> pd.DataFrame:
        """Reduction per interval and enterprise [kW]."""
        return self.kw.T.groupby(self.resources["enterprise_id"].reindex(self.kw.columns).to_numpy()).sum().T


def _window(event: DrEvent, index: pd.DatetimeIndex | None, step_min: float) -> pd.DatetimeIndex:
    if index is None:
        step = pd.Timedelta(minutes=_num("step_min", step_min, gt=0))
        if (event.window_end - event.window_start) % step != pd.Timedelta(0):
            raise DispatchError(f"event.window_end: {event.window_end.isoformat()} is not a whole number of "
                                f"{step_min:g} min steps after window_start")
        return pd.date_range(event.window_start, event.window_end, freq=step, inclusive="left")
    dt = pd.Timedelta(hours=_step_h(index))
    win = index[(index >= event.window_start) & (index < event.window_end)]
    if len(win) == 0 or win[0] != event.window_start:
        raise DispatchError(f"event.window_start: {event.window_start.isoformat()} is not a stamp of the index")
    if win[-1] + dt != event.window_end:
        raise DispatchError(f"event.window_end: {event.window_end.isoformat()} is not an interval end of the index")
    return pd.DatetimeIndex(win, freq=dt)


def allocate(event: DrEvent, resources: list[FlexResource], index: pd.DatetimeIndex | None = None, *,
             baseline_kw: Mapping[str, pd.Series] | None = None, storage_energy_value_cny_per_kwh: float = 0.0,
             step_min: float = 15) -> Allocation:
    """Least-cost split of an event's target across the resources: a linear programme solved with HiGHS.

    With ``r[i, t] >= 0`` the reduction of resource ``i`` in interval ``t`` of the window [kW], ``dt`` [h]::

        min  sum_i,t c_i r[i,t] dt  (+ RAMP_TIE_BREAK_CNY_PER_KW * sum |r[i,t] - r[i,t-1]|)
        s.t. sum_i r[i,t] = target_kw                         every interval t of the window
             r[i,t] <= up[i,t]                                from flexibility(), with the baseline if given
             sum_t r[i,t] dt / eta_d <= (soc - soc_min) E      storage
             sum_t r[i,t] dt <= up_kw * max_duration_h         curtailable and shiftable loads

    ``c_i = cost_cny_per_kwh`` (+ ``storage_energy_value_cny_per_kwh / eta_d`` for storage). The continuous
    duration limit is relaxed to this energy limit (counting active intervals is not linear); loads allocated
    longer than ``max_duration_h`` at lower power, or below ``min_reduction_kw``, are listed in ``notes``.
    Resources needing more notice than ``event.notice_min`` are excluded.

    Parameters
    ----------
    event : DrEvent
        The call.
    resources : list of FlexResource
        The candidates.
    index : pandas.DatetimeIndex, optional
        Interval grid holding the window; default ``step_min`` [min] steps from ``window_start``.
    baseline_kw : mapping of str to pandas.Series, optional
        Expected demand of loads by resource id, bounding their reduction [kW].
    storage_energy_value_cny_per_kwh : float
        Value of a kWh kept in storage (what recharging it later costs) [CNY/kWh].

    Raises
    ------
    InfeasibleError
        (a DispatchError) ``event.target_kw: X kW asked, at most Y kW available in interval T``, or at most
        Y kW held through the whole window when energy limits bind.
    """
    value = _num("storage_energy_value_cny_per_kwh", storage_energy_value_cny_per_kwh, ge=0)
    win = _window(event, index, step_min)
    dt_h = _step_h(win)
    excluded = {r.id: f"needs {r.notice_min:g} min notice, the event gives {event.notice_min:g} min"
                for r in resources if event.notice_min < r.notice_min}
    active = [r for r in resources if r.id not in excluded]
    n, T, target = len(active), len(win), event.target_kw
    flex = flexibility(active, win, baseline_kw)
    U = np.array([flex[f"{r.id}.up_kw"].to_numpy() for r in active]).reshape(n, T)
    avail = U.sum(axis=0)
    short = np.flatnonzero(avail < target - _TOL_KW)
    if short.size:
        t = short[np.argmin(avail[short])]
        raise InfeasibleError(f"event.target_kw: {target:g} kW asked, at most {avail[t]:.6g} kW available in "
                              f"interval {win[t].isoformat()}")
    c = np.array([res.cost_cny_per_kwh + (value / res.eta_discharge if res.kind == "storage" else 0.0)
                  for res in active])
    kw = pd.DataFrame(_solve(active, U, c, dt_h, target).T, index=win, columns=[res.id for res in active])
    summary, by_ent = _summaries(active, kw, c, dt_h)
    total_cost = float(summary["cost_cny"].sum())
    revenue = event.price_cny_per_kwh * float(summary["energy_kwh"].sum())
    return Allocation(event, kw, summary, by_ent, excluded, _notes(active, kw, dt_h), total_cost, revenue,
                      revenue - total_cost, dt_h)


def _solve(active: list[FlexResource], U: np.ndarray, c: np.ndarray, dt_h: float, target: float) -> np.ndarray:
    """The LP of :func:`allocate`: reductions ``r[i, t]`` [kW] (HiGHS's banner goes to standard error)."""
    n, T = U.shape
    r = cp.Variable((n, T), nonneg=True)
    cons = [r <= U]
    for i, res in enumerate(active):
        if res.kind == "storage":
            cons.append(cp.sum(r[i]) * dt_h <= res.deliverable_kwh())
        elif math.isfinite(res.max_duration_h):
            cons.append(cp.sum(r[i]) * dt_h <= res.up_kw * res.max_duration_h)
    cost = dt_h * cp.sum(c @ r)
    if T > 1:
        cost = cost + RAMP_TIE_BREAK_CNY_PER_KW * cp.sum(cp.abs(cp.diff(r, axis=1)))
    prob = cp.Problem(cp.Minimize(cost), cons + [cp.sum(r, axis=0) == target])
    with highs_banner_to_stderr():
        prob.solve(solver=cp.HIGHS)
    if prob.status != cp.OPTIMAL:
        z = cp.Variable()
        with highs_banner_to_stderr():
            cp.Problem(cp.Maximize(z), cons + [cp.sum(r, axis=0) >= z]).solve(solver=cp.HIGHS)
        raise InfeasibleError(f"event.target_kw: {target:g} kW asked, at most {float(z.value):.6g} kW can be held "
                              "through the whole window (storage energy, max_duration_h)")
    return np.clip(r.value, 0.0, None)


def _summaries(active: list[FlexResource], kw: pd.DataFrame, c: np.ndarray,
               dt_h: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Totals per resource and per enterprise of an allocation (see :class:`Allocation`)."""
    energy = kw.sum() * dt_h
    owner = [res.enterprise_id for res in active]
    summary = pd.DataFrame({"enterprise_id": owner, "kind": [res.kind for res in active],
                            "energy_kwh": energy.to_numpy(), "peak_kw": kw.max().to_numpy(),
                            "cost_cny": c * energy.to_numpy(),
                            "rebound_kwh": [res.rebound_frac * energy[res.id] for res in active]},
                           index=pd.Index(kw.columns, name="resource_id"))
    by_ent = summary.groupby("enterprise_id")[["energy_kwh", "cost_cny", "rebound_kwh"]].sum()
    by_ent["peak_kw"] = kw.T.groupby(np.array(owner)).sum().T.max()
    return summary, by_ent


def _notes(active: list[FlexResource], kw: pd.DataFrame, dt_h: float) -> tuple[str, ...]:
    """Where the LP's relaxations show: reductions below ``min_reduction_kw``, longer than ``max_duration_h``."""
    notes = []
    for res in active:
        on = kw[res.id].to_numpy() > 1e-3
        if res.min_reduction_kw > 0 and (kw[res.id][on] < res.min_reduction_kw - 1e-3).any():
            notes.append(f"{res.id}: reductions below its min_reduction_kw {res.min_reduction_kw:g} kW "
                         "(not enforced by the LP)")
        if res.kind != "storage" and on.sum() * dt_h > res.max_duration_h + 1e-9:
            notes.append(f"{res.id}: reduces over {on.sum() * dt_h:g} h, longer than its max_duration_h "
                         f"{res.max_duration_h:g} h, at lower power")
    return tuple(notes)
