"""Replacing a reference file the admin page edits (a tariff, the park model's storage strategies) together with
its ``audit_log`` row: the new text goes to a scratch file in the same folder, the previous version is kept as
``<name>.bak``, and the file is replaced (``os.replace``, atomic on one file system) inside the audit row's
transaction, so neither lands without the other; if the audit row fails, the old file is put back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from sqlalchemy.engine import Engine

from anning_lib.auth.audit import audit


def sha256_of(data: bytes | None) -> str | None:
    """Hex sha256 of ``data`` (None for no file)."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def _write_temp(folder: Path, name: str, data: bytes, mode: int) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync_dir(folder: Path) -> None:
    """Flush the folder's entry of the replaced file to disk, where the file system can (some cannot sync a
    folder: then the rename stands as the system keeps it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:                                   # pragma: no cover - not on every platform
        return
    try:
        with contextlib.suppress(OSError):            # pragma: no cover - a folder that cannot be synced
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_audited(path: Path, new: bytes, *, engine: Engine, action: str, target: str, detail: dict,
                    user_id: int | None) -> str | None:
    """Write ``new`` to ``path`` with one audit row ``action`` on ``target`` (``detail`` plus ``sha256_old``,
    ``sha256_new`` and ``backup``); returns the backup's name (None for a new file). The caller has checked
    ``new``; an equal file is not rewritten (and not audited): then the answer is None too."""
    old = path.read_bytes() if path.is_file() else None
    if new == old:
        return None
    mode = stat.S_IMODE(path.stat().st_mode) if old is not None else 0o644
    backup = path.with_name(path.name + ".bak")
    tmp = _write_temp(path.parent, path.name, new, mode)
    replaced = False
    try:
        if old is not None:
            os.replace(_write_temp(path.parent, backup.name, old, mode), backup)
        with engine.begin() as conn:
            audit(conn, action, target, {**detail, "sha256_old": sha256_of(old), "sha256_new": sha256_of(new),
                                         "backup": backup.name if old is not None else None}, user_id)
            os.replace(tmp, path)
            replaced = True
    except BaseException:
        if replaced:                                   # the audit row did not commit: put the old file back
            if old is None:
                path.unlink(missing_ok=True)
            else:
                os.replace(_write_temp(path.parent, path.name, old, mode), path)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    return backup.name if old is not None else None
