"""Benchmark of scenario simulation: one year of the whole park, base case and scenario.

The scenario is ``data/scenarios/park_pv_10mw.yaml`` (10 MWp more PV behind the 110 kV meter) on a simulated
year (2025, seed 1, 365 days plus 7 days of warm-up, 15-minute steps, 13 enterprises, 4 storages). Measured:

* (a) the history: the park simulator's year (what ``history.source: simulated`` costs);
* (b) the run: base case and scenario, each with the MPC replayed on forecasts (``dispatch.mode: forecast``,
  one plan a day per storage), bills month by month and the carbon engine;
* (c) with ``--replan-4h``: the same run with the MPC replanning every 4 hours (6 plans a day; about 4x (b));
* baseline in the same run: the same two cases with the storages idle (``mode: none``): what everything but the
  dispatch costs, so (b) − baseline is the optimiser's share.

Also printed: plans solved, the process's peak memory, and the headline result so a change in the numbers shows.

Run: ``make bench`` or ``.venv/bin/python bench/scenario.py [--days N] [--replan-4h]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.park import load_park  # noqa: E402
from anning_lib.scenario.engine import run_scenario, to_record  # noqa: E402
from anning_lib.scenario.history import simulated_history  # noqa: E402
from anning_lib.scenario.spec import read_scenario  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--replan-4h", action="store_true", help="also (c): the MPC replanning every 4 h (~4x slower)")
    args = ap.parse_args()
    park = load_park()
    sc = read_scenario(DATA / "scenarios" / "park_pv_10mw.yaml", park, DATA)
    sc = sc.model_copy(update={"history": sc.history.model_copy(update={"days": args.days})})
    (wide, start), t_hist = timed(lambda: simulated_history(park, sc.history, DATA))
    print(f"scenario benchmark: {sc.name}; {args.days} days + {sc.history.warmup_days} warm-up, "
          f"{wide.shape[1]} series x {len(wide):,d} quarter-hours")
    print(f"  (a) simulated history:            {t_hist:8.1f} s")
    runs = {}
    variants = [("baseline: storages idle", "none", 24.0), ("(b) MPC, one plan a day", "forecast", 24.0)]
    if args.replan_4h:
        variants.append(("(c) MPC, a plan every 4 h", "forecast", 4.0))
    for label, mode, replan in variants:
        s = sc.model_copy(update={"dispatch": sc.dispatch.model_copy(update={"mode": mode, "replan_h": replan})})
        r, t = timed(lambda s=s: run_scenario(s, park, wide, start, DATA))
        runs[label] = (to_record(r), t)
        sites = {s_["site"] for s_ in r.base.summary["storage"]} | {s_["site"] for s_ in r.case.summary["storage"]}
        plans = 0 if mode == "none" else round(r.base.summary["period_days"] * 24 / replan) * len(sites) * 2
        print(f"  {label + ':':<34}{t:8.1f} s  (two cases; {plans:,d} plans solved)")
    base_t = runs["baseline: storages idle"][1]
    for label in [v[0] for v in variants[1:]]:
        print(f"  {label} vs baseline: {runs[label][1] / base_t:5.1f} x; dispatch share "
              f"{runs[label][1] - base_t:,.1f} s")
    rec = runs["(b) MPC, one plan a day"][0]
    c = rec["comparison"]
    print(f"  result (b): saving {c['saving_cny_a'] / 1e4:,.1f} 万元/a, CO2 {c['co2_saving_t_a']:,.0f} t/a, "
          f"payback {c['payback_a'] if c['payback_a'] is None else round(c['payback_a'], 1)} a; "
          f"scope 2 location {rec['comparison']['delta_co2_t']['scope2_location']:,.1f} t over the period")
    print(f"  peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
