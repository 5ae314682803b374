"""The dispatch case: one billing connection's load, PV, tariff, grid limits and storages over a horizon.

This is the schema of ``anning dispatch optimize --case FILE`` (docs/dispatch.md) and the input of
:func:`anning_lib.dispatch.optimize.optimize`. Every check here names the field and the bad value; a case that
passes them can still be infeasible (e.g. a load above the import limit with empty storage), which the optimiser
reports as :class:`~anning_lib.errors.InfeasibleError`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anning_lib.errors import CaseFileError
from anning_lib.park.loader import problems_from

PriceSeries = list[float] | float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseTariff(_Strict):
    import_price_cny_per_kwh: PriceSeries = Field(description="per step or one value [CNY/kWh]")
    export_price_cny_per_kwh: PriceSeries = Field(0.0, description="per step or one value [CNY/kWh]")
    demand_charge_cny_per_kw: float = Field(0.0, ge=0, description="on the billing period's peak import [CNY/kW]")
    demand_peak_so_far_kw: float = Field(0.0, ge=0, description="peak import already set this billing period [kW]")
    demand_threshold_kw: float | None = Field(None, ge=0, description="expected peak of the billing period: "
                                              "storage raising the import above it minus demand_margin_kw pays the "
                                              "demand charge (docs/dispatch.md); null: no such term [kW]")
    demand_margin_kw: PriceSeries = Field(0.0, description="per step or one value: room below demand_threshold_kw "
                                          "for load the forecast missed [kW]")
    carbon_price_cny_per_t: float = Field(0.0, ge=0, description="carbon shadow price on imports [CNY/tCO2]")
    grid_factor_t_per_kwh: float = Field(0.0, ge=0, description="grid emission factor [tCO2/kWh]")


class CaseGrid(_Strict):
    import_limit_kw: float = Field(1e9, gt=0, description="transformer or contract import limit [kW]")
    export_limit_kw: float = Field(0.0, ge=0, description="export limit; 0 means no export [kW]")


class CaseStorage(_Strict):
    """One storage. Energy after step t: ``e_t = e_{t-1} + (eta_charge * c_t - d_t / eta_discharge) * dt``."""

    id: str = Field(min_length=1)
    energy_kwh: float = Field(ge=0, description="usable capacity [kWh]")
    power_kw: float = Field(ge=0, description="charge and discharge limit [kW]")
    eta_charge: float = Field(0.95, gt=0, le=1, description="[-]")
    eta_discharge: float = Field(0.95, gt=0, le=1, description="[-]")
    soc_min_frac: float = Field(0.1, ge=0, le=1, description="[-]")
    soc_max_frac: float = Field(0.9, ge=0, le=1, description="[-]")
    soc_initial_frac: float = Field(0.5, ge=0, le=1, description="state of charge before the first step [-]")
    soc_final_frac: float | None = Field(0.5, ge=0, le=1, description="lowest state of charge at the end [-]; null: free")
    degradation_cny_per_kwh: float = Field(0.0, ge=0, description="cost per kWh charged plus discharged [CNY/kWh]")

    @model_validator(mode="after")
    def _soc_order(self) -> CaseStorage:
        if self.soc_min_frac > self.soc_max_frac:
            raise ValueError(f"soc_min_frac {self.soc_min_frac} is above soc_max_frac {self.soc_max_frac}")
        if not self.soc_min_frac <= self.soc_initial_frac <= self.soc_max_frac:
            raise ValueError(f"soc_initial_frac {self.soc_initial_frac} is outside "
                             f"[soc_min_frac {self.soc_min_frac}, soc_max_frac {self.soc_max_frac}]")
        if self.soc_final_frac is not None and not self.soc_min_frac <= self.soc_final_frac <= self.soc_max_frac:
            raise ValueError(f"soc_final_frac {self.soc_final_frac} is outside "
                             f"[soc_min_frac {self.soc_min_frac}, soc_max_frac {self.soc_max_frac}]")
        return self


class DispatchCase(_Strict):
    """A dispatch case (docs/dispatch.md has the JSON form). Loads and PV are step means [kW]."""

    timestep_minutes: float = Field(gt=0, le=1440)
    start: dt.datetime
    load_kw: list[float] = Field(min_length=1, description="site consumption without the storages [kW]")
    pv_kw: list[float] | float = Field(0.0, description="PV generation behind the meter [kW]")
    tariff: CaseTariff
    grid: CaseGrid = CaseGrid()
    storage: list[CaseStorage] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> DispatchCase:
        n = len(self.load_kw)
        if self.start.tzinfo is None:
            raise ValueError(f"start: {self.start.isoformat()} has no UTC offset (write e.g. +08:00)")
        for name, values in (("pv_kw", self.pv_kw), ("tariff.import_price_cny_per_kwh",
                             self.tariff.import_price_cny_per_kwh),
                             ("tariff.export_price_cny_per_kwh", self.tariff.export_price_cny_per_kwh),
                             ("tariff.demand_margin_kw", self.tariff.demand_margin_kw)):
            if isinstance(values, list) and len(values) != n:
                raise ValueError(f"{name}: {len(values)} values but load_kw has {n}")
        arrays = {"load_kw": self.load_kw, "pv_kw": self.pv_kw,
                  "tariff.import_price_cny_per_kwh": self.tariff.import_price_cny_per_kwh,
                  "tariff.export_price_cny_per_kwh": self.tariff.export_price_cny_per_kwh,
                  "tariff.demand_margin_kw": self.tariff.demand_margin_kw}
        for name, values in arrays.items():
            a = np.atleast_1d(np.asarray(values, dtype=float))
            if not np.isfinite(a).all():
                raise ValueError(f"{name}[{int(np.argmin(np.isfinite(a)))}]: not a finite number")
        pv = np.atleast_1d(np.asarray(self.pv_kw, dtype=float))
        if (pv < 0).any():
            i = int(np.argmax(pv < 0))
            raise ValueError(f"pv_kw[{i}]: {pv[i]:g} is negative (PV only generates)")
        ids = [s.id for s in self.storage]
        if len(set(ids)) != len(ids):
            raise ValueError(f"storage: duplicate id {next(i for i in ids if ids.count(i) > 1)!r}")
        self._final_reachable()
        return self

    def _final_reachable(self) -> None:
        hours = len(self.load_kw) * self.timestep_minutes / 60.0
        for k, s in enumerate(self.storage):
            if s.soc_final_frac is None or s.energy_kwh == 0:
                continue
            gain_frac = s.power_kw * s.eta_charge * hours / s.energy_kwh
            if s.soc_final_frac > min(s.soc_max_frac, s.soc_initial_frac + gain_frac) + 1e-9:
                raise ValueError(
                    f"storage[{k}].soc_final_frac: {s.soc_final_frac:g} cannot be reached from soc_initial_frac "
                    f"{s.soc_initial_frac:g} in {hours:g} h at {s.power_kw:g} kW")

    # ------------------------------------------------------------------------------------------ views
    @property
    def n_steps(self) -> int:
        return len(self.load_kw)

    @property
    def dt_h(self) -> float:
        return self.timestep_minutes / 60.0

    def index(self) -> pd.DatetimeIndex:
        """Start of each step, in the case's own UTC offset."""
        start = pd.Timestamp(self.start)
        return pd.date_range(start, periods=self.n_steps, freq=pd.Timedelta(minutes=self.timestep_minutes))

    def series(self, name: str) -> np.ndarray:
        """``load_kw``, ``pv_kw``, ``import_price``, ``export_price`` or ``demand_margin`` as one value per step."""
        value = {"load_kw": self.load_kw, "pv_kw": self.pv_kw,
                 "import_price": self.tariff.import_price_cny_per_kwh,
                 "export_price": self.tariff.export_price_cny_per_kwh,
                 "demand_margin": self.tariff.demand_margin_kw}[name]
        return np.broadcast_to(np.asarray(value, dtype=float), (self.n_steps,)).copy()

    def without_storage(self) -> DispatchCase:
        """The same case with no storage: the baseline."""
        return self.model_copy(update={"storage": []})


def parse_case(raw: dict, source: str | None = None) -> DispatchCase:
    """A :class:`DispatchCase` from the JSON object ``raw``; CaseFileError naming every bad field."""
    try:
        return DispatchCase.model_validate(raw)
    except ValidationError as err:
        problems = problems_from(err)
        # a cross-field message names its own field first ("pv_kw: ..."): use that as the path
        problems = [(m.split(": ", 1)[0], v, m.split(": ", 1)[1]) if p == "<root>" and ": " in m else (p, v, m)
                    for p, v, m in problems]
        raise CaseFileError(problems, source) from None


def read_case(path: Path) -> DispatchCase:
    """Read a case file (JSON)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseFileError([("(file)", str(path), "no such file")], str(path)) from None
    except json.JSONDecodeError as err:
        raise CaseFileError([(f"line {err.lineno}", None, f"not valid JSON: {err.msg}")], str(path)) from None
    if not isinstance(raw, dict):
        raise CaseFileError([("<root>", raw, "a case is a JSON object")], str(path))
    return parse_case(raw, str(path))
