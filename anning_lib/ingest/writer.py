"""The gateway's batching writer: many small sample lists in, one transaction per flush out.

Every ``flush_s`` the writer takes what the adapters queued and writes it with
:func:`anning_lib.store.write_measurements` (``replace="unless_worse"``: a late bad value never overwrites a
good one). When the database is unavailable the batch goes to the :class:`~anning_lib.ingest.buffer.DiskBuffer`;
while the buffer holds anything, new batches queue behind it, and the writer retries every ``retry_s`` and
replays the buffer oldest first. Messages are acknowledged to their source (MQTT PUBACK) only once their batch is
committed or safely in the buffer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import pandas as pd
import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import Engine

from anning_lib.aio import wait_or_stop
from anning_lib.errors import StoreError
from anning_lib.ingest.buffer import DiskBuffer
from anning_lib.ingest.model import Sample, SourceHealth
from anning_lib.store.timeseries import write_measurements

log = logging.getLogger("anning.ingest")
Ack = Callable[[], None]
_DB_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, OSError)


def samples_frame(samples: list[Sample]) -> pd.DataFrame:
    """Samples -> the long frame :func:`write_measurements` takes (tag, ts UTC, value, quality)."""
    ts = pd.to_datetime(np.fromiter((s.ts_ms for s in samples), dtype="int64", count=len(samples)),
                        unit="ms", utc=True)
    return pd.DataFrame({"tag": [s.tag for s in samples], "ts": ts,
                         "value": np.fromiter((s.value for s in samples), dtype="float64", count=len(samples)),
                         "quality": np.fromiter((s.quality for s in samples), dtype="int16", count=len(samples))})


class LatencyStats:
    """Source-timestamp-to-commit latencies [s] of the most recent ``keep`` samples."""

    def __init__(self, keep: int = 500_000):
        self._lat: deque[float] = deque(maxlen=keep)
        self.committed = 0

    def add(self, samples: list[Sample], commit_s: float) -> None:
        self.committed += len(samples)
        self._lat.extend(commit_s - s.ts_ms / 1000.0 for s in samples)

    def percentiles(self, *q: float) -> list[float]:
        if not self._lat:
            return [float("nan")] * len(q)
        return [float(x) for x in np.percentile(np.fromiter(self._lat, float), q)]

    def reset(self) -> None:
        self._lat.clear()
        self.committed = 0


class BatchWriter:
    """Queue samples from any thread; commit them in batches; buffer on disk while the database is down.

    Parameters
    ----------
    engine : sqlalchemy.engine.Engine
        the store.
    buffer : DiskBuffer
        the on-disk store-and-forward queue.
    flush_s : float
        flush interval [s]; bounds the writer's share of the latency.
    max_batch : int
        most samples per transaction [-].
    retry_s : float
        wait between attempts to reach a database that was down [s].
    """

    def __init__(self, engine: Engine, buffer: DiskBuffer, *, flush_s: float = 0.1, max_batch: int = 50_000,
                 retry_s: float = 1.0):
        self.engine, self.buffer = engine, buffer
        self.flush_s, self.max_batch, self.retry_s = flush_s, max_batch, retry_s
        self.health = SourceHealth("writer", "store", connected=True)
        self.latency = LatencyStats()
        self.n_buffered = 0  # samples that went through the disk buffer since start
        self._q: deque[tuple[list[Sample], Ack | None]] = deque()
        self._next_retry = 0.0
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- intake (any thread)
    def submit(self, samples: list[Sample], ack: Ack | None = None) -> None:
        """Queue samples; ``ack`` is called once they are committed or buffered on disk."""
        if samples or ack:
            self._q.append((samples, ack))

    def pending(self) -> int:
        return sum(len(s) for s, _a in list(self._q))

    # ---------------------------------------------------------------- the loop
    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``flush_s`` until ``stop`` is set, then flush what is left."""
        while not await wait_or_stop(stop, self.flush_s):
            await asyncio.to_thread(self.flush)
        await asyncio.to_thread(self.flush)

    def flush(self) -> int:
        """Write (or buffer) everything queued now; replay the buffer when it is due. Returns samples committed."""
        with self._lock:
            committed = 0
            while self._q:
                batch, acks = self._take()
                if self.health.connected and not self._backlog():
                    if self._write(batch):
                        committed += len(batch)
                        self._ack(acks)
                        continue
                self.buffer.push(batch)
                self.n_buffered += len(batch)
                self._ack(acks)
            if self._backlog() and time.monotonic() >= self._next_retry:
                committed += self._replay()
            return committed

    def _take(self) -> tuple[list[Sample], list[Ack]]:
        batch: list[Sample] = []
        acks: list[Ack] = []
        while self._q and len(batch) < self.max_batch:
            samples, ack = self._q.popleft()
            batch.extend(samples)
            if ack is not None:
                acks.append(ack)
        return batch, acks

    @staticmethod
    def _ack(acks: list[Ack]) -> None:
        for ack in acks:
            try:
                ack()
            except Exception as err:  # an ack to a source that has gone away is that source's problem
                log.debug("ack failed: %s", err)

    def _backlog(self) -> bool:
        return self.buffer.counts()["batches"] > 0

    def _write(self, batch: list[Sample]) -> bool:
        """Commit one batch. False if the database is down (the caller buffers it); content errors drop it."""
        if not batch:
            return True
        try:
            write_measurements(self.engine, samples_frame(batch), replace="unless_worse")
        except StoreError as err:
            self.health.bad("refused_batch", f"{len(batch)} samples refused by the store: {err}")
            return True
        except _DB_DOWN as err:
            self.health.down(f"database unavailable, buffering to {self.buffer.path}: {str(err).splitlines()[0]}")
            self._next_retry = time.monotonic() + self.retry_s
            return False
        self.latency.add(batch, time.time())
        self.health.seen(batch)
        self.health.up()
        return True

    def _replay(self) -> int:
        """Write buffered batches oldest first until the buffer is empty or the database fails again."""
        done = 0
        while (item := self.buffer.oldest()) is not None:
            batch_id, batch = item
            try:
                write_measurements(self.engine, samples_frame(batch), replace="unless_worse")
            except StoreError as err:
                self.buffer.dead_letter(batch_id, str(err))
                self.health.bad("refused_batch", f"buffered batch {batch_id} refused by the store: {err}")
                continue
            except _DB_DOWN as err:
                self.health.down(f"database still unavailable: {str(err).splitlines()[0]}")
                self._next_retry = time.monotonic() + self.retry_s
                return done
            self.buffer.remove(batch_id)
            self.latency.add(batch, time.time())
            self.health.seen(batch)
            self.health.up()
            done += len(batch)
        log.info("store-and-forward buffer replayed; writing live again")
        return done
