"""Live mode: the simulator writes the current minute's telemetry into the store as the clock advances.

Until the ingestion gateway exists, this stands in for it in ``anning demo``: the same values the devices
will later serve over Modbus TCP, OPC UA and MQTT go straight into the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

import pandas as pd

from anning_lib.sim.park import ParkSimulator, to_long


class LiveFeed:
    """Keeps one simulated day at 1-minute steps and hands out the rows whose time has come.

    Parameters
    ----------
    sim : ParkSimulator
        carries the storage state from the backfill that ended at ``first_day``.
    first_day : date
        the local day the feed starts on (the backfill's end).
    """

    def __init__(self, sim: ParkSimulator, first_day: date):
        self.sim = sim
        self._day = first_day
        self._frame = sim.day(first_day)
        self._sent_until = self._frame.index[0] - pd.Timedelta("1min")

    def due(self, now: pd.Timestamp) -> pd.DataFrame:
        """Long rows (tag, ts, value) with ``sent < ts <= now`` (UTC)."""
        parts = []
        while True:
            frame = self._frame[(self._frame.index > self._sent_until) & (self._frame.index <= now)]
            if len(frame):
                parts.append(to_long(frame))
                self._sent_until = frame.index[-1]
            if now < self._frame.index[-1] + pd.Timedelta("1min"):
                break
            self._day = (pd.Timestamp(self._day) + pd.Timedelta(days=1)).date()
            self._frame = self.sim.day(self._day)
        return pd.concat(parts, ignore_index=True) if parts else to_long(self._frame.iloc[:0])


def run_live(feed: LiveFeed, write: Callable[[pd.DataFrame], int], interval_s: float, duration_s: float | None,
             on_tick: Callable[[pd.Timestamp, int], None] | None = None) -> int:
    """Every ``interval_s`` seconds, write the rows that are due; stop after ``duration_s`` (None: forever)."""
    started = time.monotonic()
    total = 0
    while True:
        now = pd.Timestamp.now(tz="UTC")
        n = write(feed.due(now))
        total += n
        if on_tick:
            on_tick(now, n)
        if duration_s is not None and time.monotonic() - started >= duration_s:
            return total
        time.sleep(interval_s)
