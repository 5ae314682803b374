"""Opening a backup archive (:mod:`anning_lib.ops.backup`): decrypt, authenticate, check every member against the
manifest, into a private temporary folder; or read only its manifest.

Nothing here writes outside that folder, and any disagreement (wrong key, tampering, truncation, a member missing,
added or changed) raises one :class:`~anning_lib.errors.StoreError` naming the file before anything is restored.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from anning_lib.errors import StoreError
from anning_lib.ops.sealed import DecryptingReader, plaintext

MANIFEST_FORMAT = "anning-backup/1"


def safe_member(name: str) -> bool:
    p = PurePosixPath(name)
    return bool(name) and not p.is_absolute() and ".." not in p.parts and "\\" not in name and p.as_posix() == name


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
              and all(safe_member(f["path"]) for f in m["files"]) and m["db"]["member"] in {f["path"] for f in m["files"]})
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
        reader = DecryptingReader(raw, key, name)  # wrong key: refused before anything is written
        with tempfile.TemporaryDirectory(prefix="anning-restore-") as tmp:
            root = Path(tmp)
            plain = root / ".archive.tar"
            with open(plain, "wb") as out:
                for data in plaintext(reader):
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
            if not m.isfile() or not safe_member(m.name) or m.name not in listed or m.name in seen:
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
        reader = DecryptingReader(raw, key, path.name)
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
