"""The backup key and the chunked AES-256-GCM encryption of backup archives (:mod:`anning_lib.ops.backup`).

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
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import os
import secrets
import stat
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from anning_lib.errors import ConfigError, StoreError

ENV_KEY_FILE = "ANNING_BACKUP_KEY_FILE"
"""The environment variable naming the key file (see :func:`anning_lib.ops.backup.backup_settings`)."""

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


class EncryptingWriter(io.RawIOBase):
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


def plaintext(reader: DecryptingReader) -> Iterator[bytes]:
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


class DecryptingReader(io.RawIOBase):
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


