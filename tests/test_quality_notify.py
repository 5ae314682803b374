"""Alarm notifications: channels file, rendering, real SMTP (aiosmtpd) and webhook (http.server) deliveries,
retries and failure recording."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from conftest import REPO, free_port

from anning_lib.errors import AlarmRuleError
from anning_lib.quality.notify import (
    Message,
    deliver,
    load_channels,
    parse_channels,
    render,
)
from anning_lib.store.schema import TABLES

T0 = dt.datetime(2026, 11, 25, 6, 30, tzinfo=dt.UTC)
ALARM = {"id": 1, "severity": "high", "kind": "range", "target": "E05-MM.p_kw", "enterprise_id": "E01",
         "device_id": "E01-M0", "message": "5210 kW > 5000 kW", "value": 5210.0, "limit_value": 5000.0,
         "raised_at": T0, "state": "active_unack"}


def smtp_channel(port: int, **kw) -> dict:
    return {"id": "mail", "kind": "smtp", "host": "127.0.0.1", "port": port, "min_severity": "high",
            "sender": "alarms@park.example", "recipients": ["ops@park.example", "boss@park.example"],
            "timeout_s": 5} | kw


def one(raw: dict):
    return parse_channels({"channels": [raw]})


def notifications(engine) -> list[dict]:
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.select(TABLES["notification"]).order_by("id"))]


@pytest.fixture
def store(db):
    """The tiny park's store with one alarm (id 1) for the notification rows to point at."""
    with db.begin() as c:
        c.execute(sa.insert(TABLES["alarm"]).values(id=1, kind="range", severity="high", message="5210 kW > 5000 kW",
                                                    raised_at=T0, device_id="E01-M0", enterprise_id="E01"))
    return db


@pytest.fixture
def smtpd():
    """A real SMTP server (aiosmtpd) on a free loopback port; ``.envelopes`` collects what it received."""
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 Message accepted for delivery"

    handler = Collect()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl, handler
    ctl.stop()


@pytest.fixture
def webhook():
    """A local HTTP server; POSTs to ``/ok`` answer 200, ``/fail`` 500, ``/gone`` 404. Yields (base url, log)."""
    received: list[tuple[str, dict, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), json.loads(body)))
            code = {"/ok": 200, "/fail": 500}.get(self.path.split("?")[0], 404)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            return None          # quiet: the test reads the requests, not the server's log

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_port}", received
    srv.shutdown()
    srv.server_close()
    th.join(5)


# ------------------------------------------------------------------------------------------------ render
def test_render_bilingual_subject_and_body():
    m = render(ALARM)
    assert m.subject == "[HIGH] 告警 E05-MM.p_kw range: 5210 kW > 5000 kW"
    assert (m.severity, m.enterprise_id, m.alarm_id) == ("high", "E01", 1)
    assert "级别 Severity: high" in m.body and "E01" in m.body
    assert "2026-11-25 14:30:00 (Asia/Shanghai)" in m.body          # 06:30 UTC shown in Beijing time
    assert "5210 (限值 limit 5000)" in m.body
    # a message that already names the kind is not prefixed twice; no message: value and limit
    assert render(ALARM | {"message": "range: too high"}).subject == "[HIGH] 告警 E05-MM.p_kw range: too high"
    assert render(ALARM | {"message": ""}).subject == "[HIGH] 告警 E05-MM.p_kw range: 5210 (limit 5000)"
    assert len(render(ALARM | {"message": "x" * 500}).subject) == 200


# ------------------------------------------------------------------------------------------------ SMTP
def test_smtp_delivery_to_a_real_server(store, smtpd):
    ctl, handler = smtpd
    rows = deliver(store, one(smtp_channel(ctl.port)), render(ALARM), sleep=lambda s: None)
    assert len(rows) == 1 and rows[0]["status"] == "sent" and rows[0]["attempts"] == 1
    [env] = handler.envelopes
    assert env.rcpt_tos == ["ops@park.example", "boss@park.example"] and env.mail_from == "alarms@park.example"
    mail = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert mail["Subject"] == "[HIGH] 告警 E05-MM.p_kw range: 5210 kW > 5000 kW"
    assert "对象 Target: E05-MM.p_kw" in mail.get_content()
    [row] = notifications(store)
    assert (row["status"], row["attempts"], row["alarm_id"], row["channel"]) == ("sent", 1, 1, "mail")
    assert row["recipient"] == "ops@park.example, boss@park.example" and row["last_error"] is None
    assert row["sent_at"] is not None and row["subject"] == rows[0]["subject"]


def test_closed_port_gives_failed_row_after_3_attempts_without_raising(store):
    waits = []
    rows = deliver(store, one(smtp_channel(free_port())), render(ALARM), sleep=waits.append)
    assert rows[0]["status"] == "failed"
    [row] = notifications(store)
    assert (row["status"], row["attempts"], row["sent_at"]) == ("failed", 3, None)
    assert "Connection" in row["last_error"] or "refused" in row["last_error"].lower()
    assert waits == [0.5, 2]                                        # backoff between the 3 tries


def test_missing_password_variable_fails_at_once_naming_it(store, smtpd, monkeypatch):
    ctl, handler = smtpd
    monkeypatch.delenv("ANNING_TEST_SMTP_PW", raising=False)
    ch = one(smtp_channel(ctl.port, username="alarms", password_env="ANNING_TEST_SMTP_PW"))
    [row] = deliver(store, ch, render(ALARM), sleep=lambda s: None)
    assert (row["status"], row["attempts"]) == ("failed", 1)      # a retry cannot cure a missing secret
    assert "ANNING_TEST_SMTP_PW" in row["last_error"] and handler.envelopes == []


def test_min_severity_enterprise_and_enabled_filtering(store, smtpd):
    ctl, handler = smtpd
    chans = parse_channels({"channels": [
        smtp_channel(ctl.port, id="high", min_severity="high"),
        smtp_channel(ctl.port, id="crit", min_severity="critical"),
        smtp_channel(ctl.port, id="e02", min_severity="low", enterprises=["E02"]),
        smtp_channel(ctl.port, id="off", min_severity="low", enabled=False),
    ]})
    assert deliver(store, chans, Message("s", "b", "medium", "E01", 1)) == []
    assert [r["channel"] for r in deliver(store, chans, Message("s", "b", "high", "E01", 1))] == ["high"]
    assert [r["channel"] for r in deliver(store, chans, Message("s", "b", "critical", "E02", 1))] == [
        "high", "crit", "e02"]
    park_level = deliver(store, chans, Message("s", "b", "critical", None, None))
    assert [r["channel"] for r in park_level] == ["high", "crit"]   # enterprise lists do not take park alarms
    assert len(handler.envelopes) == 1 + 3 + 2 and len(notifications(store)) == 6


# ------------------------------------------------------------------------------------------------ webhook
def test_webhook_receives_json(store, webhook, monkeypatch):
    base, received = webhook
    monkeypatch.setenv("ANNING_TEST_HOOK_TOKEN", "Bearer s3cret")
    ch = one({"id": "hook", "kind": "webhook", "url": f"{base}/ok?access_token=abc", "min_severity": "low",
              "headers": {"X-Source": "anning"}, "headers_env": {"Authorization": "ANNING_TEST_HOOK_TOKEN"}})
    [row] = deliver(store, ch, render(ALARM))
    assert (row["status"], row["attempts"]) == ("sent", 1)
    [(path, headers, doc)] = received
    assert path == "/ok?access_token=abc" and headers["X-Source"] == "anning"
    assert headers["Authorization"] == "Bearer s3cret"
    assert doc == {"subject": "[HIGH] 告警 E05-MM.p_kw range: 5210 kW > 5000 kW", "body": doc["body"],
                   "severity": "high", "enterprise_id": "E01", "alarm_id": 1}
    assert notifications(store)[0]["recipient"] == f"{base}/ok"     # the token in the query is not stored


def test_webhook_5xx_is_retried_4xx_is_not(store, webhook):
    base, received = webhook
    chans = parse_channels({"channels": [
        {"id": "fail", "kind": "webhook", "url": f"{base}/fail", "min_severity": "low"},
        {"id": "gone", "kind": "webhook", "url": f"{base}/gone", "min_severity": "low"}]})
    rows = deliver(store, chans, render(ALARM), sleep=lambda s: None)
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 3), ("failed", 1)]
    assert "500" in rows[0]["last_error"] and "404" in rows[1]["last_error"]
    assert [p for p, _h, _d in received] == ["/fail"] * 3 + ["/gone"]


# ------------------------------------------------------------------------------------------------ channels file
def test_shipped_channels_file_is_valid_and_disabled():
    [ch] = load_channels(REPO / "data" / "alarms" / "channels.yaml")
    assert (ch.kind, ch.host, ch.port, ch.enabled) == ("smtp", "localhost", 8025, False)
    assert not ch.takes(Message("s", "b", "critical", None))


@pytest.mark.parametrize(("doc", "path", "words"), [
    ("channels:\n  - {id: m, kind: smtp, host: h, port: abc, sender: a@b.c, recipients: [x@y.z]}\n",
     "channels[0].port", "abc"),
    ("channels:\n  - {id: m, kind: smtp, host: h, password: hunter2, sender: a@b.c, recipients: [x@y.z]}\n",
     "channels[0]", "password_env"),
    ("channels:\n  - {id: m, kind: pager}\n", "channels[0].kind", "pager"),
    ("channels:\n  - {id: m, kind: webhook, url: 'ftp://x/y', min_severity: urgent}\n",
     "channels[0].min_severity", "urgent"),
    ("channels:\n  - {id: m, kind: webhook, url: 'http://x/y'}\n  - {id: m, kind: webhook, url: 'http://x/z'}\n",
     "channels[1].id", "duplicate"),
    ("channels: [\n", "file", "YAML"),
])
def test_bad_channels_file_names_the_field(tmp_path, doc, path, words):
    f = tmp_path / "channels.yaml"
    f.write_text(doc, encoding="utf-8")
    with pytest.raises(AlarmRuleError) as exc:
        load_channels(f)
    assert str(f) in str(exc.value) and words in str(exc.value)
    assert any(p == path for p, _v, _r in exc.value.problems), exc.value.report()
    assert "hunter2" not in str(exc.value)


def test_a_raised_alarm_reaches_the_smtp_server_through_the_alarm_service(engine, smtpd):
    """End to end: a reading above the limit -> the engine raises -> stored -> e-mailed to a real SMTP server."""
    from anning_lib.ingest.model import Sample
    from anning_lib.park import load_park
    from anning_lib.quality.notify import deliver, render
    from anning_lib.quality.rules import load_rules
    from anning_lib.quality.service import AlarmService
    from anning_lib.store import init_db

    park = load_park()
    init_db(engine, park)
    ctl, handler = smtpd
    channels = one(smtp_channel(ctl.port))
    rules, _ = load_rules([{"id": "hi", "name": "SES power high", "target": {"tag": "SES.p_kw"},
                            "condition": {"kind": "range", "high": 20_000}, "severity": "high"}], park)
    service = AlarmService(engine, park, rules, notify=lambda row: deliver(engine, channels, render(row)))
    service([Sample("SES.p_kw", 1_000_000, 24_000.0, 0, 1_000.0)])
    changed = service.store(service.step(1_000.5))
    assert [a for _i, a in changed] == ["raise"]
    service.send([aid for aid, _a in changed])            # what the service's loop does in its own thread
    assert len(handler.envelopes) == 1
    env = handler.envelopes[0]
    assert sorted(env.rcpt_tos) == ["boss@park.example", "ops@park.example"]
    assert "SES.p_kw" in env.content.decode("utf-8", "replace")
    assert [n["status"] for n in notifications(engine)] == ["sent"]
