"""Battery storage that follows setpoints within its power, energy and efficiency limits.

Sign convention (docs/glossary.md): ``p_kw > 0`` discharges into the network, ``p_kw < 0`` charges.
"""

from __future__ import annotations

import numpy as np

from anning_lib.park.schema import BessParams


def bess_step_limits(soc_frac: float, params: BessParams, dt_h: float) -> tuple[float, float]:
    """Feasible power range ``(p_min_kw, p_max_kw)`` for one step from ``soc_frac``.

    Discharging ``p`` for ``dt_h`` lowers the state of charge by ``p dt / (eta_d E)``; charging ``-p``
    raises it by ``-p dt eta_c / E`` (E = ``energy_kwh``: capacity times state of health).
    """
    e = params.energy_kwh
    p_dis = min(params.p_max_kw, max(0.0, (soc_frac - params.soc_min_frac) * e * params.eta_discharge / dt_h))
    p_chg = min(params.p_max_kw, max(0.0, (params.soc_max_frac - soc_frac) * e / (params.eta_charge * dt_h)))
    return -p_chg, p_dis


def simulate_bess(setpoint_kw: np.ndarray, params: BessParams, dt_h: float, soc0_frac: float) -> tuple[np.ndarray, np.ndarray]:
    """Follow ``setpoint_kw`` step by step.

    Parameters
    ----------
    setpoint_kw : ndarray
        requested power per step [kW], > 0 discharge.
    params : BessParams
    dt_h : float
        step length [h].
    soc0_frac : float
        state of charge before the first step [-].

    Returns
    -------
    p_kw : ndarray
        delivered power per step [kW], the setpoint clipped to the feasible range.
    soc_frac : ndarray
        state of charge at the end of each step [-].

    References
    ----------
    A plain energy-reservoir model with constant charge and discharge efficiencies, as in PyPSA's
    ``StorageUnit`` (PyPSA documentation, "Storage Unit Constraints").
    """
    n = len(setpoint_kw)
    p = np.empty(n)
    soc = np.empty(n)
    s = soc0_frac
    e = params.energy_kwh
    for i in range(n):
        lo, hi = bess_step_limits(s, params, dt_h)
        pi = min(max(float(setpoint_kw[i]), lo), hi)
        s = s - pi * dt_h / (params.eta_discharge * e) if pi >= 0 else s - pi * dt_h * params.eta_charge / e
        p[i], soc[i] = pi, s
    return p, soc


def tou_rule_setpoints(band: np.ndarray, params: BessParams) -> np.ndarray:
    """The simulator's stand-in controller: charge in valley hours, discharge in peak hours [kW].

    Charge power fills the usable energy in 4 h; discharge power empties it in 2 h. The optimiser of the
    dispatch issue replaces this rule.
    """
    usable_kwh = (params.soc_max_frac - params.soc_min_frac) * params.energy_kwh
    p_chg = min(params.p_max_kw, usable_kwh / 4.0 / params.eta_charge)
    p_dis = min(params.p_max_kw, usable_kwh * params.eta_discharge / 2.0)
    return np.where(band == "valley", -p_chg, np.where(band == "peak", p_dis, 0.0))
