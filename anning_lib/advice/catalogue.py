"""The measures catalogue (``data/advice/measures.yaml``) and the sector benchmarks (``data/advice/benchmarks.csv``).

Every number of the catalogue is a quantity mapping ``{value, unit, source | assumption+basis | computed+method}``;
:class:`Catalogue` hands out the values and, for the advice's "data behind it", their citations.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from anning_lib.config import get_settings
from anning_lib.errors import ConfigError

BLOCKS = ("capex", "opex", "params")


@dataclass(frozen=True)
class Measure:
    """One catalogue entry: id, names, conditions, lifetime and its quantities by key."""

    id: str
    name: str
    name_en: str
    applies_to: tuple[str, ...]
    quantities: dict
    note: str = ""

    def value(self, key: str) -> float:
        """The value of quantity ``key`` (``lifetime_a`` or any key of capex/opex/params)."""
        try:
            q = self.quantities[key]
        except KeyError:
            raise ConfigError(f"data/advice/measures.yaml: {self.id}: no quantity {key!r}") from None
        return float(q["value"] if isinstance(q, dict) else q)

    def cite(self, key: str) -> str:
        """Where the value of ``key`` comes from: the source (and clause), or ``assumption: <basis>``."""
        q = self.quantities.get(key)
        if not isinstance(q, dict):
            return ""
        if q.get("source") and not q.get("assumption"):
            return q["source"] + (f", {q['clause']}" if q.get("clause") else "")
        if q.get("assumption"):
            return f"assumption: {q.get('basis', '')}"
        return q.get("method", "")


@dataclass(frozen=True)
class Catalogue:
    """The catalogue's version, finance block and measures by id."""

    version: str
    finance: dict
    measures: dict[str, Measure]

    def rate(self) -> float:
        """Discount rate [-/a]."""
        return float(self.finance["discount_rate"]["value"])

    def carbon_price_cny_per_t(self) -> float:
        """The carbon price below which an abating measure is recommended [CNY/tCO2]."""
        return float(self.finance["carbon_price_cny_per_t"]["value"])

    def gas_price_cny_per_nm3(self) -> float:
        return float(self.finance["natural_gas_price_cny_per_nm3"]["value"])


def _measure(raw: dict) -> Measure:
    quantities = {"lifetime_a": raw["lifetime_a"]}
    for block in BLOCKS:
        quantities.update(raw.get(block) or {})
    return Measure(raw["id"], raw["name"], raw.get("name_en", raw["id"]), tuple(raw.get("applies_to") or ()),
                   quantities, raw.get("note", ""))


@lru_cache(maxsize=4)
def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """Read the catalogue (default ``<data_dir>/advice/measures.yaml``); ConfigError naming the file and field."""
    path = Path(path or get_settings().data_dir / "advice" / "measures.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Catalogue(str(raw["version"]), raw["finance"], {m["id"]: _measure(m) for m in raw["measures"]})
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: cannot read the measures catalogue: {err!r}") from None


@lru_cache(maxsize=4)
def load_benchmarks(path: Path | str | None = None) -> pd.DataFrame:
    """The sector benchmark table (``sector, product, indicator, unit, benchmark, baseline, limit, source, year,
    note``)."""
    path = Path(path or get_settings().data_dir / "advice" / "benchmarks.csv")
    return pd.read_csv(path, dtype={"sector": str, "product": str, "indicator": str, "unit": str})
