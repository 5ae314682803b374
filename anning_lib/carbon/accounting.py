"""The accounting engine: activity data × emission factors -> emission lines (pure functions, no I/O).

Every :class:`Line` carries its activity (amount, unit, where it came from), the factor (value, unit, source
document and clause, factor-set version) and the formula with the numbers filled in, so any result can be traced.

Scopes (GHG Protocol; GB/T 32150-2015 §4): ``scope1`` direct emissions from fuel combustion and industrial
processes; ``scope2_location`` and ``scope2_market`` indirect emissions of purchased electricity and heat, the
first with the grid-average factor of the region, the second after subtracting green-electricity certificates
and green power contracts (zero-emission electricity) and applying the residual factor to the rest; ``scope3``
other indirect emissions where a factor exists; ``memo`` lines carry figures that are reported but not added
(on-site PV self-consumption, CEMS measurements as a cross-check).

References
----------
.. [1] GB/T 32150-2015 工业企业温室气体排放核算和报告通则, §6 and Appendix B (fuel combustion:
   E = AD × NCV × CC × OF × 44/12).
.. [2] 中国钢铁生产企业温室气体排放核算方法与报告指南（试行）, NDRC 2013 (process emissions: E = AD × EF;
   net purchased electricity and heat).
.. [3] GHG Protocol Scope 2 Guidance (WRI, 2015): dual reporting, location- and market-based.
"""

from __future__ import annotations

from dataclasses import dataclass

from anning_lib.carbon.factors import C_TO_CO2, FactorSet
from anning_lib.carbon.units import convert
from anning_lib.errors import CarbonError

SCOPES = ("scope1", "scope2_location", "scope2_market", "scope3", "memo")
KINDS = ("fuel", "reductant", "process", "electricity", "heat", "green_certificate", "green_contract",
         "pv_self_use", "scope3", "production", "output_value", "cems")
RESIDUALS = ("location", "national_residual")
METERED_KINDS = ("electricity", "pv_self_use", "cems")
"""Kinds only the meters give: an entered record of one of them would be counted twice."""


@dataclass(frozen=True)
class Activity:
    """One activity datum of an enterprise over the accounting period.

    Parameters
    ----------
    kind : str
        one of :data:`KINDS`: ``fuel`` (item = fuel key), ``process`` (item = material key), ``electricity``
        (net purchased from the grid), ``heat`` (purchased heat), ``green_certificate`` / ``green_contract``
        (zero-emission electricity bought with a certificate or a direct green power contract), ``pv_self_use``,
        ``scope3`` (item = scope 3 factor key), ``production`` [t], ``output_value`` [10^4 CNY], ``cems`` [t CO2],
        ``reductant`` (item = fuel key: coke or coal charged as a reducing agent, all its carbon leaves as CO2).
    item : str
    amount : float
        in ``unit``; must be finite and, except net electricity, not negative.
    unit : str
        any unit :func:`anning_lib.carbon.units.convert` understands that fits the item.
    source : str
        where the number comes from (meter tags, an entered record, an imported file and line).
    """

    kind: str
    item: str
    amount: float
    unit: str
    source: str = "entered"


@dataclass(frozen=True)
class Line:
    """One emission line: the row stored in ``carbon_line``."""

    scope: str
    category: str
    item: str
    activity_amount: float
    activity_unit: str
    activity_source: str
    factor_value: float
    factor_unit: str
    factor_source: str
    formula: str
    co2_t: float


def _check(a: Activity) -> None:
    if a.kind not in KINDS:
        raise CarbonError(f"kind: unknown activity kind {a.kind!r} (one of {', '.join(KINDS)})")
    if not isinstance(a.amount, (int, float)) or a.amount != a.amount or abs(a.amount) == float("inf"):
        raise CarbonError(f"amount: {a.item} amount must be a finite number, got {a.amount!r}")
    if a.amount < 0 and a.kind != "electricity":
        raise CarbonError(f"amount: {a.kind} {a.item} must not be negative, got {a.amount:g} {a.unit}")


def fuel_line(a: Activity, fs: FactorSet) -> Line:
    """Fuel combustion, GB/T 32150-2015 eq. (2): E = AD × NCV × CC × OF × 44/12.

    ``AD`` in the fuel's basis unit (t or Nm3) or directly as heat (GJ); NCV [GJ/unit], CC [tC/TJ], OF [-].
    """
    f = fs.fuel(a.item)
    ad = f.to_basis(a.amount, a.unit)
    heat_gj = ad * f.ncv_gj_per_unit
    ad_text = f"{ad:,.10g} {f.basis_unit} × {f.ncv_gj_per_unit:g} GJ/{f.basis_unit}"
    if a.kind == "reductant":  # carbon balance: all the reductant's carbon leaves the process as CO2
        co2 = heat_gj * 1e-3 * f.carbon_tc_per_tj * C_TO_CO2
        formula = (f"E = AD × NCV × CC × 44/12 (reductant: all carbon oxidised) = {ad_text} × 10⁻³ TJ/GJ × "
                   f"{f.carbon_tc_per_tj:g} tC/TJ × 44/12 = {co2:,.4f} tCO2")
        return Line("scope1", "process", a.item, a.amount, a.unit, a.source, co2 / ad if ad else 0.0,
                    f"tCO2/{f.basis_unit}", f.citation + " (NCV and carbon content; oxidation 1)", formula, co2)
    co2 = heat_gj * 1e-3 * f.carbon_tc_per_tj * f.oxidation_frac * C_TO_CO2
    formula = (f"E = AD × NCV × CC × OF × 44/12 = {ad_text} × 10⁻³ TJ/GJ × {f.carbon_tc_per_tj:g} tC/TJ × "
               f"{f.oxidation_frac:g} × 44/12 = {co2:,.4f} tCO2")
    return Line("scope1", "combustion", a.item, a.amount, a.unit, a.source, f.co2_t_per_unit,
                f"tCO2/{f.basis_unit}", f.citation, formula, co2)


def _simple_line(a: Activity, scope: str, category: str, factor, per_unit: str) -> Line:
    """E = AD × EF with AD converted to the factor's unit ``per_unit``."""
    ad = convert(a.amount, a.unit, per_unit, fits=a.item)
    co2 = ad * factor.value
    formula = f"E = AD × EF = {ad:,.10g} {per_unit} × {factor.value:g} {factor.unit} = {co2:,.4f} tCO2"
    return Line(scope, category, a.item, a.amount, a.unit, a.source, factor.value, factor.unit, factor.citation,
                formula, co2)


def electricity_lines(electricity: list[Activity], green: list[Activity], fs: FactorSet, region: str,
                      data_year: int, residual: str = "location") -> list[Line]:
    """Scope 2 of purchased electricity, location-based and market-based.

    Location-based: net purchased MWh × the region's average grid factor. Market-based: the MWh covered by green
    certificates and green power contracts count at 0; the rest at the residual factor: ``residual="location"``
    (default: the region's average, as the GHG Protocol allows where no residual mix is published, which is the
    case for Chinese provinces) or ``"national_residual"`` (MEE's national factor excluding market-traded
    non-fossil power). So market-based ≤ location-based whenever instruments exist and the residual is the
    location factor.
    """
    loc = fs.grid(region, data_year, "location")
    res = loc if residual == "location" else fs.grid("national", data_year, "residual")
    lines = [_simple_line(a, "scope2_location", "electricity", loc, "MWh") for a in electricity]
    net_mwh = sum(convert(a.amount, a.unit, "MWh", fits="electricity") for a in electricity)
    green_mwh = sum(convert(g.amount, g.unit, "MWh", fits="electricity") for g in green)
    covered = min(max(net_mwh, 0.0), green_mwh)
    for g in green:
        mwh = convert(g.amount, g.unit, "MWh", fits="electricity")
        lines.append(Line("scope2_market", g.kind, g.item, g.amount, g.unit, g.source, 0.0, "tCO2/MWh",
                          "zero-emission electricity evidenced by the instrument", f"E = {mwh:,.10g} MWh × 0 = 0 tCO2",
                          0.0))
    rest = net_mwh - covered
    co2 = rest * res.value
    formula = (f"E = (net purchased − green) × EF = ({net_mwh:,.10g} − {covered:,.10g}) MWh × {res.value:g} "
               f"{res.unit} = {co2:,.4f} tCO2")
    lines.append(Line("scope2_market", "electricity", "electricity", rest, "MWh",
                      "net purchased electricity not covered by green instruments", res.value, res.unit,
                      res.citation, formula, co2))
    return lines


def memo_line(a: Activity, note: str) -> Line:
    return Line("memo", a.kind, a.item, a.amount, a.unit, a.source, 0.0, "", note, "reported, not added", 0.0)


def account(activities: list[Activity], fs: FactorSet, *, region: str = "yunnan", data_year: int | None = None,
            residual: str = "location") -> list[Line]:
    """All emission lines of one enterprise and period.

    Parameters
    ----------
    activities : list of Activity
    fs : FactorSet
        the factor set (its version is recorded with every line).
    region : str
        grid region of the enterprise for location-based scope 2 (``yunnan`` for Anning).
    data_year : int, optional
        data year of the grid factor; default the latest the factor set has for ``region``.
    residual : {"location", "national_residual"}
        the factor for market-based electricity not covered by green instruments.

    Raises
    ------
    CarbonError
        naming the activity field and value (unknown kind, fuel or material; negative amount; unit that does
        not fit the item).
    """
    for a in activities:
        _check(a)
    if residual not in RESIDUALS:
        raise CarbonError(f"residual: must be one of {', '.join(RESIDUALS)}, got {residual!r}")
    lines: list[Line] = []
    by_kind = {k: [a for a in activities if a.kind == k] for k in KINDS}
    lines += [fuel_line(a, fs) for a in by_kind["fuel"] + by_kind["reductant"]]
    lines += [_simple_line(a, "scope1", "process", fs.process(a.item), "t") for a in by_kind["process"]]
    green = by_kind["green_certificate"] + by_kind["green_contract"]
    if by_kind["electricity"] or green:
        year = data_year if data_year is not None else fs.latest_grid_year(region, "location")
        lines += electricity_lines(by_kind["electricity"], green, fs, region, year, residual)
    for a in by_kind["heat"]:
        h = fs.heat()
        line = _simple_line(a, "scope2_location", "heat", h, "GJ")
        lines += [line, Line(**{**line.__dict__, "scope": "scope2_market"})]
    for a in by_kind["scope3"]:
        f = fs.scope3(a.item)
        lines.append(_simple_line(a, "scope3", f.category, f, f.per_unit))
    lines += [memo_line(a, "on-site PV generation behind the main meter: what the site uses is not purchased "
                           "(any export is already netted in the main meter)") for a in by_kind["pv_self_use"]]
    lines += [memo_line(a, "measured by CEMS: a cross-check of the calculated combustion and process lines")
              for a in by_kind["cems"]]
    return lines


def totals(lines: list[Line]) -> dict[str, float]:
    """tCO2 per scope, and ``total`` = scope 1 + location-based scope 2 (the figure reported by default)."""
    out = {s: sum(x.co2_t for x in lines if x.scope == s) for s in SCOPES if s != "memo"}
    out["total"] = out["scope1"] + out["scope2_location"]
    return out
