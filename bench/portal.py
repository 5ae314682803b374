"""Benchmark of the portal: 50 users, time to a fully drawn page, server CPU, memory and processes.

Store: the Anning park on SQLite (the embedded default) with simulated 15-minute history from the first day of the
previous month to today and the previous month's carbon accounts computed, as a park in service has them (the
enterprise page opens on the current month, read from the meters; the previous one is a click away).
Server: ``anning serve`` in a subprocess (:mod:`tests.portal_harness`), with 1 and with 2 processes (Tornado fork).

Users: 50, each its own browser context (own cookies and HTTP cache) with one tab in one headless Chromium (Debian's,
driven by Playwright), logged in and resting on the portal's log-in page; half open the park overview (visitor and
operator), half an enterprise page (users of E01 and E02), by navigating that tab, and go back to the log-in page
after each scenario (which ends their sessions). Tabs are opened beforehand: Chromium needs seconds per new tab
under load, which is the user's computer's business, not the portal's.
**Returning users**: before anything is measured every context has fetched the JavaScript and CSS its page loads
(the URLs read from real loads of each page, fetched from the log-in tab, so no server session is made), so
the portal's script (and, for the Panel page, Bokeh's and Panel's 3 MB) come from the context's HTTP cache, as for
someone who opened the portal yesterday. The same port serves every run, so the cached URLs are the ones measured. On loopback
this saves bytes, not time: Chromium still parses and runs the scripts. ``--cold`` measures first visits.

"Fully drawn": for the overview and the enterprise page, rendered by the server as HTML with SVG charts (decision
38), the header is there and the document has loaded (``readyState`` complete: the page, its script and every chart);
for a Panel page, every Bokeh document on it reports ``is_idle`` (all its views, charts included, rendered).
Measured from the navigation's start; a page not drawn within :data:`DEADLINE_S` counts as failed (and its scenario
misses the target).

Scenarios (each on a freshly started server):

- **browser floor (a0)**, once: the 50 tabs navigate to the log-in page (:data:`FLOOR_PATH`, a 2 kB document with
  no data) in the same instant. It measures what this Chromium needs for any page at all on these cores; no page
  of the portal can be drawn faster in a burst;

and for each process count:

- **alone** (the baseline of the same run): one user at a time, 3 loads of each page, median; beside them a Panel
  page (:data:`PANEL_PAGE`) timed the same way, what every page cost before decision 38;
- **(a) burst**: all 50 navigations started in the same instant;
- **(b) ramp**: the 50 users arrive at 2 per second (25 s) and stay, so every big screen opened earlier keeps
  fetching its refresh every 5 s while later ones load; then 10 s more with all 50 open (the steady load);
- **(a') and (b') server only**: the same without a browser. Each user is a few lines of Python that GET the page
  (for the two server-rendered pages that is the whole page; for a Panel page it also pulls the document over the
  page's web socket as Bokeh's client does, ``PULL-DOC-REQ``). This is the server's share of the wait, what users
  with their own computers would see before their browser draws.

Printed: p50, p95 and max time to drawn (server only: to the page received); the server's CPU seconds per page
opened and, in the steady state, per open page and minute; the browser's CPU seconds per page; the server's resident
memory (parent and forked children, psutil) and its processes.

The browser shares the 2 cores with the server. On a real park each user's browser is on their own computer; here
Chromium runs at ``nice`` 10 (``--browser-nice``) so that its renderer processes cannot starve the server's
process, as they do at equal priority. The browser figures stay pessimistic: one Chromium (one browser process for
50 users) needs 0.1-0.3 CPU seconds per navigation even for the log-in page, so a burst of 50 takes it several
seconds on these cores whatever the server does; the floor (a0) prints how many. Target (issue 8): p95 under 3 s.

``--dashboards DIR`` serves the page scripts of another folder (:func:`anning_lib.portal.server.make_server`), to
compare a changed copy against the repository's in the same conditions.

Run: ``make bench`` or ``.venv/bin/python bench/portal.py [--sessions 50] [--procs 1 2] [--rate 2] [--cold]
[--dashboards DIR] [--browser-nice 10]`` (about 5 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from portal_harness import CHROMIUM, FLAGS, REPO, USERS, Portal, seed_store  # noqa: E402

DRAWN_JS = """() => document.body !== null && (document.body.dataset.rendered === 'server'
  ? document.readyState === 'complete'
  : window.Bokeh !== undefined && Bokeh.documents !== undefined && Bokeh.documents.length > 0
    && Bokeh.documents.every(d => d.is_idle))"""
VIEWPORT = {"width": 1440, "height": 900}
DEADLINE_S = 15.0
"""A page not fully drawn this long after its navigation started counts as failed [s]."""
WARM_JS = "async (urls) => { await Promise.all(urls.map(u => fetch(u).then(r => r.arrayBuffer()))); }"
SERVE = """import sys
from pathlib import Path
from anning_lib.config import get_settings
from anning_lib.portal.server import make_server
s = make_server(get_settings().database_url, port=int(sys.argv[2]), num_procs=int(sys.argv[3]),
                dashboards=Path(sys.argv[1]))
s.start()
s.io_loop.start()
"""
STEADY_S = 10.0
"""How long the steady state with every ramp page open is watched [s]."""


# ------------------------------------------------------------------------------------------------ store
def history_days(tz: str = "Asia/Shanghai") -> int:
    """Days of history from the first day of the previous month to today (the enterprise page's default month)."""
    import pandas as pd

    today = pd.Timestamp.now(tz=tz).tz_localize(None).normalize()
    first = (today.to_period("M") - 1).start_time
    return int((today - first).days) + 1


def seed(var: Path, days: int) -> tuple[str, str]:
    """The harness's store with ``days`` of history and the previous month accounted; (URL, that month)."""
    import pandas as pd

    from anning_lib.carbon.compute import compute_park
    from anning_lib.carbon.factors import load_factor_set
    from anning_lib.carbon.records import sync_factors
    from anning_lib.park import load_park
    from anning_lib.store.engine import make_engine

    url = seed_store(var, days=days, statements=False)
    park = load_park()
    tz = park.meta.site.timezone
    month = str(pd.Timestamp.now(tz=tz).tz_localize(None).to_period("M") - 1)
    engine, fs = make_engine(url), load_factor_set()
    sync_factors(engine, fs)
    compute_park(engine, park, fs, month, region="yunnan", residual="location", tz=tz)
    engine.dispose()
    return url, month


# ------------------------------------------------------------------------------------------------ processes
def server_procs(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


def cpu_s(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of the processes (0 for one that has exited)."""
    total = 0.0
    for p in procs:
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mb(procs: list[psutil.Process]) -> float:
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 1e6


def browser_procs() -> list[psutil.Process]:
    """Chromium's processes (children of Playwright's driver, a child of this process)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "chrom" in p.name().lower():
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


class Meter:
    """CPU seconds of the server and of the browser between :meth:`start` and :meth:`read`."""

    def __init__(self, server: list[psutil.Process]):
        self.server = server

    def start(self) -> Meter:
        self.t0, self.s0, self.b0 = time.perf_counter(), cpu_s(self.server), self._browser()
        return self

    def _browser(self) -> float:
        self.bprocs = browser_procs()   # renderers come and go with pages: re-listed at every reading
        return cpu_s(self.bprocs)

    def read(self) -> tuple[float, float, float]:
        """(wall, server CPU, browser CPU) seconds since :meth:`start` (browser: processes alive now)."""
        return time.perf_counter() - self.t0, cpu_s(self.server) - self.s0, max(0.0, self._browser() - self.b0)


class DashboardsPortal(Portal):
    """:class:`Portal` serving the page scripts of another folder (``make_server(dashboards=...)``)."""

    dashboards: Path | None = None

    def start(self, timeout_s: float = 60) -> Portal:
        if self.dashboards is None:
            return super().start(timeout_s)
        import subprocess
        import urllib.request

        env = os.environ | {"ANNING_DB_URL": self.url, "ANNING_VAR_DIR": str(self.var_dir)} | self.env
        log = open(self.var_dir / "portal.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-c", SERVE, str(self.dashboards), str(self.port),
                                      str(self.num_procs)], env=env, stdout=log, stderr=log, cwd=REPO)
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portal exited: {(self.var_dir / 'portal.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/login", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("portal did not start")


def start(url: str, var: Path, port: int, procs: int, dashboards: Path | None) -> Portal:
    portal = DashboardsPortal(url, var, port, num_procs=procs, env={"ANNING_REPORT_SCHEDULE": "false"})
    portal.dashboards = dashboards
    return portal.start()


def stop(portal: Portal) -> None:
    """Stop the server and any forked child left behind (Tornado's children outlive a terminated parent)."""
    try:
        kids = psutil.Process(portal.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    portal.stop()
    for k in kids:
        try:
            k.terminate()
            k.wait(10)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            k.kill()


# ------------------------------------------------------------------------------------------------ browser
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


FAILURES: dict[str, int] = {}


FLOOR_PATH = "/login?floor=1"
"""The browser's floor: the log-in page, a 2 kB HTML document with no data, no chart and no script."""


async def navigate(tab, url: str) -> float | None:
    """Navigate an open tab to ``url``: seconds from the navigation's start to fully drawn, or None if not drawn
    within :data:`DEADLINE_S`."""
    async def drawn():
        await tab.goto(url, timeout=0)
        if url.endswith(FLOOR_PATH):              # the log-in page is drawn when loaded
            return
        await tab.wait_for_selector("nav.anning-header", timeout=0)
        await tab.wait_for_function(DRAWN_JS, timeout=0, polling=50)
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(drawn(), DEADLINE_S)
    except Exception as err:        # not drawn in time, or a page error: a failure, not a figure
        why = "not drawn in time" if isinstance(err, asyncio.TimeoutError) else type(err).__name__
        FAILURES[why] = FAILURES.get(why, 0) + 1
        return None
    return time.perf_counter() - t0


async def leave(tabs, base: str) -> None:
    """Back to the log-in page (ends the Bokeh sessions: their web sockets close)."""
    await asyncio.gather(*(t.goto(base + "/login", timeout=DEADLINE_S * 1000) for t in tabs), return_exceptions=True)


async def assets_of(tab, base: str, path: str) -> list[str]:
    """The JavaScript and CSS files two loads of ``path`` fetched, in order (a server's first page may differ)."""
    urls: list[str] = []
    for _ in range(2):
        await navigate(tab, base + path)
        urls += await tab.evaluate("""() => performance.getEntriesByType('resource').map(e => e.name)
            .filter(u => (u.includes('/static/') || u.includes('/assets/')) && (u.includes('.js') || u.includes('.css')))""")
        await leave([tab], base)
    return list(dict.fromkeys(urls))


async def load_once(tab, base: str, path: str) -> float | None:
    dt = await navigate(tab, base + path)
    await leave([tab], base)
    return dt


async def pull_doc(base: str, path: str, cookie: str):
    """Browser-free user: GET the page, open its web socket and pull the document (Bokeh's protocol); (seconds to
    the whole document, or None after :data:`DEADLINE_S`; the open socket or None)."""
    import json
    import re

    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    async def pull():
        client = AsyncHTTPClient(force_instance=True, max_clients=1)
        page = await client.fetch(base + path, headers={"Cookie": cookie}, request_timeout=0)
        client.close()
        token = re.search(r'"token":\s*"([^"]+)"', page.body.decode())
        if token is None:                         # a server-rendered page: the answer is the whole page
            return None
        token = token.group(1)
        ws = await websocket_connect(HTTPRequest(base.replace("http", "ws", 1) + path + "/ws",
                                                 headers={"Cookie": cookie}), subprotocols=["bokeh", token])
        async def until(msgtype: str) -> None:       # frames up to the end of the next message of that type
            while True:
                frame = await ws.read_message()
                if frame is None:
                    raise ConnectionError("web socket closed")
                if isinstance(frame, str) and f'"{msgtype}"' in frame[:200]:
                    for _ in range(2 + 2 * json.loads(frame).get("num_buffers", 0)):   # metadata, content, buffers
                        await ws.read_message()
                    return
        await until("ACK")                        # the server is ready for requests (as Bokeh's client waits)
        for frame in (json.dumps({"msgid": "bench-1", "msgtype": "PULL-DOC-REQ"}), "{}", "{}"):
            await ws.write_message(frame)
        await until("PULL-DOC-REPLY")
        return ws
    t0 = time.perf_counter()
    try:
        ws = await asyncio.wait_for(pull(), DEADLINE_S)
    except Exception as err:
        why = "not drawn in time" if isinstance(err, asyncio.TimeoutError) else type(err).__name__
        FAILURES[why] = FAILURES.get(why, 0) + 1
        return None, None
    return time.perf_counter() - t0, ws


async def drain(ws) -> None:
    """Keep reading an open socket (the page's refreshes) until it closes."""
    while ws is not None and await ws.read_message() is not None:
        pass


async def server_only(plan, cookies: dict, base: str, server, rate: float | None) -> dict:
    """Burst (``rate`` None) or ramp of browser-free users (sockets open until all are served)."""
    m = Meter(server).start()

    async def arrive(i, user, path):
        if rate:
            await asyncio.sleep(i / rate)
        return await pull_doc(base, path, cookies[user])

    res = await asyncio.gather(*(arrive(i, u, p) for i, (u, p) in enumerate(plan)))
    wall, s_cpu, _b = m.read()
    readers = [asyncio.ensure_future(drain(ws)) for _dt, ws in res]
    mem = rss_mb(server)
    for _dt, ws in res:
        if ws is not None:
            ws.close()
    await asyncio.gather(*readers, return_exceptions=True)
    return {**quantiles([dt for dt, _ws in res]), "wall": wall, "server_cpu": s_cpu, "rss": mem}


def plan_of(sessions: int) -> list[tuple[str, str]]:
    """(user, path) of each session: half overview (visitor, operator), half enterprise (E01, E02)."""
    return [("visitor" if i % 4 == 0 else "operator", "/overview") if i % 2 == 0
            else ("ent-e01" if i % 4 == 1 else "ent-e02", "/enterprise") for i in range(sessions)]


# ------------------------------------------------------------------------------------------------ scenarios
def quantiles(times: list[float]) -> dict:
    ok = sorted(t for t in times if t is not None)
    if not ok:
        return {"n": 0, "failed": len(times)}
    q = statistics.quantiles(ok, n=20, method="inclusive") if len(ok) > 1 else [ok[0]] * 19
    return {"n": len(ok), "failed": len(times) - len(ok), "p50": statistics.median(ok), "p95": q[18], "max": ok[-1]}


PANEL_PAGE = "/alarms"
"""A Panel (Bokeh) page timed alone beside the two measured ones, by an operator: the same run's baseline of what a
page costs that starts BokehJS and Panel in the browser and a Bokeh session on the server (decision 38)."""


async def _timed(tab, base: str, path: str, server, reps: int, warm: int) -> tuple[float, float]:
    """(median seconds to drawn, server CPU seconds per load) of ``reps`` loads after ``warm`` unmeasured ones."""
    for _ in range(warm):
        await load_once(tab, base, path)
    m = Meter(server).start()
    ts = [t for t in [await load_once(tab, base, path) for _ in range(reps)] if t is not None]
    return (statistics.median(ts) if ts else float("nan")), (m.read()[1] / reps if reps else float("nan"))


async def alone(tabs, plan, base: str, server, reps: int = 3, warm: int = 1) -> dict:
    """Median time to drawn of each page, one user at a time, after ``warm`` loads of each (the server's first
    sessions import the plotting libraries); ``cpu``: the server's CPU seconds per measured load; the same for
    :data:`PANEL_PAGE` (``panel``, ``panel_cpu``)."""
    out, cpu = {}, []
    for path in ("/overview", "/enterprise"):
        tab = next(t for t, (_u, p) in zip(tabs, plan) if p == path)
        out[path], c = await _timed(tab, base, path, server, reps, warm)
        cpu.append(c)
    out["cpu"] = statistics.mean(cpu)
    operator = next(t for t, (u, _p) in zip(tabs, plan) if u == "operator")
    out["panel"], out["panel_cpu"] = await _timed(operator, base, PANEL_PAGE, server, reps, warm)
    return out


async def burst(tabs, plan, base: str, server, path: str | None = None) -> dict:
    """Every tab navigates to its page of ``plan`` (or to ``path``) at the same instant."""
    m = Meter(server).start()
    times = await asyncio.gather(*(navigate(t, base + (path or p)) for t, (_u, p) in zip(tabs, plan)))
    wall, s_cpu, b_cpu = m.read()
    mem = rss_mb(server)
    await leave(tabs, base)
    return {**quantiles(times), "wall": wall, "server_cpu": s_cpu, "browser_cpu": b_cpu, "rss": mem}


async def ramp(tabs, plan, base: str, server, rate: float) -> dict:
    m = Meter(server).start()

    async def arrive(i, tab, path):
        await asyncio.sleep(i / rate)
        return await navigate(tab, base + path)

    times = await asyncio.gather(*(arrive(i, t, p) for i, (t, (_u, p)) in enumerate(zip(tabs, plan))))
    wall, s_cpu, b_cpu = m.read()
    steady = Meter(server).start()
    await asyncio.sleep(STEADY_S)
    st_wall, st_server, st_browser = steady.read()
    mem = rss_mb(server)
    await leave(tabs, base)
    return {**quantiles(times), "wall": wall, "server_cpu": s_cpu, "browser_cpu": b_cpu, "rss": mem,
            "steady_server": st_server / st_wall, "steady_browser": st_browser / st_wall}


# ------------------------------------------------------------------------------------------------ main
def fmt_q(r: dict) -> str:
    if not r.get("n"):
        return f"all {r['failed']} failed"
    fail = f", {r['failed']} FAILED" if r["failed"] else ""
    return f"p50 {r['p50']:5.2f} s  p95 {r['p95']:5.2f} s  max {r['max']:5.2f} s{fail}"


async def bench(url: str, var: Path, args) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    plan = plan_of(args.sessions)
    n = args.sessions
    async with async_playwright() as pw:
        exe = CHROMIUM
        if args.browser_nice:             # the browser below the server: it stands in for 50 users' own computers
            exe = str(var / "chromium-niced")
            Path(exe).write_text(f'#!/bin/sh\nexec nice -n {args.browser_nice} {CHROMIUM} "$@"\n')
            os.chmod(exe, 0o755)
        browser = await pw.chromium.launch(executable_path=exe, args=FLAGS)
        portal = start(url, var, port, 1, args.dashboards)
        try:
            base = portal.base
            states = {u: await login_state(browser, base, u) for u in {u for u, _p in plan}}
            cookies = {u: "; ".join(f"{c['name']}={c['value']}" for c in st["cookies"]) for u, st in states.items()}
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(8)

            async def tab_of(user):                 # one open tab per user, on the portal's log-in page
                async with sem:
                    tab = await (await browser.new_context(storage_state=states[user], viewport=VIEWPORT)).new_page()
                    await tab.goto(base + "/login")
                    return tab
            tabs = await asyncio.gather(*(tab_of(u) for u, _p in plan))
            if not args.cold:                       # returning users: the page's scripts and CSS in the cache
                paths = sorted({p for _u, p in plan})
                assets = {p: await assets_of(tabs[[q for _u, q in plan].index(p)], base, p) for p in paths}
                await asyncio.gather(*(t.evaluate(WARM_JS, assets[p]) for t, (_u, p) in zip(tabs, plan)))
            print(f"  {n} users' tabs opened{'' if args.cold else ' and caches filled'} in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        finally:
            stop(portal)

        print(f"  {'':26s} {'time to fully drawn':45s} {'server CPU':>17s} {'browser CPU':>12s} {'server RSS':>11s}",
              flush=True)
        verdicts = []
        if "burst" in args.scenarios:             # the same run's floor: what the browser needs for any page
            portal = start(url, var, port, 1, args.dashboards)
            try:
                f = await burst(tabs, plan, portal.base, server_procs(portal.proc.pid), FLOOR_PATH)
                what = f"(a0) burst, {n} log-in pages"
                print(f"  browser floor: {what:24s} {fmt_q(f):45s} {f['server_cpu'] / n:6.2f} s/page "
                      f"{f['browser_cpu'] / n:6.2f} s/page  (no page drawn by this browser in a burst of {n} "
                      "can beat this)", flush=True)
            finally:
                stop(portal)
        for procs in args.procs:
            portal = start(url, var, port, procs, args.dashboards)
            try:
                server = server_procs(portal.proc.pid)
                mem0 = rss_mb(server)
                base_t = await alone(tabs, plan, portal.base, server, warm=procs)
                label = f"{procs} process{'es' if procs > 1 else ''}" + (" (+ parent)" if len(server) > procs else "")
                print(f"  {label}: alone, one user at a time: overview {base_t['/overview']:.2f} s, "
                      f"enterprise {base_t['/enterprise']:.2f} s, server CPU {base_t['cpu']:.3f} s/page | baseline "
                      f"Panel page {PANEL_PAGE} {base_t['panel']:.2f} s, {base_t['panel_cpu']:.2f} s/page | "
                      f"server RSS {mem0:.0f} MB before", flush=True)
                if "burst" in args.scenarios:
                    b = await burst(tabs, plan, portal.base, server)
                    verdicts.append((procs, "burst", b))
                    what = f"(a) burst, {n} at once"
                    print(f"    {what:24s} {fmt_q(b):45s} {b['server_cpu'] / n:6.2f} s/page "
                          f"{b['browser_cpu'] / n:6.2f} s/page {b['rss']:6.0f} MB  (over in {b['wall']:.0f} s)",
                          flush=True)
            finally:
                stop(portal)
            if "ramp" in args.scenarios:
                portal = start(url, var, port, procs, args.dashboards)     # a fresh server: no burst sessions
                try:
                    server = server_procs(portal.proc.pid)
                    await alone(tabs, plan, portal.base, server, reps=0, warm=procs)   # first sessions: imports
                    r = await ramp(tabs, plan, portal.base, server, args.rate)
                    verdicts.append((procs, "ramp", r))
                    what = f"(b) ramp, {args.rate:g}/s, stay open"
                    print(f"    {what:24s} {fmt_q(r):45s} {r['server_cpu'] / n:6.2f} s/page "
                          f"{r['browser_cpu'] / n:6.2f} s/page {r['rss']:6.0f} MB", flush=True)
                    print(f"        then {n} pages open ({STEADY_S:.0f} s): server {100 * r['steady_server']:.0f} % of "
                          f"a core ({60 * r['steady_server'] / n:.2f} CPU s per open page and minute), browser "
                          f"{100 * r['steady_browser']:.0f} %", flush=True)
                finally:
                    stop(portal)
            for name, rate in (("burst", None), ("ramp", args.rate)):
                if not args.server_only or name not in args.scenarios:
                    continue
                portal = start(url, var, port, procs, args.dashboards)
                try:
                    server = server_procs(portal.proc.pid)
                    for path in ("/overview", "/enterprise"):     # the server's first sessions (imports)
                        for _ in range(procs):
                            await pull_doc(portal.base, path, cookies[next(u for u, p in plan if p == path)])
                    r = await server_only(plan, cookies, portal.base, server, rate)
                    verdicts.append((procs, f"{name} server only", r))
                    what = "(a') burst" if rate is None else "(b') ramp"
                    print(f"    {what + ', server only':24s} {fmt_q(r):45s} {r['server_cpu'] / n:6.2f} s/page "
                          f"{'':14s} {r['rss']:6.0f} MB", flush=True)
                finally:
                    stop(portal)
        await browser.close()
    said = [f"{p} proc. {name}: {'meets' if r.get('n') and not r['failed'] and r['p95'] < 3.0 else 'MISSES'}"
            for p, name, r in verdicts]
    print("  target p95 < 3 s: " + "; ".join(said) + f" (load average {os.getloadavg()[0]:.1f} at the end)",
          flush=True)
    if FAILURES:
        print("  failed pages: " + ", ".join(f"{k} ({DEADLINE_S:.0f} s): {v}" if k == "not drawn in time" else
                                           f"{k}: {v}" for k, v in FAILURES.items()), flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rate", type=float, default=2.0, help="ramp: users arriving per second")
    ap.add_argument("--days", type=int, default=None, help="days of history (default: from the previous month)")
    ap.add_argument("--cold", action="store_true", help="first visits: no warm-up of the browser contexts")
    ap.add_argument("--dashboards", type=Path, default=None, help="serve the page scripts of this folder")
    ap.add_argument("--scenarios", nargs="+", choices=["burst", "ramp"], default=["burst", "ramp"])
    ap.add_argument("--browser-nice", type=int, default=10,
                    help="run Chromium at this nice level (0: same priority as the server)")
    ap.add_argument("--no-server-only", dest="server_only", action="store_false",
                    help="skip the browser-free runs of the scenarios")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        var = Path(tmp)
        days = args.days or history_days()
        url, month = seed(var, days)
        load1 = os.getloadavg()[0]
        where = f"; dashboards from {args.dashboards}" if args.dashboards else ""
        print(f"portal benchmark: {args.sessions} users (half overview, half enterprise page, {month} accounted), "
              f"{days} days of history, SQLite; {'first visits' if args.cold else 'returning users (warm cache)'}; "
              f"{psutil.cpu_count()} cores, load average {load1:.1f} before start; store seeded in "
              f"{time.perf_counter() - t0:.0f} s{where}", flush=True)
        asyncio.run(bench(url, var, args))
    print(f"  total {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
