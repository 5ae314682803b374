"""The setpoint executor: a schedule's first step sent to the storages, read back, recorded.

Each storage setpoint goes through the ingestion issue's control path
(:func:`anning_lib.ingest.control.write_setpoint`: bounded by the point's limits, refused for advisory devices,
audited in ``audit_log``). A storage under advisory control (``params.control: advisory``) is not written: its
setpoint is recorded as ``proposed`` for an operator to act on. Every setpoint leaves a ``dispatch_command`` row
with its outcome, and each schedule a ``dispatch_schedule`` row with the whole plan.

Outcomes (``dispatch_command.status``): ``verified`` (read back within ``tol_kw``), ``mismatch`` (read back but
different), ``proposed`` (advisory), ``refused`` (the control path refused it), ``failed`` (no connection, I/O
error).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.dispatch.schedule import Schedule
from anning_lib.errors import IngestError
from anning_lib.ingest.control import write_setpoint
from anning_lib.park.schema import Park
from anning_lib.store.schema import TABLES

SETPOINT_POINT = "p_set_kw"


@dataclass
class CommandResult:
    """What became of one setpoint."""

    device_id: str
    setpoint_kw: float
    mode: str                   # "auto" or "advisory"
    status: str                 # verified | mismatch | proposed | refused | failed
    readback_kw: float | None
    latency_s: float            # from the trigger to the read-back (or the decision not to write) [s]
    message: str = ""


def save_schedule(engine: Engine, schedule: Schedule, site: str, status: str) -> int:
    """Store a schedule in ``dispatch_schedule``; returns its id."""
    idx = schedule.frame.index
    step = idx[1] - idx[0] if len(idx) > 1 else dt.timedelta(minutes=15)
    plan = schedule.to_dict() | {"site": site}
    with engine.begin() as conn:
        return int(conn.execute(sa.insert(TABLES["dispatch_schedule"]).values(
            created_at=dt.datetime.now(dt.UTC), strategy=schedule.strategy,
            horizon_start=idx[0].to_pydatetime(), horizon_end=(idx[-1] + step).to_pydatetime(),
            status=status, objective_cny=schedule.cost_cny["total"], plan=plan)
            .returning(TABLES["dispatch_schedule"].c.id)).scalar_one())


async def execute(engine: Engine, park: Park, adapter_for: Callable[[str], object], setpoints_kw: dict[str, float],
                  *, schedule_id: int | None, due_at: dt.datetime, trigger_s: float, tol_kw: float = 1.0,
                  user_id: int | None = None) -> list[CommandResult]:
    """Send ``setpoints_kw`` (storage id -> kW, > 0 discharges) and record each outcome.

    Parameters
    ----------
    adapter_for : callable
        tag -> the gateway adapter that maps it (:meth:`Gateway.adapter_for`), or None.
    trigger_s : float
        ``time.perf_counter()`` when the MPC step was triggered; latencies count from it [s].
    tol_kw : float
        largest accepted difference between the setpoint and its read-back [kW] (the register resolution is
        0.1 kW in the simulator's map).
    """
    out = []
    for dev_id, value in setpoints_kw.items():
        value = round(float(value), 1)
        tag = f"{dev_id}.{SETPOINT_POINT}"
        mode = getattr(park.device(dev_id).p, "control", "auto")
        readback, msg = None, ""
        if mode == "advisory":
            status = "proposed"
        else:
            try:
                readback = await write_setpoint(adapter_for(tag), park, engine, tag, value, user_id=user_id)
                status = "verified" if abs(readback - value) <= tol_kw else "mismatch"
            except IngestError as err:
                status, msg = ("failed" if "no gateway connection" in str(err) else "refused"), str(err)
            except (OSError, TimeoutError) as err:
                status, msg = "failed", f"{type(err).__name__}: {err}"
        out.append(CommandResult(dev_id, value, mode, status, readback, time.perf_counter() - trigger_s, msg))
    _record(engine, out, schedule_id, due_at, user_id)
    return out


def _record(engine: Engine, results: list[CommandResult], schedule_id: int | None, due_at: dt.datetime,
            user_id: int | None) -> None:
    if not results:
        return
    now = dt.datetime.now(dt.UTC)
    rows = [{"schedule_id": schedule_id, "device_id": r.device_id, "due_at": due_at, "setpoint_p_kw": r.setpoint_kw,
             "mode": r.mode, "status": r.status, "issued_by": user_id, "issued_at": now,
             "result": (f"read back {r.readback_kw:g} kW; " if r.readback_kw is not None else "")
             + f"latency {r.latency_s * 1000:.0f} ms" + (f"; {r.message}" if r.message else "")} for r in results]
    with engine.begin() as conn:
        conn.execute(sa.insert(TABLES["dispatch_command"]), rows)
