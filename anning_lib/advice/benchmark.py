"""An enterprise's process against the national energy-consumption limit standards and benchmark values
(``data/advice/benchmarks.csv``, matched by ``data/advice/benchmark_map.yaml``).

Specific energy of a process [kgce/t or kWh/t] from its metered electricity, own gas and production, and its
position among the standard's grades (1级 best, 2级, 3级 = the mandatory limit) and the NDRC benchmark (标杆) and
baseline (基准) values where published.

References
----------
.. [1] GB/T 2589-2020, 综合能耗计算通则: standard coal 29.3076 MJ/kgce; electricity at 0.1229 kgce/kWh (当量值).
.. [2] GB 21256-2025, GB 21341-2022, GB 21345-2024, GB 21344-2023 (energy-consumption limits; grades 1-3);
   NDRC et al., 工业重点领域能效标杆水平和基准水平（2023年版）. See data/advice/benchmarks.md for what was read.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml
from sqlalchemy.engine import Engine

from anning_lib.advice.catalogue import load_benchmarks
from anning_lib.carbon.metered import integrate_quarters
from anning_lib.config import get_settings
from anning_lib.errors import ConfigError
from anning_lib.park.schema import Park, point_tag
from anning_lib.store.timeseries import read_series, refresh_rollups


def specific_energy(electricity_kwh: float, gas_nm3: float, production_t: float, unit: str, *,
                    kgce_per_kwh: float, kgce_per_nm3: float) -> float | None:
    """Energy per tonne of product in ``unit`` (``kWh/t``: electricity only; ``kgce/t``: electricity and gas in
    standard coal [1]_); None without production.

    Parameters
    ----------
    electricity_kwh, gas_nm3, production_t : float
        [kWh], [Nm3], [t] over the same period.
    unit : {"kWh/t", "kgce/t"}
    kgce_per_kwh, kgce_per_nm3 : float
        Standard-coal coefficients [kgce/kWh], [kgce/Nm3].
    """
    if not production_t or production_t <= 0:
        return None
    if unit == "kWh/t":
        return electricity_kwh / production_t
    if unit == "kgce/t":
        return (electricity_kwh * kgce_per_kwh + gas_nm3 * kgce_per_nm3) / production_t
    raise ConfigError(f"unit: benchmarks in {unit!r} are not compared (kWh/t or kgce/t)")


def grades(note: str) -> dict[str, float]:
    """The standard's grades written in a benchmark row's note (``1级=61; 2级=64; 3级 (limit)=72``)."""
    out = {}
    for g in ("1", "2", "3"):
        m = re.search(rf"{g}级[^=;]*=\s*(-?[\d.]+)", note or "")
        if m:
            out[f"grade{g}"] = float(m.group(1))
    return out


def position(value: float | None, levels: dict[str, float]) -> str | None:
    """Where ``value`` stands (lower is better): ``grade1`` (at or below grade 1), ``grade2``, ``within_limit``
    (above grade 2, within the limit), ``above_limit``; None without a value or a limit."""
    limit = levels.get("limit", levels.get("grade3"))
    if value is None or limit is None or not math.isfinite(value):
        return None
    if "grade1" in levels and value <= levels["grade1"]:
        return "grade1"
    if "grade2" in levels and value <= levels["grade2"]:
        return "grade2"
    return "within_limit" if value <= limit else "above_limit"


@lru_cache(maxsize=2)
def load_map(path: Path | str | None = None) -> dict:
    path = Path(path or get_settings().data_dir / "advice" / "benchmark_map.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _levels(rows: pd.DataFrame) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in rows.itertuples():
        for col in ("benchmark", "baseline", "limit"):
            v = getattr(r, col)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.setdefault(col, float(v))
        out.update({k: v for k, v in grades(r.note if isinstance(r.note, str) else "").items() if k not in out})
    return out


def enterprise_benchmarks(engine: Engine, park: Park, enterprise_id: str, start, end, *,
                          gas_kgce_per_nm3: float, refresh: bool = False) -> dict | None:
    """The enterprise's mapped process against its standard, over ``[start, end)``; None when not mapped.
    ``refresh`` recomputes the devices' rollups of the period first.

    Returns
    -------
    dict
        ``product, indicator, unit, boundary, devices, electricity_kwh, gas_nm3, production_t, value`` (the
        specific energy), ``levels`` (``grade1``, ``grade2``, ``limit``, ``benchmark``, ``baseline`` as found),
        ``position`` (:func:`position`), ``sources``.
    """
    mp = load_map()
    spec = (mp.get("enterprises") or {}).get(enterprise_id)
    if spec is None:
        return None
    rows = load_benchmarks()
    rows = rows[(rows["product"] == spec["product"]) & (rows["indicator"] == spec["indicator"])]
    if rows.empty:
        raise ConfigError(f"benchmark_map.yaml: {enterprise_id}: no row {spec['product']!r} / {spec['indicator']!r} "
                          "in benchmarks.csv")
    devs = [d for d in park.enterprise(enterprise_id).devices if d.id in spec["devices"]]
    tags = {k: [point_tag(d.id, p.id) for d in devs for p in d.points if p.id == k]
            for k in ("p_kw", "gas_nm3_h", "production_t_h")}
    wanted = [t for ts in tags.values() for t in ts]
    if refresh and wanted:
        refresh_rollups(engine, start, end, tags=wanted)
    means = read_series(engine, wanted, start, end, resolution="15min", tz="UTC")
    amount = {k: (integrate_quarters(means[ts])[0] if ts and set(ts) <= set(means.columns) else 0.0)
              for k, ts in tags.items()}
    unit = rows.iloc[0]["unit"]
    value = specific_energy(amount["p_kw"], amount["gas_nm3_h"], amount["production_t_h"], unit,
                            kgce_per_kwh=mp["electricity_kgce_per_kwh"]["value"], kgce_per_nm3=gas_kgce_per_nm3)
    levels = _levels(rows)
    return {"product": spec["product"], "indicator": spec["indicator"], "unit": unit, "boundary": spec["boundary"],
            "devices": spec["devices"], "electricity_kwh": amount["p_kw"], "gas_nm3": amount["gas_nm3_h"],
            "production_t": amount["production_t_h"], "value": value, "levels": levels,
            "position": position(value, levels), "sources": sorted(set(rows["source"]))}
