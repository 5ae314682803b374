"""Schema, migrations, engine settings and the park sync (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import REPO, tiny_park_dict

from anning_lib.errors import StoreError
from anning_lib.park import parse_park
from anning_lib.store import (
    count_rows,
    current_revision,
    downgrade,
    head_revision,
    init_db,
    make_engine,
    point_ids,
    read_series,
    upgrade,
)
from anning_lib.store.engine import normalise_url
from anning_lib.store.schema import TABLES, Base

UTC = dt.timezone.utc
ASSET_TABLES = ["enterprise", "building", "device", "point"]


def _snapshot(engine):
    counts = {t: count_rows(engine, t) for t in ASSET_TABLES}
    return counts, point_ids(engine)


def test_init_db_twice_is_harmless(engine, tiny_park):
    assert current_revision(engine) is None
    first = init_db(engine, tiny_park)
    assert first == {"enterprises": 2, "buildings": 1, "devices": 4, "points": 6, "stale_points": 0}
    before = _snapshot(engine)
    assert before[0] == {"enterprise": 2, "building": 1, "device": 4, "point": 6}
    init_db(engine, tiny_park)
    assert _snapshot(engine) == before
    assert current_revision(engine) == head_revision() == "0008"


def test_sync_updates_in_place_and_keeps_point_ids(db):
    ids = point_ids(db)
    raw = tiny_park_dict()
    raw["enterprises"][0]["name"] = "钢厂（改名）"
    raw["enterprises"][1]["devices"][0]["points"].append(
        {"id": "e_kwh", "quantity": "energy", "unit": "kWh"})
    del raw["enterprises"][0]["devices"][1]  # E01-L1 leaves the model: kept in the database
    summary = init_db(db, parse_park(raw, data_dir=REPO / "data"))
    assert summary["points"] == 6 and summary["stale_points"] == 1
    after = point_ids(db)
    assert {t: after[t] for t in ids} == ids
    assert after["E02-M0.e_kwh"] not in ids.values()
    with db.connect() as c:
        assert c.execute(sa.text("select name from enterprise where id = 'E01'")).scalar_one() == "钢厂（改名）"
        bld = c.execute(sa.text(
            "select b.code, b.height_m, b.footprint_m from device d join building b on b.id = d.building_id "
            "where d.id = 'E01-M0'")).one()
    assert bld[0] == "B1" and bld[1] == 18.0 and bld[2] == "[[0.0, 0.0], [40.0, 0.0], [40.0, 20.0]]"


def test_sync_without_addresses_keeps_the_stored_ones(engine, tiny_park):
    # the demo (and the gateway's set-up) stores the point maps' addresses; a later `anning db init` (an upgrade)
    # has none at hand and must not blank them
    init_db(engine, tiny_park)
    tag = sorted(point_ids(engine))[0]
    init_db(engine, tiny_park, {tag: {"address": "40001", "dtype": "int32", "scale": 0.1, "unit_id": 7}})
    init_db(engine, tiny_park)
    with engine.connect() as c:
        row = c.execute(sa.text("select p.address, p.dtype, p.scale, d.unit_id from point p "
                                "join device d on d.id = p.device_id where p.tag = :t"), {"t": tag}).one()
    assert tuple(row) == ("40001", "int32", 0.1, 7)


def _insert_0001_rows(conn, dialect: str) -> None:
    json_empty, false = ("'{}'", "0") if dialect == "sqlite" else ("'{}'::json", "false")
    # 2026-01-01T00:00:00Z = 20454 days * 86400 s = 1,767,225,600 s since the epoch
    ts = "1767225600000" if dialect == "sqlite" else "'2026-01-01 00:00:00+00'"
    conn.exec_driver_sql("insert into enterprise (id, name, name_en, sector) values ('E9', '九号', 'nine', 'steel')")
    conn.exec_driver_sql(
        "insert into device (id, enterprise_id, building_id, name, type, carrier, protocol, unit_id, params) "
        f"values ('D9', 'E9', null, 'meter', 'main_meter', 'electricity', 'modbus', 3, {json_empty})")
    conn.exec_driver_sql(
        "insert into point (id, tag, device_id, code, quantity, unit, min, max, scale, address, dtype, writable) "
        f"values (7, 'D9.p_kw', 'D9', 'p_kw', 'active_power', 'kW', null, 5000, 0.1, '40001', 'int16', {false})")
    conn.exec_driver_sql(f"insert into measurement (point_id, ts, value, quality) values (7, {ts}, 12.5, 0)")


def test_migration_keeps_rows_from_0001(engine):
    upgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert not sa.inspect(engine).has_table("rollup_15min")
    with engine.begin() as c:
        _insert_0001_rows(c, engine.dialect.name)
    upgrade(engine, "head")
    assert current_revision(engine) == "0008"
    with engine.connect() as c:
        p = c.execute(sa.text("select id, tag, device_id, max, scale, address, dtype from point")).one()
        m = c.execute(sa.text("select point_id, value, quality from measurement")).one()
        e = c.execute(sa.text("select id, name, sector from enterprise")).one()
    assert tuple(p) == (7, "D9.p_kw", "D9", 5000.0, 0.1, "40001", "int16")
    assert tuple(m) == (7, 12.5, 0)
    assert tuple(e) == ("E9", "九号", "steel")
    wide = read_series(engine, ["D9.p_kw"], "2026-01-01T00:00Z", "2026-01-02T00:00Z")
    assert wide.index[0] == dt.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert wide.iloc[0, 0] == 12.5
    assert count_rows(engine, "rollup_15min") == 0


def test_downgrade_to_base_and_back(engine):
    upgrade(engine)
    downgrade(engine, "0001")
    assert current_revision(engine) == "0001"
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version", *ASSET_TABLES, "measurement"}
    downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == "0008"


def test_models_match_migrations(engine):
    upgrade(engine)
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert set(sa.inspect(engine).get_table_names()) == set(TABLES) | {"alembic_version"}


def test_utc_datetime_column_rejects_naive_and_returns_utc(db):
    audit = TABLES["audit_log"]
    naive = dt.datetime(2026, 3, 1, 12, 0)
    with pytest.raises(sa.exc.StatementError) as info, db.begin() as c:
        c.execute(audit.insert().values(ts=naive, action="test", target="x"))
    assert isinstance(info.value.orig, StoreError) and "2026, 3, 1, 12, 0" in str(info.value.orig)
    beijing = dt.timezone(dt.timedelta(hours=8))
    with db.begin() as c:
        c.execute(audit.insert().values(ts=dt.datetime(2026, 3, 1, 8, 0, tzinfo=beijing), action="t", target="x"))
        got = c.execute(sa.select(audit.c.ts)).scalar_one()
    assert got == dt.datetime(2026, 3, 1, 0, 0, tzinfo=UTC) and got.utcoffset() == dt.timedelta(0)
    assert count_rows(db, "audit_log") == 1


def test_sqlite_pragmas(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'sub' / 'dir' / 'x.sqlite'}")
    with eng.connect() as c:
        assert c.exec_driver_sql("pragma journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("pragma foreign_keys").scalar() == 1
        assert c.exec_driver_sql("pragma synchronous").scalar() == 1  # NORMAL
        assert c.exec_driver_sql("pragma busy_timeout").scalar() > 0
    assert (tmp_path / "sub" / "dir" / "x.sqlite").exists()
    eng.dispose()


def test_make_engine_default_url_from_settings(tmp_path, monkeypatch):
    from anning_lib.config import get_settings

    monkeypatch.setenv("ANNING_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("ANNING_DB_URL", raising=False)
    get_settings.cache_clear()
    try:
        eng = make_engine()
        assert eng.url.database == str((tmp_path / "var" / "anning.sqlite").resolve())
        assert (tmp_path / "var").is_dir()
    finally:
        get_settings.cache_clear()


def test_normalise_url():
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(StoreError, match="mysql"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(StoreError, match="cannot parse"):
        normalise_url("not a url")


def test_count_rows_unknown_table(db):
    with pytest.raises(StoreError, match="'nope'"):
        count_rows(db, "nope")
