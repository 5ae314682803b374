"""Benchmark of alarm evaluation: the CPU cost of the park's alarm rules on a 10,000 points/s stream.

Stream: 60 s at 10,000 samples/s (600,000 samples) over the park's 184 points, values from one simulated day
(interpolated, so meters move as in the demo), in messages of 10 samples as the gateway hands them over. Engine:
every rule of ``data/alarms/rules.yaml`` (682 targets). Measured: the time of ``on_samples`` per sample and of the
1-second ``on_tick``, and the share of one core that a 10,000 points/s stream costs. Baseline in the same run: the
gateway's own per-sample intake check (point lookup and limit check), which every sample already pays.

Run: ``make bench`` or ``.venv/bin/python bench/alarms.py [--seconds 60] [--rate 10000]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.ingest.model import Sample  # noqa: E402
from anning_lib.park import load_park  # noqa: E402
from anning_lib.park.schema import point_tag  # noqa: E402
from anning_lib.quality.engine import AlarmEngine  # noqa: E402
from anning_lib.quality.rules import load_fault_codes, read_rules_file  # noqa: E402
from anning_lib.sim import ParkSimulator  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def stream(seconds: int, rate: int) -> list[list[Sample]]:
    """Messages of 10 samples: each point in turn, values along a simulated day with 0.1 % noise."""
    park = load_park()
    day = next(iter(ParkSimulator(park, 20261125, REPO / "data").run(date(2026, 7, 1), date(2026, 7, 2), "1min")))
    tags = [t for t in day.columns if t in {point_tag(d.id, p.id) for _e, d, p in park.iter_points()}]
    values = day[tags].to_numpy()
    n = seconds * rate
    t0 = 1_782_864_000.0                           # 2026-07-01 00:00 UTC
    idx = np.arange(n)
    tag_i = idx % len(tags)
    t_s = t0 + idx / rate
    row = np.minimum(idx // rate // 60, len(values) - 1)                           # the minute of the day
    noise = np.random.default_rng(1).normal(0.0, 1e-3, n)                          # meters are never exactly flat
    vals = values[row, tag_i] * (1.0 + noise)
    samples = [Sample(tags[k], int(t * 1000), float(v), 0, t) for k, t, v in zip(tag_i, t_s, vals)]
    return [samples[i:i + 10] for i in range(0, n, 10)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="length of the stream [s]")
    ap.add_argument("--rate", type=int, default=10_000, help="samples per second")
    args = ap.parse_args()
    park = load_park()
    rules, problems = read_rules_file(REPO / "data" / "alarms" / "rules.yaml", park)
    msgs = stream(args.seconds, args.rate)
    n = sum(len(m) for m in msgs)
    eng = AlarmEngine(park, rules, load_fault_codes(REPO / "data" / "alarms" / "fault_codes.yaml"),
                      start_s=msgs[0][0].ts_ms / 1000)
    print(f"{len(rules)} rules ({len(problems)} problems) on {eng.n_targets:,d} targets; stream of {n:,d} samples "
          f"= {args.seconds} s at {args.rate:,d} samples/s over {len({s.tag for m in msgs[:100] for s in m})} points")

    from anning_lib.ingest.gateway import Intake

    class _NoWriter:
        """The writer's place: the baseline times the intake check alone, not the database."""

        def submit(self, *_a, **_k):
            return None

    class _Health:
        """A connection's health counters, not needed for the timing."""

        def seen(self, *_a):
            return None

        def bad(self, *_a):
            return None

    intake, health = Intake(park, _NoWriter()), _Health()
    t = time.perf_counter()
    for m in msgs:
        intake(m, health)
    base = time.perf_counter() - t

    raised = 0
    t = time.perf_counter()
    ticks = 0.0
    next_tick = msgs[0][0].ts_ms / 1000 + 1
    for m in msgs:
        raised += len(eng.on_samples(m))
        now = m[-1].ts_ms / 1000
        if now >= next_tick:
            t1 = time.perf_counter()
            raised += len(eng.on_tick(now))
            ticks += time.perf_counter() - t1
            next_tick += 1
    total = time.perf_counter() - t
    per = total / n * 1e6
    print(f"  gateway intake check (baseline): {base / n * 1e6:.2f} us/sample")
    print(f"  alarm evaluation: {per:.2f} us/sample ({(total - ticks) / n * 1e6:.2f} in on_samples, "
          f"{ticks / args.seconds * 1000:.1f} ms per 1 s tick); {per / (base / n * 1e6):.1f}x the intake check")
    print(f"  at {args.rate:,d} samples/s: {per * args.rate / 1e4:.1f} % of one core "
          f"(throughput limit about {1e6 / per:,.0f} samples/s per core); {raised} transitions in the stream")


if __name__ == "__main__":
    main()
