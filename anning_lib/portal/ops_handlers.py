"""The portal's operations endpoints: ``GET /healthz`` (health, no log-in) and ``GET /metrics`` (Prometheus).

- :class:`HealthHandler`: the JSON of :func:`anning_lib.ops.health.check_health`; HTTP 200 when the status is
  ``ok`` or ``degraded``, 503 when ``fail`` (the database does not answer). No log-in (load balancers and
  monitors probe it), so the body holds no secrets, addresses or error texts. The result is shared for
  :data:`HEALTH_CACHE_S` seconds (a flood of probes runs the checks once), and the self-monitoring alarms
  (:func:`anning_lib.ops.health.self_monitor`) are updated from it at most once every :data:`MONITOR_EVERY_S`.
- :class:`MetricsHandler`: :func:`anning_lib.ops.metrics.render_metrics` as ``text/plain; version=0.0.4``, for a
  scraper on the same machine (a direct connection from a loopback address, no proxy header) or a logged-in
  admin; anyone else gets 403. A request relayed by a reverse proxy on the same host arrives from loopback too,
  so any ``X-Forwarded-For``, ``X-Real-IP`` or ``Forwarded`` header makes it a non-local request.

Both run their checks and queries in a worker thread, off the portal's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
import time
import weakref
from pathlib import Path

import tornado.web
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, allowed
from anning_lib.config import Settings, get_settings
from anning_lib.ops.health import Every, check_health, self_monitor
from anning_lib.ops.metrics import CONTENT_TYPE, render_metrics
from anning_lib.portal.web import _Base

log = logging.getLogger(__name__)

HEALTH_CACHE_S = 5.0
"""How long one health report answers every ``/healthz`` request [s]."""
MONITOR_EVERY_S = 60.0
"""Self-monitoring alarms are updated from the health report at most this often [s]."""
PROXY_HEADERS = ("X-Forwarded-For", "X-Real-Ip", "Forwarded")


class HealthProbe:
    """Runs :func:`check_health` for one store at most every ``cache_s`` (concurrent callers share the run) and
    :func:`self_monitor` on the result at most every ``monitor_s`` (None: never)."""

    def __init__(self, engine: Engine, settings: Settings | None = None, *, cache_s: float = HEALTH_CACHE_S,
                 monitor_s: float | None = MONITOR_EVERY_S, **check_kwargs):
        self.engine, self.settings = engine, settings or get_settings()
        self.cache_s, self.check_kwargs = cache_s, check_kwargs
        self.monitor = Every(monitor_s) if monitor_s is not None else None
        self._lock = threading.Lock()
        self._report: dict | None = None
        self._at = 0.0

    def report(self) -> dict:
        """The health report (blocking: call it from a worker thread)."""
        with self._lock:
            if self._report is not None and time.monotonic() - self._at < self.cache_s:
                return self._report
            health = check_health(self.engine, self.settings, **self.check_kwargs)
            self._report, self._at = health, time.monotonic()
        if self.monitor is not None and self.monitor.due():
            try:
                self_monitor(self.engine, health)
            except Exception as err:   # alarms are a side effect: the health answer must still go out
                log.warning("self-monitoring alarms not updated: %s", err)
        return health

    async def report_async(self) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, self.report)


_probes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probes_lock = threading.Lock()


def probe_for(engine: Engine, settings: Settings | None = None, var_dir: Path | None = None) -> HealthProbe:
    """The process-wide :class:`HealthProbe` of ``engine`` (made on first use)."""
    with _probes_lock:
        probe = _probes.get(engine)
        if probe is None:
            settings = settings or get_settings()
            if var_dir is not None:
                settings = settings.model_copy(update={"var_dir": Path(var_dir)})
            probe = _probes[engine] = HealthProbe(engine, settings)
        return probe


def is_local_request(remote_ip: str | None, headers) -> bool:
    """A direct connection from a loopback address (no proxy header) (pure)."""
    if any(headers.get(h) for h in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address((remote_ip or "").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def metrics_allowed(remote_ip: str | None, headers, actor: Actor | None) -> bool:
    """May this request read ``/metrics``? From the machine itself, or an admin's session (pure)."""
    return is_local_request(remote_ip, headers) or (actor is not None and allowed(actor, "page.admin"))


class HealthHandler(tornado.web.RequestHandler):
    """``GET /healthz``: the health report as JSON; 200 (ok, degraded) or 503 (fail). No log-in."""

    def initialize(self, engine: Engine, settings: Settings | None = None, var_dir: Path | None = None,
                   probe: HealthProbe | None = None):
        self.probe = probe or probe_for(engine, settings, var_dir)

    async def _answer(self, body: bool) -> None:
        health = await self.probe.report_async()
        self.set_status(503 if health["status"] == "fail" else 200)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        if body:
            self.write(json.dumps(health, ensure_ascii=False))

    async def get(self):
        await self._answer(body=True)

    async def head(self):
        await self._answer(body=False)


class MetricsHandler(_Base):
    """``GET /metrics``: Prometheus text format 0.0.4, for loopback scrapers and logged-in admins (else 403)."""

    def initialize(self, engine: Engine):
        super().initialize(engine)

    def may_scrape(self) -> bool:
        if is_local_request(self.request.remote_ip, self.request.headers):
            return True
        return metrics_allowed(self.request.remote_ip, self.request.headers, self.current_actor())

    async def get(self):
        if not self.may_scrape():
            raise tornado.web.HTTPError(403)
        text = await asyncio.get_running_loop().run_in_executor(None, render_metrics, self.engine)
        self.set_header("Content-Type", CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.write(text)
