"""The ingestion gateway (``anning ingest run``): every adapter, one screening intake, one batching writer.

One asyncio loop runs a Modbus poller per Modbus connection, an OPC UA subscriber per OPC UA endpoint and an MQTT
subscriber per broker (paho's network thread feeds the same intake), the :class:`BatchWriter` and a task that
stores each connection's health in ``ingest_health`` every ``health_s`` seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from pathlib import Path

from sqlalchemy.engine import Engine

from anning_lib.aio import wait_or_stop
from anning_lib.ingest.buffer import DiskBuffer
from anning_lib.ingest.model import Quality, Sample, SourceHealth
from anning_lib.ingest.pointmap import PointMaps, mqtt_topic_table
from anning_lib.ingest.writer import Ack, BatchWriter
from anning_lib.park.schema import Park, point_tag
from anning_lib.store.assets import upsert
from anning_lib.store.schema import TABLES

log = logging.getLogger("anning.ingest")


class Intake:
    """The gateway's sink: reject what cannot be stored, count it on its source, queue the rest.

    Rejected (counted in ``health.n_bad``, logged once per kind and source): a tag that is not a point of the park
    model, a value that is not finite, a value outside the point's ``min``/``max``.
    """

    def __init__(self, park: Park, writer: BatchWriter):
        self.writer = writer
        self.points = {point_tag(d.id, p.id): p for _e, d, p in park.iter_points()}
        self.last: dict[str, Sample] = {}   # tag -> newest accepted sample (live values for dashboards)
        self.listeners: list = []           # callables given every batch of accepted samples and of readings
                                            # rejected as out of range (the alarm engine)

    def check(self, s: Sample) -> tuple[str, str] | None:
        """None if the sample may be stored, else ``(kind, message)``."""
        point = self.points.get(s.tag)
        if point is None:
            return "unknown_point", f"{s.tag} is not a point of the park model"
        why = point.limit_violation(s.value)
        if why is None:
            return None
        return ("out_of_range" if math.isfinite(s.value) else "not_finite"), f"{s.tag}: {why}"

    def __call__(self, samples: list[Sample], health: SourceHealth, ack: Ack | None = None) -> None:
        good, heard = [], []       # heard: what listeners get: stored samples and out-of-range readings
        for s in samples:
            problem = self.check(s)
            if problem is None:
                good.append(s)
                heard.append(s)
                prev = self.last.get(s.tag)
                if prev is None or s.ts_ms >= prev.ts_ms:
                    self.last[s.tag] = s
            else:
                health.bad(*problem)
                if problem[0] == "out_of_range":
                    heard.append(s)    # not stored, but the range alarm must see it
        health.seen(good)
        self.writer.submit(good, ack)
        for listen in self.listeners:
            try:
                listen(heard)
            except Exception:  # noqa: BLE001 - a listener's failure must not lose data or stop ingestion
                log.exception("sample listener %r failed", listen)


class Gateway:
    """All adapters of the point maps, writing into one store.

    Parameters
    ----------
    park : Park
    maps : PointMaps
    engine : Engine
        the store (schema at head, park synced).
    var_dir : Path
        base of relative certificate and secret paths; the buffer file lives here too.
    flush_s, health_s : float
        writer flush interval and health-row refresh interval [s].
    """

    def __init__(self, park: Park, maps: PointMaps, engine: Engine, var_dir: Path, *, flush_s: float = 0.1,
                 health_s: float = 5.0, buffer_path: Path | None = None):
        self.park, self.maps, self.engine, self.var_dir = park, maps, engine, Path(var_dir)
        self.health_s = health_s
        self.buffer = DiskBuffer(buffer_path or self.var_dir / "ingest-buffer.sqlite")
        self.writer = BatchWriter(engine, self.buffer, flush_s=flush_s)
        self.intake = Intake(park, self.writer)
        self.adapters: list = []
        self.health: list[SourceHealth] = [self.writer.health]
        self._build()

    def _add(self, adapter, health: SourceHealth) -> None:
        self.adapters.append(adapter)
        self.health.append(health)

    def _build(self) -> None:
        if self.maps.modbus:
            from anning_lib.ingest.modbus import ModbusPoller

            for conn in self.maps.modbus.connections:
                h = SourceHealth(conn.name, "modbus")
                self._add(ModbusPoller(conn, self.intake, h), h)
        if self.maps.opcua:
            from anning_lib.ingest.opcua import OpcuaSubscriber

            for conn in self.maps.opcua.connections:
                h = SourceHealth(conn.name, "opcua")
                pw = conn.password.resolve(self.var_dir) if conn.password else None
                self._add(OpcuaSubscriber(conn, self.intake, h, self.var_dir, pw), h)
        if self.maps.mqtt:
            from anning_lib.ingest.mqtt import MqttSubscriber

            for conn in self.maps.mqtt.connections:
                h = SourceHealth(conn.name, "mqtt")
                pw = conn.password.resolve(self.var_dir) if conn.password else None
                topics = mqtt_topic_table(conn, self.park)
                self._add(MqttSubscriber(conn, topics, self.intake, h, self.var_dir, pw), h)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop the adapters, flush the writer and store the health rows."""
        adapter_stop = asyncio.Event()
        writer_stop = asyncio.Event()
        tasks = [asyncio.create_task(a.run(adapter_stop), name=f"adapter-{i}") for i, a in enumerate(self.adapters)]
        writer = asyncio.create_task(self.writer.run(writer_stop), name="writer")
        health = asyncio.create_task(self._health_loop(adapter_stop), name="health")
        await stop.wait()
        adapter_stop.set()
        for task, result in zip(tasks, await asyncio.gather(*tasks, health, return_exceptions=True)):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("%s ended with an error: %r", task.get_name(), result)
        for h in self.health[1:]:
            h.connected = False            # stopped on purpose: not an error
        writer_stop.set()
        await writer
        await asyncio.to_thread(self.store_health)
        self.buffer.close()

    async def _health_loop(self, stop: asyncio.Event) -> None:
        while not await wait_or_stop(stop, self.health_s):
            try:
                await asyncio.to_thread(self.store_health)
            except Exception as err:  # the database may be down: the writer's health says so already
                log.debug("health rows not stored: %s", err)

    def store_health(self) -> None:
        """Upsert one ``ingest_health`` row per connection (and one for the writer)."""
        now = dt.datetime.now(dt.UTC)
        rows = []
        for h in self.health:
            r = h.as_row()
            last = r.pop("last_seen_s")
            r["last_seen"] = None if last is None else dt.datetime.fromtimestamp(last, dt.UTC)
            r["updated_at"] = now
            rows.append(r)
        with self.engine.begin() as conn:
            upsert(conn, TABLES["ingest_health"], rows, ["source"])

    def sources(self) -> list[tuple[SourceHealth, list[str]]]:
        """Each connection's health with the device ids it serves (for communication-loss alarms)."""
        out = []
        for a, h in zip(self.adapters, self.health[1:]):
            if hasattr(a, "topics"):                       # MQTT: the devices behind its topic table
                devices = sorted({tag.split(".", 1)[0] for tag in a.topics.values()})
            else:
                devices = [d.device for d in a.conn.devices]
            out.append((h, devices))
        return out

    def live_value(self, tag: str, max_age_s: float = 15.0) -> float | None:
        """The newest reading of ``tag`` [its unit] if of good quality and received in the last ``max_age_s``
        [s], else None (for the peak guard: an old, stale or doubtful reading must not drive control)."""
        s = self.intake.last.get(tag)
        if s is None or s.quality != Quality.GOOD or time.time() - s.recv_s > max_age_s:
            return None
        return s.value

    def adapter_for(self, tag: str):
        """The adapter whose map holds ``tag`` (for the control path), or None."""
        device = tag.split(".", 1)[0]
        for a in self.adapters:
            conn = getattr(a, "conn", None)
            if conn is not None and any(getattr(d, "device", d) == device for d in conn.devices):
                return a
        return None
