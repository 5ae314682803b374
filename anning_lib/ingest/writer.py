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
from sqlalchemy.engine import Engine

from anning_lib.aio import wait_or_stop
from anning_lib.errors import StoreError
from anning_lib.ingest.buffer import DiskBuffer
from anning_lib.ingest.model import Sample, SourceHealth
from anning_lib.store.timeseries import write_measurements

log = logging.getLogger("anning.ingest")
Ack = Callable[[], None]


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

    Any error other than the store refusing content (:class:`~anning_lib.errors.StoreError`) counts as "database
    unavailable": the batch is buffered and retried. A refused batch is split by point; the points the store
    accepts are written and the refused ones go to the buffer's dead-letter table, so one bad point never costs
    the others their data.

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

    # ---------------------------------------------------------------- the loop
    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``flush_s`` until ``stop`` is set, then flush what is left. Never raises."""
        while not await wait_or_stop(stop, self.flush_s):
            await asyncio.to_thread(self._safe_flush)
        await asyncio.to_thread(self._safe_flush)

    def _safe_flush(self) -> None:
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the writer must outlive any single failure; data stays queued
            log.exception("writer: flush failed; the queued samples are kept and retried")

    def flush(self) -> int:
        """Write (or buffer) everything queued now; replay the buffer when it is due. Returns samples written."""
        with self._lock:
            before = self.latency.committed
            while self._q:
                items = self._take()
                batch = [s for samples, _a in items for s in samples]
                if not (self.health.connected and not self.buffer.has_backlog() and self._write(batch)):
                    if not self._to_buffer(items, batch):
                        break
                self._ack(items)
            if self.buffer.has_backlog() and time.monotonic() >= self._next_retry:
                self._replay()
            return self.latency.committed - before

    def _take(self) -> list[tuple[list[Sample], Ack | None]]:
        items, n = [], 0
        while self._q and n < self.max_batch:
            items.append(self._q.popleft())
            n += len(items[-1][0])
        return items

    def _to_buffer(self, items, batch: list[Sample]) -> bool:
        """Buffer a batch on disk; if even that fails, put it back at the head of the queue (not acked)."""
        try:
            self.buffer.push(batch)
        except Exception as err:  # noqa: BLE001 - disk full, file gone: keep the data in memory
            self.health.error("buffer", f"cannot write the disk buffer {self.buffer.path}: {err}")
            self._q.extendleft(reversed(items))
            self._next_retry = time.monotonic() + self.retry_s
            return False
        self.n_buffered += len(batch)
        return True

    @staticmethod
    def _ack(items) -> None:
        for _samples, ack in items:
            if ack is None:
                continue
            try:
                ack()
            except Exception as err:  # noqa: BLE001 - an ack to a source that has gone away is its problem
                log.debug("ack failed: %s", err)

    def _commit(self, batch: list[Sample]) -> None:
        write_measurements(self.engine, samples_frame(batch), replace="unless_worse")
        self.latency.add(batch, time.time())
        self.health.seen(batch)
        self.health.up()

    def _write(self, batch: list[Sample]) -> bool:
        """Commit one batch; False if the database is unavailable (the caller buffers it)."""
        if not batch:
            return True
        try:
            self._commit(batch)
        except StoreError:
            return self._write_by_point(batch)
        except Exception as err:  # noqa: BLE001 - driver, network, lock: all mean "not now"
            self._down(err)
            return False
        return True

    def _write_by_point(self, batch: list[Sample]) -> bool:
        """The store refused a batch: write it point by point, dead-lettering only the refused points."""
        by_tag: dict[str, list[Sample]] = {}
        for smp in batch:
            by_tag.setdefault(smp.tag, []).append(smp)
        for tag, samples in by_tag.items():
            try:
                self._commit(samples)
            except StoreError as err:
                self.health.bad("refused_point", f"{tag}: {len(samples)} samples refused by the store: {err}")
                self.buffer.dead_letter(self.buffer.push(samples), str(err))
            except Exception as err:  # noqa: BLE001
                self._down(err)
                return False
        return True

    def _down(self, err: Exception) -> None:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        self.health.down(f"database unavailable ({type(err).__name__}: {first}); buffering to {self.buffer.path}")
        self._next_retry = time.monotonic() + self.retry_s

    def _replay(self) -> None:
        """Write buffered batches oldest first, several per transaction, until the buffer is empty or the
        database fails again."""
        while items := self.buffer.oldest(self.max_batch):
            if not self._write([s for _id, samples in items for s in samples]):
                return
            self.buffer.remove([batch_id for batch_id, _s in items])
        log.info("writer: store-and-forward buffer replayed; writing live again")
