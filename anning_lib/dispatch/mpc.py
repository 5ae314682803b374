"""Model predictive control of the park's storages: every 15 minutes, re-plan the next day and send the first step.

One MPC step (:func:`mpc_step`), triggered by the clock:

1. for each site (:mod:`anning_lib.dispatch.sites`; enterprises first, the park connection last), read the last
   weeks of the gross load and PV, the storages' newest state of charge and the month's peak so far;
2. forecast the horizon (mean of the last weeks' same weekday and time; yesterday's with under two weeks);
3. optimise (:func:`anning_lib.dispatch.optimize.optimize`, with a time limit); if the solver fails, runs out of
   time or finds the case infeasible, fall back to the rule (:mod:`anning_lib.dispatch.rule`) and say so;
4. store each plan and send its first step through the executor; log the trigger-to-verified-setpoint latency;
5. hand the demand thresholds and setpoints to the peak guard (:mod:`anning_lib.dispatch.guard`), which holds the
   import at the threshold between two plans.

Steps 1-3 are synchronous library calls run in a worker thread, so the gateway keeps ingesting meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.dispatch.case import DispatchCase
from anning_lib.dispatch.executor import CommandResult, execute, save_schedule
from anning_lib.dispatch.guard import GuardState
from anning_lib.dispatch.optimize import optimize
from anning_lib.dispatch.rule import rule_schedule
from anning_lib.dispatch.schedule import Schedule
from anning_lib.dispatch.sites import (
    Site,
    expected_peak_kw,
    forecast_next,
    latest,
    month_peak_kw,
    site_case,
    site_history,
)
from anning_lib.errors import DispatchError, ForecastError
from anning_lib.park.schema import Park


@dataclass(frozen=True)
class MpcConfig:
    """Settings of the MPC loop."""

    interval_s: float = 900.0           # how often to re-plan [s]
    horizon_steps: int = 96             # one day of 15-minute steps
    step: str = "15min"
    time_limit_s: float = 2.0           # solver time limit per site; beyond it the rule runs [s]
    history_days: int = 28
    tz: str = "Asia/Shanghai"


@dataclass
class SitePlan:
    """The plan of one site in one MPC step."""

    site: Site
    case: DispatchCase | None            # None: no plan could be made (no recent data); the storages idle
    schedule: Schedule | None
    fallback: str | None = None          # why the rule was used or the storages idle, or None
    commands: list[CommandResult] = field(default_factory=list)

    def setpoints_kw(self) -> dict[str, float]:
        """The first step's setpoints; 0 kW (idle) for every storage when there is no plan."""
        if self.schedule is None:
            return {d.id: 0.0 for d in self.site.storages}
        return self.schedule.setpoints_kw(0)


def plan_site(engine: Engine, site: Site, now: pd.Timestamp, cfg: MpcConfig,
              other_storage_kw: np.ndarray | None = None) -> SitePlan:
    """Read, forecast and optimise one site. Solver trouble or infeasibility: the rule. No usable data (a meter
    down for over an hour, too short a history): no plan, and the storages are set idle."""
    origin = now.tz_convert(cfg.tz).floor(cfg.step)
    index = pd.date_range(origin, periods=cfg.horizon_steps, freq=cfg.step)
    try:
        gross, pv = site_history(engine, site, origin, cfg.history_days, cfg.tz)
        soc = latest(engine, [f"{d.id}.soc_frac" for d in site.storages], now)
        load, sun = forecast_next(gross, index), forecast_next(pv, index)
        peak = month_peak_kw(engine, site, now, cfg.tz)
        threshold = max(peak, expected_peak_kw(gross - pv.reindex(gross.index).fillna(0.0)))
        case = site_case(site, index, load["p50"].to_numpy(), sun["p50"].to_numpy(),
                         {k.split(".")[0]: v for k, v in soc.items()}, peak, other_storage_kw=other_storage_kw,
                         threshold_kw=threshold)
    except (ForecastError, DispatchError) as err:
        return SitePlan(site, None, None, fallback=f"idle, no plan: {err}")
    try:
        return SitePlan(site, case, optimize(case, time_limit_s=cfg.time_limit_s))
    except DispatchError as err:   # infeasible or solver failure: the rule keeps the storages safe
        return SitePlan(site, case, rule_schedule(case, reason=str(err)), fallback=f"rule: {err}")


def plan_all(engine: Engine, sites: list[Site], now: pd.Timestamp, cfg: MpcConfig) -> list[SitePlan]:
    """Plan every site; the park site sees the enterprises' planned storage power (those under automatic control;
    an advisory storage's proposal may not be followed) as part of its load."""
    plans = []
    sub_kw = np.zeros(cfg.horizon_steps)
    for site in sites:
        plan = plan_site(engine, site, now, cfg, sub_kw if site.sub_storages else None)
        if site.connection != "park" and plan.schedule is not None:
            sub_kw = sub_kw + sum((plan.schedule.frame[f"{d.id}.p_kw"].to_numpy() for d in site.storages
                                   if getattr(d.p, "control", "auto") == "auto"), np.zeros(cfg.horizon_steps))
        plans.append(plan)
    return plans


async def mpc_step(engine: Engine, park: Park, sites: list[Site], adapter_for: Callable[[str], object],
                   cfg: MpcConfig = MpcConfig(), now: pd.Timestamp | None = None,
                   say: Callable[[str], None] = lambda _m: None, guard: GuardState | None = None) -> list[SitePlan]:
    """One MPC step (module docstring); returns the plans with their command outcomes."""
    trigger = time.perf_counter()
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    plans = await asyncio.to_thread(plan_all, engine, sites, now, cfg)
    guard = guard or GuardState()
    for plan in plans:
        advisory = all(getattr(d.p, "control", "auto") == "advisory" for d in plan.site.storages)
        sid = None if plan.schedule is None else await asyncio.to_thread(
            save_schedule, engine, plan.schedule, plan.site.connection, "advisory" if advisory else "executed")
        async with guard.lock:       # the guard must not write between this site's new setpoints and its state
            plan.commands = await execute(engine, park, adapter_for, plan.setpoints_kw(), schedule_id=sid,
                                          due_at=now.floor(cfg.step).to_pydatetime(), trigger_s=trigger)
            guard.update_site(plan)
    say(summary(plans, time.perf_counter() - trigger))
    return plans


def summary(plans: list[SitePlan], elapsed_s: float) -> str:
    """One log line per MPC step."""
    parts = []
    for p in plans:
        cmds = ", ".join(f"{c.device_id} {c.setpoint_kw:+,.0f} kW {c.status}"
                         + (f" in {c.latency_s * 1000:.0f} ms" if c.status == "verified" else "") for c in p.commands)
        if p.schedule is None:
            parts.append(f"{p.site.connection}: {p.fallback}; {cmds}")
            continue
        flag = f" FALLBACK {p.fallback}" if p.fallback else ""
        parts.append(f"{p.site.connection}: {p.schedule.strategy}{flag}, day saves "
                     f"{p.schedule.savings_cny:,.0f} CNY; {cmds}")
    return f"dispatch ({elapsed_s:.2f} s): " + "; ".join(parts)


async def run_mpc(engine: Engine, park: Park, sites: list[Site], adapter_for: Callable[[str], object],
                  stop: asyncio.Event, cfg: MpcConfig = MpcConfig(), say: Callable[[str], None] = print,
                  first_after_s: float = 0.0, guard: GuardState | None = None) -> None:
    """Run :func:`mpc_step` every ``cfg.interval_s`` until ``stop``; a failing step is logged, the loop goes on.
    With ``guard``, each step hands its thresholds and setpoints to the peak guard (:mod:`.guard`)."""
    from anning_lib.aio import wait_or_stop

    if await wait_or_stop(stop, first_after_s):
        return
    while not stop.is_set():
        try:
            await mpc_step(engine, park, sites, adapter_for, cfg, say=say, guard=guard)
        except DispatchError as err:
            say(f"dispatch: step skipped: {err}")
        except Exception as err:  # noqa: BLE001 - the loop must outlive one bad step; the next one retries
            say(f"dispatch: step failed: {type(err).__name__}: {err}")
        if await wait_or_stop(stop, cfg.interval_s):
            return


def control_loops(engine: Engine, park: Park, gateway, stop: asyncio.Event, say: Callable[[str], None],
                  settings) -> list:
    """The MPC and the peak guard for every storage site, driven through ``gateway`` (its adapters for writes,
    its live values for the guard), as coroutines to gather beside it (``anning demo``, ``anning ingest run
    --dispatch``). ``settings``: :class:`anning_lib.config.Settings` (data folder, interval, time limit, zone)."""
    from anning_lib.dispatch.guard import run_guard
    from anning_lib.dispatch.sites import sites_from_park

    cfg = MpcConfig(interval_s=settings.dispatch_interval_s, time_limit_s=settings.dispatch_time_limit_s,
                    tz=settings.timezone)
    sites, guard = sites_from_park(park, settings.data_dir), GuardState()
    return [run_mpc(engine, park, sites, gateway.adapter_for, stop, cfg, say, first_after_s=10, guard=guard),
            run_guard(engine, park, sites, guard, gateway.live_value, gateway.adapter_for, stop, say=say)]
