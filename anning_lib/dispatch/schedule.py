"""A dispatch schedule, its cost split and the no-storage baseline (pure functions).

Every strategy (the optimiser, the rule fallback, the backtest's replay) ends in :func:`make_schedule`, so costs
are computed one way. Sign convention (docs/glossary.md): a storage's ``p_kw = discharge_kw - charge_kw`` is
positive when it discharges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anning_lib.dispatch.case import DispatchCase


@dataclass
class Schedule:
    """The outcome of a strategy on a case.

    Attributes
    ----------
    frame : DataFrame
        per step (index: step start): ``grid_import_kw``, ``grid_export_kw``, ``pv_curtailed_kw`` and, per storage
        ``<id>``, ``<id>.charge_kw``, ``<id>.discharge_kw``, ``<id>.p_kw`` (> 0 discharges), ``<id>.soc_frac``
        (at the end of the step).
    cost_cny : dict
        ``energy``, ``demand``, ``degradation``, ``carbon`` and ``total`` [CNY].
    baseline_cost_cny : dict
        the same split for the case without storage [CNY].
    strategy : str
        ``optimal``, ``rule`` or ``replay``.
    detail : dict
        solver, ``exclusive`` (``lp`` or ``milp``), ``solve_s``, fallback reason...
    """

    frame: pd.DataFrame
    cost_cny: dict
    baseline_cost_cny: dict
    strategy: str
    detail: dict = field(default_factory=dict)

    @property
    def savings_cny(self) -> float:
        return self.baseline_cost_cny["total"] - self.cost_cny["total"]

    def setpoints_kw(self, step: int = 0) -> dict[str, float]:
        """Storage id -> ``p_kw`` of one step (> 0 discharges) [kW]."""
        return {c.removesuffix(".p_kw"): float(self.frame[c].iloc[step]) for c in self.frame.columns
                if c.endswith(".p_kw")}

    def to_dict(self) -> dict:
        """The JSON answer of ``anning dispatch optimize`` (docs/dispatch.md)."""
        ids = [c.removesuffix(".p_kw") for c in self.frame.columns if c.endswith(".p_kw")]
        steps = []
        for ts, row in self.frame.iterrows():
            steps.append({"start": ts.isoformat(), "grid_import_kw": _r(row["grid_import_kw"]),
                          "grid_export_kw": _r(row["grid_export_kw"]),
                          "pv_curtailed_kw": _r(row["pv_curtailed_kw"]),
                          "storage": {i: {"charge_kw": _r(row[f"{i}.charge_kw"]),
                                          "discharge_kw": _r(row[f"{i}.discharge_kw"]),
                                          "soc_frac": round(float(row[f"{i}.soc_frac"]), 6)} for i in ids}})
        return {"strategy": self.strategy, **self.detail,
                "total_cost_cny": round(self.cost_cny["total"], 2),
                "cost_split_cny": {k: round(v, 2) for k, v in self.cost_cny.items() if k != "total"},
                "baseline_cost_cny": round(self.baseline_cost_cny["total"], 2),
                "baseline_cost_split_cny": {k: round(v, 2) for k, v in self.baseline_cost_cny.items()
                                            if k != "total"},
                "savings_cny": round(self.savings_cny, 2),
                "peak_import_kw": _r(self.frame["grid_import_kw"].max()),
                "schedule": steps}


def _r(x: float) -> float:
    return round(float(x), 3) + 0.0   # + 0.0: no "-0.0" in the JSON


def soc_path(case: DispatchCase, charge_kw: np.ndarray, discharge_kw: np.ndarray) -> np.ndarray:
    """State of charge at the end of each step from the flows, storage by storage [-] (shape storages x steps).

    ``e_t = e_{t-1} + dt (eta_c c_t - d_t / eta_d)`` (PyPSA storage unit energy balance, no standing loss).
    """
    out = np.zeros((len(case.storage), case.n_steps))
    for k, s in enumerate(case.storage):
        flow = case.dt_h * (s.eta_charge * charge_kw[k] - discharge_kw[k] / s.eta_discharge)
        e = s.soc_initial_frac * s.energy_kwh + np.cumsum(flow)
        out[k] = e / s.energy_kwh if s.energy_kwh > 0 else 0.0
    return out


def cost_split(case: DispatchCase, import_kw: np.ndarray, export_kw: np.ndarray,
               charge_kw: np.ndarray | None = None, discharge_kw: np.ndarray | None = None) -> dict:
    """Energy, demand, degradation and carbon cost of a schedule [CNY].

    ``demand`` is the demand charge on the billing period's peak: ``max(demand_peak_so_far_kw, max_t import)``.
    """
    dt, t = case.dt_h, case.tariff
    energy = dt * float(case.series("import_price") @ import_kw - case.series("export_price") @ export_kw)
    demand = t.demand_charge_cny_per_kw * max(t.demand_peak_so_far_kw, float(np.max(import_kw)))
    carbon = dt * t.carbon_price_cny_per_t * t.grid_factor_t_per_kwh * float(np.sum(import_kw))
    degradation = 0.0
    for k, s in enumerate(case.storage):
        degradation += dt * s.degradation_cny_per_kwh * float(np.sum(charge_kw[k] + discharge_kw[k]))
    total = energy + demand + degradation + carbon
    return {"energy": energy, "demand": demand, "degradation": degradation, "carbon": carbon, "total": total}


def grid_flows(case: DispatchCase, net_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Import, export and curtailment [kW] of a net load ``net_kw = load - pv + charge - discharge`` (pure).

    The positive part is imported; a surplus is exported up to the export limit in steps where export pays, and
    curtailed otherwise (a surplus can only be PV: strategies never discharge into an unpaid export).
    """
    net = np.asarray(net_kw, dtype=float)
    surplus = np.maximum(-net, 0.0)
    exp = np.where(case.series("export_price") > 0, np.minimum(surplus, case.grid.export_limit_kw), 0.0)
    return np.maximum(net, 0.0), exp, surplus - exp


def baseline_flows(case: DispatchCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Import, export and curtailment with no storage [kW] (:func:`grid_flows` of load - PV)."""
    return grid_flows(case, case.series("load_kw") - case.series("pv_kw"))


def make_schedule(case: DispatchCase, import_kw, export_kw, curtailed_kw, charge_kw, discharge_kw, *,
                  strategy: str, detail: dict | None = None) -> Schedule:
    """Assemble a :class:`Schedule` from flows [kW] (storage arrays: storages x steps)."""
    clean = lambda a: np.where(np.abs(a) < 1e-7, 0.0, np.asarray(a, dtype=float))  # noqa: E731 solver dust
    imp, exp, curt = clean(import_kw), clean(export_kw), clean(curtailed_kw)
    c = clean(np.asarray(charge_kw, dtype=float).reshape(len(case.storage), case.n_steps))
    d = clean(np.asarray(discharge_kw, dtype=float).reshape(len(case.storage), case.n_steps))
    cols = {"grid_import_kw": imp, "grid_export_kw": exp, "pv_curtailed_kw": curt}
    soc = soc_path(case, c, d)
    for k, s in enumerate(case.storage):
        cols |= {f"{s.id}.charge_kw": c[k], f"{s.id}.discharge_kw": d[k], f"{s.id}.p_kw": d[k] - c[k],
                 f"{s.id}.soc_frac": soc[k]}
    frame = pd.DataFrame(cols, index=case.index())
    b_imp, b_exp, _ = baseline_flows(case)
    return Schedule(frame, cost_split(case, imp, exp, c, d), cost_split(case.without_storage(), b_imp, b_exp), strategy,
                    detail or {})
