"""The gateway's MQTT adapter: subscribe (QoS 1, persistent session, TLS), parse payloads, hand samples on.

Payload convention (docs/ingest.md): topic ``anning/<enterprise>/<device>/<point>``; payload a JSON object
``{"ts": <ISO-8601 with offset | epoch milliseconds>, "v": <number>, "q": "good"|"uncertain"|"bad"}`` (``q``
optional, default good) or a JSON list of such objects. :func:`parse_payload` is pure; :class:`MqttSubscriber`
does the I/O with paho-mqtt. Messages are acknowledged (PUBACK) only after their samples are committed to the
store or written to the on-disk buffer, so a gateway crash cannot lose a message the broker considers delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from anning_lib.ingest.model import Quality, Sample, SourceHealth
from anning_lib.ingest.pointmap import MqttConnection, resolve_path

log = logging.getLogger("anning.ingest")
_MAX_TS_MS = 4_102_444_800_000  # 2100-01-01: larger numbers are not epoch milliseconds


class PayloadError(ValueError):
    """A payload that does not follow the convention; ``kind`` names the rule broken."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def parse_ts_ms(ts: object) -> int:
    """``ts`` of a payload -> epoch milliseconds (UTC).

    Accepts integer or float epoch milliseconds, or an ISO-8601 string with a UTC offset (``Z`` or ``+08:00``).
    """
    if isinstance(ts, bool):
        raise PayloadError("bad_ts", f"ts must be ISO-8601 or epoch ms, got {ts!r}")
    if isinstance(ts, (int, float)):
        if not (math.isfinite(ts) and 0 <= ts < _MAX_TS_MS):
            raise PayloadError("bad_ts", f"ts {ts!r} is not epoch milliseconds between 1970 and 2100")
        return int(ts)
    if isinstance(ts, str):
        try:
            when = datetime.fromisoformat(ts)
        except ValueError:
            raise PayloadError("bad_ts", f"ts {ts!r} is not ISO-8601") from None
        if when.tzinfo is None:
            raise PayloadError("bad_ts", f"ts {ts!r} has no UTC offset (write e.g. +08:00 or Z)")
        return int(round(when.timestamp() * 1000))
    raise PayloadError("bad_ts", f"ts must be ISO-8601 or epoch ms, got {ts!r}")


def _one(obj: object) -> tuple[int, float, int]:
    if not isinstance(obj, dict):
        raise PayloadError("bad_payload", f"expected an object with ts and v, got {obj!r:.80}")
    if "ts" not in obj or "v" not in obj:
        raise PayloadError("bad_payload", f"missing {'ts' if 'ts' not in obj else 'v'} in {obj!r:.80}")
    v = obj["v"]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PayloadError("wrong_type", f"v must be a number, got {v!r:.40}")
    q = obj.get("q", "good")
    try:
        quality = Quality.from_text(q) if isinstance(q, str) else None
    except ValueError as err:
        raise PayloadError("bad_quality", str(err)) from None
    if quality is None or quality is Quality.STALE:
        raise PayloadError("bad_quality", f"q must be good, uncertain or bad, got {q!r:.40}")
    return parse_ts_ms(obj["ts"]), float(v), int(quality)


def parse_payload(payload: bytes) -> list[tuple[int, float, int]]:
    """Decode one message into ``(ts_ms, value, quality)`` triples; raises PayloadError naming the problem."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PayloadError("malformed_json", f"payload is not JSON ({err}): {payload[:60]!r}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise PayloadError("bad_payload", "empty list")
    return [_one(o) for o in items]


class MqttSubscriber:
    """Subscribes to one broker connection and turns messages into samples.

    Parameters
    ----------
    conn : MqttConnection
        broker, session, TLS and subscriptions from ``ingest/mqtt.yaml``.
    topics : dict of str to str
        topic -> tag (:func:`anning_lib.ingest.pointmap.mqtt_topic_table`); other topics are counted bad.
    sink : callable
        ``sink(samples, health, ack)``; ``ack()`` must be called once the samples are durable.
    health : SourceHealth
    var_dir : Path
        base of relative certificate paths.
    password : SecretStr, optional
        resolved from ``conn.password``.
    """

    def __init__(self, conn: MqttConnection, topics: dict[str, str], sink: Callable, health: SourceHealth,
                 var_dir: Path, password: SecretStr | None = None):
        self.conn, self.topics, self.sink, self.health = conn, topics, sink, health
        self._stopping = False
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=conn.client_id,
                                  clean_session=conn.clean_session, protocol=paho.MQTTv311, manual_ack=True)
        if conn.tls is not None:
            self.client.tls_set(ca_certs=str(resolve_path(conn.tls.ca, var_dir)),
                                certfile=_opt(resolve_path(conn.tls.certificate, var_dir)),
                                keyfile=_opt(resolve_path(conn.tls.private_key, var_dir)))
        if conn.username:
            self.client.username_pw_set(conn.username, password.get_secret_value() if password else None)
        self.client.reconnect_delay_set(0.5, 30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def _on_connect(self, client, _userdata, _flags, reason_code, _props):
        if reason_code.is_failure:
            self.health.down(f"broker {self.conn.host}:{self.conn.port} refused the connection: {reason_code}")
            return
        client.subscribe([(f, self.conn.qos) for f in self.conn.subscribe])
        self.health.up()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props):
        if self._stopping:
            self.health.connected = False
            return
        self.health.down(f"broker {self.conn.host}:{self.conn.port} disconnected ({reason_code})")

    def _ack_for(self, msg) -> Callable[[], None] | None:
        if msg.qos == 0:
            return None
        mid, qos, client = msg.mid, msg.qos, self.client
        return lambda: client.ack(mid, qos)

    def _on_message(self, _client, _userdata, msg):
        try:
            self._handle(msg)
        except Exception as err:  # noqa: BLE001 - an exception here would end paho's network thread
            log.exception("%s: message on %r not handled", self.conn.name, msg.topic)
            self.health.error("internal", f"{msg.topic}: {err!r}")

    def _handle(self, msg) -> None:
        recv_s = time.time()
        ack = self._ack_for(msg)
        tag = self.topics.get(msg.topic)
        if tag is None:
            self.health.bad("unknown_topic", f"topic {msg.topic!r} is not in the point map")
            return self.sink([], self.health, ack)
        try:
            rows = parse_payload(msg.payload)
        except PayloadError as err:
            self.health.bad(err.kind, f"{msg.topic}: {err}")
            return self.sink([], self.health, ack)
        self.sink([Sample(tag, ts, v, q, recv_s) for ts, v, q in rows], self.health, ack)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying in the background), receive until ``stop`` is set, then disconnect."""
        self.client.connect_async(self.conn.host, self.conn.port, keepalive=self.conn.keepalive_s)
        self.client.loop_start()
        try:
            await stop.wait()
        finally:
            self._stopping = True
            self.client.disconnect()
            self.client.loop_stop()


def _opt(path: Path | None) -> str | None:
    return None if path is None else str(path)
