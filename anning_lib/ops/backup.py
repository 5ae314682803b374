"""Encrypted, verifiable backups of the store, the configuration and the produced reports.

One backup is one file ``anning-<UTC timestamp>.tar.enc`` in the backup folder: a tar archive, encrypted, that
holds

* ``manifest.json`` (first member): when, which database (kind, schema revision), every table's row count and
  content checksum (:func:`~anning_lib.ops.checksums.table_checksums`), and every other member's size and SHA-256;
* ``db/anning.sqlite`` (SQLite, copied with the online backup API: a consistent snapshot while the gateway keeps
  writing) or ``db/anning.pgdump`` (PostgreSQL, ``pg_dump --format=custom`` on a snapshot exported by the same
  transaction that computes the manifest's checksums, so dump and checksums describe the same instant);
* ``config/``: ``anning.toml`` (when present), ``data/park``, ``data/tariffs``, ``data/alarms`` and the gateway's
  point maps (``ingest/*.yaml``);
* ``reports/``: the produced reports (``var/reports``).

The archive is encrypted with the key file's key (:mod:`anning_lib.ops.sealed`, which also describes the format).
Everything is decrypted and authenticated, and every member checked against the manifest, into a private
temporary folder before anything is restored: a wrong or missing key or a tampered archive raises one
:class:`~anning_lib.errors.StoreError` (or :class:`~anning_lib.errors.ConfigError` for the key file) and leaves
no file behind. The database copies are made and restored by :mod:`anning_lib.ops.dumps`.

Settings (read from the environment until they join :class:`anning_lib.config.Settings`)
--------------------------------------------------------------------------------------------
``ANNING_BACKUP_DIR`` (default ``<var_dir>/backups``), ``ANNING_BACKUP_KEY_FILE`` (default
``<var_dir>/backup.key``), ``ANNING_BACKUP_KEEP`` (default 14: the newest N backups are kept, older ones deleted
after each successful ``create``). See ``docs/backup.md``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Engine

from anning_lib.errors import ConfigError, StoreError
from anning_lib.ops.archive import (
    MANIFEST_FORMAT,
    OpenedBackup,
    open_backup,
    read_manifest,
    safe_member,
)
from anning_lib.ops.checksums import CHECKSUM_METHOD, compare_tables, table_checksums
from anning_lib.ops.dumps import (
    PG_MEMBER,
    SQLITE_MEMBER,
    drop_pg_database,
    dump_postgres,
    dump_sqlite,
    measure,
    pg_tool,
    restore_postgres,
    restore_sqlite,
    sqlite_path,
)
from anning_lib.ops.sealed import (
    CHUNK_BYTES,
    ENV_KEY_FILE,
    GZIP_LEVEL,
    KEY_BYTES,
    MAGIC,
    EncryptingWriter,
    generate_key,
    key_id,
    load_key,
)

if TYPE_CHECKING:
    from anning_lib.config import Settings

__all__ = [
    "CHECKSUM_METHOD", "CHUNK_BYTES", "DEFAULT_KEEP", "ENV_DIR", "ENV_KEEP", "ENV_KEY_FILE", "KEY_BYTES", "MAGIC",
    "MANIFEST_FORMAT", "NAME_RE", "PG_MEMBER", "SQLITE_MEMBER", "BackupFile", "BackupResult", "BackupSettings",
    "OpenedBackup", "RestoreResult", "VerifyResult", "backup_files", "backup_settings", "compare_tables",
    "create_backup", "generate_key", "key_id", "list_backups", "load_key", "open_backup", "pg_tool",
    "read_manifest", "restore_backup", "rotate", "table_checksums", "verify_backup",
]

# ------------------------------------------------------------------------------------------------ settings
ENV_DIR = "ANNING_BACKUP_DIR"
ENV_KEEP = "ANNING_BACKUP_KEEP"
DEFAULT_KEEP = 14
"""Backups kept by the rotation unless ``ANNING_BACKUP_KEEP`` says otherwise (two weeks of nightly backups)."""

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
            db = dump_sqlite(engine, stage / "db")
        elif kind == "postgresql":
            db = dump_postgres(engine, stage / "db")
        else:
            raise StoreError(f"database_url: cannot back up a {kind} database")
        members: list[tuple[str, Path, Path | None]] = [(db["member"], stage / db["member"], None)]
        seen = {db["member"]}
        for arcname, src in files:  # staged copies: the archive holds exactly what the manifest hashes
            if not safe_member(arcname) or arcname in seen or arcname == "manifest.json":
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
                writer = EncryptingWriter(raw, key, compression="gzip")
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


def _restore_db(opened: OpenedBackup, url: URL, force: bool) -> None:
    if _target_kind(url, opened.manifest) == "sqlite":
        restore_sqlite(opened.db_file, sqlite_path(url, "--to"), force)
    else:
        restore_postgres(opened.db_file, url, force)


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
        result.revision, actual = measure(url)
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
            restore_sqlite(opened.db_file, scratch, force=False)
            revision, actual = measure(URL.create("sqlite", database=str(scratch)))
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
                restore_postgres(opened.db_file, url, force=False)
                revision, actual = measure(url)
            finally:
                drop_pg_database(server, url.database)
        return VerifyResult(Path(path), opened.manifest, revision, compare_tables(opened.manifest["tables"], actual))
