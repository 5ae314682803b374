"""Investment figures of a measure (pure): net present value, simple payback, levelised abatement cost.

A measure costs ``capex_cny`` now and changes the enterprise's yearly cash flow by ``annual_net_cny`` (savings
minus running costs; > 0 saves money) for ``lifetime_a`` years, and its emissions by ``co2_t_a`` (> 0 abates).

References
----------
.. [1] Kesicki, F. and Ekins, P. (2012), "Marginal abatement cost curves: a call for caution", Climate Policy
   12(2), 219-236: the abatement cost of a measure is its annualised cost net of energy savings divided by its
   yearly abatement; the curve sorts measures by that cost, the width of each bar is its abatement.
.. [2] Brealey, R., Myers, S. and Allen, F., "Principles of Corporate Finance": present value of an annuity,
   ``PV = A (1 - (1 + r)^-n) / r``; capital recovery factor ``r / (1 - (1 + r)^-n)``.
"""

from __future__ import annotations

import math


def annuity_factor(rate: float, years: float) -> float:
    """Present value of 1 CNY a year for ``years`` years at ``rate`` [-] (``years`` when the rate is 0) [2]_.

    Parameters
    ----------
    rate : float
        Discount rate per year [-], e.g. 0.06.
    years : float
        Lifetime [a], > 0.
    """
    if years <= 0:
        raise ValueError(f"years: must be > 0, got {years!r}")
    if rate == 0:
        return float(years)
    return (1.0 - (1.0 + rate) ** -years) / rate


def npv_cny(capex_cny: float, annual_net_cny: float, rate: float, years: float) -> float:
    """Net present value [CNY]: ``-capex + annual_net × annuity_factor(rate, years)``.

    Parameters
    ----------
    capex_cny : float
        Investment at year 0 [CNY].
    annual_net_cny : float
        Yearly savings minus running costs [CNY/a].
    rate : float
        Discount rate [-].
    years : float
        Lifetime [a].
    """
    return -capex_cny + annual_net_cny * annuity_factor(rate, years)


def payback_a(capex_cny: float, annual_net_cny: float) -> float | None:
    """Simple payback [a]: ``capex / annual_net``; 0 without investment; None when the measure never pays back."""
    if capex_cny <= 0:
        return 0.0
    if annual_net_cny <= 0:
        return None
    return capex_cny / annual_net_cny


def abatement_cost_cny_per_t(capex_cny: float, annual_net_cny: float, co2_t_a: float, rate: float,
                             years: float) -> float | None:
    """Levelised abatement cost [CNY/tCO2] [1]_: ``(capex / annuity_factor − annual_net) / co2_t_a``.

    Negative: the measure abates and saves money. None when it does not abate (``co2_t_a <= 0``): such a measure
    has no place on a marginal abatement cost curve.

    Parameters
    ----------
    capex_cny : float
        [CNY]
    annual_net_cny : float
        [CNY/a]
    co2_t_a : float
        Yearly abatement [tCO2/a].
    rate : float
        [-]
    years : float
        [a]
    """
    if not co2_t_a or co2_t_a <= 0 or not math.isfinite(co2_t_a):
        return None
    return (capex_cny / annuity_factor(rate, years) - annual_net_cny) / co2_t_a
