"""The history a scenario runs on: 15-minute means of the park's points, from the store or the simulator.

Both sources give the same thing: a wide frame, one column per point tag (``E01-MM.p_kw``), indexed by the start
of each quarter-hour in the park's time zone, covering the warm-up days and the period without a gap. The store's
short gaps (up to an hour) are interpolated; a longer gap is an error naming the tag and the time, since a year
of dispatch cannot be run on a hole.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.errors import AnningError
from anning_lib.park.schema import Park, point_tag
from anning_lib.scenario.spec import History

STEP = pd.Timedelta("15min")
MAX_GAP_STEPS = 4
"""Longest run of missing quarter-hours interpolated in stored history [steps] (one hour)."""
SIM_START = dt.date(2025, 1, 1)
"""First day of a simulated history when the scenario names none (a whole calendar year with ``days: 365``)."""


class HistoryError(AnningError):
    """The history asked for cannot be had (no data, a long gap)."""


def needed_tags(park: Park) -> list[str]:
    """Every point a scenario reads: powers of meters, PV, storages and loads, fuel and steam flows."""
    keep = {"p_kw", "gas_nm3_h", "steam_t_h", "production_t_h"}
    return [point_tag(d.id, p.id) for _e, d, p in park.iter_points() if p.id in keep]


def window(h: History, tz: str, last_day: dt.date | None = None) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """``(warm-up start, period start, period end)`` in local time for the history spec ``h``.

    ``last_day`` is the last complete local day the store has (store source without ``start``)."""
    if h.start is not None:
        first = h.start
    elif h.source == "simulated":
        first = SIM_START
    else:
        if last_day is None:
            raise HistoryError("history.start: the store has no complete day of data")
        first = last_day - dt.timedelta(days=h.days - 1)
    start = pd.Timestamp(first, tz=tz)
    return start - pd.Timedelta(days=h.warmup_days), start, start + pd.Timedelta(days=h.days)


def simulated_history(park: Park, h: History, data_dir: Path) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The simulator's measured 15-minute means over the warm-up and the period (I/O-free but slow: about 0.1 s
    per simulated day). Returns the frame and the period start."""
    from anning_lib.sim.park import ParkSimulator

    tz = park.meta.site.timezone
    lo, start, end = window(h, tz)
    sim = ParkSimulator(park, h.seed, data_dir)
    frame = pd.concat(list(sim.run(lo.date(), end.date(), step="15min")))
    frame.index = frame.index.tz_convert(tz)
    return frame[needed_tags(park)], start


def regular(wide: pd.DataFrame, lo: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """``wide`` on the full quarter-hour grid of ``[lo, end)``, gaps up to :data:`MAX_GAP_STEPS` interpolated
    (pure). HistoryError naming the tag and the first missing quarter-hour of a longer gap."""
    idx = pd.date_range(lo, end, freq=STEP, inclusive="left")
    out = wide.reindex(idx)
    na = out.isna()
    run = na.apply(lambda col: col.groupby((~col).cumsum()).transform("sum"))   # length of each gap
    short = na & (run <= MAX_GAP_STEPS)
    out = out.where(~short, out.interpolate(limit_area="inside").ffill().bfill())
    missing = out.isna()
    if missing.any().any():
        tag = missing.any().idxmax()
        first = out.index[missing[tag].to_numpy().argmax()]
        n = int(missing[tag].sum())
        raise HistoryError(f"history: {tag} has no value at {first:%Y-%m-%d %H:%M} ({n:,d} quarter-hours missing "
                           f"in {lo:%Y-%m-%d} .. {end:%Y-%m-%d}); choose another period or simulate")
    return out


def stored_history(engine: Engine, park: Park, h: History, *, refresh: bool = True) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The store's 15-minute rollups over the warm-up and the period (I/O). Returns the frame and the period
    start. With ``refresh`` the window's rollups are brought up to date first (as the carbon accounting does);
    a reader that must not write passes False and reads them as the gateway left them."""
    from anning_lib.store.timeseries import data_range, read_series, refresh_rollups

    tz = park.meta.site.timezone
    rng = data_range(engine, tz)
    if rng is None:
        raise HistoryError("history: the store has no measurements (run `anning demo` or import data)")
    last_day = (rng[1] - pd.Timedelta(days=1)).date() if rng[1].normalize() != rng[1] else rng[1].date()
    lo, start, end = window(h, tz, last_day)
    tags = needed_tags(park)
    if refresh:
        refresh_rollups(engine, lo, end, tags=tags)
    wide = read_series(engine, tags, lo, end, resolution="15min", tz=tz)
    wide = wide.reindex(columns=tags)
    return regular(wide, lo, end), start


def fingerprint(wide: pd.DataFrame) -> str:
    """sha256 of the history's timestamps, tags and values (rounded to 1e-6), so a saved run says exactly
    which history it ran on [hex]."""
    h = hashlib.sha256()
    h.update("|".join(wide.columns).encode())
    h.update(wide.index.asi8.tobytes())
    h.update(np.round(wide.to_numpy(dtype=float), 6).tobytes())
    return h.hexdigest()
