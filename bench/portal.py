"""Benchmark of the portal: 50 concurrent sessions, time to a fully drawn page, server memory and processes.

Store: the Anning park with 7 days of simulated 15-minute history (SQLite, the embedded default). Server:
``anning serve`` in a subprocess, with 1 and with 2 processes (Tornado fork; the machine has 2 cores). Client:
one headless Chromium (Debian's, Playwright) with one browser context per session, logged in beforehand; half the
sessions open the park overview (visitor and operator), half an enterprise page (enterprise users E01..E13).
"Fully drawn": the page's header is rendered and every Bokeh document on it reports ``is_idle`` (all its views,
charts included, rendered), measured from the navigation's start.

Baseline in the same run: one session alone on the same server, so the 50-session figures read as a slowdown.
The browser runs on the same 2 cores as the server, so the figures are pessimistic for a real park (where each
user's browser runs on their own machine). Target (issue 8): p95 under 3 s.

Run: ``make bench`` or ``.venv/bin/python bench/portal.py [--sessions 50] [--procs 1 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from portal_harness import CHROMIUM, FLAGS, USERS, Portal, seed_store  # noqa: E402

DRAWN_JS = """() => window.Bokeh !== undefined && Bokeh.documents !== undefined && Bokeh.documents.length > 0
  && Bokeh.documents.every(d => d.is_idle)"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_memory_mb(pid: int) -> tuple[float, int]:
    """Resident memory of the server and its forked children [MB], and the number of processes."""
    root = psutil.Process(pid)
    procs = [root] + root.children(recursive=True)
    return sum(p.memory_info().rss for p in procs) / 1e6, len(procs)


async def login_state(browser, base: str, username: str) -> dict:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    await page.goto(base + "/login")
    await page.fill("#username", username)
    await page.fill("#password", USERS[username][0])
    await page.click("button[type=submit]")
    await page.wait_for_load_state("domcontentloaded")
    state = await ctx.storage_state()
    await ctx.close()
    return state


async def one_session(browser, base: str, state: dict, path: str) -> float:
    ctx = await browser.new_context(storage_state=state, viewport={"width": 1440, "height": 900})
    page = await ctx.new_page()
    t0 = time.perf_counter()
    await page.goto(base + path)
    await page.wait_for_selector("nav.anning-header", timeout=120000)
    await page.wait_for_function(DRAWN_JS, timeout=120000, polling=50)
    dt = time.perf_counter() - t0
    await ctx.close()
    return dt


async def run(portal: Portal, sessions: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        states = {u: await login_state(browser, portal.base, u) for u in ("visitor", "operator", "ent-e01", "ent-e02")}
        plan = [(states["visitor" if i % 4 == 0 else "operator"], "/overview") if i % 2 == 0
                else (states["ent-e01" if i % 4 == 1 else "ent-e02"], "/enterprise") for i in range(sessions)]
        alone = [await one_session(browser, portal.base, states["operator"], "/overview") for _ in range(3)]
        mem0, nproc = server_memory_mb(portal.proc.pid)
        t0 = time.perf_counter()
        times = await asyncio.gather(*(one_session(browser, portal.base, s, p) for s, p in plan))
        wall = time.perf_counter() - t0
        mem1, nproc = server_memory_mb(portal.proc.pid)
        await browser.close()
    q = statistics.quantiles(times, n=20)
    return {"alone_s": statistics.median(alone), "p50_s": statistics.median(times), "p95_s": q[18],
            "max_s": max(times), "wall_s": wall, "mem_before_mb": mem0, "mem_after_mb": mem1, "procs": nproc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        url = seed_store(var, days=args.days)
        print(f"portal benchmark: {args.sessions} concurrent sessions (half overview, half enterprise page), "
              f"{args.days} days of history, SQLite", flush=True)
        for procs in args.procs:
            portal = Portal(url, var, free_port(), num_procs=procs).start()
            try:
                asyncio.run(run(portal, 2))                          # warm the server's imports and caches
                r = asyncio.run(run(portal, args.sessions))
            finally:
                portal.stop()
            verdict = "meets" if r["p95_s"] < 3.0 else "MISSES"
            print(f"  {procs} server process(es) [{r['procs']} incl. parent]: alone {r['alone_s']:.2f} s | "
                  f"{args.sessions} at once: p50 {r['p50_s']:.2f} s, p95 {r['p95_s']:.2f} s, max {r['max_s']:.2f} s, "
                  f"all drawn in {r['wall_s']:.1f} s | server memory {r['mem_before_mb']:.0f} -> "
                  f"{r['mem_after_mb']:.0f} MB | {verdict} the 3 s p95 target", flush=True)


if __name__ == "__main__":
    main()
