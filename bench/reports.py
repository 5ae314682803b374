"""Benchmark of report production: the month's statements of every enterprise of the park, as PDF.

Store: SQLite with one simulated month (October 2026, 15-minute means of the park's 184 points) and the demo's
entered activity data; the month's carbon accounts computed and stored first (as ``anning demo`` and the monthly
job find them). Measured:

* (a) wall time of ``run_many`` for the 13 statements, one after another, as the schedule and
  ``anning report run monthly-statement --enterprise all`` produce them, and per statement;
* (b) the same with one run per core at a time (``--jobs``);
* where one statement's time goes: papermill (kernel start, imports, the data cells), nbconvert to HTML,
  WeasyPrint to PDF;
* baseline in the same run: the same statement's data and HTML computed in this process
  (``statement_data`` and the section renderers), without a kernel and without printing: what papermill and
  PDF printing add on top of the work itself.

Run: ``make bench`` or ``.venv/bin/python bench/reports.py [--enterprises N]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anning_lib.carbon.compute import compute_park  # noqa: E402
from anning_lib.carbon.factors import load_factor_set  # noqa: E402
from anning_lib.config import Settings  # noqa: E402
from anning_lib.park import load_park  # noqa: E402
from anning_lib.sim import ParkSimulator, to_long  # noqa: E402
from anning_lib.sim.activity import write_demo_activity  # noqa: E402
from anning_lib.store import init_db, make_engine, write_measurements  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MONTH = "2026-10"


def seed(path: Path):
    engine, park = make_engine(f"sqlite:///{path}"), load_park()
    init_db(engine, park)
    for frame in ParkSimulator(park, 20261125, REPO / "data").run(date(2026, 10, 1), date(2026, 11, 1), "15min"):
        write_measurements(engine, to_long(frame))
    write_demo_activity(engine, park, REPO / "data", MONTH)
    compute_park(engine, park, load_factor_set(), MONTH)
    return engine, park


def stages(engine, settings: Settings, eid: str, work: Path) -> dict[str, float]:
    """One statement's stages, timed apart [s]."""
    import papermill

    from anning_lib.reports.pdf import notebook_body, page_html, write_pdf

    out = {}
    t0 = time.perf_counter()
    nb = papermill.execute_notebook(str(REPO / "reports" / "monthly_statement.ipynb"), str(work / "s.ipynb"),
                                    parameters={"db_url": str(engine.url), "enterprise_id": eid, "month": MONTH},
                                    kernel_name="python3", progress_bar=False, cwd=str(work))
    out["papermill"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = page_html(notebook_body(nb), "statement")
    out["nbconvert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_pdf(page, work / "s.pdf")
    out["weasyprint"] = time.perf_counter() - t0
    return out


def in_process(engine, park, eid: str) -> float:
    """The baseline: the statement's data and HTML sections in this process [s]."""
    from anning_lib.reports import statement_html as sections
    from anning_lib.reports.statement import statement_data

    t0 = time.perf_counter()
    d = statement_data(engine, park, eid, MONTH)
    html = "".join(s(d, "zh_CN") for s in sections.SECTIONS)
    assert "<table" in html
    return time.perf_counter() - t0


def main() -> None:
    from anning_lib.reports.runner import run_many

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--enterprises", type=int, default=None, help="the first N enterprises (default all)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        engine, park = seed(tmp / "store.sqlite")
        ids = [e.id for e in park.enterprises][: args.enterprises]
        print(f"report benchmark: {len(ids)} monthly statements of {MONTH}, SQLite, one simulated month; "
              f"{os.cpu_count()} cores; store seeded in {time.perf_counter() - t0:.0f} s", flush=True)
        in_process(engine, park, ids[0])                       # warm: imports, factor files
        base = statistics.median(in_process(engine, park, ids[0]) for _ in range(3))
        work = tmp / "stages"
        work.mkdir()
        st = stages(engine, Settings(var_dir=tmp / "var"), ids[0], work)
        print(f"  one statement ({ids[0]}): papermill {st['papermill']:.2f} s, nbconvert {st['nbconvert']:.2f} s, "
              f"WeasyPrint {st['weasyprint']:.2f} s = {sum(st.values()):.2f} s | baseline in process (data + HTML): "
              f"{base:.2f} s", flush=True)
        settings = Settings(var_dir=tmp / "var", report_retry_s=0, report_attempts=1)
        t0 = time.perf_counter()
        rows = run_many(engine, "monthly-statement", MONTH, ids, settings=settings)
        wall = time.perf_counter() - t0
        done = sum(r["status"] == "done" for r in rows)
        size = sum(Path(r["output_path"]).stat().st_size for r in rows if r["output_path"]) / max(done, 1)
        print(f"  (a) {len(ids)} statements one after another: {wall:.1f} s wall, {wall / len(ids):.2f} s each, "
              f"{done} done, PDF {size / 1024:.0f} KiB each | {wall / len(ids) / base:.1f}x the in-process baseline",
              flush=True)
        jobs = os.cpu_count() or 1
        t0 = time.perf_counter()
        rows = run_many(engine, "monthly-statement", MONTH, ids, settings=settings, jobs=jobs)
        par = time.perf_counter() - t0
        print(f"  (b) the same with {jobs} at a time (--jobs {jobs}): {par:.1f} s wall, "
              f"{sum(r['status'] == 'done' for r in rows)} done | {wall / par:.2f}x faster than (a)", flush=True)
        engine.dispose()


if __name__ == "__main__":
    main()
