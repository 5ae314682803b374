"""The simulated park on the wire: Modbus TCP, OPC UA and MQTT servers fed by :class:`LiveValues`.

:class:`SimServers` starts one server per connection of the gateway's point maps, at the addresses the maps name
(so the gateway reaches the simulator exactly as it would reach the park's devices), and every ``tick_s`` seconds
pushes the current readings into them: Modbus registers, OPC UA variables (with source timestamps) and MQTT
messages (every ``publish_s`` seconds). Storage setpoints written by a client over Modbus or OPC UA reach the
simulated storage, which then follows them.

:func:`ensure_demo_credentials` creates what the demo needs on first run: the demo CA and broker certificate, the
OPC UA application certificates and the MQTT passwords (files with mode 0600 under the var dir).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path

import pandas as pd

from anning_lib.aio import wait_or_stop
from anning_lib.ingest.opcua_pki import ensure_opcua_pki
from anning_lib.ingest.pointmap import PointMaps, resolve_path
from anning_lib.park.schema import Park
from anning_lib.sim.live import LiveValues
from anning_lib.sim.mqtt_broker import (
    EmbeddedBroker,
    MosquittoBroker,
    mosquitto_available,
)
from anning_lib.sim.mqtt_publisher import SimMqttPublisher

log = logging.getLogger("anning.sim")
SIM_MQTT_USER = "sim"


def _secret_file(path: Path) -> str:
    """Read a secret file, creating it (random, mode 0600) first if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def ensure_demo_credentials(maps: PointMaps, var_dir: Path) -> dict[str, str]:
    """Certificates and passwords of the demo (idempotent); returns MQTT user -> password for the broker."""
    pki = var_dir / "pki"
    ensure_opcua_pki(pki)
    users = {SIM_MQTT_USER: _secret_file(var_dir / "secrets" / "mqtt-sim.pw")}
    for conn in maps.mqtt.connections if maps.mqtt else []:
        if conn.username and conn.password and conn.password.file is not None:
            users[conn.username] = _secret_file(resolve_path(conn.password.file, var_dir))
    return users


def fallback_maps(maps: PointMaps) -> PointMaps:
    """The maps as the gateway must use them with the embedded broker: plain TCP, no login."""
    if maps.mqtt is None:
        return maps
    conns = [c.model_copy(update={"tls": None, "username": None, "password": None}) for c in maps.mqtt.connections]
    return maps.model_copy(update={"mqtt": maps.mqtt.model_copy(update={"connections": conns})})


class SimServers:
    """Every simulated device server of the point maps, fed from ``live``.

    Parameters
    ----------
    park : Park
    maps : PointMaps
        the gateway's maps: the servers listen where the gateway will connect.
    live : LiveValues
    var_dir : Path
        certificates, secrets and the broker's working folder.
    tick_s, publish_s : float
        update period of the Modbus/OPC UA servers and MQTT publication period [s].
    """

    def __init__(self, park: Park, maps: PointMaps, live: LiveValues, var_dir: Path, *, tick_s: float = 1.0,
                 publish_s: float = 5.0):
        self.park, self.maps, self.live, self.var_dir = park, maps, live, Path(var_dir)
        self.tick_s, self.publish_s = tick_s, publish_s
        self.modbus, self.opcua, self.brokers, self.publishers = [], [], [], []
        self.broker_kind = "none"

    async def start(self, now: pd.Timestamp | None = None) -> None:
        """Start the servers and serve the readings at ``now`` (default: the wall clock)."""
        from anning_lib.sim.modbus_server import SimModbusServer
        from anning_lib.sim.opcua_server import SimOpcuaServer

        users = ensure_demo_credentials(self.maps, self.var_dir)
        for conn in self.maps.modbus.connections if self.maps.modbus else []:
            self.modbus.append(SimModbusServer(conn))
        for conn in self.maps.opcua.connections if self.maps.opcua else []:
            self.opcua.append(SimOpcuaServer(conn, self.park, self.var_dir / "pki"))
        for server in self.modbus + self.opcua:
            await server.start()
        for conn in self.maps.mqtt.connections if self.maps.mqtt else []:
            await self._start_broker(conn, users)
        self.push(pd.Timestamp.now(tz="UTC") if now is None else now, publish=False)

    async def _start_broker(self, conn, users: dict[str, str]) -> None:
        ca = None
        if mosquitto_available():
            broker = MosquittoBroker(self.var_dir / f"broker-{conn.name}", conn.port, users, self.var_dir / "pki",
                                     host=conn.host, tls=conn.tls is not None)
            await asyncio.to_thread(broker.start)
            self.broker_kind = "mosquitto" + (" (TLS)" if conn.tls else "")
            ca = self.var_dir / "pki" / "ca.crt" if conn.tls else None
        else:  # demo fallback only: plain TCP, anonymous; the gateway then connects without TLS
            broker = EmbeddedBroker(conn.port, conn.host)
            await broker.start()
            self.broker_kind = "embedded amqtt (no TLS: install mosquitto for TLS)"
        self.brokers.append(broker)
        pub = SimMqttPublisher(self.park, conn.host, conn.port, ca=ca, username=SIM_MQTT_USER,
                               password=users[SIM_MQTT_USER], client_id=f"anning-sim-{conn.name}")
        pub.start()
        self.publishers.append(pub)

    def push(self, now: pd.Timestamp, publish: bool = True) -> dict[str, float]:
        """Take written setpoints into the simulation, then serve the readings at ``now``."""
        for server in self.modbus:
            for tag, value in server.setpoints().items():
                dev, _, point = tag.partition(".")
                if point == "p_set_kw":
                    self.live.set_setpoint(dev, value)
        values = self.live.at(now)
        for server in self.modbus:
            server.update(values)
        for server in self.opcua:
            server.update(values, now.floor("us").to_pydatetime())
        if publish:
            ts_ms = now.value // 1_000_000
            for pub in self.publishers:
                pub.publish(values, ts_ms)
        return values

    async def run(self, stop: asyncio.Event) -> None:
        """Push readings every ``tick_s`` (MQTT every ``publish_s``) until ``stop`` is set. Never raises."""
        last_pub = 0.0
        while not stop.is_set():
            now = time.time()
            publish = now - last_pub >= self.publish_s
            if publish:
                last_pub = now
            try:
                self.push(pd.Timestamp(now, unit="s", tz="UTC"), publish)
            except Exception:  # noqa: BLE001 - one bad tick must not stop the simulated park
                log.exception("simulator: pushing readings failed")
            await wait_or_stop(stop, self.tick_s - (time.time() - now) % self.tick_s)

    async def stop(self) -> None:
        for pub in self.publishers:
            pub.stop()
        for server in self.modbus + self.opcua:
            await server.stop()
        for broker in self.brokers:
            if isinstance(broker, EmbeddedBroker):
                await broker.stop()
            else:
                await asyncio.to_thread(broker.stop)
