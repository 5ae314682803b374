"""``anning backup``: encrypted backups, restore, verify, rotation and the key file, on SQLite and PostgreSQL.

The round trip populates a store with the real park, measurements, a user and an alarm, backs it up, destroys the
database, restores it, and finds every table's row count and checksum (computed on the original before the backup)
and a few rows field by field equal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import os
import tarfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from anning_lib.errors import AnningError, ConfigError, StoreError
from anning_lib.ops import backup as B
from anning_lib.ops import sealed
from anning_lib.store.schema import TABLES

PW = "correct horse battery staple"
T0 = dt.datetime(2026, 3, 1, 2, 0, tzinfo=dt.UTC)


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def park():
    from anning_lib.park import load_park

    return load_park()


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "keys" / "backup.key"
    B.generate_key(path)
    return path


@pytest.fixture
def files(tmp_path):
    """The repository's configuration plus a produced report with a Chinese name (var/reports of tmp_path)."""
    from anning_lib.config import Settings

    reports = tmp_path / "var" / "reports" / "E01"
    reports.mkdir(parents=True)
    (reports / "月报-2026-02.pdf").write_bytes(b"%PDF-1.7 fake statement\n" * 100)
    return B.backup_files(Settings(var_dir=tmp_path / "var"))


def populate(engine, park) -> None:
    """The real park, 4 points x 80 quarter hours of measurements, an operator and a system alarm."""
    from anning_lib.auth.access import SYSTEM
    from anning_lib.auth.users import add_user
    from anning_lib.quality.alarms import raise_event
    from anning_lib.store import init_db, write_measurements

    init_db(engine, park)
    tags = [f"{d.id}.{p.id}" for _e, d, p in list(park.iter_points())[:4]]
    ts = pd.date_range("2026-03-01", periods=80, freq="15min", tz="Asia/Shanghai")
    rng = np.random.default_rng(7)
    write_measurements(engine, pd.concat([
        pd.DataFrame({"tag": tag, "ts": ts, "value": rng.normal(1000, 300, len(ts)),
                      "quality": (np.arange(len(ts)) % 17 == 0).astype(int)}) for tag in tags]))
    add_user(engine, SYSTEM, "op-backup", PW, "operator", display_name="值班员 Backup", now=T0)
    raise_event(engine, "backup.test", "E01", "测试告警: report failed", enterprise_id="E01",
                detail={"why": "test", "n": 1.5, "列表": [1, 2]}, now=T0)


def snapshot_rows(engine) -> dict[str, list[tuple]]:
    """Some rows field by field: all measurements, the user, the alarm and its event, the audit log."""
    out = {}
    with engine.connect() as c:
        for name, order in (("measurement", ("point_id", "ts")), ("app_user", ("id",)), ("alarm", ("id",)),
                            ("alarm_event", ("id",)), ("audit_log", ("id",))):
            t = TABLES[name]
            out[name] = [tuple(r) for r in c.execute(sa.select(t).order_by(*[t.c[k] for k in order]))]
    return out


def destroy(engine) -> str:
    """Delete the database (SQLite: the file; PostgreSQL: drop and recreate it empty); returns its URL."""
    url = engine.url
    engine.dispose()
    if url.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(url.database + suffix).unlink(missing_ok=True)
    else:
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE "{url.database}" WITH (FORCE)')
            c.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
        admin.dispose()
    return url.render_as_string(hide_password=False)


def pg_database_exists(url: sa.URL) -> bool:
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            return c.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %(n)s",
                                     {"n": url.database}).first() is not None
    finally:
        admin.dispose()


def other_target(engine, tmp_path) -> tuple[str, callable]:
    """A URL of a database that does not exist yet, and a function telling whether it was created."""
    if engine.dialect.name == "sqlite":
        path = tmp_path / "elsewhere" / "restored.sqlite"
        return f"sqlite:///{path}", lambda: path.parent.exists()
    url = engine.url.set(database=engine.url.database + "_r")
    return url.render_as_string(hide_password=False), lambda: pg_database_exists(url)


def sqlite_store(tmp_path, park):
    from anning_lib.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
    populate(engine, park)
    return engine


# ------------------------------------------------------------------------------------------------ round trip
def test_backup_destroy_restore_round_trip(engine, park, key_file, files, tmp_path):
    populate(engine, park)
    before = B.table_checksums(engine)
    rows_before = snapshot_rows(engine)
    assert before["measurement"]["rows"] == 320 and before["app_user"]["rows"] == 1
    assert before["alarm"]["rows"] == 1 and before["point"]["rows"] > 100
    key = B.load_key(key_file)

    res = B.create_backup(engine, key, tmp_path / "backups", keep=14, files=files, now=T0)
    assert res.path.name == "anning-20260301T020000Z.tar.enc"
    assert (res.path.stat().st_mode & 0o777) == 0o600
    m = res.manifest
    assert m["db"]["kind"] == engine.dialect.name and m["created_at"] == "2026-03-01T02:00:00Z"
    assert m["db"]["revision"] == m["db"]["head_revision"]
    assert m["tables"] == before                          # the dump's checksums = the original's
    names = {f["path"] for f in m["files"]}
    assert {"config/data/park/anning.yaml", "config/ingest/modbus.yaml", "reports/E01/月报-2026-02.pdf"} <= names
    assert any(n.startswith("config/data/tariffs/") for n in names)
    assert any(n.startswith("config/data/alarms/") for n in names)
    assert b"op-backup" not in res.path.read_bytes()      # encrypted

    # wrong key: one clear error, nothing written anywhere
    target, created = other_target(engine, tmp_path)
    wrong = tmp_path / "wrong.key"
    B.generate_key(wrong)
    with pytest.raises(StoreError, match="wrong key"):
        B.restore_backup(res.path, target, B.load_key(wrong))
    assert not created()

    url = destroy(engine)
    restored = B.restore_backup(res.path, url, key, extract_dir=tmp_path / "extracted")
    assert restored.ok, restored.tables
    assert (tmp_path / "extracted" / "reports" / "E01" / "月报-2026-02.pdf").read_bytes().startswith(b"%PDF")

    from anning_lib.store import make_engine
    from anning_lib.store.engine import check_schema

    again = make_engine(url)
    try:
        check_schema(again)
        assert B.table_checksums(again) == before
        rows_after = snapshot_rows(again)
        assert rows_after == rows_before
        with again.connect() as c:
            u = c.execute(sa.select(TABLES["app_user"])).one()
            a = c.execute(sa.select(TABLES["alarm"])).one()
            ev = c.execute(sa.select(TABLES["alarm_event"])).one()
        assert (u.username, u.role_id, u.is_active, u.created_at) == ("op-backup", "operator", True, T0)
        assert (a.rule_id, a.enterprise_id, a.state, a.raised_at) == ("backup.test", "E01", "active_unack", T0)
        assert ev.detail == {"why": "test", "n": 1.5, "列表": [1, 2]}
        first = rows_before["measurement"][0]
        assert rows_after["measurement"][0] == first and isinstance(first[2], float)

        # a non-empty target is refused unless --force
        with pytest.raises(StoreError, match="not empty.*--force"):
            B.restore_backup(res.path, url, key)
        assert B.restore_backup(res.path, url, key, force=True).ok
        assert B.table_checksums(again) == before
    finally:
        again.dispose()

    verified = B.verify_backup(res.path, key, server_url=url)
    assert verified.ok and len(verified.tables) == len(TABLES)


@pytest.mark.postgres
def test_checksums_equal_across_sqlite_and_postgresql(park, tmp_path):
    """The normalisation makes the same data hash the same on both databases (instants, floats, JSON, text)."""
    from conftest import pg_url_or_skip

    from anning_lib.store import make_engine
    from anning_lib.store.engine import normalise_url

    server = normalise_url(pg_url_or_skip())
    name = f"anning_t_x{os.getpid()}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    lite, pg = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}"), make_engine(server.set(database=name))
    try:
        for eng in (lite, pg):
            populate(eng, park)
        a, b = B.table_checksums(lite), B.table_checksums(pg)
        # password hashes (random salt) and audit/alarm times of "now" differ; everything else is the same data
        for table in ("measurement", "point", "device", "enterprise", "building", "role"):
            assert a[table] == b[table], table
    finally:
        lite.dispose()
        pg.dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# ------------------------------------------------------------------------------------------------ tampering
def _forge(src: Path, dst: Path, key: bytes, edit, compression: str = "gzip") -> None:
    """Re-encrypt ``src`` into ``dst`` with the right key after ``edit(manifest)``: an insider's forgery."""
    with B.open_backup(src, key) as opened:
        manifest = opened.manifest
        edit(manifest)
        with open(dst, "wb") as raw:
            w = sealed.EncryptingWriter(raw, key, compression=compression)
            gz = gzip.GzipFile(fileobj=w, mode="wb") if compression == "gzip" else contextlib.nullcontext(w)
            with gz as stream, tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                body = json.dumps(manifest).encode()
                tar.addfile(B._tarinfo("manifest.json", len(body), 0), io.BytesIO(body))
                for f in manifest["files"]:
                    p = opened.member(f["path"])
                    with open(p, "rb") as fh:
                        tar.addfile(B._tarinfo(f["path"], p.stat().st_size, 0), fh)
            w.finish()


@pytest.fixture
def sqlite_backup(tmp_path, park, key_file):
    """A backup of a populated SQLite store and a 2.5 MB report: an archive of 2 full chunks and a final one."""
    engine = sqlite_store(tmp_path, park)
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(1).bytes(2_500_000))
    res = B.create_backup(engine, B.load_key(key_file), tmp_path / "backups", files=[("reports/big.bin", big)],
                          now=T0)
    engine.dispose()
    return res.path


@pytest.mark.parametrize("where", ["magic", "header", "first", "middle", "last", "truncate", "truncate_boundary",
                                   "drop_chunk", "swap_chunks", "append"])
def test_tampered_archive_is_refused_and_nothing_written(sqlite_backup, key_file, tmp_path, where):
    data = bytearray(sqlite_backup.read_bytes())
    header_len = len(B.MAGIC) + 4 + int.from_bytes(data[8:12], "big")
    full = B.CHUNK_BYTES + 16
    assert len(data) > header_len + 2 * full
    chunk = [bytes(data[header_len + i * full:header_len + (i + 1) * full]) for i in range(2)]
    if where == "truncate":
        data = data[:-10]
    elif where == "truncate_boundary":
        data = data[:header_len + 2 * full]
    elif where == "drop_chunk":
        data = data[:header_len] + data[header_len + full:]
    elif where == "swap_chunks":
        data = data[:header_len] + chunk[1] + chunk[0] + data[header_len + 2 * full:]
    elif where == "append":
        data += b"\0"
    else:
        at = {"magic": 2, "header": header_len - 5, "first": header_len + 100, "middle": len(data) // 2,
              "last": len(data) - 1}[where]
        data[at] ^= 0x01
    bad = tmp_path / "bad.tar.enc"
    bad.write_bytes(bytes(data))
    key = B.load_key(key_file)
    target = tmp_path / "out" / "restored.sqlite"
    with pytest.raises(StoreError, match="bad.tar.enc: .*(tampered|not an Anning backup|damaged|wrong key|truncated)"):
        B.restore_backup(bad, f"sqlite:///{target}", key)
    assert not target.parent.exists()
    with pytest.raises(StoreError):
        B.verify_backup(bad, key)


def test_verify_passes_on_good_and_fails_on_forged_backup(sqlite_backup, key_file, tmp_path):
    key = B.load_key(key_file)
    good = B.verify_backup(sqlite_backup, key)
    assert good.ok and {r["table"] for r in good.tables} == set(TABLES)

    def more_rows(m):
        m["tables"]["measurement"]["rows"] += 1

    def other_sum(m):
        m["tables"]["alarm"]["sha256"] = "0" * 64

    for edit, table, compression in ((more_rows, "measurement", "gzip"), (other_sum, "alarm", "none")):
        forged = tmp_path / f"forged-{table}.tar.enc"
        _forge(sqlite_backup, forged, key, edit, compression)
        res = B.verify_backup(forged, key)
        assert not res.ok
        assert [r["table"] for r in res.tables if not r["ok"]] == [table]

    def swap_file(m):  # a member that no longer matches its SHA-256
        m["files"][0]["sha256"] = "f" * 64

    forged = tmp_path / "forged-file.tar.enc"
    _forge(sqlite_backup, forged, key, swap_file)
    with pytest.raises(StoreError, match="does not match its SHA-256"):
        B.verify_backup(forged, key)


def test_backup_is_consistent_while_the_gateway_writes(tmp_path, park, key_file):
    from anning_lib.store import make_engine, write_measurements
    from anning_lib.store.timeseries import count_rows

    engine = sqlite_store(tmp_path, park)
    writer = make_engine(engine.url)
    stop = threading.Event()
    tag = f"{list(park.iter_points())[5][1].id}.{list(park.iter_points())[5][2].id}"

    def gateway():
        i = 0
        while not stop.is_set():
            ts = pd.date_range(pd.Timestamp("2026-04-01", tz="UTC") + pd.Timedelta(minutes=50 * i), periods=50,
                               freq="1min")
            write_measurements(writer, pd.DataFrame({"tag": tag, "ts": ts, "value": float(i)}))
            i += 1

    t = threading.Thread(target=gateway)
    t.start()
    try:
        key = B.load_key(key_file)
        results = [B.create_backup(engine, key, tmp_path / "backups", files=[]) for _ in range(3)]
    finally:
        stop.set()
        t.join()
        writer.dispose()
    counts = [r.manifest["tables"]["measurement"]["rows"] for r in results]
    assert counts == sorted(counts) and counts[-1] <= count_rows(engine, "measurement")
    for r in results:
        assert B.verify_backup(r.path, key).ok
    engine.dispose()


# ------------------------------------------------------------------------------------------------ rotation
def test_rotation_keeps_the_newest(tmp_path, park, key_file):
    engine = sqlite_store(tmp_path, park)
    key = B.load_key(key_file)
    out = tmp_path / "backups"
    out.mkdir()
    (out / "notes.txt").write_text("not a backup")
    (out / "anning-20200101T000000Z.tar.enc.keep").write_text("not a backup either")
    made = [B.create_backup(engine, key, out, keep=3, files=[], now=T0 + dt.timedelta(hours=h)) for h in range(5)]
    engine.dispose()
    left = [b.path.name for b in B.list_backups(out)]
    assert left == [r.path.name for r in made[-3:]]
    assert made[-1].removed == [made[1].path] and made[3].removed == [made[0].path]
    assert (out / "notes.txt").exists() and (out / "anning-20200101T000000Z.tar.enc.keep").exists()


def test_rotation_orders_same_second_backups():
    names = ["anning-20260301T020000Z-2.tar.enc", "anning-20260301T020000Z.tar.enc",
             "anning-20260301T020000Z-10.tar.enc", "anning-20260228T235959Z.tar.enc"]
    order = sorted((Path(n) for n in names), key=B._sort_key)
    assert [p.name for p in order] == ["anning-20260228T235959Z.tar.enc", "anning-20260301T020000Z.tar.enc",
                                       "anning-20260301T020000Z-2.tar.enc", "anning-20260301T020000Z-10.tar.enc"]
    with pytest.raises(ConfigError, match="ANNING_BACKUP_KEEP"):
        B.rotate(Path("/nonexistent"), 0)


# ------------------------------------------------------------------------------------------------ key and settings
def test_key_file_rules(tmp_path):
    path = tmp_path / "k" / "backup.key"
    kid = B.generate_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(kid) == 16
    key = B.load_key(path)
    assert len(key) == 32 and B.key_id(key) == kid
    with pytest.raises(ConfigError, match="exists already"):
        B.generate_key(path)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644.*refusing"):
        B.load_key(path)
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="mode 0640"):
        B.load_key(path)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="no key file"):
        B.load_key(tmp_path / "missing.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not base64 at all!\n")
    garbage.chmod(0o600)
    with pytest.raises(ConfigError, match="does not hold a backup key"):
        B.load_key(garbage)
    assert B.generate_key(path, force=True) != kid


def test_backup_settings_from_environment(tmp_path):
    from anning_lib.config import Settings

    s = Settings(var_dir=tmp_path / "var")
    d = B.backup_settings(s, environ={})
    assert (d.dir, d.key_file, d.keep) == (tmp_path / "var" / "backups", tmp_path / "var" / "backup.key", 14)
    e = B.backup_settings(s, environ={"ANNING_BACKUP_DIR": "/srv/bk", "ANNING_BACKUP_KEY_FILE": "/etc/anning/k",
                                      "ANNING_BACKUP_KEEP": "30"})
    assert (e.dir, e.key_file, e.keep) == (Path("/srv/bk"), Path("/etc/anning/k"), 30)
    for bad in ("0", "many"):
        with pytest.raises(ConfigError, match="ANNING_BACKUP_KEEP"):
            B.backup_settings(s, environ={"ANNING_BACKUP_KEEP": bad})


def test_kind_mismatch_is_refused(sqlite_backup, key_file):
    with pytest.raises(StoreError, match="holds a sqlite database"):
        B.restore_backup(sqlite_backup, "postgresql://nobody@127.0.0.1:1/x", B.load_key(key_file))


# ------------------------------------------------------------------------------------------------ command line
@pytest.fixture
def cli(tmp_path, park, monkeypatch):
    from anning_lib.cli.backup import backup_app
    from anning_lib.config import get_settings

    engine = sqlite_store(tmp_path, park)
    engine.dispose()
    monkeypatch.setenv("ANNING_DB_URL", f"sqlite:///{tmp_path / 'store.sqlite'}")
    monkeypatch.setenv("ANNING_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ANNING_BACKUP_DIR", str(tmp_path / "bk"))
    monkeypatch.setenv("ANNING_BACKUP_KEY_FILE", str(tmp_path / "secret" / "backup.key"))
    monkeypatch.setenv("ANNING_BACKUP_KEEP", "2")
    get_settings.cache_clear()
    yield lambda *args: CliRunner().invoke(backup_app, [str(a) for a in args])
    get_settings.cache_clear()


def test_cli_keygen_create_list_verify_restore(cli, tmp_path):
    r = cli("create")
    assert isinstance(r.exception, ConfigError) and "no key file" in str(r.exception)
    assert not (tmp_path / "bk").exists()
    r = cli("keygen")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "secret" / "backup.key").stat().st_mode & 0o777 == 0o600
    for _ in range(3):
        r = cli("create")
        assert r.exit_code == 0, r.output
    assert len(B.list_backups(tmp_path / "bk")) == 2                    # ANNING_BACKUP_KEEP=2
    assert "removed old backup" in r.output
    r = cli("list", "--json")
    listed = json.loads(r.output)
    assert len(listed) == 2 and listed[0]["db"] == "sqlite" and listed[0]["rows"] > 500
    name = listed[-1]["name"]
    r = cli("verify", name)
    assert r.exit_code == 0 and "OK" in r.output and "measurement" in r.output
    r = cli("restore", name, "--to", f"sqlite:///{tmp_path / 'store.sqlite'}")
    assert isinstance(r.exception, StoreError) and "--force" in str(r.exception)
    r = cli("restore", name, "--to", f"sqlite:///{tmp_path / 'new.sqlite'}")
    assert r.exit_code == 0 and "checksums equal" in r.output

    forged = tmp_path / "forged.tar.enc"
    _forge(tmp_path / "bk" / name, forged, B.load_key(tmp_path / "secret" / "backup.key"),
           lambda m: m["tables"]["point"].update(rows=1))
    r = cli("verify", forged)
    assert r.exit_code == 1 and "FAIL" in r.output

    data = bytearray(forged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    forged.write_bytes(bytes(data))
    r = cli("verify", forged)
    assert isinstance(r.exception, AnningError) and "tampered" in str(r.exception)

    (tmp_path / "secret" / "backup.key").chmod(0o644)
    r = cli("verify", name)
    assert isinstance(r.exception, ConfigError) and "0644" in str(r.exception)
