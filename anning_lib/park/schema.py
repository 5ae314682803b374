"""The park model: enterprises, buildings, devices and points, as pydantic models.

The file ``data/park/anning.yaml`` is read by :func:`anning_lib.park.loader.load_park`, which validates it
against these models and the reference catalogues (units, carriers). Sign conventions and units are in
``docs/glossary.md``.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from anning_lib.park.polygon import simple_polygon

ID = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*$", max_length=48)]
Sector = Literal["steel", "petrochemical", "phosphorus_chemical", "battery_materials", "utilities"]
Protocol = Literal["modbus", "opcua", "mqtt"]
LoadProfile = Literal[
    "steel_eaf",        # electric arc furnace: tap-to-tap heats, power-off gaps
    "steel_rolling",    # rolling mill: billet passes, roll changes, day shifts heavier
    "continuous",       # chemical/refining process: near flat, slow drifts
    "battery_line",     # battery-material kilns and lines: continuous with starts and stops
    "office",           # offices, labs: working hours, weekends low
    "utility",          # pumps, compressors, lighting: mild daily cycle
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------- params
class MeterParams(_Strict):
    """Main meter of an enterprise or the park's grid connection."""

    accuracy_class_pct: float = Field(0.5, gt=0, le=2, description="meter accuracy class [%] (IEC 62053-22)")
    loss_frac: float = Field(0.0, ge=0, lt=0.2, description="losses between this meter and the sub-meters [-]")
    rated_kva: float | None = Field(None, gt=0, description="transformer or connection rating [kVA]")
    voltage_kv: float | None = Field(None, gt=0, description="nominal voltage [kV]")


class FlexParams(_Strict):
    """Demand-response flexibility of a load (``docs/demand_response.md``); every number is an ASSUMPTION to be
    agreed with the enterprise and named in the device's ``assumptions``."""

    kind: Literal["curtailable", "shiftable"] = Field(
        description="curtailable: the shed energy is lost production; shiftable: it is consumed again later")
    max_reduction_kw: float = Field(gt=0, description="largest reduction of the load's demand it can hold [kW]")
    min_reduction_kw: float = Field(0.0, ge=0, description="smallest reduction worth starting (shed at least this "
                                    "or nothing); documentation only, the LP allocation does not enforce it [kW]")
    max_duration_h: float = Field(gt=0, description="longest continuous reduction [h]")
    cost_cny_per_kwh: float = Field(ge=0, description="the enterprise's cost of not consuming (lost production, "
                                    "restart losses) per kWh shed [CNY/kWh]")
    rebound_frac: float = Field(0.0, ge=0, le=1, description="share of the shed energy consumed again after the "
                                "window (0 for curtailable loads) [-]")
    notice_min: float = Field(30.0, ge=0, description="minimum advance notice before the reduction starts [min]")

    @model_validator(mode="after")
    def _min_below_max(self) -> FlexParams:
        if self.min_reduction_kw > self.max_reduction_kw:
            raise ValueError(f"flex.min_reduction_kw {self.min_reduction_kw:g} must not exceed "
                             f"flex.max_reduction_kw {self.max_reduction_kw:g}")
        return self


class LoadParams(_Strict):
    """A sub-metered load: a process line, a utility or a building."""

    profile: LoadProfile
    rated_kw: float = Field(gt=0, description="rated electrical demand [kW]")
    load_factor: float = Field(gt=0, le=1, description="mean demand / rated demand when running [-]")
    production_t_per_h: float | None = Field(None, gt=0, description="product output at the mean power rated_kw * load_factor; it scales with power [t/h]")
    steam_t_per_t: float = Field(0.0, ge=0, description="process steam per tonne of product [t/t]")
    gas_nm3_per_t: float = Field(0.0, ge=0, description="natural gas fired directly per tonne of product [Nm3/t]")
    process_co2_t_per_t: float = Field(0.0, ge=0, description="process (non-combustion) CO2 per tonne [t/t]")
    outage_days_per_year: float = Field(4.0, ge=0, le=60, description="planned maintenance outage days [d/a]")
    flex: FlexParams | None = Field(None, description="demand-response flexibility, if the load takes part")

    @model_validator(mode="after")
    def _flex_within_rating(self) -> LoadParams:
        if self.flex is not None and self.flex.max_reduction_kw > self.rated_kw:
            raise ValueError(f"flex.max_reduction_kw {self.flex.max_reduction_kw:g} must not exceed "
                             f"rated_kw {self.rated_kw:g}")
        return self


class PvParams(_Strict):
    """A PV array with its inverters."""

    dc_kwp: float = Field(gt=0, description="DC nameplate at STC [kWp]")
    ac_kw: float = Field(gt=0, description="inverter AC rating [kW]")
    tilt_deg: float = Field(ge=0, le=90, description="surface tilt from horizontal [deg]")
    azimuth_deg: float = Field(180.0, ge=0, lt=360, description="surface azimuth, 180 = south [deg]")
    gamma_pdc_per_degc: float = Field(-0.0035, lt=0, gt=-0.01, description="power temperature coefficient [1/degC]")
    eta_inv_nom: float = Field(0.97, gt=0.8, le=1, description="nominal inverter efficiency [-]")
    mounting: Literal["roof", "ground"] = "roof"
    losses_frac: float = Field(0.10, ge=0, lt=0.5, description="soiling, wiring, mismatch losses [-]")


class BessParams(_Strict):
    """A battery energy storage system. Sign: p_kw > 0 discharges (see docs/glossary.md)."""

    capacity_kwh: float = Field(gt=0, description="usable energy capacity [kWh]")
    p_max_kw: float = Field(gt=0, description="inverter power limit, charge and discharge [kW]")
    eta_charge: float = Field(0.95, gt=0.5, le=1, description="charge efficiency [-]")
    eta_discharge: float = Field(0.95, gt=0.5, le=1, description="discharge efficiency [-]")
    soc_min_frac: float = Field(0.1, ge=0, lt=1, description="lowest allowed state of charge [-]")
    soc_max_frac: float = Field(0.95, gt=0, le=1, description="highest allowed state of charge [-]")
    soc_init_frac: float = Field(0.5, ge=0, le=1, description="state of charge at the simulation start [-]")
    soh_frac: float = Field(1.0, gt=0, le=1, description="state of health: usable / nameplate capacity [-]")
    control: Literal["advisory", "auto"] = Field("advisory", description="setpoints suggested or executed")

    @property
    def energy_kwh(self) -> float:
        """Energy the storage holds between empty and full today: ``capacity_kwh * soh_frac`` [kWh]; the one
        figure the simulator, the optimiser and demand response use."""
        return self.capacity_kwh * self.soh_frac

    @model_validator(mode="after")
    def _soc_order(self) -> BessParams:
        if not self.soc_min_frac < self.soc_max_frac:
            raise ValueError(f"soc_min_frac {self.soc_min_frac} must be below soc_max_frac {self.soc_max_frac}")
        if not self.soc_min_frac <= self.soc_init_frac <= self.soc_max_frac:
            raise ValueError(f"soc_init_frac {self.soc_init_frac} outside [soc_min_frac, soc_max_frac]")
        return self


class BoilerParams(_Strict):
    """A fuel-fired steam boiler."""

    steam_rated_t_h: float = Field(gt=0, description="rated steam output [t/h]")
    efficiency: float = Field(0.90, gt=0.3, le=1, description="fuel-to-steam efficiency on NCV [-]")
    fuel: str = Field("natural_gas", description="fuel carrier id")
    aux_kw_per_t_h: float = Field(8.0, ge=0, description="fans and feed pumps per t/h of steam [kW/(t/h)]")


class MonitorParams(_Strict):
    """A continuous emission monitor (CEMS) on a stack."""

    sources: list[str] = Field(min_length=1, description="device ids whose flue gas passes this stack")


class NoParams(_Strict):
    """Devices that take no parameters (the weather station)."""


PARAMS_BY_TYPE: dict[str, type[BaseModel]] = {
    "grid_meter": MeterParams,
    "main_meter": MeterParams,
    "sub_meter": LoadParams,
    "process_line": LoadParams,
    "pv": PvParams,
    "bess": BessParams,
    "boiler": BoilerParams,
    "carbon_monitor": MonitorParams,
    "weather_station": NoParams,
}
DeviceType = Literal[
    "grid_meter", "main_meter", "sub_meter", "process_line", "pv", "bess", "boiler", "carbon_monitor",
    "weather_station",
]


# ---------------------------------------------------------------------------------------------- points
class Point(_Strict):
    """One measured quantity of a device. Its protocol address is in the gateway's point maps (``ingest/``)."""

    id: ID
    quantity: str
    unit: str
    min: float | None = Field(None, description="lowest plausible value, in ``unit``")
    max: float | None = Field(None, description="highest plausible value, in ``unit``")
    writable: bool = Field(False, description="a setpoint the control path may write")

    @field_validator("quantity")
    @classmethod
    def _known_quantity(cls, v: str, info: ValidationInfo) -> str:
        cat = (info.context or {}).get("catalogue")
        if cat is not None and v not in cat.quantities:
            raise ValueError(f"unknown quantity '{v}'")
        return v

    @field_validator("unit")
    @classmethod
    def _known_unit(cls, v: str, info: ValidationInfo) -> str:
        cat = (info.context or {}).get("catalogue")
        quantity = info.data.get("quantity")
        if cat is None or quantity not in cat.quantities:
            return v
        if v not in cat.quantities[quantity].factors:
            raise ValueError(f"unknown unit '{v}' for {quantity}")
        return v

    def limit_violation(self, value: float) -> str | None:
        """None if ``value`` [unit] is a finite number within ``min``/``max``, else why not (for messages)."""
        if not math.isfinite(value):
            return f"{value} is not a finite number"
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            lo = "-inf" if self.min is None else f"{self.min:g}"
            hi = "inf" if self.max is None else f"{self.max:g}"
            return f"{value:g} {self.unit} is outside the limits [{lo}, {hi}]"
        return None

    @model_validator(mode="after")
    def _limits(self) -> Point:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min {self.min} must be below max {self.max}")
        return self


# ---------------------------------------------------------------------------------------------- assets
class Device(_Strict):
    """A device: meter, PV array, storage, boiler, process line, monitor..."""

    id: ID
    name: str
    type: DeviceType
    carrier: str = "electricity"
    building: str | None = None
    protocol: Protocol = Field(description="how the gateway reaches it; the address is in ingest/<protocol>.yaml")
    params: dict = Field(default_factory=dict)
    points: list[Point] = Field(min_length=1)
    assumptions: dict[str, str] = Field(default_factory=dict, description="param name -> basis of the number")
    footprint_m: list[tuple[float, float]] | None = Field(
        None, min_length=3, description="(x east, y north) vertices of the ground it stands on, for the 3-D twin "
        "(a ground PV field, a storage yard, the substation's switchyard); rooftop equipment names its `building` "
        "instead [m]")

    @field_validator("footprint_m")
    @classmethod
    def _simple_footprint(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        return None if v is None else simple_polygon(v)

    @cached_property
    def p(self) -> BaseModel:
        """The typed parameters of this device (``PARAMS_BY_TYPE[type]``; checked by the loader)."""
        return PARAMS_BY_TYPE[self.type].model_validate(self.params)

    def point(self, point_id: str) -> Point:
        for p in self.points:
            if p.id == point_id:
                return p
        raise KeyError(f"device {self.id} has no point {point_id!r}")


class Building(_Strict):
    """A building or plant area, as a prism: footprint polygon in park metres, extruded to ``height_m``."""

    id: ID
    name: str
    footprint_m: list[tuple[float, float]] = Field(min_length=3, description="(x east, y north) vertices [m]")
    height_m: float = Field(gt=0, le=300, description="height above ground [m]")
    use: str = "production"

    @field_validator("footprint_m")
    @classmethod
    def _simple_footprint(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return simple_polygon(v)


class Enterprise(_Strict):
    id: ID
    name: str
    name_en: str
    sector: Sector
    buildings: list[Building] = Field(default_factory=list)
    devices: list[Device] = Field(min_length=1)
    shifts: Literal["continuous", "two_shift", "day"] = "continuous"
    works_weekends: bool = True
    product_devices: list[ID] | None = Field(
        None, description="process lines whose production is the enterprise's product (default: all of them); "
                          "intensity per tonne uses it, so intermediate products are not counted twice")
    assumptions: dict[str, str] = Field(default_factory=dict)

    def product_lines(self) -> list[Device]:
        """The process lines whose ``production_t_h`` is the enterprise's product."""
        lines = [d for d in self.devices if any(p.id == "production_t_h" for p in d.points)]
        if self.product_devices is None:
            return lines
        return [d for d in lines if d.id in self.product_devices]


class Site(_Strict):
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    altitude_m: float
    timezone: str = "Asia/Shanghai"
    origin: str = Field(description="what the local (0, 0) of footprints is")


class Meta(_Strict):
    name: str
    name_en: str
    version: str
    year: int
    source: str
    site: Site


class Park(_Strict):
    """The whole park: enterprises plus park-level devices (grid connection, shared storage, weather)."""

    meta: Meta
    park_devices: list[Device] = Field(min_length=1)
    enterprises: list[Enterprise] = Field(min_length=1)

    # ----------------------------------------------------------------- navigation
    def iter_devices(self):
        """Yield ``(enterprise_id or None, device)`` for every device, park-level first."""
        for d in self.park_devices:
            yield None, d
        for e in self.enterprises:
            for d in e.devices:
                yield e.id, d

    def iter_points(self):
        """Yield ``(enterprise_id or None, device, point)`` for every point."""
        for eid, d in self.iter_devices():
            for p in d.points:
                yield eid, d, p

    def device(self, device_id: str) -> Device:
        for _eid, d in self.iter_devices():
            if d.id == device_id:
                return d
        raise KeyError(f"no device {device_id!r} in the park")

    def enterprise_of(self, device_id: str) -> str | None:
        """The id of the enterprise owning a device; None for park-level devices."""
        for eid, d in self.iter_devices():
            if d.id == device_id:
                return eid
        raise KeyError(f"no device {device_id!r} in the park")

    def enterprise(self, enterprise_id: str) -> Enterprise:
        for e in self.enterprises:
            if e.id == enterprise_id:
                return e
        raise KeyError(f"no enterprise {enterprise_id!r} in the park")

    def devices_of(self, enterprise_id: str | None, *types: str) -> list[Device]:
        devs = self.park_devices if enterprise_id is None else self.enterprise(enterprise_id).devices
        return [d for d in devs if not types or d.type in types]


def point_tag(device_id: str, point_id: str) -> str:
    """The canonical name of a point: ``<device id>.<point id>`` (e.g. ``E01-M0.p_kw``)."""
    return f"{device_id}.{point_id}"
