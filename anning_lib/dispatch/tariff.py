"""Electricity tariffs as data: time-of-use bands, energy prices, demand charge, export and a carbon shadow price.

A tariff file in ``data/tariffs/`` names its bands file (the hours of peak, flat and valley), the flat energy
price and the multipliers that float it, the price components that do not float, the monthly demand charge, the
export price and limit, and an optional carbon shadow price applied to imports through the grid factor.
``data/tariffs/assignments.yaml`` says which tariff each billing connection pays: since 2026-03-01 the government
time-of-use applies to agent-purchase users and market traders follow their contracts, so a tariff is per
enterprise (../shared/REFERENCE.md).

The import price of a step is (pure, :func:`prices`)::

    import_price = energy_price_flat * multiplier[band(t)] + non_floating      [CNY/kWh]
    carbon       = carbon_shadow_price * grid_factor                           [CNY/kWh]

and the optimiser charges ``import_price + carbon`` per kWh imported, reporting the two parts apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from anning_lib.errors import CaseFileError, DispatchError
from anning_lib.park.loader import problems_from

BANDS = ("peak", "flat", "valley")


@lru_cache(maxsize=8)
def load_tou_bands(path: Path) -> tuple[list[tuple[float, float, str]], dict[str, float]]:
    """``([(start_h, end_h, band), ...], multipliers)`` from a band file such as ``data/tariffs/yunnan_tou_2026.yaml``.

    The bands must cover 00:00-24:00 local time exactly once (:func:`check_tou_periods` names every overlap
    and gap).
    """
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)

    def h(txt: str) -> float:
        hh, mm = txt.split(":")
        return int(hh) + int(mm) / 60.0

    bands = [(h(str(b["start"])), h(str(b["end"])), b["band"]) for b in raw["bands"]]
    problems = check_tou_periods(bands)
    if problems:
        raise CaseFileError(problems, source=str(path))
    return bands, dict(raw["multiplier"])


def hhmm(hours: float) -> str:
    """``HH:MM`` of local hours (``7.5`` -> ``07:30``)."""
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def check_tou_periods(periods: Sequence[tuple[float, float, str]], path: str = "bands") -> list[tuple[str, object, str]]:
    """Overlaps and gaps of time-of-use periods ``(start_h, end_h, band)`` that must cover 00:00-24:00 once
    (pure; local hours, ``[start, end)``).

    Each problem names the period by its index in ``periods``: ``bands[3]: 10:00-12:00 overlaps bands[1]:
    11:00-14:00``, ``bands: 12:00-13:00 is covered by no period (after bands[4])``. A period with its end not
    after its start, or outside 00:00-24:00, is a problem of its own and left out of the coverage check.
    """
    problems: list[tuple[str, object, str]] = []
    good = []
    for i, (lo, hi, _band) in enumerate(periods):
        text = f"{hhmm(lo)}-{hhmm(hi)}"
        if hi <= lo:
            problems.append((f"{path}[{i}]", text, f"{text}: the end is not after the start (a period across "
                                                   "midnight is two periods, ...-24:00 and 00:00-...)"))
        elif lo < 0 or hi > 24:
            problems.append((f"{path}[{i}]", text, f"{text} is outside 00:00-24:00"))
        else:
            good.append((lo, hi, i))
    if not good:
        return problems + [(path, [], "no period: the periods must cover 00:00-24:00")]
    good.sort()

    def span(k: int) -> str:
        return f"{hhmm(good[k][0])}-{hhmm(good[k][1])}"

    if good[0][0] > 0:
        problems.append((path, f"00:00-{hhmm(good[0][0])}",
                         f"00:00-{hhmm(good[0][0])} is covered by no period (before {path}[{good[0][2]}])"))
    reach = 0                                    # the period reaching furthest so far, index into good
    for k in range(1, len(good)):
        lo, _hi, i = good[k]
        end, j = good[reach][1], good[reach][2]
        if lo < end:
            problems.append((f"{path}[{i}]", span(k), f"{span(k)} overlaps {path}[{j}]: {span(reach)}"))
        elif lo > end:
            problems.append((path, f"{hhmm(end)}-{hhmm(lo)}",
                             f"{hhmm(end)}-{hhmm(lo)} is covered by no period (between {path}[{j}] and "
                             f"{path}[{i}])"))
        if good[k][1] > good[reach][1]:
            reach = k
    if good[reach][1] < 24:
        problems.append((path, f"{hhmm(good[reach][1])}-24:00",
                         f"{hhmm(good[reach][1])}-24:00 is covered by no period (after {path}[{good[reach][2]}])"))
    return problems


def band_of(times: pd.DatetimeIndex, bands: list[tuple[float, float, str]]) -> np.ndarray:
    """The tariff band name at each local timestamp (``times`` in the tariff's time zone)."""
    hours = np.asarray(times.hour + times.minute / 60.0)
    out = np.empty(len(times), dtype=object)
    for lo, hi, name in bands:
        out[(hours >= lo) & (hours < hi)] = name
    return out


class Season(BaseModel):
    """Other multipliers in some months (e.g. a wet-season rule)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    months: list[int] = Field(min_length=1, description="calendar months 1-12 where it applies")
    multiplier: dict[str, float]


class Tariff(BaseModel):
    """One tariff file of ``data/tariffs/`` (see the module docstring for the price formula)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    valid_from: str
    bands_file: str = Field(description="band file beside this one: hours of peak, flat and valley")
    multiplier: dict[str, float] | None = Field(None, description="overrides the band file's multipliers [-]")
    seasons: list[Season] = Field(default_factory=list)
    energy_price_flat_cny_per_kwh: float = Field(ge=0, description="floating energy price in the flat band [CNY/kWh]")
    non_floating_cny_per_kwh: float = Field(0.0, ge=0, description="T&D, fees and funds [CNY/kWh]")
    demand_charge_cny_per_kw_month: float = Field(0.0, ge=0, description="on the month's peak 15-min demand [CNY/kW]")
    export_price_cny_per_kwh: float = Field(0.0, description="paid for export [CNY/kWh]")
    export_limit_kw: float = Field(0.0, ge=0, description="largest export; 0 means no export [kW]")
    carbon_shadow_price_cny_per_t: float = Field(0.0, ge=0, description="internal carbon price [CNY/tCO2]")
    grid_factor_t_per_kwh: float = Field(0.0, ge=0, description="grid emission factor [tCO2/kWh]")
    assumptions: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _months(self) -> Tariff:
        for s in self.seasons:
            bad = [m for m in s.months if not 1 <= m <= 12]
            if bad:
                raise ValueError(f"seasons.months: {bad[0]} is not a month 1-12")
        return self


def load_tariff(path: Path) -> tuple[Tariff, list[tuple[float, float, str]], dict[str, float]]:
    """Read and check a tariff file; returns ``(tariff, bands, multipliers)``."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            tariff = Tariff.model_validate(yaml.safe_load(fh))
    except FileNotFoundError:
        raise DispatchError(f"tariff file {path} does not exist") from None
    except ValidationError as err:
        raise CaseFileError(problems_from(err), str(path)) from None
    bands, mult = load_tou_bands(path.parent / tariff.bands_file)
    mult = dict(tariff.multiplier or mult)
    missing = {b for _lo, _hi, b in bands} - set(mult)
    if missing:
        raise DispatchError(f"{path}: multiplier: no value for band {sorted(missing)[0]!r}")
    return tariff, bands, mult


def tariff_for(connection: str | None, data_dir: Path) -> tuple[Tariff, list[tuple[float, float, str]], dict[str, float]]:
    """The tariff a billing connection pays: ``None`` or ``"park"`` for the park's 110 kV connection, else an
    enterprise id (``data/tariffs/assignments.yaml``)."""
    tdir = Path(data_dir) / "tariffs"
    with open(tdir / "assignments.yaml", encoding="utf-8") as fh:
        assign = yaml.safe_load(fh)
    key = "park" if connection in (None, "park") else connection
    tid = assign.get("park") if key == "park" else (assign.get("enterprises") or {}).get(key, assign["default"])
    return load_tariff(tdir / f"{tid}.yaml")


def prices(tariff: Tariff, bands: list[tuple[float, float, str]], multipliers: dict[str, float],
           index: pd.DatetimeIndex, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Prices at each step start of ``index`` (pure).

    Returns
    -------
    DataFrame
        ``band``, ``import_price_cny_per_kwh`` (floating energy and non-floating parts),
        ``export_price_cny_per_kwh``, ``carbon_cny_per_kwh`` (the shadow price per kWh imported), indexed like
        ``index``.
    """
    local = index.tz_convert(tz)
    band = band_of(local, bands)
    mult = np.array([multipliers[b] for b in band], dtype=float)
    for season in tariff.seasons:
        in_season = np.isin(local.month, season.months)
        mult = np.where(in_season, [season.multiplier.get(b, np.nan) for b in band], mult)
    if np.isnan(mult).any():
        raise DispatchError(f"tariff {tariff.id}: seasons.multiplier: a band has no multiplier")
    carbon = tariff.carbon_shadow_price_cny_per_t * tariff.grid_factor_t_per_kwh
    imp = tariff.energy_price_flat_cny_per_kwh * mult + tariff.non_floating_cny_per_kwh
    return pd.DataFrame({"band": band, "import_price_cny_per_kwh": imp,
                         "export_price_cny_per_kwh": tariff.export_price_cny_per_kwh,
                         "carbon_cny_per_kwh": carbon}, index=index)
