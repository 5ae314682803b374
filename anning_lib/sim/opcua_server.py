"""The simulator's OPC UA server: the process-plant devices of ``ingest/opcua.yaml`` as a DCS would show them.

Address space (namespace ``urn:anning:sim``, index 2)::

    Objects/Anning/<enterprise id or "park">/<device id>/<point id>

The variables carry the node ids of the point map (``ns=2;s=E01-EAF.p_kw``), Double values, a description
``<quantity> [<unit>]`` and an ``EngineeringUnits`` property with the park point's unit. Points marked
``writable`` in the park model are client-writable. A variable that has had no value yet reads 0 with status
``UncertainInitialValue``; call :meth:`SimOpcuaServer.update` before :meth:`~SimOpcuaServer.start` to serve real
values from the first moment. (``BadWaitingForInitialData`` would be the textbook status, but asyncua 2.1's
absolute-deadband check subtracts the Null old value and drops the first real value with a TypeError.)

Security: Basic256Sha256 SignAndEncrypt with the certificate from :func:`ensure_opcua_pki`, plus the None policy
unless ``secure_only``. A client that presents a certificate (on any endpoint: asyncua checks it at
CreateSession) must present the gateway's or one copied (DER) into ``<pki_dir>/trusted/``, e.g. UaExpert's.
Users: anonymous or any name.

Start-up costs about 1 s, nearly all of it asyncua loading the standard address space (``Server.init``);
``startup_s`` holds the measured time. Stop takes up to 1 s (asyncua's server clock task sleeps 1 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from cryptography.hazmat.primitives.serialization import Encoding

from anning_lib.ingest.opcua import mapped_nodes
from anning_lib.ingest.opcua_pki import SERVER_URI, ensure_opcua_pki
from anning_lib.ingest.pointmap import OpcuaConnection
from anning_lib.park.schema import Park, Point

log = logging.getLogger("anning.sim.opcua")

NAMESPACE_URI = "urn:anning:sim"
UNITS_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


def _utc(ts: datetime | float | None) -> datetime:
    """``ts`` (datetime, naive = UTC, or epoch seconds) as an aware UTC datetime; now when None."""
    if ts is None:
        return datetime.now(timezone.utc)
    if isinstance(ts, int | float):
        return datetime.fromtimestamp(ts, timezone.utc)
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _node_id(text: str, idx: int) -> ua.NodeId:
    """A map node id as this server's NodeId (``nsu=urn:anning:sim;`` -> our index)."""
    nid = ua.NodeId.from_string(text)
    if isinstance(nid, ua.ExpandedNodeId) and nid.NamespaceUri:
        return ua.NodeId(nid.Identifier, idx if nid.NamespaceUri == NAMESPACE_URI else 0, nid.NodeIdType)
    return nid


class SimOpcuaServer:
    """An asyncua server publishing the points of one OPC UA connection of the point map.

    Parameters
    ----------
    conn : OpcuaConnection
        which devices, points and node ids to serve.
    park : Park
        units, quantities, enterprises and ``writable`` flags of those points.
    pki_dir : Path
        where :func:`ensure_opcua_pki` keeps the server and gateway certificates.
    endpoint : str, optional
        ``opc.tcp://host:port/path``; default ``conn.endpoint``.
    secure_only : bool
        offer only Basic256Sha256 SignAndEncrypt (no None policy).
    """

    def __init__(self, conn: OpcuaConnection, park: Park, pki_dir: Path, endpoint: str | None = None,
                 secure_only: bool = False):
        self.conn = conn
        self.park = park
        self.pki_dir = Path(pki_dir)
        self.endpoint = endpoint or conn.endpoint
        self.secure_only = secure_only
        self.nodes = mapped_nodes(conn)
        self.startup_s: float | None = None
        self._server: Server | None = None
        self._ids: dict[str, ua.NodeId] = {}
        self._last: dict[str, tuple[float, datetime]] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    @property
    def running(self) -> bool:
        return self._server is not None

    # ---------------------------------------------------------------- life cycle
    async def start(self) -> None:
        """Build the address space and listen; returns once clients can connect. A no-op when running."""
        if self._server is not None:
            return
        t0 = time.perf_counter()
        self._lock = asyncio.Lock()
        pki = await asyncio.to_thread(ensure_opcua_pki, self.pki_dir)
        server = Server()
        await server.init()
        await server.set_application_uri(SERVER_URI)
        server.set_endpoint(self.endpoint)
        server.set_server_name("Anning park simulator")
        server.product_uri = "urn:anning:sim"
        idx = await server.register_namespace(NAMESPACE_URI)
        if idx != 2:  # the map's node ids say ns=2
            raise RuntimeError(f"namespace {NAMESPACE_URI} got index {idx}, expected 2")
        await self._security(server, pki)
        await self._build(server, idx)
        await server.start()
        self._server = server
        self.startup_s = time.perf_counter() - t0
        log.info("OPC UA server at %s: %d points, started in %.2f s", self.endpoint, len(self._ids), self.startup_s)

    async def stop(self) -> None:
        """Stop listening and release the port; values set so far are restored by the next :meth:`start`."""
        server, self._server = self._server, None
        if server is None:
            return
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.stop()

    async def _security(self, server: Server, pki: dict[str, Path]) -> None:
        await server.load_certificate(str(pki["server_cert"]))
        await server.load_private_key(str(pki["server_key"]))
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if not self.secure_only:
            policies.insert(0, ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        trusted = {pki["gateway_cert"].read_bytes()}
        trusted |= {p.read_bytes() for p in sorted((self.pki_dir / "trusted").glob("*.der"))}

        async def validate(cert, _app_description) -> None:
            if cert.public_bytes(Encoding.DER) not in trusted:
                log.warning("rejected client certificate %s", cert.subject.rfc4514_string())
                raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

        server.set_certificate_validator(validate)

    # ---------------------------------------------------------------- address space
    async def _build(self, server: Server, idx: int) -> None:
        """Objects/Anning/<enterprise or park>/<device>/<point> with the map's node ids."""
        root = await server.nodes.objects.add_folder(ua.NodeId("Anning", idx), ua.QualifiedName("Anning", idx))
        folders = {}
        self._ids = {}
        for dev in self.conn.devices:
            eid = self.park.enterprise_of(dev.device) or "park"
            if eid not in folders:
                folders[eid] = await root.add_folder(ua.NodeId(f"Anning/{eid}", idx), ua.QualifiedName(eid, idx))
            park_dev = self.park.device(dev.device)
            obj = await folders[eid].add_object(ua.NodeId(f"Anning/{eid}/{dev.device}", idx),
                                                ua.QualifiedName(dev.device, idx))
            await obj.write_attribute(ua.AttributeIds.Description,
                                      ua.DataValue(ua.Variant(ua.LocalizedText(park_dev.name))))
            for p in dev.points:
                tag = f"{dev.device}.{p.point}"
                self._ids[tag] = await self._add_point(server, obj, idx, tag, park_dev.point(p.point))

    async def _add_point(self, server: Server, parent, idx: int, tag: str, point: Point) -> ua.NodeId:
        nid = _node_id(self.nodes[tag].node, idx)
        var = await parent.add_variable(nid, ua.QualifiedName(point.id, idx), 0.0, ua.VariantType.Double)
        await var.write_attribute(ua.AttributeIds.Description,
                                  ua.DataValue(ua.Variant(ua.LocalizedText(f"{point.quantity} [{point.unit}]"))))
        eu = ua.EUInformation(NamespaceUri=UNITS_NAMESPACE, UnitId=-1, DisplayName=ua.LocalizedText(point.unit),
                              Description=ua.LocalizedText(point.quantity))
        await var.add_property(ua.NodeId(f"{nid.Identifier}.EngineeringUnits", idx),
                               ua.QualifiedName("EngineeringUnits", 0), eu,
                               ua.VariantType.ExtensionObject, ua.NodeId(ua.ObjectIds.EUInformation))
        if point.writable:
            await var.set_writable()
        if tag in self._last:
            value, ts = self._last[tag]
            await server.write_attribute_value(nid, _datavalue(value, ts))
        else:  # no value yet: 0 flagged UncertainInitialValue (see the module notes)
            await server.write_attribute_value(nid, _datavalue(0.0, None, ua.StatusCodes.UncertainInitialValue))
        return nid

    # ---------------------------------------------------------------- values
    def update(self, values: dict[str, float], ts: datetime | float | None = None) -> asyncio.Task | None:
        """Set the values [point unit] of this server's tags, with source timestamp ``ts`` (default now).

        Tags the server does not serve are ignored. Must be called from the server's event loop; the writes
        (which notify subscribed clients) run in a task that is returned, so ``await sim.update(...)`` waits
        for them. Values set while stopped are kept and served after the next :meth:`start` (returns None).
        """
        when = _utc(ts)
        items = [(tag, float(v)) for tag, v in values.items() if tag in self.nodes]
        for tag, v in items:
            self._last[tag] = (v, when)
        if self._server is None or not items:
            return None
        task = asyncio.get_running_loop().create_task(self._write(self._server, items, when))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _write(self, server: Server, items: list[tuple[str, float]], when: datetime) -> int:
        async with self._lock:  # FIFO: a later update never lands before an earlier one
            for tag, v in items:
                await server.write_attribute_value(self._ids[tag], _datavalue(v, when))
        return len(items)

    def read(self, tag: str) -> float | None:
        """The current value of a served tag (e.g. a setpoint a client wrote); None before the first value."""
        if self._server is None:
            raise RuntimeError("the OPC UA server is not running")
        dv = self._server.read_attribute_value(self._ids[tag])
        return None if dv.Value is None or dv.Value.Value is None else float(dv.Value.Value)


def _datavalue(value: float, ts: datetime | None, status: int = ua.StatusCodes.Good) -> ua.DataValue:
    now = datetime.now(timezone.utc)
    return ua.DataValue(ua.Variant(value, ua.VariantType.Double), StatusCode=ua.StatusCode(status),
                        SourceTimestamp=ts or now, ServerTimestamp=now)
