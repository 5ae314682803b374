"""The store: schema, Alembic migrations, time-series read/write and 15-minute rollups.

Typical use::

    from anning_lib.store import make_engine, init_db, write_measurements, read_series
    engine = make_engine()                 # settings.database_url (SQLite under var/ by default)
    init_db(engine, park)                  # migrate to head, upsert the park's assets
    write_measurements(engine, long_df)    # columns tag, ts (aware), value[, quality]
    wide = read_series(engine, ["E01-M0.p_kw"], start, end, resolution="15min")
"""

from anning_lib.store.assets import enterprise_tags, point_ids, sync_park
from anning_lib.store.engine import (
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    init_db,
    make_engine,
    upgrade,
)
from anning_lib.store.timeseries import (
    count_rows,
    read_enterprise,
    read_series,
    refresh_rollups,
    write_measurements,
)
from anning_lib.store.types import UtcDateTime

__all__ = [
    "UtcDateTime", "check_schema", "count_rows", "current_revision", "downgrade", "enterprise_tags",
    "head_revision", "init_db", "make_engine", "point_ids", "read_enterprise", "read_series",
    "refresh_rollups", "sync_park", "upgrade", "write_measurements",
]
