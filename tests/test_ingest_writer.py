"""The batching writer and its disk buffer, against a real store made really unavailable (a held SQLite lock)."""

from __future__ import annotations

import sqlite3

import pandas as pd
import sqlalchemy as sa

from anning_lib.ingest.buffer import DiskBuffer
from anning_lib.ingest.model import Quality, Sample
from anning_lib.ingest.writer import BatchWriter
from anning_lib.store import init_db, make_engine, read_series

T_MS = 1_795_000_000_000
TAG = "E01-M0.p_kw"


def _engine(tmp_path, tiny_park):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = make_engine(url)
    init_db(engine, tiny_park)
    # SQLite waits 30 s for a lock by default; 100 ms makes a held lock an outage the writer sees at once
    sa.event.listen(engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout=100"))
    engine.dispose()
    return engine


class Lock:
    """An exclusive lock on the SQLite file: every write of the writer fails while it is held."""

    def __init__(self, engine):
        self.db = sqlite3.connect(engine.url.database, isolation_level=None)

    def __enter__(self):
        self.db.execute("BEGIN EXCLUSIVE")

    def __exit__(self, *exc):
        self.db.execute("ROLLBACK")
        self.db.close()


def _stored(engine, tag=TAG):
    t = pd.Timestamp(T_MS, unit="ms", tz="UTC")
    return read_series(engine, [tag], t, t + pd.Timedelta("1h"), tz="UTC")[tag].tolist()


def test_outage_buffers_in_order_and_acks_only_when_durable(tmp_path, tiny_park):
    engine = _engine(tmp_path, tiny_park)
    w = BatchWriter(engine, DiskBuffer(tmp_path / "buf.sqlite"), retry_s=0.0)
    acked = []
    with Lock(engine):
        w.submit([Sample(TAG, T_MS, 1.0)], ack=lambda: acked.append("first"))
        assert w.flush() == 0
        w.submit([Sample(TAG, T_MS, 2.0)], ack=lambda: acked.append("second"))   # same instant, newer value
        assert w.flush() == 0
        assert acked == ["first", "second"]      # acknowledged because they are safe on disk
        assert len(w.buffer) == 2 and not w.health.connected
    assert w.flush() == 2                        # replayed oldest first: the newer value wins
    assert _stored(engine) == [2.0] and len(w.buffer) == 0 and w.health.connected
    assert w.n_buffered == 2


def test_backlog_of_a_previous_run_goes_first(tmp_path, tiny_park):
    engine = _engine(tmp_path, tiny_park)
    old = DiskBuffer(tmp_path / "buf.sqlite")
    old.push([Sample(TAG, T_MS, 1.0)])
    old.close()                                   # the gateway stopped with this still queued
    w = BatchWriter(engine, DiskBuffer(tmp_path / "buf.sqlite"))
    w.submit([Sample(TAG, T_MS, 3.0)])            # live data for the same instant arrives after restart
    assert w.flush() == 2
    assert _stored(engine) == [3.0]


def test_a_point_the_store_refuses_costs_only_its_own_samples(tmp_path, tiny_park):
    engine = _engine(tmp_path, tiny_park)
    w = BatchWriter(engine, DiskBuffer(tmp_path / "buf.sqlite"))
    w.submit([Sample(TAG, T_MS, 5.0), Sample("NOPE.p_kw", T_MS, 1.0), Sample("E01-L1.p_kw", T_MS, 7.0)])
    assert w.flush() == 2
    assert _stored(engine) == [5.0] and _stored(engine, "E01-L1.p_kw") == [7.0]
    assert w.buffer.counts()["dead_batches"] == 1 and w.health.n_bad == 1


def test_unwritable_buffer_keeps_samples_in_memory_unacked(tmp_path, tiny_park):
    engine = _engine(tmp_path, tiny_park)
    w = BatchWriter(engine, DiskBuffer(tmp_path / "buf.sqlite"), retry_s=0.0)
    acked = []
    w.buffer.close()                              # the buffer file can no longer be written
    with Lock(engine):
        w.submit([Sample(TAG, T_MS, 4.0, Quality.UNCERTAIN)], ack=lambda: acked.append(1))
        w.flush()
    assert acked == [] and len(w._q) == 1         # not lost, not acknowledged
    w.buffer = DiskBuffer(tmp_path / "buf2.sqlite")
    assert w.flush() == 1 and acked == [1]
    assert _stored(engine) == [4.0]
