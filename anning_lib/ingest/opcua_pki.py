"""Self-signed OPC UA application certificates for the demo: the simulator's server and the gateway client.

OPC UA secures a connection with *application instance certificates* (OPC 10000-4 §6.1): each application
holds an X.509 certificate whose SubjectAltName carries its application URI, and each side must trust the
other's certificate. For the demo both are self-signed and trusted directly (certificate pinning): the gateway
trusts ``opcua-server.der`` (``ingest/opcua.yaml``: ``server_certificate``) and the simulator trusts
``opcua-gateway.der``. In production the server's real certificate goes into the var dir instead and the
gateway's certificate is copied into the server's trust list.

Files in ``pki_dir`` (``$ANNING_VAR_DIR/pki``): ``opcua-server.der`` / ``opcua-server.pem`` (certificate,
private key) and ``opcua-gateway.der`` / ``opcua-gateway.pem``. Keys are written with mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

SERVER_URI = "urn:anning:sim:opcua-server"
GATEWAY_URI = "urn:anning:gateway"
VALID_DAYS = 3650  # a demo var dir may live for years; an expired certificate is regenerated anyway
_APPS = {
    # name: (application URI, common name, extended key usages)
    "opcua-server": (SERVER_URI, "Anning simulator OPC UA server",
                     [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    "opcua-gateway": (GATEWAY_URI, "Anning gateway", [ExtendedKeyUsageOID.CLIENT_AUTH]),
}


def ensure_opcua_pki(pki_dir: Path) -> dict[str, Path]:
    """Create the server and gateway certificates and keys in ``pki_dir`` unless they exist.

    Existing files are kept; a pair is (re)generated only when its certificate or key is missing, unreadable or
    expired. A lock file serialises concurrent callers (the simulator and the gateway starting together).

    Parameters
    ----------
    pki_dir : Path
        folder for the files (created, mode 0700).

    Returns
    -------
    dict of str to Path
        ``server_cert``, ``server_key``, ``gateway_cert``, ``gateway_key``.
    """
    pki_dir = Path(pki_dir)
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = {}
    with _locked(pki_dir / ".opcua-pki.lock"):
        for name, (uri, cn, usages) in _APPS.items():
            cert, key = pki_dir / f"{name}.der", pki_dir / f"{name}.pem"
            if not _pair_usable(cert, key):
                _write_pair(cert, key, uri, cn, usages)
            role = name.removeprefix("opcua-")
            out[f"{role}_cert"], out[f"{role}_key"] = cert, key
    return out


def _pair_usable(cert_path: Path, key_path: Path) -> bool:
    """True when both files exist, parse, and the certificate is within its validity period."""
    try:
        cert = x509.load_der_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except Exception:  # noqa: BLE001 - missing, unreadable or malformed: regenerate
        return False
    now = dt.datetime.now(dt.timezone.utc)
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def _write_pair(cert_path: Path, key_path: Path, uri: str, common_name: str, usages: list) -> None:
    """Generate an RSA 2048 key and a self-signed application certificate (SHA-256) and write both atomically."""
    from asyncua.crypto import cert_gen  # noqa: PLC0415  (asyncua is heavy; import only when generating)

    key = cert_gen.generate_private_key()
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    host = socket.gethostname()
    if host and host != "localhost":
        names.append(x509.DNSName(host))  # asyncua warns when the host name is missing from the SAN
    cert = cert_gen.generate_self_signed_app_certificate(
        key, common_name, {"organizationName": "Anning industrial park"}, names, extended=usages, days=VALID_DAYS)
    _atomic_write(key_path, cert_gen.dump_private_key_as_pem(key), mode=0o600)
    _atomic_write(cert_path, cert.public_bytes(serialization.Encoding.DER), mode=0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed, never widened, but be explicit
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(lock_path: Path):
    """An exclusive advisory lock on ``lock_path`` (no-op where fcntl is unavailable)."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
