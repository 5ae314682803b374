"""The live figures every open big screen shows, computed once per refresh for all sessions of one scope.

Fifty screens refreshing every 5 s would each query the store; :func:`snapshot` caches the result of
:func:`~anning_lib.portal.views.park_snapshot` for :data:`TTL_S` per (role, enterprise), so the store sees one
query set per scope and period whatever the number of viewers.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, allowed
from anning_lib.park.schema import Park

TTL_S = 4.0
"""How long a snapshot is reused [s] (below the pages' 5 s refresh)."""

KEEP_S = 3600.0
"""An entry older than this is dropped when another is stored (longer than any ``ttl_s`` used) [s]."""

_CACHE: dict[tuple, tuple[float, object]] = {}
_LOCK = threading.Lock()


def cached(key: tuple, make, ttl_s: float = TTL_S):
    """``make()``, reused for ``ttl_s`` [s] under ``key`` (one value per scope and purpose, shared by threads);
    entries older than :data:`KEEP_S` are dropped as new ones arrive, so a server running for months keeps only
    the last hour's."""
    now = time.monotonic()
    with _LOCK:
        hit = _CACHE.get(key)
        if hit and now - hit[0] < ttl_s:
            return hit[1]
    value = make()
    with _LOCK:
        stored = time.monotonic()
        for old in [k for k, (t, _v) in _CACHE.items() if stored - t > KEEP_S]:
            del _CACHE[old]
        _CACHE[key] = (stored, value)
    return value


def snapshot(engine: Engine, park: Park, actor: Actor) -> dict:
    """:func:`~anning_lib.portal.views.park_snapshot` for ``actor``, shared by every session of its scope.

    The rollups are not refreshed here (the gateway's loop does it every minute), so opening a page never
    writes to the store."""
    from anning_lib.portal.views import park_snapshot

    return cached(("snapshot", str(engine.url), actor.role, actor.enterprise_id),
                   lambda: park_snapshot(engine, park, actor, refresh=False))


def alarm_count(engine: Engine, actor: Actor) -> int | None:
    """Open, unshelved alarms the actor may see (None for a role that sees none)."""
    if not allowed(actor, "page.alarms"):
        return None
    from anning_lib.quality.alarms import list_alarms

    return cached(("alarms", str(engine.url), actor.role, actor.enterprise_id),
                   lambda: len(list_alarms(engine, actor, limit=10000)))
