"""The control path: write a setpoint to a device (Modbus holding register or OPC UA node), bounded and audited.

Every attempt, written or refused, leaves one ``audit_log`` row (``setpoint_written`` / ``setpoint_refused``)
with the value asked for, the read-back value or the reason, and the user. A setpoint is refused when the point
is not writable, when the value lies outside the point's ``min``/``max`` in the park model, or when the device is
switched to advisory control (``params.control: advisory``: dispatch may suggest, not write). Which users may
call this at all is the portal's role check (ARCHITECTURE.md §6); this layer records who did.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from anning_lib.auth.audit import audit
from anning_lib.errors import IngestError
from anning_lib.park.schema import Park, Point


def check_setpoint(park: Park, tag: str, value: float) -> Point:
    """The park point of ``tag`` if ``value`` may be written to it (pure); IngestError naming why not."""
    dev_id, _, pid = tag.partition(".")
    try:
        dev = park.device(dev_id)
        point = dev.point(pid)
    except KeyError:
        raise IngestError(f"setpoint {tag}: no such point in the park model") from None
    if not point.writable:
        raise IngestError(f"setpoint {tag}: the point is not writable")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IngestError(f"setpoint {tag}: value must be a finite number, got {value!r}")
    why = point.limit_violation(float(value))
    if why is not None:
        raise IngestError(f"setpoint {tag}: {why}")
    if getattr(dev.p, "control", "auto") == "advisory":
        raise IngestError(f"setpoint {tag}: device {dev_id} is under advisory control (suggest only, not written)")
    return point


async def write_setpoint(adapter, park: Park, engine: Engine, tag: str, value: float, *,
                         user_id: int | None = None) -> float:
    """Check, write, read back and audit one setpoint.

    Parameters
    ----------
    adapter : ModbusPoller or OpcuaSubscriber
        the adapter whose point map holds ``tag`` (:meth:`Gateway.adapter_for`).
    tag : str
        ``DEVICE.point``.
    value : float
        the setpoint in the point's unit (storage: ``p_set_kw`` [kW], > 0 discharges).

    Returns
    -------
    float
        the value read back from the device after the write.
    """
    try:
        check_setpoint(park, tag, value)
        if adapter is None:
            raise IngestError(f"setpoint {tag}: no gateway connection maps this point")
        readback = await adapter.write_setpoint(tag, float(value))
    except IngestError as err:
        audit(engine, "setpoint_refused", tag, {"value": value, "reason": str(err)}, user_id)
        raise
    audit(engine, "setpoint_written", tag, {"value": value, "readback": readback}, user_id)
    return readback


async def setpoint_once(maps, park: Park, engine: Engine, var_dir, tag: str, value: float, *,
                        user_id: int | None = None, connect_timeout_s: float = 10.0) -> float:
    """Write one setpoint without a running gateway (``anning ingest setpoint``): connect to the one device
    server that maps ``tag``, write, read back, audit, disconnect."""
    import asyncio

    from anning_lib.ingest.model import SourceHealth

    device = tag.split(".", 1)[0]
    for conn in maps.modbus.connections if maps.modbus else []:
        if any(d.device == device for d in conn.devices):
            from anning_lib.ingest.modbus import ModbusPoller

            poller = ModbusPoller(conn, lambda *_a, **_k: None, SourceHealth(conn.name, "modbus"))
            return await write_setpoint(poller, park, engine, tag, value, user_id=user_id)
    for conn in maps.opcua.connections if maps.opcua else []:
        if any(d.device == device for d in conn.devices):
            from anning_lib.ingest.opcua import OpcuaSubscriber

            health = SourceHealth(conn.name, "opcua")
            pw = conn.password.resolve(var_dir) if conn.password else None
            sub = OpcuaSubscriber(conn, lambda *_a, **_k: None, health, var_dir, pw)
            stop = asyncio.Event()
            task = asyncio.create_task(sub.run(stop))
            try:
                for _ in range(int(connect_timeout_s / 0.05)):
                    if health.connected:
                        break
                    await asyncio.sleep(0.05)
                return await write_setpoint(sub, park, engine, tag, value, user_id=user_id)
            finally:
                stop.set()
                await task
    return await write_setpoint(None, park, engine, tag, value, user_id=user_id)
