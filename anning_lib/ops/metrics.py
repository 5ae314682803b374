"""Metrics for Prometheus (``GET /metrics`` of the portal): the text exposition format 0.0.4, written by hand.

The format (Prometheus documentation, "Exposition formats", text-based format 0.0.4): per metric family one
``# HELP name text`` and one ``# TYPE name counter|gauge`` line, then sample lines ``name{label="value",...} value``;
label values escape ``\\``, ``"`` and newlines; HELP text escapes ``\\`` and newlines; lines end with ``\\n``.
Written here rather than through ``prometheus_client`` (not a dependency of the product; its registry is meant
for counters living in the process, ours are rows of the store).

| metric | type | labels | from |
|---|---|---|---|
| ``anning_database_up`` | gauge | | 1 if the store answered the queries below |
| ``anning_ingest_samples_total`` | counter | source, protocol | ``ingest_health.n_samples`` |
| ``anning_ingest_bad_samples_total`` | counter | source, protocol | ``ingest_health.n_bad`` (rejected inputs) |
| ``anning_ingest_errors_total`` | counter | source, protocol | ``ingest_health.n_errors`` (connection/protocol errors) |
| ``anning_ingest_lag_seconds`` | gauge | source, protocol | ``ingest_health.lag_s`` |
| ``anning_ingest_connected`` | gauge | source, protocol | ``ingest_health.connected`` (1/0) |
| ``anning_ingest_health_age_seconds`` | gauge | source, protocol | now − ``ingest_health.updated_at`` |
| ``anning_measurement_newest_age_seconds`` | gauge | | now − newest ``measurement.ts`` |
| ``anning_report_runs_total`` | counter | kind, status | ``report_run`` rows finished (``done``, ``failed``) |
| ``anning_report_runs_pending`` | gauge | kind, status | ``report_run`` rows ``queued`` or ``running`` |
| ``anning_alarms_active`` | gauge | severity | ``alarm`` rows in an active state |
| ``anning_portal_sessions`` | gauge | | Bokeh sessions of this portal process (only when it runs one) |
| ``process_resident_memory_bytes`` | gauge | | resident set size of this process (Linux) |

The ingest counters are the gateway's own counts since it started: they fall to 0 when it restarts, which
Prometheus' ``rate()`` and ``increase()`` treat as a counter reset. A ``report_run`` row moves from ``queued`` to
``running`` to ``done``/``failed``; only the final statuses are counted (a counter never goes down), the others are
a gauge.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import sys

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SEVERITIES = ("critical", "high", "medium", "low")
"""Alarm severities always exported (0 when none is active)."""
FINAL_STATUSES = ("done", "failed")
ACTIVE_STATES = ("active_unack", "active_ack")


# ================================================================================================ pure: the format
def escape_label(value: object) -> str:
    """A label value escaped for the text format (``\\`` ``"`` newline)."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(v: float | int | bool) -> str:
    """A sample value: integers as integers, ``NaN``, ``+Inf``, ``-Inf``, else Python's shortest float repr."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


class Family:
    """One metric family: name, type, help and its samples ``(labels dict, value)``."""

    def __init__(self, name: str, kind: str, help_text: str):
        if kind not in ("counter", "gauge"):
            raise ValueError(f"kind: counter or gauge, got {kind!r}")
        self.name, self.kind, self.help = name, kind, help_text
        self.samples: list[tuple[dict, float]] = []

    def add(self, value: float | int | bool | None, **labels) -> Family:
        if value is not None:
            self.samples.append((labels, value))
        return self

    def render(self) -> str:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines = [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            lab = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{self.name}{{{lab}}} {format_value(value)}" if lab else
                         f"{self.name} {format_value(value)}")
        return "\n".join(lines) + "\n"


def render(families: list[Family]) -> str:
    """The exposition text of ``families`` (pure)."""
    return "".join(f.render() for f in families)


# ================================================================================================ gathering
def _store_families(engine: Engine, now: dt.datetime) -> list[Family]:
    h, m, p = TABLES["ingest_health"], TABLES["measurement"], TABLES["point"]
    runs, alarm = TABLES["report_run"], TABLES["alarm"]
    samples = Family("anning_ingest_samples_total", "counter", "Samples delivered per gateway connection since "
                     "the gateway started.")
    bad = Family("anning_ingest_bad_samples_total", "counter", "Inputs rejected per gateway connection (unknown "
                 "point, not finite, out of range) since the gateway started.")
    errors = Family("anning_ingest_errors_total", "counter", "Connection and protocol errors per gateway "
                    "connection since the gateway started.")
    lag = Family("anning_ingest_lag_seconds", "gauge", "Receive time minus device timestamp of the latest "
                 "sample per gateway connection.")
    connected = Family("anning_ingest_connected", "gauge", "1 if the gateway connection is up.")
    age = Family("anning_ingest_health_age_seconds", "gauge", "Seconds since the gateway last stored this "
                 "connection's health row.")
    newest = Family("anning_measurement_newest_age_seconds", "gauge", "Seconds since the newest stored "
                    "measurement.")
    done = Family("anning_report_runs_total", "counter", "Report runs finished, by kind and final status.")
    pending = Family("anning_report_runs_pending", "gauge", "Report runs queued or running, by kind and status.")
    active = Family("anning_alarms_active", "gauge", "Active alarms (acknowledged or not), by severity.")
    newest_ts = sa.select(sa.func.max(m.c.ts)).where(m.c.point_id == p.c.id).scalar_subquery()
    with engine.connect() as conn:
        for r in conn.execute(sa.select(h).order_by(h.c.source)):
            lab = {"source": r.source, "protocol": r.protocol}
            samples.add(int(r.n_samples or 0), **lab)
            bad.add(int(r.n_bad or 0), **lab)
            errors.add(int(r.n_errors or 0), **lab)
            lag.add(r.lag_s, **lab)
            connected.add(bool(r.connected), **lab)
            if r.updated_at is not None:
                age.add(max(0.0, (now - r.updated_at).total_seconds()), **lab)
        last = conn.execute(sa.select(sa.func.max(newest_ts)).select_from(p)).scalar()   # per point: index look-ups
        if last is not None:
            newest.add(max(0.0, (now - last).total_seconds()))
        for kind, status, n in conn.execute(sa.select(runs.c.kind, runs.c.status, sa.func.count())
                                            .group_by(runs.c.kind, runs.c.status)
                                            .order_by(runs.c.kind, runs.c.status)):
            (done if status in FINAL_STATUSES else pending).add(int(n), kind=kind, status=status)
        by_sev = dict.fromkeys(SEVERITIES, 0)
        for sev, n in conn.execute(sa.select(alarm.c.severity, sa.func.count())
                                   .where(alarm.c.state.in_(ACTIVE_STATES)).group_by(alarm.c.severity)):
            by_sev[sev] = int(n)
        for sev, n in by_sev.items():
            active.add(n, severity=sev)
    return [samples, bad, errors, lag, connected, age, newest, done, pending, active]


def portal_sessions() -> int | None:
    """Open Bokeh sessions of the Panel servers of this process, or None when Panel serves nothing here (the
    module is not even imported by a process that is not the portal).

    Panel's ``pn.state.session_info["live"]`` counts sessions only with ``pn.config.session_history`` set (by
    default it only ever increases), so the servers' own session lists are counted instead.
    """
    if "panel" not in sys.modules:
        return None
    state = sys.modules["panel"].state
    servers = list(getattr(state, "_servers", {}).values())
    if not servers:
        return None
    n = 0
    for entry in servers:
        server = entry[0]
        try:
            n += len(server.get_sessions())
        except Exception:  # a server not started yet or already stopped
            continue
    return n


def resident_memory_bytes() -> int | None:
    """Resident set size of this process [B] from ``/proc/self/statm`` (None where there is no ``/proc``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def render_metrics(engine: Engine, now: dt.datetime | None = None) -> str:
    """The metrics of the store and this process in the Prometheus text format 0.0.4.

    A store that does not answer gives ``anning_database_up 0`` and the process metrics only (a scrape still
    succeeds, so the outage is visible as a value).
    """
    now = now or dt.datetime.now(dt.UTC)
    up = Family("anning_database_up", "gauge", "1 if the store answered the metrics queries.")
    try:
        families = _store_families(engine, now)
        up.add(1)
    except Exception as err:
        log.warning("metrics: store unavailable: %s", err)
        families = []
        up.add(0)
    out = [up, *families]
    sessions = portal_sessions()
    if sessions is not None:
        out.append(Family("anning_portal_sessions", "gauge", "Open portal (Bokeh) sessions of this process.")
                   .add(sessions))
    rss = resident_memory_bytes()
    if rss is not None:
        out.append(Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.").add(rss))
    return render(out)
