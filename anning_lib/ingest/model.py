"""What every adapter hands the gateway: samples with a source quality, health per connection, bad-input counts.

Adapters (Modbus, OPC UA, MQTT, CSV) turn protocol data into :class:`Sample` objects and pass lists of them,
with their connection's :class:`SourceHealth`, to a ``Sink``: ``sink(samples, health)``. The gateway's sink
screens them (unknown tag, non-finite value, outside the point's limits: counted through
:meth:`SourceHealth.bad`, which logs the first of each kind once) and queues the rest for the batching writer.
Adapters report connection trouble through :meth:`SourceHealth.down` / :meth:`SourceHealth.error` and never
raise out of their run loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

log = logging.getLogger("anning.ingest")


class Quality(IntEnum):
    """Source quality stored in ``measurement.quality`` (OPC UA's good/uncertain/bad, plus stale)."""

    GOOD = 0
    UNCERTAIN = 1   # e.g. the device reports a fault word, or the OPC UA status is Uncertain*
    BAD = 2         # the source says the value is bad (OPC UA Bad*, MQTT "q": "bad")
    STALE = 3       # the source could not be read: its last value repeated once (Modbus adapter)

    @classmethod
    def from_text(cls, text: str) -> Quality:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"q must be one of good, uncertain, bad, stale; got {text!r}") from None


@dataclass(slots=True)
class Sample:
    """One value of one point at one instant.

    Parameters
    ----------
    tag : str
        the point's tag ``DEVICE.point``.
    ts_ms : int
        the instant [ms since 1970-01-01 UTC]: the device's timestamp when it sends one, else the read time.
    value : float
        engineering value in the point's unit (scale applied).
    quality : int
        :class:`Quality` code.
    recv_s : float
        when the gateway received it [s, ``time.time()``]; used for latency figures.
    """

    tag: str
    ts_ms: int
    value: float
    quality: int = Quality.GOOD
    recv_s: float = field(default_factory=time.time)


Sink = Callable[[list[Sample], "SourceHealth"], None]


@dataclass
class SourceHealth:
    """Health of one connection (a Modbus server, an OPC UA endpoint, an MQTT broker session).

    ``connected``, ``last_seen_s`` (last data delivered, any quality, epoch s), ``n_samples``, ``n_bad`` (rejected inputs),
    ``n_errors`` (connection or protocol errors), ``last_error`` and ``lag_s`` (receive time minus the device's
    timestamp of the latest sample) are stored in ``ingest_health`` for the dashboards and alarms.
    """

    source: str
    protocol: str
    connected: bool = False
    last_seen_s: float | None = None
    n_samples: int = 0
    n_bad: int = 0
    n_errors: int = 0
    last_error: str = ""
    lag_s: float | None = None
    _logged: set = field(default_factory=set, repr=False)

    def seen(self, samples: list[Sample]) -> None:
        """Count delivered samples and update last-seen time and lag."""
        if not samples:
            return
        self.n_samples += len(samples)
        last = samples[-1]
        self.last_seen_s = last.recv_s
        self.lag_s = last.recv_s - last.ts_ms / 1000.0

    def bad(self, kind: str, message: str) -> None:
        """Count one rejected input; log the first of each ``kind`` on this source, once."""
        self.n_bad += 1
        self.last_error = f"{kind}: {message}"
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s: rejected input (%s): %s (further %s on this source are counted, not logged)",
                        self.source, kind, message, kind)

    def error(self, kind: str, message: str) -> None:
        """Count one connection or protocol error; log the first of each ``kind`` (connection errors are logged
        again after the connection has recovered)."""
        self.n_errors += 1
        self.last_error = f"{kind}: {message}"
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s: %s: %s", self.source, kind, message)

    def up(self) -> None:
        """The connection is (re-)established: errors are logged again the next time they happen."""
        if not self.connected:
            log.info("%s: connected", self.source)
        self.connected = True
        self._logged = {k for k in self._logged if not k.startswith("conn")}

    def down(self, message: str) -> None:
        """The connection is lost or refused: logged when it goes down, counted every time."""
        if self.connected or "connection" not in self._logged:
            log.warning("%s: disconnected: %s", self.source, message)
            self._logged.add("connection")
        self.connected = False
        self.n_errors += 1
        self.last_error = f"connection: {message}"

    def as_row(self) -> dict:
        return {"source": self.source, "protocol": self.protocol, "connected": self.connected,
                "last_seen_s": self.last_seen_s, "n_samples": self.n_samples, "n_bad": self.n_bad,
                "n_errors": self.n_errors, "last_error": self.last_error[:500], "lag_s": self.lag_s}
