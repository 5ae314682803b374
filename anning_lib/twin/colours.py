"""Colours of the 3-D twin (pure): a metric's value -> its legend bin's colour, the no-data grey, the alarm
highlight from ``data/twin/legend.yaml``; the energy carriers' colours from ``data/twin/carrier_colours.yaml``, the
one palette the twin and the Sankeys (:mod:`anning_lib.twin.sankey`) share.

A legend is a binned sequential scale: ``edges`` ``e1 < e2 < ... < ek`` (the metric's unit) cut the line into
``k + 1`` half-open bins ``(-inf, e1), [e1, e2), ..., [ek, inf)``, coloured by the palette in order (matplotlib's
viridis sampled at ``k + 1`` points; file header). **A value on an edge belongs to the bin that starts at that
edge.** NaN, None or a value the user may not see gets the ``no_data`` colour.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from anning_lib.errors import ConfigError

HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Legend:
    """One metric's scale: ``edges`` (k values, increasing) [``unit``] and ``colours`` (k + 1 hex strings)."""

    metric: str
    unit: str
    edges: tuple[float, ...]
    colours: tuple[str, ...]
    no_data: str
    source: str = ""

    def bin_of(self, value: float | None) -> int | None:
        """Index of the bin of ``value`` (0 .. k), or None for NaN/None: the number of edges <= value."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return int(np.searchsorted(self.edges, float(value), side="right"))

    def colour_of(self, value: float | None) -> str:
        """The hex colour of ``value``'s bin, ``no_data`` for NaN/None."""
        b = self.bin_of(value)
        return self.no_data if b is None else self.colours[b]

    def colours_of(self, values: Mapping[str, float | None] | pd.Series) -> dict[str, str]:
        """``{key: hex}`` for every value of a mapping (e.g. enterprise id -> load)."""
        return {k: self.colour_of(v) for k, v in dict(values).items()}

    def bounds(self, i: int) -> tuple[float, float]:
        """``(low, high)`` of bin ``i`` [unit] (``-inf`` / ``inf`` at the open ends)."""
        lo = -math.inf if i == 0 else self.edges[i - 1]
        hi = math.inf if i == len(self.edges) else self.edges[i]
        return lo, hi

    def rows(self) -> list[tuple[str, str]]:
        """``(hex, label)`` of every bin for a legend, e.g. ``("#443983", "1,000 – 2,000")`` (unit not included)."""
        out = []
        for i, c in enumerate(self.colours):
            lo, hi = self.bounds(i)
            label = f"< {_num(hi)}" if lo == -math.inf else f"≥ {_num(lo)}" if hi == math.inf else \
                f"{_num(lo)} – {_num(hi)}"
            out.append((c, label))
        return out


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:g}"


@lru_cache(maxsize=4)
def _file(path: Path | None = None) -> dict:
    from anning_lib.config import get_settings

    path = Path(path or get_settings().data_dir / "twin" / "legend.yaml")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key in ("no_data", "alarm", *(f"palette[{i}]" for i in range(len(raw.get("palette", []))))):
        value = raw["palette"][int(key[8:-1])] if key.startswith("palette[") else raw.get(key)
        if not (isinstance(value, str) and HEX.match(value)):
            raise ConfigError(f"{path}: {key}: not a colour #rrggbb: {value!r}")
    for name, m in raw.get("metrics", {}).items():
        edges = [float(e) for e in m.get("edges", [])]
        if len(edges) + 1 != len(raw["palette"]):
            raise ConfigError(f"{path}: metrics.{name}.edges: {len(edges)} edges need {len(edges) + 1} colours, "
                              f"the palette has {len(raw['palette'])}")
        if any(b <= a for a, b in pairwise(edges)):
            raise ConfigError(f"{path}: metrics.{name}.edges: must increase, got {edges}")
    return raw


def legend(metric: str, path: Path | None = None) -> Legend:
    """The :class:`Legend` of ``metric`` (``load_kw``, ``co2_t_per_mwh``, ``co2_t``; see :func:`metrics`).

    Raises
    ------
    ConfigError
        for an unknown metric or a malformed legend file (naming the key).
    """
    raw = _file(path)
    if metric not in raw["metrics"]:
        raise ConfigError(f"metric: unknown metric {metric!r} (known: {', '.join(raw['metrics'])})")
    m = raw["metrics"][metric]
    return Legend(metric, m["unit"], tuple(float(e) for e in m["edges"]), tuple(raw["palette"]), raw["no_data"],
                  m.get("source", ""))


def metrics(path: Path | None = None) -> list[str]:
    """The metrics a legend exists for, in file order."""
    return list(_file(path)["metrics"])


def alarm_colour(path: Path | None = None) -> str:
    """The highlight of a building or equipment with an active alarm."""
    return _file(path)["alarm"]


def no_data_colour(path: Path | None = None) -> str:
    return _file(path)["no_data"]


@lru_cache(maxsize=4)
def load_colours(path: Path | None = None) -> dict:
    """``data/twin/carrier_colours.yaml``: ``carriers`` (carrier id -> hex colour), ``nodes`` (node kind -> colour)
    and ``fallback`` (read once)."""
    from anning_lib.config import get_settings

    path = Path(path) if path is not None else get_settings().data_dir / "twin" / "carrier_colours.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def carrier_colour(carrier: str | None) -> str:
    """A carrier's flow colour (``fallback`` for a carrier the palette does not name)."""
    pal = load_colours()
    return pal["carriers"].get(carrier or "", pal["fallback"])


def rgb(hex_colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` -> ``(r, g, b)`` 0..255."""
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
