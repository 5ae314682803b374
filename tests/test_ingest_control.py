"""The control path: bounded, advisory-aware, read back from a real Modbus server, audited; and the simulated
storage obeying a written setpoint with the meters upstream moving by the same power."""

from __future__ import annotations

import asyncio
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO, free_port

from anning_lib.errors import IngestError
from anning_lib.ingest.control import check_setpoint, write_setpoint
from anning_lib.ingest.modbus import ModbusPoller
from anning_lib.ingest.model import SourceHealth
from anning_lib.ingest.pointmap import load_pointmaps
from anning_lib.park import load_park
from anning_lib.sim import ParkSimulator
from anning_lib.sim.live import LiveValues
from anning_lib.sim.modbus_server import SimModbusServer
from anning_lib.store import init_db

PARK = load_park()
MAPS = load_pointmaps(REPO / "ingest", PARK)


@pytest.mark.parametrize("tag, value, reason", [
    ("SES.p_kw", 100.0, "not writable"),
    ("SES.p_set_kw", 25_000.5, "outside the limits"),      # SES p_set_kw max is 25,000 kW
    ("SES.p_set_kw", float("nan"), "finite number"),
    ("E05-BESS.p_set_kw", 500.0, "advisory"),             # E05's storage is advisory in the park model
    ("NOPE.p_set_kw", 1.0, "no such point"),
])
def test_refused_setpoints_say_why(tag, value, reason):
    with pytest.raises(IngestError, match=reason):
        check_setpoint(PARK, tag, value)


def test_setpoint_written_read_back_and_audited(db_engine_with_park):
    engine = db_engine_with_park
    conn = MAPS.modbus.connections[0].model_copy(update={"port": free_port()})

    async def go():
        server = SimModbusServer(conn)
        await server.start()
        try:
            poller = ModbusPoller(conn, lambda s, h, ack=None: None, SourceHealth("t", "modbus"))
            readback = await write_setpoint(poller, PARK, engine, "SES.p_set_kw", -12_345.6, user_id=None)
            with pytest.raises(IngestError, match="outside the limits"):
                await write_setpoint(poller, PARK, engine, "SES.p_set_kw", -30_000.0)
            return readback, server.setpoints()
        finally:
            await server.stop()

    readback, on_device = asyncio.run(go())
    assert readback == pytest.approx(-12_345.6, abs=0.05)          # int32 at 0.1 kW resolution
    assert on_device["SES.p_set_kw"] == pytest.approx(-12_345.6, abs=0.05)   # the refused write changed nothing
    with engine.connect() as c:
        rows = c.execute(sa.text("select action, target, detail from audit_log order by id")).all()
    assert [r.action for r in rows] == ["setpoint_written", "setpoint_refused"]
    assert all(r.target == "SES.p_set_kw" for r in rows)


@pytest.fixture
def db_engine_with_park(engine):
    init_db(engine, PARK)
    return engine


def test_simulated_storage_follows_a_written_setpoint():
    day = date(2026, 6, 10)
    t0 = pd.Timestamp("2026-06-10T02:00:00Z")            # 10:00 in Anning: flat tariff band
    ref = LiveValues(ParkSimulator(PARK, 7, REPO / "data"), day)        # same seed, no setpoint: what would have happened
    ctl = LiveValues(ParkSimulator(PARK, 7, REPO / "data"), day)
    ref.at(t0)
    ctl.at(t0)
    soc0 = ctl.at(t0)["SES.soc_frac"]
    ctl.set_setpoint("SES", -10_000.0)                   # charge at 10 MW
    t1 = t0 + pd.Timedelta("1h")
    r, c = ref.at(t1), ctl.at(t1)
    assert c["SES.p_kw"] == -10_000.0
    # Hand calculation: charging 10,000 kW for 1 h at eta_c 0.95 into 50,000 kWh raises SOC by 0.19.
    assert c["SES.soc_frac"] == pytest.approx(soc0 + 10_000 * 1.0 * 0.95 / 50_000, abs=1e-9)
    # The grid meter draws exactly the extra charging power (sign: p_kw > 0 discharges).
    assert c["GRID.p_kw"] - r["GRID.p_kw"] == pytest.approx(-(c["SES.p_kw"] - r["SES.p_kw"]), abs=1e-6)
    assert c["E01-MM.p_kw"] == r["E01-MM.p_kw"]          # other enterprises are untouched


def test_live_readings_interpolate_between_simulated_minutes():
    day = date(2026, 6, 10)
    live = LiveValues(ParkSimulator(PARK, 7, REPO / "data"), day)
    t = pd.Timestamp("2026-06-10T02:00:00Z")
    a, b = live.at(t)["E01-EAF.p_kw"], live.at(t + pd.Timedelta("1min"))["E01-EAF.p_kw"]
    mid = LiveValues(ParkSimulator(PARK, 7, REPO / "data"), day).at(t + pd.Timedelta("30s"))["E01-EAF.p_kw"]
    assert a != b
    assert mid == pytest.approx((a + b) / 2)      # halfway between the minutes: the mean of the two readings


def test_history_of_today_runs_up_to_now_without_gap():
    day = date(2026, 6, 10)
    live = LiveValues(ParkSimulator(PARK, 7, REPO / "data"), day)
    now = pd.Timestamp("2026-06-10T02:37:30Z")
    rows = live.history(now, "15min")
    ts = sorted(rows["ts"].unique())
    # local midnight is 16:00 UTC the day before: quarters 16:00 .. 02:15 (42 of them), then 02:30 .. 02:37 by minute
    assert ts[0] == pd.Timestamp("2026-06-09T16:00:00Z") and len(ts) == 42 + 8
    assert ts[41] == pd.Timestamp("2026-06-10T02:15:00Z") and ts[-1] == pd.Timestamp("2026-06-10T02:37:00Z")


def test_one_shot_setpoint_without_a_gateway(db_engine_with_park, tmp_path):
    from anning_lib.ingest.control import setpoint_once

    engine = db_engine_with_park
    conn = MAPS.modbus.connections[0].model_copy(update={"port": free_port()})
    maps = MAPS.model_copy(update={"modbus": MAPS.modbus.model_copy(update={"connections": [conn]})})

    async def go():
        server = SimModbusServer(conn)
        await server.start()
        try:
            got = await setpoint_once(maps, PARK, engine, tmp_path, "SES.p_set_kw", 5_000.0)
            with pytest.raises(IngestError, match="no gateway connection maps"):
                await setpoint_once(maps.model_copy(update={"modbus": None}), PARK, engine, tmp_path,
                                    "SES.p_set_kw", 5_000.0)
            return got, server.setpoints()["SES.p_set_kw"]
        finally:
            await server.stop()

    readback, on_device = asyncio.run(go())
    assert readback == on_device == 5_000.0
