"""Alarms on the live park: faults injected into the simulator (a stuck meter, a spike, a fault word, a meter out
of calibration breaking the energy balance, the Modbus server stopped), seen through the real gateway (Modbus,
OPC UA, MQTT), raised within their on-delay, cleared after recovery; a device's communication loss stands for its
point alarms (flood suppression)."""

from __future__ import annotations

import asyncio
import time

import pandas as pd
from conftest import REPO, maps_on_free_ports, until

from anning_lib.ingest.gateway import Gateway
from anning_lib.park import load_park
from anning_lib.quality.alarms import list_alarms
from anning_lib.quality.rules import load_rules
from anning_lib.quality.service import AlarmService
from anning_lib.sim import ParkSimulator
from anning_lib.sim.live import LiveValues
from anning_lib.sim.serve import SimServers
from anning_lib.store import init_db

PARK = load_park()

RULES = [  # short delays so that the test runs in seconds; the park's own rules are in data/alarms/rules.yaml
    {"id": "stuck", "name": "meter stuck", "target": {"tag": "GRID.p_kw"},
     "condition": {"kind": "flatline", "window_s": 3, "min_change": 0}, "severity": "medium",
     "on_delay_s": 1, "off_delay_s": 1},
    {"id": "spike", "name": "spike", "target": {"tag": "E10-MM.p_kw"},
     "condition": {"kind": "spike", "max_change_per_s": 3000}, "severity": "medium", "on_delay_s": 0,
     "off_delay_s": 2},
    {"id": "fault", "name": "device fault", "target": {"tag": "SES.fault"}, "condition": {"kind": "fault"},
     "severity": "high", "on_delay_s": 1, "off_delay_s": 1},
    {"id": "balance", "name": "energy balance", "target": {"device": "E05-MM"},
     "condition": {"kind": "balance", "tolerance_frac": 0.05, "min_kw": 500}, "severity": "medium",
     "on_delay_s": 2, "off_delay_s": 2},
    {"id": "stale", "name": "no data", "target": {"tag": "SES.p_kw"}, "condition": {"kind": "stale", "max_age_s": 3},
     "severity": "medium", "on_delay_s": 4},
    {"id": "comm", "name": "communication lost", "target": {"device_type": "bess"},
     "condition": {"kind": "comm_loss"}, "severity": "high"},
]


def fast_modbus(maps):
    """Every Modbus device polled every 0.5 s (the park map polls meters every 5 s)."""
    conn = maps.modbus.connections[0]
    devices = [d.model_copy(update={"poll_s": 0.5}) for d in conn.devices]
    conns = [conn.model_copy(update={"devices": devices})]
    return maps.model_copy(update={"modbus": maps.modbus.model_copy(update={"connections": conns})})


def test_injected_faults_raise_and_clear(engine, tmp_path):
    init_db(engine, PARK)
    rules, problems = load_rules(RULES, PARK)
    assert problems == [] and len(rules) == len(RULES)
    maps = fast_modbus(maps_on_free_ports())
    live = LiveValues(ParkSimulator(PARK, 3, REPO / "data"), pd.Timestamp.now(tz="Asia/Shanghai").date())
    timeline: dict[str, float] = {}

    def state(rule_id: str, target: str) -> str | None:
        rows = [r for r in list_alarms(engine, open_only=False) if r["rule_id"] == rule_id and r["target"] == target]
        return rows[0]["state"] if rows else None

    async def scenario(servers, service):
        async def raised(rule_id, target, fault, recover, on_delay_s):
            t0 = time.monotonic()
            fault()
            await until(lambda: state(rule_id, target) == "active_unack", f"{rule_id} raised", 20)
            timeline[rule_id] = time.monotonic() - t0
            assert timeline[rule_id] >= on_delay_s          # not before its on-delay
            recover()
            await until(lambda: state(rule_id, target) == "cleared_unack", f"{rule_id} cleared", 20)

        await raised("stuck", "GRID.p_kw", lambda: live.inject("GRID.p_kw", "stuck"),
                     lambda: live.inject("GRID.p_kw", "clear"), 1 + 3)
        # +15,000 kW in one reading 0.5 s after the last: 30,000 kW/s > 3,000 kW/s
        base = service.alarms.by_tag["E10-MM.p_kw"][0].detector.detail.get("value") or 5_000.0
        await raised("spike", "E10-MM.p_kw", lambda: live.inject("E10-MM.p_kw", "set", min(base + 15_000, 26_000)),
                     lambda: live.inject("E10-MM.p_kw", "clear"), 0)
        await raised("fault", "SES.fault", lambda: live.inject("SES.fault", "set", 4.0),
                     lambda: live.inject("SES.fault", "clear"), 1)
        # E05's main meter reads 40 % high: the sub-meters explain 1/1.4 of it, 29 % off > 5 % tolerance
        await raised("balance", "E05-MM", lambda: live.inject("E05-MM.p_kw", "offset", 0.4 * abs(
            service.alarms.by_tag["E05-MM.p_kw"][0].detector.detail.get("main_kw", 5_000.0))),
            lambda: live.inject("E05-MM.p_kw", "clear"), 2)
        # communication loss: the Modbus server stops; the storages on it raise one alarm each, and SES.p_kw's
        # stale alarm (on-delay 4 s) is held back as part of SES's communication loss
        modbus = servers.modbus[0]
        await modbus.stop()
        await until(lambda: state("comm", "SES") == "active_unack", "communication loss raised", 30)
        await asyncio.sleep(5)
        assert state("stale", "SES.p_kw") is None
        await modbus.start()
        await until(lambda: state("comm", "SES") == "cleared_unack", "communication loss cleared", 30)

    async def go():
        servers = SimServers(PARK, maps, live, tmp_path, tick_s=0.5, publish_s=1.0)
        await servers.start()
        gw = Gateway(PARK, maps, engine, tmp_path, health_s=1.0)
        service = AlarmService(engine, PARK, rules, fault_codes={"bess": {2: "cell over-temperature (test)"}})
        gw.intake.listeners.append(service)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(servers.run(stop)), asyncio.create_task(gw.run(stop)),
                 asyncio.create_task(service.run(stop, gw, tick_s=0.25))]
        try:
            await until(lambda: all(h.connected and h.n_samples for h in gw.health[1:]), "every connection up")
            await asyncio.sleep(4)              # the detectors see normal data first
            await scenario(servers, service)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            await servers.stop()
        return service

    service = asyncio.run(go())
    assert service.alarms.suppressed >= 1
    # one alarm per fault, none twice
    rows = list_alarms(engine, open_only=False)
    keys = [(r["rule_id"], r["target"]) for r in rows if r["rule_id"] != "comm"]
    assert sorted(keys) == sorted([("stuck", "GRID.p_kw"), ("spike", "E10-MM.p_kw"), ("fault", "SES.fault"),
                                   ("balance", "E05-MM")])
    comm = {r["target"] for r in rows if r["rule_id"] == "comm"}
    assert comm == {"SES", "E05-BESS", "E10-BESS", "E12-BESS"}          # the storages are all on Modbus
    fault = next(r for r in rows if r["rule_id"] == "fault")
    assert "0x0004" in fault["message"] and "cell over-temperature (test)" in fault["message"]   # 4 = bit 2
    print({k: round(v, 1) for k, v in timeline.items()})



def test_out_of_range_readings_are_not_stored_but_raise_the_range_alarm(engine):
    from anning_lib.ingest.gateway import Intake
    from anning_lib.ingest.model import Sample, SourceHealth

    init_db(engine, PARK)
    rules, _ = load_rules([{"id": "r", "name": "SES power out of range", "target": {"tag": "SES.p_kw"},
                            "condition": {"kind": "range"}, "severity": "medium"}], PARK)
    stored = []

    class Writer:
        def submit(self, samples, ack=None):
            stored.extend(samples)

    intake = Intake(PARK, Writer())
    service = AlarmService(engine, PARK, rules)
    intake.listeners.append(service)
    # SES.p_kw's limits in the park model are +-26,250 kW: 30,000 kW is refused by the store but seen by the alarm
    intake([Sample("SES.p_kw", 1_000_000, 30_000.0, 0, 1_000.0)], SourceHealth("t", "modbus"))
    assert stored == []
    changed = service.store(service.step(1_001.0))
    assert [a for _i, a in changed] == ["raise"]
