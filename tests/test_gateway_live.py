"""The whole chain as `anning demo` runs it: simulated devices on Modbus TCP, OPC UA (Basic256Sha256
Sign&Encrypt) and MQTT (Mosquitto, TLS), the gateway ingesting all three into the store, health rows written,
and a storage setpoint written over Modbus reaching the simulated storage and coming back as telemetry."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO, maps_on_free_ports, until

from anning_lib.ingest.control import write_setpoint
from anning_lib.ingest.gateway import Gateway
from anning_lib.park import load_park
from anning_lib.sim import ParkSimulator
from anning_lib.sim.live import LiveValues
from anning_lib.sim.serve import SimServers
from anning_lib.store import init_db

PARK = load_park()


def latest(gw, tag: str) -> float | None:
    """The newest value of ``tag`` the gateway has accepted."""
    s = gw.intake.last.get(tag)
    return None if s is None else round(s.value, 1)


def test_simulated_park_through_all_three_protocols(engine, tmp_path):
    init_db(engine, PARK)
    maps = maps_on_free_ports()
    today = pd.Timestamp.now(tz="Asia/Shanghai").date()
    live = LiveValues(ParkSimulator(PARK, 11, REPO / "data"), today)

    async def go():
        servers = SimServers(PARK, maps, live, tmp_path, tick_s=0.5, publish_s=1.0)
        await servers.start()
        gw = Gateway(PARK, maps, engine, tmp_path, health_s=1.0)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(servers.run(stop)), asyncio.create_task(gw.run(stop))]
        try:
            await until(lambda: all(h.connected and h.n_samples for h in gw.health[1:]), "every connection up")
            await until(lambda: latest(gw, "SES.soc_frac") is not None, "the storage's state of charge")
            # charge a storage below half full, discharge one above (the simulated SES is full in the valley
            # hours: a charge setpoint would be clipped to 0)
            value = -8_000.0 if latest(gw, "SES.soc_frac") < 0.5 else 8_000.0
            readback = await write_setpoint(gw.adapter_for("SES.p_set_kw"), PARK, engine, "SES.p_set_kw", value)
            await until(lambda: latest(gw, "SES.p_kw") == value, "storage following the setpoint")
            await asyncio.sleep(0.3)                   # one more writer flush
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await servers.stop()
        return gw, readback, value

    gw, readback, value = asyncio.run(go())
    assert readback == pytest.approx(value, abs=0.05)
    for h in gw.health[1:]:
        assert h.n_samples > 0 and h.n_bad == 0, h
    with engine.connect() as c:
        per_protocol = dict(c.execute(sa.text(
            "select d.protocol, count(distinct p.id) from measurement m join point p on p.id = m.point_id "
            "join device d on d.id = p.device_id group by d.protocol")).all())
        ses = c.execute(sa.text(
            "select p.code, m.value from measurement m join point p on p.id = m.point_id "
            "where p.device_id = 'SES' and p.code in ('p_kw', 'p_set_kw') order by m.ts desc limit 2")).all()
        sources = c.execute(sa.text("select source from ingest_health order by source")).scalars().all()
    # every mapped point of every protocol arrived (counts from ingest check: 98 Modbus, 60 OPC UA, 26 MQTT)
    assert per_protocol == {"modbus": 98, "opcua": 60, "mqtt": 26}
    assert dict((code, v) for code, v in ses) == pytest.approx({"p_kw": value, "p_set_kw": value}, abs=0.05)
    assert sources == ["park-broker", "sim-modbus", "sim-opcua", "writer"]
