"""A real portal for browser tests and the portal benchmark: a seeded store, ``anning serve`` in a subprocess,
Debian's headless Chromium driven by Playwright (no browser download: ``executable_path=/usr/bin/chromium``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# ARCHITECTURE.md §7: without the background-networking flags Chromium tries Google's hosts at every start
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}

USERS = {  # username: (password, role, enterprise)
    "admin": ("admin-pass-0001", "admin", None),
    "operator": ("operator-pass-01", "operator", None),
    "ent-e01": ("e01-pass-00001", "enterprise", "E01"),
    "ent-e02": ("e02-pass-00002", "enterprise", "E02"),
    "visitor": ("visitor-pass-01", "visitor", None),
}


def seed_store(var_dir: Path, days: int = 3, statements: bool = True) -> str:
    """A SQLite store in ``var_dir`` with the Anning park, ``days`` of simulated history, the users of
    :data:`USERS` and (``statements``) the monthly statements of E01 and E02 for the month so far, produced by the
    report runner into ``var_dir/reports``; returns its URL."""
    import pandas as pd

    from anning_lib.auth.access import SYSTEM
    from anning_lib.auth.users import add_user
    from anning_lib.cli.main import backfill
    from anning_lib.config import Settings
    from anning_lib.park import load_park
    from anning_lib.reports.runner import run_report
    from anning_lib.store.engine import init_db, make_engine

    var_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(var_dir=var_dir, report_retry_s=0)
    url = f"sqlite:///{var_dir / 'anning.sqlite'}"
    engine, park = make_engine(url), load_park()
    init_db(engine, park)
    sim, end = backfill(days, None, "15min", engine=engine, park=park)
    _today_and_carbon(engine, park, sim, end)
    for name, (pw, role, ent) in USERS.items():
        add_user(engine, SYSTEM, name, pw, role, enterprise_id=ent)
    if statements:
        month = str(pd.Timestamp.now(tz=settings.timezone).tz_localize(None).to_period("M"))
        for ent in ("E01", "E02"):           # real statements of the month so far (papermill, WeasyPrint)
            row = run_report(engine, "monthly-statement", month, ent, settings=settings)
            assert row["status"] == "done", row["error"]
    engine.dispose()
    return url


def _today_and_carbon(engine, park, sim, end) -> None:
    """Today's history up to now (as ``anning demo`` stores it) and this month's carbon account to date."""
    import pandas as pd

    from anning_lib.carbon.compute import compute_park
    from anning_lib.carbon.factors import load_factor_set
    from anning_lib.carbon.records import sync_factors
    from anning_lib.config import get_settings
    from anning_lib.sim.activity import write_demo_activity
    from anning_lib.sim.live import LiveValues
    from anning_lib.store.timeseries import refresh_rollups, write_measurements

    settings, now = get_settings(), pd.Timestamp.now(tz="UTC")
    write_measurements(engine, LiveValues(sim, end).history(now, "15min"))
    refresh_rollups(engine, now.floor("D") - pd.Timedelta("1D"), now)
    fs = load_factor_set()
    sync_factors(engine, fs)
    month = str(now.tz_convert(settings.timezone).tz_localize(None).to_period("M"))
    write_demo_activity(engine, park, settings.data_dir, month, settings.timezone, fs)
    compute_park(engine, park, fs, month, tz=settings.timezone)


def checksum_of(url: str, run_id: int) -> str:
    """``report_run.checksum`` of a run."""
    import sqlalchemy as sa

    from anning_lib.store.engine import make_engine
    from anning_lib.store.schema import TABLES

    runs = TABLES["report_run"]
    engine = make_engine(url)
    with engine.connect() as conn:
        out = conn.execute(sa.select(runs.c.checksum).where(runs.c.id == run_id)).scalar_one()
    engine.dispose()
    return out


def statement_ids(url: str) -> dict[str, int]:
    """report_run id of each enterprise's statement."""
    import sqlalchemy as sa

    from anning_lib.store.engine import make_engine
    from anning_lib.store.schema import TABLES

    runs = TABLES["report_run"]
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = {r.enterprise_id: r.id for r in conn.execute(sa.select(runs.c.id, runs.c.enterprise_id).where(
            runs.c.kind == "monthly-statement", runs.c.status == "done"))}
    engine.dispose()
    return ids


@dataclass
class Portal:
    """``anning serve`` on a loopback port, stopped by :meth:`stop`."""

    url: str
    var_dir: Path
    port: int
    num_procs: int = 1
    env: dict = field(default_factory=dict)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        scheme = "https" if self.env.get("ANNING_PORTAL_CERTFILE") else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> Portal:
        env = os.environ | {"ANNING_DB_URL": self.url, "ANNING_VAR_DIR": str(self.var_dir),
                            "ANNING_LOGIN_RATE_PER_MIN": "1000"} | self.env      # the tests log in often
        log = open(self.var_dir / "portal.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "anning_lib.cli.main", "serve", "--port", str(self.port),
                                      "--num-procs", str(self.num_procs)], env=env, stdout=log, stderr=log,
                                     cwd=REPO)
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"portal exited: {(self.var_dir / 'portal.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/login", timeout=2, context=self.ssl_context()) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("portal did not start")

    def ssl_context(self):
        """An SSL context trusting the demo CA next to the certificate (None for HTTP)."""
        import ssl

        cert = self.env.get("ANNING_PORTAL_CERTFILE")
        return ssl.create_default_context(cafile=str(Path(cert).parent / "ca.crt")) if cert else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def require_chromium(module_level: bool = True) -> None:
    """Skip the calling test (module) when Debian's Chromium is missing; fail instead under
    ``ANNING_REQUIRE_BROWSER=1`` (CI), where a skipped browser test would hide a missing install step."""
    import pytest

    if Path(CHROMIUM).exists():
        return
    if os.environ.get("ANNING_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"ANNING_REQUIRE_BROWSER=1 but {CHROMIUM} is missing (make system-deps installs it)")
    pytest.skip(f"{CHROMIUM} missing (Debian package chromium)", allow_module_level=module_level)


def offline_context(browser, base: str, size: dict, outside: list[str]):
    """A browser context of ``size`` where only the portal at ``base`` (and ``data:``/``blob:``) is reachable:
    any other request is aborted and its URL appended to ``outside`` (the park's network has no internet)."""
    ctx = browser.new_context(viewport=size)
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(base)
              or route.request.url.startswith(("data:", "blob:"))
              else (outside.append(route.request.url), route.abort()))
    return ctx


def launch(playwright):
    """Debian's Chromium, headless, with the flags that keep it off the network."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)


def login(page, base: str, username: str, password: str | None = None) -> None:
    """Log in through the form (``password`` default from :data:`USERS`)."""
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password if password is not None else USERS[username][0])
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")


def wait_drawn(page, timeout_ms: float = 30000) -> None:
    """Wait until the page is drawn: the header rendered and no network activity (a Panel page has then received
    and drawn its Bokeh document; a server-rendered one has loaded its script)."""
    page.wait_for_selector("nav.anning-header", timeout=timeout_ms)
    page.wait_for_load_state("networkidle", timeout=timeout_ms)
