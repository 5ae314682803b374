"""Units of activity data for carbon accounting: one pint registry, created once at import.

Conventions (documented choices)
--------------------------------
* **Gas volume is its own dimension** ``[gas_volume]``, not ``[length]**3``. A gas meter reading is an amount of
  gas stated at reference conditions, so it must not silently convert to or from a geometric volume (a tank,
  a room). ``Nm3`` (normal cubic metre, 0 °C and 101.325 kPa) is the base unit of that dimension.
* ``m3`` (also ``m³``, ``Sm3``, ``m3_20C``) means the **standard cubic metre of gas at 20 °C and 101.325 kPa**, as
  gas is usually metered and billed in China. By the ideal-gas law ``pV = nRT`` at equal pressure the volume of
  the same amount of gas is proportional to absolute temperature, so ``1 m3(20 °C) = 273.15 / 293.15 Nm3 =
  0.931776 Nm3`` (the real-gas compressibility difference, about 0.1 % for natural gas, is neglected).
  A geometric volume must be written ``m**3`` or ``L``.
* ``10^4 Nm3`` (万Nm3), also spelled ``10⁴Nm³``, ``1e4 Nm3`` or ``万Nm3``, is normalised by :func:`parse_unit`
  to the unit ``wan_Nm3`` (= 10 000 Nm3); likewise ``10^4 m3`` to ``wan_m3``.
* **CO2 mass is its own dimension** ``[co2]`` (``kgCO2``, ``tCO2``; ``tCO2e`` and ``kgCO2e`` are aliases, CO2
  being 1 CO2e), so that tonnes of fuel can never be added to tonnes of CO2.
* Freight work: ``t*km`` (also ``tkm``, ``t·km``).

References
----------
.. [1] BIPM, *The International System of Units (SI)*, 9th ed., 2019; GB 3100-1993 (tonne, kWh = 3.6 MJ).
.. [2] Ideal-gas law; e.g. P. Atkins, J. de Paula, *Physical Chemistry*, ch. 1 (Charles's law, V ∝ T at fixed p).
.. [3] GB/T 32150-2015, Table B.1: gaseous fuels stated per 10^4 Nm3.
"""

from __future__ import annotations

import re

import pint

from anning_lib.errors import CarbonError

ureg = pint.UnitRegistry(on_redefinition="raise")
"""The one registry of the carbon package; quantities from other registries cannot be mixed with it."""

for _definition in (
    "normal_cubic_metre = [gas_volume] = Nm3",
    "standard_cubic_metre_20C = 273.15 / 293.15 * normal_cubic_metre = Sm3 = m3 = m3_20C",
    "wan_Nm3 = 1e4 * normal_cubic_metre",
    "wan_m3 = 1e4 * standard_cubic_metre_20C = wan_Sm3",
    "kilogram_CO2 = [co2] = kgCO2 = kgCO2e",
    "tonne_CO2 = 1000 * kilogram_CO2 = tCO2 = tCO2e",
    "tonne_kilometre = metric_ton * kilometer = tkm",
):
    ureg.define(_definition)

Q_ = ureg.Quantity

_WAN = re.compile(r"^(?:10\s*\^\s*4|10\s*\*\*\s*4|10⁴|1e4|万)\s*(Nm3|Sm3|m3)$")
_DESCRIPTIONS = (  # (reference unit, words) used to name the dimension a unit is expected to have
    ("Nm3", "a gas volume like Nm3"),
    ("t", "a mass like t"),
    ("GJ", "an energy like GJ"),
    ("tCO2", "a CO2 mass like tCO2"),
    ("t*km", "a freight transport work like t*km"),
    ("m**3", "a geometric volume like m**3"),
)


def _normalise(text: str) -> str:
    s = text.strip().replace("³", "3").replace("²", "2").replace("·", "*").replace("×", "*")
    s = s.replace("Nm^3", "Nm3").replace("10^4m3", "10^4 m3")
    m = _WAN.match(s)
    if m:
        return "wan_Nm3" if m.group(1) == "Nm3" else "wan_m3"
    return s


def parse_unit(text: str) -> pint.Unit:
    """Parse a unit as written in activity data or a factor file.

    Parameters
    ----------
    text : str
        E.g. ``"t"``, ``"Nm3"``, ``"10^4 Nm3"``, ``"m3"`` (gas at 20 °C), ``"MWh"``, ``"tCO2/GJ"``, ``"t*km"``.

    Returns
    -------
    pint.Unit
        A unit of :data:`ureg`.

    Raises
    ------
    CarbonError
        If the text is empty, unknown, or carries a number (``"2 t"``).
    """
    if not isinstance(text, str) or not text.strip():
        raise CarbonError(f"unit {text!r} is empty; write a unit such as t, Nm3, 10^4 Nm3, GJ or MWh")
    s = _normalise(text)
    try:
        return ureg.parse_units(s)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError,
            TypeError, ValueError, SyntaxError) as exc:
        raise CarbonError(
            f"unknown unit '{text}' (known e.g.: t, kg, Nm3, 10^4 Nm3, m3 (gas at 20 °C), GJ, TJ, MJ, kWh, "
            f"MWh, GWh, tCO2, t*km): {exc}"
        ) from None


def describe(unit: str | pint.Unit) -> str:
    """Words for the dimension of ``unit``, e.g. ``"a gas volume like Nm3"`` (used in error messages)."""
    u = parse_unit(unit) if isinstance(unit, str) else unit
    for ref, words in _DESCRIPTIONS:
        if u.dimensionality == ureg.Unit(ref).dimensionality:
            return words
    return f"a quantity of dimension {u.dimensionality}"


def is_compatible(from_unit: str | pint.Unit, to_unit: str | pint.Unit) -> bool:
    """Whether an amount in ``from_unit`` can be converted to ``to_unit`` (same dimension)."""
    a = parse_unit(from_unit) if isinstance(from_unit, str) else from_unit
    b = parse_unit(to_unit) if isinstance(to_unit, str) else to_unit
    return a.dimensionality == b.dimensionality


def convert(amount: float, from_unit: str, to_unit: str, *, fits: str | None = None) -> float:
    """Convert an amount between units of the same dimension.

    Parameters
    ----------
    amount : float
        The amount in ``from_unit``.
    from_unit, to_unit : str
        Units accepted by :func:`parse_unit`.
    fits : str, optional
        What the amount is of (e.g. ``"natural_gas"``), named in the error message.

    Returns
    -------
    float
        The amount in ``to_unit``. E.g. ``convert(1, "MWh", "GJ") == 3.6``;
        ``convert(1, "m3", "Nm3") == 273.15 / 293.15``.

    Raises
    ------
    CarbonError
        (an :class:`~anning_lib.errors.AnningError`) if a unit is unknown or the dimensions differ, e.g.
        ``unit 'kg' does not fit 'kWh' (expects an energy like GJ)``.
    """
    src, dst = parse_unit(from_unit), parse_unit(to_unit)
    if src.dimensionality != dst.dimensionality:
        target = fits if fits else f"'{to_unit}'"
        raise CarbonError(f"unit '{from_unit}' does not fit {target} (expects {describe(dst)})")
    return float(Q_(amount, src).to(dst).magnitude)
