"""The peak guard: a fast loop under the MPC that holds each site's import at its demand threshold.

The MPC plans every 15 minutes on forecasts; a noisy load (an EAF heat) can push the import above the month's
demand threshold between two plans. Every few seconds the guard reads the site's meter and, when the import
exceeds the threshold the MPC planned with, raises its storages' setpoints (less charge, more discharge) by the
excess, within their power and energy limits; when the excess is gone it returns them to the plan. This is what a
storage's own controller does for peak limiting; here it runs beside the gateway on the same control path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from anning_lib.dispatch.executor import CommandResult, execute
from anning_lib.dispatch.sites import Site
from anning_lib.park.schema import Park
from anning_lib.sim.storage import bess_step_limits

GUARD_DEADBAND_FRAC = 0.01
"""A setpoint is rewritten only when it moves by more than this share of the storage's power rating [-]."""


def guard_setpoints(plan_kw: dict[str, float], net_kw: float, threshold_kw: float, storages, soc: dict[str, float],
                    dt_h: float) -> dict[str, float]:
    """Setpoints that hold the import at ``threshold_kw`` when the plan would exceed it (pure) [kW].

    Parameters
    ----------
    plan_kw : dict
        storage id -> planned power, > 0 discharges [kW].
    net_kw : float
        the site's import without its storages (load - PV) [kW].
    threshold_kw : float
        the demand threshold [kW].
    soc : dict
        storage id -> state of charge [-], which bounds how much more each can discharge over ``dt_h`` [h].

    When ``net - sum(plan) > threshold`` the storages, in order, charge less or discharge more by the excess.
    """
    out = dict(plan_kw)
    excess = net_kw - sum(plan_kw.values()) - threshold_kw
    for d in storages:
        if excess <= 0:
            break
        _lo, hi = bess_step_limits(soc[d.id], d.p, dt_h)
        raised = min(hi, out[d.id] + excess)
        if raised > out[d.id]:
            excess -= raised - out[d.id]
            out[d.id] = raised
    return out


@dataclass
class GuardState:
    """What the MPC last planned, shared with the guard."""

    threshold_kw: dict[str, float] = field(default_factory=dict)   # site -> demand threshold [kW]
    planned_kw: dict[str, float] = field(default_factory=dict)     # storage -> planned setpoint [kW]
    written_kw: dict[str, float] = field(default_factory=dict)     # storage -> last setpoint written [kW]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)       # one writer at a time: the MPC or the guard

    def update_site(self, plan) -> None:
        """Take one site's new threshold and first-step setpoints (a :class:`~.mpc.SitePlan` just executed).
        A site without a plan (no data) is not guarded until it has one."""
        if plan.case is None:
            self.threshold_kw.pop(plan.site.connection, None)
        else:
            t = plan.case.tariff
            self.threshold_kw[plan.site.connection] = max(t.demand_threshold_kw or 0.0, t.demand_peak_so_far_kw)
        for c in plan.commands:
            self.planned_kw[c.device_id] = c.setpoint_kw
            if c.status == "verified":
                self.written_kw[c.device_id] = c.setpoint_kw


async def guard_tick(engine: Engine, park: Park, sites: list[Site], state: GuardState,
                     live_value: Callable[[str], float | None], adapter_for: Callable[[str], object]
                     ) -> list[CommandResult]:
    """One pass of the guard over the sites; returns the setpoints it wrote."""
    async with state.lock:
        return await _guard_sites(engine, park, sites, state, live_value, adapter_for)


async def _guard_sites(engine, park, sites, state, live_value, adapter_for) -> list[CommandResult]:
    out = []
    for site in sites:
        auto = [d for d in site.storages if getattr(d.p, "control", "auto") == "auto"]
        threshold = state.threshold_kw.get(site.connection)
        meter = live_value(f"{site.meter.id}.p_kw")
        if not auto or threshold is None or meter is None or any(d.id not in state.planned_kw for d in auto):
            continue
        p_now = {d.id: live_value(f"{d.id}.p_kw") for d in auto}
        soc = {d.id: live_value(f"{d.id}.soc_frac") for d in auto}
        if any(v is None for v in [*p_now.values(), *soc.values()]):
            continue        # a storage without a fresh reading: its share of the meter is unknown, do nothing
        # the import if the guarded storages were idle; advisory storages count as load
        net = meter + sum(p_now.values())
        plan = {d.id: state.planned_kw[d.id] for d in auto}
        want = guard_setpoints(plan, net, threshold, auto, soc, 0.25)
        changed = {k: v for k, v in want.items()
                   if abs(v - state.written_kw.get(k, plan[k])) > GUARD_DEADBAND_FRAC * park.device(k).p.p_max_kw}
        if changed:
            res = await execute(engine, park, adapter_for, changed, schedule_id=None,
                                due_at=dt.datetime.now(dt.UTC), trigger_s=time.perf_counter())
            for r in res:
                if r.status == "verified":
                    state.written_kw[r.device_id] = r.setpoint_kw
            out += res
    return out


async def run_guard(engine: Engine, park: Park, sites: list[Site], state: GuardState,
                    live_value: Callable[[str], float | None], adapter_for: Callable[[str], object],
                    stop: asyncio.Event, every_s: float = 5.0, say: Callable[[str], None] = print) -> None:
    """Run :func:`guard_tick` every ``every_s`` [s] until ``stop``; an error is logged and the loop goes on."""
    from anning_lib.aio import wait_or_stop

    while not await wait_or_stop(stop, every_s):
        try:
            for r in await guard_tick(engine, park, sites, state, live_value, adapter_for):
                say(f"peak guard: {r.device_id} {r.setpoint_kw:+,.0f} kW {r.status}")
        except Exception as err:  # noqa: BLE001 - the guard must outlive one bad tick
            say(f"peak guard: tick failed: {type(err).__name__}: {err}")
