"""Deployment on the park's Debian server (issue 12), each piece exercised for real, no mocks:

* ``deploy/install.sh`` staged with ``--root`` into a temporary folder: the files land where docs/deploy.md says,
  with the documented modes, generated secrets, and a second run changes nothing;
* the systemd units: ``systemd-analyze verify`` on the staged units (systemd 252 runs it without a running
  manager), the keys the issue asks for, every command they start accepted by the real ``anning`` command, the
  timer's schedule computed by ``systemd-analyze calendar``, and the nightly backup script run for real;
* nginx (Debian's, ``make system-deps``) with ``deploy/nginx/anning.conf`` rendered onto free ports and a
  certificate made here, in front of a real portal (``anning serve`` with ``ANNING_PORTAL_BEHIND_PROXY=1``):
  HTTP -> HTTPS 301, HSTS, the portal's headers, a Secure session cookie, the browser's address seen by the
  portal, and headless Chromium logging in and drawing a page over the proxied web socket;
* the PostgreSQL roles of ``deploy/postgres/`` on a fresh database, migrated by the owner: what the gateway and
  the portal do, done by the library under their roles, and what they must not do, refused by the server.

Expected values come from the issue and the documents (status codes, header names and values, paths, modes),
not from running the code.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.client
import http.cookies
import itertools
import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import REPO, free_port, pg_url_or_skip

DEPLOY = REPO / "deploy"
ANNING = REPO / ".venv" / "bin" / "anning"
UNITS = ("anning-portal.service", "anning-ingest.service", "anning-sim.service", "anning-backup.service",
         "anning-backup.timer")
SERVICES = [u for u in UNITS if u.endswith(".service")]
LONG_RUNNING = ("anning-portal.service", "anning-ingest.service", "anning-sim.service")
SERVER_NAME = "anning.test.local"
# the database role each unit's processes use (issue 12: "which DB URL each systemd unit uses")
DB_ENV = {"anning-portal.service": "/etc/anning/db-portal.env", "anning-ingest.service": "/etc/anning/db-ingest.env",
          "anning-sim.service": "/etc/anning/db-owner.env", "anning-backup.service": "/etc/anning/db-owner.env"}
HSTS = "max-age=31536000"                 # one year: the portal's value (docs/portal.md, "Hardening")
PORTAL_HEADERS = {"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff",
                  "Referrer-Policy": "same-origin"}


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Run a command (paths allowed), capturing its text output; never raises on a non-zero status."""
    return subprocess.run([str(c) for c in cmd], check=False, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)


def parse_env(text: str) -> dict[str, str]:
    """``KEY=value`` lines as systemd's ``EnvironmentFile=`` reads them (comments, blank lines, double quotes)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        out[key.strip()] = value
    return out


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file: section -> key -> every value given (``EnvironmentFile=`` and friends may repeat)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


# ================================================================================================ install.sh
@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """A copy of the repository as a release tarball holds it (the checkout may change while the tests run)."""
    out = tmp_path_factory.mktemp("release") / "anning"
    shutil.copytree(REPO, out, ignore=shutil.ignore_patterns(".git", ".venv", "var", "test-artifacts", "__pycache__",
                                                              ".pytest_cache", ".ruff_cache", "*.egg-info"))
    return out


def install(release: Path, root: Path, *args: str) -> subprocess.CompletedProcess:
    res = run(["bash", release / "deploy/install.sh", "--root", root, "--no-venv", *args])
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root``: kind, mode, and for files size, SHA-256 and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, hashlib.sha256(p.read_bytes()).hexdigest(),
                        st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def staged(release, tmp_path_factory) -> Path:
    """``install.sh --root`` once into a fresh folder (the virtualenv is not built in staging: it takes minutes)."""
    root = tmp_path_factory.mktemp("stage")
    install(release, root, "--server-name", SERVER_NAME)
    return root


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_install_stages_every_file_where_the_deployment_guide_says(release, staged):
    r = staged
    # secrets and database URLs: root only (0600), as the issue asks for anning.env
    for name in ("anning.env", "db-owner.env", "db-ingest.env", "db-portal.env"):
        assert mode(r / "etc/anning" / name) == 0o600, name
    assert mode(r / "etc/anning") == 0o750
    for unit in UNITS:
        assert (r / "etc/systemd/system" / unit).read_text() == (DEPLOY / "systemd" / unit).read_text()
    site = r / "etc/nginx/sites-available/anning.conf"
    assert f"server_name {SERVER_NAME};" in site.read_text() and "anning.park.local" not in site.read_text()
    assert os.readlink(r / "etc/nginx/sites-enabled/anning.conf") == "../sites-available/anning.conf"
    assert mode(r / "usr/local/sbin/anning-admin") == 0o755
    # the code (no virtualenv, checkout metadata or runtime files of the release's folder)
    for rel in ("anning_lib/__init__.py", "dashboards/alarms.py", "requirements.lock", "pyproject.toml",
                "deploy/postgres/roles.sql", "deploy/postgres/grants.sql", "reports"):
        assert (r / "opt/anning" / rel).exists(), rel
    assert os.access(r / "opt/anning/deploy/bin/anning-backup-nightly", os.X_OK)
    for rel in (".git", ".venv", "var"):
        assert not (r / "opt/anning" / rel).exists(), rel
    # runtime: the var dir with the reference data the portal may edit; backups apart, owner only
    assert mode(r / "var/lib/anning") == 0o750 and mode(r / "var/backups/anning") == 0o700
    assert (r / "var/lib/anning/data/park/anning.yaml").read_bytes() == (release / "data/park/anning.yaml").read_bytes()
    for name in ("modbus.yaml", "opcua.yaml", "mqtt.yaml"):
        assert (r / "etc/anning/ingest" / name).read_bytes() == (release / "ingest" / name).read_bytes()
    # what the services read: the paths above, the portal behind the proxy for this host name, a real secret
    env = parse_env((r / "etc/anning/anning.env").read_text())
    assert env["ANNING_VAR_DIR"] == "/var/lib/anning" and env["ANNING_DATA_DIR"] == "/var/lib/anning/data"
    assert env["ANNING_INGEST_DIR"] == "/etc/anning/ingest" and env["ANNING_BACKUP_DIR"] == "/var/backups/anning"
    assert env["ANNING_PORTAL_ADDRESS"] == "127.0.0.1" and env["ANNING_PORTAL_BEHIND_PROXY"] == "1"
    assert env["ANNING_PORTAL_ORIGINS"] == SERVER_NAME
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", env["ANNING_PORTAL_COOKIE_SECRET"])      # >= 256 random bits
    # TLS placeholder: a certificate for the name, with its key (0600)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate((r / "etc/anning/tls/anning.crt").read_bytes())
    key = serialization.load_pem_private_key((r / "etc/anning/tls/anning.key").read_bytes(), None)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [SERVER_NAME]
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert mode(r / "etc/anning/tls/anning.key") == 0o600


def test_install_twice_changes_nothing_and_secrets_are_generated(release, staged, tmp_path):
    before = snapshot(staged)
    install(release, staged)                          # again, without the name: it keeps the installed one
    install(release, staged, "--server-name", SERVER_NAME)
    assert snapshot(staged) == before
    other = tmp_path / "other"
    install(release, other, "--server-name", SERVER_NAME)
    secret = "ANNING_PORTAL_COOKIE_SECRET"
    assert parse_env((other / "etc/anning/anning.env").read_text())[secret] != \
        parse_env((staged / "etc/anning/anning.env").read_text())[secret]
    assert (other / "etc/anning/tls/anning.key").read_bytes() != (staged / "etc/anning/tls/anning.key").read_bytes()


def test_install_with_postgres_writes_one_database_url_per_role(release, tmp_path):
    install(release, tmp_path, "--server-name", SERVER_NAME, "--with-postgres", "--pg-host", "db.park.local")
    urls = {role: parse_env((tmp_path / f"etc/anning/db-{role}.env").read_text())["ANNING_DB_URL"]
            for role in ("owner", "ingest", "portal")}
    for role, url in urls.items():
        u = sa.engine.make_url(url)
        assert (u.drivername, u.username, u.host, u.port, u.database) == \
            ("postgresql+psycopg", f"anning_{role}", "db.park.local", 5432, "anning")
        assert len(u.password) >= 43
    assert len({sa.engine.make_url(u).password for u in urls.values()}) == 3      # a password of its own each
    before = snapshot(tmp_path)
    install(release, tmp_path)                        # an upgrade: the URLs stay, passwords and all
    assert snapshot(tmp_path) == before


# ================================================================================================ systemd
@pytest.fixture(scope="module")
def systemd_root(staged, tmp_path_factory) -> Path:
    """A copy of the staged tree with what ``systemd-analyze verify --root`` looks for besides our units: the
    system's own units (targets the ours name) and the executables. The virtualenv is not built in staging, so
    the repository's own ``anning`` entry point is copied where the venv's would be."""
    root = tmp_path_factory.mktemp("systemd-root") / "root"
    shutil.copytree(staged, root, symlinks=True)
    shutil.copytree("/lib/systemd/system", root / "lib/systemd/system", symlinks=True)
    (root / "opt/anning/.venv/bin").mkdir(parents=True)
    shutil.copy2(ANNING, root / "opt/anning/.venv/bin/anning")
    return root


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze missing (Debian package systemd)")
    return path


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_accepts_the_unit(systemd_analyze, systemd_root, unit):
    res = run([systemd_analyze, "verify", f"--root={systemd_root}", f"/etc/systemd/system/{unit}"])
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr


def test_systemd_analyze_verify_catches_a_misspelt_key(systemd_analyze, systemd_root):
    """The check above has teeth: systemd's parser reports a key it does not know (and keeps going)."""
    bad = systemd_root / "etc/systemd/system/anning-typo.service"
    bad.write_text((DEPLOY / "systemd/anning-portal.service").read_text().replace("MemoryMax=", "MemoryMaxx="))
    res = run([systemd_analyze, "verify", f"--root={systemd_root}", "/etc/systemd/system/anning-typo.service"])
    assert "Unknown key 'MemoryMaxx'" in res.stdout + res.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_service_runs_as_anning_restricted_and_with_its_own_database_role(unit):
    u = read_unit(DEPLOY / "systemd" / unit)
    svc = u["Service"]
    assert svc["User"] == ["anning"]
    assert svc["EnvironmentFile"] == ["/etc/anning/anning.env", DB_ENV[unit]]      # the later file wins
    assert svc["NoNewPrivileges"] == ["yes"] and svc["ProtectSystem"] == ["strict"] and svc["PrivateTmp"] == ["yes"]
    writable = " ".join(svc["ReadWritePaths"]).split()
    assert "/var/lib/anning" in writable
    assert svc.get("MemoryMax") and (svc.get("CPUQuota") or svc.get("TasksMax"))
    if unit in LONG_RUNNING:
        assert svc["Restart"][0] in ("on-failure", "always") and svc.get("RestartSec")
        assert u["Install"]["WantedBy"] == ["multi-user.target"]
    else:                                             # the backup: a one-shot job started by its timer
        assert svc["Type"] == ["oneshot"] and "/var/backups/anning" in writable


@pytest.mark.parametrize("unit", SERVICES)
def test_every_command_a_unit_starts_exists_with_these_flags(unit):
    """``anning <subcommand> <flags> --help`` exits 0 only if every subcommand and flag exists (typer refuses an
    unknown option with status 2 even with --help); ``$VAR`` takes the installed anning.env's value."""
    env = parse_env((DEPLOY / "env/anning.env.in").read_text())
    lines = read_unit(DEPLOY / "systemd" / unit)["Service"]["ExecStart"]
    if unit == "anning-ingest.service":               # docs/deploy.md: --forecast --dispatch adds the MPC
        lines += [line.replace("$ANNING_INGEST_ARGS", "--forecast --dispatch") for line in lines]
    for line in lines:
        words = []
        for w in line.split():
            words += env.get(w[1:], "").split() if w.startswith("$") else [w]
        if words[0] == "/opt/anning/.venv/bin/anning":
            res = run([ANNING, *words[1:], "--help"], cwd=REPO)
            assert res.returncode == 0, (line, res.stderr)
        else:                                         # a script of the release: present and executable
            assert words[0].startswith("/opt/anning/")
            assert os.access(REPO / words[0].removeprefix("/opt/anning/"), os.X_OK), words[0]


def test_the_backup_timer_fires_every_day(systemd_analyze):
    timer = read_unit(DEPLOY / "systemd/anning-backup.timer")
    assert timer["Timer"]["Persistent"] == ["true"] and timer["Install"]["WantedBy"] == ["timers.target"]
    spec = timer["Timer"]["OnCalendar"][0]
    res = run([systemd_analyze, "calendar", "--iterations=3", spec], env=os.environ | {"TZ": "UTC"})
    assert res.returncode == 0, res.stderr
    stamps = [dt.datetime.strptime(" ".join(m.split()[1:3]), "%Y-%m-%d %H:%M:%S")
              for m in re.findall(r"(?:Next elapse|Iter\. #\d+): (\w+ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", res.stdout)]
    assert len(stamps) == 3 and {b - a for a, b in itertools.pairwise(stamps)} == {dt.timedelta(days=1)}


def test_nightly_backup_script_creates_verifies_and_rotates(tmp_path):
    """``anning-backup.service``'s command, run for real on a SQLite store: a backup, verified, and the rotation
    keeping ``ANNING_BACKUP_KEEP`` of them."""
    from anning_lib.park import load_park
    from anning_lib.store.engine import init_db, make_engine

    url = f"sqlite:///{tmp_path / 'var/anning.sqlite'}"
    engine = make_engine(url)
    init_db(engine, load_park())
    engine.dispose()
    env = os.environ | {"ANNING_VAR_DIR": str(tmp_path / "var"), "ANNING_DB_URL": url, "ANNING_BACKUP_KEEP": "1",
                        "ANNING_BACKUP_DIR": str(tmp_path / "backups"), "ANNING_BIN": str(ANNING)}
    assert run([ANNING, "backup", "keygen"], env=env, cwd=tmp_path).returncode == 0
    made = []
    for _ in range(2):
        res = run([DEPLOY / "bin/anning-backup-nightly"], env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr
        made.append(re.search(r"created (\S+\.tar\.enc)", res.stdout).group(1))
        assert f"{Path(made[-1]).name}: OK" in res.stdout
    assert [str(p) for p in (tmp_path / "backups").glob("anning-*.tar.enc")] == [made[-1]]   # the newest one kept


# ================================================================================================ portal settings
def test_the_portal_trusts_proxy_headers_only_when_told_and_only_on_loopback(monkeypatch):
    from anning_lib.errors import ConfigError
    from anning_lib.portal.server import behind_proxy, public_origins

    monkeypatch.delenv("ANNING_PORTAL_BEHIND_PROXY", raising=False)
    assert behind_proxy("127.0.0.1") is False                       # default: no proxy, headers ignored
    monkeypatch.setenv("ANNING_PORTAL_BEHIND_PROXY", "1")
    assert behind_proxy("127.0.0.1") is True and behind_proxy("::1") is True and behind_proxy("localhost") is True
    with pytest.raises(ConfigError, match=r"portal_address: '0\.0\.0\.0' is not loopback"):
        behind_proxy("0.0.0.0")                                     # anyone could forge X-Forwarded-Proto there
    with pytest.raises(ConfigError, match=r"portal_address: '10\.1\.2\.3' is not loopback"):
        behind_proxy("10.1.2.3")
    monkeypatch.setenv("ANNING_PORTAL_BEHIND_PROXY", "maybe")
    with pytest.raises(ConfigError, match="ANNING_PORTAL_BEHIND_PROXY: expected 1 or 0, got 'maybe'"):
        behind_proxy("127.0.0.1")
    monkeypatch.setenv("ANNING_PORTAL_ORIGINS", "anning.park.local, anning-b.park.local:8443")
    assert public_origins() == ["anning.park.local", "anning-b.park.local:8443"]
    assert public_origins(["x.park"]) == ["x.park"]


def test_anning_serve_refuses_proxy_trust_on_a_network_address(tmp_path):
    """The real command: one line naming the setting, exit status 2, before anything listens."""
    from anning_lib.ingest.pki import ensure_server_cert
    from anning_lib.store.engine import init_db, make_engine

    url = f"sqlite:///{tmp_path / 'anning.sqlite'}"
    engine = make_engine(url)
    init_db(engine)
    engine.dispose()
    crt, key = ensure_server_cert(tmp_path / "pki", "portal")
    env = os.environ | {"ANNING_DB_URL": url, "ANNING_VAR_DIR": str(tmp_path), "ANNING_PORTAL_BEHIND_PROXY": "1",
                        "ANNING_PORTAL_CERTFILE": str(crt), "ANNING_PORTAL_KEYFILE": str(key)}
    res = run([ANNING, "serve", "--address", "0.0.0.0", "--port", str(free_port())], env=env, cwd=tmp_path,
              timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("anning: error: portal_address: '0.0.0.0' is not loopback")


# ================================================================================================ nginx + portal
def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` (and 127.0.0.1) with its key, made with the ``cryptography`` package."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crt, pem = folder / "portal.crt", folder / "portal.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


def render_site(http_port: int, https_port: int, portal_port: int, crt: Path, key: Path) -> str:
    """deploy/nginx/anning.conf with the test's ports and certificate; nothing else changed."""
    text = (DEPLOY / "nginx/anning.conf").read_text()
    for old, new in {"listen 80;": f"listen 127.0.0.1:{http_port};", "listen [::]:80;": "",
                     "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
                     "listen [::]:443 ssl http2;": "",
                     "ssl_certificate     /etc/anning/tls/anning.crt;": f"ssl_certificate {crt};",
                     "ssl_certificate_key /etc/anning/tls/anning.key;": f"ssl_certificate_key {key};",
                     "server 127.0.0.1:5006;": f"server 127.0.0.1:{portal_port};"}.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def nginx_prefix(folder: Path, site: str) -> Path:
    """A main nginx.conf of our own (pid, logs, temp files in ``folder``) including the site as Debian does,
    inside ``http {}``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "site.conf").write_text(site)
    user = "user root;\n" if os.geteuid() == 0 else ""      # workers write proxy temp files under tmp_path
    temp = "".join(f"{k}_temp_path {folder / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = folder / "nginx.conf"
    conf.write_text(f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
                    f"events {{ worker_connections 256; }}\nhttp {{\naccess_log {folder / 'access.log'};\n{temp}"
                    f"include {folder / 'site.conf'};\n}}\n")
    return conf


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if path is None:
        if os.environ.get("ANNING_REQUIRE_BROWSER") == "1":
            pytest.fail("nginx missing (make system-deps installs the Debian package)")
        pytest.skip("nginx missing (Debian package nginx; make system-deps installs it)")
    return path


def test_nginx_accepts_the_site(nginx_bin, tmp_path):
    crt, key = self_signed(tmp_path)
    conf = nginx_prefix(tmp_path / "nginx", render_site(free_port(), free_port(), free_port(), crt, key))
    res = run([nginx_bin, "-t", "-p", tmp_path / "nginx", "-c", conf, "-e", tmp_path / "nginx/error.log"])
    assert res.returncode == 0, res.stderr
    assert "test is successful" in res.stderr


@pytest.fixture(scope="module")
def proxied(nginx_bin, tmp_path_factory):
    """A real portal (``anning serve``, 1 day of history) behind a real nginx running the shipped site."""
    from portal_harness import Portal, seed_store

    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium missing (Debian package chromium)")
    base = tmp_path_factory.mktemp("proxied")
    url = seed_store(base / "var", days=1, statements=False)
    http_port, https_port, portal_port = free_port(), free_port(), free_port()
    # as anning.env says on the server: behind the proxy, and the public name the browsers use
    portal = Portal(url, base / "var", portal_port, env={"ANNING_PORTAL_BEHIND_PROXY": "1",
                                                         "ANNING_PORTAL_ORIGINS": SERVER_NAME}).start()
    crt, key = self_signed(base)
    conf = nginx_prefix(base / "nginx", render_site(http_port, https_port, portal_port, crt, key))
    proc = subprocess.Popen([nginx_bin, "-p", str(base / "nginx"), "-c", str(conf), "-e",
                             str(base / "nginx/error.log"), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        t_end = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > t_end:
                    raise RuntimeError(f"nginx did not start: {proc.stderr.read().decode()}") from None
                time.sleep(0.1)
        yield {"portal": portal, "url": url, "http": http_port, "https": https_port, "crt": crt}
    finally:
        proc.terminate()
        proc.wait(10)
        portal.stop()


def https(p, method: str, path: str, *, body: str | None = None, headers: dict | None = None,
          source: str = "127.0.0.1") -> http.client.HTTPResponse:
    """One request to nginx's HTTPS port as a browser on ``source`` would make it (the test certificate trusted)."""
    ctx = ssl.create_default_context(cafile=str(p["crt"]))
    conn = http.client.HTTPSConnection("localhost", p["https"], context=ctx, timeout=30, source_address=(source, 0))
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_plain_http_is_redirected_permanently_to_https(proxied):
    conn = http.client.HTTPConnection("127.0.0.1", proxied["http"], timeout=30)
    conn.request("GET", "/overview?lang=en", headers={"Host": "localhost"})
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == "https://localhost/overview?lang=en"


def test_https_answers_carry_hsts_once_and_the_portals_security_headers(proxied):
    for path, want in (("/login", 200), ("/overview", 302), ("/no-such-page", 404)):
        resp = https(proxied, "GET", path)
        assert resp.status == want, path
        assert [v for k, v in resp.getheaders() if k.lower() == "strict-transport-security"] == [HSTS], path
        for name, value in PORTAL_HEADERS.items():
            assert resp.getheader(name) == value, (path, name)
        assert "default-src 'self'" in resp.getheader("Content-Security-Policy", ""), path
        assert resp.getheader("Server") == "nginx"                     # no version number given away


def cookies(resp: http.client.HTTPResponse) -> http.cookies.SimpleCookie:
    jar = http.cookies.SimpleCookie()
    for k, v in resp.getheaders():
        if k.lower() == "set-cookie":
            jar.load(v)
    return jar


def proxied_login(p, username: str = "operator", source: str = "127.0.0.1") -> http.client.HTTPResponse:
    """Log in through nginx with the form (its CSRF token and cookie) from ``source``; the POST's answer."""
    from portal_harness import USERS

    xsrf = cookies(https(p, "GET", "/login", source=source))["_xsrf"].value
    body = urllib.parse.urlencode({"username": username, "password": USERS[username][0], "_xsrf": xsrf})
    return https(p, "POST", "/login", body=body, source=source,
                 headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"_xsrf={xsrf}"})


def test_through_the_proxy_the_portal_sees_https_and_the_browsers_address(proxied):
    """The session cookie is Secure (the portal trusts the proxy's X-Forwarded-Proto), and the audit row of the
    log-in names the browser's address (X-Real-IP), not the proxy's: a browser on 127.0.0.2 here."""
    from anning_lib.auth.audit import read_audit
    from anning_lib.store.engine import make_engine

    resp = proxied_login(proxied, source="127.0.0.2")
    assert resp.status == 302
    session = cookies(resp)
    assert session["user"]["secure"] and session["user"]["httponly"]
    engine = make_engine(proxied["url"])
    login = read_audit(engine, action_prefix="login", target="user:operator")[0]
    engine.dispose()
    assert login["action"] == "login" and login["detail"]["source"] == "127.0.0.2"


def test_web_sockets_are_opened_from_the_public_name_only(proxied):
    """A web socket handshake through nginx, as a client without Sec-Fetch-Site headers makes it (older
    browsers, scripts): from the public name of ANNING_PORTAL_ORIGINS it is accepted (101 Switching Protocols),
    from another site refused (403), whatever the session cookie. (Current browsers also send Sec-Fetch-Site:
    same-origin, which Tornado accepts by itself; the browser test below is such a browser.)"""
    user = cookies(proxied_login(proxied))["user"].value
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Cookie": f"user={user}", "Host": SERVER_NAME}
    ok = https(proxied, "GET", "/alarms/ws", headers=upgrade | {"Origin": f"https://{SERVER_NAME}"})
    assert ok.status == 101
    evil = https(proxied, "GET", "/alarms/ws", headers=upgrade | {"Origin": "https://elsewhere.example"})
    assert evil.status == 403


def test_metrics_are_not_opened_to_the_network_by_the_proxy(proxied):
    """/metrics: loopback scrapers only (docs/operations.md); through nginx a request is an outside one."""
    assert https(proxied, "GET", "/metrics").status == 403
    conn = http.client.HTTPConnection("127.0.0.1", proxied["portal"].port, timeout=30)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 200


def test_a_browser_logs_in_through_the_proxy_and_the_page_draws_over_its_web_socket(proxied):
    from playwright.sync_api import sync_playwright
    from portal_harness import DESKTOP, launch, login, wait_drawn

    base = f"https://localhost:{proxied['https']}"
    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            page = browser.new_context(ignore_https_errors=True, viewport=DESKTOP).new_page()  # the test's own cert
            sockets = []
            page.on("websocket", lambda ws: sockets.append(ws))
            login(page, base, "operator")
            assert page.url.startswith(base + "/")
            page.goto(base + "/alarms")                                  # a Panel page (the overview has no socket)
            wait_drawn(page)
            ws = [w for w in sockets if w.url.startswith(f"wss://localhost:{proxied['https']}/")]
            assert ws and not ws[0].is_closed()                          # Bokeh's socket, through nginx, open
        finally:
            browser.close()


# ================================================================================================ PostgreSQL roles
def psql(server: sa.engine.URL, database: str, *args: str) -> subprocess.CompletedProcess:
    """``psql`` as the test server's superuser, stopping at the first error."""
    env = os.environ | ({"PGPASSWORD": server.password} if server.password else {})
    res = run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server.host or "127.0.0.1", "-p",
               str(server.port or 5432), "-U", server.username, "-d", database, *args], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def privileges(engine) -> list[tuple]:
    """Every table, column and sequence privilege and default privilege in the database, sorted."""
    q = """
      SELECT 'table', c.relname, a.grantee::regrole::text, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
      SELECT 'column', c.relname || '.' || att.attname, a.grantee::regrole::text, a.privilege_type
        FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid, aclexplode(att.attacl) a
       WHERE c.relnamespace = 'public'::regnamespace
      UNION ALL
      SELECT 'default', d.defaclobjtype::text, a.grantee::regrole::text, a.privilege_type
        FROM pg_default_acl d, aclexplode(d.defaclacl) a
      ORDER BY 1, 2, 3, 4"""
    with engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(q)]


@pytest.fixture(scope="module")
def roles(tmp_path_factory):
    """roles.sql on a fresh database (role names of their own: roles are per server, tests run in parallel),
    the migrations run by the owner with ``anning db init``, then grants.sql; yields the three engines."""
    from anning_lib.store.engine import make_engine, normalise_url

    server = normalise_url(pg_url_or_skip())
    if shutil.which("psql") is None:
        pytest.skip("psql missing (Debian package postgresql-client)")
    tag = uuid.uuid4().hex[:8]
    db = f"anning_deploy_{tag}"
    names = {r: f"anning_{r}_{tag}" for r in ("owner", "ingest", "portal")}
    pw = {r: uuid.uuid4().hex for r in names}
    var = tmp_path_factory.mktemp("pg-roles")
    variables = [f"db={db}"] + [f"{r}_role={n}" for r, n in names.items()] + [f"{r}_password={pw[r]}" for r in names]
    vargs = [a for v in variables for a in ("-v", v)]
    psql(server, server.database, *vargs, "-f", str(DEPLOY / "postgres/roles.sql"))
    role_vars = [a for r, n in names.items() for a in ("-v", f"{r}_role={n}")]
    urls = {r: server.set(username=n, password=pw[r], database=db) for r, n in names.items()}
    env = os.environ | {"ANNING_DB_URL": urls["owner"].render_as_string(hide_password=False),
                        "ANNING_VAR_DIR": str(var)}
    res = run([ANNING, "db", "init"], env=env, cwd=REPO)                    # the migrations, as the owner
    assert res.returncode == 0, res.stderr
    psql(server, db, *role_vars, "-f", str(DEPLOY / "postgres/grants.sql"))
    engines = {r: make_engine(u) for r, u in urls.items()}
    try:
        yield {"engines": engines, "urls": urls, "server": server, "db": db, "names": names, "var": var,
               "apply": lambda: (psql(server, server.database, *vargs, "-f", str(DEPLOY / "postgres/roles.sql")),
                                 psql(server, db, *role_vars, "-f", str(DEPLOY / "postgres/grants.sql")))}
    finally:
        for e in engines.values():
            e.dispose()
        admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            scratch = c.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'anning_verify_%' AND "
                                        "datdba = (SELECT oid FROM pg_roles WHERE rolname = :o)"),
                                {"o": names["owner"]}).scalars().all()
            for name in [*scratch, db]:
                c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for n in names.values():
                c.exec_driver_sql(f'DROP ROLE IF EXISTS "{n}"')
        admin.dispose()


def denied(fn) -> None:
    """``fn`` is refused by the server for lack of privilege (SQLSTATE 42501), whatever the library wraps it in."""
    import psycopg

    with pytest.raises((sa.exc.ProgrammingError, psycopg.errors.InsufficientPrivilege)) as err:
        fn()
    assert isinstance(getattr(err.value, "orig", err.value), psycopg.errors.InsufficientPrivilege), err.value


def sql(engine, text: str, **params):
    with engine.begin() as c:
        return c.execute(sa.text(text), params).fetchall() if text.lstrip().upper().startswith("SELECT") \
            else c.execute(sa.text(text), params)


def some_measurements(park, start: dt.datetime, hours: int = 2):
    """An hour or two of the simulator's readings of every point, in the store's long format."""
    import pandas as pd

    from anning_lib.config import REPO_ROOT
    from anning_lib.sim import ParkSimulator, to_long

    sim = ParkSimulator(park, 7, REPO_ROOT / "data")
    frame = next(sim.run(start.date(), start.date() + dt.timedelta(days=1), "15min"))
    long = to_long(frame)
    return long[long["ts"] < pd.Timestamp(start) + pd.Timedelta(hours=hours)]


@pytest.mark.postgres
def test_the_ingest_role_does_what_the_gateway_does_and_nothing_more(roles):
    """At start the gateway upserts the park's assets (init_db); then measurements, health rows, alarms and their
    notifications, rollups; with --forecast, the forecasts; with --dispatch, schedules, commands and the
    setpoints' audit rows."""
    from anning_lib.auth.audit import audit
    from anning_lib.dispatch.case import parse_case
    from anning_lib.dispatch.executor import execute, save_schedule
    from anning_lib.dispatch.rule import rule_schedule
    from anning_lib.ingest.gateway import Gateway
    from anning_lib.ingest.pki import ensure_ca
    from anning_lib.ingest.pointmap import describe_addresses, load_pointmaps
    from anning_lib.park import load_park
    from anning_lib.quality.alarms import clear_event, raise_event
    from anning_lib.quality.notify import deliver, load_channels, render
    from anning_lib.sim.serve import ensure_demo_credentials
    from anning_lib.store.engine import init_db
    from anning_lib.store.timeseries import (
        count_rows,
        read_series,
        refresh_rollups,
        write_measurements,
    )

    ing, owner = roles["engines"]["ingest"], roles["engines"]["owner"]
    park = load_park()
    maps = load_pointmaps(REPO / "ingest", park)
    assert init_db(ing, park, describe_addresses(maps, park))["points"] == 184       # `anning ingest run`'s start
    start = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    rows = some_measurements(park, start)
    n = len(rows.dropna(subset=["value"]))
    before = count_rows(owner, "measurement")
    assert write_measurements(ing, rows) == n
    assert count_rows(owner, "measurement") == before + n
    assert refresh_rollups(ing, start, start + dt.timedelta(hours=2)) > 0            # the MPC's history
    assert not read_series(ing, ["GRID.p_kw"], start, start + dt.timedelta(hours=2)).empty
    import pandas as pd

    from anning_lib.forecast.models import Persistence
    from anning_lib.forecast.operate import HORIZON, forecast, park_targets

    grid = next(t for t in park_targets(park) if t.tag == "GRID.p_kw")      # --forecast: upserts its rows
    origin = pd.Timestamp(start) + pd.Timedelta(hours=2)
    assert forecast(ing, grid, Persistence(), {"model": "persistence", "version": "1"}, origin, days=1) == HORIZON
    assert count_rows(owner, "forecast") >= HORIZON
    ensure_demo_credentials(maps, roles["var"])          # the passwords and certificates the maps name
    ensure_ca(roles["var"] / "pki")
    gw = Gateway(park, maps, ing, roles["var"])
    gw.store_health()
    assert count_rows(owner, "ingest_health") == len(gw.health)
    alarm_id = raise_event(ing, "deploy.test", "GRID", "test alarm", severity="high")
    assert alarm_id is not None
    hook = roles["var"] / "channels.yaml"
    hook.write_text("channels:\n  - {id: hook, kind: webhook, enabled: true, min_severity: low, enterprises: null,"
                    f" url: 'http://127.0.0.1:{free_port()}/x', timeout_s: 1}}\n")
    with owner.connect() as c:
        alarm_row = dict(c.exec_driver_sql(f"SELECT * FROM alarm WHERE id = {alarm_id}").mappings().one())
    sent = deliver(ing, load_channels(hook), render(alarm_row), attempts=2, sleep=lambda s: None)
    assert [r["status"] for r in sent] == ["failed"]                                 # nobody listens: recorded
    schedule = rule_schedule(parse_case({
        "timestep_minutes": 60, "start": "2026-03-02T00:00:00+08:00", "load_kw": [100.0] * 4,
        "tariff": {"import_price_cny_per_kwh": [0.3, 0.3, 0.6, 0.6]},
        "storage": [{"id": "E05-BESS", "energy_kwh": 100, "power_kw": 50, "eta_charge": 1.0, "eta_discharge": 1.0,
                     "soc_min_frac": 0.0, "soc_max_frac": 1.0, "soc_initial_frac": 0.5, "soc_final_frac": None}]}))
    sid = save_schedule(ing, schedule, "E05", "advisory")
    out = asyncio.run(execute(ing, park, lambda tag: None, {"E05-BESS": -50.0}, schedule_id=sid,
                              due_at=start, trigger_s=time.perf_counter()))
    assert [r.status for r in out] == ["proposed"]                                   # E05's storage is advisory
    audit(ing, "setpoint_written", "E10-BESS.p_set_kw", {"value": -50.0})
    assert clear_event(ing, "deploy.test", "GRID") is not None

    # ... and nothing more: no user table, no audit trail to read, no deletes, no schema changes
    denied(lambda: sql(ing, "SELECT username, password_hash FROM app_user"))
    denied(lambda: sql(ing, "SELECT action, detail FROM audit_log"))
    denied(lambda: sql(ing, "DELETE FROM measurement"))
    denied(lambda: sql(ing, "DELETE FROM alarm"))
    denied(lambda: sql(ing, "UPDATE audit_log SET action = 'x'"))
    denied(lambda: sql(ing, "SELECT * FROM work_order"))
    denied(lambda: sql(ing, "DROP TABLE measurement"))
    denied(lambda: sql(ing, "CREATE TABLE mine (x int)"))
    denied(lambda: sql(ing, "TRUNCATE measurement"))
    assert count_rows(owner, "measurement") == before + n                           # nothing was deleted


@pytest.mark.postgres
def test_the_portal_role_reads_and_makes_the_portals_writes_but_never_measurements(roles, tmp_path):
    import pandas as pd
    from portal_harness import _today_and_carbon

    from anning_lib.auth.access import SYSTEM, actor_from_db
    from anning_lib.auth.audit import audit, read_audit
    from anning_lib.auth.users import add_user, authenticate, set_active
    from anning_lib.cli.main import backfill
    from anning_lib.config import Settings
    from anning_lib.errors import AccessError
    from anning_lib.ops.health import check_health, self_monitor
    from anning_lib.park import load_park
    from anning_lib.portal.admin import add_point, update_point_limits
    from anning_lib.portal.energy import approve_schedule
    from anning_lib.quality import workorders
    from anning_lib.quality.alarms import ack, raise_event, shelve
    from anning_lib.quality.service import put_rule
    from anning_lib.reports.custom import Definition
    from anning_lib.reports.custom_store import delete_definition, save_definition
    from anning_lib.reports.runner import run_report
    from anning_lib.store.timeseries import (
        count_rows,
        read_series,
        refresh_rollups,
        write_measurements,
    )

    portal, owner = roles["engines"]["portal"], roles["engines"]["owner"]
    park = load_park()
    # what the gateway and the demo stored (written here as the owner): yesterday, today so far, this month's
    # activity data and carbon account
    sim, end = backfill(1, None, "15min", engine=owner, park=park)
    _today_and_carbon(owner, park, sim, end)
    month = str(pd.Timestamp.now(tz="Asia/Shanghai").tz_localize(None).to_period("M"))
    start = pd.Timestamp(end, tz="Asia/Shanghai").tz_convert("UTC").to_pydatetime() - dt.timedelta(days=1)
    rows = some_measurements(park, start, hours=2)
    n_measurements = count_rows(owner, "measurement")

    # reads
    assert not read_series(portal, ["GRID.p_kw"], start, start + dt.timedelta(hours=24)).empty
    assert refresh_rollups(portal, start, start + dt.timedelta(hours=24)) > 0       # pages bring rollups up to date
    # users: the admin page adds one, log-in failures and successes are recorded, deactivation
    add_user(portal, SYSTEM, "adm", "adm-password-0001", "admin")
    add_user(portal, actor_from_db(portal, "adm"), "op", "op-password-00001", "operator")
    with pytest.raises(AccessError):
        authenticate(portal, "op", "wrong-password", source="10.0.0.9")
    assert authenticate(portal, "op", "op-password-00001", source="10.0.0.9").username == "op"
    adm, op = actor_from_db(portal, "adm"), actor_from_db(portal, "op")
    set_active(portal, adm, "op", True)
    audit(portal, "page_refused", "/admin", {"role": "operator"}, op.user_id)
    assert read_audit(portal, action_prefix="login")                                 # the admin's audit page
    # alarms and work orders
    aid = raise_event(portal, "report.failed", "monthly-statement:E01", "report failed", severity="medium")
    assert ack(portal, op, aid, "seen") and shelve(portal, op, aid, dt.timedelta(hours=1), "maintenance")
    wo = workorders.create(portal, op, "", alarm_id=aid)
    workorders.update(portal, op, wo, status="in_progress")
    workorders.comment(portal, op, wo, "on it")
    self_monitor(portal, check_health(portal, Settings(var_dir=tmp_path), broker=False, park=park))
    # admin: a point, its limits, an alarm rule; an operator approves an advisory plan of the MPC
    add_point(portal, park, adm, "E01-MM", "q_kvar_test", "reactive_power", "kvar", 0.0, 1000.0)
    update_point_limits(portal, adm, "E01-MM.q_kvar_test", 0.0, 2000.0)
    put_rule(portal, adm, park, {"id": "range.bess", "name": "Storage range", "target": {"device_type": "bess"},
                                 "condition": {"kind": "range", "deadband_frac": 0.02}, "severity": "high"})
    with owner.begin() as c:                              # a plan the MPC stored (the ingest role's write)
        sid = c.exec_driver_sql(
            "INSERT INTO dispatch_schedule (created_at, strategy, horizon_start, horizon_end, status, objective_cny,"
            " plan) VALUES (now(), 'mpc', now(), now() + interval '1 day', 'advisory', 0, '{\"site\": \"E05\"}')"
            " RETURNING id").scalar_one()
    assert approve_schedule(portal, op, sid)["status"] == "approved"
    # custom reports; the monthly statement of the report schedule (its carbon account replaced, report_run)
    did = save_definition(portal, op, Definition(name="日报", metrics=["e_kwh"], dimension="enterprise",
                                                 start=start.date().isoformat(),
                                                 end=(start.date() + dt.timedelta(days=1)).isoformat(),
                                                 granularity="day"))
    delete_definition(portal, op, did)
    settings = Settings(var_dir=tmp_path, report_retry_s=0, report_attempts=1)
    for _ in range(2):                                    # the second run replaces the stored account (DELETE)
        row = run_report(portal, "monthly-statement", month, "E01", settings=settings)
        assert row["status"] == "done", row["error"]

    # never: measurements, the gateway's tables, the audit trail, the schema
    denied(lambda: write_measurements(portal, rows.head(10)))
    denied(lambda: sql(portal, "DELETE FROM measurement"))
    denied(lambda: sql(portal, "UPDATE audit_log SET action = 'x'"))
    denied(lambda: sql(portal, "DELETE FROM audit_log"))
    denied(lambda: sql(portal, "DELETE FROM app_user"))
    denied(lambda: sql(portal, "INSERT INTO ingest_health (source, protocol, connected, n_samples, n_bad, n_errors,"
                               " updated_at) VALUES ('x', 'mqtt', true, 0, 0, 0, now())"))
    denied(lambda: sql(portal, "DROP TABLE measurement"))
    denied(lambda: sql(portal, "ALTER TABLE app_user ADD COLUMN x int"))
    denied(lambda: sql(portal, "CREATE TABLE mine (x int)"))
    assert count_rows(owner, "measurement") == n_measurements


@pytest.mark.postgres
def test_a_table_of_a_later_migration_is_readable_by_the_portal_only(roles):
    owner, portal, ing = (roles["engines"][r] for r in ("owner", "portal", "ingest"))
    sql(owner, "CREATE TABLE later_migration (id serial PRIMARY KEY, secret text)")
    sql(owner, "INSERT INTO later_migration (secret) VALUES ('s')")
    try:
        assert sql(portal, "SELECT secret FROM later_migration") == [("s",)]
        denied(lambda: sql(ing, "SELECT secret FROM later_migration"))                # granted table by table only
        denied(lambda: sql(portal, "INSERT INTO later_migration (secret) VALUES ('t')"))
    finally:
        sql(owner, "DROP TABLE later_migration")


@pytest.mark.postgres
def test_roles_and_grants_can_be_applied_again_without_changing_anything(roles):
    before = privileges(roles["engines"]["owner"])
    roles["apply"]()
    assert privileges(roles["engines"]["owner"]) == before
    assert ("table", "app_user", roles["names"]["ingest"], "SELECT") not in before               # as documented
    assert ("column", "audit_log.id", roles["names"]["ingest"], "SELECT") in before


@pytest.mark.postgres
def test_the_nightly_backup_runs_and_verifies_as_the_owner(roles, tmp_path):
    """anning-backup.service's command with the owner's URL (db-owner.env): pg_dump reads every table, and the
    verification restores the dump, grants and default privileges included, into a scratch database."""
    env = os.environ | {"ANNING_DB_URL": roles["urls"]["owner"].render_as_string(hide_password=False),
                        "ANNING_VAR_DIR": str(tmp_path), "ANNING_BACKUP_DIR": str(tmp_path / "backups"),
                        "ANNING_BIN": str(ANNING)}
    assert run([ANNING, "backup", "keygen"], env=env, cwd=tmp_path).returncode == 0
    res = run([DEPLOY / "bin/anning-backup-nightly"], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"anning-\S+\.tar\.enc: OK \(postgresql backup", res.stdout), res.stdout
