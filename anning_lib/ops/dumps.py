"""Database copies for backups: dump the store (SQLite online backup API, ``pg_dump``) and restore a dump.

Also the PostgreSQL client tools (:func:`pg_tool`) and the server maintenance these need.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.pool import NullPool

from anning_lib.errors import StoreError
from anning_lib.ops.checksums import table_checksums

SQLITE_MEMBER = "db/anning.sqlite"
PG_MEMBER = "db/anning.pgdump"
"""The database's name in a backup archive, by kind."""


# ------------------------------------------------------------------------------------------------ PostgreSQL tools
def pg_tool(name: str) -> str:
    """The newest Debian PostgreSQL client binary ``name`` (``/usr/lib/postgresql/<v>/bin``), else one on PATH."""
    def version(p: str) -> tuple[int, ...]:
        v = Path(p).parent.parent.name
        return tuple(int(x) for x in re.findall(r"\d+", v)) or (0,)

    found = [p for p in glob.glob(f"/usr/lib/postgresql/*/bin/{name}") if os.access(p, os.X_OK)]
    if found:
        return max(found, key=version)
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise StoreError(f"{name}: not found in /usr/lib/postgresql/*/bin or on PATH (install postgresql-client)")


def _libpq(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` and the environment that carries its password (never argv)."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, str] = {}
    for k, v in url.query.items():
        params[k] = v if isinstance(v, str) else v[-1]
    if url.host:
        params["host"] = url.host
    if url.port:
        params["port"] = str(url.port)
    if url.username:
        params["user"] = url.username
    if url.database:
        params["dbname"] = url.database
    env = {"PGPASSWORD": url.password} if url.password else {}
    return make_conninfo("", **params), env


def _run(argv: list[str], env_extra: dict[str, str]) -> None:
    env = {**os.environ, **env_extra, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "15")}
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        msg = lines[0] if lines else f"exit status {proc.returncode}"
        if len(lines) > 1:
            msg += f" (+{len(lines) - 1} more lines)"
        raise StoreError(f"{Path(argv[0]).name}: {msg}")


def _pg_admin_engine(url: URL) -> Engine:
    """An autocommit engine on the maintenance database of ``url``'s server (``postgres``, else ``template1``)."""
    last: Exception | None = None
    for db in ("postgres", "template1"):
        eng = sa.create_engine(url.set(database=db), isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            with eng.connect():
                return eng
        except sa.exc.OperationalError as err:
            last = err
            eng.dispose()
    raise StoreError(f"database_url: cannot reach the server of {url.render_as_string(hide_password=True)}: "
                     f"{str(last).splitlines()[0] if last else ''}")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pg_user_relations(url: URL) -> int:
    eng = sa.create_engine(url, poolclass=NullPool)
    try:
        with eng.connect() as c:
            return c.exec_driver_sql(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast' "
                "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')").scalar_one()
    finally:
        eng.dispose()


# ------------------------------------------------------------------------------------------------ dumps
def sqlite_path(url: URL, field_name: str) -> Path:
    """The file of a SQLite URL; a URL without one (memory, ``file:`` URI) is refused, naming ``field_name``."""
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise StoreError(f"{field_name}: {url.render_as_string(hide_password=True)} is not a SQLite database file")
    return Path(db).expanduser()


def _sqlite_copy(src: Path, dst: Path) -> None:
    """Copy the database ``src`` into ``dst`` with SQLite's online backup API (one consistent snapshot)."""
    from anning_lib.store.engine import SQLITE_BUSY_TIMEOUT_MS

    s = sqlite3.connect(str(src), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    try:
        d = sqlite3.connect(str(dst), timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            s.backup(d)  # pages=-1: the whole database in one step, under one read transaction of the source
        finally:
            d.close()
    finally:
        s.close()


def _sqlite_engine(path: Path) -> Engine:
    """A plain engine on a SQLite file (no WAL switch: reading a copy must not change it)."""
    return sa.create_engine(URL.create("sqlite", database=str(path)), poolclass=NullPool)


def dump_sqlite(engine: Engine, dest_dir: Path) -> dict[str, Any]:
    """Copy the SQLite store into ``dest_dir``; returns the manifest's ``db`` facts and the copy's checksums."""
    from anning_lib.store.engine import current_revision

    src = sqlite_path(engine.url, "database_url")
    if not src.is_file():
        raise StoreError(f"database_url: no SQLite database at {src}")
    dest = dest_dir / Path(SQLITE_MEMBER).name
    try:
        _sqlite_copy(src, dest)
        with contextlib.closing(sqlite3.connect(str(dest))) as d:
            d.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    except sqlite3.Error as err:
        raise StoreError(f"database_url: SQLite backup of {src} failed: {err}") from None
    copy = _sqlite_engine(dest)
    try:
        revision = current_revision(copy)
        tables = table_checksums(copy)
    finally:
        copy.dispose()
    return {"kind": "sqlite", "revision": revision, "member": SQLITE_MEMBER, "tables": tables,
            "server_version": sqlite3.sqlite_version}


def dump_postgres(engine: Engine, dest_dir: Path) -> dict[str, Any]:
    """``pg_dump`` the PostgreSQL store into ``dest_dir``; returns the manifest's ``db`` facts and the checksums of
    the same snapshot."""
    from alembic.runtime.migration import MigrationContext

    pg_dump = pg_tool("pg_dump")
    dest = dest_dir / Path(PG_MEMBER).name
    conninfo, env = _libpq(engine.url)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            # pg_dump reads the snapshot this transaction exported: dump and checksums see the same instant
            _run([pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}", f"--file={dest}",
                  f"--dbname={conninfo}"], env)
            revision = MigrationContext.configure(conn).get_current_revision()
            tables = table_checksums(conn)
            version = conn.exec_driver_sql("SELECT current_setting('server_version')").scalar_one()
    return {"kind": "postgresql", "revision": revision, "member": PG_MEMBER, "tables": tables,
            "server_version": version}


# ------------------------------------------------------------------------------------------------ restore
def restore_sqlite(src: Path, target: Path, force: bool) -> None:
    """Copy the database file ``src`` into ``target``, which must be new, empty or tableless unless ``force``."""
    if target.exists() and target.stat().st_size > 0:
        try:
            with contextlib.closing(sqlite3.connect(str(target))) as c:
                n = c.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        except sqlite3.Error:
            raise StoreError(f"--to: {target} exists and is not a SQLite database; remove it first") from None
        if n and not force:
            raise StoreError(f"--to: {target} is not empty ({n} tables); add --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _sqlite_copy(src, target)
    except sqlite3.Error as err:
        raise StoreError(f"--to: restoring into {target} failed: {err}") from None


def restore_postgres(dump: Path, url: URL, force: bool) -> None:
    """``pg_restore`` the dump into ``url`` (created when missing, dropped again if the restore fails), which must
    hold no relations unless ``force``."""
    pg_restore = pg_tool("pg_restore")
    admin = _pg_admin_engine(url)
    created = False
    try:
        with admin.connect() as c:
            exists = c.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": url.database}).first()
            if exists is None:
                c.exec_driver_sql(f"CREATE DATABASE {_quote_ident(url.database)}")
                created = True
        if not created:
            n = _pg_user_relations(url)
            if n and not force:
                raise StoreError(f"--to: database {url.database!r} is not empty ({n} relations); add --force to "
                                 "overwrite it")
        conninfo, env = _libpq(url)
        try:
            _run([pg_restore, "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
                  "--no-password", f"--dbname={conninfo}", str(dump)], env)
        except BaseException:
            if created:
                with admin.connect() as c:
                    c.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote_ident(url.database)} WITH (FORCE)")
            raise
    finally:
        admin.dispose()


def measure(url: URL) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """The schema revision and the :func:`~anning_lib.ops.checksums.table_checksums` of a restored database."""
    from anning_lib.store.engine import current_revision

    eng = (_sqlite_engine(sqlite_path(url, "--to")) if url.get_backend_name() == "sqlite"
           else sa.create_engine(url, poolclass=NullPool))
    try:
        return current_revision(eng), table_checksums(eng)
    finally:
        eng.dispose()


def drop_pg_database(server: URL, database: str) -> None:
    """Drop ``database`` on ``server``'s PostgreSQL server, if it exists (``WITH (FORCE)``)."""
    admin = _pg_admin_engine(server)
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote_ident(database)} WITH (FORCE)")
    finally:
        admin.dispose()
