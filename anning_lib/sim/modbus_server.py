"""The simulator's Modbus TCP server: the simulated park's Modbus devices on one port, one unit id each.

Serves the devices of one :class:`~anning_lib.ingest.pointmap.ModbusConnection` exactly as the gateway's map
describes them, so the gateway polls the simulator the way it would poll the park. Each device gets its own
holding and input register blocks spanning its mapped registers (lowest to highest); registers in gaps inside
a block read as 0 and refuse writes, registers outside it and unknown unit ids answer with Modbus exceptions
(2 illegal data address, 11 gateway target failed to respond).

Values are kept here, not in pymodbus' data store: a per-device pymodbus ``action`` copies them into the
response on every read and records what clients write. :meth:`SimModbusServer.update` encodes the
simulator's engineering values with the gateway's own :func:`~anning_lib.ingest.modbus.encode_value`, but never
overwrites a holding register a client has written (the client's setpoint stands, see :meth:`setpoints`).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simcore import SimCore

from anning_lib.errors import IngestError
from anning_lib.ingest.modbus import decode_registers, encode_value
from anning_lib.ingest.pointmap import ModbusConnection, ModbusDevice, ModbusPoint

log = logging.getLogger("anning.sim.modbus")

_BLOCK = {3: "h", 6: "h", 16: "h", 22: "h", 23: "h", 4: "i"}   # function code -> register block
_KEY = {"holding": "h", "input": "i"}


class _UnitCore(SimCore):
    """pymodbus' data store, answering unknown unit ids with exception 11 instead of a failing lookup."""

    async def async_getValues(self, device_id, func_code, address, count=1):
        if device_id not in self.devices:
            return ExcCodes.GATEWAY_NO_RESPONSE
        return await super().async_getValues(device_id, func_code, address, count)

    async def async_setValues(self, device_id, func_code, address, values):
        if device_id not in self.devices:
            return ExcCodes.GATEWAY_NO_RESPONSE
        return await super().async_setValues(device_id, func_code, address, values)


def _register_block(points: list[ModbusPoint]) -> list[SimData]:
    """SimData for one function of one device: mapped registers writable, gaps read-only, else all invalid."""
    if not points:
        return [SimData(0, datatype=DataType.INVALID)]
    out, end = [], None
    for p in sorted(points, key=lambda q: q.address):
        if end is not None and p.address > end:
            out.append(SimData(end, count=p.address - end, values=0, datatype=DataType.REGISTERS, readonly=True))
        out.append(SimData(p.address, values=[0] * p.n_registers, datatype=DataType.REGISTERS))
        end = p.address + p.n_registers
    return out


class SimModbusServer:
    """One pymodbus async TCP server serving every device of a connection as its own unit id.

    Parameters
    ----------
    conn : ModbusConnection
        the gateway's map of the connection (devices, unit ids, registers).
    host, port : str, int, optional
        where to listen; default ``conn.host`` and ``conn.port``.
    """

    def __init__(self, conn: ModbusConnection, host: str | None = None, port: int | None = None):
        self.conn = conn
        self.host = host if host is not None else conn.host
        self.port = port if port is not None else conn.port
        self._server: ModbusTcpServer | None = None
        self._devices = {d.device: d for d in conn.devices}
        # (unit, "h"|"i") -> {address: register}; (unit, address) of holding registers written by clients
        self._regs: dict[tuple[int, str], dict[int, int]] = {}
        self._written: set[tuple[int, int]] = set()
        self._tags: dict[str, tuple[ModbusDevice, ModbusPoint]] = {}
        for d in conn.devices:
            for key in ("h", "i"):
                self._regs[d.unit_id, key] = {}
            for p in d.points:
                self._tags[f"{d.device}.{p.point}"] = (d, p)
                for r in range(p.address, p.address + p.n_registers):
                    self._regs[d.unit_id, _KEY[p.function]][r] = 0

    # -------------------------------------------------------------------------------------------- lifecycle
    def _sim_device(self, d: ModbusDevice) -> SimDevice:
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        hr = _register_block([p for p in d.points if p.function == "holding"])
        ir = _register_block([p for p in d.points if p.function == "input"])
        return SimDevice(d.unit_id, simdata=(list(bits), list(bits), hr, ir),
                         action=functools.partial(self._action, d.unit_id))

    async def start(self) -> None:
        """Listen on ``host:port``; returns once the port accepts connections.

        Raises
        ------
        IngestError
            when the port cannot be bound (in use, bad address).
        """
        if self._server is not None:
            return
        devices = [self._sim_device(d) for d in self.conn.devices]
        server = ModbusTcpServer(devices, address=(self.host, self.port))
        server.context = _UnitCore(devices)   # pymodbus looks up units in SimCore; ours refuses unknown ones
        try:
            await server.serve_forever(background=True)
        except RuntimeError as err:
            raise IngestError(f"Modbus simulator: cannot listen on {self.host}:{self.port}: {err}") from None
        self._server = server
        log.info("Modbus simulator %s listening on %s:%d (%d units)", self.conn.name, self.host, self.port,
                 len(self.conn.devices))

    async def stop(self) -> None:
        """Close the listener and every client connection; the port is free when this returns."""
        server, self._server = self._server, None
        if server is None:
            return
        await server.shutdown()
        await asyncio.sleep(0)   # let the closed transports run their connection_lost callbacks

    @property
    def running(self) -> bool:
        return self._server is not None

    # -------------------------------------------------------------------------------------------- data
    async def _action(self, unit: int, func_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values) -> None:
        """pymodbus hook, run on every request: serve our registers, or record what a client writes."""
        key = _BLOCK.get(func_code)
        if key is None:
            return None
        store = self._regs[unit, key]
        if set_values is not None:
            for i, v in enumerate(set_values):
                store[address + i] = int(v)
                self._written.add((unit, address + i))
            return None
        for r in range(address, address + count):
            if r in store:
                registers[r - start_address] = store[r]
        return None

    def _store(self, d: ModbusDevice, p: ModbusPoint, value: float) -> None:
        regs = encode_value(value, p.type, p.word_order or d.word_order, p.scale)
        store = self._regs[d.unit_id, _KEY[p.function]]
        for i, r in enumerate(regs):
            store[p.address + i] = r

    def update(self, values: dict[str, float]) -> None:
        """Set point values from the simulator.

        Parameters
        ----------
        values : dict of str to float
            tag ``DEVICE.point`` -> engineering value [the point's unit]. Tags not on this connection are
            ignored; holding registers a client has written keep the client's value.

        Raises
        ------
        IngestError
            naming the tag when a value does not fit its register type.
        """
        for tag, value in values.items():
            entry = self._tags.get(tag)
            if entry is None:
                continue
            d, p = entry
            if p.function == "holding" and self._client_written(d, p):
                continue
            try:
                self._store(d, p, value)
            except IngestError as err:
                raise IngestError(f"Modbus simulator: {tag}: {err}") from None

    def _client_written(self, d: ModbusDevice, p: ModbusPoint) -> bool:
        return any((d.unit_id, r) in self._written for r in range(p.address, p.address + p.n_registers))

    def _decode(self, d: ModbusDevice, p: ModbusPoint) -> float:
        store = self._regs[d.unit_id, _KEY[p.function]]
        regs = [store[r] for r in range(p.address, p.address + p.n_registers)]
        return decode_registers(regs, p.type, p.word_order or d.word_order, p.scale)

    def setpoints(self) -> dict[str, float]:
        """Tag -> engineering value of every holding-register point a client has written."""
        return {tag: self._decode(d, p) for tag, (d, p) in self._tags.items()
                if p.function == "holding" and self._client_written(d, p)}

    def value(self, tag: str) -> float:
        """The engineering value a tag currently serves."""
        if tag not in self._tags:
            raise IngestError(f"Modbus simulator: {tag} is not mapped on {self.conn.name}")
        return self._decode(*self._tags[tag])

    def set_fault(self, device_id: str, word: int) -> None:
        """Set a device's fault word (its ``fault_point`` register); 0 clears the fault.

        Raises
        ------
        IngestError
            when the device is not on this connection or has no fault point.
        """
        d = self._devices.get(device_id)
        if d is None or d.fault_point is None:
            raise IngestError(f"Modbus simulator: device {device_id!r} on {self.conn.name} "
                              f"{'is not mapped' if d is None else 'has no fault_point'}")
        p = next(q for q in d.points if q.point == d.fault_point)
        self._store(d, p, word)
