"""Reference catalogues the park model is checked against: units (``data/units.yaml``) and energy carriers
(``data/carriers.yaml``). Both are data, so a new unit or carrier needs no code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from anning_lib.errors import ParkModelError


@dataclass(frozen=True)
class Quantity:
    """A physical quantity with its canonical unit and the factors of the other units to it."""

    name: str
    canonical: str
    factors: dict[str, float]

    def to_canonical(self, unit: str) -> float:
        """Factor that turns a value in ``unit`` into the canonical unit [-]."""
        return self.factors[unit]


@dataclass(frozen=True)
class Carrier:
    """An energy carrier (electricity, steam, natural gas, ...)."""

    id: str
    name_zh: str
    name_en: str
    flow_quantity: str
    unit: str
    ncv_gj_per_unit: float | None = None
    heat_gj_per_unit: float | None = None
    carbon_tc_per_tj: float | None = None
    oxidation_frac: float | None = None

    @property
    def co2_t_per_unit(self) -> float | None:
        """Combustion CO2 per unit of fuel [t/unit]: NCV x carbon content x oxidation x 44/12.

        References
        ----------
        GB/T 32150-2015, formula (2) and Table B.1.
        """
        if None in (self.ncv_gj_per_unit, self.carbon_tc_per_tj, self.oxidation_frac):
            return None
        return self.ncv_gj_per_unit * 1e-3 * self.carbon_tc_per_tj * self.oxidation_frac * 44.0 / 12.0


@dataclass(frozen=True)
class Catalogue:
    quantities: dict[str, Quantity]
    carriers: dict[str, Carrier]


def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ParkModelError([("file", str(path), f"reference file not found: {path}")]) from None


@lru_cache(maxsize=8)
def load_catalogue(data_dir: Path) -> Catalogue:
    """Read ``units.yaml`` and ``carriers.yaml`` from ``data_dir``."""
    units = _read_yaml(Path(data_dir) / "units.yaml")
    quantities = {
        name: Quantity(name, q["canonical"], {str(k): float(v) for k, v in q["units"].items()})
        for name, q in units["quantities"].items()
    }
    raw = _read_yaml(Path(data_dir) / "carriers.yaml")["carriers"]
    carriers = {}
    for cid, c in raw.items():
        fields = {k: c[k] for k in Carrier.__dataclass_fields__ if k in c and k != "id"}
        carriers[cid] = Carrier(id=cid, **fields)
    return Catalogue(quantities, carriers)
