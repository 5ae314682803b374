"""Emission-factor library: load the versioned factor set of ``data/emission_factors`` and look factors up.

Pure loading and lookup, no database. Every factor carries ``source`` (document), ``clause`` (table, clause or
page), ``year`` (publication year) and ``version`` (factor-set version) so that a result can cite it. Files and
their columns are described in ``data/emission_factors/README.md``; ``manifest.yaml`` names the files and the
default version. Loading a version takes exactly the rows of that version (a new version is a complete new set
of rows; old rows stay in the files).

References
----------
.. [1] GB/T 32150-2015 工业企业温室气体排放核算和报告通则, fuel-combustion formula, Table B.1.
.. [2] NDRC sector guidelines 行业企业温室气体排放核算方法与报告指南（试行）, 2013-2015.
.. [3] 生态环境部 国家统计局, announcements of the 2021, 2022 and 2023 electricity CO2 emission factors.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anning_lib.carbon import units
from anning_lib.config import get_settings
from anning_lib.errors import CarbonError, ProblemsError

C_TO_CO2 = 44.0 / 12.0
"""Ratio of the molecular mass of CO2 to the atomic mass of C used by the guidelines [-]."""

KINDS = ("fuels", "grid", "heat", "process", "scope3")


def _denominator(unit: str) -> str:
    """``"tCO2e/(t*km)"`` -> ``"t*km"``: the activity unit a factor unit applies to."""
    return unit.split("/", 1)[1].strip().removeprefix("(").removesuffix(")")


@dataclass(frozen=True, kw_only=True)
class _Cited:
    key: str
    source: str
    clause: str
    year: int
    version: str
    verification: str = ""

    @property
    def citation(self) -> str:
        """``source, clause (year); factor set version`` for reports."""
        return f"{self.source}, {self.clause} ({self.year}); factor set {self.version}"


@dataclass(frozen=True, kw_only=True)
class Factor(_Cited):
    """An emission factor ``value`` [``unit``], e.g. 0.5366 tCO2/MWh, with its citation."""

    kind: str
    value: float
    unit: str
    region: str = "national"
    data_year: int | None = None
    basis: str | None = None
    name_zh: str = ""
    name_en: str = ""
    category: str | None = None
    stoich_value: float | None = None

    @property
    def per_unit(self) -> str:
        """The activity unit the factor applies to: the denominator of :attr:`unit` (``"t*km"``, ``"GJ"``)."""
        return _denominator(self.unit)


@dataclass(frozen=True, kw_only=True)
class FuelFactor(_Cited):
    """Combustion defaults of a fuel: NCV [GJ/unit], carbon content [tC/TJ] and oxidation [-] per ``basis_unit``."""

    name_zh: str
    name_en: str
    basis_unit: str
    ncv_gj_per_unit: float
    carbon_tc_per_tj: float
    oxidation_frac: float

    @property
    def co2_t_per_unit(self) -> float:
        """Emission factor [tCO2/basis_unit] = NCV × C × OF × 44/12 / 1000 (GB/T 32150-2015 formula (2))."""
        return self.ncv_gj_per_unit * self.carbon_tc_per_tj * self.oxidation_frac * C_TO_CO2 / 1000.0

    def to_basis(self, amount: float, unit: str) -> float:
        """An amount of this fuel in :attr:`basis_unit`; an energy (GJ, kWh, ...) is divided by the NCV.

        Raises
        ------
        CarbonError
            e.g. ``unit 't' does not fit natural_gas (expects a gas volume like Nm3 or an energy like GJ)``.
        """
        if units.is_compatible(unit, self.basis_unit):
            return units.convert(amount, unit, self.basis_unit)
        if units.is_compatible(unit, "GJ"):
            return units.convert(amount, unit, "GJ") / self.ncv_gj_per_unit
        raise CarbonError(f"unit '{unit}' does not fit {self.key} "
                          f"(expects {units.describe(self.basis_unit)} or an energy like GJ)")


# ---------------------------------------------------------------- row models (one per file)

class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: str = Field(min_length=3)
    clause: str = Field(min_length=1)
    year: int = Field(ge=1990, le=2100)
    version: str = Field(pattern=r"^\d{4}\.\d+$")
    verification: str | None = None


class _NamedRow(_Row):
    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)


class _FuelRow(_NamedRow):
    basis_unit: Literal["t", "Nm3"]
    ncv_gj_per_unit: float = Field(gt=0, lt=100)
    carbon_tc_per_tj: float = Field(gt=0, lt=200)
    oxidation_frac: float = Field(gt=0, le=1)


class _ValueMixin(BaseModel):
    value: float = Field(gt=0)
    unit: str

    @field_validator("unit")
    @classmethod
    def _unit_is_a_factor_unit(cls, v: str) -> str:
        if "/" not in v:
            raise ValueError("must be an emission per activity unit, e.g. tCO2/t")
        try:
            emitted = units.parse_unit(v) * units.parse_unit(_denominator(v))
        except CarbonError as exc:
            raise ValueError(str(exc)) from None
        if not units.is_compatible(emitted, "tCO2"):
            raise ValueError("numerator must be a CO2 mass (tCO2, tCO2e, kgCO2)")
        return v


class _GridRow(_Row, _ValueMixin):
    key: Literal["electricity"]
    region: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    data_year: int = Field(ge=2000, le=2100)
    basis: Literal["location", "residual", "fossil"]
    value: float = Field(gt=0, lt=2)


class _HeatRow(_NamedRow, _ValueMixin):
    """A row of ``heat.csv``: a named factor with its value and unit."""


class _ProcessRow(_NamedRow, _ValueMixin):
    sector: str = Field(min_length=1)
    stoich_value: float | None = Field(default=None, gt=0)


class _Scope3Row(_NamedRow, _ValueMixin):
    category: str = Field(min_length=1)
    region: str = Field(min_length=1)


_MODELS = {"fuels": _FuelRow, "grid": _GridRow, "heat": _HeatRow, "process": _ProcessRow, "scope3": _Scope3Row}
_IDENTITY = {"fuels": ("key",), "grid": ("region", "data_year", "basis"), "heat": ("key",), "process": ("key",),
             "scope3": ("key",)}


def _problems(line: int, data: dict, exc: ValidationError) -> list[tuple[str, object, str]]:
    cols = [str(e["loc"][0]) if e["loc"] else "?" for e in exc.errors()]
    return [(f"line {line}, column {c}", data.get(c), f"value {data.get(c)!r}: {e['msg']}")
            for c, e in zip(cols, exc.errors())]


def _read_rows(path: Path, kind: str) -> list[BaseModel]:
    """Validate every row of one CSV file; all problems are raised together, each naming line, column, value."""
    model, problems, rows, seen = _MODELS[kind], [], [], {}
    if not path.is_file():
        raise ProblemsError([("file", str(path), f"factor file not found: {path}")])
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header, expected = reader.fieldnames or [], list(model.model_fields)
        missing = [c for c in expected if c not in header and model.model_fields[c].is_required()]
        if missing or set(header) - set(expected):
            raise ProblemsError([("line 1, header", header, f"missing columns {missing}, unknown columns "
                                  f"{sorted(set(header) - set(expected))} (expected {expected})")], source=str(path))
        for raw in reader:
            line, data = reader.line_num, {k: (v if v and v.strip() else None) for k, v in raw.items() if k}
            if None in raw:
                problems.append((f"line {line}", raw[None], "more cells than header columns"))
                continue
            try:
                row = model.model_validate(data)
            except ValidationError as exc:
                problems += _problems(line, data, exc)
                continue
            ident = tuple(getattr(row, c) for c in _IDENTITY[kind]) + (row.version,)
            if ident in seen:
                problems.append((f"line {line}", ident, f"duplicate of line {seen[ident]} {ident}"))
            seen[ident] = line
            rows.append(row)
    if problems:
        raise ProblemsError(problems, source=str(path))
    return rows


def _unknown(what: str, key: object, known: list[str]) -> CarbonError:
    return CarbonError(f"unknown {what} {key!r} (known: {', '.join(known) or 'none'})")


class FactorSet:
    """All factors of one version of the factor set. Build with :func:`load_factor_set`."""

    def __init__(self, version: str, folder: Path, rows: dict[str, list[BaseModel]]):
        self.version = version
        self.folder = folder
        self._fuels = {r.key: FuelFactor(**r.model_dump(exclude_none=True)) for r in rows["fuels"]}

        def factor(kind: str, r: BaseModel) -> Factor:
            d = r.model_dump(exclude_none=True)
            if "sector" in d:
                d["category"] = d.pop("sector")
            return Factor(kind=kind, **d)

        self._grid = {(r.region, r.data_year, r.basis): factor("grid", r) for r in rows["grid"]}
        self._heat = {r.key: factor("heat", r) for r in rows["heat"]}
        self._process = {r.key: factor("process", r) for r in rows["process"]}
        self._scope3 = {r.key: factor("scope3", r) for r in rows["scope3"]}

    @staticmethod
    def _get(table: dict, key, what: str):
        if key not in table:
            raise _unknown(what, key, sorted(table))
        return table[key]

    def fuel(self, key: str) -> FuelFactor:
        """Combustion defaults of fuel ``key`` (e.g. ``"natural_gas"``)."""
        return self._get(self._fuels, key, "fuel")

    def grid(self, region: str, data_year: int, basis: str = "location") -> Factor:
        """Electricity CO2 factor [tCO2/MWh] of ``region`` (``national``, ``yunnan``, ``southwest``, ...).

        ``basis``: ``location`` (average), ``residual`` (national, excluding market-traded non-fossil power) or
        ``fossil`` (fossil-fired power only).
        """
        if (region, data_year, basis) not in self._grid:
            known = [f"{r} {y} {b}" for r, y, b in sorted(self._grid)]
            raise _unknown("grid factor (region, data year, basis)", f"{region} {data_year} {basis}", known)
        return self._grid[(region, data_year, basis)]

    def latest_grid_year(self, region: str, basis: str = "location") -> int:
        """The latest data year with a grid factor for ``region`` and ``basis``."""
        years = [y for r, y, b in self._grid if r == region and b == basis]
        if not years:
            raise _unknown("grid region/basis", f"{region} {basis}", sorted({f"{r} {b}" for r, _, b in self._grid}))
        return max(years)

    def heat(self, key: str = "purchased_heat") -> Factor:
        """Purchased heat factor [tCO2/GJ]."""
        return self._get(self._heat, key, "heat factor")

    def process(self, key: str) -> Factor:
        """Industrial-process factor [tCO2/t] of material ``key`` (``limestone``, ``dolomite``, ``electrode``...)."""
        return self._get(self._process, key, "process factor")

    def scope3(self, key: str) -> Factor:
        """Scope 3 factor of ``key`` [tCO2e per :attr:`Factor.per_unit`]."""
        return self._get(self._scope3, key, "scope 3 factor")

    def rows(self) -> pd.DataFrame:
        """Every factor as one table: ``key, region, value, unit, version, source`` (the columns of the
        ``emission_factor`` table, unique on key, region, version) and ``kind, clause, year, detail``.

        Fuels appear with their derived emission factor [tCO2/basis unit]; grid keys are
        ``electricity:<basis>:<data year>``.
        """
        out = [{"kind": "fuel", "key": f"fuel:{f.key}", "region": "national", "value": f.co2_t_per_unit,
                "unit": f"tCO2/{f.basis_unit}", "version": f.version, "source": f.source, "clause": f.clause,
                "year": f.year, "detail": f"NCV {f.ncv_gj_per_unit:g} GJ/{f.basis_unit} × {f.carbon_tc_per_tj:g} "
                                          f"tC/TJ × {f.oxidation_frac:g} × 44/12"} for f in self._fuels.values()]
        for kind, table in (("grid", self._grid), ("heat", self._heat), ("process", self._process),
                            ("scope3", self._scope3)):
            out += [{"kind": kind, "key": f"{f.key}:{f.basis}:{f.data_year}" if kind == "grid" else f"{kind}:{f.key}",
                     "region": f.region, "value": f.value, "unit": f.unit, "version": f.version, "source": f.source,
                     "clause": f.clause, "year": f.year, "detail": f.name_en or f"{f.region} {f.basis} {f.data_year}"}
                    for f in table.values()]
        cols = ["key", "region", "value", "unit", "version", "source", "kind", "clause", "year", "detail"]
        return pd.DataFrame(out, columns=cols)


def load_factor_set(folder: Path | str | None = None, version: str | None = None) -> FactorSet:
    """Read and validate the factor set.

    Parameters
    ----------
    folder : Path, optional
        Default ``settings.data_dir / "emission_factors"``.
    version : str, optional
        Factor-set version, e.g. ``"2026.1"``; default the ``version`` of ``manifest.yaml``.

    Raises
    ------
    ProblemsError
        A file is missing or a row is malformed: names the file, line, column and value.
    CarbonError
        No row of a file has the requested version.
    """
    folder = Path(folder) if folder is not None else get_settings().data_dir / "emission_factors"
    try:
        manifest = yaml.safe_load((folder / "manifest.yaml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProblemsError([("file", str(folder / "manifest.yaml"), "factor-set manifest not found")]) from None
    version = str(version or manifest["version"])
    rows: dict[str, list[BaseModel]] = {}
    for kind in KINDS:
        path = folder / manifest["files"][kind]
        all_rows = _read_rows(path, kind)
        rows[kind] = [r for r in all_rows if r.version == version]
        if not rows[kind]:
            have = sorted({r.version for r in all_rows})
            raise CarbonError(f"{path}: no rows of factor-set version {version!r} (versions in the file: {have})")
    return FactorSet(version, folder, rows)
