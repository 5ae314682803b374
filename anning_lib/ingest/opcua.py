"""The gateway's OPC UA adapter: one subscription per connection, data changes in, setpoints out.

:class:`OpcuaSubscriber` connects to one server (``ingest/opcua.yaml``: endpoint, security policy and mode,
certificates resolved against the var dir), creates one subscription with a monitored item per mapped point
(the device's sampling interval or the point's override; an absolute deadband filter where ``deadband_abs > 0``)
and hands the data changes, converted by the pure :func:`sample_from_datavalue`, to the gateway's sink.

Trouble is reported on the connection's :class:`~anning_lib.ingest.model.SourceHealth`, never raised:

* a node the server does not know (``BadNodeIdUnknown`` on create) -> ``health.bad("unknown_node")`` once per
  tag; the other points keep working;
* a value that is not a number (string, array, ...) -> ``health.bad("wrong_type")`` per notification;
* connection loss (socket closed, or the client's watchdog probe unanswered for ~1 s) -> ``health.down``;
  reconnect with back-off 0.5 s doubling up to ``backoff_max_s``, new session, subscription and items,
  then ``health.up``.

A Bad status without a value (``BadWaitingForInitialData`` before a server's first scan, a failed sensor)
carries nothing to store and is skipped; the quality checks see the point go stale. Node ids in the map may contain
``{device}``, replaced by the device id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import SecretStr

from anning_lib.aio import wait_or_stop
from anning_lib.errors import IngestError
from anning_lib.ingest.model import Quality, Sample, Sink, SourceHealth
from anning_lib.ingest.pointmap import OpcuaConnection, resolve_path

log = logging.getLogger("anning.ingest.opcua")


class _DropConnectionLossNoise(logging.Filter):
    """Drop asyncua's records about a connection that is already gone (a traceback at ERROR for the publish
    request in flight, warnings while closing): the subscriber reports the loss itself (``health.down``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if msg.startswith("Publish iteration crashed") and isinstance(exc, OSError):
            return False
        return "was called but connection is closed" not in msg


for _name in ("asyncua.client.ua_session.UaSession", "asyncua.client.ua_client.UaClient"):
    logging.getLogger(_name).addFilter(_DropConnectionLossNoise())

BACKOFF_START_S = 0.5      # first wait before reconnecting [s]; doubles up to conn.backoff_max_s
WATCHDOG_S = 1.0           # client watchdog: probe the server this often when idle [s]
SESSION_TIMEOUT_MS = 60_000  # server drops an abandoned session after this [ms]
QUEUE_SIZE = 10            # server-side queue per monitored item between publish cycles [-]
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NUMERIC = frozenset({
    ua.VariantType.Boolean, ua.VariantType.SByte, ua.VariantType.Byte, ua.VariantType.Int16,
    ua.VariantType.UInt16, ua.VariantType.Int32, ua.VariantType.UInt32, ua.VariantType.Int64,
    ua.VariantType.UInt64, ua.VariantType.Float, ua.VariantType.Double,
})


# ------------------------------------------------------------------------------------------------ pure parts
@dataclass(frozen=True, slots=True)
class MappedNode:
    """One point of a connection: tag, node id (``{device}`` expanded), sampling [ms], deadband [point unit]."""

    tag: str
    node: str
    sampling_ms: int
    deadband_abs: float


def mapped_nodes(conn: OpcuaConnection) -> dict[str, MappedNode]:
    """Tag -> :class:`MappedNode` for every point of ``conn``, in map order."""
    out = {}
    for dev in conn.devices:
        for p in dev.points:
            tag = f"{dev.device}.{p.point}"
            out[tag] = MappedNode(tag, p.node.replace("{device}", dev.device),
                                  p.sampling_ms or dev.sampling_ms, p.deadband_abs)
    return out


def _ms(ts: datetime | None) -> int | None:
    """``ts`` as ms since the epoch (naive taken as UTC); None for a missing or pre-1970 (null) timestamp."""
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    ms = (ts - _EPOCH) // timedelta(milliseconds=1)
    return ms if ms > 0 else None


def quality_of(status: ua.StatusCode | None) -> Quality:
    """OPC UA status severity -> :class:`Quality` (a missing status code means Good)."""
    if status is None or status.is_good():
        return Quality.GOOD
    if status.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


def has_value(datavalue: ua.DataValue) -> bool:
    """True when the DataValue carries a value at all (a Bad status usually comes with a Null variant)."""
    v = datavalue.Value
    return v is not None and v.VariantType != ua.VariantType.Null and v.Value is not None


def sample_from_datavalue(tag: str, datavalue: ua.DataValue, recv_s: float) -> Sample | None:
    """Turn one OPC UA DataValue into a :class:`Sample` (pure).

    Parameters
    ----------
    tag : str
        the point's tag ``DEVICE.point``.
    datavalue : asyncua.ua.DataValue
        as received in a data change notification or read.
    recv_s : float
        receive time [s since the epoch]; the timestamp of last resort.

    Returns
    -------
    Sample or None
        ``ts_ms`` [ms UTC] from SourceTimestamp, else ServerTimestamp, else ``recv_s``; quality from the status
        severity (Good/Uncertain/Bad); value [point unit] as float, Boolean as 0/1. None when the value is
        missing or not a numeric scalar (string, array, structure): the caller counts it.
    """
    v = datavalue.Value
    if not has_value(datavalue) or v.VariantType not in _NUMERIC or v.is_array or isinstance(v.Value, list):
        return None
    ts_ms = _ms(datavalue.SourceTimestamp) or _ms(datavalue.ServerTimestamp) or int(recv_s * 1000)
    return Sample(tag=tag, ts_ms=ts_ms, value=float(v.Value), quality=int(quality_of(datavalue.StatusCode)),
                  recv_s=recv_s)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _status_name(status: ua.StatusCode | None) -> str:
    return "Good" if status is None else status.name


def _load_der(path: Path) -> bytes:
    """A certificate file (DER or PEM) as DER bytes."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def _application_uri(cert_der: bytes) -> str | None:
    """The URI in a certificate's SubjectAltName (the application URI the server checks), if any."""
    try:
        san = x509.load_der_x509_certificate(cert_der).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


# ------------------------------------------------------------------------------------------------ subscriber
class OpcuaSubscriber:
    """Subscribe to the points of one OPC UA connection and keep the subscription alive.

    Parameters
    ----------
    conn : OpcuaConnection
        the connection's map (endpoint, security, devices and points).
    sink : Sink
        ``sink(samples, health)``; receives one list per publish response.
    health : SourceHealth
        this connection's health record.
    var_dir : Path
        base of relative certificate paths (``ANNING_VAR_DIR``).
    password : SecretStr, optional
        for ``conn.username`` (already resolved from ``conn.password``).
    """

    def __init__(self, conn: OpcuaConnection, sink: Sink, health: SourceHealth, var_dir: Path,
                 password: SecretStr | None = None):
        self.conn = conn
        self.sink = sink
        self.health = health
        self.var_dir = Path(var_dir)
        self.password = password
        self.nodes = mapped_nodes(conn)
        self._client: Client | None = None
        self._handles: dict[int, str] = {}
        self._node_ids: dict[str, ua.NodeId] = {}
        self._pending: list[tuple[str, ua.DataValue, float]] = []
        self._lost: asyncio.Event | None = None
        self._reported: set[str] = set()

    # ---------------------------------------------------------------- run loop
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and deliver until ``stop`` is set; reconnect with back-off. Never raises."""
        delay = BACKOFF_START_S
        while not stop.is_set():
            try:
                connected = await self._session(stop)
            except Exception as err:  # noqa: BLE001 - the loop must survive anything
                connected = False
                self.health.down(f"{self.conn.endpoint}: {_describe(err)}")
            if stop.is_set():
                break
            if connected:
                delay = BACKOFF_START_S
            await wait_or_stop(stop, delay)
            delay = min(delay * 2, self.conn.backoff_max_s)

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection's life: connect, subscribe, wait for stop or loss. True if it got connected."""
        client = await self._make_client()
        self._lost = lost = asyncio.Event()

        async def on_lost(exc: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        connected = False
        try:
            connecting = asyncio.ensure_future(asyncio.wait_for(client.connect(), self.conn.timeout_s * 3))
            await _first(connecting, stop.wait())
            if connecting.cancelled():  # stop came first
                return False
            connecting.result()  # raises the connect error, if any
            connected = True
            await self._subscribe(client)
            self._client = client
            self.health.up()
            await _first(stop.wait(), lost.wait())
            if lost.is_set() and not stop.is_set():
                self.health.down(f"{self.conn.endpoint}: connection lost")
        finally:
            self._client = None
            if connected:
                await self._close(client)
            else:
                client.disconnect_socket()  # a connect cut short by the timeout may leave a socket open
        return connected

    async def _make_client(self) -> Client:
        """A client for ``conn`` with its security policy, certificates and user set (no network yet)."""
        client = Client(self.conn.endpoint, timeout=self.conn.timeout_s, watchdog_intervall=WATCHDOG_S)
        client.name = client.description = f"Anning gateway ({self.conn.name})"
        client.session_timeout = SESSION_TIMEOUT_MS
        sec = self.conn.security
        if sec.policy != "None":
            cert = _load_der(resolve_path(sec.certificate, self.var_dir))
            key = resolve_path(sec.private_key, self.var_dir)
            server = resolve_path(sec.server_certificate, self.var_dir)
            client.application_uri = _application_uri(cert) or client.application_uri
            await client.set_security(
                getattr(security_policies, f"SecurityPolicy{sec.policy}"), cert, str(key),
                server_certificate=_load_der(server) if server else None,
                mode=getattr(ua.MessageSecurityMode, sec.mode))
        if self.conn.username:
            client.set_user(self.conn.username)
            if self.password is not None:
                client.set_password(self.password.get_secret_value())
        return client

    async def _subscribe(self, client: Client) -> None:
        """One subscription, one monitored item per point; failed items are counted, the rest keep working."""
        self._node_ids = await _resolve_node_ids(client, self.nodes)
        period = min(n.sampling_ms for n in self.nodes.values()) if self.nodes else 1000
        sub = await client.create_subscription(float(period), self)
        requests, self._handles = [], {}
        for handle, node in enumerate(self.nodes.values(), start=1):
            self._handles[handle] = node.tag
            requests.append(_item_request(handle, self._node_ids[node.tag], node))
        results = await sub.create_monitored_items(requests)
        for handle, res in zip(self._handles, results, strict=True):
            if isinstance(res, ua.StatusCode):
                self._report_failed_item(self._handles[handle], res)

    def _report_failed_item(self, tag: str, status: ua.StatusCode) -> None:
        if tag in self._reported:
            return
        self._reported.add(tag)
        kind = "unknown_node" if status.value == ua.StatusCodes.BadNodeIdUnknown else "monitor_failed"
        self.health.bad(kind, f"{self.conn.name}: node {self.nodes[tag].node} of {tag}: {status.name}")

    async def _close(self, client: Client) -> None:
        """Close session, channel and socket; after a loss asyncua only drops the socket (it logs a warning)."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), self.conn.timeout_s)

    # ---------------------------------------------------------------- notifications (asyncua handler API)
    def datachange_notification(self, node, val, data) -> None:
        """Called by asyncua per monitored-item change; buffered and flushed once per publish response."""
        item = data.monitored_item
        tag = self._handles.get(item.ClientHandle)
        if tag is None:
            return
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append((tag, item.Value, time.time()))

    def status_change_notification(self, status) -> None:
        """The server reports the subscription's end (timeout, shutdown): treat it as a lost connection."""
        log.info("%s: subscription status change %s", self.conn.name, _status_name(status.Status))
        if self._lost is not None and not status.Status.is_good():
            self._lost.set()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self.deliver(pending)

    def deliver(self, items: list[tuple[str, ua.DataValue, float]]) -> None:
        """Convert ``(tag, datavalue, recv_s)`` items to samples, count rejects, and hand the rest to the sink."""
        samples = []
        for tag, dv, recv_s in items:
            s = sample_from_datavalue(tag, dv, recv_s)
            if s is not None:
                samples.append(s)
            elif has_value(dv):
                self.health.bad("wrong_type", f"{tag}: {dv.Value.VariantType.name} value {dv.Value.Value!r:.60}")
            else:
                log.debug("%s: %s: no value (%s)", self.conn.name, tag, _status_name(dv.StatusCode))
        if samples:
            self.sink(samples, self.health)

    # ---------------------------------------------------------------- setpoints
    async def write_setpoint(self, tag: str, value: float) -> float:
        """Write ``value`` [point unit] to the tag's node as a Double and return the value read back.

        Limit checks and the audit log belong to the caller. Raises IngestError naming the tag when the tag
        is not on this connection, the connection is down, or the server refuses the write.
        """
        if tag not in self.nodes:
            raise IngestError(f"{self.conn.name}: {tag} is not a point of this OPC UA connection")
        client = self._client
        if client is None:
            raise IngestError(f"{self.conn.name}: cannot write {tag}: not connected to {self.conn.endpoint}")
        node = client.get_node(self._node_ids[tag])
        try:
            dv = ua.DataValue(ua.Variant(float(value), ua.VariantType.Double))
            await asyncio.wait_for(node.write_attribute(ua.AttributeIds.Value, dv), self.conn.timeout_s)
            back = await asyncio.wait_for(node.read_data_value(), self.conn.timeout_s)
        except ua.UaStatusCodeError as err:
            raise IngestError(f"{self.conn.name}: write of {tag} refused: {type(err).__name__}") from None
        except (ConnectionError, OSError, asyncio.TimeoutError) as err:
            raise IngestError(f"{self.conn.name}: write of {tag} failed: {_describe(err)}") from None
        sample = sample_from_datavalue(tag, back, time.time())
        if sample is None:
            raise IngestError(f"{self.conn.name}: {tag} read back no number ({_status_name(back.StatusCode)})")
        return sample.value


async def _resolve_node_ids(client: Client, nodes: dict[str, MappedNode]) -> dict[str, ua.NodeId]:
    """Parse the node ids; ``nsu=<uri>;`` forms get the server's index for that URI (0 if it has none)."""
    parsed = {tag: ua.NodeId.from_string(n.node) for tag, n in nodes.items()}
    if not any(isinstance(nid, ua.ExpandedNodeId) and nid.NamespaceUri for nid in parsed.values()):
        return parsed
    ns_array = await client.get_namespace_array()
    out = {}
    for tag, nid in parsed.items():
        if isinstance(nid, ua.ExpandedNodeId) and nid.NamespaceUri:
            idx = ns_array.index(nid.NamespaceUri) if nid.NamespaceUri in ns_array else 0
            nid = ua.NodeId(nid.Identifier, idx, nid.NodeIdType)
        out[tag] = nid
    return out


def _item_request(handle: int, node_id: ua.NodeId, node: MappedNode) -> ua.MonitoredItemCreateRequest:
    """A data-change monitored item on the node's Value, with an absolute deadband filter when set."""
    params = ua.MonitoringParameters(ClientHandle=handle, SamplingInterval=float(node.sampling_ms),
                                     QueueSize=QUEUE_SIZE, DiscardOldest=True)
    if node.deadband_abs > 0:
        params.Filter = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                            DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=node.deadband_abs)
    target = ua.ReadValueId(NodeId=node_id, AttributeId=ua.AttributeIds.Value)
    return ua.MonitoredItemCreateRequest(ItemToMonitor=target, MonitoringMode=ua.MonitoringMode.Reporting,
                                         RequestedParameters=params)


async def _first(*aws) -> None:
    """Wait until the first of ``aws`` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # let the losers finish cancelling
