"""The rule-based fallback: charge in the cheapest steps, discharge in the dearest, within every limit.

Used when the solver fails or runs out of time (the MPC flags the step ``strategy: rule``), and as the "rule"
comparison of the year backtest. It needs no solver and never fails on a valid case.

Per step, storages in case order:

- if the net load (load - PV) exceeds the import limit, discharge to bring the import down to it (peak guard);
- in a *low* step (price within the lowest quarter of the horizon's price range) charge at full power, as far as
  the energy bound and the import limit allow and, when there is a demand charge, without raising the import
  above the highest load of the horizon (or the billing period's peak so far): charging must not set a new peak;
- in a *high* step (price within the highest quarter) discharge at full power, as far as the energy bound and the
  remaining net load allow (into export only up to its limit and only where export pays);
- otherwise idle. The terminal state of charge is not enforced.
"""

from __future__ import annotations

import numpy as np

from anning_lib.dispatch.case import DispatchCase
from anning_lib.dispatch.schedule import Schedule, grid_flows, make_schedule


def price_classes(price: np.ndarray, quarter: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(low, high)`` of steps in the lowest and highest ``quarter`` of the price range (pure)."""
    lo, hi = float(np.min(price)), float(np.max(price))
    if hi - lo < 1e-9:
        return np.zeros(len(price), bool), np.zeros(len(price), bool)
    span = hi - lo
    return price <= lo + quarter * span, price >= hi - quarter * span


def rule_schedule(case: DispatchCase, reason: str = "") -> Schedule:
    """The rule's schedule for ``case`` (module docstring)."""
    n, dt = case.n_steps, case.dt_h
    net = case.series("load_kw") - case.series("pv_kw")
    export_room = np.where(case.series("export_price") > 0, case.grid.export_limit_kw, 0.0)
    low, high = price_classes(case.series("import_price"))
    cap = case.grid.import_limit_kw
    if case.tariff.demand_charge_cny_per_kw > 0:
        cap = min(cap, max(float(np.max(net)), case.tariff.demand_peak_so_far_kw,
                           case.tariff.demand_threshold_kw or 0.0))
    s_count = len(case.storage)
    c, d = np.zeros((s_count, n)), np.zeros((s_count, n))
    energy = np.array([s.soc_initial_frac * s.energy_kwh for s in case.storage])
    for t in range(n):
        residual = net[t]
        for k, s in enumerate(case.storage):
            room_kw = max(0.0, (s.soc_max_frac * s.energy_kwh - energy[k]) / (s.eta_charge * dt))
            avail_kw = max(0.0, (energy[k] - s.soc_min_frac * s.energy_kwh) * s.eta_discharge / dt)
            p_dis = p_chg = 0.0
            if residual > case.grid.import_limit_kw:
                p_dis = min(s.power_kw, avail_kw, residual - case.grid.import_limit_kw)
            elif high[t]:
                p_dis = min(s.power_kw, avail_kw, max(0.0, residual + export_room[t]))
            elif low[t]:
                p_chg = min(s.power_kw, room_kw, max(0.0, cap - residual))
            c[k, t], d[k, t] = p_chg, p_dis
            energy[k] += dt * (s.eta_charge * p_chg - p_dis / s.eta_discharge)
            residual += p_chg - p_dis
    imp, exp, curt = grid_flows(case, net + c.sum(axis=0) - d.sum(axis=0))
    detail = {"fallback_reason": reason} if reason else {}
    return make_schedule(case, imp, exp, curt, c, d, strategy="rule", detail=detail)
