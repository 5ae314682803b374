"""The park simulator: composes weather, PV, loads, boilers, storage and meters into the telemetry of every
point in the park model, minute by minute, one local day at a time.

Physics and bookkeeping (docs/glossary.md has the signs):

- an enterprise's main meter reads ``sum(sub-metered loads) * (1 + loss_frac) - sum(PV) - sum(BESS p_kw)``;
- the grid connection reads ``net + loss_frac * |net|`` with ``net = sum(main meters) - park PV - park BESS``;
- boilers burn natural gas for the steam the process lines ask for, CEMS read the CO2 of their sources;
- every meter has a fixed calibration error within half its accuracy class and a small random error.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from anning_lib.dispatch.tariff import band_of, load_tou_bands
from anning_lib.errors import SimulationError
from anning_lib.park.catalogue import load_catalogue
from anning_lib.park.schema import Device, Enterprise, Park, point_tag
from anning_lib.sim.loads import load_activity
from anning_lib.sim.pv import pv_output
from anning_lib.sim.storage import simulate_bess, tou_rule_setpoints
from anning_lib.sim.weather import load_climate, weather_day

LOAD_TYPES = ("sub_meter", "process_line")
SUB_METER_CLASS_PCT = 0.5       # accuracy class of sub-meters, PV and BESS meters [%]; ASSUMPTION (class 0.5S)
POWER_FACTOR = 0.95             # displacement power factor after compensation [-]; ASSUMPTION
CEMS_NOISE_FRAC = 0.025         # random error of CEMS CO2 mass flow [-]; ASSUMPTION (HJ 75-2017 order)
MINUTE_H = 1.0 / 60.0


@dataclass
class ParkSimulator:
    """Simulates the park day by day; carries the storage state of charge from one day to the next.

    Parameters
    ----------
    park : Park
    seed : int
        same seed, same park, same day -> same numbers.
    data_dir : Path
        reference data (climate, tariff bands, carriers).
    """

    park: Park
    seed: int
    data_dir: Path
    soc: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.tz = self.park.meta.site.timezone
        self.climate = load_climate(self.data_dir / "sim" / "anning_climate.yaml")
        self.bands, _ = load_tou_bands(self.data_dir / "tariffs" / "yunnan_tou_2026.yaml")
        self.catalogue = load_catalogue(self.data_dir)
        for _eid, d in self.park.iter_devices():
            if d.type == "bess":
                self.soc.setdefault(d.id, d.p.soc_init_frac)

    # ------------------------------------------------------------------------------------------ helpers
    def _gain(self, device_id: str, class_pct: float, n: int, day: date) -> np.ndarray:
        fixed = np.random.default_rng([self.seed, zlib.crc32(device_id.encode()), 7]).uniform(-0.5, 0.5) * class_pct / 100
        noise = np.random.default_rng([self.seed, zlib.crc32(device_id.encode()), day.toordinal(), 8]).standard_normal(n)
        return 1.0 + fixed + noise * class_pct / 100 * 0.1

    def _gas_co2_t_per_nm3(self) -> float:
        return self.catalogue.carriers["natural_gas"].co2_t_per_unit

    # ------------------------------------------------------------------------------------------ parts
    def _loads(self, ent: Enterprise, day: date, times) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for d in ent.devices:
            if d.type not in LOAD_TYPES:
                continue
            lp = d.p
            act, run = load_activity(times, day, d.id, lp, ent.shifts, ent.works_weekends, self.seed)
            vals = {"p_kw": lp.rated_kw * lp.load_factor * act}
            prod = (lp.production_t_per_h or 0.0) * act * run
            vals["production_t_h"] = prod
            vals["gas_nm3_h"] = lp.gas_nm3_per_t * prod
            vals["steam_t_h"] = lp.steam_t_per_t * prod
            vals["co2_t_h"] = lp.gas_nm3_per_t * prod * self._gas_co2_t_per_nm3() + lp.process_co2_t_per_t * prod
            out[d.id] = vals
        return out

    def _boilers(self, ent: Enterprise, steam_demand: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        boilers = [d for d in ent.devices if d.type == "boiler"]
        total_rated = sum(b.p.steam_rated_t_h for b in boilers)
        out = {}
        for b in boilers:
            bp = b.p
            fuel = self.catalogue.carriers[bp.fuel]
            steam = np.minimum(steam_demand * bp.steam_rated_t_h / total_rated, bp.steam_rated_t_h * 1.05)
            gas = steam * self.catalogue.carriers["steam"].heat_gj_per_unit / (bp.efficiency * fuel.ncv_gj_per_unit)
            out[b.id] = {"steam_t_h": steam, "gas_nm3_h": gas, "p_kw": bp.aux_kw_per_t_h * steam,
                         "co2_t_h": gas * fuel.co2_t_per_unit}
        return out

    def _storage(self, devices: list[Device], times) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        band = band_of(times, self.bands)
        for d in devices:
            if d.type != "bess":
                continue
            sp = tou_rule_setpoints(band, d.p)
            p, soc = simulate_bess(sp, d.p, MINUTE_H, self.soc[d.id])
            self.soc[d.id] = float(soc[-1])
            out[d.id] = {"p_kw": p, "soc_frac": soc, "p_set_kw": sp,
                         "soh_frac": np.full(len(p), d.p.soh_frac), "fault": np.zeros(len(p))}
        return out

    def _pv(self, devices: list[Device], weather: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for d in devices:
            if d.type == "pv":
                out[d.id] = {k: v.to_numpy() for k, v in pv_output(weather, d.p).items()}
                out[d.id]["fault"] = np.zeros(len(weather))  # status word: 0 = no fault
        return out

    def _enterprise(self, ent: Enterprise, day: date, times, weather) -> tuple[dict, np.ndarray, np.ndarray]:
        """True values of one enterprise's devices, its true main-meter power and reactive power."""
        vals = self._loads(ent, day, times)
        steam_demand = sum((v["steam_t_h"] for v in vals.values()), np.zeros(len(times)))
        vals.update(self._boilers(ent, steam_demand))
        vals.update(self._pv(ent.devices, weather))
        vals.update(self._storage(ent.devices, times))
        for d in ent.devices:
            if d.type == "carbon_monitor":
                vals[d.id] = {"co2_t_h": sum(vals[s]["co2_t_h"] for s in d.p.sources)}
        load_kw = sum(vals[d.id]["p_kw"] for d in ent.devices if d.type in LOAD_TYPES + ("boiler",))
        main = next(d for d in ent.devices if d.type == "main_meter")
        p_main = load_kw * (1.0 + main.p.loss_frac)
        p_main = p_main - sum((vals[d.id]["p_kw"] for d in ent.devices if d.type in ("pv", "bess")), 0.0)
        q_main = load_kw * np.tan(np.arccos(POWER_FACTOR))
        vals[main.id] = {"p_kw": p_main, "q_kvar": q_main}
        return vals, p_main, q_main

    # ------------------------------------------------------------------------------------------ one day
    def day_true(self, day: date) -> tuple[pd.DatetimeIndex, dict[str, dict[str, np.ndarray]]]:
        """True (error-free) values of every device over one local day, at 1-minute steps."""
        times = pd.date_range(pd.Timestamp(day, tz=self.tz), periods=1440, freq="1min")
        site = self.park.meta.site
        weather = weather_day(pd.Timestamp(day), times, site, self.climate, self.seed)
        vals: dict[str, dict[str, np.ndarray]] = {}
        net = np.zeros(len(times))
        q = np.zeros(len(times))
        for ent in self.park.enterprises:
            ent_vals, p_main, q_main = self._enterprise(ent, day, times, weather)
            vals.update(ent_vals)
            net += p_main
            q += q_main
        park_devices = self.park.park_devices
        vals.update(self._pv(park_devices, weather))
        vals.update(self._storage(park_devices, times))
        net = net - sum((vals[d.id]["p_kw"] for d in park_devices if d.type in ("pv", "bess")), 0.0)
        for d in park_devices:
            if d.type == "grid_meter":
                vals[d.id] = {"p_kw": net + d.p.loss_frac * np.abs(net), "q_kvar": q}
            elif d.type == "weather_station":
                vals[d.id] = {"ghi_w_m2": weather["ghi_w_m2"].to_numpy(), "temp_air_degc": weather["temp_air_degc"].to_numpy()}
        return times, vals

    def _measure(self, d: Device, values: dict[str, np.ndarray], day: date) -> dict[str, np.ndarray]:
        """Apply the device's measurement errors; derive the power factor of meters."""
        n = len(next(iter(values.values())))
        if d.type in ("main_meter", "grid_meter"):
            g = self._gain(d.id, d.p.accuracy_class_pct, n, day)
            out = {"p_kw": values["p_kw"] * g, "q_kvar": values["q_kvar"] * g}
            s = np.hypot(out["p_kw"], out["q_kvar"])
            out["pf"] = np.divide(out["p_kw"], s, out=np.ones(n), where=s > 0)
            return out
        if d.type == "carbon_monitor":
            rng = np.random.default_rng([self.seed, zlib.crc32(d.id.encode()), day.toordinal(), 9])
            return {"co2_t_h": values["co2_t_h"] * (1 + CEMS_NOISE_FRAC * rng.standard_normal(n))}
        if d.type == "weather_station":
            return values
        g = self._gain(d.id, SUB_METER_CLASS_PCT, n, day)
        exact = ("soc_frac", "soh_frac", "p_set_kw", "t_cell_degc", "fault")
        out = {k: (v if k in exact else v * g) for k, v in values.items()}
        if d.type == "pv":  # the inverter limits its power on its own measurement, so its reading never exceeds it
            out["p_kw"] = np.minimum(out["p_kw"], d.p.ac_kw)
        return out

    def day(self, day: date) -> pd.DataFrame:
        """Measured values of every point over one local day: 1-minute steps, columns = point tags, UTC index."""
        times, vals = self.day_true(day)
        cols = {}
        for _eid, d in self.park.iter_devices():
            measured = self._measure(d, vals[d.id], day)
            for p in d.points:
                if p.id not in measured:
                    raise SimulationError(f"{d.id}.points: the simulator has no model for point '{p.id}' of a {d.type}")
                cols[point_tag(d.id, p.id)] = measured[p.id]
        return pd.DataFrame(cols, index=times.tz_convert("UTC").rename("ts"))

    def run(self, start: date, end: date, step: str = "15min") -> Iterator[pd.DataFrame]:
        """Simulate local days ``start`` .. ``end`` (exclusive), yielding one wide frame per day.

        Values are the means over ``[ts, ts + step)``, labelled at the interval start ``ts`` (UTC).
        """
        if end <= start:
            raise SimulationError(f"end {end} must be after start {start}")
        try:
            freq = pd.Timedelta(step)
        except ValueError:
            raise SimulationError(f"step: not a duration: {step!r}") from None
        if freq < pd.Timedelta("1min") or pd.Timedelta("1D") % freq != pd.Timedelta(0):
            raise SimulationError(f"step: {step!r} must be at least 1 minute and divide a day")
        for day in pd.date_range(start, end, freq="D", inclusive="left").date:
            frame = self.day(day)
            yield frame if freq == pd.Timedelta("1min") else frame.resample(freq, label="left", closed="left").mean()


def to_long(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide ``ts x tag`` frame -> long ``tag, ts, value`` frame for the store."""
    long = frame.rename_axis(index="ts", columns="tag").stack().rename("value").reset_index()
    return long[["tag", "ts", "value"]]
