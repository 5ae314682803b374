"""Column types shared by the models and the migrations.

Migrations import only from this module (never from :mod:`anning_lib.store.schema`), so that a migration keeps
describing the schema of its own revision when the models move on.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from anning_lib.errors import StoreError

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MS = dt.timedelta(milliseconds=1)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint naming convention of the models and the migrations (so later ALTERs can name constraints)."""


def to_utc(value: object, field: str = "ts") -> dt.datetime:
    """Check that ``value`` is a time-zone-aware datetime and return it in UTC.

    Parameters
    ----------
    value : datetime.datetime or pandas.Timestamp
        An aware instant.
    field : str
        Name of the field, used in the error message.

    Returns
    -------
    datetime.datetime
        The same instant with ``tzinfo=UTC``.

    Raises
    ------
    StoreError
        if ``value`` is not a datetime or is naive (no time zone): a naive time is ambiguous (UTC? Beijing?).
    """
    if not isinstance(value, dt.datetime):
        raise StoreError(f"{field}: expected a time-zone-aware datetime, got {value!r}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise StoreError(f"{field}: naive timestamp {value!r} has no time zone; give it one (e.g. UTC)")
    return value.astimezone(UTC)


def datetime_to_ms(value: dt.datetime) -> int:
    """An aware datetime as integer milliseconds since 1970-01-01 UTC [ms] (sub-millisecond part floored)."""
    return (to_utc(value) - EPOCH) // _MS


def ms_to_datetime(ms: int) -> dt.datetime:
    """Integer milliseconds since 1970-01-01 UTC [ms] as an aware UTC datetime."""
    return EPOCH + dt.timedelta(milliseconds=int(ms))


class UtcDateTime(TypeDecorator):
    """An instant in time, stored in UTC.

    * SQLite: ``INTEGER`` milliseconds since the Unix epoch (compact, fast to compare and to bucket;
      resolution 1 ms, finer parts are floored).
    * PostgreSQL and others: ``TIMESTAMP WITH TIME ZONE``.

    On the Python side values are always aware datetimes in UTC. Binding a naive datetime raises
    :class:`~anning_lib.errors.StoreError` naming the value.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.BigInteger())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value, dialect: Dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return datetime_to_ms(value)
        return to_utc(value)

    def process_result_value(self, value, dialect: Dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return ms_to_datetime(value)
        if value.tzinfo is None:  # a driver that drops the zone: the column holds UTC
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def python_type(self):
        return dt.datetime


def utcnow() -> dt.datetime:
    """The current instant, aware, in UTC (default for ``created_at`` columns)."""
    return dt.datetime.now(UTC)
