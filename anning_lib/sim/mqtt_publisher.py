"""The simulator's smart meters and CEMS: publish their readings to the broker by the payload convention.

Each point is one topic ``anning/<enterprise>/<device>/<point>`` with payload ``{"ts": <epoch ms>, "v": value}``,
QoS 1, from a persistent session, so messages published while the broker restarts are sent on reconnect.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from anning_lib.ingest.pointmap import convention_topic
from anning_lib.park.schema import Park


class SimMqttPublisher:
    """Publishes the MQTT devices' readings.

    Parameters
    ----------
    park : Park
        the devices with ``protocol: mqtt`` are the ones published.
    host, port : str, int
        the broker.
    ca : Path, optional
        CA certificate for TLS (None: plain TCP).
    username, password : str, optional
    client_id : str
    """

    def __init__(self, park: Park, host: str, port: int, *, ca: Path | None = None, username: str | None = None,
                 password: str | None = None, client_id: str = "anning-sim"):
        self.topics = {f"{d.id}.{p.id}": convention_topic(eid, d.id, p.id)
                       for eid, d in park.iter_devices() if d.protocol == "mqtt" for p in d.points}
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False,
                                  protocol=paho.MQTTv311)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.2, 5)
        self.host, self.port = host, port

    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def publish(self, values: dict[str, float], ts_ms: int) -> int:
        """Publish every mapped tag in ``values`` stamped ``ts_ms``; returns the number of messages queued."""
        n = 0
        for tag, v in values.items():
            topic = self.topics.get(tag)
            if topic is not None and v == v:  # NaN: no reading
                self.client.publish(topic, json.dumps({"ts": ts_ms, "v": round(float(v), 6)}), qos=1)
                n += 1
        return n

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
