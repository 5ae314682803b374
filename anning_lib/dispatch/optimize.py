"""The storage dispatch optimiser: a linear programme in cvxpy, solved exactly by HiGHS.

Built like PyPSA's ``linopf``: a :class:`DispatchModel` holds the variables and the cvxpy Parameters, and small
``add_*_constraints`` functions each add one family of constraints, so that each can be tested alone. The model is
written in DPP form (Parameters enter only affinely), so a re-solve with new loads, prices or states of charge
reuses the compiled problem: the MPC's warm solves skip cvxpy's canonicalisation.

For one billing connection over steps t = 1..T of length dt [h], storages s, all powers >= 0 [kW]::

    min  sum_t dt * [(price_t + carbon_t) * imp_t - export_price_t * exp_t + sum_s deg_s * (c_st + d_st)]
         + demand_charge * (peak + over)
    s.t. imp_t - exp_t = load_t - pv_t + curt_t + sum_s (c_st - d_st)          (balance)
         0 <= curt_t <= pv_t,  imp_t <= import_limit,  exp_t <= export_limit     (grid, PV)
         e_st = e_s,t-1 + dt * (eta_c,s * c_st - d_st / eta_d,s),  e_s0 given     (energy)
         e_min,s <= e_st <= e_max,s,  e_sT >= e_final,s,  c_st, d_st <= P_s      (storage)
         peak >= imp_t,  peak >= peak_so_far                                     (demand)
         over >= imp_t - cap_t,  cap_t = max(threshold - margin_t, net_t)        (demand threshold)

The threshold term (``tariff.demand_threshold_kw``, none by default) is for noisy loads. An EAF's heats set the
month's peak in a quarter-hour no forecast sees, and storage charging into such a quarter-hour sets a new peak.
With a threshold (the MPC uses a quantile of the recent load and relies on the peak guard rather than a margin; a
case file may add a margin for load the forecast missed), raising the import above ``threshold - margin_t`` (or
above the forecast load alone where that is higher) costs the demand charge as if it set a new peak. ``over`` is
a planning penalty only: the reported demand cost is the charge on the schedule's actual peak.

Simultaneous charge and discharge: it wastes energy, so the LP has no reason to do it unless wasting energy has
a value (a negative price) or costs nothing (zero degradation cost with surplus PV, where it ties with
curtailment). Importing and exporting at once pays when export is dearer than import. Rather than rely on
prices, every LP answer is checked: if any step charges and discharges the same storage, or imports and exports,
the case is solved again as a MILP with binaries per step (``c <= P u``, ``d <= P (1 - u)``,
``imp <= M v``, ``exp <= export_limit (1 - v)``), and the answer says so (``exclusive: "milp"``).

References
----------
T. Brown, J. Hörsch, D. Schlachtberger, "PyPSA: Python for Power System Analysis", J. Open Research Software 6
(2018), storage unit constraints. S. Diamond, S. Boyd, "CVXPY", JMLR 17 (2016); A. Agrawal et al., "Differentiable
convex optimization layers" (DPP), NeurIPS 2019. Q. Huangfu, J. Hall, "Parallelizing the dual revised simplex
method", Math. Prog. Comp. 10 (2018) (HiGHS).
"""

from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np

from anning_lib.dispatch.case import DispatchCase
from anning_lib.dispatch.schedule import Schedule, make_schedule
from anning_lib.errors import InfeasibleError, SolverFailedError

SIMULTANEOUS_TOL_KW = 1e-3
"""Charge and discharge both above this in one step count as simultaneous [kW]."""


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class DispatchModel:
    """Variables, Parameters and constraints of one problem shape (steps, storages, step length)."""

    n: int
    s: int
    dt_h: float
    exclusive: bool = False
    constraints: list = field(default_factory=list)

    def __post_init__(self):
        n, s = self.n, self.s
        shp = (max(s, 1), n)   # cvxpy has no zero-size variables: one idle storage stands in for none
        self.imp = cp.Variable(n, nonneg=True, name="grid_import_kw")
        self.exp = cp.Variable(n, nonneg=True, name="grid_export_kw")
        self.curt = cp.Variable(n, nonneg=True, name="pv_curtailed_kw")
        self.c = cp.Variable(shp, nonneg=True, name="charge_kw")
        self.d = cp.Variable(shp, nonneg=True, name="discharge_kw")
        self.e = cp.Variable(shp, name="energy_kwh")
        self.peak = cp.Variable(nonneg=True, name="peak_import_kw")
        P = cp.Parameter
        self.load, self.pv = P(n, name="load_kw"), P(n, nonneg=True, name="pv_kw")
        self.price, self.export_price = P(n, name="import_price"), P(n, name="export_price")
        self.demand_charge, self.peak_so_far = P(nonneg=True), P(nonneg=True)
        self.cap = P(n, name="import_cap_kw")
        self.imp_max = P(n, nonneg=True, name="import_max_kw")    # big-M of the import binary
        self.over = cp.Variable(nonneg=True, name="over_cap_kw")
        self.import_limit, self.export_limit = P(nonneg=True), P(nonneg=True)
        self.p_max = P(shp, nonneg=True, name="power_kw")
        self.eta_c, self.inv_eta_d = P(shp, nonneg=True), P(shp, nonneg=True)
        self.deg = P(shp, nonneg=True, name="degradation_cny_per_kwh")
        self.e_min, self.e_max = P(shp, name="e_min_kwh"), P(shp, name="e_max_kwh")
        self.e0, self.e_final = P(max(s, 1), name="e0_kwh"), P(max(s, 1), name="e_final_kwh")
        self.problem: cp.Problem | None = None


def add_balance_constraints(m: DispatchModel) -> None:
    """Power balance at the connection and PV curtailment within the PV output."""
    m.constraints += [m.imp - m.exp == m.load - m.pv + m.curt + cp.sum(m.c, axis=0) - cp.sum(m.d, axis=0),
                      m.curt <= m.pv]


def add_grid_constraints(m: DispatchModel) -> None:
    """Import and export limits of the connection."""
    m.constraints += [m.imp <= m.import_limit, m.exp <= m.export_limit]


def add_storage_power_constraints(m: DispatchModel) -> None:
    """Charge and discharge within each storage's power rating."""
    m.constraints += [m.c <= m.p_max, m.d <= m.p_max]


def add_storage_energy_constraints(m: DispatchModel) -> None:
    """Energy conservation with charge and discharge efficiencies, energy bounds and the terminal energy."""
    flow = m.dt_h * (cp.multiply(m.eta_c, m.c) - cp.multiply(m.inv_eta_d, m.d))
    m.constraints += [m.e[:, 0] == m.e0 + flow[:, 0]]
    if m.n > 1:
        m.constraints += [m.e[:, 1:] == m.e[:, :-1] + flow[:, 1:]]
    m.constraints += [m.e >= m.e_min, m.e <= m.e_max, m.e[:, -1] >= m.e_final]


def add_demand_constraints(m: DispatchModel) -> None:
    """The billed peak: at least every step's import and the peak already set this billing period."""
    m.constraints += [m.peak >= m.imp, m.peak >= m.peak_so_far, m.over >= m.imp - m.cap]


def add_exclusive_constraints(m: DispatchModel) -> None:
    """Binaries per step: each storage charges or discharges, never both; the connection imports or exports,
    never both (MILP)."""
    u = cp.Variable(m.c.shape, boolean=True, name="charging")
    v = cp.Variable(m.n, boolean=True, name="importing")
    m.constraints += [m.c <= cp.multiply(m.p_max, u), m.d <= m.p_max - cp.multiply(m.p_max, u),
                      m.imp <= cp.multiply(m.imp_max, v), m.exp <= m.export_limit - m.export_limit * v]


def objective(m: DispatchModel) -> cp.Expression:
    """Energy (with the carbon shadow price folded into ``price``), degradation and demand cost [CNY]."""
    return (m.dt_h * (m.price @ m.imp - m.export_price @ m.exp + cp.sum(cp.multiply(m.deg, m.c + m.d)))
            + m.demand_charge * (m.peak + m.over))


def build(n: int, s: int, dt_h: float, exclusive: bool = False) -> DispatchModel:
    """Assemble the problem for ``n`` steps and ``s`` storages."""
    m = DispatchModel(n, s, dt_h, exclusive)
    for add in (add_balance_constraints, add_grid_constraints, add_storage_power_constraints,
                add_storage_energy_constraints, add_demand_constraints):
        add(m)
    if exclusive:
        add_exclusive_constraints(m)
    m.problem = cp.Problem(cp.Minimize(objective(m)), m.constraints)
    return m


_CACHE: OrderedDict = OrderedDict()


def model_for(n: int, s: int, dt_h: float, exclusive: bool = False) -> DispatchModel:
    """A built model of this shape, reused across solves (the warm path); a few shapes are kept."""
    key = (n, s, round(dt_h, 9), exclusive)
    if key not in _CACHE:
        _CACHE[key] = build(n, s, dt_h, exclusive)
        while len(_CACHE) > 8:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


# ------------------------------------------------------------------------------------------------ solving
def set_parameters(m: DispatchModel, case: DispatchCase) -> None:
    """Copy the case's numbers into the model's Parameters."""
    t, g = case.tariff, case.grid
    m.load.value, m.pv.value = case.series("load_kw"), case.series("pv_kw")
    m.price.value = case.series("import_price") + t.carbon_price_cny_per_t * t.grid_factor_t_per_kwh
    m.export_price.value = case.series("export_price")
    m.demand_charge.value, m.peak_so_far.value = t.demand_charge_cny_per_kw, t.demand_peak_so_far_kw
    margin = case.series("demand_margin")
    net = case.series("load_kw") - case.series("pv_kw")
    m.cap.value = (np.full(m.n, 1e12) if t.demand_threshold_kw is None
                   else np.maximum(t.demand_threshold_kw - margin, net))
    m.import_limit.value, m.export_limit.value = g.import_limit_kw, g.export_limit_kw
    st = case.storage or []
    m.imp_max.value = np.minimum(g.import_limit_kw, np.maximum(case.series("load_kw"), 0.0)
                                 + sum(x.power_kw for x in st))
    col = (lambda f: np.array([[f(x)] for x in st], dtype=float)) if st else (lambda f: np.zeros((1, 1)))
    ones = np.ones((1, m.n))
    m.p_max.value = col(lambda x: x.power_kw) * ones
    m.eta_c.value = (col(lambda x: x.eta_charge) if st else np.ones((1, 1))) * ones
    m.inv_eta_d.value = (col(lambda x: 1.0 / x.eta_discharge) if st else np.ones((1, 1))) * ones
    m.deg.value = col(lambda x: x.degradation_cny_per_kwh) * ones
    m.e_min.value = col(lambda x: x.soc_min_frac * x.energy_kwh) * ones
    m.e_max.value = col(lambda x: x.soc_max_frac * x.energy_kwh) * ones
    m.e0.value = col(lambda x: x.soc_initial_frac * x.energy_kwh)[:, 0]
    m.e_final.value = col(lambda x: (x.soc_min_frac if x.soc_final_frac is None else x.soc_final_frac)
                          * x.energy_kwh)[:, 0]


_BANNER_SHOWN = False


@contextmanager
def highs_banner_to_stderr():
    """HiGHS prints its banner on file descriptor 1 once per process; send it to standard error so that
    ``--json`` output stays pure. Only the first solve of a process is wrapped."""
    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        _BANNER_SHOWN = True


def solve_model(m: DispatchModel, time_limit_s: float | None) -> tuple[str, float]:
    """Solve with HiGHS; returns ``(status, seconds)``.

    ``warm_start=False``: HiGHS started from the previous case's basis took 0.53 s instead of 0.05 s for a day
    with 20 storages (bench/dispatch.py); the compiled problem is reused either way (DPP).
    """
    opts = {"time_limit": float(time_limit_s)} if time_limit_s else {}
    t0 = time.perf_counter()
    with highs_banner_to_stderr():
        try:
            m.problem.solve(solver=cp.HIGHS, warm_start=False, **opts)
        except cp.error.SolverError as err:
            return f"solver_error: {err}", time.perf_counter() - t0
    return m.problem.status, time.perf_counter() - t0


def _simultaneous(m: DispatchModel, n_storages: int) -> bool:
    """Does the LP answer charge and discharge a storage, or import and export, in the same step?"""
    both = (np.minimum(m.imp.value, m.exp.value) > SIMULTANEOUS_TOL_KW).any()
    if n_storages:
        both = both or (np.minimum(m.c.value[:n_storages], m.d.value[:n_storages]) > SIMULTANEOUS_TOL_KW).any()
    return bool(both)


def diagnose_infeasible(case: DispatchCase) -> str:
    """A sentence naming a likely cause of infeasibility (pure)."""
    net = case.series("load_kw") - case.series("pv_kw")
    p_all = sum(s.power_kw for s in case.storage)
    over = np.flatnonzero(net - p_all > case.grid.import_limit_kw + 1e-6)
    if over.size:
        i = int(over[0])
        return (f"load_kw[{i}] - pv_kw[{i}] = {net[i]:g} kW exceeds grid.import_limit_kw "
                f"{case.grid.import_limit_kw:g} kW plus all storage power {p_all:g} kW")
    under = np.flatnonzero(-net - p_all > case.grid.export_limit_kw + 1e-6)
    if under.size and (case.series("pv_kw")[under] == 0).all():
        i = int(under[0])
        return (f"load_kw[{i}] = {case.load_kw[i]:g} kW is negative beyond grid.export_limit_kw "
                f"{case.grid.export_limit_kw:g} kW plus storage charging")
    return ("no schedule meets every limit: the import limit cannot be kept with the energy the storages hold, "
            "or a soc_final_frac cannot be reached under the grid limits")


def optimize(case: DispatchCase, *, time_limit_s: float | None = None) -> Schedule:
    """The least-cost schedule of ``case`` (module docstring has the problem).

    Parameters
    ----------
    case : DispatchCase
    time_limit_s : float, optional
        give up after this long [s]; the MPC then uses the rule (:mod:`anning_lib.dispatch.rule`).

    Returns
    -------
    Schedule

    Raises
    ------
    InfeasibleError
        no schedule meets the limits; the message names a likely cause.
    SolverFailedError
        no optimal answer in time or numerical trouble.
    """
    m = model_for(case.n_steps, len(case.storage), case.dt_h)
    set_parameters(m, case)
    status, secs = solve_model(m, time_limit_s)
    kind = "lp"
    if status == cp.OPTIMAL and _simultaneous(m, len(case.storage)):
        m = model_for(case.n_steps, len(case.storage), case.dt_h, exclusive=True)
        set_parameters(m, case)
        status, more = solve_model(m, time_limit_s)
        secs, kind = secs + more, "milp"
    if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        raise InfeasibleError(f"infeasible: {diagnose_infeasible(case)}")
    if status != cp.OPTIMAL:
        raise SolverFailedError(f"HiGHS gave no optimal schedule (status {status})")
    s = len(case.storage)
    return make_schedule(case, m.imp.value, m.exp.value, m.curt.value, m.c.value[:s], m.d.value[:s],
                         strategy="optimal", detail={"solver": "HIGHS", "exclusive": kind, "solve_s": secs})
