"""The control path: write a setpoint to a device (Modbus holding register or OPC UA node), bounded and audited.

Every attempt, written or refused, leaves one ``audit_log`` row (``setpoint_written`` / ``setpoint_refused``)
with the value asked for, the read-back value or the reason, and the user. A setpoint is refused when the point
is not writable, when the value lies outside the point's ``min``/``max`` in the park model, or when the device is
switched to advisory control (``params.control: advisory``: dispatch may suggest, not write). Which users may
call this at all is the portal's role check (ARCHITECTURE.md §6); this layer records who did.
"""

from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.errors import IngestError
from anning_lib.park.schema import Park, Point
from anning_lib.store.schema import TABLES


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
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise IngestError(f"setpoint {tag}: value must be a finite number, got {value!r}")
    if (point.min is not None and value < point.min) or (point.max is not None and value > point.max):
        raise IngestError(f"setpoint {tag}: {value:g} {point.unit} is outside the limits [{point.min:g}, {point.max:g}]")
    if getattr(dev.p, "control", "auto") == "advisory":
        raise IngestError(f"setpoint {tag}: device {dev_id} is under advisory control (suggest only, not written)")
    return point


def audit(engine: Engine, action: str, target: str, detail: dict, user_id: int | None = None) -> None:
    """Append one row to ``audit_log``."""
    with engine.begin() as conn:
        conn.execute(sa.insert(TABLES["audit_log"]).values(ts=dt.datetime.now(dt.UTC), user_id=user_id, action=action,
                                                            target=target, detail=detail))


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
