"""Health of a running installation: is the store answering, is the gateway ingesting, is the MQTT broker up, did
the monthly reports run, is there disk left (``GET /healthz`` of the portal, :mod:`anning_lib.portal.ops_handlers`).

Every check returns ``{"ok": bool, "detail": str, "latency_ms": float}``; :func:`check_health` runs them all and
names an overall ``status``:

| status | when |
|---|---|
| ``ok`` | every check ok |
| ``degraded`` | the database answers, another check does not pass |
| ``fail`` | the database does not answer (nothing of the product works without it) |

The verdicts are pure functions (:func:`overall_status`, :func:`disk_verdict`, :func:`gateway_verdict`,
:func:`scheduler_verdict`), unit-tested without I/O; the ``check_*`` functions only gather their inputs.
Details never carry secrets, addresses or error texts (``/healthz`` needs no log-in): connection *names*, counts
and exception class names only; the full error goes to the log.

:func:`self_monitor` turns failed checks into alarms of the system itself (rule ids ``ops.disk``,
``ops.gateway_lag``, ``ops.scheduler_missed``) and clears them when the check passes again.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import shutil
import socket
import threading
import time
import weakref
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.config import Settings, get_settings
from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)

DB_TIMEOUT_S = 3.0
"""Longest wait for the database probe (connect + ``SELECT 1``) before the check fails [s]."""
BROKER_TIMEOUT_S = 2.0
"""Longest wait for the TCP connect to an MQTT broker [s]."""
GATEWAY_STALE_S = 60.0
"""An ``ingest_health`` row not updated for this long is stale (the gateway refreshes them every 5 s) [s]."""
DISK_MIN_FREE_FRAC = 0.10
"""The var folder's file system needs more than this fraction free ..."""
DISK_MIN_FREE_BYTES = 2 * 1024**3
"""... and more than this many bytes free (2 GiB) [B]."""
REPORTS_DUE_HOUR = 6
"""The previous month's reports are missed when not done by the 1st of the month at this local hour (the
schedule runs them at 02:00, :data:`anning_lib.reports.schedule.CRON`; four hours of grace for retries)."""

CHECKS = ("database", "gateway", "broker", "scheduler", "disk")
MONITORED = {  # check -> (alarm rule id, target, severity, text)
    "disk": ("ops.disk", "var_dir", "high", "disk space low"),
    "gateway": ("ops.gateway_lag", "gateway", "high", "ingest gateway not reporting or disconnected"),
    "scheduler": ("ops.scheduler_missed", "monthly-reports", "medium", "monthly reports missed"),
}
"""The checks :func:`self_monitor` raises alarms for."""


# ================================================================================================ pure verdicts
def result(ok: bool, detail: str, latency_ms: float = 0.0) -> dict:
    """One check's result ``{"ok", "detail", "latency_ms"}`` (pure)."""
    return {"ok": bool(ok), "detail": str(detail), "latency_ms": round(float(latency_ms), 3)}


def overall_status(checks: dict[str, dict]) -> str:
    """``fail`` when the database check did not pass, ``degraded`` when any other did not, else ``ok`` (pure).

    A missing ``database`` entry counts as failed (a health report that did not reach the store says nothing
    about it)."""
    if not checks.get("database", {}).get("ok", False):
        return "fail"
    return "ok" if all(c.get("ok", False) for c in checks.values()) else "degraded"


def _gib(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB"


def disk_verdict(free_b: int, total_b: int, *, min_frac: float = DISK_MIN_FREE_FRAC,
                 min_bytes: int = DISK_MIN_FREE_BYTES) -> tuple[bool, str]:
    """Enough disk: more than ``min_frac`` of the file system **and** more than ``min_bytes`` free (pure).

    Parameters
    ----------
    free_b, total_b : int
        bytes available to the product and the file system's size [B].
    """
    frac = free_b / total_b if total_b > 0 else 0.0
    ok = frac > min_frac and free_b > min_bytes
    detail = f"{_gib(free_b)} free of {_gib(total_b)} ({frac:.1%})"
    if not ok:
        detail += f"; needs more than {min_frac:.0%} and {_gib(min_bytes)}"
    return ok, detail


def gateway_verdict(rows: list[dict], now: dt.datetime, stale_s: float = GATEWAY_STALE_S) -> tuple[bool, str]:
    """Are the gateway's connections up? (pure)

    ``rows`` are ``ingest_health`` rows (``source``, ``connected``, ``updated_at`` aware). No rows: no gateway
    has ever run against this store, ok. Rows but none updated in the last ``stale_s``: the gateway is not
    running, not ok. Otherwise ok when every fresh row is connected; rows older than ``stale_s`` beside fresh
    ones are connections no longer configured (a previous point map) and are only counted.
    """
    if not rows:
        return True, "no gateway configured (no ingest_health rows)"
    fresh = [r for r in rows if (now - r["updated_at"]).total_seconds() <= stale_s]
    if not fresh:
        newest = max(r["updated_at"] for r in rows)
        return False, f"not running: last report {(now - newest).total_seconds():.0f} s ago"
    down = sorted(r["source"] for r in fresh if not r["connected"])
    old = len(rows) - len(fresh)
    extra = f"; {old} stale row{'s' if old != 1 else ''} of old connections ignored" if old else ""
    if down:
        return False, f"{len(down)} of {len(fresh)} connections down: {', '.join(down)}{extra}"
    return True, f"{len(fresh)} connections up{extra}"


def reports_due_at(now: dt.datetime, tz: str) -> pd.Timestamp:
    """When the previous month's reports must be done: the 1st of ``now``'s local month at
    :data:`REPORTS_DUE_HOUR` (aware, in ``tz``; pure)."""
    local = pd.Timestamp(now).tz_convert(tz)
    return pd.Timestamp(year=local.year, month=local.month, day=1, hour=REPORTS_DUE_HOUR, tz=tz)


def scheduler_verdict(now: dt.datetime, tz: str, month: str, missing: list[tuple[str, str | None]],
                      covered: str | None) -> tuple[bool, str]:
    """Did the monthly schedule produce ``month``'s reports in time? (pure)

    Parameters
    ----------
    month : str
        the previous local month ``YYYY-MM``.
    missing : list of (kind, enterprise id or None)
        its reports with no ``done`` run (:func:`anning_lib.reports.schedule.missing_runs`).
    covered : str or None
        the latest month the stored measurements cover whole (None: none). The schedule skips a month the
        store does not cover (:func:`anning_lib.reports.schedule.run_due`), so such a month is not missed.
    """
    if not missing:
        return True, f"reports of {month} done"
    due = reports_due_at(now, tz)
    if pd.Timestamp(now) < due:
        return True, f"{len(missing)} reports of {month} due by {due:%Y-%m-%d %H:%M} local"
    if covered is None or covered < month:
        return True, f"reports of {month} not due: the store covers whole months up to {covered or 'none'}"
    kinds: dict[str, int] = {}
    for kind, _eid in missing:
        kinds[kind] = kinds.get(kind, 0) + 1
    what = ", ".join(f"{k} x{n}" for k, n in kinds.items())
    return False, f"missed: {len(missing)} reports of {month} not done by {due:%Y-%m-%d %H:%M} local ({what})"


def covered_month(first: pd.Timestamp, last: pd.Timestamp) -> str | None:
    """The latest local month that ``[first, last]`` (local instants of the stored measurements) covers from its
    first day to its end, or None (pure; the rule of :func:`anning_lib.carbon.records.last_complete_month`)."""
    running = (last + pd.Timedelta("15min")).tz_localize(None).to_period("M")
    month = running - 1
    if month.start_time.tz_localize(first.tz) < first.floor("D"):
        return None
    return str(month)


# ================================================================================================ I/O checks
class _Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    @property
    def ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000.0

    def __exit__(self, *exc):
        return False


_probes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # engine -> Future of the probe in flight
_probes_lock = threading.Lock()


def _probe(engine: Engine) -> str:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).scalar_one()
        try:
            rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DBAPIError:
            rev = None
    if rev is None:
        raise LookupError("no schema (alembic_version missing or empty)")
    return rev


def check_database(engine: Engine, timeout_s: float = DB_TIMEOUT_S) -> dict:
    """``SELECT 1`` and the schema revision, in a worker thread given at most ``timeout_s``.

    A probe that hangs (a database host that accepts TCP but does not answer) is not started again while it
    hangs: later checks report it still waiting, so a dead database does not pile up threads.
    """
    with _Timer() as t:
        with _probes_lock:
            fut = _probes.get(engine)
            if fut is None or fut.done():
                fut = concurrent.futures.Future()
                _probes[engine] = fut

                def run(f=fut):
                    try:
                        f.set_result(_probe(engine))
                    except BaseException as err:  # noqa: BLE001 - handed to the waiting check
                        f.set_exception(err)

                threading.Thread(target=run, name="anning-db-probe", daemon=True).start()
        try:
            rev = fut.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            return result(False, f"no answer within {timeout_s:g} s", t.ms)
        except LookupError as err:
            return result(False, str(err), t.ms)
        except Exception as err:
            log.warning("health: database unreachable: %s", err)
            return result(False, f"unreachable ({type(err).__name__})", t.ms)
    return result(True, f"answering; schema {rev}", t.ms)


def check_gateway(engine: Engine, now: dt.datetime, stale_s: float = GATEWAY_STALE_S) -> dict:
    """:func:`gateway_verdict` of the ``ingest_health`` rows."""
    h = TABLES["ingest_health"]
    with _Timer() as t:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(h.c.source, h.c.connected, h.c.updated_at))]
        ok, detail = gateway_verdict(rows, now, stale_s)
    return result(ok, detail, t.ms)


def broker_targets(settings: Settings) -> list[tuple[str, str, int]]:
    """``(connection name, host, port)`` of every MQTT connection of ``<ingest_dir>/mqtt.yaml`` (empty without
    the file); the map is validated by :func:`anning_lib.ingest.pointmap.parse_pointmap`."""
    import yaml

    from anning_lib.ingest.pointmap import parse_pointmap

    path = Path(settings.ingest_dir) / "mqtt.yaml"
    if not path.is_file():
        return []
    m = parse_pointmap(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))
    return [(c.name, c.host, c.port) for c in m.connections]


def check_broker(targets: list[tuple[str, str, int]], timeout_s: float = BROKER_TIMEOUT_S) -> dict:
    """A TCP connect to each broker (reachable: the listener accepts; TLS and log-in are the gateway's part)."""
    with _Timer() as t:
        if not targets:
            return result(True, "not configured", t.ms)
        bad, parts = [], []
        for name, host, port in targets:
            try:
                with socket.create_connection((host, port), timeout=timeout_s):
                    parts.append(f"{name}: reachable")
            except OSError as err:
                log.warning("health: MQTT broker %s (%s:%s) unreachable: %s", name, host, port, err)
                bad.append(name)
                parts.append(f"{name}: unreachable ({type(err).__name__})")
    return result(not bad, "; ".join(parts), t.ms)


def _measurement_range(engine: Engine, tz: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """First and last stored instant, from each point's newest and oldest row (index look-ups on the primary
    key ``(point_id, ts)``, not a scan of the table)."""
    m, p = TABLES["measurement"], TABLES["point"]
    lo = sa.select(sa.func.min(m.c.ts)).where(m.c.point_id == p.c.id).scalar_subquery()
    hi = sa.select(sa.func.max(m.c.ts)).where(m.c.point_id == p.c.id).scalar_subquery()
    with engine.connect() as conn:
        first, last = conn.execute(sa.select(sa.func.min(lo), sa.func.max(hi)).select_from(p)).one()
    if first is None:
        return None
    return pd.Timestamp(first).tz_convert(tz), pd.Timestamp(last).tz_convert(tz)


_park_cache: dict = {}


def _park_of(settings: Settings):
    """The park model of ``settings`` (re-read when the file changes)."""
    from anning_lib.park import load_park

    path = Path(settings.park_path)
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _park_cache:
        _park_cache.clear()
        _park_cache[key] = load_park(path, settings.data_dir)
    return _park_cache[key]


def check_scheduler(engine: Engine, settings: Settings, now: dt.datetime, park=None) -> dict:
    """:func:`scheduler_verdict` of the previous month's ``report_run`` rows."""
    from anning_lib.reports.schedule import missing_runs, previous_month

    with _Timer() as t:
        park = park if park is not None else _park_of(settings)
        month = previous_month(now, settings.timezone)
        missing = missing_runs(engine, park, month)
        covered = None
        if missing and pd.Timestamp(now) >= reports_due_at(now, settings.timezone):
            rng = _measurement_range(engine, settings.timezone)
            covered = covered_month(*rng) if rng else None
        ok, detail = scheduler_verdict(now, settings.timezone, month, missing, covered)
    return result(ok, detail, t.ms)


def check_disk(path: Path, *, min_frac: float = DISK_MIN_FREE_FRAC, min_bytes: int = DISK_MIN_FREE_BYTES) -> dict:
    """:func:`disk_verdict` of the file system holding ``path`` (its nearest existing parent)."""
    with _Timer() as t:
        p = Path(path).resolve()
        while not p.exists() and p != p.parent:
            p = p.parent
        usage = shutil.disk_usage(p)
        ok, detail = disk_verdict(usage.free, usage.total, min_frac=min_frac, min_bytes=min_bytes)
    return result(ok, detail, t.ms)


def _guarded(name: str, fn, *args, **kwargs) -> dict:
    t0 = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    except Exception as err:
        log.warning("health: check %s failed: %s", name, err, exc_info=True)
        return result(False, f"check failed ({type(err).__name__})", (time.perf_counter() - t0) * 1000.0)


def check_health(engine: Engine, settings: Settings | None = None, *, now: dt.datetime | None = None,
                 broker: tuple[str, int] | bool | None = None, park=None, db_timeout_s: float = DB_TIMEOUT_S,
                 disk_min_frac: float = DISK_MIN_FREE_FRAC, disk_min_bytes: int = DISK_MIN_FREE_BYTES) -> dict:
    """Run every check; returns ``{"status", "time", "checks": {name: {"ok", "detail", "latency_ms"}}}``.

    Parameters
    ----------
    engine : Engine
        the store.
    settings : Settings, optional
        ``var_dir`` (disk), ``ingest_dir`` (the MQTT map), ``park_path`` and ``timezone`` (schedule).
    now : datetime, optional
        aware instant (default: now).
    broker : (host, port) or False, optional
        the MQTT broker to try instead of the ones of ``<ingest_dir>/mqtt.yaml``; ``False`` skips the check.
    park : Park, optional
        the park model (default: read from ``settings.park_path``, cached).

    The gateway and scheduler checks need the database: when it does not answer they are reported as skipped
    (not ok) without being tried.
    """
    settings = settings or get_settings()
    now = now or dt.datetime.now(dt.UTC)
    checks = {"database": _guarded("database", check_database, engine, db_timeout_s)}
    if checks["database"]["ok"]:
        checks["gateway"] = _guarded("gateway", check_gateway, engine, now)
    else:
        checks["gateway"] = result(False, "skipped: database unreachable")
    if broker is False:
        checks["broker"] = result(True, "not checked")
    elif broker is not None:
        checks["broker"] = _guarded("broker", check_broker, [("mqtt", broker[0], int(broker[1]))])
    else:
        try:
            targets = broker_targets(settings)
        except Exception as err:
            log.warning("health: MQTT point map unreadable: %s", err)
            checks["broker"] = result(False, f"ingest/mqtt.yaml unreadable ({type(err).__name__})")
        else:
            checks["broker"] = _guarded("broker", check_broker, targets)
    if checks["database"]["ok"]:
        checks["scheduler"] = _guarded("scheduler", check_scheduler, engine, settings, now, park)
    else:
        checks["scheduler"] = result(False, "skipped: database unreachable")
    checks["disk"] = _guarded("disk", check_disk, settings.var_dir, min_frac=disk_min_frac,
                              min_bytes=disk_min_bytes)
    return {"status": overall_status(checks), "time": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
            "checks": checks}


# ================================================================================================ self-monitoring
def self_monitor(engine: Engine, health: dict, *, now: dt.datetime | None = None) -> list[tuple[str, str]]:
    """Raise or clear the system's own alarms from a :func:`check_health` report; returns ``(rule id,
    "raise" | "clear")`` of what changed.

    ``ops.disk`` (disk check), ``ops.gateway_lag`` (gateway check), ``ops.scheduler_missed`` (scheduler check)
    through :func:`anning_lib.quality.alarms.raise_event` / :func:`~anning_lib.quality.alarms.clear_event`: one
    alarm per rule while the condition lasts, cleared when the check passes. Nothing is done when the database
    is down (the alarm cannot be stored; ``/healthz`` answers 503 and the outside monitor sees that) nor for a
    check that was skipped.
    """
    from anning_lib.quality.alarms import clear_event, raise_event

    checks = health.get("checks", {})
    if not checks.get("database", {}).get("ok", False):
        return []
    changed = []
    for name, (rule, target, severity, text) in MONITORED.items():
        c = checks.get(name)
        if c is None or c["detail"].startswith(("skipped", "check failed")):
            continue
        if c["ok"]:
            aid = clear_event(engine, rule, target, detail={"check": name, "detail": c["detail"]}, now=now)
            action = "clear"
        else:
            aid = raise_event(engine, rule, target, f"{text}: {c['detail']}", severity=severity, kind="system",
                              detail={"check": name, "detail": c["detail"]}, now=now)
            action = "raise"
        if aid is not None:
            changed.append((rule, action))
            log.info("self-monitoring: %s %s (%s)", action, rule, c["detail"])
    return changed


class Every:
    """True at most once per ``interval_s`` (thread-safe): ``if every.due(): ...`` (monotonic clock)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._last: float | None = None
        self._lock = threading.Lock()

    def due(self, t: float | None = None) -> bool:
        t = time.monotonic() if t is None else t
        with self._lock:
            if self._last is not None and t - self._last < self.interval_s:
                return False
            self._last = t
            return True
