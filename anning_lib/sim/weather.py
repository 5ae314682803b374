"""Weather for the park simulator: clear-sky irradiance from pvlib, stochastic cloud cover and air temperature.

Randomness is drawn per calendar day from ``numpy.random.default_rng([seed, stream, day])``, so a day's
weather does not depend on which range it was simulated in.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pvlib
import yaml

SKY_CLASSES = ("clear", "partly", "overcast")


@dataclass(frozen=True)
class Climate:
    """Monthly climate parameters (see ``data/sim/anning_climate.yaml``), index 0 = January."""

    t_mean_degc: np.ndarray
    diurnal_range_degc: np.ndarray
    p_clear: np.ndarray
    p_partly: np.ndarray


@lru_cache(maxsize=4)
def load_climate(path: Path) -> Climate:
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    arr = {k: np.asarray(raw[k], dtype=float) for k in ("t_mean_degc", "diurnal_range_degc", "p_clear", "p_partly")}
    if np.any(arr["p_clear"] + arr["p_partly"] > 1):
        raise ValueError(f"{path}: p_clear + p_partly exceeds 1")
    return Climate(**arr)


def day_rng(seed: int, stream: str, day: pd.Timestamp) -> np.random.Generator:
    """A generator for one stream (device id, 'weather') on one local calendar day."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode()), int(day.toordinal())])


def sky_class(day: pd.Timestamp, climate: Climate, seed: int) -> str:
    """Draw the day's sky class from the month's probabilities."""
    m = day.month - 1
    u = day_rng(seed, "sky", day).random()
    if u < climate.p_clear[m]:
        return "clear"
    if u < climate.p_clear[m] + climate.p_partly[m]:
        return "partly"
    return "overcast"


def clear_sky_index(times: pd.DatetimeIndex, day: pd.Timestamp, klass: str, seed: int) -> np.ndarray:
    """Clear-sky index k = GHI / GHI_clear [-] for one day's timestamps (1-minute steps expected).

    Clear days: 0.97 with 1 % noise. Broken cloud: a mean-reverting process around 0.7 with fast drops.
    Overcast: a slow process around 0.3.
    """
    rng = day_rng(seed, "cloud", day)
    n = len(times)
    if klass == "clear":
        return np.clip(0.97 + 0.01 * rng.standard_normal(n), 0.9, 1.02)
    mean, sigma, phi = (0.70, 0.25, 0.97) if klass == "partly" else (0.30, 0.08, 0.995)
    x = np.empty(n)
    x[0] = mean
    eps = rng.standard_normal(n) * sigma * np.sqrt(1 - phi**2)
    for i in range(1, n):
        x[i] = mean + phi * (x[i - 1] - mean) + eps[i]
    return np.clip(x, 0.1, 1.15)


def air_temperature(times: pd.DatetimeIndex, day: pd.Timestamp, climate: Climate, klass: str, seed: int) -> np.ndarray:
    """Air temperature [degC]: monthly mean plus a diurnal cycle (minimum near 07:00, maximum near 15:00 local
    time), a daily anomaly and a smaller range on overcast days."""
    rng = day_rng(seed, "temp", day)
    m = day.month - 1
    rng_factor = {"clear": 1.0, "partly": 0.8, "overcast": 0.5}[klass]
    amplitude = climate.diurnal_range_degc[m] / 2 * rng_factor
    hour = times.hour + times.minute / 60.0
    # rises as a half cosine from -1 at 07:00 to +1 at 15:00, falls over the 16 hours back to 07:00
    diurnal = np.where((hour >= 7) & (hour < 15), -np.cos((hour - 7) / 8 * np.pi),
                       np.cos(((hour - 15) % 24) / 16 * np.pi))
    anomaly = 1.5 * rng.standard_normal()
    return climate.t_mean_degc[m] + anomaly + amplitude * diurnal


def clear_sky(times: pd.DatetimeIndex, latitude: float, longitude: float, altitude: float) -> pd.DataFrame:
    """Clear-sky GHI, DNI, DHI [W/m2] (Ineichen-Perez with the Linke turbidity climatology shipped with pvlib)
    and the solar position, for tz-aware ``times``.

    References
    ----------
    Ineichen, P. and Perez, R. (2002), A new airmass independent formulation for the Linke turbidity
    coefficient, Solar Energy 73(3), 151-157.
    """
    loc = pvlib.location.Location(latitude, longitude, altitude=altitude, tz=str(times.tz))
    solpos = loc.get_solarposition(times)
    cs = loc.get_clearsky(times, model="ineichen", solar_position=solpos)
    return pd.concat([cs, solpos[["apparent_zenith", "zenith", "azimuth"]]], axis=1)


def weather_day(day: pd.Timestamp, times: pd.DatetimeIndex, site, climate: Climate, seed: int) -> pd.DataFrame:
    """One day of weather: ``ghi_w_m2, dni_w_m2, dhi_w_m2, temp_air_degc, zenith_deg, azimuth_deg, sky``.

    DNI and DHI of the cloudy sky come from the Erbs decomposition of the simulated GHI.

    References
    ----------
    Erbs, D. G., Klein, S. A., Duffie, J. A. (1982), Estimation of the diffuse radiation fraction for hourly,
    daily and monthly-average global radiation, Solar Energy 28(4), 293-302.
    """
    cs = clear_sky(times, site.latitude_deg, site.longitude_deg, site.altitude_m)
    klass = sky_class(day, climate, seed)
    k = clear_sky_index(times, day, klass, seed)
    ghi = cs["ghi"].to_numpy() * k
    erbs = pvlib.irradiance.erbs(ghi, cs["zenith"], times)
    return pd.DataFrame(
        {
            "ghi_w_m2": ghi,
            "dni_w_m2": erbs["dni"].to_numpy(),
            "dhi_w_m2": erbs["dhi"].to_numpy(),
            "temp_air_degc": air_temperature(times, day, climate, klass, seed),
            "zenith_deg": cs["apparent_zenith"].to_numpy(),
            "azimuth_deg": cs["azimuth"].to_numpy(),
            "sky": klass,
        },
        index=times,
    )
