"""The OPC UA adapter: DataValue parsing by hand, then subscribing and writing against the simulator's real server.

Expected timestamps are worked by hand. Integration tests start a :class:`SimOpcuaServer` on a free loopback port
(bound to port 0 first, so parallel xdist workers never collide) with its certificates in ``tmp_path`` and run
the :class:`OpcuaSubscriber` against it inside ``asyncio.run``. Sampling intervals are 50 ms to keep them quick.
"""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from asyncua import ua
from conftest import tiny_park_dict

from anning_lib.errors import IngestError
from anning_lib.ingest.model import Quality, SourceHealth
from anning_lib.ingest.opcua import OpcuaSubscriber, mapped_nodes, sample_from_datavalue
from anning_lib.ingest.opcua_pki import ensure_opcua_pki
from anning_lib.ingest.pointmap import (
    OpcuaConnection,
    OpcuaDevice,
    OpcuaPoint,
    OpcuaSecurity,
    load_pointmaps,
)
from anning_lib.park import load_park, parse_park
from anning_lib.sim.opcua_server import SimOpcuaServer

REPO = Path(__file__).resolve().parent.parent
FAST_MS = 50
UTC = timezone.utc
# 2026-03-01 08:00:00.250 UTC: 1970..2025 = 56 years with 14 leap days (1972..2024) -> 20454 days, plus
# Jan 31 + Feb 28 = 20513 days = 1_772_323_200 s; + 8 h = 1_772_352_000 s; + 250 ms.
T1 = datetime(2026, 3, 1, 8, 0, 0, 250_000, tzinfo=UTC)
T1_MS = 1_772_352_000_250
T2 = datetime(2026, 3, 1, 8, 0, 1, tzinfo=UTC)   # one second later, on the second
T2_MS = 1_772_352_001_000


# ------------------------------------------------------------------------------------------------ parsing
def dv(value, vtype=ua.VariantType.Double, status=ua.StatusCodes.Good, source=None, server=None):
    return ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status),
                        SourceTimestamp=source, ServerTimestamp=server)


def test_sample_takes_source_timestamp_and_good_quality():
    s = sample_from_datavalue("E01-EAF.p_kw", dv(12.5, source=T1, server=T2), recv_s=1.0)
    assert (s.tag, s.ts_ms, s.value, s.quality, s.recv_s) == ("E01-EAF.p_kw", T1_MS, 12.5, Quality.GOOD, 1.0)


def test_sample_timestamp_falls_back_to_server_then_receive_time():
    assert sample_from_datavalue("a.b", dv(1.0, server=T2), 5.0).ts_ms == T2_MS
    assert sample_from_datavalue("a.b", dv(1.0), 1_772_352_000.75).ts_ms == 1_772_352_000_750
    # OPC UA's null DateTime decodes as 1601-01-01: treated as missing
    null = datetime(1601, 1, 1, tzinfo=UTC)
    assert sample_from_datavalue("a.b", dv(1.0, source=null, server=T2), 5.0).ts_ms == T2_MS


def test_sample_naive_timestamp_is_utc():
    naive = datetime(2026, 3, 1, 8, 0, 0, 250_000)
    assert sample_from_datavalue("a.b", dv(1.0, source=naive), 0.0).ts_ms == T1_MS


@pytest.mark.parametrize("status, quality", [
    (ua.StatusCodes.Good, Quality.GOOD),
    (ua.StatusCodes.GoodClamped, Quality.GOOD),                      # 0x00300000: severity bits 00
    (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),    # 0x40900000: severity bits 01
    (ua.StatusCodes.UncertainInitialValue, Quality.UNCERTAIN),
    (ua.StatusCodes.BadSensorFailure, Quality.BAD),                  # 0x808B0000: severity bits 10
    (ua.StatusCodes.BadOutOfService, Quality.BAD),
])
def test_sample_quality_follows_status_severity(status, quality):
    assert sample_from_datavalue("a.b", dv(3.0, status=status, source=T1), 0.0).quality == quality


@pytest.mark.parametrize("value, vtype, expected", [
    (7, ua.VariantType.Int32, 7.0), (65535, ua.VariantType.UInt16, 65535.0), (-3, ua.VariantType.SByte, -3.0),
    (0.5, ua.VariantType.Float, 0.5), (True, ua.VariantType.Boolean, 1.0), (False, ua.VariantType.Boolean, 0.0),
    (2**40, ua.VariantType.Int64, float(2**40)),
])
def test_sample_numeric_variants_become_floats(value, vtype, expected):
    s = sample_from_datavalue("a.b", dv(value, vtype, source=T1), 0.0)
    assert s.value == expected and isinstance(s.value, float)


@pytest.mark.parametrize("value, vtype", [
    ("12.5", ua.VariantType.String), (b"\x01", ua.VariantType.ByteString), ([1.0, 2.0], ua.VariantType.Double),
    (None, ua.VariantType.Null), (T1, ua.VariantType.DateTime),
    (ua.LocalizedText("x"), ua.VariantType.LocalizedText),
])
def test_sample_non_numeric_values_are_refused(value, vtype):
    assert sample_from_datavalue("a.b", dv(value, vtype, source=T1), 0.0) is None


def test_bad_status_without_value_is_refused():
    bad = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))
    assert sample_from_datavalue("a.b", bad, 0.0) is None


def test_deliver_counts_wrong_types_skips_empty_bad_values_and_sinks_the_rest():
    got = []
    health = SourceHealth("t", "opcua")
    sub = OpcuaSubscriber(tiny_conn("opc.tcp://127.0.0.1:1/x"), lambda s, h: got.extend(s), health, Path("."))
    empty_bad = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
    sub.deliver([("E01-L1.p_kw", dv(1.5, source=T1), 9.0), ("E01-L1.p_kw", dv("x", ua.VariantType.String), 9.0),
                 ("E01-L1.p_set_kw", empty_bad, 9.0)])
    assert [(s.tag, s.value, s.ts_ms) for s in got] == [("E01-L1.p_kw", 1.5, T1_MS)]
    assert health.n_bad == 1 and health.last_error.startswith("wrong_type: E01-L1.p_kw")


def test_mapped_nodes_expand_device_and_take_point_overrides():
    conn = OpcuaConnection(name="c", endpoint="opc.tcp://h:4840", devices=[OpcuaDevice(
        device="D1", sampling_ms=1000, points=[OpcuaPoint(point="a", node="ns=2;s={device}.a"),
                                               OpcuaPoint(point="b", node="ns=2;s=X.b", sampling_ms=200,
                                                          deadband_abs=0.5)])])
    nodes = mapped_nodes(conn)
    assert [(n.tag, n.node, n.sampling_ms, n.deadband_abs) for n in nodes.values()] == [
        ("D1.a", "ns=2;s=D1.a", 1000, 0.0), ("D1.b", "ns=2;s=X.b", 200, 0.5)]


def test_pki_is_created_once_with_private_keys_0600(tmp_path):
    files = ensure_opcua_pki(tmp_path / "pki")
    assert sorted(p.name for p in files.values()) == [
        "opcua-gateway.der", "opcua-gateway.pem", "opcua-server.der", "opcua-server.pem"]
    for key in (files["server_key"], files["gateway_key"]):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = {k: p.read_bytes() for k, p in files.items()}
    assert {k: p.read_bytes() for k, p in ensure_opcua_pki(tmp_path / "pki").items()} == before
    from cryptography import x509
    cert = x509.load_der_x509_certificate(before["gateway_cert"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "urn:anning:gateway" in san.get_values_for_type(x509.UniformResourceIdentifier)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


# ------------------------------------------------------------------------------------------------ fixtures
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def real_conn(endpoint: str, secure: bool) -> tuple[OpcuaConnection, object]:
    """The real map's connection at ``endpoint`` with fast sampling; its security, or None."""
    park = load_park()
    conn = load_pointmaps(REPO / "ingest", park).opcua.connections[0]
    fast = [d.model_copy(update={"sampling_ms": FAST_MS}) for d in conn.devices]
    update = {"endpoint": endpoint, "devices": fast}
    if not secure:
        update["security"] = OpcuaSecurity()
    return conn.model_copy(update=update), park


def tiny_park():
    raw = tiny_park_dict()
    line = raw["enterprises"][0]["devices"][1]          # E01-L1, an OPC UA process line
    line["points"].append({"id": "p_set_kw", "quantity": "active_power", "unit": "kW",
                           "min": -5000.0, "max": 5000.0, "writable": True})
    return parse_park(raw, data_dir=REPO / "data")


def tiny_conn(endpoint: str, deadband: float = 0.0) -> OpcuaConnection:
    return OpcuaConnection(name="tiny-opcua", endpoint=endpoint, backoff_max_s=1.0, devices=[OpcuaDevice(
        device="E01-L1", sampling_ms=FAST_MS,
        points=[OpcuaPoint(point="p_kw", node="ns=2;s={device}.p_kw", deadband_abs=deadband),
                OpcuaPoint(point="p_set_kw", node="ns=2;s=E01-L1.p_set_kw")])])


class Collect:
    """A sink keeping every sample (and counting them on the health record, as the gateway's sink does)."""

    def __init__(self):
        self.samples = []

    def __call__(self, samples, health):
        health.seen(samples)
        self.samples.extend(samples)

    def values(self, tag):
        return [s.value for s in self.samples if s.tag == tag]

    def last(self, tag):
        found = [s for s in self.samples if s.tag == tag]
        return found[-1] if found else None


async def until(cond, timeout=5.0):
    """Poll ``cond()`` every 20 ms; fail the test if it is not true within ``timeout`` seconds."""
    t_end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > t_end:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


class Running:
    """``async with Running(subscriber)``: run it in a task, stop it (and check it returned) on exit."""

    def __init__(self, sub):
        self.sub, self.stop = sub, asyncio.Event()

    async def __aenter__(self):
        self.task = asyncio.create_task(self.sub.run(self.stop))
        return self.sub

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 5)       # run() returns promptly once stop is set


# ------------------------------------------------------------------------------------------------ integration
def roundtrip(tmp_path: Path, secure: bool) -> None:
    ep = f"opc.tcp://127.0.0.1:{free_port()}/anning/"
    conn, park = real_conn(ep, secure)
    sim = SimOpcuaServer(conn, park, tmp_path / "pki", secure_only=secure)
    health, sink = SourceHealth(conn.name, "opcua"), Collect()

    async def main():
        await sim.start()
        try:
            async with Running(OpcuaSubscriber(conn, sink, health, tmp_path)):
                await until(lambda: health.connected)
                await sim.update({"E01-EAF.p_kw": 41_000.0, "E12-ELEC.production_t_h": 2.5, "G0.p_kw": 1.0}, ts=T1)
                await until(lambda: 41_000.0 in sink.values("E01-EAF.p_kw")
                            and 2.5 in sink.values("E12-ELEC.production_t_h"))
                await sim.update({"E01-EAF.p_kw": 38_500.0}, ts=T2)
                await until(lambda: sink.last("E01-EAF.p_kw").value == 38_500.0)
        finally:
            await sim.stop()

    asyncio.run(main())
    first = [s for s in sink.samples if s.tag == "E01-EAF.p_kw" and s.value == 41_000.0][0]
    assert (first.ts_ms, first.quality) == (T1_MS, Quality.GOOD)
    assert (sink.last("E01-EAF.p_kw").ts_ms, sink.last("E01-EAF.p_kw").quality) == (T2_MS, Quality.GOOD)
    # before its first update every point reads 0 flagged UncertainInitialValue
    assert {s.quality for s in sink.samples if s.tag == "E05-PP.p_kw"} == {Quality.UNCERTAIN}
    assert len({s.tag for s in sink.samples}) == len(mapped_nodes(conn))
    assert health.n_bad == 0 and health.n_errors == 0
    assert sim.startup_s < 10


def test_subscribe_without_security(tmp_path):
    roundtrip(tmp_path, secure=False)


def test_subscribe_with_basic256sha256_sign_and_encrypt(tmp_path):
    roundtrip(tmp_path, secure=True)


def test_security_is_enforced(tmp_path):
    """A secure-only server refuses a None-policy client; a client pinning another server certificate refuses
    the server."""
    ep = f"opc.tcp://127.0.0.1:{free_port()}/anning/"
    conn, park = real_conn(ep, secure=True)
    sim = SimOpcuaServer(conn, park, tmp_path / "pki", secure_only=True)
    fast = {"backoff_max_s": 0.5, "timeout_s": 0.5}   # the server cannot decrypt a wrongly pinned client: it
    plain = conn.model_copy(update={"security": OpcuaSecurity(), **fast})   # stays silent until the timeout
    wrong_pin = conn.model_copy(update={**fast, "security": conn.security.model_copy(
        update={"server_certificate": Path("pki/opcua-gateway.der")})})
    healths = [SourceHealth("plain", "opcua"), SourceHealth("pinned", "opcua")]

    async def main():
        await sim.start()
        try:
            async with Running(OpcuaSubscriber(plain, Collect(), healths[0], tmp_path)), \
                    Running(OpcuaSubscriber(wrong_pin, Collect(), healths[1], tmp_path)):
                await until(lambda: all(h.n_errors >= 2 for h in healths))
                assert not any(h.connected for h in healths)
        finally:
            await sim.stop()

    asyncio.run(main())


def test_unknown_node_is_counted_once_and_the_other_points_still_arrive(tmp_path):
    ep = f"opc.tcp://127.0.0.1:{free_port()}/anning/"
    conn, park = real_conn(ep, secure=False)
    dev0 = conn.devices[0]                                  # E01-EAF: p_kw, production_t_h
    broken_pt = dev0.points[0].model_copy(update={"node": "ns=2;s=NOPE.p_kw"})
    broken = conn.model_copy(update={"devices": [dev0.model_copy(update={"points": [broken_pt, *dev0.points[1:]]}),
                                                 *conn.devices[1:]]})
    sim = SimOpcuaServer(conn, park, tmp_path / "pki")
    health, sink = SourceHealth(conn.name, "opcua"), Collect()

    async def main():
        await sim.start()
        try:
            async with Running(OpcuaSubscriber(broken, sink, health, tmp_path)):
                await until(lambda: health.connected)
                await sim.update({"E01-EAF.p_kw": 5.0, "E01-EAF.production_t_h": 12.0, "E01-RM.p_kw": 7.0}, ts=T1)
                await until(lambda: 12.0 in sink.values("E01-EAF.production_t_h") and 7.0 in sink.values("E01-RM.p_kw"))
        finally:
            await sim.stop()

    asyncio.run(main())
    assert health.n_bad == 1
    assert health.last_error.startswith("unknown_node:")
    assert "NOPE.p_kw" in health.last_error and "E01-EAF.p_kw" in health.last_error
    assert sink.values("E01-EAF.p_kw") == []


def test_reconnects_and_resubscribes_after_a_server_restart(tmp_path):
    ep = f"opc.tcp://127.0.0.1:{free_port()}/x/"
    park = tiny_park()
    conn = tiny_conn(ep)
    sim = SimOpcuaServer(conn, park, tmp_path / "pki")
    health, sink = SourceHealth(conn.name, "opcua"), Collect()

    async def main():
        sim.update({"E01-L1.p_kw": 100.0}, ts=T1)            # set while stopped: served from the start
        await sim.start()
        async with Running(OpcuaSubscriber(conn, sink, health, tmp_path)):
            await until(lambda: 100.0 in sink.values("E01-L1.p_kw"))
            await sim.stop()
            t_stop = time.monotonic()
            await until(lambda: not health.connected, timeout=5)
            detected_s = time.monotonic() - t_stop
            await asyncio.sleep(0.6)                         # a refused reconnect attempt or two
            await sim.start()
            await until(lambda: health.connected, timeout=10)
            await sim.update({"E01-L1.p_kw": 200.0}, ts=T2)
            await until(lambda: 200.0 in sink.values("E01-L1.p_kw"))
        await sim.stop()
        return detected_s

    detected_s = asyncio.run(main())
    assert detected_s < 3.0
    assert health.n_errors >= 2                              # the loss and at least one refused attempt
    assert sink.last("E01-L1.p_kw").ts_ms == T2_MS
    assert health.n_bad == 0


def test_write_setpoint_round_trip_and_refusals(tmp_path):
    ep = f"opc.tcp://127.0.0.1:{free_port()}/x/"
    park = tiny_park()
    conn = tiny_conn(ep, deadband=10.0)
    sim = SimOpcuaServer(conn, park, tmp_path / "pki")
    health, sink = SourceHealth(conn.name, "opcua"), Collect()

    async def main():
        sim.update({"E01-L1.p_kw": 100.0})
        await sim.start()
        try:
            sub = OpcuaSubscriber(conn, sink, health, tmp_path)
            with pytest.raises(IngestError, match="E01-L1.p_set_kw.*not connected"):
                await sub.write_setpoint("E01-L1.p_set_kw", 1.0)
            async with Running(sub):
                await until(lambda: health.connected)
                assert await sub.write_setpoint("E01-L1.p_set_kw", -1250.5) == -1250.5
                assert sim.read("E01-L1.p_set_kw") == -1250.5
                await until(lambda: -1250.5 in sink.values("E01-L1.p_set_kw"))
                with pytest.raises(IngestError, match="E01-L1.p_kw.*refused"):
                    await sub.write_setpoint("E01-L1.p_kw", 5.0)  # not writable in the park model
                with pytest.raises(IngestError, match="G0.p_kw"):
                    await sub.write_setpoint("G0.p_kw", 5.0)      # not on this connection
                # absolute deadband 10 kW: 105 (5 from 100) is filtered, 120 passes
                for v in (105.0, 120.0):
                    await sim.update({"E01-L1.p_kw": v})
                await until(lambda: 120.0 in sink.values("E01-L1.p_kw"))
        finally:
            await sim.stop()

    asyncio.run(main())
    assert sink.values("E01-L1.p_kw") == [100.0, 120.0]
    with pytest.raises(RuntimeError):                       # the server is stopped
        sim.read("E01-L1.p_kw")


def test_stop_interrupts_a_hanging_connect_and_bad_config_never_raises(tmp_path):
    """A server that accepts TCP but never answers, and certificate files that do not exist: run() keeps
    reporting through health and returns promptly when stopped."""
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    hanging = tiny_conn(f"opc.tcp://127.0.0.1:{port}/x/").model_copy(update={"timeout_s": 30.0})
    no_certs = tiny_conn(f"opc.tcp://127.0.0.1:{free_port()}/x/").model_copy(update={"security": OpcuaSecurity(
        policy="Basic256Sha256", mode="SignAndEncrypt", certificate=Path("pki/missing.der"),
        private_key=Path("pki/missing.pem"))})
    healths = [SourceHealth("hanging", "opcua"), SourceHealth("no-certs", "opcua")]

    async def main():
        stop = asyncio.Event()
        tasks = [asyncio.create_task(OpcuaSubscriber(c, Collect(), h, tmp_path).run(stop))
                 for c, h in zip((hanging, no_certs), healths, strict=True)]
        await until(lambda: healths[1].n_errors >= 2)
        stop.set()
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return time.monotonic() - t0

    try:
        assert asyncio.run(main()) < 1.0
    finally:
        silent.close()
    assert healths[0].n_errors == 0 and not healths[0].connected     # still connecting when stopped
    assert "FileNotFoundError" in healths[1].last_error and "missing.der" in healths[1].last_error
