"""The MPC against the simulated park on a real Modbus server: plans stored, setpoints written to the storages
in auto mode and read back, proposed only for advisory ones, and the simulated state of charge responding."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO, free_port

from anning_lib.dispatch.guard import GuardState, guard_tick
from anning_lib.dispatch.mpc import MpcConfig, mpc_step, plan_all, plan_site
from anning_lib.dispatch.sites import sites_from_park
from anning_lib.ingest.modbus import ModbusPoller
from anning_lib.ingest.model import SourceHealth
from anning_lib.ingest.pointmap import load_pointmaps
from anning_lib.park import load_park
from anning_lib.sim import ParkSimulator, to_long
from anning_lib.sim.live import LiveValues
from anning_lib.sim.serve import SimServers
from anning_lib.store import init_db, write_measurements
from anning_lib.store.timeseries import refresh_rollups

PARK = load_park()
MAPS = load_pointmaps(REPO / "ingest", PARK)
NOW = pd.Timestamp("2026-06-09T23:05:00Z")      # 07:05 in Anning, 10 June: the morning peak band (07:00-09:00)
SITES = sites_from_park(PARK, REPO / "data")


def stored_park(engine, now: pd.Timestamp = NOW, outage: tuple[str, pd.Timestamp] | None = None) -> LiveValues:
    """Eight simulated days before 10 June and 10 June up to ``now`` in the store; the live park from then on.
    ``outage``: (tag, since) leaves that meter's readings from ``since`` on out of the store."""
    init_db(engine, PARK)
    sim = ParkSimulator(PARK, 7, REPO / "data")
    keep = (lambda rows: rows) if outage is None else (
        lambda rows: rows[~((rows["tag"] == outage[0]) & (rows["ts"] >= outage[1]))])
    for frame in sim.run(date(2026, 6, 2), date(2026, 6, 10), "15min"):
        write_measurements(engine, keep(to_long(frame)))
    live = LiveValues(sim, date(2026, 6, 10))
    write_measurements(engine, keep(live.history(now, "15min")))
    refresh_rollups(engine, pd.Timestamp("2026-06-02", tz="Asia/Shanghai"), now)
    return live


def modbus_only(port: int):
    conns = [c.model_copy(update={"port": port}) for c in MAPS.modbus.connections]
    return MAPS.model_copy(update={"modbus": MAPS.modbus.model_copy(update={"connections": conns}),
                                   "opcua": None, "mqtt": None})


def test_mpc_step_writes_reads_back_and_the_storage_responds(engine, tmp_path):
    live = stored_park(engine)
    maps = modbus_only(free_port())
    pollers = [ModbusPoller(c, lambda *_a, **_k: None, SourceHealth(c.name, "modbus")) for c in maps.modbus.connections]

    def adapter_for(tag):
        dev = tag.split(".")[0]
        return next((p for p in pollers if any(d.device == dev for d in p.conn.devices)), None)

    async def go():
        servers = SimServers(PARK, maps, live, tmp_path)
        await servers.start(now=NOW)
        try:
            before = servers.push(NOW, publish=False)
            plans = await mpc_step(engine, PARK, SITES, adapter_for, MpcConfig(), now=NOW)
            servers.push(NOW + pd.Timedelta("1s"), publish=False)              # the simulator takes the setpoints
            after = servers.push(NOW + pd.Timedelta("15min 1s"), publish=False)
            return before, plans, after
        finally:
            await servers.stop()

    before, plans, after = asyncio.run(go())
    cmds = {c.device_id: c for p in plans for c in p.commands}
    assert set(cmds) == {"SES", "E05-BESS", "E10-BESS", "E12-BESS"}
    # E05 and E12 are advisory in the park model: proposed, never written
    assert cmds["E05-BESS"].status == cmds["E12-BESS"].status == "proposed"
    assert cmds["E05-BESS"].readback_kw is None
    for dev in ("SES", "E10-BESS"):
        assert cmds[dev].status == "verified"
        assert cmds[dev].readback_kw == pytest.approx(cmds[dev].setpoint_kw, abs=0.05)   # 0.1 kW registers
    # At 07:05 the storages are full from the simulator's night charge; peak 1.5x flat vs the valley refill at
    # 12:00 at 0.5x: 0.5 / (0.95 * 0.95) = 0.55 < 1.5 per kWh, so discharging at full power now pays.
    ses = PARK.device("SES").p
    assert cmds["SES"].setpoint_kw == pytest.approx(ses.p_max_kw)
    # SOC responds: 25 MW for 15 min from a 50 MWh store through 0.95 discharge efficiency
    # d_soc = 25,000 kW * 0.25 h / (0.95 * 50,000 kWh) = 0.131579 (plus one second's worth, 0.000146)
    d_soc = before["SES.soc_frac"] - after["SES.soc_frac"]
    assert d_soc == pytest.approx(25_000 * (900 + 1) / 3600 / (0.95 * 50_000), abs=2e-3)
    with engine.connect() as c:
        sched = c.execute(sa.text("select strategy, status, plan from dispatch_schedule")).all()
        rows = c.execute(sa.text("select device_id, status, mode from dispatch_command")).all()
        audit = c.execute(sa.text("select target from audit_log where action = 'setpoint_written'")).all()
    assert sorted(r.status for r in sched) == ["advisory", "advisory", "executed", "executed"]
    assert {(r.device_id, r.status, r.mode) for r in rows} == {
        ("SES", "verified", "auto"), ("E10-BESS", "verified", "auto"),
        ("E05-BESS", "proposed", "advisory"), ("E12-BESS", "proposed", "advisory")}
    assert sorted(r.target for r in audit) == ["E10-BESS.p_set_kw", "SES.p_set_kw"]


def test_a_site_without_recent_data_idles_and_the_others_are_planned(engine):
    # E05's main meter silent for the last two hours: its gross load is unknown, so no plan: idle (0 kW)
    stored_park(engine, outage=("E05-MM.p_kw", NOW - pd.Timedelta("2h")))
    plans = {p.site.connection: p for p in plan_all(engine, SITES, NOW, MpcConfig())}
    assert plans["E05"].schedule is None and "no plan" in plans["E05"].fallback and "E05-MM.p_kw" in \
        plans["E05"].fallback
    assert plans["E05"].setpoints_kw() == {"E05-BESS": 0.0}
    assert all(plans[s].schedule is not None and plans[s].fallback is None for s in ("E10", "E12", "park"))


def test_infeasible_site_falls_back_to_the_rule_and_says_so(engine):
    stored_park(engine)
    site = next(s for s in SITES if s.connection == "E10")
    # an import limit of 9.5 kW (10 kVA x 0.95) behind a plant drawing megawatts: no schedule can keep it
    meter = type(site.meter).model_validate(site.meter.model_dump() | {"params": site.meter.params | {"rated_kva": 10.0}})
    plan = plan_site(engine, dataclasses.replace(site, meter=meter), NOW, MpcConfig())
    assert plan.fallback is not None and "infeasible" in plan.fallback
    assert plan.schedule.strategy == "rule"
    # the rule still discharges at full power in the peak band to bring the import down
    assert plan.schedule.setpoints_kw(0)["E10-BESS"] == pytest.approx(PARK.device("E10-BESS").p.p_max_kw)


def test_peak_guard_raises_the_setpoint_by_the_excess_and_returns_to_the_plan(engine, tmp_path):
    now = pd.Timestamp("2026-06-10T05:05:00Z")            # 13:05 in Anning: valley band
    live = stored_park(engine, now)
    maps = modbus_only(free_port())
    pollers = [ModbusPoller(c, lambda *_a, **_k: None, SourceHealth(c.name, "modbus")) for c in maps.modbus.connections]

    def adapter_for(tag):
        return pollers[0]

    async def go():
        servers = SimServers(PARK, maps, live, tmp_path)
        await servers.start(now=now)
        try:
            state = GuardState()
            await mpc_step(engine, PARK, SITES, adapter_for, MpcConfig(), now=now, guard=state)
            plan, threshold = state.planned_kw["E10-BESS"], state.threshold_kw["E10"]
            readings = {"E10-MM.p_kw": threshold + 1_500.0, "E10-BESS.p_kw": plan, "E10-BESS.soc_frac": 0.5,
                        "GRID.p_kw": state.threshold_kw["park"] - 5_000.0, "SES.p_kw": state.planned_kw["SES"],
                        "SES.soc_frac": 0.5}       # the park meter 5 MW under its threshold with SES on plan
            first = await guard_tick(engine, PARK, SITES, state, readings.get, adapter_for)
            readings["E10-MM.p_kw"] = threshold - 1_000.0        # the excess is gone
            second = await guard_tick(engine, PARK, SITES, state, readings.get, adapter_for)
            return plan, first, second, servers.modbus[0].setpoints()
        finally:
            await servers.stop()

    plan, first, second, on_device = asyncio.run(go())
    assert plan <= 2_500.0            # 13:05 is in the valley: the plan charges or idles, leaving room to raise
    # net without the storage = meter + plan; excess = net - plan - threshold = 1,500 kW; E10 may discharge up to
    # min(4,000 kW, (0.5 - 0.1) * 8,000 kWh * 0.95 / 0.25 h = 12,160 kW): raised by the whole excess
    assert [(r.device_id, r.status) for r in first] == [("E10-BESS", "verified")]
    assert first[0].setpoint_kw == pytest.approx(plan + 1_500.0, abs=0.1)
    assert [(r.device_id, r.setpoint_kw) for r in second] == [("E10-BESS", pytest.approx(plan, abs=0.1))]
    assert on_device["E10-BESS.p_set_kw"] == pytest.approx(plan, abs=0.1)
