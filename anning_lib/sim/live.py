"""Live mode: the simulated park's readings at any instant, and storage that obeys written setpoints.

:class:`LiveValues` keeps the current local day of the :class:`~anning_lib.sim.park.ParkSimulator` at 1-minute
steps and interpolates linearly between minutes, so servers polled every second see values that move. When a
client has written a storage setpoint (``p_set_kw``) the storage follows it from then on, step by step within its
power and energy limits, and the meters upstream (the enterprise's main meter, the grid meter) change by the same
power, so the balance of docs/glossary.md still holds.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from anning_lib.sim.park import ParkSimulator, to_long
from anning_lib.sim.storage import simulate_bess


class LiveValues:
    """Readings of every point at a given instant.

    Parameters
    ----------
    sim : ParkSimulator
        carries the storage state from the backfill that ended at ``first_day``.
    first_day : date
        the local day to start on.
    """

    def __init__(self, sim: ParkSimulator, first_day: date):
        self.sim = sim
        self._day = first_day
        self._frame = sim.day(first_day)
        self._t_ns = self._frame.index.as_unit("ns").asi8
        self._setpoints: dict[str, float] = {}   # bess device id -> setpoint [kW] written by a client
        self._soc: dict[str, float] = {}         # bess device id -> live state of charge [-]
        self._last: pd.Timestamp | None = None
        self._faults: dict[str, tuple[str, float | None]] = {}   # tag -> (mode, value): injected faults
        self._upstream = {}
        for eid, d in sim.park.iter_devices():
            if d.type == "bess":
                main = [m.id for m in sim.park.devices_of(eid, "main_meter")] if eid else []
                grid = [g.id for g in sim.park.devices_of(None, "grid_meter")]
                self._upstream[d.id] = main + grid

    def history(self, now: pd.Timestamp, step: str = "15min") -> pd.DataFrame:
        """Long rows of the current day up to ``now``: ``step`` means (labelled at their start) for the completed
        intervals, then the 1-minute readings of the interval in progress.

        The demo stores these so that the history runs up to the moment live acquisition takes over.
        """
        now = pd.Timestamp(now).tz_convert("UTC")
        cut = now.floor(step)
        done = self._frame[self._frame.index < cut].resample(step, label="left", closed="left").mean()
        partial = self._frame[(self._frame.index >= cut) & (self._frame.index <= now)]
        return pd.concat([to_long(done), to_long(partial)], ignore_index=True)

    def set_setpoint(self, device_id: str, p_set_kw: float) -> None:
        """A client wrote ``p_set_kw`` to a storage device: it follows it from now on."""
        if device_id not in self._setpoints:
            tag = f"{device_id}.soc_frac"
            self._soc[device_id] = float(self._frame[tag].iloc[-1] if self._last is None else self._row(self._last)[tag])
        self._setpoints[device_id] = float(p_set_kw)

    def inject(self, tag: str, mode: str, value: float | None = None) -> None:
        """Inject a fault into one point's readings, for tests and demonstrations of alarms.

        ``stuck``: the reading freezes at its next value; ``offset``: ``value`` is added to every reading (a
        meter out of calibration, breaking an energy balance); ``set``: the reading is ``value`` (a spike, or a
        fault word); ``clear``: back to the simulated value.
        """
        if mode not in ("stuck", "offset", "set", "clear"):
            raise ValueError(f"mode: {mode!r} is not stuck, offset, set or clear")
        if mode == "clear":
            self._faults.pop(tag, None)
        else:
            self._faults[tag] = (mode, value)

    def _apply_faults(self, row: dict[str, float]) -> None:
        for tag, (mode, value) in list(self._faults.items()):
            if mode == "stuck":
                if value is None:
                    self._faults[tag] = (mode, row[tag])
                row[tag] = self._faults[tag][1]
            elif mode == "offset":
                row[tag] += value
            else:
                row[tag] = value

    def _roll(self, now: pd.Timestamp) -> None:
        while now >= self._frame.index[-1] + pd.Timedelta("1min"):
            self._day = (pd.Timestamp(self._day) + pd.Timedelta(days=1)).date()
            self._frame = self.sim.day(self._day)
            self._t_ns = self._frame.index.as_unit("ns").asi8

    def _row(self, now: pd.Timestamp) -> dict[str, float]:
        """Linear interpolation between the minute rows around ``now`` (UTC)."""
        t = now.value
        i = int(np.searchsorted(self._t_ns, t, side="right")) - 1
        i = min(max(i, 0), len(self._t_ns) - 1)
        a = self._frame.iloc[i].to_numpy()
        if i + 1 < len(self._t_ns):
            w = (t - self._t_ns[i]) / (self._t_ns[i + 1] - self._t_ns[i])
            a = a + min(max(w, 0.0), 1.0) * (self._frame.iloc[i + 1].to_numpy() - a)
        return dict(zip(self._frame.columns, a.tolist()))

    def at(self, now: pd.Timestamp) -> dict[str, float]:
        """Tag -> reading at ``now`` (UTC), with written storage setpoints applied."""
        now = pd.Timestamp(now).tz_convert("UTC")
        self._roll(now)
        row = self._row(now)
        dt_h = 0.0 if self._last is None else max(0.0, (now - self._last).total_seconds() / 3600.0)
        self._last = now
        for dev_id, sp in self._setpoints.items():
            params = self.sim.park.device(dev_id).p
            p, soc = simulate_bess(np.array([sp]), params, max(dt_h, 1e-9), self._soc[dev_id])
            if dt_h > 0:
                self._soc[dev_id] = float(soc[0])
            delta = float(p[0]) - row[f"{dev_id}.p_kw"]
            row[f"{dev_id}.p_kw"] = float(p[0])
            row[f"{dev_id}.p_set_kw"] = sp
            row[f"{dev_id}.soc_frac"] = self._soc[dev_id]
            for meter in self._upstream[dev_id]:
                row[f"{meter}.p_kw"] -= delta  # more discharge -> less drawn from upstream
        self._apply_faults(row)
        return row
