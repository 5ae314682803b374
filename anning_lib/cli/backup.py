"""``anning backup``: encrypted backups of the store, the configuration and the reports; restore; verify; list; keygen.

The backup folder is ``ANNING_BACKUP_DIR`` (default ``var/backups``), the key ``ANNING_BACKUP_KEY_FILE`` (default
``var/backup.key``, made by ``anning backup keygen``, mode 0600), the rotation ``ANNING_BACKUP_KEEP`` (default 14);
see :mod:`anning_lib.ops.backup` and ``docs/backup.md``. A wrong or missing key, a tampered archive or a refused
target raises an :class:`~anning_lib.errors.AnningError`, which the ``anning`` entry point prints as one line
(exit status 2); ``verify`` exits 1 when the restored copy differs from the manifest. Results go to standard
output, progress to standard error. Registered as ``anning backup`` by :func:`register`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from anning_lib.config import get_settings
from anning_lib.errors import ConfigError

backup_app = typer.Typer(no_args_is_help=True,
                         help="Encrypted backups of the database, configuration and reports: create, restore, verify, "
                              "list, keygen.")

_KEY_HELP = "key file (default ANNING_BACKUP_KEY_FILE, var/backup.key)"
_DIR_HELP = "backup folder (default ANNING_BACKUP_DIR, var/backups)"


def _cfg(directory: Path | None = None, key_file: Path | None = None, keep: int | None = None):
    from anning_lib.ops.backup import BackupSettings, backup_settings

    base = backup_settings(get_settings())
    if keep is not None and keep < 1:
        raise ConfigError(f"--keep: must keep at least 1 backup, got {keep}")
    return BackupSettings(directory or base.dir, key_file or base.key_file, keep or base.keep)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _resolve(file: Path, directory: Path) -> Path:
    """``file`` as given, or the backup of that name in the backup folder."""
    if not file.exists() and not file.is_absolute() and (directory / file).is_file():
        return directory / file
    return file


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def _table(rows: list[dict]) -> str:
    lines = [f"{'table':<20} {'rows (manifest)':>15} {'rows (restored)':>15}  {'checksum':<9} status"]
    for r in rows:
        same = r["sha256_expected"] == r["sha256_actual"]
        lines.append(f"{r['table']:<20} {_n(r['rows_expected']):>15} {_n(r['rows_actual']):>15}  "
                     f"{'equal' if same else 'DIFFERS':<9} {'OK' if r['ok'] else 'FAIL'}")
    return "\n".join(lines)


def _n(v) -> str:
    return "-" if v is None else f"{v:,d}"


@backup_app.command("keygen")
def keygen_cmd(key_file: Path = typer.Option(None, "--key-file", help=_KEY_HELP),
               force: bool = typer.Option(False, "--force", help="replace an existing key (the backups made with it "
                                                                  "can then no longer be opened)")):
    """Make a new random backup key (AES-256) with mode 0600. Keep it apart from the backups, and a copy safe."""
    from anning_lib.ops.sealed import generate_key

    cfg = _cfg(key_file=key_file)
    kid = generate_key(cfg.key_file, force=force)
    typer.echo(f"key {kid} written to {cfg.key_file} (mode 0600): store a copy away from the backups; "
               "without it no backup can be restored")


@backup_app.command("create")
def create_cmd(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP),
               keep: int = typer.Option(None, "--keep", help="keep the newest N backups (default ANNING_BACKUP_KEEP, 14)"),
               key_file: Path = typer.Option(None, "--key-file", help=_KEY_HELP),
               as_json: bool = typer.Option(False, "--json", help="print the result as JSON")):
    """Back up the database (consistent while the gateway writes), configuration and reports, encrypted; rotate."""
    from anning_lib.ops.backup import create_backup
    from anning_lib.ops.sealed import load_key
    from anning_lib.store.engine import make_engine

    settings = get_settings()
    cfg = _cfg(directory, key_file, keep)
    key = load_key(cfg.key_file)  # before anything is dumped: a bad key writes nothing
    if cfg.key_file.resolve().is_relative_to(cfg.dir.resolve()):
        raise ConfigError(f"ANNING_BACKUP_KEY_FILE: {cfg.key_file} lies inside the backup folder {cfg.dir}; keep "
                          "the key apart from the backups")
    engine = make_engine(settings.database_url)
    try:
        _say(f"backing up {engine.url.render_as_string(hide_password=True)} ...")
        res = create_backup(engine, key, cfg.dir, keep=cfg.keep, settings=settings)
    finally:
        engine.dispose()
    m = res.manifest
    n_rows = sum(t["rows"] for t in m["tables"].values())
    if as_json:
        typer.echo(json.dumps({"path": str(res.path), "size_bytes": res.size_bytes, "created_at": m["created_at"],
                               "db": m["db"]["kind"], "revision": m["db"]["revision"], "tables": m["tables"],
                               "files": len(m["files"]), "removed": [str(p) for p in res.removed]}, indent=1))
        return
    typer.echo(f"backup {res.path} ({_mb(res.size_bytes)}): {m['db']['kind']} at revision {m['db']['revision']}, "
               f"{len(m['tables'])} tables, {n_rows:,d} rows, {len(m['files']) - 1} configuration/report files")
    for p in res.removed:
        typer.echo(f"removed old backup {p.name} (keeping the newest {cfg.keep})")


@backup_app.command("restore")
def restore_cmd(file: Path = typer.Argument(..., help="backup file (or its name in the backup folder)"),
                to: str = typer.Option(..., "--to", help="database URL to restore into: sqlite:///path or "
                                                         "postgresql://user@host:port/db (empty or new)"),
                force: bool = typer.Option(False, "--force", help="overwrite a database that already holds tables"),
                extract: Path = typer.Option(None, "--extract", help="also write the backup's configuration and "
                                                                     "reports into this empty folder"),
                key_file: Path = typer.Option(None, "--key-file", help=_KEY_HELP)):
    """Decrypt, check every file against the manifest, restore the database into --to, compare with the manifest."""
    from anning_lib.errors import StoreError
    from anning_lib.ops.backup import restore_backup
    from anning_lib.ops.sealed import load_key

    cfg = _cfg(key_file=key_file)
    key = load_key(cfg.key_file)
    path = _resolve(file, cfg.dir)
    _say(f"restoring {path} ...")
    res = restore_backup(path, to, key, force=force, extract_dir=extract)
    typer.echo(_table(res.tables))
    if res.extracted:
        typer.echo(f"configuration and reports: {len(res.extracted)} files under {extract}")
    if not res.ok:
        raise StoreError(f"--to: the restored database {res.url} differs from the backup's manifest (see the table)")
    n_rows = sum(r["rows_actual"] or 0 for r in res.tables)
    typer.echo(f"restored {res.manifest['db']['kind']} backup of {res.manifest['created_at']} into {res.url}: "
               f"revision {res.revision}, {len(res.tables)} tables, {n_rows:,d} rows, checksums equal")


@backup_app.command("verify")
def verify_cmd(file: Path = typer.Argument(..., help="backup file (or its name in the backup folder)"),
               server: str = typer.Option(None, "--server", help="PostgreSQL server for the scratch database of a "
                                                                 "PostgreSQL backup (default ANNING_DB_URL)"),
               key_file: Path = typer.Option(None, "--key-file", help=_KEY_HELP),
               as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON")):
    """Restore into a scratch database and compare row counts and checksums with the manifest (exit 0 if equal)."""
    from anning_lib.ops.backup import verify_backup
    from anning_lib.ops.sealed import load_key

    cfg = _cfg(key_file=key_file)
    key = load_key(cfg.key_file)
    path = _resolve(file, cfg.dir)
    _say(f"verifying {path} ...")
    res = verify_backup(path, key, server_url=server)
    m = res.manifest
    if as_json:
        typer.echo(json.dumps({"path": str(path), "ok": res.ok, "created_at": m["created_at"], "db": m["db"]["kind"],
                               "revision_expected": m["db"]["revision"], "revision_actual": res.revision,
                               "tables": res.tables}, indent=1))
    else:
        typer.echo(_table(res.tables))
        typer.echo(f"revision: manifest {m['db']['revision']}, restored {res.revision}")
        typer.echo(f"{path.name}: {'OK' if res.ok else 'FAILED'} ({m['db']['kind']} backup of {m['created_at']})")
    if not res.ok:
        raise typer.Exit(1)


@backup_app.command("list")
def list_cmd(directory: Path = typer.Option(None, "--dir", help=_DIR_HELP),
             key_file: Path = typer.Option(None, "--key-file", help=_KEY_HELP),
             as_json: bool = typer.Option(False, "--json", help="print the list as JSON")):
    """The backups, oldest first; with a usable key also what each holds (from its manifest, not verified)."""
    from anning_lib.errors import AnningError
    from anning_lib.ops.backup import list_backups, read_manifest
    from anning_lib.ops.sealed import load_key

    cfg = _cfg(directory, key_file)
    try:
        key = load_key(cfg.key_file)
    except ConfigError as err:
        key = None
        _say(f"no details: {err}")
    out = []
    for b in list_backups(cfg.dir):
        item = {"name": b.path.name, "created_at": b.created_at.isoformat(), "size_bytes": b.size_bytes}
        if key is not None:
            try:
                m = read_manifest(b.path, key)
                item.update(db=m["db"]["kind"], revision=m["db"]["revision"],
                            rows=sum(t["rows"] for t in m["tables"].values()), files=len(m["files"]))
            except AnningError as err:
                item["error"] = str(err)
        out.append(item)
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    if not out:
        typer.echo(f"no backups in {cfg.dir}")
    for it in out:
        detail = (f"  {it['db']} rev {it['revision']}, {it['rows']:,d} rows, {it['files']} files" if "db" in it
                  else f"  unreadable: {it['error']}" if "error" in it else "")
        typer.echo(f"{it['name']}  {_mb(it['size_bytes']):>10}{detail}")
    typer.echo(f"{len(out)} backup(s) in {cfg.dir} (keeping the newest {cfg.keep})")


def register(app: typer.Typer) -> None:
    """Add ``anning backup`` to the command line."""
    app.add_typer(backup_app, name="backup")
