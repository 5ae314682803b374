"""Encrypted, verifiable backups of the store, the configuration and the produced reports.

One backup is one file ``anning-<UTC timestamp>.tar.enc`` in the backup folder: a tar archive, encrypted, that
holds

* ``manifest.json`` (first member): when, which database (kind, schema revision), every table's row count and
  content checksum (:func:`table_checksums`), and every other member's size and SHA-256;
* ``db/anning.sqlite`` (SQLite, copied with the online backup API: a consistent snapshot while the gateway keeps
  writing) or ``db/anning.pgdump`` (PostgreSQL, ``pg_dump --format=custom`` on a snapshot exported by the same
  transaction that computes the manifest's checksums, so dump and checksums describe the same instant);
* ``config/``: ``anning.toml`` (when present), ``data/park``, ``data/tariffs``, ``data/alarms`` and the gateway's
  point maps (``ingest/*.yaml``);
* ``reports/``: the produced reports (``var/reports``).

Encryption (format version 1)
-----------------------------
The key file holds 32 random bytes (AES-256), made by :func:`generate_key` (``anning backup keygen``) with mode
0600; a key file that group or others may access is refused. Each archive draws a fresh 16-byte salt and derives
its own file key with HKDF-SHA256 from the key, so no (key, nonce) pair ever repeats across archives. The
plaintext (the tar stream, gzip-compressed) is cut into chunks of 1 MiB, each sealed with AES-256-GCM (nonce = chunk index; the
additional authenticated data = the whole clear header, the chunk index and a "final chunk" flag). Reordered,
dropped, truncated, appended or altered bytes anywhere, in the header too, fail authentication. The clear header
carries only the format, the salt, the chunk size, the compression and a key id (HMAC of the key; tells "wrong key" from
"tampered"), never a name, date or row count::

    b"ANNBAK\\x00\\x01" | uint32 header length | header JSON | chunk 0 | chunk 1 | ... | final chunk (< 1 MiB)

Everything is decrypted and authenticated, and every member checked against the manifest, into a private
temporary folder before anything is restored: a wrong or missing key or a tampered archive raises one
:class:`~anning_lib.errors.StoreError` (or :class:`~anning_lib.errors.ConfigError` for the key file) and leaves
no file behind.

Settings (read from the environment until they join :class:`anning_lib.config.Settings`)
--------------------------------------------------------------------------------------------
``ANNING_BACKUP_DIR`` (default ``<var_dir>/backups``), ``ANNING_BACKUP_KEY_FILE`` (default
``<var_dir>/backup.key``), ``ANNING_BACKUP_KEEP`` (default 14: the newest N backups are kept, older ones deleted
after each successful ``create``). See ``docs/backup.md``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import glob
import gzip
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import struct
import subprocess
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

from anning_lib.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from anning_lib.config import Settings

# ------------------------------------------------------------------------------------------------ settings
ENV_DIR = "ANNING_BACKUP_DIR"
ENV_KEY_FILE = "ANNING_BACKUP_KEY_FILE"
ENV_KEEP = "ANNING_BACKUP_KEEP"
DEFAULT_KEEP = 14
"""Backups kept by the rotation unless ``ANNING_BACKUP_KEEP`` says otherwise (two weeks of nightly backups)."""

MANIFEST_FORMAT = "anning-backup/1"
CHECKSUM_METHOD = ("sha256 of one line per row, rows ordered by primary key (text by code point), values "
                   "normalised: null, bool, int, float repr, JSON-quoted text, UTC ISO instants, canonical JSON")
SQLITE_MEMBER = "db/anning.sqlite"
PG_MEMBER = "db/anning.pgdump"
NAME_RE = re.compile(r"^anning-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.enc$")
"""Names of backup files; rotation only ever deletes files whose name matches."""


@dataclass(frozen=True)
class BackupSettings:
    """Where backups go, where the key is, how many backups are kept."""

    dir: Path
    key_file: Path
    keep: int


def backup_settings(settings: Settings | None = None, environ: dict[str, str] | None = None) -> BackupSettings:
    """The backup settings: ``ANNING_BACKUP_DIR``, ``ANNING_BACKUP_KEY_FILE``, ``ANNING_BACKUP_KEEP``.

    An environment variable wins; then a ``backup_dir`` / ``backup_key_file`` / ``backup_keep`` field of the
    settings object (once :class:`~anning_lib.config.Settings` has them, also from ``anning.toml``); then the
    defaults ``<var_dir>/backups``, ``<var_dir>/backup.key`` and 14.

    Raises
    ------
    ConfigError
        if ``ANNING_BACKUP_KEEP`` is not an integer of at least 1.
    """
    if settings is None:
        from anning_lib.config import get_settings

        settings = get_settings()
    env = os.environ if environ is None else environ

    def pick(name: str, attr: str, default: Any) -> Any:
        raw = env.get(name)
        if raw not in (None, ""):
            return raw
        value = getattr(settings, attr, None)
        return default if value is None else value

    directory = Path(pick(ENV_DIR, "backup_dir", Path(settings.var_dir) / "backups")).expanduser()
    key_file = Path(pick(ENV_KEY_FILE, "backup_key_file", Path(settings.var_dir) / "backup.key")).expanduser()
    raw_keep = pick(ENV_KEEP, "backup_keep", DEFAULT_KEEP)
    try:
        keep = int(raw_keep)
    except (TypeError, ValueError):
        raise ConfigError(f"{ENV_KEEP}: not an integer: {raw_keep!r}") from None
    if keep < 1:
        raise ConfigError(f"{ENV_KEEP}: must keep at least 1 backup, got {keep}")
    return BackupSettings(directory, key_file, keep)


# ------------------------------------------------------------------------------------------------ the key
KEY_BYTES = 32
_KEY_HEADER = ("# Anning backup key (AES-256). Keep it apart from the backups, and a copy of it in a safe place:\n"
               "# without it no backup can be restored. Made by `anning backup keygen`.\n")


def key_id(key: bytes) -> str:
    """A short public fingerprint of a key (HMAC-SHA256 of a fixed label), stored in each archive's header."""
    return hmac.new(key, b"anning-backup key id", hashlib.sha256).hexdigest()[:16]


def generate_key(path: Path | str, *, force: bool = False) -> str:
    """Write a new random key to ``path`` with mode 0600; returns its key id.

    Raises
    ------
    ConfigError
        if ``path`` exists and ``force`` is false (a new key cannot open the backups made with the old one).
    """
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{ENV_KEY_FILE}: {path} exists already; a new key cannot open the backups made with "
                          "it (use --force only if you really mean to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (_KEY_HEADER + base64.urlsafe_b64encode(key).decode("ascii") + "\n").encode("ascii"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    return key_id(key)


def load_key(path: Path | str) -> bytes:
    """Read the key from ``path``.

    Raises
    ------
    ConfigError
        if the file is missing, not a regular file, accessible by group or others (mode & 0o077), or does not
        hold one base64 line of 32 bytes.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{ENV_KEY_FILE}: no key file {path} (make one with `anning backup keygen`, or point "
                          f"{ENV_KEY_FILE} at the park's key)") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{ENV_KEY_FILE}: {path} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise ConfigError(f"{ENV_KEY_FILE}: {path} has mode {mode:04o}: group or others may access it; "
                          f"refusing to use it (chmod 600 {path})")
    try:
        lines = [ln.strip() for ln in path.read_text("ascii").splitlines()
                 if ln.strip() and not ln.lstrip().startswith("#")]
        key = base64.b64decode(lines[0], altchars=b"-_", validate=True) if len(lines) == 1 else b""
    except (UnicodeDecodeError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{ENV_KEY_FILE}: {path} does not hold a backup key (one base64 line of "
                          f"{KEY_BYTES} bytes)")
    return key


# ------------------------------------------------------------------------------------------------ encryption
MAGIC = b"ANNBAK\x00\x01"
CHUNK_BYTES = 1 << 20
GZIP_LEVEL = 6
"""The tar stream is gzip-compressed before encryption (SQLite files shrink 3 to 5 times; pg_dump's custom
format is compressed already)."""
_TAG = 16
_MAX_HEADER = 4096
_HKDF_INFO = b"anning-backup v1 file key"


def _file_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(key)


def _nonce(index: int) -> bytes:
    return struct.pack(">4xQ", index)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">Q?", index, final)


class _EncryptingWriter(io.RawIOBase):
    """A write-only stream that seals what it is given in AES-256-GCM chunks onto ``raw``; :meth:`finish` seals
    the final chunk (always shorter than a full one, possibly empty)."""

    def __init__(self, raw, key: bytes, chunk: int = CHUNK_BYTES, compression: str = "gzip"):
        super().__init__()
        salt = secrets.token_bytes(16)
        body = json.dumps({"format": "anning-backup", "version": 1, "cipher": "AES-256-GCM", "kdf": "HKDF-SHA256",
                           "chunk_bytes": chunk, "salt": salt.hex(), "key_id": key_id(key),
                           "compression": compression}, sort_keys=True).encode()
        self._header = MAGIC + struct.pack(">I", len(body)) + body
        self._raw, self._chunk = raw, chunk
        self._aead = AESGCM(_file_key(key, salt))
        self._buf = bytearray()
        self._index = 0
        raw.write(self._header)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._buf += b
        n = len(self._buf) // self._chunk * self._chunk
        for off in range(0, n, self._chunk):  # a non-final chunk is always exactly full
            self._seal(bytes(self._buf[off:off + self._chunk]), final=False)
        del self._buf[:n]
        return len(b)

    def finish(self) -> None:
        self._seal(bytes(self._buf), final=True)
        self._buf.clear()

    def _seal(self, data: bytes, final: bool) -> None:
        self._raw.write(self._aead.encrypt(_nonce(self._index), data, _aad(self._header, self._index, final)))
        self._index += 1


def _plaintext(reader: _DecryptingReader) -> Iterator[bytes]:
    """The archive's tar stream: the authenticated chunks, decompressed when the header says gzip (in pieces of
    at most 16 MiB, so a chunk of zeros never inflates in memory at once)."""
    if reader.compression != "gzip":
        yield from reader.chunks()
        return
    dec = zlib.decompressobj(wbits=31)
    for data in reader.chunks():
        while data:
            yield dec.decompress(data, 1 << 24)
            data = dec.unconsumed_tail
    tail = dec.flush()
    if tail:
        yield tail
    if not dec.eof or dec.unused_data:
        raise StoreError(f"{reader.name}: the compressed archive is incomplete or damaged")


class _DecryptingReader(io.RawIOBase):
    """A read-only stream of the plaintext of an archive; every chunk is authenticated before it is returned."""

    def __init__(self, raw, key: bytes, name: str):
        super().__init__()
        self._raw, self.name = raw, name
        magic = raw.read(len(MAGIC))
        if magic != MAGIC:
            raise StoreError(f"{name}: not an Anning backup archive (bad magic bytes)")
        (n,) = struct.unpack(">I", raw.read(4).rjust(4, b"\xff"))
        body = raw.read(n) if n <= _MAX_HEADER else b""
        try:
            meta = json.loads(body)
            salt = bytes.fromhex(meta["salt"])
            chunk = int(meta["chunk_bytes"])
            ok = ((meta["format"], meta["version"], meta["cipher"]) == ("anning-backup", 1, "AES-256-GCM")
                  and meta.get("compression", "none") in ("gzip", "none"))
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{name}: the archive header is damaged (tampered with or corrupt)") from None
        if not ok or not 4096 <= chunk <= 1 << 26 or len(salt) != 16:
            raise StoreError(f"{name}: unsupported archive format {meta.get('format')!r} v{meta.get('version')!r}")
        if not hmac.compare_digest(str(meta.get("key_id", "")), key_id(key)):
            raise StoreError(f"{name}: wrong key: the backup was made with key {meta.get('key_id')}, the key file "
                             f"holds key {key_id(key)}")
        self._header = MAGIC + struct.pack(">I", n) + body
        self.compression: str = meta.get("compression", "none")
        self._chunk = chunk
        self._aead = AESGCM(_file_key(key, salt))
        self._index = 0
        self._done = False
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def chunks(self) -> Iterator[bytes]:
        """The remaining plaintext, chunk by chunk (each authenticated)."""
        if self._pending:
            yield bytes(self._pending)
            self._pending = memoryview(b"")
        while not self._done:
            yield self._open_next()

    def readinto(self, b) -> int:
        while not self._pending and not self._done:
            self._pending = memoryview(self._open_next())
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _open_next(self) -> bytes:
        want = self._chunk + _TAG
        block = self._raw.read(want)
        while block and len(block) < want:  # a short read before the end of the file
            more = self._raw.read(want - len(block))
            if not more:
                break
            block += more
        if not block:
            raise StoreError(f"{self.name}: the archive is truncated (no final chunk): tampered with or incomplete")
        final = len(block) < want
        try:
            data = self._aead.decrypt(_nonce(self._index), block, _aad(self._header, self._index, final))
        except (InvalidTag, ValueError):
            raise StoreError(f"{self.name}: chunk {self._index} fails authentication: the archive was tampered "
                             "with or is corrupt") from None
        if final:
            if self._raw.read(1):
                raise StoreError(f"{self.name}: bytes after the final chunk: the archive was tampered with")
            self._done = True
        self._index += 1
        return data


# ------------------------------------------------------------------------------------------------ checksums
def _norm(v: Any) -> str:
    """One value as text, the same for the same logical value on SQLite and PostgreSQL."""
    if v is None:
        return "~"
    t = type(v)
    if t is bool:
        return "T" if v else "F"
    if t is int:
        return str(v)
    if t is float:
        return repr(v)
    if t is str:
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dt.datetime):
        return (v.astimezone(dt.UTC) if v.tzinfo is not None else v).isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    if isinstance(v, Decimal):
        return str(v.normalize())
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "x" + bytes(v).hex()
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(v))
    return json.dumps(str(v), ensure_ascii=False)


def _checksum_tables(conn: Connection) -> list[sa.Table]:
    """The store's tables (the models of :mod:`anning_lib.store.schema`) when the database is at the head revision,
    else the tables reflected from the database (then checksums compare only within one database kind)."""
    from alembic.runtime.migration import MigrationContext

    from anning_lib.store.engine import head_revision
    from anning_lib.store.schema import TABLES

    if MigrationContext.configure(conn).get_current_revision() == head_revision():
        return [TABLES[name] for name in sorted(TABLES)]
    md = sa.MetaData()
    md.reflect(conn)
    return [md.tables[name] for name in sorted(md.tables) if name != "alembic_version"]


def _table_sum(conn: Connection, table: sa.Table) -> dict[str, Any]:
    pg = conn.dialect.name == "postgresql"
    cols = list(table.primary_key.columns) or list(table.columns)
    order = [c.collate("C") if pg and isinstance(c.type, sa.String) else c for c in cols]
    h = hashlib.sha256()
    n = 0
    result = conn.execute(sa.select(*table.columns).order_by(*order),  # options for this statement only
                          execution_options={"stream_results": True, "yield_per": 5000})
    norm = _norm
    for part in result.partitions():
        h.update("".join("\t".join([norm(v) for v in row]) + "\n" for row in part).encode())
        n += len(part)
    return {"rows": n, "sha256": h.hexdigest()}


def table_checksums(bind: Engine | Connection) -> dict[str, dict[str, Any]]:
    """Row count and content checksum of every table of the store, ``{table: {"rows": n, "sha256": hex}}``.

    The checksum is the SHA-256 of one line per row, rows ordered by primary key (text keys by code point, the
    same order on SQLite and PostgreSQL), each value normalised: NULL, booleans, integers, floats (shortest
    round-trip repr), text (JSON-quoted), instants (UTC ISO 8601, read through the store's own column types, so a
    SQLite millisecond integer and a PostgreSQL ``timestamptz`` compare equal) and JSON documents (canonical, keys
    sorted). The same data gives the same checksum in the original database and in its restored copy.

    With an engine, every table is read in one transaction (``REPEATABLE READ`` on PostgreSQL: one snapshot).
    """
    if isinstance(bind, Connection):
        return {t.name: _table_sum(bind, t) for t in _checksum_tables(bind)}
    with bind.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            return {t.name: _table_sum(conn, t) for t in _checksum_tables(conn)}


def compare_tables(expected: dict[str, dict], actual: dict[str, dict]) -> list[dict[str, Any]]:
    """Row counts and checksums side by side, one dict per table of either side, with ``ok``."""
    rows = []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name) or {}, actual.get(name) or {}
        rows.append({"table": name, "rows_expected": e.get("rows"), "rows_actual": a.get("rows"),
                     "sha256_expected": e.get("sha256"), "sha256_actual": a.get("sha256"),
                     "ok": bool(e) and bool(a) and e.get("rows") == a.get("rows") and e.get("sha256") == a.get("sha256")})
    return rows


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
def _sqlite_path(url: URL, field_name: str) -> Path:
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


def _dump_sqlite(engine: Engine, dest_dir: Path) -> dict[str, Any]:
    from anning_lib.store.engine import current_revision

    src = _sqlite_path(engine.url, "database_url")
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


def _dump_postgres(engine: Engine, dest_dir: Path) -> dict[str, Any]:
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


# ------------------------------------------------------------------------------------------------ files
def backup_files(settings: Settings | None = None) -> list[tuple[str, Path]]:
    """The configuration and report files a backup holds, as ``(name in the archive, path)``.

    ``config/anning.toml`` (the file ``ANNING_CONFIG`` names, when present), ``config/data/{park,tariffs,alarms}/``,
    the park file when it lies elsewhere (``config/park/<name>``), ``config/ingest/*.yaml`` (point maps) and
    ``reports/`` (everything under ``<var_dir>/reports``). Hidden files are left out.
    """
    if settings is None:
        from anning_lib.config import get_settings

        settings = get_settings()
    out: list[tuple[str, Path]] = []

    def tree(root: Path, prefix: str) -> None:
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root)
                if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                    out.append((f"{prefix}/{rel.as_posix()}", p))

    toml = Path(os.environ.get("ANNING_CONFIG", "anning.toml"))
    if toml.is_file():
        out.append(("config/anning.toml", toml))
    data_dir = Path(settings.data_dir)
    for sub in ("park", "tariffs", "alarms"):
        tree(data_dir / sub, f"config/data/{sub}")
    park = Path(settings.park_path)
    if park.is_file() and not park.resolve().is_relative_to((data_dir / "park").resolve()):
        out.append((f"config/park/{park.name}", park))
    ingest = Path(settings.ingest_dir)
    if ingest.is_dir():
        for p in sorted([*ingest.glob("*.yaml"), *ingest.glob("*.yml")]):
            if p.is_file():
                out.append((f"config/ingest/{p.name}", p))
    tree(Path(settings.var_dir) / "reports", "reports")
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _safe_member(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and p.as_posix() == name


# ------------------------------------------------------------------------------------------------ listing, rotation
@dataclass(frozen=True)
class BackupFile:
    """A backup in the backup folder (its time from its name)."""

    path: Path
    created_at: dt.datetime
    size_bytes: int


def _sort_key(path: Path) -> tuple[str, int]:
    m = NAME_RE.match(path.name)
    assert m is not None
    return m.group(1), int(m.group(2) or 1)


def list_backups(directory: Path | str) -> list[BackupFile]:
    """The backups in ``directory``, oldest first (only files named ``anning-<UTC timestamp>[-n].tar.enc``)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    paths = sorted((p for p in directory.iterdir() if p.is_file() and NAME_RE.match(p.name)), key=_sort_key)
    return [BackupFile(p, dt.datetime.strptime(_sort_key(p)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC),
                       p.stat().st_size) for p in paths]


def rotate(directory: Path | str, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups of ``directory``; returns the deleted paths.

    Only backup files (:data:`NAME_RE`) are ever deleted; anything else in the folder is left alone.
    """
    if keep < 1:
        raise ConfigError(f"{ENV_KEEP}: must keep at least 1 backup, got {keep}")
    old = [b.path for b in list_backups(directory)][:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def _backup_name(directory: Path, now: dt.datetime) -> str:
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name, n = f"anning-{stamp}.tar.enc", 1
    while (directory / name).exists():
        n += 1
        name = f"anning-{stamp}-{n}.tar.enc"
    return name


# ------------------------------------------------------------------------------------------------ create
@dataclass
class BackupResult:
    """A backup just written, its manifest and the old backups the rotation deleted."""

    path: Path
    manifest: dict[str, Any]
    removed: list[Path] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def _utc_iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def create_backup(engine: Engine, key: bytes, out_dir: Path | str, *, keep: int | None = None,
                  files: list[tuple[str, Path]] | None = None, settings: Settings | None = None,
                  now: dt.datetime | None = None) -> BackupResult:
    """Write one encrypted backup of the database, the configuration and the reports into ``out_dir``.

    Parameters
    ----------
    engine : Engine
        The store (SQLite file or PostgreSQL).
    key : bytes
        The 32-byte key (:func:`load_key`).
    out_dir : Path
        The backup folder (created with mode 0700 if missing).
    keep : int, optional
        After a successful backup, keep only the newest ``keep`` backups of ``out_dir`` (:func:`rotate`).
    files : list of (str, Path), optional
        The files besides the database; default :func:`backup_files` of ``settings``.
    now : datetime, optional
        The backup's time (its name and ``created_at``); default now.

    Returns
    -------
    BackupResult
    """
    if len(key) != KEY_BYTES:
        raise ConfigError(f"key: must be {KEY_BYTES} bytes, got {len(key)}")
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    files = backup_files(settings) if files is None else files
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="anning-backup-") as tmp:
        stage = Path(tmp)
        (stage / "db").mkdir()
        kind = engine.dialect.name
        if kind == "sqlite":
            db = _dump_sqlite(engine, stage / "db")
        elif kind == "postgresql":
            db = _dump_postgres(engine, stage / "db")
        else:
            raise StoreError(f"database_url: cannot back up a {kind} database")
        members: list[tuple[str, Path, Path | None]] = [(db["member"], stage / db["member"], None)]
        seen = {db["member"]}
        for arcname, src in files:  # staged copies: the archive holds exactly what the manifest hashes
            if not _safe_member(arcname) or arcname in seen or arcname == "manifest.json":
                raise StoreError(f"files: bad or duplicate archive name {arcname!r}")
            seen.add(arcname)
            staged = stage / "files" / arcname
            staged.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, staged)
            members.append((arcname, staged, Path(src)))
        from anning_lib import __version__
        from anning_lib.store.engine import head_revision

        manifest = {
            "format": MANIFEST_FORMAT,
            "created_at": _utc_iso(now),
            "anning_version": __version__,
            "db": {"kind": db["kind"], "revision": db["revision"], "head_revision": head_revision(),
                   "server_version": db["server_version"], "member": db["member"],
                   "url": engine.url.render_as_string(hide_password=True)},
            "checksum_method": CHECKSUM_METHOD,
            "tables": db["tables"],
            "files": [{"path": a, "size": p.stat().st_size, "sha256": _sha256_file(p),
                       "source": str(src) if src is not None else None} for a, p, src in members],
        }
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        final = out_dir / _backup_name(out_dir, now)
        part = out_dir / f".{final.name}.part"
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as raw:
                writer = _EncryptingWriter(raw, key, compression="gzip")
                mtime = int(now.timestamp())
                with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=GZIP_LEVEL, mtime=mtime) as gz, \
                        tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
                    body = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
                    tar.addfile(_tarinfo("manifest.json", len(body), mtime), io.BytesIO(body))
                    for arcname, path, _src in members:
                        with open(path, "rb") as f:
                            tar.addfile(_tarinfo(arcname, path.stat().st_size, mtime), f)
                writer.finish()
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    _fsync_dir(out_dir)
    removed = rotate(out_dir, keep) if keep is not None else []
    return BackupResult(final, manifest, removed)


def _tarinfo(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid = size, mtime, 0o600, 0, 0
    return ti


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------ open
@dataclass
class OpenedBackup:
    """A backup decrypted and checked into a private temporary folder (removed when the ``with`` ends)."""

    path: Path
    manifest: dict[str, Any]
    root: Path

    def member(self, name: str) -> Path:
        return self.root / name

    @property
    def db_file(self) -> Path:
        return self.member(self.manifest["db"]["member"])


def _check_manifest(m: Any, name: str) -> dict[str, Any]:
    try:
        ok = (m["format"] == MANIFEST_FORMAT and m["db"]["kind"] in ("sqlite", "postgresql")
              and isinstance(m["tables"], dict) and isinstance(m["files"], list)
              and all(_safe_member(f["path"]) for f in m["files"]) and m["db"]["member"] in {f["path"] for f in m["files"]})
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise StoreError(f"{name}: the manifest is not one of an Anning backup ({MANIFEST_FORMAT})")
    return m


@contextlib.contextmanager
def open_backup(path: Path | str, key: bytes) -> Iterator[OpenedBackup]:
    """Decrypt ``path``, authenticate every chunk and check every member against the manifest (name, size,
    SHA-256; no member missing or added), into a private temporary folder removed afterwards.

    Raises
    ------
    StoreError
        naming the file: not a backup, wrong key, tampered with, truncated, or a member that disagrees with the
        manifest. Nothing is left on disk then.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise StoreError(f"backup: no file {path}")
    with open(path, "rb") as raw:
        reader = _DecryptingReader(raw, key, name)  # wrong key: refused before anything is written
        with tempfile.TemporaryDirectory(prefix="anning-restore-") as tmp:
            root = Path(tmp)
            plain = root / ".archive.tar"
            with open(plain, "wb") as out:
                for data in _plaintext(reader):
                    out.write(data)
            try:
                manifest = _extract(plain, root / "files", name)
            finally:
                plain.unlink(missing_ok=True)
            yield OpenedBackup(path, manifest, root / "files")


def _extract(plain: Path, dest: Path, name: str) -> dict[str, Any]:
    try:
        tar = tarfile.open(plain, mode="r:", encoding="utf-8")
    except tarfile.TarError as err:
        raise StoreError(f"{name}: the archive inside is damaged: {err}") from None
    with tar:
        members = tar.getmembers()
        if not members or members[0].name != "manifest.json" or not members[0].isfile():
            raise StoreError(f"{name}: the archive does not start with its manifest")
        try:
            manifest = _check_manifest(json.loads(tar.extractfile(members[0]).read()), name)
        except ValueError:
            raise StoreError(f"{name}: the manifest is not valid JSON") from None
        listed = {f["path"]: f for f in manifest["files"]}
        seen: set[str] = set()
        for m in members[1:]:
            if not m.isfile() or not _safe_member(m.name) or m.name not in listed or m.name in seen:
                raise StoreError(f"{name}: member {m.name!r} is not in the manifest")
            seen.add(m.name)
            target = dest / m.name
            target.parent.mkdir(parents=True, exist_ok=True)
            h, size = hashlib.sha256(), 0
            src = tar.extractfile(m)
            with open(target, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    size += len(block)
                    out.write(block)
            want = listed[m.name]
            if size != want["size"] or h.hexdigest() != want["sha256"]:
                raise StoreError(f"{name}: member {m.name!r} does not match its SHA-256 in the manifest")
        missing = sorted(set(listed) - seen)
        if missing:
            raise StoreError(f"{name}: member {missing[0]!r} of the manifest is missing from the archive")
    return manifest


def read_manifest(path: Path | str, key: bytes) -> dict[str, Any]:
    """The manifest of a backup, decrypting only the first chunk(s) (the rest of the archive is not checked:
    use :func:`verify_backup` for that)."""
    path = Path(path)
    with open(path, "rb") as raw:
        reader = _DecryptingReader(raw, key, path.name)
        try:
            stream = io.BufferedReader(reader)
            if reader.compression == "gzip":
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8") as tar:
                first = tar.next()
                if first is None or first.name != "manifest.json":
                    raise StoreError(f"{path.name}: the archive does not start with its manifest")
                return _check_manifest(json.loads(tar.extractfile(first).read()), path.name)
        except (tarfile.TarError, ValueError, OSError, EOFError):
            raise StoreError(f"{path.name}: the manifest cannot be read: the archive is damaged") from None


# ------------------------------------------------------------------------------------------------ restore
@dataclass
class RestoreResult:
    """What :func:`restore_backup` did; ``tables`` compares the restored database with the manifest."""

    path: Path
    url: str
    manifest: dict[str, Any]
    revision: str | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)
    extracted: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.tables) and self.revision == self.manifest["db"]["revision"]


def _target_kind(url: URL, manifest: dict[str, Any]) -> str:
    kind = manifest["db"]["kind"]
    if url.get_backend_name() != kind:
        raise StoreError(f"--to: the backup holds a {kind} database; "
                         f"{url.render_as_string(hide_password=True)} is {url.get_backend_name()}")
    return kind


def _restore_sqlite(src: Path, target: Path, force: bool) -> None:
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


def _restore_postgres(dump: Path, url: URL, force: bool) -> None:
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


def _restore_db(opened: OpenedBackup, url: URL, force: bool) -> None:
    if _target_kind(url, opened.manifest) == "sqlite":
        _restore_sqlite(opened.db_file, _sqlite_path(url, "--to"), force)
    else:
        _restore_postgres(opened.db_file, url, force)


def _measure(url: URL) -> tuple[str | None, dict[str, dict[str, Any]]]:
    from anning_lib.store.engine import current_revision

    eng = (_sqlite_engine(_sqlite_path(url, "--to")) if url.get_backend_name() == "sqlite"
           else sa.create_engine(url, poolclass=NullPool))
    try:
        return current_revision(eng), table_checksums(eng)
    finally:
        eng.dispose()


def restore_backup(path: Path | str, to_url: str | URL, key: bytes, *, force: bool = False,
                   extract_dir: Path | str | None = None, check: bool = True) -> RestoreResult:
    """Restore the database of backup ``path`` into ``to_url`` (an empty or new database of the backup's kind).

    SQLite: the file is written with the online backup API. PostgreSQL: the database is created when missing, then
    ``pg_restore --clean --if-exists --no-owner --single-transaction --exit-on-error`` (all or nothing).

    Parameters
    ----------
    force : bool
        Overwrite a target that already holds tables (SQLite: its whole content; PostgreSQL: the objects of the
        dump are dropped and recreated, other objects stay).
    extract_dir : Path, optional
        Also write the backup's configuration and reports (``config/…``, ``reports/…``) into this folder, which
        must be empty or new. The live configuration is never overwritten: copy back what you need.
    check : bool
        Compare the restored database's row counts and checksums with the manifest (:attr:`RestoreResult.ok`).

    Raises
    ------
    StoreError, ConfigError
        wrong key, tampered archive, kind mismatch, non-empty target without ``force``, non-empty ``extract_dir``,
        failed restore. Everything before the restore proper is checked first: nothing is written then.
    """
    from anning_lib.store.engine import normalise_url

    url = normalise_url(to_url)
    extract = Path(extract_dir) if extract_dir is not None else None
    if extract is not None and extract.exists() and (not extract.is_dir() or any(extract.iterdir())):
        raise StoreError(f"--extract: {extract} exists and is not an empty folder")
    with open_backup(path, key) as opened:
        _target_kind(url, opened.manifest)
        _restore_db(opened, url, force)
        result = RestoreResult(Path(path), url.render_as_string(hide_password=True), opened.manifest)
        if extract is not None:
            for f in opened.manifest["files"]:
                if f["path"] != opened.manifest["db"]["member"]:
                    dst = extract / f["path"]
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(opened.member(f["path"]), dst)
                    result.extracted.append(dst)
    if check:
        result.revision, actual = _measure(url)
        result.tables = compare_tables(result.manifest["tables"], actual)
    return result


# ------------------------------------------------------------------------------------------------ verify
@dataclass
class VerifyResult:
    """A backup restored into a scratch database and compared with its manifest."""

    path: Path
    manifest: dict[str, Any]
    revision: str | None
    tables: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.tables) and self.revision == self.manifest["db"]["revision"]


def verify_backup(path: Path | str, key: bytes, *, server_url: str | URL | None = None) -> VerifyResult:
    """Restore backup ``path`` into a scratch database and compare row counts and checksums with its manifest.

    SQLite: a temporary file. PostgreSQL: a database ``anning_verify_<random>`` created on ``server_url``'s server
    (default: the settings' database URL), dropped afterwards.

    Raises
    ------
    StoreError
        wrong key, tampered archive (as :func:`open_backup`), no PostgreSQL server to verify on, failed restore.
    """
    from anning_lib.store.engine import normalise_url

    with open_backup(path, key) as opened:
        kind = opened.manifest["db"]["kind"]
        if kind == "sqlite":
            scratch = opened.root.parent / "verify.sqlite"
            _restore_sqlite(opened.db_file, scratch, force=False)
            revision, actual = _measure(URL.create("sqlite", database=str(scratch)))
        else:
            if server_url is None:
                from anning_lib.config import get_settings

                server_url = get_settings().database_url
            server = normalise_url(server_url)
            if server.get_backend_name() != "postgresql":
                raise StoreError("--server: a PostgreSQL backup is verified on a PostgreSQL server; give "
                                 "--server postgresql://... (default ANNING_DB_URL)")
            url = server.set(database=f"anning_verify_{uuid.uuid4().hex[:12]}")
            try:
                _restore_postgres(opened.db_file, url, force=False)
                revision, actual = _measure(url)
            finally:
                admin = _pg_admin_engine(server)
                try:
                    with admin.connect() as c:
                        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quote_ident(url.database)} WITH (FORCE)")
                finally:
                    admin.dispose()
        return VerifyResult(Path(path), opened.manifest, revision, compare_tables(opened.manifest["tables"], actual))
