"""Shared fixtures.

Store tests run against SQLite (a file in ``tmp_path``) and PostgreSQL. The PostgreSQL server is named by
``ANNING_TEST_PG_URL`` (``scripts/with-postgres.sh`` starts a throwaway one); each test gets its own
database, created and dropped around it, so xdist workers never share state. Without the variable the
PostgreSQL cases skip, unless ``ANNING_REQUIRE_PG=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

# scikit-learn's gradient boosting runs OpenMP threads; under pytest-xdist (one worker per core) more threads
# than cores thrash the 2-core CI machine (a 7 s backtest took minutes), so each worker uses one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent


def pg_url_or_skip() -> str:
    url = os.environ.get("ANNING_TEST_PG_URL")
    if not url:
        if os.environ.get("ANNING_REQUIRE_PG") == "1":
            pytest.fail("ANNING_REQUIRE_PG=1 but ANNING_TEST_PG_URL is not set")
        pytest.skip("PostgreSQL: ANNING_TEST_PG_URL not set")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """An engine on a fresh, empty database (not migrated)."""
    from anning_lib.store import make_engine

    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'store.sqlite'}")
        yield eng
        eng.dispose()
        return
    from anning_lib.store.engine import normalise_url

    server = normalise_url(pg_url_or_skip())
    name = f"anning_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng = make_engine(server.set(database=name))
    try:
        yield eng
    finally:
        eng.dispose()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def tiny_park_dict() -> dict:
    """A valid park of 2 enterprises, 4 devices and 6 points (tags G0.p_kw, G0.e_kwh, E01-M0.p_kw,
    E01-M0.e_kwh, E01-L1.p_kw, E02-M0.p_kw)."""
    def pts(*specs):
        return [{"id": i, "quantity": q, "unit": u, "min": 0.0, "max": 1e5} for i, q, u, _a in specs]

    return {
        "meta": {"name": "测试园区", "name_en": "test park", "version": "t1", "year": 2026, "source": "tests",
                 "site": {"latitude_deg": 24.9, "longitude_deg": 102.5, "altitude_m": 1850, "origin": "gate"}},
        "park_devices": [
            {"id": "G0", "name": "并网点", "type": "grid_meter", "protocol": "modbus",
             "points": pts(("p_kw", "active_power", "kW", 0), ("e_kwh", "energy", "kWh", 2))},
        ],
        "enterprises": [
            {"id": "E01", "name": "钢厂", "name_en": "steel works", "sector": "steel",
             "buildings": [{"id": "B1", "name": "电炉车间", "footprint_m": [[0, 0], [40, 0], [40, 20]],
                            "height_m": 18}],
             "devices": [
                 {"id": "E01-M0", "name": "总表", "type": "main_meter", "protocol": "modbus",
                  "building": "B1", "points": pts(("p_kw", "active_power", "kW", 0), ("e_kwh", "energy", "kWh", 2))},
                 {"id": "E01-L1", "name": "电炉", "type": "process_line", "protocol": "opcua",
                  "params": {"profile": "steel_eaf", "rated_kw": 5000, "load_factor": 0.7},
                  "points": pts(("p_kw", "active_power", "kW", "ns=2;s=E01-L1.p_kw"))},
             ]},
            {"id": "E02", "name": "水厂", "name_en": "water works", "sector": "utilities",
             "devices": [
                 {"id": "E02-M0", "name": "总表", "type": "main_meter", "protocol": "mqtt",
                  "points": pts(("p_kw", "active_power", "kW", "anning/E02/p_kw"))},
             ]},
        ],
    }


@pytest.fixture
def tiny_park():
    from anning_lib.park import parse_park

    return parse_park(tiny_park_dict(), data_dir=REPO / "data")


@pytest.fixture
def db(engine, tiny_park):
    """``engine`` migrated to head with ``tiny_park``'s assets."""
    from anning_lib.store import init_db

    init_db(engine, tiny_park)
    return engine


@pytest.fixture
def admin(db):
    """``(engine, actor)``: the tiny park's store with an admin user ``admin1``."""
    from anning_lib.auth.access import Actor, ensure_roles
    from anning_lib.store.schema import TABLES

    ensure_roles(db)
    with db.begin() as c:
        uid = c.execute(sa.insert(TABLES["app_user"]).values(username="admin1", role_id="admin", is_active=True,
                                                             display_name="admin1")
                        .returning(TABLES["app_user"].c.id)).scalar_one()
    return db, Actor(uid, "admin", None, "admin1")


def free_port() -> int:
    """A TCP port free on loopback now (tests run in parallel: never use fixed ports)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    """A real Mosquitto broker with TLS (demo CA) and password authentication, on a free loopback port.

    Users: ``gateway`` / ``gw-secret`` and ``sim`` / ``sim-secret``; the CA is ``tmp_path / "pki" / "ca.crt"``.
    """
    from anning_lib.sim.mqtt_broker import MosquittoBroker, mosquitto_available

    if not mosquitto_available():
        pytest.fail("mosquitto is not installed (make system-deps installs it)")
    b = MosquittoBroker(tmp_path / "broker", free_port(), {"gateway": "gw-secret", "sim": "sim-secret"},
                        tmp_path / "pki")
    b.start()
    yield b
    b.stop()


def maps_on_free_ports():
    """The demo's point maps with every server on a free port (Modbus, OPC UA, MQTT)."""
    from anning_lib.ingest.pointmap import load_pointmaps
    from anning_lib.park import load_park

    park = load_park()
    maps = load_pointmaps(REPO / "ingest", park)
    mb = maps.modbus.connections[0].model_copy(update={"port": free_port()})
    ua_port = free_port()
    ua = maps.opcua.connections[0].model_copy(update={"endpoint": f"opc.tcp://127.0.0.1:{ua_port}/anning/"})
    mq = maps.mqtt.connections[0].model_copy(update={"port": free_port(), "client_id": f"gw-{ua_port}"})
    return maps.model_copy(update={
        "modbus": maps.modbus.model_copy(update={"connections": [mb]}),
        "opcua": maps.opcua.model_copy(update={"connections": [ua]}),
        "mqtt": maps.mqtt.model_copy(update={"connections": [mq]})})


async def until(cond, what: str, timeout_s: float = 20.0) -> None:
    """Wait until ``cond()`` is true, polling every 50 ms; AssertionError naming ``what`` after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def simulated_store(path: Path, first, end, activity_months=(), *, rollups: bool = False):
    """A SQLite store at ``path`` with the Anning park simulated (15-minute means) for local days ``[first, end)``,
    the demo's entered activity data of ``activity_months`` and (``rollups``) the rollups refreshed; returns
    ``(engine, park)``."""
    import pandas as pd

    from anning_lib.park import load_park
    from anning_lib.sim import ParkSimulator, to_long
    from anning_lib.sim.activity import write_demo_activity
    from anning_lib.store import (
        init_db,
        make_engine,
        refresh_rollups,
        write_measurements,
    )

    engine, park = make_engine(f"sqlite:///{path}"), load_park()
    init_db(engine, park)
    for frame in ParkSimulator(park, 20261125, REPO / "data").run(first, end, "15min"):
        write_measurements(engine, to_long(frame))
    for month in activity_months:
        write_demo_activity(engine, park, REPO / "data", month)
    if rollups:
        tz = park.meta.site.timezone
        refresh_rollups(engine, pd.Timestamp(first, tz=tz), pd.Timestamp(end, tz=tz))
    return engine, park


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright, one per test module (:mod:`portal_harness`)."""
    from playwright.sync_api import sync_playwright
    from portal_harness import launch

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()
