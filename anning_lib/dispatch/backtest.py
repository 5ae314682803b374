"""Backtest of dispatch strategies on a measured (or simulated) history of one site.

Four strategies are billed month by month on the *actual* load and PV, with the site's tariff (energy, the
month's demand charge on its peak 15-minute import, degradation):

- ``baseline``: no storage;
- ``rule``: the rule fallback (:mod:`anning_lib.dispatch.rule`) replayed like the MPC, on the same forecasts;
- ``mpc``: every ``replan_steps`` the optimiser plans the next day from *forecasts* (the MPC's own forecaster,
  :func:`anning_lib.dispatch.sites.forecast_next`, fed only with the history before the origin) and the storage
  follows the plan's first steps on the actual load, with the peak guard (:mod:`anning_lib.dispatch.guard`)
  holding the import at the demand threshold;
- ``perfect``: one optimisation per month on the actual load and PV (perfect foresight: the upper bound).

The *capture ratio* is ``(baseline - mpc) / (baseline - perfect)``: the share of the perfect-foresight savings
the MPC obtains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from anning_lib.dispatch.case import DispatchCase
from anning_lib.dispatch.guard import guard_setpoints
from anning_lib.dispatch.optimize import optimize
from anning_lib.dispatch.rule import rule_schedule
from anning_lib.dispatch.schedule import cost_split, grid_flows
from anning_lib.dispatch.sites import Site, expected_peak_kw, forecast_next, site_case
from anning_lib.errors import DispatchError
from anning_lib.sim.storage import simulate_bess

STEP = pd.Timedelta("15min")


@dataclass
class BacktestResult:
    """Costs per month and strategy [CNY] and the MPC's solve statistics."""

    monthly: pd.DataFrame       # index: month; columns: (strategy, part) with part in energy/demand/degradation/total
    n_solves: int
    n_fallbacks: int
    solve_s: list

    def totals(self) -> dict[str, float]:
        """Total cost per strategy over the backtest [CNY]."""
        return {s: float(self.monthly[(s, "total")].sum()) for s in ("baseline", "rule", "mpc", "perfect")}

    def savings(self) -> dict[str, float]:
        """Savings against no storage per strategy [CNY]."""
        t = self.totals()
        return {s: t["baseline"] - t[s] for s in ("rule", "mpc", "perfect")}

    @property
    def capture_ratio(self) -> float:
        """``(baseline - mpc) / (baseline - perfect)`` [-]."""
        s = self.savings()
        return s["mpc"] / s["perfect"] if s["perfect"] > 0 else float("nan")


def bill(case: DispatchCase, site: Site, flows: pd.DataFrame) -> dict:
    """The cost split of replayed storage ``flows`` on the actual ``case`` (its load, PV and tariff) [CNY]."""
    f = flows.reindex(case.index())
    c = np.array([np.maximum(-f[f"{d.id}.p_kw"].to_numpy(), 0.0) for d in site.storages])
    d = np.array([np.maximum(f[f"{d.id}.p_kw"].to_numpy(), 0.0) for d in site.storages])
    imp, exp, _curt = grid_flows(case, case.series("load_kw") - case.series("pv_kw") + c.sum(axis=0) - d.sum(axis=0))
    return cost_split(case, imp, exp, c, d)


def replay(site: Site, gross: pd.Series, pv: pd.Series, start: pd.Timestamp, *, strategy: str = "mpc",
           replan_steps: int = 4, horizon_steps: int = 96, history_days: int = 28, guard: bool = True,
           progress: Callable[[int, int], None] = lambda _i, _n: None) -> tuple[pd.DataFrame, dict]:
    """Replay the MPC (``strategy="mpc"``) or the rule on forecasts (``"rule"``) from ``start`` on the actual
    ``gross`` and ``pv`` [kW] (15-minute, local time), both with the peak guard unless ``guard=False``.

    Returns
    -------
    flows : DataFrame
        from ``start``: ``<storage>.p_kw`` (> 0 discharges) and ``<storage>.soc_frac`` per step.
    stats : dict
        ``n_solves``, ``n_fallbacks``, ``solve_s`` (list of seconds per solve).
    """
    if len(gross) < 2 or (gross.index[1:] - gross.index[:-1] != STEP).any():
        raise DispatchError("gross: the backtest needs a regular 15-minute series without gaps")
    k0 = int(gross.index.get_indexer([start])[0])
    if k0 == -1:
        raise DispatchError(f"start: {start} is not a quarter-hour of the series ({gross.index[0]} .. "
                            f"{gross.index[-1]})")
    if k0 < 96:
        raise DispatchError(f"start: {start} leaves less than one day of history before it")
    n = len(gross)
    soc = {d.id: d.p.soc_init_frac for d in site.storages}
    p_out = {d.id: np.zeros(n - k0) for d in site.storages}
    soc_out = {d.id: np.zeros(n - k0) for d in site.storages}
    imp_so_far = pd.Series(np.nan, index=gross.index)
    stats = {"n_solves": 0, "n_fallbacks": 0, "solve_s": []}
    for k in range(k0, n, replan_steps):
        lo = max(0, k - history_days * 96)
        idx = pd.date_range(gross.index[k], periods=horizon_steps, freq=STEP)
        month = imp_so_far[(imp_so_far.index >= gross.index[k].replace(day=1, hour=0, minute=0)) &
                           (imp_so_far.index < gross.index[k])]
        peak = float(month.max()) if month.notna().any() else 0.0
        threshold = max(peak, expected_peak_kw(gross.iloc[lo:k] - pv.iloc[lo:k]))
        load, sun = forecast_next(gross.iloc[lo:k], idx), forecast_next(pv.iloc[lo:k], idx)
        case = site_case(site, idx, load["p50"].to_numpy(), sun["p50"].to_numpy(), soc, peak,
                         threshold_kw=threshold)
        if strategy == "rule":
            plan = rule_schedule(case)
        else:
            try:
                plan = optimize(case, time_limit_s=5.0)
                stats["solve_s"].append(plan.detail["solve_s"])
            except DispatchError:
                plan = rule_schedule(case)
                stats["n_fallbacks"] += 1
            stats["n_solves"] += 1
        steps = min(replan_steps, n - k)
        net = gross.iloc[k:k + steps].to_numpy() - pv.iloc[k:k + steps].to_numpy()
        for j in range(steps):     # the storages follow the plan, the peak guard on top (guard_setpoints)
            plan_kw = {d.id: float(plan.frame[f"{d.id}.p_kw"].iloc[j]) for d in site.storages}
            sets = guard_setpoints(plan_kw, net[j], threshold if guard else np.inf, site.storages, soc, 0.25)
            for d in site.storages:
                p, s_ = simulate_bess(np.array([sets[d.id]]), d.p, 0.25, soc[d.id])
                p_out[d.id][k - k0 + j], soc_out[d.id][k - k0 + j] = p[0], s_[0]
                soc[d.id] = float(s_[0])
                net[j] -= p[0]
        imp_so_far.iloc[k:k + steps] = np.maximum(net, 0.0)
        progress(k - k0, n - k0)
    cols = {f"{i}.p_kw": v for i, v in p_out.items()} | {f"{i}.soc_frac": v for i, v in soc_out.items()}
    return pd.DataFrame(cols, index=gross.index[k0:]), stats


def run_backtest(site: Site, gross: pd.Series, pv: pd.Series, start: pd.Timestamp, *, replan_steps: int = 4,
                 guard: bool = True, progress: Callable[[int, int], None] = lambda _i, _n: None) -> BacktestResult:
    """Bill the four strategies month by month from ``start`` (module docstring)."""
    opts = {"replan_steps": replan_steps, "guard": guard}
    flows, stats = replay(site, gross, pv, start, strategy="mpc", progress=progress, **opts)
    rule_flows, _ = replay(site, gross, pv, start, strategy="rule", **opts)
    rows, soc0 = {}, {d.id: d.p.soc_init_frac for d in site.storages}
    later = gross[gross.index >= start]
    for month, g in later.groupby(later.index.tz_localize(None).to_period("M")):
        case = site_case(site, g.index, g.to_numpy(), pv.reindex(g.index).to_numpy(), soc0, 0.0)
        perfect = optimize(case)
        rows[str(month)] = {("baseline", k): v for k, v in perfect.baseline_cost_cny.items()} | {
            ("rule", k): v for k, v in bill(case, site, rule_flows).items()} | {
            ("mpc", k): v for k, v in bill(case, site, flows).items()} | {
            ("perfect", k): v for k, v in perfect.cost_cny.items()}
    monthly = pd.DataFrame.from_dict(rows, orient="index")
    monthly.columns = pd.MultiIndex.from_tuples(monthly.columns)
    return BacktestResult(monthly, stats["n_solves"], stats["n_fallbacks"], stats["solve_s"])
