"""Gateway point maps: where and how each park point is read (``ingest/modbus.yaml``, ``opcua.yaml``, ``mqtt.yaml``).

The park model (``data/park/anning.yaml``) says *what* a point is: quantity, unit, limits, whether it may be
written. A point map says *where* it is on the wire: Modbus unit id, function, register, type, word order and
scale; OPC UA node id, sampling interval and deadband; MQTT topic. The two meet on the point tag
``DEVICE.point``. :func:`load_pointmaps` validates each file with pydantic and then checks it against the park:
every device of a protocol is mapped, every mapped point exists, registers do not overlap, raw types can hold
the point's limits, writable points are holding registers or writable nodes.

Relative file paths inside a map (certificates, secret files) are resolved against ``ANNING_VAR_DIR``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from anning_lib.errors import ConfigError, PointMapError
from anning_lib.park.loader import problems_from
from anning_lib.park.schema import ID, Park

RegType = Literal["int16", "uint16", "int32", "uint32", "float32"]
WordOrder = Literal["big", "little"]  # big: high word first (AB CD); little: low word first (CD AB)
REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
RAW_RANGE = {"int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
             "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1), "float32": (-3.4e38, 3.4e38)}
_NODE_ID = re.compile(r"^(ns=\d+;|nsu=[^;]+;)?(i=\d+|s=.+|g=[0-9a-fA-F-]{36}|b=.+)$")
_TOPIC = re.compile(r"^[^#+\s]+(/[^#+\s]+)*$")
_FILTER = re.compile(r"^([^#+/\s]+|\+)(/([^#+/\s]+|\+))*(/#)?$|^#$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """A secret read at run time from an environment variable or a file only its owner can read."""

    env: str | None = Field(None, description="name of an environment variable holding the secret")
    file: Path | None = Field(None, description="file holding the secret (mode 0600 or stricter)")

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def resolve(self, base: Path) -> SecretStr:
        """The secret's value. Raises ConfigError naming the variable or file (never the value)."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ConfigError(f"secret: environment variable {self.env} is not set")
            return SecretStr(value)
        path = self.file if self.file.is_absolute() else base / self.file
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise ConfigError(f"secret: file not found: {path}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"secret: file {path} is readable by group or others (mode {stat.S_IMODE(mode):04o}); "
                              f"run chmod 600 {path}")
        return SecretStr(path.read_text(encoding="utf-8").strip())


# ------------------------------------------------------------------------------------------------ Modbus
class ModbusPoint(_Strict):
    point: ID
    address: int = Field(ge=0, le=65535, description="register number (0-based PDU address)")
    function: Literal["holding", "input"] = "holding"
    type: RegType = "float32"
    scale: float = Field(1.0, description="engineering value = raw value * scale")
    word_order: WordOrder | None = Field(None, description="overrides the device's word order")

    @model_validator(mode="after")
    def _scale(self) -> ModbusPoint:
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        return self

    @property
    def n_registers(self) -> int:
        return REGISTERS[self.type]


class ModbusDevice(_Strict):
    device: ID
    unit_id: int = Field(ge=0, le=247)
    poll_s: float = Field(1.0, gt=0, le=3600, description="polling interval [s]")
    word_order: WordOrder = "big"
    fault_point: ID | None = Field(None, description="status word: non-zero marks the device's samples uncertain")
    points: list[ModbusPoint]


class ModbusConnection(_Strict):
    name: ID
    host: str = "127.0.0.1"
    port: int = Field(502, ge=1, le=65535)
    timeout_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0, description="longest wait between reconnect attempts [s]")
    devices: list[ModbusDevice]


class ModbusMap(_Strict):
    protocol: Literal["modbus"]
    version: int = 1
    connections: list[ModbusConnection]


# ------------------------------------------------------------------------------------------------ OPC UA
class OpcuaPoint(_Strict):
    point: ID
    node: str = Field(pattern=_NODE_ID.pattern, description="node id, e.g. ns=2;s=E01-EAF.p_kw")
    deadband_abs: float = Field(0.0, ge=0, description="absolute deadband in the point's unit")
    sampling_ms: int | None = Field(None, gt=0, description="overrides the device's sampling interval")


class OpcuaDevice(_Strict):
    device: ID
    sampling_ms: int = Field(1000, gt=0, description="server sampling interval [ms]")
    points: list[OpcuaPoint]


class OpcuaSecurity(_Strict):
    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = Field(None, description="the gateway's client certificate (DER or PEM)")
    private_key: Path | None = Field(None, description="the gateway's private key (PEM)")
    server_certificate: Path | None = Field(None, description="the server certificate to trust")

    @model_validator(mode="after")
    def _complete(self) -> OpcuaSecurity:
        if (self.policy == "None") != (self.mode == "None"):
            raise ValueError("policy and mode must both be None or both be set")
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError("a security policy needs certificate and private_key")
        return self


class OpcuaConnection(_Strict):
    name: ID
    endpoint: str = Field(pattern=r"^opc\.tcp://[^\s]+$")
    security: OpcuaSecurity = OpcuaSecurity()
    username: str | None = None
    password: SecretRef | None = None
    timeout_s: float = Field(4.0, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    devices: list[OpcuaDevice]


class OpcuaMap(_Strict):
    protocol: Literal["opcua"]
    version: int = 1
    connections: list[OpcuaConnection]


# ------------------------------------------------------------------------------------------------ MQTT
class MqttTls(_Strict):
    ca: Path = Field(description="CA certificate that signed the broker's certificate")
    certificate: Path | None = None
    private_key: Path | None = None


class MqttTopic(_Strict):
    topic: str = Field(pattern=_TOPIC.pattern)
    point: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_\-]*\.[A-Za-z][A-Za-z0-9_\-]*$", description="tag DEVICE.point")


class MqttConnection(_Strict):
    name: ID
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = "anning-gateway"
    qos: Literal[0, 1, 2] = 1
    clean_session: bool = Field(False, description="False keeps the session (queued QoS 1 messages) across restarts")
    keepalive_s: int = Field(30, gt=0)
    tls: MqttTls | None = None
    username: str | None = None
    password: SecretRef | None = None
    subscribe: list[Annotated[str, Field(pattern=_FILTER.pattern)]] = ["anning/#"]
    devices: list[ID] = Field(default_factory=list,
                              description="devices publishing by the convention anning/<enterprise>/<device>/<point>")
    topics: list[MqttTopic] = Field(default_factory=list, description="topics outside the convention")


class MqttMap(_Strict):
    protocol: Literal["mqtt"]
    version: int = 1
    connections: list[MqttConnection]


class PointMaps(_Strict):
    """The gateway's three maps; any may be absent (None)."""

    modbus: ModbusMap | None = None
    opcua: OpcuaMap | None = None
    mqtt: MqttMap | None = None


MAP_MODELS: dict[str, type[BaseModel]] = {"modbus": ModbusMap, "opcua": OpcuaMap, "mqtt": MqttMap}


def convention_topic(enterprise_id: str | None, device_id: str, point_id: str) -> str:
    """``anning/<enterprise>/<device>/<point>``; park-level devices use ``park`` as enterprise."""
    return f"anning/{enterprise_id or 'park'}/{device_id}/{point_id}"


def mqtt_topic_table(conn: MqttConnection, park: Park) -> dict[str, str]:
    """Topic -> tag for one MQTT connection: the convention for its devices plus its explicit topics."""
    table = {}
    for dev_id in conn.devices:
        dev = park.device(dev_id)
        eid = park.enterprise_of(dev_id)
        for p in dev.points:
            table[convention_topic(eid, dev.id, p.id)] = f"{dev.id}.{p.id}"
    for t in conn.topics:
        table[t.topic] = t.point
    return table


# ------------------------------------------------------------------------------------------------ loading
def parse_pointmap(raw: object, source: str | None = None) -> ModbusMap | OpcuaMap | MqttMap:
    """Validate one map already read into a dict (pure); its ``protocol`` key picks the model."""
    proto = raw.get("protocol") if isinstance(raw, dict) else None
    if proto not in MAP_MODELS:
        raise PointMapError([("protocol", proto, f"must be one of {sorted(MAP_MODELS)}, got {proto!r}")], source)
    try:
        return MAP_MODELS[proto].model_validate(raw)
    except ValidationError as err:
        raise PointMapError(problems_from(err), source) from None


def load_pointmaps(folder: Path | str, park: Park) -> PointMaps:
    """Read ``modbus.yaml``, ``opcua.yaml`` and ``mqtt.yaml`` from ``folder`` and check them against ``park``.

    Raises
    ------
    PointMapError
        naming the file, the field path and the value of every problem.
    """
    folder = Path(folder)
    maps = {}
    for proto in MAP_MODELS:
        path = folder / f"{proto}.yaml"
        if not path.exists():
            continue
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise PointMapError([("file", str(path), f"not valid YAML: {err}")], str(path)) from None
        maps[proto] = parse_pointmap(raw, str(path))
        problems = check_against_park(maps[proto], park)
        if problems:
            raise PointMapError(problems, str(path))
    return PointMaps(**maps)


def _device_entries(m: ModbusMap | OpcuaMap | MqttMap):
    """Yield ``(path, device_id, [(path, point_id), ...])`` for every device a map names."""
    for c, conn in enumerate(m.connections):
        if isinstance(conn, MqttConnection):
            for k, dev in enumerate(conn.devices):
                yield f"connections[{c}].devices[{k}]", dev, None
            continue
        for k, dev in enumerate(conn.devices):
            base = f"connections[{c}].devices[{k}]"
            yield base, dev.device, [(f"{base}.points[{j}].point", p.point) for j, p in enumerate(dev.points)]


def check_against_park(m: ModbusMap | OpcuaMap | MqttMap, park: Park) -> list[tuple[str, object, str]]:
    """Cross-checks a schema cannot see: devices and points exist, protocol agrees, every point mapped once."""
    problems = []
    seen = set()
    for path, dev_id, pts in _device_entries(m):
        try:
            dev = park.device(dev_id)
        except KeyError:
            problems.append((f"{path}.device", dev_id, f"unknown device '{dev_id}' (not in the park model)"))
            continue
        if dev.protocol != m.protocol:
            problems.append((f"{path}.device", dev_id, f"device '{dev_id}' is declared {dev.protocol} in the park model"))
        if dev_id in seen:
            problems.append((f"{path}.device", dev_id, f"device '{dev_id}' is mapped twice"))
        seen.add(dev_id)
        if pts is None:
            continue
        ids = [pid for _p, pid in pts]
        for ppath, pid in pts:
            if pid not in {p.id for p in dev.points}:
                problems.append((ppath, pid, f"device '{dev_id}' has no point '{pid}'"))
        for p in dev.points:
            if ids.count(p.id) != 1:
                problems.append((f"{path}.points", p.id, f"point '{dev_id}.{p.id}' is mapped {ids.count(p.id)} times"))
    for _eid, dev in park.iter_devices():
        if dev.protocol == m.protocol and dev.id not in seen:
            problems.append(("connections", dev.id, f"{m.protocol} device '{dev.id}' of the park model is not mapped"))
    if isinstance(m, ModbusMap):
        problems.extend(_check_modbus(m, park))
    if isinstance(m, MqttMap):
        problems.extend(_check_mqtt(m, park))
    return problems


def _check_modbus(m: ModbusMap, park: Park) -> list[tuple[str, object, str]]:
    problems = []
    for c, conn in enumerate(m.connections):
        units = [d.unit_id for d in conn.devices]
        for k, dev in enumerate(conn.devices):
            base = f"connections[{c}].devices[{k}]"
            if units.count(dev.unit_id) > 1:
                problems.append((f"{base}.unit_id", dev.unit_id, f"unit id {dev.unit_id} is used twice on {conn.name}"))
            try:
                pdev = park.device(dev.device)
            except KeyError:
                continue
            used: dict[tuple[str, int], str] = {}
            for j, p in enumerate(dev.points):
                path = f"{base}.points[{j}]"
                for r in range(p.address, p.address + p.n_registers):
                    if (p.function, r) in used:
                        problems.append((f"{path}.address", p.address,
                                         f"{p.function} register {r} already holds '{used[p.function, r]}'"))
                        break
                    used[p.function, r] = p.point
                if p.point not in {q.id for q in pdev.points}:
                    continue
                park_pt = pdev.point(p.point)
                if park_pt.writable and p.function != "holding":
                    problems.append((f"{path}.function", p.function, "a writable point must be a holding register"))
                lo, hi = RAW_RANGE[p.type]
                for limit in (park_pt.min, park_pt.max):
                    if limit is not None and not lo <= limit / p.scale <= hi:
                        problems.append((f"{path}.type", p.type,
                                         f"{p.type} with scale {p.scale} cannot hold the point's limit {limit}"))
            if dev.fault_point is not None and dev.fault_point not in {p.point for p in dev.points}:
                problems.append((f"{base}.fault_point", dev.fault_point, "fault_point must be one of the device's points"))
    return problems


def _check_mqtt(m: MqttMap, park: Park) -> list[tuple[str, object, str]]:
    problems = []
    for c, conn in enumerate(m.connections):
        for k, t in enumerate(conn.topics):
            dev_id, _, pid = t.point.partition(".")
            try:
                park.device(dev_id).point(pid)
            except KeyError:
                problems.append((f"connections[{c}].topics[{k}].point", t.point, f"unknown point '{t.point}'"))
    return problems


def describe_addresses(maps: PointMaps, park: Park | None = None) -> dict[str, dict]:
    """Tag -> ``{"address", "dtype", "scale", "unit_id"}`` for the store's descriptive point columns
    (MQTT topics too when ``park`` is given)."""
    out: dict[str, dict] = {}
    if maps.mqtt and park is not None:
        for conn in maps.mqtt.connections:
            for topic, tag in mqtt_topic_table(conn, park).items():
                out[tag] = {"address": f"{conn.name} {topic}", "dtype": "json", "scale": 1.0}
    if maps.modbus:
        for conn in maps.modbus.connections:
            for dev in conn.devices:
                for p in dev.points:
                    out[f"{dev.device}.{p.point}"] = {"address": f"{conn.name} unit {dev.unit_id} {p.function} {p.address}",
                                                      "dtype": p.type, "scale": p.scale, "unit_id": dev.unit_id}
    if maps.opcua:
        for conn in maps.opcua.connections:
            for dev in conn.devices:
                for p in dev.points:
                    out[f"{dev.device}.{p.point}"] = {"address": p.node, "dtype": "variant", "scale": 1.0}
    return out


def resolve_path(path: Path | None, base: Path) -> Path | None:
    """A map's file path, relative paths taken from ``base`` (the var dir)."""
    if path is None:
        return None
    return path if path.is_absolute() else base / path
