"""Benchmark of storage dispatch: solve times, the MPC's trigger-to-verified-setpoint latency and the capture ratio of
a year of the park.

1. Solve times (HiGHS through cvxpy): one day at 15 minutes with 1 and with 20 storages, and a 7-day horizon with 1
   and with 4 storages; *cold* is the first solve of a shape (cvxpy compiles the problem), *warm* the median of the
   next solves with new loads and states of charge (the compiled DPP problem is reused), which is what the MPC does
   every 15 minutes. The cold solve is the baseline in the same run. Target: warm re-solve of the park case < 1 s.
2. Latency: eight simulated days in a SQLite store, the simulator's Modbus server on loopback, one MPC step over the
   park's four storage sites (read history, forecast, optimise, write, read back): the time from the trigger to
   each verified read-back. Target: < 5 s.
3. Capture ratio: a simulated year of the park's shared storage site (SES, 25 MW / 50 MWh behind the 110 kV
   connection) billed month by month: no storage, the rule, the MPC on forecasts (re-planned every hour, peak guard),
   and perfect foresight; capture = MPC savings / perfect-foresight savings.

Run: ``make bench`` or ``.venv/bin/python bench/dispatch.py [--days 365] [--replan-steps 4] [--site park]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.dispatch.backtest import run_backtest  # noqa: E402
from anning_lib.dispatch.case import parse_case  # noqa: E402
from anning_lib.dispatch.optimize import optimize  # noqa: E402
from anning_lib.dispatch.sites import sites_from_park  # noqa: E402
from anning_lib.park import load_park  # noqa: E402
from anning_lib.sim import ParkSimulator, to_long  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def synthetic_case(n_steps: int, n_storages: int, seed: int) -> dict:
    """A park-sized case: 200 MW +- a daily swing and noise, 10 MW of PV, Yunnan band prices, storages of 2-25 MW."""
    rng = np.random.default_rng(seed)
    h = (np.arange(n_steps) % 96) / 4.0
    load = 200_000 + 30_000 * np.sin((h - 6) / 24 * 2 * np.pi) + rng.normal(0, 8_000, n_steps)
    pv = np.clip(10_000 * np.sin((h - 7) / 12 * np.pi), 0, None)
    band = np.where(((h >= 7) & (h < 9)) | (h >= 18), 1.5, np.where(((h >= 2) & (h < 6)) | ((h >= 12) & (h < 16)),
                                                                      0.5, 1.0))
    storages = [{"id": f"s{k}", "energy_kwh": 4_000.0 * (1 + k % 5), "power_kw": 2_000.0 * (1 + k % 5),
                 "soc_initial_frac": float(rng.uniform(0.2, 0.8)), "soc_final_frac": 0.5, "soc_min_frac": 0.1,
                 "soc_max_frac": 0.95, "degradation_cny_per_kwh": 0.05} for k in range(n_storages)]
    if n_storages:
        storages[0] |= {"energy_kwh": 50_000.0, "power_kw": 25_000.0}
    return {"timestep_minutes": 15, "start": "2026-07-01T00:00:00+08:00", "load_kw": load.tolist(),
            "pv_kw": pv.tolist(), "tariff": {"import_price_cny_per_kwh": (0.30 * band + 0.16).tolist(),
                                             "demand_charge_cny_per_kw": 38.0, "demand_peak_so_far_kw": 200_000.0},
            "grid": {"import_limit_kw": 380_000.0}, "storage": storages}


def solve_times(n_steps: int, n_storages: int, repeats: int = 5) -> tuple[float, float, int]:
    """(cold s, median warm s, variables per step) for one problem shape."""
    t = time.perf_counter()
    optimize(parse_case(synthetic_case(n_steps, n_storages, 0)))
    cold = time.perf_counter() - t
    warm = []
    for r in range(repeats):
        case = parse_case(synthetic_case(n_steps, n_storages, r + 1))
        t = time.perf_counter()
        optimize(case)
        warm.append(time.perf_counter() - t)
    return cold, statistics.median(warm), 3 + 3 * n_storages


def latency() -> list[tuple[str, str, float]]:
    """One MPC step against the simulator's Modbus server: (device, status, seconds from trigger)."""
    from anning_lib.dispatch.mpc import MpcConfig, mpc_step
    from anning_lib.ingest.modbus import ModbusPoller
    from anning_lib.ingest.model import SourceHealth
    from anning_lib.ingest.pointmap import load_pointmaps
    from anning_lib.sim.live import LiveValues
    from anning_lib.sim.serve import SimServers
    from anning_lib.store import init_db, make_engine, write_measurements
    from anning_lib.store.timeseries import refresh_rollups

    park = load_park()
    maps = load_pointmaps(REPO / "ingest", park)
    maps = maps.model_copy(update={"opcua": None, "mqtt": None})
    now = pd.Timestamp("2026-06-09T23:05:00Z")
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/bench.sqlite")
        init_db(engine, park)
        sim = ParkSimulator(park, 7, REPO / "data")
        for frame in sim.run(date(2026, 6, 2), date(2026, 6, 10), "15min"):
            write_measurements(engine, to_long(frame))
        live = LiveValues(sim, date(2026, 6, 10))
        write_measurements(engine, live.history(now, "15min"))
        refresh_rollups(engine, pd.Timestamp("2026-06-02", tz="Asia/Shanghai"), now)
        pollers = [ModbusPoller(c, lambda *_a, **_k: None, SourceHealth(c.name, "modbus"))
                   for c in maps.modbus.connections]

        async def go():
            servers = SimServers(park, maps, live, Path(tmp))
            await servers.start(now=now)
            try:
                return await mpc_step(engine, park, sites_from_park(park, REPO / "data"), lambda _t: pollers[0],
                                      MpcConfig(), now=now)
            finally:
                await servers.stop()

        plans = asyncio.run(go())
        engine.dispose()
    return [(c.device_id, c.status, c.latency_s) for p in plans for c in p.commands]


def capture(days: int, replan_steps: int, site_name: str) -> None:
    park = load_park()
    site = next(s for s in sites_from_park(park, REPO / "data") if s.connection == site_name)
    start = date(2026, 1, 1)
    first = start - timedelta(days=28)
    t = time.perf_counter()
    tags = sorted(set(site.gross_tags))
    frames = pd.concat([f[tags] for f in ParkSimulator(park, 20261125, REPO / "data")
                        .run(first, start + timedelta(days=days), "15min")])
    frames.index = frames.index.tz_convert("Asia/Shanghai")
    gross = frames[site.gross_tags].sum(axis=1)
    pv = frames[[f"{d.id}.p_kw" for d in site.pv]].sum(axis=1) if site.pv else gross * 0.0
    print(f"capture: {days} simulated days of site {site_name} ({', '.join(d.id for d in site.storages)}) in "
          f"{time.perf_counter() - t:.0f} s; backtest with re-planning every {replan_steps * 15} min ...", flush=True)
    t = time.perf_counter()
    r = run_backtest(site, gross, pv, pd.Timestamp(start, tz="Asia/Shanghai"), replan_steps=replan_steps)
    tot, sav = r.totals(), r.savings()
    print(f"  {r.n_solves:,d} MPC solves ({r.n_fallbacks} fell back to the rule), median solve "
          f"{statistics.median(r.solve_s) * 1000:.0f} ms; backtest {time.perf_counter() - t:.0f} s")
    monthly = r.monthly.xs("total", axis=1, level=1)
    print((monthly / 1e3).round(0).to_string(float_format=lambda v: f"{v:,.0f}"), "  [k CNY]")
    print(f"  year cost without storage {tot['baseline'] / 1e6:,.2f} M CNY; savings: rule {sav['rule'] / 1e3:,.0f} k, "
          f"MPC {sav['mpc'] / 1e3:,.0f} k, perfect foresight {sav['perfect'] / 1e3:,.0f} k CNY")
    print(f"  capture ratio (MPC / perfect foresight): {r.capture_ratio:.2f}; rule / perfect: "
          f"{sav['rule'] / sav['perfect']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=365, help="days of the capture backtest")
    ap.add_argument("--replan-steps", type=int, default=4, help="MPC re-plans every N quarter-hours in the backtest")
    ap.add_argument("--site", default="park", help="site of the capture backtest: park or an enterprise id")
    args = ap.parse_args()
    print("solve times (HiGHS via cvxpy; cold = first solve of a shape, compiles; warm = median of 5 re-solves)")
    for label, n, s in (("1 day, 1 storage", 96, 1), ("1 day, 4 storages (the park's)", 96, 4),
                        ("1 day, 20 storages", 96, 20), ("7 days, 1 storage", 672, 1), ("7 days, 4 storages", 672, 4)):
        cold, warm, _ = solve_times(n, s)
        print(f"  {label:<32} cold {cold * 1000:7.0f} ms   warm {warm * 1000:6.0f} ms   "
              f"(warm {cold / warm:4.1f}x faster; target < 1000 ms: {'met' if warm < 1 else 'MISSED'})")
    res = latency()
    verified = [s for _d, st, s in res if st == "verified"]
    print("MPC step on the simulator's Modbus server, trigger to verified read-back: "
          + ", ".join(f"{d} {st} {s * 1000:.0f} ms" for d, st, s in res)
          + f"; worst verified {max(verified) * 1000:.0f} ms (target < 5000 ms: "
          + ("met" if max(verified) < 5 else "MISSED") + ")")
    capture(args.days, args.replan_steps, args.site)


if __name__ == "__main__":
    main()
