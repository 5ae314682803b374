"""Engines, migrations and database initialisation.

One code path for the embedded default (SQLite in WAL mode under ``var/``) and production (PostgreSQL,
TimescaleDB where available): only the URL differs (ARCHITECTURE.md §3).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Engine, make_url

from anning_lib.errors import StoreError

if TYPE_CHECKING:
    from anning_lib.park import Park

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer's lock before failing [ms]."""


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; a bare ``postgresql://`` gets the installed psycopg 3 driver.

    Raises
    ------
    StoreError
        if the URL cannot be parsed or names a database other than SQLite or PostgreSQL.
    """
    try:
        u = make_url(url)
    except Exception as err:  # sqlalchemy.exc.ArgumentError and friends
        raise StoreError(f"database_url: cannot parse {str(url)!r}: {err}") from None
    backend = u.get_backend_name()
    if backend == "postgresql" and u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise StoreError(f"database_url: backend {backend!r} is not supported (use sqlite or postgresql)")
    return u


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cur.close()


def make_engine(url: str | URL | None = None, **kwargs) -> Engine:
    """Create an engine for ``url`` (default: ``get_settings().database_url``).

    SQLite: the parent folder of the database file is created; every connection runs
    ``PRAGMA journal_mode=WAL, synchronous=NORMAL, foreign_keys=ON, busy_timeout``. PostgreSQL: psycopg 3 with
    ``pool_pre_ping``.

    Parameters
    ----------
    url : str or sqlalchemy.engine.URL, optional
        SQLAlchemy database URL.
    **kwargs
        Passed to :func:`sqlalchemy.create_engine`.
    """
    if url is None:
        from anning_lib.config import get_settings

        url = get_settings().database_url
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(u, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(u, **kwargs)


# -------------------------------------------------------------------------------------------- migrations
def alembic_config(connection: sa.Connection | None = None) -> Config:
    """The Alembic configuration of the store, built in code (no ``alembic.ini``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration revision shipped with the library."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database forward to ``revision`` (``alembic upgrade``), in one transaction."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` (``"base"`` drops every store table). Destroys data."""
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)


def check_schema(engine: Engine) -> None:
    """Raise :class:`StoreError` unless the database is at the library's head revision."""
    cur, head = current_revision(engine), head_revision()
    if cur != head:
        raise StoreError(f"database revision {cur!r} is not the library's {head!r}: run `anning db init` (it upgrades the schema)")


def init_db(engine: Engine, park: Park | None = None, addresses: dict[str, dict] | None = None) -> dict[str, int] | None:
    """Bring the schema to head and, if ``park`` is given, upsert its assets (:func:`sync_park`).

    Safe to run any number of times: migrations already applied are skipped and the assets are upserted by
    their natural keys, so point ids stay the same.

    Returns
    -------
    dict or None
        The counts returned by :func:`anning_lib.store.assets.sync_park`, if a park was given.
    """
    from anning_lib.store.assets import sync_park, sync_roles

    upgrade(engine, "head")
    sync_roles(engine)
    if park is None:
        return None

    return sync_park(engine, park, addresses)
