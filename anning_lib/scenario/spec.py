"""The scenario file (模拟仿真方案): what to change in the park, on which history, with which dispatch.

A scenario is a YAML file (examples in ``data/scenarios/``; the schema is this module)::

    name: 园区新增 10 MW 光伏
    history: {source: simulated, start: 2025-01-01, days: 365, seed: 1}
    dispatch: {mode: forecast, replan_h: 24}
    changes:
      - {type: add_pv, site: park, dc_kwp: 10000}
      - {type: add_storage, site: E01, energy_kwh: 20000, p_max_kw: 10000}
      - {type: tariff, connection: E02, tariff: yunnan_market_contract_example}
      - {type: electrify_boiler, device: E04-B1}
      - {type: shift_process, device: E01-EAF, share_frac: 0.2}
      - {type: green_electricity, enterprise: all, share_frac: 0.5}

Every number a change leaves out (capex per kWp, electric boiler efficiency, certificate premium ...) comes from
the measures catalogue ``data/advice/measures.yaml`` with its source; :func:`read_scenario` checks the file
against the park model and names the field and the bad value of every problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anning_lib.errors import ProblemsError
from anning_lib.park.loader import problems_from
from anning_lib.park.schema import Park


class ScenarioFileError(ProblemsError):
    """A scenario file is invalid or names something the park does not have."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class History(_Strict):
    """The history both cases run on: the store's 15-minute rollups, or the park simulator."""

    source: Literal["store", "simulated"] = "simulated"
    start: dt.date | None = Field(None, description="first local day; default: ``days`` before the store's last "
                                                     "complete day (store), 2025-01-01 (simulated)")
    days: int = Field(365, ge=2, le=1100, description="length of the period [d]")
    seed: int = Field(1, description="simulator seed (simulated source)")
    warmup_days: int = Field(7, ge=1, le=28, description="history before the period that the dispatch's "
                                                         "forecaster sees [d]")


class Dispatch(_Strict):
    """How the storages are run in both cases."""

    mode: Literal["forecast", "perfect", "none"] = Field(
        "forecast", description="forecast: the MPC on forecasts with the peak guard, as in operation; perfect: "
                                "one optimisation per month on the actual load (upper bound); none: storages idle")
    replan_h: float = Field(24.0, gt=0, le=24, description="how often the MPC replans [h] (multiple of 0.25)")

    @model_validator(mode="after")
    def _quarter(self) -> Dispatch:
        if abs(self.replan_h * 4 - round(self.replan_h * 4)) > 1e-9:
            raise ValueError(f"replan_h: {self.replan_h:g} is not a multiple of 0.25 h")
        return self


class AddPv(_Strict):
    type: Literal["add_pv"]
    site: str = Field(description="'park' (behind the 110 kV meter) or an enterprise id (behind its main meter)")
    dc_kwp: float = Field(gt=0, le=1e6, description="[kWp]")
    capex_cny_per_kwp: float | None = Field(None, ge=0, description="default: catalogue rooftop_pv [CNY/kWp]")


class AddStorage(_Strict):
    type: Literal["add_storage"]
    site: str
    energy_kwh: float = Field(gt=0, le=1e7, description="usable capacity [kWh]")
    p_max_kw: float = Field(gt=0, le=1e7, description="charge and discharge limit [kW]")
    eta_charge: float = Field(0.95, gt=0.5, le=1)
    eta_discharge: float = Field(0.95, gt=0.5, le=1)
    capex_cny_per_kwh: float | None = Field(None, ge=0, description="default: catalogue battery_storage [CNY/kWh]")


class ChangeTariff(_Strict):
    type: Literal["tariff"]
    connection: str = Field(description="'park', an enterprise id or 'all' (every enterprise and the park)")
    tariff: str = Field(description="a tariff id: data/tariffs/<id>.yaml")


class ElectrifyBoiler(_Strict):
    type: Literal["electrify_boiler"]
    device: str = Field(description="a boiler of the park model")
    eff_elec: float | None = Field(None, gt=0.5, le=1, description="default: catalogue boiler_electrification [-]")
    capex_cny_per_kw: float | None = Field(None, ge=0, description="per kW thermal; default: catalogue [CNY/kW]")


class ShiftProcess(_Strict):
    type: Literal["shift_process"]
    device: str = Field(description="a process line or sub-metered load")
    share_frac: float = Field(gt=0, le=1, description="share of its energy in from_band moved each day [-]")
    from_band: str = "peak"
    to_band: str = "valley"
    capex_cny: float = Field(0.0, ge=0, description="[CNY]")


class GreenElectricity(_Strict):
    type: Literal["green_electricity"]
    enterprise: str = Field(description="an enterprise id or 'all'")
    share_frac: float = Field(gt=0, le=1, description="share of net purchased electricity covered [-]")
    premium_cny_per_kwh: float | None = Field(None, ge=0, description="default: catalogue green_electricity")


Change = Annotated[AddPv | AddStorage | ChangeTariff | ElectrifyBoiler | ShiftProcess | GreenElectricity,
                   Field(discriminator="type")]


class Scenario(_Strict):
    """A scenario file (module docstring)."""

    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    history: History = History()
    dispatch: Dispatch = Dispatch()
    changes: list[Change] = Field(default_factory=list)

    def sha256(self) -> str:
        """Fingerprint of the scenario's content (not of its formatting) [hex]."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _site_ok(park: Park, site: str) -> bool:
    return site == "park" or any(e.id == site for e in park.enterprises)


def check_against_park(sc: Scenario, park: Park, tariff_ids: set[str]) -> list[tuple[str, object, str]]:
    """Problems of ``sc`` with respect to the park model and the tariff files (empty: none)."""
    out = []
    devices = {d.id: d for _e, d in park.iter_devices()}
    ents = {e.id for e in park.enterprises}
    for k, c in enumerate(sc.changes):
        at = f"changes[{k}]"
        if isinstance(c, (AddPv, AddStorage)) and not _site_ok(park, c.site):
            out.append((f"{at}.site", c.site, f"unknown site {c.site!r} (park or an enterprise id)"))
        elif isinstance(c, ChangeTariff):
            if c.connection not in ents | {"park", "all"}:
                out.append((f"{at}.connection", c.connection, f"unknown connection {c.connection!r}"))
            if c.tariff not in tariff_ids:
                out.append((f"{at}.tariff", c.tariff, f"no tariff file data/tariffs/{c.tariff}.yaml"))
        elif isinstance(c, ElectrifyBoiler):
            d = devices.get(c.device)
            if d is None or d.type != "boiler":
                out.append((f"{at}.device", c.device, f"{c.device!r} is not a boiler of the park model"))
        elif isinstance(c, ShiftProcess):
            d = devices.get(c.device)
            if d is None or not hasattr(d.p, "rated_kw") or park.enterprise_of(c.device) is None:
                out.append((f"{at}.device", c.device, f"{c.device!r} is not a load of an enterprise"))
            if c.from_band == c.to_band:
                out.append((f"{at}.to_band", c.to_band, "to_band must differ from from_band"))
        elif isinstance(c, GreenElectricity) and c.enterprise not in ents | {"all"}:
            out.append((f"{at}.enterprise", c.enterprise, f"unknown enterprise {c.enterprise!r}"))
    return out


def tariff_ids(data_dir: Path) -> set[str]:
    """The ids of the tariff files of ``data_dir/tariffs`` (the files with an energy price; not the band files)."""
    out = set()
    for p in sorted((Path(data_dir) / "tariffs").glob("*.yaml")):
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if isinstance(raw, dict) and "energy_price_flat_cny_per_kwh" in raw:
            out.add(p.stem)
    return out


def parse_scenario(raw: object, park: Park, data_dir: Path, source: str | None = None) -> Scenario:
    """A checked :class:`Scenario` from the YAML object ``raw``; ScenarioFileError naming every bad field."""
    if not isinstance(raw, dict):
        raise ScenarioFileError([("<root>", raw, "a scenario is a mapping (name, history, dispatch, changes)")],
                                source)
    try:
        sc = Scenario.model_validate(raw)
    except ValidationError as err:
        raise ScenarioFileError(problems_from(err), source) from None
    problems = check_against_park(sc, park, tariff_ids(data_dir))
    if problems:
        raise ScenarioFileError(problems, source)
    return sc


def read_scenario(path: Path | str, park: Park, data_dir: Path) -> Scenario:
    """Read and check a scenario file (YAML)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioFileError([("(file)", str(path), "no such file")], str(path)) from None
    except yaml.YAMLError as err:
        raise ScenarioFileError([("(file)", None, f"not valid YAML: {err}")], str(path)) from None
    return parse_scenario(raw, park, data_dir, str(path))
