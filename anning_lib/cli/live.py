"""The live part of ``anning demo``: simulated devices on the wire, the gateway ingesting them, rollups refreshed.

Composition only: the simulator's servers (:mod:`anning_lib.sim.serve`), the gateway
(:mod:`anning_lib.ingest.gateway`) and the store's rollups run side by side in one asyncio loop until Ctrl-C
(or ``duration_s``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date

import pandas as pd

from anning_lib.aio import every, stop_on_signal
from anning_lib.config import get_settings
from anning_lib.dispatch.mpc import control_loops
from anning_lib.ingest.gateway import Gateway
from anning_lib.ingest.pointmap import PointMaps
from anning_lib.park.schema import Park
from anning_lib.quality.service import alarm_service
from anning_lib.sim.live import LiveValues
from anning_lib.sim.mqtt_broker import mosquitto_available
from anning_lib.sim.park import ParkSimulator
from anning_lib.sim.serve import SimServers, fallback_maps
from anning_lib.store.timeseries import refresh_rollups, write_measurements


def _status(gw: Gateway, tz: str, final: bool = False) -> str:
    now = pd.Timestamp.now(tz=tz)
    parts = []
    for h in gw.health[1:]:
        state = "stopped" if final else ("up" if h.connected else "DOWN")
        parts.append(f"{h.source} {state} {h.n_samples:,d} samples" + (f" ({h.n_bad} bad)" if h.n_bad else ""))
    _p50, p99 = gw.writer.latency.percentiles(50, 99)
    return (f"live {now:%H:%M:%S}: " + "; ".join(parts) + f"; {gw.writer.latency.committed:,d} samples written, "
            f"latency p99 {p99 * 1000:.0f} ms")


def rollup_loop(engine, stop: asyncio.Event, period_s: float = 60.0):
    """Every ``period_s`` [s], the last half hour's 15-minute rollups refreshed: the portal's pages and the live
    figures read the rollups as they are, so whoever ingests keeps them at most a minute behind."""
    def refresh():
        t = pd.Timestamp.now(tz="UTC")
        refresh_rollups(engine, t - pd.Timedelta("30min"), t)
    return every(period_s, stop, refresh)


def forecast_loop(engine, park: Park, var_dir, stop: asyncio.Event, say: Callable[[str], None],
                  period_s: float = 900.0):
    """Every ``period_s`` [s] (first after 5 s): train the models that are a day old, then forecast the next day
    of every target (loads, grid exchange, PV) into the store."""
    def forecasts():
        from threadpoolctl import threadpool_limits

        from anning_lib.forecast.operate import run_all

        # one OpenMP thread: beside the gateway (and the simulator), more threads than cores make training crawl
        with threadpool_limits(limits=1):
            out = run_all(engine, park, var_dir, pd.Timestamp.now(tz="UTC"), score_days=0, should_stop=stop.is_set)
        ok = sum("rows" in v for v in out.values())
        say(f"forecast: next day of {ok} of {len(out)} targets stored (loads, grid exchange, PV)")
    return every(period_s, stop, forecasts, first_after_s=5)


async def run_live(park: Park, maps: PointMaps, engine, sim: ParkSimulator, first_day: date, var_dir, tz: str,
                   say: Callable[[str], None], duration_s: float | None = None, status_s: float = 30.0) -> None:
    """Serve the simulated park and ingest it until interrupted."""
    live = LiveValues(sim, first_day)
    now = pd.Timestamp.now(tz="UTC")
    n = write_measurements(engine, live.history(now, "15min"))
    refresh_rollups(engine, now.floor("D") - pd.Timedelta("1D"), now)
    say(f"history of today up to {now.tz_convert(tz):%H:%M}: {n:,d} rows")
    servers = SimServers(park, maps, live, var_dir)
    await servers.start()
    if not mosquitto_available():
        maps = fallback_maps(maps)
    gw = Gateway(park, maps, engine, var_dir)
    say("simulated devices: " + ", ".join(
        [f"Modbus TCP {c.host}:{c.port}" for c in (maps.modbus.connections if maps.modbus else [])]
        + [f"OPC UA {c.endpoint} ({c.security.policy} {c.security.mode})" for c in (maps.opcua.connections if maps.opcua else [])]
        + [f"MQTT {c.host}:{c.port} via {servers.broker_kind}" for c in (maps.mqtt.connections if maps.mqtt else [])]))
    say(f"gateway: {len(gw.adapters)} connections -> {engine.url.render_as_string(hide_password=True)}; stop with Ctrl-C")
    stop = asyncio.Event()
    stop_on_signal(stop, duration_s)

    control = control_loops(engine, park, gw, stop, say, get_settings())
    alarms = alarm_service(engine, park, get_settings(), say)
    gw.intake.listeners.append(alarms)
    try:
        await asyncio.gather(servers.run(stop), gw.run(stop), rollup_loop(engine, stop),
                             *control, alarms.run(stop, gw),
                             every(status_s, stop, lambda: say(_status(gw, tz))),
                             forecast_loop(engine, park, var_dir, stop, say))
    finally:
        await servers.stop()
    say(_status(gw, tz, final=True))
