"""Benchmark of ingestion: MQTT into the store through the gateway, against a naive writer in the same run.

Set-up per backend (SQLite file; PostgreSQL when ``ANNING_TEST_PG_URL`` names a server): a fresh database with the
Anning park, a real Mosquitto broker with TLS and passwords on loopback, the gateway (MQTT adapter, screening
intake, batching writer) in this process, and a publisher in a *separate process* (so it does not share this
process's interpreter lock) sending one JSON sample per message, QoS 1, on the park's MQTT topics.

Measured:

* **one sample per message**: ``--single`` points, one JSON object per message (paho's per-message cost bounds
  this: about 7,000 QoS 1 messages/s on this machine even with no subscriber);
* **saturation**: ``--burst`` points, ``--per-msg`` samples per message (the convention's JSON list, as a data
  concentrator or a meter sending its last readings does), published as fast as the publisher can; sustained
  points/s = points / (last commit - first publish);
* **latency at a steady rate**: ``--rate`` points/s for ``--seconds``; publish-to-committed latency p50/p99
  (the last sample of a message is stamped at the publish instant; the writer records each commit instant);
* **naive writer baseline**: the same gateway but one row per transaction, on a smaller burst.

Target (issue 3): at least 20,000 points/s with p99 under 1 s on this 2-core machine.
Run: ``make bench`` (which provides PostgreSQL), or ``.venv/bin/python bench/ingest.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.ingest.gateway import Gateway  # noqa: E402
from anning_lib.ingest.pointmap import (  # noqa: E402
    MqttConnection,
    MqttTls,
    PointMaps,
    convention_topic,
)
from anning_lib.ingest.writer import BatchWriter, samples_frame  # noqa: E402
from anning_lib.park import load_park  # noqa: E402
from anning_lib.sim.mqtt_broker import MosquittoBroker  # noqa: E402
from anning_lib.store import init_db, make_engine, write_measurements  # noqa: E402
from anning_lib.store.engine import normalise_url  # noqa: E402


class NaiveWriter(BatchWriter):
    """Baseline: every sample in its own transaction (what a first attempt usually does)."""

    def _write(self, batch):
        for s in batch:
            write_measurements(self.engine, samples_frame([s]), replace="unless_worse")
        self.latency.add(batch, time.time())
        return True


def publish_process(port: int, ca: str, topics: list[str], n: int, rate: float | None, start_ms: int, per_msg: int,
                    q):
    """Child process: publish ``n`` points round-robin over ``topics``, ``per_msg`` samples per message (a JSON
    list), at ``rate`` points/s or flat out. Samples of one message are 1 ms apart, the last at the publish instant
    (steady run) or at consecutive milliseconds from ``start_ms`` (saturation run)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}", clean_session=True)
    c.tls_set(ca_certs=ca)
    c.username_pw_set("sim", "sim-secret")
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.time()
    q.put(t0)
    k_topics = len(topics)
    last_ms = {t: 0 for t in topics}
    for m in range(n // per_msg):
        i = m * per_msg
        if rate is not None and m % 10 == 0:
            lag = t0 + i / rate - time.time()
            if lag > 0:
                time.sleep(lag)
        topic = topics[m % k_topics]
        end_ms = int(time.time() * 1000) if rate is not None else start_ms + (m // k_topics + 1) * per_msg
        end_ms = max(end_ms, last_ms[topic] + per_msg)  # (topic, ts) never repeats
        last_ms[topic] = end_ms
        body = [{"ts": end_ms - (per_msg - 1 - j), "v": 1.0 + ((i + j) % 7)} for j in range(per_msg)]
        c.publish(topic, json.dumps(body if per_msg > 1 else body[0]), qos=1)
    while c._out_messages:  # noqa: SLF001 - wait for every PUBACK before disconnecting
        time.sleep(0.05)
    c.disconnect()
    c.loop_stop()


class Run:
    """One gateway + broker on one database."""

    def __init__(self, url: str, tmp: Path, park, writer_cls=BatchWriter):
        self.engine = make_engine(url)
        init_db(self.engine, park)
        self.broker = MosquittoBroker(tmp / "broker", _free_port(), {"gateway": "gw-secret", "sim": "sim-secret"},
                                      tmp / "pki")
        self.broker.start()
        os.environ["ANNING_BENCH_GW_PW"] = "gw-secret"
        devices = [d.id for _e, d in park.iter_devices() if d.protocol == "mqtt"]
        conn = MqttConnection(name="bench", port=self.broker.port, client_id=f"gw-{uuid.uuid4().hex[:6]}",
                              tls=MqttTls(ca=tmp / "pki" / "ca.crt"), username="gateway",
                              password={"env": "ANNING_BENCH_GW_PW"}, devices=devices)
        self.gw = Gateway(park, PointMaps(mqtt={"protocol": "mqtt", "connections": [conn]}), self.engine, tmp,
                          buffer_path=tmp / f"buffer-{uuid.uuid4().hex[:6]}.sqlite")
        if writer_cls is not BatchWriter:
            self.gw.writer.__class__ = writer_cls
        self.topics = [convention_topic(eid, d.id, p.id) for eid, d in park.iter_devices() if d.protocol == "mqtt"
                       for p in d.points]
        self.loop = asyncio.new_event_loop()
        self.stop = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        while not self.gw.health[1].connected:
            time.sleep(0.05)

    def _main(self):
        asyncio.set_event_loop(self.loop)
        self.stop = asyncio.Event()
        self.loop.run_until_complete(self.gw.run(self.stop))

    def publish(self, n: int, rate: float | None, start_ms: int, per_msg: int) -> dict:
        w = self.gw.writer
        w.latency.reset()
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        p = ctx.Process(
            target=publish_process, args=(self.broker.port, str(self.broker.pki_dir / "ca.crt"), self.topics, n, rate,
                                          start_ms, per_msg, q))
        p.start()
        t_pub = q.get(timeout=60)
        deadline = time.time() + 600
        while w.latency.committed < n and time.time() < deadline:
            time.sleep(0.01)
        t_done = time.time()
        p.join(60)
        p50, p99 = w.latency.percentiles(50, 99)
        return {"n": w.latency.committed, "s": t_done - t_pub, "pts_per_s": w.latency.committed / (t_done - t_pub),
                "msgs_per_s": w.latency.committed / per_msg / (t_done - t_pub), "p50_s": p50, "p99_s": p99}

    def close(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)
        self.broker.stop()
        self.engine.dispose()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_backend(name: str, url: str, args, park) -> None:
    with tempfile.TemporaryDirectory() as d:
        run = Run(url, Path(d), park)
        try:
            single = run.publish(args.single, None, 1_600_000_000_000, 1)
            sat = run.publish(args.burst, None, 1_700_000_000_000, args.per_msg)
            steady = run.publish(int(args.rate * args.seconds), args.rate, 0, args.per_msg)
        finally:
            run.close()
    with tempfile.TemporaryDirectory() as d:
        naive_url = url if name == "postgresql" else f"sqlite:///{Path(d) / 'naive.sqlite'}"
        run = Run(naive_url if name == "sqlite" else _fresh_pg(url), Path(d), park, writer_cls=NaiveWriter)
        try:
            naive = run.publish(args.naive, None, 1_700_000_000_000, args.per_msg)
        finally:
            run.close()
    print(f"\n{name}")
    print(f"  1 sample/msg {single['n']:>8,} points in {single['s']:6.2f} s = {single['pts_per_s']:>9,.0f} points/s "
          f"({single['msgs_per_s']:,.0f} msgs/s)")
    print(f"  saturation   {sat['n']:>8,} points in {sat['s']:6.2f} s = {sat['pts_per_s']:>9,.0f} points/s "
          f"({sat['msgs_per_s']:,.0f} msgs/s of {args.per_msg} samples)")
    print(f"  steady       {steady['n']:>8,} points at {args.rate:,.0f}/s = {steady['pts_per_s']:>9,.0f} points/s, "
          f"publish-to-committed p50 {steady['p50_s'] * 1000:.0f} ms, p99 {steady['p99_s'] * 1000:.0f} ms")
    print(f"  naive writer {naive['n']:>8,} points in {naive['s']:6.2f} s = {naive['pts_per_s']:>9,.0f} points/s "
          f"(same messages, one row per transaction)")
    ok = sat["pts_per_s"] >= 20_000 and steady["p99_s"] < 1.0
    print(f"  speed-up over naive: {sat['pts_per_s'] / naive['pts_per_s']:.0f}x;  "
          f"target >= 20,000 points/s and p99 < 1 s: {'met' if ok else 'NOT met'}")


_CREATED: list[str] = []


def _fresh_pg(server_url: str) -> str:
    server = normalise_url(server_url)
    name = f"anning_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    _CREATED.append(str(server.set(database=name).render_as_string(hide_password=False)))
    return _CREATED[-1]


def _drop_created() -> None:
    for url in _CREATED:
        u = normalise_url(url)
        admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--burst", type=int, default=300_000, help="points in the saturation run")
    ap.add_argument("--rate", type=float, default=20_000, help="points/s in the steady run")
    ap.add_argument("--seconds", type=float, default=10, help="length of the steady run [s]")
    ap.add_argument("--naive", type=int, default=5_000, help="points for the naive writer")
    ap.add_argument("--per-msg", type=int, default=10, help="samples per message (a JSON list) [-]")
    ap.add_argument("--single", type=int, default=30_000, help="points in the one-sample-per-message run")
    args = ap.parse_args()
    park = load_park()
    print(f"MQTT -> store through the gateway; Mosquitto with TLS; QoS 1; {args.per_msg} samples per message "
          f"(a JSON list) unless said; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d:
        bench_backend("sqlite", f"sqlite:///{Path(d) / 'bench.sqlite'}", args, park)
    pg = os.environ.get("ANNING_TEST_PG_URL")
    if pg:
        try:
            bench_backend("postgresql", _fresh_pg(pg), args, park)
        finally:
            _drop_created()
    else:
        print("\npostgresql: skipped (ANNING_TEST_PG_URL not set; `make bench` starts a server)")


if __name__ == "__main__":
    main()
