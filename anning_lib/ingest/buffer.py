"""Store-and-forward: an on-disk queue of sample batches kept while the database is unavailable.

The queue is one SQLite file (``var/ingest-buffer.sqlite`` by default) with one row per batch, in arrival order.
A batch is removed only after the database has committed it, so a crash of the gateway or the database loses
nothing that reached the buffer. Batches the database refuses for their content (not for being down) go to a
``dead_letter`` table instead of blocking the queue forever.

Written here rather than taken from a queue library because it is small, and because keeping batches (not single
messages) with ``synchronous=FULL`` is what makes replay both durable and fast.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from anning_lib.ingest.model import Sample

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (id INTEGER PRIMARY KEY AUTOINCREMENT, at_s REAL NOT NULL,
    reason TEXT NOT NULL, payload TEXT NOT NULL);
"""


def encode_batch(samples: list[Sample]) -> str:
    """Samples -> compact JSON (column lists); ``recv_s`` is kept for latency figures."""
    return json.dumps({"tag": [s.tag for s in samples], "ts": [s.ts_ms for s in samples],
                       "v": [s.value for s in samples], "q": [int(s.quality) for s in samples],
                       "r": [s.recv_s for s in samples]}, separators=(",", ":"))


def decode_batch(payload: str) -> list[Sample]:
    d = json.loads(payload)
    return [Sample(t, ts, v, q, r) for t, ts, v, q, r in zip(d["tag"], d["ts"], d["v"], d["q"], d["r"])]


class DiskBuffer:
    """A FIFO of sample batches in a SQLite file, safe to use from several threads.

    Parameters
    ----------
    path : Path
        the buffer file; created with its folder if missing. Batches left by a previous run are kept and
        replayed first.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._n = self._db.execute("SELECT count(*) FROM batch").fetchone()[0]

    def push(self, samples: list[Sample]) -> int | None:
        """Append one batch (durable on return); returns its id (None for an empty batch)."""
        if not samples:
            return None
        with self._lock:
            cur = self._db.execute("INSERT INTO batch (n, payload) VALUES (?, ?)", (len(samples), encode_batch(samples)))
            self._n += 1
            return cur.lastrowid

    def oldest(self, max_samples: int = 1) -> list[tuple[int, list[Sample]]]:
        """The oldest batches as ``(id, samples)``, at least one (if any) and together at most ``max_samples``
        samples otherwise; they stay queued until :meth:`remove`."""
        out, n = [], 0
        with self._lock:
            for batch_id, size, payload in self._db.execute("SELECT id, n, payload FROM batch ORDER BY id"):
                if out and n + size > max_samples:
                    break
                out.append((batch_id, decode_batch(payload)))
                n += size
        return out

    def remove(self, batch_ids: list[int]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            for batch_id in batch_ids:
                self._n -= self._db.execute("DELETE FROM batch WHERE id = ?", (batch_id,)).rowcount
            self._db.execute("COMMIT")

    def dead_letter(self, batch_id: int, reason: str) -> None:
        """Move a batch the database refused for its content out of the queue, keeping it for inspection."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO dead_letter (at_s, reason, payload) SELECT ?, ?, payload FROM batch "
                             "WHERE id = ?", (time.time(), reason[:2000], batch_id))
            self._n -= self._db.execute("DELETE FROM batch WHERE id = ?", (batch_id,)).rowcount
            self._db.execute("COMMIT")

    def has_backlog(self) -> bool:
        """True while batches wait to be replayed (kept in memory: no query)."""
        return self._n > 0

    def counts(self) -> dict[str, int]:
        """``batches`` and ``samples`` queued, ``dead_batches`` kept aside."""
        with self._lock:
            b, n = self._db.execute("SELECT count(*), coalesce(sum(n), 0) FROM batch").fetchone()
            d = self._db.execute("SELECT count(*) FROM dead_letter").fetchone()[0]
        return {"batches": b, "samples": n, "dead_batches": d}

    def __len__(self) -> int:
        return self._n

    def close(self) -> None:
        with self._lock:
            self._db.close()
