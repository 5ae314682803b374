"""MQTT ingestion: the payload convention (pure), and the gateway against a real Mosquitto broker with TLS.

The no-loss test publishes more than 10,000 messages while the broker is restarted once and the database is
unavailable for a few seconds, then checks every (point, ts) is stored exactly once with the published value.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from anning_lib.ingest.gateway import Gateway
from anning_lib.ingest.model import Quality
from anning_lib.ingest.mqtt import PayloadError, parse_payload, parse_ts_ms
from anning_lib.ingest.pointmap import MqttConnection, MqttTls, PointMaps, SecretRef
from anning_lib.park import load_park
from anning_lib.sim.mqtt_publisher import SimMqttPublisher
from anning_lib.store import count_rows, init_db, read_series

# 2001-09-09T01:46:40Z is exactly 1,000,000,000 s after the epoch.
GIGA_MS = 1_000_000_000_000


# ----------------------------------------------------------------------------------------------- pure
@pytest.mark.parametrize("ts", ["2001-09-09T01:46:40Z", "2001-09-09T09:46:40+08:00", "2001-09-09T01:46:40.000+00:00",
                                GIGA_MS, float(GIGA_MS)])
def test_timestamps_in_every_accepted_form(ts):
    assert parse_ts_ms(ts) == GIGA_MS


def test_payload_object_and_list():
    assert parse_payload(b'{"ts": 1000000000000, "v": 2.5}') == [(GIGA_MS, 2.5, Quality.GOOD)]
    rows = parse_payload(b'[{"ts": 1000000000000, "v": 1, "q": "uncertain"},'
                         b' {"ts": "2001-09-09T09:46:41+08:00", "v": -3, "q": "bad"}]')
    assert rows == [(GIGA_MS, 1.0, Quality.UNCERTAIN), (GIGA_MS + 1000, -3.0, Quality.BAD)]


@pytest.mark.parametrize("payload, kind", [
    (b"{bad", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (b'{"v": 1}', "bad_payload"),
    (b'{"ts": 1000000000000}', "bad_payload"),
    (b"[]", "bad_payload"),
    (b"17", "bad_payload"),
    (b'{"ts": 1000000000000, "v": "12"}', "wrong_type"),
    (b'{"ts": 1000000000000, "v": true}', "wrong_type"),
    (b'{"ts": "2001-09-09T01:46:40", "v": 1}', "bad_ts"),       # no offset: ambiguous
    (b'{"ts": "yesterday", "v": 1}', "bad_ts"),
    (b'{"ts": 1000000000, "v": 1, "q": "fine"}', "bad_quality"),
    (b'{"ts": 99999999999999999, "v": 1}', "bad_ts"),           # not milliseconds
])
def test_bad_payloads_name_their_problem(payload, kind):
    with pytest.raises(PayloadError) as err:
        parse_payload(payload)
    assert err.value.kind == kind


# ----------------------------------------------------------------------------------------------- helpers
PARK = load_park()
MQTT_DEVICES = [d.id for _e, d in PARK.iter_devices() if d.protocol == "mqtt"]
MQTT_TAGS = [f"{d.id}.{p.id}" for _e, d in PARK.iter_devices() if d.protocol == "mqtt" for p in d.points]


def mqtt_map(broker, var_dir: Path, client_id: str = "anning-gateway") -> PointMaps:
    secret = var_dir / "secrets" / "gw.pw"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("gw-secret\n")
    secret.chmod(0o600)
    conn = MqttConnection(name="park-broker", port=broker.port, client_id=client_id,
                          tls=MqttTls(ca=broker.pki_dir / "ca.crt"), username="gateway",
                          password=SecretRef(file=Path("secrets/gw.pw")), devices=MQTT_DEVICES)
    return PointMaps(mqtt={"protocol": "mqtt", "connections": [conn]})


class GatewayThread:
    """The gateway in its own thread and event loop, as `anning ingest run` would run it."""

    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.stop_event = asyncio.Event()
        self.loop.run_until_complete(self.gateway.run(self.stop_event))

    def __enter__(self):
        self.thread.start()
        while self.stop_event is None:
            time.sleep(0.01)
        return self.gateway

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)


def wait_until(cond, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def publisher(broker) -> SimMqttPublisher:
    pub = SimMqttPublisher(PARK, "127.0.0.1", broker.port, ca=broker.pki_dir / "ca.crt", username="sim",
                           password="sim-secret", client_id=f"sim-{broker.port}")
    pub.start()
    wait_until(pub.client.is_connected, 10, "publisher connected")
    return pub


def mid_range(tag: str, k: int) -> float:
    dev, pid = tag.split(".")
    p = PARK.device(dev).point(pid)
    lo, hi = p.min or 0.0, p.max or 1.0
    return lo + (hi - lo) * ((k % 97) + 1) / 99.0   # strictly inside [min, max], varies with k


class DatabaseOutage:
    """Makes the store really unavailable: PostgreSQL refuses connections; SQLite is locked exclusively."""

    def __init__(self, engine, seconds: float):
        self.engine, self.seconds = engine, seconds

    def run(self):
        if self.engine.dialect.name == "postgresql":
            name = self.engine.url.database
            admin = sa.create_engine(self.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                c.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
                time.sleep(self.seconds)
                c.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.dispose()
        else:
            lock = sqlite3.connect(self.engine.url.database, isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            time.sleep(self.seconds)
            lock.execute("ROLLBACK")
            lock.close()


def stored_rows(engine) -> int:
    """Rows in the measurement table now (-1 while the database refuses us)."""
    try:
        return count_rows(engine, "measurement")
    except sa.exc.OperationalError:
        return -1


def short_busy_timeout(engine):
    """SQLite waits 30 s for a lock by default; 200 ms makes a held lock an outage the writer sees."""
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", lambda dbapi, _rec: dbapi.execute("PRAGMA busy_timeout=200"))
    engine.dispose()


# ----------------------------------------------------------------------------------------------- integration
def test_no_loss_through_broker_restart_and_database_outage(engine, broker, tmp_path):
    init_db(engine, PARK)
    short_busy_timeout(engine)
    gw = Gateway(PARK, mqtt_map(broker, tmp_path), engine, tmp_path, health_s=1.0)
    steps = 400                                   # 400 instants x 26 topics = 10,400 messages
    t0_ms = 1_795_000_000_000
    expected = {(tag, t0_ms + k * 1000): mid_range(tag, k) for k in range(steps) for tag in MQTT_TAGS}
    assert len(expected) >= 10_000
    with GatewayThread(gw):
        wait_until(lambda: gw.health[1].connected, 10, "gateway connected")
        pub = publisher(broker)
        outage = None
        for k in range(steps):
            pub.publish({tag: mid_range(tag, k) for tag in MQTT_TAGS}, t0_ms + k * 1000)
            if k == 120:
                broker.restart(down_s=1.0)        # messages published meanwhile wait in the publisher's queue
            if k == 250:
                outage = threading.Thread(target=DatabaseOutage(engine, 3.0).run)
                outage.start()
                time.sleep(0.5)
            time.sleep(0.01)
        outage.join()
        wait_until(lambda: stored_rows(engine) == len(expected) and not len(gw.buffer), 90, "all messages stored")
        pub.stop()
    assert gw.writer.health.n_errors >= 1, "the database outage was not noticed: the test did not test it"
    assert gw.writer.n_buffered >= 1, "nothing went through the disk buffer"
    got = read_series(engine, MQTT_TAGS, pd.Timestamp(t0_ms, unit="ms", tz="UTC"),
                      pd.Timestamp(t0_ms + steps * 1000, unit="ms", tz="UTC"), tz="UTC")
    long = got.rename_axis(index="ts", columns="tag").stack().rename("value").reset_index()
    assert len(long) == len(expected)             # exactly once: the key (point, ts) cannot hold two rows
    for row in long.itertuples():
        assert row.value == pytest.approx(expected[(row.tag, int(row.ts.timestamp() * 1000))], abs=1e-6)


def test_bad_input_is_counted_and_never_changes_good_data(engine, broker, tmp_path, caplog):
    init_db(engine, PARK)
    gw = Gateway(PARK, mqtt_map(broker, tmp_path), engine, tmp_path, health_s=0.5)
    ts = 1_795_000_000_000
    topic = "anning/E01/E01-CEMS/co2_t_h"       # limits 0 .. 10 t/h in the park model
    with GatewayThread(gw):
        wait_until(lambda: gw.health[1].connected, 10, "gateway connected")
        pub = publisher(broker)
        c = pub.client
        c.publish(topic, f'{{"ts": {ts}, "v": 4.25}}', qos=1).wait_for_publish(5)
        wait_until(lambda: gw.writer.latency.committed >= 1, 10, "good value stored")
        bad = [(topic, "{not json"), ("anning/E01/E01-NOPE/co2_t_h", f'{{"ts": {ts}, "v": 1}}'),
               (topic, f'{{"ts": {ts}, "v": 99.0}}'),                  # above max 10 t/h
               (topic, f'{{"ts": {ts}, "v": "4.3"}}'),                 # wrong type
               (topic, f'{{"ts": {ts}, "v": 1.0, "q": "bad"}}'),       # worse quality: must not replace good
               (topic, f'{{"ts": {ts}, "v": 1.0, "q": "perfect"}}')]
        for t, payload in bad * 3:
            c.publish(t, payload, qos=1).wait_for_publish(5)
        c.publish(topic, f'{{"ts": {ts + 1000}, "v": 5.5}}', qos=1).wait_for_publish(5)
        wait_until(lambda: gw.writer.latency.committed >= 5, 10, "later good value stored")  # 1 + 3 q=bad + 1
        pub.stop()
    h = gw.health[1]
    assert h.n_bad == 3 * 5                       # 5 rejected kinds x 3; the q=bad value is valid but worse
    assert {"malformed_json", "unknown_topic", "out_of_range", "wrong_type", "bad_quality"} <= h._logged
    for kind in ("malformed_json", "unknown_topic", "out_of_range", "wrong_type", "bad_quality"):
        logged = [r for r in caplog.records if f"({kind})" in r.getMessage()]
        assert len(logged) == 1, kind            # three of each arrived: logged once, counted three times
    s = read_series(engine, ["E01-CEMS.co2_t_h"], pd.Timestamp(ts, unit="ms", tz="UTC"),
                    pd.Timestamp(ts + 2000, unit="ms", tz="UTC"), tz="UTC")["E01-CEMS.co2_t_h"]
    assert s.tolist() == [4.25, 5.5]
    with engine.connect() as conn:
        q = conn.execute(sa.text("select quality from measurement order by ts")).scalars().all()
        health = conn.execute(sa.text("select source, n_bad, connected from ingest_health order by source")).all()
    assert q == [0, 0]
    assert ("park-broker", 15, False) in [tuple(r) for r in health]


def test_persistent_session_keeps_messages_sent_while_the_gateway_is_away(engine, broker, tmp_path):
    init_db(engine, PARK)
    maps = mqtt_map(broker, tmp_path, client_id="gw-persistent")
    with GatewayThread(Gateway(PARK, maps, engine, tmp_path)) as gw:   # first run: subscribes, then stops
        wait_until(lambda: gw.health[1].connected, 10, "gateway connected")
    pub = publisher(broker)
    ts = 1_795_000_000_000
    for k in range(300):                           # the gateway is down: the broker queues these for it
        pub.client.publish("anning/E01/E01-CEMS/co2_t_h", f'{{"ts": {ts + k * 1000}, "v": {k % 10}}}', qos=1)
    wait_until(lambda: not pub.client._out_messages, 10, "broker acknowledged every message")
    pub.stop()
    with GatewayThread(Gateway(PARK, maps, engine, tmp_path)) as gw2:  # same client id, same session
        wait_until(lambda: stored_rows(engine) == 300, 20, "queued messages delivered after restart")
    assert gw2.health[1].n_bad == 0


def test_embedded_fallback_broker_carries_the_convention(engine, tmp_path):
    """The demo's fallback where Mosquitto is absent (amqtt, plain TCP): the gateway ingests through it."""
    from conftest import free_port

    from anning_lib.sim.mqtt_broker import EmbeddedBroker
    from anning_lib.sim.serve import fallback_maps

    init_db(engine, PARK)
    port = free_port()
    conn = MqttConnection(name="embedded", port=port, client_id=f"gw-{port}", devices=MQTT_DEVICES,
                          tls=MqttTls(ca=Path("pki/ca.crt")), username="gateway",
                          password=SecretRef(env="ANNING_UNUSED_PW"))
    maps = fallback_maps(PointMaps(mqtt={"protocol": "mqtt", "connections": [conn]}))
    assert maps.mqtt.connections[0].tls is None and maps.mqtt.connections[0].password is None
    ts = 1_795_000_000_000

    async def go():
        broker = EmbeddedBroker(port)
        await broker.start()
        gw = Gateway(PARK, maps, engine, tmp_path)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        try:
            for _ in range(100):
                if gw.health[1].connected:
                    break
                await asyncio.sleep(0.05)
            pub = SimMqttPublisher(PARK, "127.0.0.1", port, client_id=f"pub-{port}")
            pub.start()
            for _ in range(100):
                if pub.client.is_connected():
                    break
                await asyncio.sleep(0.05)
            pub.publish({"E01-CEMS.co2_t_h": 3.5, "WX.ghi_w_m2": 640.0}, ts)
            for _ in range(100):
                if gw.writer.latency.committed >= 2:
                    break
                await asyncio.sleep(0.05)
            pub.stop()
        finally:
            stop.set()
            await task
            await broker.stop()

    asyncio.run(go())
    got = read_series(engine, ["E01-CEMS.co2_t_h", "WX.ghi_w_m2"], pd.Timestamp(ts, unit="ms", tz="UTC"),
                      pd.Timestamp(ts + 1, unit="ms", tz="UTC"), tz="UTC")
    assert got.iloc[0].tolist() == [3.5, 640.0]
