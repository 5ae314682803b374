"""The Modbus adapter: register codec, read plan, and polling/writing against the simulator's real TCP server.

Expected register values are worked by hand (IEEE 754 and two's complement), not produced by the code under
test. Integration tests start a :class:`SimModbusServer` on a free loopback port (bound to port 0 first, so
parallel xdist workers never collide) and run the :class:`ModbusPoller` against it with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from anning_lib.errors import IngestError
from anning_lib.ingest.modbus import (
    ModbusPoller,
    decode_registers,
    encode_value,
    parse_block,
    parse_device,
    read_plan,
)
from anning_lib.ingest.model import Quality, SourceHealth
from anning_lib.ingest.pointmap import (
    ModbusConnection,
    ModbusDevice,
    ModbusPoint,
    load_pointmaps,
)
from anning_lib.park import load_park
from anning_lib.sim.modbus_server import SimModbusServer

REPO = Path(__file__).resolve().parent.parent
FAST_POLL_S = 0.05


# ------------------------------------------------------------------------------------------------ codec
@pytest.mark.parametrize("value, type_, order, scale, regs", [
    (1.0, "float32", "big", 1.0, [0x3F80, 0x0000]),          # 0x3F800000
    (1.0, "float32", "little", 1.0, [0x0000, 0x3F80]),
    (-2.5, "float32", "big", 1.0, [0xC020, 0x0000]),         # sign 1, exp 128, mantissa .25 -> 0xC0200000
    (-2, "int32", "little", 1.0, [0xFFFE, 0xFFFF]),           # 0xFFFFFFFE, low word first
    (-2, "int32", "big", 1.0, [0xFFFF, 0xFFFE]),
    (26250.0, "int32", "big", 0.1, [0x0004, 0x0164]),        # raw 262500 = 4 * 65536 + 356
    (26250.0, "int32", "little", 0.1, [0x0164, 0x0004]),
    (-12345.6, "int32", "big", 0.1, [0xFFFE, 0x1DC0]),       # raw -123456 = 2**32 - 123456 = 0xFFFE1DC0
    (70000, "uint32", "big", 1.0, [0x0001, 0x1170]),         # 65536 + 4464
    (-12.3, "int16", "big", 0.1, [0xFF85]),                  # raw -123 = 65536 - 123 = 65413
    (-1, "int16", "little", 1.0, [0xFFFF]),                  # one register: word order does not apply
    (0.5, "uint16", "big", 0.0001, [0x1388]),                # raw 5000
    (65535, "uint16", "big", 1.0, [0xFFFF]),
    (1500, "uint16", "little", 1, [0x05DC]),
])
def test_encode_matches_hand_worked_registers_and_decodes_back(value, type_, order, scale, regs):
    assert encode_value(value, type_, order, scale) == regs
    assert decode_registers(regs, type_, order, scale) == pytest.approx(value, abs=1e-9)


def test_encode_agrees_with_pymodbus_converters():
    conv = AsyncModbusTcpClient
    for value, type_, dt in [(1234.5, "float32", conv.DATATYPE.FLOAT32), (-7, "int32", conv.DATATYPE.INT32),
                             (4_000_000_000, "uint32", conv.DATATYPE.UINT32), (-300, "int16", conv.DATATYPE.INT16)]:
        for order in ("big", "little"):
            regs = encode_value(value, type_, order, 1.0)
            assert regs == conv.convert_to_registers(value, dt, word_order=order)
            assert conv.convert_from_registers(regs, dt, word_order=order) == value


@pytest.mark.parametrize("type_, scale, lo, hi", [
    ("int16", 0.1, -3276.8, 3276.7), ("uint16", 0.0001, 0.0, 6.5535), ("int32", 0.1, -214748364.8, 214748364.7),
    ("uint32", 1.0, 0, 4294967295), ("float32", 1.0, -3.0e38, 3.0e38),
])
def test_round_trip_at_the_edges_of_each_type(type_, scale, lo, hi):
    for value in (lo, hi, (lo + hi) / 2, lo + abs(scale) * 7):
        for order in ("big", "little"):
            back = decode_registers(encode_value(value, type_, order, scale), type_, order, scale)
            tol = abs(value) * 1e-7 if type_ == "float32" else abs(scale) / 2 + 1e-9 * abs(value)
            assert back == pytest.approx(value, abs=tol)


@pytest.mark.parametrize("value, type_, scale", [
    (-1, "uint16", 1.0), (65536, "uint16", 1.0), (3276.8, "int16", 0.1), (-32769, "int16", 1.0),
    (3.0e8, "int32", 0.1), (-0.6, "uint32", 1.0), (float("nan"), "int16", 1.0), (float("inf"), "float32", 1.0),
    (1e39, "float32", 1.0),
])
def test_encode_refuses_values_the_type_cannot_hold(value, type_, scale):
    with pytest.raises(IngestError) as err:
        encode_value(value, type_, "big", scale)
    assert type_ in str(err.value) and repr(value) in str(err.value)


def test_decode_refuses_a_wrong_register_count():
    with pytest.raises(IngestError, match="int32 needs 2 registers"):
        decode_registers([1], "int32", "big", 1.0)


# ------------------------------------------------------------------------------------------------ plan
def _dev(points, **kw) -> ModbusDevice:
    return ModbusDevice(device=kw.pop("device", "D"), unit_id=kw.pop("unit_id", 7),
                        points=[ModbusPoint(**p) for p in points], **kw)


def test_read_plan_groups_contiguous_registers_per_function():
    dev = _dev([{"point": "a", "address": 0, "function": "input", "type": "int32"},
                {"point": "b", "address": 2, "function": "input", "type": "uint16"},
                {"point": "c", "address": 3, "function": "input", "type": "uint16"},
                {"point": "f", "address": 10, "function": "input", "type": "uint16"},
                {"point": "s", "address": 0, "function": "holding", "type": "int32"},
                {"point": "far", "address": 500, "function": "holding", "type": "float32"}])
    plan = read_plan(dev)
    # holding 0-1 and 500-501 are 498 registers apart: two reads; input 0-3 and 10 bridge a 6-register gap
    assert [(b.function, b.address, b.count) for b in plan] == [("holding", 0, 2), ("holding", 500, 2),
                                                                ("input", 0, 11)]
    assert [p.point for p in plan[2].points] == ["a", "b", "c", "f"]
    assert [(b.address, b.count) for b in read_plan(dev, max_gap=5) if b.function == "input"] == [(0, 4), (10, 1)]
    assert [(b.address, b.count) for b in read_plan(dev, max_count=4) if b.function == "input"] == [(0, 4), (10, 1)]
    assert all(b.unit_id == 7 and b.fc == (3 if b.function == "holding" else 4) for b in plan)


def test_read_plan_never_exceeds_max_count():
    dev = _dev([{"point": f"p{i}", "address": 2 * i, "type": "float32"} for i in range(100)])
    plan = read_plan(dev)
    assert [(b.address, b.count) for b in plan] == [(0, 120), (120, 80)]
    assert sum(len(b.points) for b in plan) == 100


def test_parse_block_and_fault_word_marking():
    dev = _dev([{"point": "p_kw", "address": 0, "function": "input", "type": "int32", "scale": 0.1},
                {"point": "t", "address": 2, "function": "input", "type": "int16", "scale": 0.1},
                {"point": "fault", "address": 3, "function": "input", "type": "uint16"}],
               word_order="little", fault_point="fault")
    (block,) = read_plan(dev)
    regs = [0x0164, 0x0004, 0xFF85, 0]                      # 26250.0 kW (low word first), -12.3 degC, no fault
    samples = parse_block(block, regs, 1_000, 1.5, Quality.GOOD)
    assert [(s.tag, s.ts_ms, s.recv_s) for s in samples] == [("D.p_kw", 1_000, 1.5), ("D.t", 1_000, 1.5),
                                                             ("D.fault", 1_000, 1.5)]
    assert [s.value for s in samples] == pytest.approx([26250.0, -12.3, 0.0])
    assert {s.quality for s in parse_device(dev, [block], [regs], 1_000, 1.5)} == {Quality.GOOD}
    faulted = parse_device(dev, [block], [regs[:3] + [0x0004]], 1_000, 1.5)
    assert [(s.tag, s.quality) for s in faulted] == [("D.p_kw", Quality.UNCERTAIN), ("D.t", Quality.UNCERTAIN),
                                                     ("D.fault", Quality.GOOD)]
    assert faulted[2].value == 4


def test_failed_read_marks_last_values_stale_once_per_outage():
    dev = _dev([{"point": "p_kw", "address": 0, "function": "input", "type": "int32", "scale": 0.1}])
    (block,) = read_plan(dev)
    last: dict[str, float] = {}
    ok = parse_device(dev, [block], [[0x0000, 0x0064]], 1_000, 1.0, last)     # 100 raw = 10.0 kW
    assert [(s.value, s.quality) for s in ok] == [(10.0, Quality.GOOD)]
    first_fail = parse_device(dev, [block], [None], 2_000, 2.0, last)
    assert [(s.tag, s.ts_ms, s.value, s.quality) for s in first_fail] == [("D.p_kw", 2_000, 10.0, Quality.STALE)]
    assert parse_device(dev, [block], [None], 3_000, 3.0, last) == []         # still down: nothing repeated
    back = parse_device(dev, [block], [[0x0000, 0x00C8]], 4_000, 4.0, last)   # 200 raw = 20.0 kW
    assert [(s.value, s.quality) for s in back] == [(20.0, Quality.GOOD)]


# ------------------------------------------------------------------------------------------------ integration
@pytest.fixture(scope="module")
def real_conn() -> ModbusConnection:
    park = load_park()
    maps = load_pointmaps(REPO / "ingest", park)
    (conn,) = maps.modbus.connections
    assert len(conn.devices) == 27
    return conn


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast(conn: ModbusConnection, **kw) -> ModbusConnection:
    """The map on a free port with fast polling, short timeouts and back-off."""
    devices = [d.model_copy(update={"poll_s": FAST_POLL_S}) for d in kw.pop("devices", conn.devices)]
    update = {"host": "127.0.0.1", "port": free_port(), "timeout_s": 0.5, "backoff_max_s": 1.0, "devices": devices}
    return conn.model_copy(update={**update, **kw})


def sample_values(conn: ModbusConnection) -> dict[str, float]:
    """A value for every mapped point, inside its register's range, plus a few hand-picked ones."""
    values = {}
    for k, d in enumerate(conn.devices):
        for j, p in enumerate(d.points):
            raw = {"float32": 1234.5678 + k, "int32": -43215 + 100 * k, "uint16": 37 * (k + j), "int16": -(j + k)}
            values[f"{d.device}.{p.point}"] = raw[p.type] if p.type == "float32" else raw[p.type] * p.scale
        if d.fault_point:
            values[f"{d.device}.{d.fault_point}"] = 0
    values.update({"SES.p_kw": -12345.6, "GRID.pf": 0.98, "PARK-PV.t_cell_degc": -12.3, "SES.soc_frac": 0.5123})
    return values


class Collect:
    """A sink keeping every sample (and the health object it was given)."""

    def __init__(self, block_s: float = 0.0):
        self.samples = []
        self.batches = []
        self.block_s = block_s

    def __call__(self, samples, health):
        self.batches.append(list(samples))
        self.samples.extend(samples)
        if self.block_s:
            time.sleep(self.block_s)                         # a slow sink, blocking the event loop

    def latest(self) -> dict:
        return {s.tag: s for s in self.samples}

    def count(self, tag: str) -> int:
        return sum(s.tag == tag for s in self.samples)


async def _until(cond, timeout: float = 5.0, step: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)


async def _poll_for(server_conn, poller_conn, values, until, before=None, sink=None, clock=None):
    """Serve ``values``, poll until ``until(sink, health)`` holds (at most 10 s), stop; return sink and health."""
    server = SimModbusServer(server_conn)
    await server.start()
    try:
        server.update(values)
        if before:
            before(server)
        sink, health = sink or Collect(), SourceHealth(poller_conn.name, "modbus")
        stop = asyncio.Event()
        clock = clock or time.time
        task = asyncio.create_task(ModbusPoller(poller_conn, sink, health, clock=clock).run(stop))
        await _until(lambda: until(sink, health), timeout=10)
        stop.set()
        await asyncio.wait_for(task, 5)
        return sink, health
    finally:
        await server.stop()


def test_poller_reads_every_point_of_the_real_map(real_conn):
    conn = fast(real_conn)
    values = sample_values(conn)
    sink, health = asyncio.run(_poll_for(conn, conn, values, lambda sk, _h: all(sk.count(t) >= 2 for t in values)))
    assert health.n_errors == 0, health.last_error
    latest = sink.latest()
    assert set(latest) == set(values)
    scale = {f"{d.device}.{p.point}": (p.scale, p.type) for d in conn.devices for p in d.points}
    for tag, want in values.items():
        s, t = scale[tag]
        tol = abs(want) * 1e-6 if t == "float32" else abs(s) / 2 + 1e-9
        assert latest[tag].value == pytest.approx(want, abs=tol), tag
        assert latest[tag].quality == Quality.GOOD, tag
    assert latest["SES.p_kw"].value == pytest.approx(-12345.6, abs=0.05)
    assert latest["PARK-PV.t_cell_degc"].value == pytest.approx(-12.3, abs=0.05)
    # one sink call per device poll: all of one device's points, one poll time
    n_points = {d.device: len(d.points) for d in conn.devices}
    for batch in sink.batches:
        (device,) = {s.tag.split(".")[0] for s in batch}
        assert len(batch) == n_points[device] and len({s.ts_ms for s in batch}) == 1
    assert not health.connected                                # run() returned


def test_poll_times_follow_absolute_ticks_despite_a_slow_sink(real_conn):
    """Polls every 100 ms with a sink taking 30 ms: a poller sleeping poll_s after each poll would fall 30+ ms
    further behind every tick; on absolute ticks each poll starts just after its tick."""
    conn = fast(real_conn, devices=real_conn.devices[:1])

    async def go():
        loop = asyncio.get_running_loop()
        got = Collect(block_s=0.03)
        return await _poll_for(conn, conn.model_copy(update={"devices": [conn.devices[0].model_copy(
            update={"poll_s": 0.1})]}), {}, lambda sk, _h: len(sk.batches) >= 7, sink=got, clock=loop.time)

    sink, _ = asyncio.run(go())
    ts = [b[0].ts_ms for b in sink.batches]
    ticks = [round((t - ts[0]) / 100) for t in ts]
    late = [t - ts[0] - 100 * n for t, n in zip(ts, ticks)]
    assert ticks == sorted(set(ticks)) and ticks[-1] >= 6, ticks   # one poll per tick, in order
    assert all(-5 <= x <= 45 for x in late), late


def test_fault_word_marks_the_devices_samples_uncertain(real_conn):
    conn = fast(real_conn)
    sink, health = asyncio.run(_poll_for(conn, conn, sample_values(conn), lambda sk, _h: sk.count("SES.fault") >= 2,
                                         before=lambda srv: srv.set_fault("SES", 0x0012)))
    assert health.n_errors == 0, health.last_error
    ses = [s for s in sink.samples if s.tag.startswith("SES.")]
    assert ses and all(s.quality == Quality.UNCERTAIN for s in ses if s.tag != "SES.fault")
    assert {(s.value, s.quality) for s in ses if s.tag == "SES.fault"} == {(18.0, Quality.GOOD)}
    others = [s for s in sink.samples if not s.tag.startswith("SES.")]
    assert others and all(s.quality == Quality.GOOD for s in others)


def test_unknown_unit_is_an_error_and_the_other_devices_go_on(real_conn):
    server_conn = fast(real_conn, devices=real_conn.devices[:3])
    ghost = ModbusDevice(device="GHOST", unit_id=99, points=[ModbusPoint(point="p_kw", address=0)])
    poller_conn = server_conn.model_copy(update={"devices": [*server_conn.devices, ghost.model_copy(
        update={"poll_s": FAST_POLL_S})]})
    sink, health = asyncio.run(_poll_for(
        server_conn, poller_conn, sample_values(server_conn),
        lambda sk, h: h.n_errors >= 2 and all(sk.count(f"{d.device}.{d.points[0].point}") >= 3
                                              for d in server_conn.devices)))
    assert health.n_errors >= 2                              # every poll of GHOST
    assert "GHOST unit 99 holding (FC03) address 0" in health.last_error
    assert "exception 11" in health.last_error
    assert not [s for s in sink.samples if s.tag.startswith("GHOST.")]
    for d in server_conn.devices:
        assert sink.count(f"{d.device}.{d.points[0].point}") >= 3, d.device


def test_server_refuses_unmapped_registers_and_unknown_units(real_conn):
    conn = fast(real_conn)

    async def go():
        server = SimModbusServer(conn)
        await server.start()
        client = AsyncModbusTcpClient("127.0.0.1", port=conn.port, timeout=1, retries=0)
        try:
            assert await client.connect()
            ok = await client.read_input_registers(0, count=11, device_id=41)   # SES input 0..10, gap read as 0
            beyond = await client.read_input_registers(11, count=1, device_id=41)
            no_unit = await client.read_holding_registers(0, count=2, device_id=200)
            no_holding = await client.read_holding_registers(0, count=1, device_id=42)  # PV: inputs only
            gap_write = await client.write_registers(5, [1], device_id=41)     # holding 5 is not mapped
            return ok, beyond, no_unit, no_holding, gap_write
        finally:
            client.close()
            await server.stop()

    ok, beyond, no_unit, no_holding, gap_write = asyncio.run(go())
    assert not ok.isError() and len(ok.registers) == 11
    assert (beyond.exception_code, no_unit.exception_code, no_holding.exception_code) == (2, 11, 2)
    assert gap_write.isError() and gap_write.exception_code == 2


def test_server_restarts_on_the_same_port_and_the_poller_reconnects(real_conn):
    conn = fast(real_conn, devices=real_conn.devices[:4])
    values = sample_values(conn)

    async def go():
        server = SimModbusServer(conn)
        await server.start()
        server.update(values)
        sink, health = Collect(), SourceHealth(conn.name, "modbus")
        states = []
        stop = asyncio.Event()
        task = asyncio.create_task(ModbusPoller(conn, sink, health).run(stop))
        watch = asyncio.create_task(_watch(health, states, stop))
        await _until(lambda: sink.count("GRID.p_kw") >= 2)
        await server.stop()
        await _until(lambda: not health.connected)
        n_before = len(sink.samples)
        await asyncio.sleep(0.2)
        await server.start()                                   # same object, same port
        server.update({"GRID.p_kw": 777.0})
        await _until(lambda: health.connected and sink.latest()["GRID.p_kw"].value == 777.0, timeout=4)
        await asyncio.sleep(0.05)                              # let the watcher see the state
        stop.set()
        await asyncio.wait_for(task, 3)
        await watch
        await server.stop()
        return sink, health, states, n_before

    sink, health, states, n_before = asyncio.run(go())
    assert states[:3] == [False, True, False] and True in states[3:]
    assert len(sink.samples) > n_before
    assert health.n_errors >= 1 and health.last_error.startswith("connection:")


async def _watch(health, states, stop):
    while not stop.is_set():
        if not states or states[-1] != health.connected:
            states.append(health.connected)
        await asyncio.sleep(0.005)


def test_server_start_stop_releases_the_port(real_conn):
    conn = fast(real_conn, devices=real_conn.devices[:1])

    async def go():
        server = SimModbusServer(conn)
        for _ in range(3):
            await server.start()
            assert server.running
            await server.stop()
        other = SimModbusServer(conn)
        await other.start()
        await other.stop()

    asyncio.run(go())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", conn.port))                       # free again


def test_server_start_on_a_taken_port_raises(real_conn):
    conn = fast(real_conn, devices=real_conn.devices[:1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", conn.port))
        s.listen()
        with pytest.raises(IngestError, match=f"127.0.0.1:{conn.port}"):
            asyncio.run(SimModbusServer(conn).start())


def test_write_setpoint_round_trip_and_refusals(real_conn):
    conn = fast(real_conn)

    async def go():
        server = SimModbusServer(conn)
        await server.start()
        server.update(sample_values(conn))
        sink, health = Collect(), SourceHealth(conn.name, "modbus")
        poller = ModbusPoller(conn, sink, health)
        try:
            idle = await poller.write_setpoint("E05-BESS.p_set_kw", 1500.0)     # no run(): short-lived client
            stop = asyncio.Event()
            task = asyncio.create_task(poller.run(stop))
            await _until(lambda: health.connected)
            back = await poller.write_setpoint("SES.p_set_kw", -12345.6)      # the running poller's client
            server.update({"SES.p_set_kw": 0.0, "E05-BESS.p_set_kw": 0.0})   # the simulator must not undo it
            polled = lambda tag, v: tag in sink.latest() and abs(sink.latest()[tag].value - v) < 0.1  # noqa: E731
            await _until(lambda: polled("SES.p_set_kw", -12345.6) and polled("E05-BESS.p_set_kw", 1500.0))
            refused = []
            for tag, value in [("SES.p_kw", 10.0), ("NOPE.p_set_kw", 1.0), ("SES.p_set_kw", 1e9)]:
                with pytest.raises(IngestError) as err:
                    await poller.write_setpoint(tag, value)
                refused.append(str(err.value))
            stop.set()
            await asyncio.wait_for(task, 3)
            return idle, back, server.setpoints(), sink.latest(), refused
        finally:
            await server.stop()

    idle, back, setpoints, latest, refused = asyncio.run(go())
    assert idle == pytest.approx(1500.0, abs=0.1)
    assert back == pytest.approx(-12345.6, abs=0.1)
    assert setpoints == pytest.approx({"SES.p_set_kw": -12345.6, "E05-BESS.p_set_kw": 1500.0}, abs=0.1)
    assert latest["SES.p_set_kw"].value == pytest.approx(-12345.6, abs=0.1)
    assert "SES.p_kw=10.0" in refused[0] and "input register" in refused[0]
    assert "NOPE.p_set_kw=1.0" in refused[1] and "not mapped" in refused[1]
    assert "SES.p_set_kw=1000000000.0" in refused[2] and "int32" in refused[2]


def test_write_setpoint_without_a_server_is_an_ingest_error(real_conn):
    conn = fast(real_conn, timeout_s=0.2)
    poller = ModbusPoller(conn, Collect(), SourceHealth(conn.name, "modbus"))
    with pytest.raises(IngestError, match=r"SES.p_set_kw=5.0: cannot connect"):
        asyncio.run(poller.write_setpoint("SES.p_set_kw", 5.0))


def test_poller_backs_off_while_the_server_is_down(real_conn):
    conn = fast(real_conn, devices=real_conn.devices[:1], timeout_s=0.2, backoff_max_s=1.0)
    health = SourceHealth(conn.name, "modbus")

    async def go():
        stop = asyncio.Event()
        task = asyncio.create_task(ModbusPoller(conn, Collect(), health).run(stop))
        await asyncio.sleep(1.7)                               # attempts at 0, 0.5, 1.5 s (0.5 doubling)
        stop.set()
        await asyncio.wait_for(task, 2)

    asyncio.run(go())
    assert health.n_errors == 3 and not health.connected
    assert f"cannot connect to 127.0.0.1:{conn.port}" in health.last_error
    assert math.isclose(float(health.last_error.split("retry in ")[1].split(" s")[0]), 1.0)
