"""The gateway's Modbus TCP adapter: polls the devices of one connection and writes setpoints.

Split into pure parts and I/O. :func:`encode_value` / :func:`decode_registers` convert between engineering
values and registers; :func:`read_plan` groups a device's points into contiguous register blocks (one request
each); :func:`parse_block` / :func:`parse_device` turn the registers read into :class:`Sample` objects.
:class:`ModbusPoller` does the I/O: one pymodbus ``AsyncModbusTcpClient`` per connection, each device polled
at its own ``poll_s`` on absolute ticks, errors of one device counted in :class:`SourceHealth` without stopping
the others, reconnects with exponential back-off. Registers (``ingest/modbus.yaml``): engineering value =
raw * ``scale``; 32-bit values take two registers, ``word_order`` ``big`` = high word first, ``little`` = low
word first; bytes within a register are always big-endian (the Modbus convention).
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from dataclasses import dataclass

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from anning_lib.aio import wait_or_stop
from anning_lib.errors import IngestError
from anning_lib.ingest.model import Quality, Sample, Sink, SourceHealth
from anning_lib.ingest.pointmap import (
    RAW_RANGE,
    REGISTERS,
    ModbusConnection,
    ModbusDevice,
    ModbusPoint,
)

log = logging.getLogger("anning.ingest.modbus")

FUNCTION_CODE = {"holding": 3, "input": 4}
_STRUCT = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "float32": "f"}
_EXC_NAMES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
              6: "device busy", 10: "gateway path unavailable", 11: "gateway target failed to respond"}
BACKOFF_FIRST_S = 0.5


# ------------------------------------------------------------------------------------------------ codec (pure)
def _inverse_scale(scale: float) -> int | None:
    """``1/scale`` when it is a whole number (scale 0.1, 0.0001 ...), so decimals convert exactly."""
    if abs(scale) >= 1:
        return None
    inv = 1.0 / scale
    return int(round(inv)) if abs(inv - round(inv)) < 1e-9 * abs(inv) else None


def encode_value(value: float, type: str, word_order: str, scale: float) -> list[int]:
    """The 1 or 2 registers [0..65535] holding an engineering value.

    Parameters
    ----------
    value : float
        engineering value [the point's unit]; raw = round(value / scale) for integer types.
    type : str
        register type: ``int16``, ``uint16``, ``int32``, ``uint32`` or ``float32``.
    word_order : str
        ``big`` (high word first) or ``little`` (low word first); bytes within a register are big-endian.
    scale : float
        engineering value = raw * scale [unit per raw count].

    Raises
    ------
    IngestError
        naming value and type when the raw value does not fit the type (or is not finite).
    """
    inv = _inverse_scale(scale)
    raw = value * inv if inv else value / scale
    lo, hi = RAW_RANGE[type]
    if type != "float32":
        raw = round(raw) if math.isfinite(raw) else raw
    if not (math.isfinite(raw) and lo <= raw <= hi):
        raise IngestError(f"value {value!r} with scale {scale} gives raw {raw!r}, which does not fit {type} "
                          f"[{lo}, {hi}]")
    data = struct.pack(f">{_STRUCT[type]}", raw)
    regs = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return regs[::-1] if word_order == "little" else regs


def decode_registers(regs: list[int], type: str, word_order: str, scale: float) -> float:
    """Engineering value [the point's unit] held in ``REGISTERS[type]`` registers [0..65535] in wire order.

    The inverse of :func:`encode_value`; ``type``, ``word_order`` and ``scale`` [unit per raw count] as there.
    """
    if len(regs) != REGISTERS[type]:
        raise IngestError(f"{type} needs {REGISTERS[type]} registers, got {len(regs)}: {regs}")
    ordered = list(regs)[::-1] if word_order == "little" else list(regs)
    raw = struct.unpack(f">{_STRUCT[type]}", b"".join(int(r).to_bytes(2, "big") for r in ordered))[0]
    inv = _inverse_scale(scale)
    return float(raw / inv if inv else raw * scale)


# ------------------------------------------------------------------------------------------------ plan (pure)
@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers from ``address`` of one function on one unit."""

    device: str
    unit_id: int
    function: str            # "holding" (FC03) or "input" (FC04)
    address: int
    count: int
    word_order: str          # the device's; a point's own word_order overrides it
    points: tuple[ModbusPoint, ...]

    @property
    def fc(self) -> int:
        return FUNCTION_CODE[self.function]


def read_plan(dev: ModbusDevice, max_gap: int = 8, max_count: int = 120) -> list[Block]:
    """Group a device's points into contiguous register blocks, one read each: holding blocks first, then
    input blocks, each ordered by address.

    Parameters
    ----------
    dev : ModbusDevice
        the device's map entry.
    max_gap : int
        largest run of unmapped registers a block may bridge [registers].
    max_count : int
        largest block [registers]; Modbus allows 125 per read.
    """
    blocks: list[Block] = []
    for function in ("holding", "input"):
        points = sorted((p for p in dev.points if p.function == function), key=lambda p: p.address)
        group: list[ModbusPoint] = []
        start = end = 0
        for p in points:
            p_end = p.address + p.n_registers
            if group and (p.address - end > max_gap or max(end, p_end) - start > max_count):
                blocks.append(Block(dev.device, dev.unit_id, function, start, end - start, dev.word_order,
                                    tuple(group)))
                group = []
            if not group:
                start, end = p.address, p_end
            group.append(p)
            end = max(end, p_end)
        if group:
            blocks.append(Block(dev.device, dev.unit_id, function, start, end - start, dev.word_order, tuple(group)))
    return blocks


def parse_block(block: Block, regs: list[int], ts_ms: int, recv_s: float, quality: int) -> list[Sample]:
    """Samples of the points in one block read.

    Parameters
    ----------
    block : Block
        the block requested; ``regs`` are its ``block.count`` registers as read.
    ts_ms : int
        the poll time [ms since 1970-01-01 UTC]; ``recv_s`` when the response arrived [s, epoch].
    quality : int
        :class:`Quality` code given to every sample.
    """
    out = []
    for p in block.points:
        off = p.address - block.address
        value = decode_registers(regs[off:off + p.n_registers], p.type, p.word_order or block.word_order, p.scale)
        out.append(Sample(f"{block.device}.{p.point}", ts_ms, value, quality, recv_s))
    return out


def parse_device(dev: ModbusDevice, plan: list[Block], regs: list[list[int] | None], ts_ms: int,
                 recv_s: float, last: dict[str, float] | None = None) -> list[Sample]:
    """Samples of one device poll; ``regs[i]`` is block ``plan[i]`` as read, or None when its read failed.

    With a ``fault_point``, a non-zero (or unread) fault word marks every other sample of the poll
    ``UNCERTAIN``; the fault word itself stays ``GOOD``. With ``last`` (tag -> last value read, updated here),
    the first failed read of a point after a good one repeats its last value marked ``STALE``, once per outage,
    so the stored series says from when the reading is stale.
    """
    samples: list[Sample] = []
    stale: list[Sample] = []
    for block, r in zip(plan, regs):
        if r is not None:
            samples.extend(parse_block(block, r, ts_ms, recv_s, Quality.GOOD))
        elif last is not None:
            for p in block.points:
                tag = f"{block.device}.{p.point}"
                if tag in last:
                    stale.append(Sample(tag, ts_ms, last.pop(tag), Quality.STALE, recv_s))
    if last is not None:
        last.update((s.tag, s.value) for s in samples)
    if dev.fault_point is not None:
        fault_tag = f"{dev.device}.{dev.fault_point}"
        fault = next((s for s in samples if s.tag == fault_tag), None)
        if fault is None or fault.value != 0:
            for s in samples:
                if s.tag != fault_tag:
                    s.quality = Quality.UNCERTAIN
    return samples + stale


# ------------------------------------------------------------------------------------------------ I/O
def _exception_text(rr) -> str:
    return f"Modbus exception {rr.exception_code} ({_EXC_NAMES.get(rr.exception_code, 'unknown')})"


async def _cancel_all(tasks: list[asyncio.Task]) -> None:
    """Cancel until done: Python 3.11's ``wait_for`` (inside pymodbus) can swallow a cancellation."""
    pending = set(tasks)
    while pending:
        for t in pending:
            t.cancel()
        _done, pending = await asyncio.wait(pending, timeout=0.05)
    for t in tasks:
        _ = t.cancelled() or t.exception()   # retrieved: no "exception was never retrieved" warnings


class ModbusPoller:
    """Polls every device of one Modbus TCP connection into a sink; writes setpoints on request.

    Parameters
    ----------
    conn : ModbusConnection
        the connection's map: host, port, ``timeout_s`` per request [s], ``backoff_max_s`` [s], devices.
    sink : Sink
        called as ``sink(samples, health)`` once per device poll (the sink screens and counts the samples).
    health : SourceHealth
        this connection's health; errors go to :meth:`SourceHealth.error`, connection loss to ``down``.
    clock : callable
        wall clock [s, epoch] used to stamp samples (``time.time``).
    """

    def __init__(self, conn: ModbusConnection, sink: Sink, health: SourceHealth, clock=time.time):
        self.conn, self.sink, self.health, self.clock = conn, sink, health, clock
        self.plans = {dev.device: read_plan(dev) for dev in conn.devices}
        self._points = {f"{d.device}.{p.point}": (d, p) for d in conn.devices for p in d.points}
        self._client: AsyncModbusTcpClient | None = None
        self._lost: asyncio.Event | None = None   # set by a device task or pymodbus when the connection drops
        self._lost_reason = ""
        self._t0: float | None = None
        self._last: dict[str, float] = {}   # tag -> last value read, for STALE marks (parse_device)

    def _new_client(self, trace_connect=None) -> AsyncModbusTcpClient:
        # reconnect_delay=0: no pymodbus auto-reconnect (we back off ourselves); retries=0: one timeout_s per read
        return AsyncModbusTcpClient(self.conn.host, port=self.conn.port, name=self.conn.name,
                                    timeout=self.conn.timeout_s, retries=0, reconnect_delay=0,
                                    trace_connect=trace_connect)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; never raises (errors are counted in ``health``)."""
        self._lost = asyncio.Event()
        client = self._client = self._new_client(trace_connect=self._on_connect_change)
        self._t0 = asyncio.get_running_loop().time()
        try:
            while not stop.is_set():
                if not await self._connect(client, stop):
                    break
                await self._serve(client, stop)
                if not stop.is_set():
                    self.health.down(self._lost_reason or "connection lost")
                    client.close()
        except Exception as err:  # noqa: BLE001 - run never raises; the gateway keeps the other sources
            log.exception("%s: Modbus poller stopped", self.conn.name)
            self.health.error("internal", f"poller stopped: {err!r}")
        finally:
            client.close()
            self._client = None
            self.health.connected = False

    def _on_connect_change(self, connected: bool) -> None:
        if not connected and self._lost is not None:
            self._set_lost(f"{self.conn.host}:{self.conn.port} closed the connection")

    def _set_lost(self, reason: str) -> None:
        if not self._lost.is_set():   # keep the first reason
            self._lost_reason = reason
            self._lost.set()

    async def _connect(self, client: AsyncModbusTcpClient, stop: asyncio.Event) -> bool:
        """Connect, retrying after 0.5 s, 1 s, 2 s ... up to ``backoff_max_s``; False when stopped first."""
        delay = BACKOFF_FIRST_S
        while not stop.is_set():
            ok, why = False, "refused or timed out"
            try:
                ok = await client.connect()
            except Exception as err:  # noqa: BLE001 - e.g. name resolution; retried like a refused connect
                why = repr(err)
            if ok:
                self._lost.clear()
                self.health.up()
                return True
            self.health.down(f"cannot connect to {self.conn.host}:{self.conn.port} ({why}); retry in {delay:g} s")
            await wait_or_stop(stop, delay)
            delay = min(2 * delay, self.conn.backoff_max_s)
        return False

    async def _serve(self, client: AsyncModbusTcpClient, stop: asyncio.Event) -> None:
        """Run one polling task per device until ``stop`` is set or the connection is lost."""
        tasks = [asyncio.create_task(self._device_loop(client, dev)) for dev in self.conn.devices]
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._lost.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_all(tasks + waits)

    async def _device_loop(self, client: AsyncModbusTcpClient, dev: ModbusDevice) -> None:
        """Poll one device at once (on connect), then on the ticks ``t0 + n * poll_s`` (monotonic clock);
        missed ticks are skipped."""
        loop = asyncio.get_running_loop()
        period = dev.poll_s
        while True:
            try:
                await self._poll_device(client, dev)
            except Exception as err:  # noqa: BLE001 - a bug must not silently end this device's polling
                log.exception("%s: polling %s failed", self.conn.name, dev.device)
                self.health.error("internal", f"{dev.device}: {err!r}")
            n = math.floor((loop.time() - self._t0) / period) + 1
            await asyncio.sleep(max(0.0, self._t0 + n * period - loop.time()))

    async def _poll_device(self, client: AsyncModbusTcpClient, dev: ModbusDevice) -> list[Sample]:
        """Read every block of one device, hand the samples to the sink and return them."""
        ts_ms = int(round(self.clock() * 1000))
        plan = self.plans[dev.device]
        regs = [None if self._lost.is_set() else await self._read(client, block) for block in plan]
        try:
            samples = parse_device(dev, plan, regs, ts_ms, self.clock(), self._last)
        except IngestError as err:
            self.health.error("decode", str(err))
            samples = []
        try:
            self.sink(samples, self.health)
        except Exception as err:  # noqa: BLE001 - a failing sink must not stop polling
            log.exception("%s: sink failed", self.conn.name)
            self.health.error("sink", repr(err))
        return samples

    async def _read(self, client: AsyncModbusTcpClient, block: Block) -> list[int] | None:
        """One block's registers, or None after counting the error (or flagging the connection lost)."""
        where = (f"{block.device} unit {block.unit_id} {block.function} (FC{block.fc:02d}) "
                 f"address {block.address} count {block.count}")
        read = client.read_holding_registers if block.function == "holding" else client.read_input_registers
        try:
            rr = await read(block.address, count=block.count, device_id=block.unit_id)
        except (ConnectionException, ModbusIOException, asyncio.TimeoutError) as err:
            if isinstance(err, ConnectionException) or not client.connected:
                self._set_lost(f"{where}: connection lost ({err})")
            else:
                self.health.error("timeout", f"{where}: no response within {self.conn.timeout_s:g} s")
            return None
        except ModbusException as err:
            self.health.error("protocol", f"{where}: {err}")
            return None
        if rr.isError():
            self.health.error("modbus_exception", f"{where}: {_exception_text(rr)}")
            return None
        if len(rr.registers) != block.count:
            self.health.error("protocol", f"{where}: got {len(rr.registers)} registers")
            return None
        return list(rr.registers)

    # -------------------------------------------------------------------------------------------- setpoints
    def _holding_point(self, tag: str, value: float) -> tuple[ModbusDevice, ModbusPoint]:
        if tag not in self._points:
            raise IngestError(f"setpoint {tag}={value!r}: {tag} is not mapped on Modbus connection {self.conn.name}")
        dev, p = self._points[tag]
        if p.function != "holding":
            raise IngestError(f"setpoint {tag}={value!r}: {tag} is an {p.function} register (read-only); "
                              "only holding registers can be written")
        return dev, p

    async def write_setpoint(self, tag: str, value: float) -> float:
        """Write a holding-register point (FC16), read it back (FC03) and return the read-back value.

        Parameters
        ----------
        tag : str
            ``DEVICE.point`` mapped as ``function: holding`` on this connection.
        value : float
            engineering value [the point's unit]; limits are checked by the caller.

        Returns
        -------
        float
            the value read back from the device [the point's unit].

        Raises
        ------
        IngestError
            naming tag and value: not mapped here, not a holding register, does not fit the register type,
            or the device refused or did not answer.
        """
        dev, p = self._holding_point(tag, value)
        order = p.word_order or dev.word_order
        try:
            regs = encode_value(value, p.type, order, p.scale)
        except IngestError as err:
            raise IngestError(f"setpoint {tag}={value!r}: {err}") from None
        # the running poller's client (pymodbus serialises requests), else a short-lived one
        client, own = self._client, False
        if client is None or not client.connected:
            client, own = self._new_client(), True
            if not await client.connect():
                client.close()
                raise IngestError(f"setpoint {tag}={value!r}: cannot connect to {self.conn.host}:{self.conn.port}")
        try:
            rr = await client.write_registers(p.address, regs, device_id=dev.unit_id)
            if rr.isError():
                raise IngestError(f"setpoint {tag}={value!r}: write refused: {_exception_text(rr)}")
            rb = await client.read_holding_registers(p.address, count=p.n_registers, device_id=dev.unit_id)
            if rb.isError():
                raise IngestError(f"setpoint {tag}={value!r}: read-back refused: {_exception_text(rb)}")
        except ModbusException as err:
            raise IngestError(f"setpoint {tag}={value!r}: {err}") from None
        finally:
            if own:
                client.close()
        back = decode_registers(list(rb.registers), p.type, order, p.scale)
        log.info("%s: setpoint %s = %r written, read back %r", self.conn.name, tag, value, back)
        return back
