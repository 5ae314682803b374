"""Health checks, metrics and the ``/healthz`` and ``/metrics`` endpoints (issue 12, point 4).

Pure verdicts by hand; :func:`check_health` against a real SQLite store that is then made unreachable and
restored, a PostgreSQL URL to a port that refuses and to one that never answers, a real Mosquitto broker stopped
and started; the metrics text parsed line by line and compared with the rows inserted; the handlers through a real
Tornado server on a free port, spoken to over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import tornado.web
import yaml
from conftest import REPO, free_port

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.config import Settings
from anning_lib.ops.health import (
    DISK_MIN_FREE_BYTES,
    Every,
    check_broker,
    check_database,
    check_disk,
    check_health,
    covered_month,
    disk_verdict,
    gateway_verdict,
    overall_status,
    reports_due_at,
    result,
    scheduler_verdict,
    self_monitor,
)
from anning_lib.ops.metrics import (
    CONTENT_TYPE,
    escape_label,
    format_value,
    render_metrics,
)
from anning_lib.portal.ops_handlers import (
    HealthHandler,
    HealthProbe,
    MetricsHandler,
    metrics_allowed,
)
from anning_lib.store import init_db, make_engine, write_measurements
from anning_lib.store.schema import TABLES

UTC = dt.UTC
GiB = 1024**3
NOW = dt.datetime(2026, 11, 10, 4, 0, tzinfo=UTC)          # 12:00 on 10 November in Anning
TZ = "Asia/Shanghai"
RELAXED = {"disk_min_frac": 0.0, "disk_min_bytes": 0}      # the test machine's disk is not under test there


# ================================================================================================ pure verdicts
def ok(detail="x"):
    return result(True, detail)


def bad(detail="x"):
    return result(False, detail)


def test_overall_status():
    assert overall_status({"database": ok(), "gateway": ok(), "disk": ok()}) == "ok"
    assert overall_status({"database": ok(), "gateway": bad(), "disk": ok()}) == "degraded"
    assert overall_status({"database": ok(), "broker": bad(), "scheduler": bad()}) == "degraded"
    assert overall_status({"database": bad(), "gateway": ok(), "disk": ok()}) == "fail"
    assert overall_status({"database": bad(), "gateway": bad()}) == "fail"
    assert overall_status({"gateway": ok()}) == "fail"              # no word about the database: not healthy


def test_result_shape():
    assert result(1, 7, 1.23456) == {"ok": True, "detail": "7", "latency_ms": 1.235}


@pytest.mark.parametrize("free, total, expect", [
    (30 * GiB, 100 * GiB, True),
    (10 * GiB, 100 * GiB, False),               # exactly 10 %: needs more
    (int(10.01 * GiB), 100 * GiB, True),
    (5 * GiB, 1000 * GiB, False),               # 5 GiB but 0.5 %
    (3 * GiB, 20 * GiB, True),                  # 15 % and 3 GiB
    (int(1.5 * GiB), 10 * GiB, False),          # 15 % but below 2 GiB
    (2 * GiB, 4 * GiB, False),                  # exactly 2 GiB: needs more
    (0, 0, False),
])
def test_disk_thresholds(free, total, expect):
    ok_, detail = disk_verdict(free, total)
    assert ok_ is expect
    assert "GiB free of" in detail
    assert ("needs more than 10% and 2.0 GiB" in detail) is (not expect)


def test_disk_thresholds_can_be_set():
    assert disk_verdict(1 * GiB, 100 * GiB, min_frac=0.005, min_bytes=GiB // 2)[0]
    assert not disk_verdict(1 * GiB, 100 * GiB)[0]


def hrow(source, connected=True, age_s=2.0, now=NOW):
    return {"source": source, "connected": connected, "updated_at": now - dt.timedelta(seconds=age_s)}


def test_gateway_verdict():
    assert gateway_verdict([], NOW) == (True, "no gateway configured (no ingest_health rows)")
    assert gateway_verdict([hrow("writer"), hrow("mb")], NOW) == (True, "2 connections up")
    ok_, detail = gateway_verdict([hrow("writer", age_s=61), hrow("mb", age_s=300)], NOW)
    assert not ok_ and detail == "not running: last report 61 s ago"
    ok_, detail = gateway_verdict([hrow("writer"), hrow("mb", connected=False), hrow("ua", connected=False)], NOW)
    assert not ok_ and detail == "2 of 3 connections down: mb, ua"
    ok_, detail = gateway_verdict([hrow("writer"), hrow("mb"), hrow("gone", connected=False, age_s=3600)], NOW)
    assert ok_ and detail == "2 connections up; 1 stale row of old connections ignored"
    assert gateway_verdict([hrow("mb", age_s=60)], NOW)[0]          # 60 s is still fresh
    assert not gateway_verdict([hrow("mb", age_s=60.5)], NOW)[0]


def test_reports_due_at_is_the_first_at_six_local():
    due = reports_due_at(NOW, TZ)
    assert due == pd.Timestamp("2026-11-01 06:00", tz=TZ)
    # 31 Oct 23:00 UTC is already 1 Nov 07:00 in Anning
    assert reports_due_at(dt.datetime(2026, 10, 31, 23, 0, tzinfo=UTC), TZ) == pd.Timestamp("2026-11-01 06:00", tz=TZ)


def test_scheduler_verdict():
    missing = [("monthly-statement", "E01"), ("monthly-statement", "E02"), ("park-monthly", None)]
    assert scheduler_verdict(NOW, TZ, "2026-10", [], "2026-10") == (True, "reports of 2026-10 done")
    ok_, detail = scheduler_verdict(NOW, TZ, "2026-10", missing, "2026-10")
    assert not ok_
    assert detail == ("missed: 3 reports of 2026-10 not done by 2026-11-01 06:00 local "
                      "(monthly-statement x2, park-monthly x1)")
    # 1 Nov 05:59 local: not missed yet; 06:00: missed
    before = pd.Timestamp("2026-11-01 05:59", tz=TZ).tz_convert("UTC").to_pydatetime()
    at = pd.Timestamp("2026-11-01 06:00", tz=TZ).tz_convert("UTC").to_pydatetime()
    assert scheduler_verdict(before, TZ, "2026-10", missing, "2026-10") == (
        True, "3 reports of 2026-10 due by 2026-11-01 06:00 local")
    assert not scheduler_verdict(at, TZ, "2026-10", missing, "2026-10")[0]
    # a month the store does not cover whole is skipped by the schedule, so it is not missed
    assert scheduler_verdict(NOW, TZ, "2026-10", missing, "2026-09") == (
        True, "reports of 2026-10 not due: the store covers whole months up to 2026-09")
    assert scheduler_verdict(NOW, TZ, "2026-10", missing, None)[0]


def test_covered_month():
    def t(s):
        return pd.Timestamp(s, tz=TZ)

    assert covered_month(t("2026-10-01 00:00"), t("2026-11-09 12:00")) == "2026-10"
    assert covered_month(t("2026-10-01 00:10"), t("2026-11-09 12:00")) == "2026-10"     # same day counts
    assert covered_month(t("2026-10-02 00:00"), t("2026-11-09 12:00")) is None
    assert covered_month(t("2026-09-01"), t("2026-10-31 23:45")) == "2026-10"          # last quarter-hour in
    assert covered_month(t("2026-09-01"), t("2026-10-31 23:30")) == "2026-09"
    assert covered_month(t("2026-09-15"), t("2026-10-31 23:30")) is None


def test_every_throttles():
    e = Every(60)
    assert e.due(1000.0)
    assert not e.due(1030.0)
    assert not e.due(1059.9)
    assert e.due(1060.0)
    assert Every(0).due(1.0) and Every(0).due(1.0)


def test_metric_text_escaping():
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert [format_value(v) for v in (3, 2.0, 0.25, True, False, float("nan"), float("inf"), -float("inf"))] == \
        ["3", "2", "0.25", "1", "0", "NaN", "+Inf", "-Inf"]


def test_metrics_access_rule():
    admin, operator = Actor(1, "admin", None, "root"), Actor(2, "operator", None, "ops")
    assert metrics_allowed("127.0.0.1", {}, None)
    assert metrics_allowed("::1", {}, None)
    assert metrics_allowed("127.0.0.53", {}, None)
    assert not metrics_allowed("10.1.2.3", {}, None)
    assert not metrics_allowed("192.168.0.7", {}, operator)
    assert metrics_allowed("192.168.0.7", {}, admin)
    assert not metrics_allowed("", {}, None)
    assert not metrics_allowed("not-an-ip", {}, None)
    # a reverse proxy on the same host relays from loopback: its headers make the request non-local
    assert not metrics_allowed("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, None)
    assert not metrics_allowed("127.0.0.1", {"X-Real-Ip": "203.0.113.9"}, operator)
    assert not metrics_allowed("127.0.0.1", {"Forwarded": "for=203.0.113.9"}, None)
    assert metrics_allowed("127.0.0.1", {"X-Forwarded-For": "203.0.113.9"}, admin)


# ================================================================================================ store helpers
def settings_for(tmp_path: Path, ingest_dir: Path | None = None) -> Settings:
    empty = tmp_path / "no-ingest"
    empty.mkdir(exist_ok=True)
    return Settings(var_dir=tmp_path / "var", ingest_dir=ingest_dir or empty)


def put_health(engine, rows: list[dict]) -> None:
    h = TABLES["ingest_health"]
    with engine.begin() as conn:
        conn.execute(sa.delete(h))
        conn.execute(sa.insert(h), rows)


def health_row(source, protocol, *, connected=True, updated_at=NOW, n_samples=0, n_bad=0, n_errors=0, lag_s=None):
    return {"source": source, "protocol": protocol, "connected": connected, "last_seen": updated_at,
            "n_samples": n_samples, "n_bad": n_bad, "n_errors": n_errors, "last_error": "", "lag_s": lag_s,
            "updated_at": updated_at}


def put_runs(engine, runs: list[tuple[str, str | None, str, str]]) -> None:
    """``(kind, enterprise, month, status)`` rows of ``report_run``."""
    from anning_lib.carbon.records import month_bounds

    r = TABLES["report_run"]
    with engine.begin() as conn:
        for kind, eid, month, status in runs:
            start, end = month_bounds(month, TZ)
            conn.execute(sa.insert(r).values(kind=kind, enterprise_id=eid, period_start=start.to_pydatetime(),
                                             period_end=end.to_pydatetime(), status=status, started_at=NOW))


# ================================================================================================ check_health
def test_healthy_store(db, tiny_park, tmp_path):
    put_health(db, [health_row("writer", "store"), health_row("mb", "modbus", updated_at=NOW - dt.timedelta(seconds=4))])
    h = check_health(db, settings_for(tmp_path), now=NOW, park=tiny_park, **RELAXED)
    assert h["status"] == "ok", h
    assert set(h["checks"]) == {"database", "gateway", "broker", "scheduler", "disk"}
    for c in h["checks"].values():
        assert set(c) == {"ok", "detail", "latency_ms"} and c["ok"] and c["latency_ms"] >= 0
    assert h["checks"]["database"]["detail"].startswith("answering; schema ")
    assert h["checks"]["gateway"]["detail"] == "2 connections up"
    assert h["checks"]["broker"]["detail"] == "not configured"
    assert h["time"] == "2026-11-10T04:00:00+00:00"
    json.dumps(h)                                                    # serialisable as it is

    put_health(db, [health_row("writer", "store"), health_row("mb", "modbus", connected=False)])
    h = check_health(db, settings_for(tmp_path), now=NOW, park=tiny_park, **RELAXED)
    assert h["status"] == "degraded" and h["checks"]["gateway"]["detail"] == "1 of 2 connections down: mb"
    h = check_health(db, settings_for(tmp_path), now=NOW + dt.timedelta(minutes=5), park=tiny_park, **RELAXED)
    assert h["status"] == "degraded" and h["checks"]["gateway"]["detail"] == "not running: last report 300 s ago"


def test_scheduler_check_on_the_store(db, tiny_park, tmp_path):
    """Measurements cover October whole; its reports not done on 10 November: missed; done: ok."""
    from anning_lib.carbon.records import last_complete_month
    from anning_lib.reports.schedule import missing_runs

    write_measurements(db, pd.DataFrame({
        "tag": ["G0.p_kw", "E01-M0.p_kw", "E01-M0.p_kw"],
        "ts": pd.to_datetime(["2026-09-30 16:00", "2026-10-15 00:00", "2026-11-10 03:45"], utc=True),
        "value": [1.0, 2.0, 3.0]}))
    assert last_complete_month(db, TZ) == "2026-10"                 # the check's fast range agrees with it
    s = settings_for(tmp_path)
    h = check_health(db, s, now=NOW, park=tiny_park, **RELAXED)
    sched = h["checks"]["scheduler"]
    assert h["status"] == "degraded" and not sched["ok"]
    assert sched["detail"].startswith("missed: ") and "reports of 2026-10" in sched["detail"]
    todo = missing_runs(db, tiny_park, "2026-10")
    put_runs(db, [(k, e, "2026-10", "failed") for k, e in todo])     # failed runs do not count
    assert not check_health(db, s, now=NOW, park=tiny_park, **RELAXED)["checks"]["scheduler"]["ok"]
    put_runs(db, [(k, e, "2026-10", "done") for k, e in todo])
    h = check_health(db, s, now=NOW, park=tiny_park, **RELAXED)
    assert h["status"] == "ok" and h["checks"]["scheduler"]["detail"] == "reports of 2026-10 done"


def test_database_unreachable_then_restored(tiny_park, tmp_path):
    """The store's folder disappears (an unmounted volume): fail within seconds, healthy again once it is back."""
    home = tmp_path / "store"
    engine = make_engine(f"sqlite:///{home / 'anning.sqlite'}")
    init_db(engine, tiny_park)
    s = settings_for(tmp_path)
    assert check_health(engine, s, now=NOW, park=tiny_park, **RELAXED)["status"] == "ok"
    engine.dispose()                                   # pooled connections would keep the old file open
    home.rename(tmp_path / "store-away")
    try:
        t0 = time.monotonic()
        h = check_health(engine, s, now=NOW, park=tiny_park, **RELAXED)
        assert time.monotonic() - t0 < 5
        assert h["status"] == "fail"
        assert h["checks"]["database"] == {**h["checks"]["database"], "ok": False,
                                           "detail": "unreachable (OperationalError)"}
        assert h["checks"]["gateway"]["detail"] == h["checks"]["scheduler"]["detail"] == \
            "skipped: database unreachable"
        assert str(tmp_path) not in json.dumps(h)
    finally:
        (tmp_path / "store-away").rename(home)
    assert check_health(engine, s, now=NOW, park=tiny_park, **RELAXED)["status"] == "ok"
    engine.dispose()


def test_empty_database_file_is_not_healthy(tmp_path):
    """A deleted database file comes back empty on the next connect (SQLite creates it): no schema, fail."""
    engine = make_engine(f"sqlite:///{tmp_path / 'new.sqlite'}")
    c = check_database(engine)
    assert not c["ok"] and c["detail"] == "no schema (alembic_version missing or empty)"
    engine.dispose()


def test_postgresql_refused_and_silent(tmp_path):
    """A server that refuses fails at once; one that accepts TCP and never answers fails at the timeout, and the
    hung probe is not started again while it hangs."""
    refused = make_engine(f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/anning")
    t0 = time.monotonic()
    c = check_database(refused, timeout_s=5)
    assert time.monotonic() - t0 < 5 and not c["ok"] and c["detail"] == "unreachable (OperationalError)"
    refused.dispose()

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                                   # the kernel completes the handshake; nobody ever answers
    engine = make_engine(f"postgresql://u:secret-pw@127.0.0.1:{silent.getsockname()[1]}/anning")
    try:
        t0 = time.monotonic()
        c = check_database(engine, timeout_s=1.0)
        assert 0.9 < time.monotonic() - t0 < 3
        assert c == {**c, "ok": False, "detail": "no answer within 1 s"}
        n_probes = sum(t.name == "anning-db-probe" for t in threading.enumerate())
        assert not check_database(engine, timeout_s=0.3)["ok"]
        assert sum(t.name == "anning-db-probe" for t in threading.enumerate()) == n_probes
        h = check_health(engine, settings_for(tmp_path), now=NOW, broker=False, db_timeout_s=0.5, **RELAXED)
        assert h["status"] == "fail" and "secret-pw" not in json.dumps(h)
    finally:
        silent.close()
        engine.dispose()


def test_disk_check_reads_the_var_folder(tmp_path):
    usage = shutil.disk_usage(tmp_path)
    c = check_disk(tmp_path / "var" / "not-made-yet")          # the nearest existing parent
    expect = usage.free / usage.total > 0.10 and usage.free > DISK_MIN_FREE_BYTES
    assert c["ok"] is expect and "GiB free of" in c["detail"]
    assert not check_disk(tmp_path, min_frac=0.0, min_bytes=usage.total)["ok"]


# ================================================================================================ MQTT broker
def test_broker_check_against_mosquitto(broker, db, tiny_park, tmp_path):
    """The broker of ``ingest/mqtt.yaml`` (the demo's map with the test broker's port): up, stopped, started."""
    raw = yaml.safe_load((REPO / "ingest" / "mqtt.yaml").read_text(encoding="utf-8"))
    raw["connections"][0]["port"] = broker.port
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    (ingest / "mqtt.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    s = settings_for(tmp_path, ingest)

    h = check_health(db, s, now=NOW, park=tiny_park, **RELAXED)
    assert h["checks"]["broker"] == {**h["checks"]["broker"], "ok": True, "detail": "park-broker: reachable"}
    assert h["status"] == "ok"
    broker.stop()
    h = check_health(db, s, now=NOW, park=tiny_park, **RELAXED)
    assert h["status"] == "degraded"
    assert h["checks"]["broker"]["detail"] == "park-broker: unreachable (ConnectionRefusedError)"
    assert str(broker.port) not in json.dumps(h)                   # no addresses in the public report
    broker.start()
    assert check_health(db, s, now=NOW, park=tiny_park, **RELAXED)["checks"]["broker"]["ok"]
    # an explicit (host, port) instead of the map
    assert check_broker([("mqtt", "127.0.0.1", broker.port)])["ok"]
    assert check_health(db, s, now=NOW, park=tiny_park, broker=("127.0.0.1", broker.port),
                        **RELAXED)["checks"]["broker"]["detail"] == "mqtt: reachable"


def test_broken_point_map_is_reported(db, tiny_park, tmp_path):
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    (ingest / "mqtt.yaml").write_text("protocol: mqtt\nconnections: [{name: x, port: 99999}]\n")
    h = check_health(db, settings_for(tmp_path, ingest), now=NOW, park=tiny_park, **RELAXED)
    assert h["checks"]["broker"] == {**h["checks"]["broker"], "ok": False,
                                     "detail": "ingest/mqtt.yaml unreadable (PointMapError)"}


# ================================================================================================ self-monitoring
def open_alarms(engine) -> dict[str, str]:
    a = TABLES["alarm"]
    with engine.connect() as conn:
        return {r.rule_id: r.state for r in conn.execute(sa.select(a.c.rule_id, a.c.state)
                                                         .where(a.c.rule_id.like("ops.%")).order_by(a.c.id))}


def test_self_monitor_raises_and_clears(db):
    health = {"status": "degraded", "checks": {
        "database": ok(), "gateway": bad("not running: last report 300 s ago"), "broker": bad(),
        "scheduler": bad("missed: 3 reports of 2026-10 not done"), "disk": bad("1.0 GiB free of 100.0 GiB (1.0%)")}}
    assert sorted(self_monitor(db, health)) == [("ops.disk", "raise"), ("ops.gateway_lag", "raise"),
                                                ("ops.scheduler_missed", "raise")]
    assert open_alarms(db) == {"ops.disk": "active_unack", "ops.gateway_lag": "active_unack",
                               "ops.scheduler_missed": "active_unack"}
    a = TABLES["alarm"]
    with db.connect() as conn:
        row = conn.execute(sa.select(a).where(a.c.rule_id == "ops.disk")).one()
    assert row.severity == "high" and row.kind == "system" and row.target == "var_dir"
    assert row.message == "disk space low: 1.0 GiB free of 100.0 GiB (1.0%)"
    assert self_monitor(db, health) == []                            # no duplicate while active
    health["checks"].update(disk=ok(), scheduler=ok())
    assert sorted(self_monitor(db, health)) == [("ops.disk", "clear"), ("ops.scheduler_missed", "clear")]
    assert open_alarms(db)["ops.disk"] == "cleared_unack"
    # database down: nothing is tried; skipped checks neither raise nor clear
    assert self_monitor(db, {"checks": {"database": bad(), "disk": bad()}}) == []
    assert self_monitor(db, {"checks": {"database": ok(), "gateway": bad("skipped: database unreachable")}}) == []
    assert open_alarms(db)["ops.gateway_lag"] == "active_unack"


def test_self_monitor_from_a_real_check(db, tiny_park, tmp_path):
    """A disk threshold above the machine's disk: the real check fails and raises ``ops.disk``."""
    h = check_health(db, settings_for(tmp_path), now=NOW, park=tiny_park, disk_min_frac=0.0, disk_min_bytes=2**62)
    assert h["status"] == "degraded" and not h["checks"]["disk"]["ok"]
    assert self_monitor(db, h) == [("ops.disk", "raise")]
    assert open_alarms(db) == {"ops.disk": "active_unack"}


# ================================================================================================ metrics
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.eE+-]+|NaN|[+-]Inf)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> tuple[dict, dict]:
    """``({(name, frozenset(labels)): value}, {name: type})``; asserts the 0.0.4 grammar line by line and that
    every sample's family has HELP and TYPE before it."""
    assert text.endswith("\n")
    samples, types, helps = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge") and name not in types
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name = m.group(1)
        assert name in types and name in helps, f"{name} has no HELP/TYPE before it"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        assert (name, labels) not in samples, f"duplicate sample {line!r}"
        samples[name, labels] = float(m.group(3))
    return samples, types


def test_metrics_match_the_rows(db):
    from anning_lib.quality.alarms import clear_event, raise_event

    put_health(db, [health_row("writer", "store", n_samples=1200, updated_at=NOW - dt.timedelta(seconds=3)),
                    health_row("park-broker", "mqtt", n_samples=1000, n_bad=7, n_errors=2, lag_s=0.25),
                    health_row('odd "name"', "modbus", connected=False, n_errors=5)])
    write_measurements(db, pd.DataFrame({"tag": ["G0.p_kw", "G0.p_kw", "E02-M0.p_kw"],
                                         "ts": pd.to_datetime(["2026-11-10 03:00:00", "2026-11-10 03:58:30",
                                                               "2026-11-10 03:10:00"], utc=True),
                                         "value": [1.0, 2.0, 3.0]}))
    put_runs(db, [("monthly-statement", "E01", "2026-10", "done"), ("monthly-statement", "E02", "2026-10", "done"),
                  ("monthly-statement", "E01", "2026-09", "done"), ("monthly-statement", "E02", "2026-09", "failed"),
                  ("park-monthly", None, "2026-10", "queued"), ("park-monthly", None, "2026-09", "running")])
    for i in range(3):
        raise_event(db, "test.x", f"t{i}", "m", severity="high")
    raise_event(db, "test.y", "t", "m", severity="critical")
    clear_event(db, "test.x", "t0")

    text = render_metrics(db, now=NOW)
    samples, types = parse_metrics(text)
    def L(**kw):
        return frozenset(kw.items())

    assert samples["anning_database_up", L()] == 1
    assert types["anning_ingest_samples_total"] == "counter" and types["anning_ingest_lag_seconds"] == "gauge"
    assert samples["anning_ingest_samples_total", L(source="park-broker", protocol="mqtt")] == 1000
    assert samples["anning_ingest_samples_total", L(source="writer", protocol="store")] == 1200
    assert samples["anning_ingest_bad_samples_total", L(source="park-broker", protocol="mqtt")] == 7
    assert samples["anning_ingest_errors_total", L(source='odd \\"name\\"', protocol="modbus")] == 5
    assert samples["anning_ingest_connected", L(source='odd \\"name\\"', protocol="modbus")] == 0
    assert samples["anning_ingest_lag_seconds", L(source="park-broker", protocol="mqtt")] == 0.25
    assert ("anning_ingest_lag_seconds", L(source="writer", protocol="store")) not in samples    # no lag known
    assert samples["anning_ingest_health_age_seconds", L(source="writer", protocol="store")] == 3
    assert samples["anning_measurement_newest_age_seconds", L()] == 90
    assert types["anning_report_runs_total"] == "counter"
    assert samples["anning_report_runs_total", L(kind="monthly-statement", status="done")] == 3
    assert samples["anning_report_runs_total", L(kind="monthly-statement", status="failed")] == 1
    assert samples["anning_report_runs_pending", L(kind="park-monthly", status="queued")] == 1
    assert samples["anning_report_runs_pending", L(kind="park-monthly", status="running")] == 1
    assert {sev: samples["anning_alarms_active", L(severity=sev)] for sev in ("critical", "high", "medium", "low")} \
        == {"critical": 1, "high": 2, "medium": 0, "low": 0}
    assert samples["process_resident_memory_bytes", L()] > 10e6
    assert not any(n == "anning_portal_sessions" for n, _l in samples)    # no Panel server in this process

    try:                                 # an independent parser, where installed (jupyter brings it)
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["anning_ingest_samples"].type == "counter"
    assert sum(s.value for s in fams["anning_ingest_samples"].samples) == 2200
    assert {s.labels["source"] for s in fams["anning_ingest_errors"].samples} == {"writer", "park-broker",
                                                                                 'odd "name"'}


def test_metrics_with_the_database_down(tiny_park, tmp_path):
    home = tmp_path / "store"
    engine = make_engine(f"sqlite:///{home / 'anning.sqlite'}")
    init_db(engine, tiny_park)
    engine.dispose()
    home.rename(tmp_path / "away")
    samples, _types = parse_metrics(render_metrics(engine, now=NOW))
    assert samples["anning_database_up", frozenset()] == 0
    assert ("process_resident_memory_bytes", frozenset()) in samples
    (tmp_path / "away").rename(home)
    engine.dispose()


# ================================================================================================ the endpoints over HTTP
SECRET = "test-cookie-secret-0123456789"


class Server:
    """A Tornado application on a free port, served by an asyncio loop in a background thread."""

    def __init__(self, routes, address: str = "127.0.0.1"):
        self.port, self._ready = free_port(), threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(routes, address),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self, routes, address):
        self.loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = tornado.web.Application(routes, cookie_secret=SECRET).listen(self.port, address=address)
        self._ready.set()
        await self._stop.wait()
        server.stop()

    def stop(self):
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def http(url: str, headers: dict | None = None, method: str = "GET") -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@pytest.fixture
def sqlite_store(tiny_park, tmp_path):
    home = tmp_path / "store"
    engine = make_engine(f"sqlite:///{home / 'anning.sqlite'}")
    init_db(engine, tiny_park)
    yield engine, home
    engine.dispose()


def test_healthz_and_metrics_over_http(sqlite_store, tiny_park, tmp_path):
    engine, home = sqlite_store
    probe = HealthProbe(engine, settings_for(tmp_path), cache_s=0, monitor_s=None, park=tiny_park, **RELAXED)
    srv = Server([(r"/healthz", HealthHandler, {"engine": engine, "probe": probe}),
                  (r"/metrics", MetricsHandler, {"engine": engine})])
    base = f"http://127.0.0.1:{srv.port}"
    try:
        status, body, headers = http(base + "/healthz")
        assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
        report = json.loads(body)
        assert report["status"] == "ok" and report["checks"]["database"]["ok"]
        assert str(tmp_path) not in body.decode()
        assert http(base + "/healthz", method="HEAD")[:2] == (200, b"")

        status, body, headers = http(base + "/metrics")
        assert status == 200 and headers["Content-Type"] == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
        assert parse_metrics(body.decode())[0]["anning_database_up", frozenset()] == 1
        assert http(base + "/metrics", {"X-Forwarded-For": "203.0.113.9"})[0] == 403

        engine.dispose()
        home.rename(tmp_path / "away")                 # the database goes
        try:
            t0 = time.monotonic()
            status, body, _h = http(base + "/healthz")
            assert status == 503 and time.monotonic() - t0 < 5
            assert json.loads(body)["status"] == "fail"
            assert http(base + "/healthz", method="HEAD")[0] == 503
            assert parse_metrics(http(base + "/metrics")[1].decode())[0]["anning_database_up", frozenset()] == 0
        finally:
            (tmp_path / "away").rename(home)           # and comes back
        status, body, _h = http(base + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        srv.stop()


def test_degraded_answers_200_and_raises_its_alarm_once_a_minute(sqlite_store, tiny_park, tmp_path):
    engine, _home = sqlite_store
    probe = HealthProbe(engine, settings_for(tmp_path), cache_s=0, park=tiny_park, disk_min_frac=0.0,
                        disk_min_bytes=2**62)          # self-monitoring at the default pace (once a minute)
    srv = Server([(r"/healthz", HealthHandler, {"engine": engine, "probe": probe})])
    try:
        status, body, _h = http(f"http://127.0.0.1:{srv.port}/healthz")
        assert status == 200 and json.loads(body)["status"] == "degraded"
        assert open_alarms(engine) == {"ops.disk": "active_unack"}
        from anning_lib.quality.alarms import clear_event

        clear_event(engine, "ops.disk", "var_dir")     # an operator's fix that did not last
        status, _b, _h = http(f"http://127.0.0.1:{srv.port}/healthz")
        assert status == 200
        assert open_alarms(engine) == {"ops.disk": "cleared_unack"}     # not re-raised within the minute
    finally:
        srv.stop()


def test_health_reports_are_shared_for_a_few_seconds(sqlite_store, tiny_park, tmp_path):
    engine, _home = sqlite_store
    probe = HealthProbe(engine, settings_for(tmp_path), cache_s=60, monitor_s=None, park=tiny_park, **RELAXED)
    first = probe.report()
    put_health(engine, [health_row("mb", "modbus", connected=False, updated_at=dt.datetime.now(UTC))])
    assert probe.report() is first
    probe.cache_s = 0
    assert probe.report()["checks"]["gateway"]["detail"] == "1 of 1 connections down: mb"


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (a UDP connect sends nothing), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_metrics_from_the_network_need_an_admin(sqlite_store, tmp_path):
    """The server listens on every address; a request to the machine's network address comes from it (not
    loopback): 403 without a session and for an operator, 200 for an admin."""
    from anning_lib.auth.users import add_user

    ip = non_loopback_address()
    if ip is None:
        pytest.skip("this machine has no non-loopback address")
    engine, _home = sqlite_store
    add_user(engine, SYSTEM, "root1", "admin-pass-0001", "admin")
    add_user(engine, SYSTEM, "ops1", "operator-pass-01", "operator")
    srv = Server([(r"/metrics", MetricsHandler, {"engine": engine})], address="")

    def cookie(user: str) -> dict:
        return {"Cookie": "user=" + tornado.web.create_signed_value(SECRET, "user", user).decode()}

    try:
        url = f"http://{ip}:{srv.port}/metrics"
        assert http(url)[0] == 403
        assert http(url, cookie("ops1"))[0] == 403
        assert http(url, {"Cookie": "user=forged"})[0] == 403
        status, body, headers = http(url, cookie("root1"))
        assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
        assert b"anning_database_up 1" in body
        assert http(f"http://127.0.0.1:{srv.port}/metrics")[0] == 200
    finally:
        srv.stop()
