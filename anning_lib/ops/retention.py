"""Retention of raw measurements: rows older than the retention period are deleted once their 15-minute rollups
are up to date; the rollups are kept for years (hourly and daily figures are computed from them).

:func:`prune_measurements` works in ONE transaction: it recomputes the rollups of every bucket it is about to
empty from the raw rows (:func:`anning_lib.store.timeseries.refresh_rollups`), then deletes those rows. A row that
arrived late, after the last rollup, is therefore counted before it goes; no row is deleted that its rollup does
not include. The cut-off is aligned to a UTC quarter-hour, so no bucket is half pruned. Samples of bad quality are
never part of a rollup (by design: :data:`~anning_lib.store.timeseries.MAX_ROLLUP_QUALITY`) and go with the rest.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.errors import StoreError
from anning_lib.store.schema import TABLES
from anning_lib.store.timeseries import refresh_rollups


def cutoff_for(keep_days: float, now: dt.datetime | None = None) -> pd.Timestamp:
    """The instant before which raw rows go: ``now - keep_days``, floored to a UTC quarter-hour (pure).

    Parameters
    ----------
    keep_days : float
        Raw retention [d], > 0.
    now : datetime, optional
        Aware instant (default: now).
    """
    if not keep_days or keep_days <= 0:
        raise StoreError(f"keep_days: must be > 0 days, got {keep_days!r}")
    now = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    if now.tzinfo is None:
        raise StoreError(f"now: expected an aware instant, got {now!r}")
    return (now.tz_convert("UTC") - pd.Timedelta(days=keep_days)).floor("15min")


def prune_measurements(engine: Engine, keep_days: float, *, now: dt.datetime | None = None,
                       dry_run: bool = False) -> dict:
    """Delete raw measurements older than ``keep_days`` after bringing their rollups up to date.

    Returns
    -------
    dict
        ``cutoff`` (UTC), ``rows`` deleted (or that would be, with ``dry_run``), ``buckets`` rollup rows
        recomputed, ``oldest`` raw instant before pruning (None for an empty store).
    """
    cutoff = cutoff_for(keep_days, now)
    m = TABLES["measurement"]
    with engine.begin() as conn:
        oldest = conn.execute(sa.select(sa.func.min(m.c.ts))).scalar_one()
        if oldest is None or pd.Timestamp(oldest) >= cutoff:
            return {"cutoff": cutoff, "rows": 0, "buckets": 0, "oldest": oldest}
        old = m.c.ts < cutoff.to_pydatetime()
        n_rows = int(conn.execute(sa.select(sa.func.count()).select_from(m).where(old)).scalar_one())
        if dry_run:
            return {"cutoff": cutoff, "rows": n_rows, "buckets": 0, "oldest": oldest}
        buckets = refresh_rollups(conn, pd.Timestamp(oldest), cutoff)
        conn.execute(sa.delete(m).where(old))
    return {"cutoff": cutoff, "rows": n_rows, "buckets": buckets, "oldest": oldest}
