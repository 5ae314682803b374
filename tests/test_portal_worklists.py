"""The portal's work lists (anning_lib/portal/worklists.py): report runs scoped per role, assignable users, alarm
history, and the tables the alarms and reports pages show (Asia/Shanghai times, both languages, escaped links)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import yaml
from conftest import REPO

from anning_lib.auth.access import SYSTEM, Actor, actor_from_db, ensure_roles
from anning_lib.errors import AccessError, QualityError
from anning_lib.portal import worklists as wl
from anning_lib.quality import alarms as qa
from anning_lib.quality import workorders as wo
from anning_lib.store.schema import TABLES

T0 = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)
USERS = [("admin1", "admin", None, True), ("op1", "operator", None, True), ("ent1", "enterprise", "E01", True),
         ("ent2", "enterprise", "E02", True), ("vis", "visitor", None, True), ("gone", "operator", None, False),
         ("ent1-old", "enterprise", "E01", False)]
NAMES = {"E01": ("钢厂", "steel works"), "E02": ("水厂", "water works")}


@pytest.fixture
def park(db):
    """The tiny park's store with users of every role; returns (engine, {username: Actor})."""
    ensure_roles(db)
    with db.begin() as c:
        c.execute(sa.insert(TABLES["app_user"]), [
            {"username": u, "role_id": r, "enterprise_id": e, "is_active": a, "display_name": u}
            for u, r, e, a in USERS])
    return db, {u: actor_from_db(db, u) for u, *_r, active in USERS if active}


def add_runs(engine) -> dict[str, int]:
    """Report runs of E01, E02 and the park (done, failed, queued); returns their ids by name."""
    spec = {"e01_done": ("monthly_statement", "E01", "done", "/r/e01.html", 1),
            "e01_failed": ("monthly_statement", "E01", "failed", None, 2),
            "e02_done": ("monthly_statement", "E02", "done", "/r/e02.html", 3),
            "e02_queued": ("monthly_statement", "E02", "queued", None, 4),
            "park_done": ("park_monthly", None, "done", "/r/park.html", 5),
            "e01_done_nofile": ("carbon_statement", "E01", "done", None, 6)}
    ids = {}
    r = TABLES["report_run"]
    with engine.begin() as c:
        for name, (kind, ent, status, path, day) in spec.items():
            started = T0 + dt.timedelta(days=day)
            ids[name] = c.execute(sa.insert(r).values(
                kind=kind, enterprise_id=ent, status=status, output_path=path, started_at=started,
                finished_at=started + dt.timedelta(minutes=5) if status in ("done", "failed") else None,
                period_start=dt.datetime(2026, 9, 30, 16, tzinfo=dt.UTC),
                period_end=dt.datetime(2026, 10, 31, 16, tzinfo=dt.UTC),
                error="Traceback...\nValueError: no data" if status == "failed" else None).returning(r.c.id)).scalar_one()
    return ids


def add_alarm(engine, **kw) -> int:
    values = {"kind": "range", "severity": "high", "message": "E01-L1.p_kw: 5,210 above the high limit 5,000",
              "raised_at": T0, "device_id": "E01-L1", "enterprise_id": "E01", "target": "E01-L1.p_kw",
              "state": "active_unack", "updated_at": T0} | kw
    a = TABLES["alarm"]
    with engine.begin() as c:
        return c.execute(sa.insert(a).values(**values).returning(a.c.id)).scalar_one()


# ------------------------------------------------------------------------------------------------ report runs
def test_each_role_sees_exactly_its_report_runs(park):
    engine, who = park
    ids = add_runs(engine)
    seen = {u: {r["id"] for r in wl.list_reports(engine, a)} for u, a in who.items()}
    everything = set(ids.values())
    assert seen["admin1"] == seen["op1"] == everything
    assert {r["id"] for r in wl.list_reports(engine, SYSTEM)} == everything
    assert seen["ent1"] == {ids["e01_done"], ids["e01_failed"], ids["e01_done_nofile"]}
    assert seen["ent2"] == {ids["e02_done"], ids["e02_queued"]}
    assert seen["vis"] == set()
    assert ids["park_done"] not in seen["ent1"] | seen["ent2"]        # park-level: park-wide roles only
    # an enterprise user whose enterprise is missing sees nothing (not the park-level rows)
    assert wl.list_reports(engine, Actor(99, "enterprise", None, "orphan")) == []


def test_report_runs_newest_first_with_download_only_when_done_with_a_file(park):
    engine, who = park
    ids = add_runs(engine)
    rows = wl.list_reports(engine, who["admin1"])
    assert [r["id"] for r in rows] == sorted(ids.values(), reverse=True)    # started a day apart, newest first
    by_id = {r["id"]: r for r in rows}
    assert by_id[ids["e01_done"]]["download_url"] == f"/statements/{ids['e01_done']}"
    assert by_id[ids["park_done"]]["download_url"] == f"/statements/{ids['park_done']}"
    for name in ("e01_failed", "e02_queued", "e01_done_nofile"):
        assert by_id[ids[name]]["download_url"] is None, name
    assert "output_path" not in by_id[ids["e01_done"]]            # the server's path stays on the server
    assert by_id[ids["e01_done"]]["has_file"] is True and by_id[ids["e01_failed"]]["has_file"] is False


def test_report_filters_keep_the_scope(park):
    engine, who = park
    ids = add_runs(engine)
    assert {r["id"] for r in wl.list_reports(engine, who["ent1"], status="done")} == {
        ids["e01_done"], ids["e01_done_nofile"]}
    assert {r["id"] for r in wl.list_reports(engine, who["op1"], kind="park_monthly")} == {ids["park_done"]}
    assert wl.list_reports(engine, who["ent2"], kind="park_monthly") == []
    assert len(wl.list_reports(engine, who["admin1"], limit=2)) == 2


def test_report_table_shows_local_period_and_a_safe_link(park):
    engine, who = park
    ids = add_runs(engine)
    rows = wl.list_reports(engine, who["admin1"])
    zh = wl.report_table(rows, "zh_CN", NAMES).set_index("id")
    en = wl.report_table(rows, "en", NAMES).set_index("id")
    assert list(zh.reset_index().columns) == list(wl.REPORT_COLUMNS)
    assert zh.loc[ids["e01_done"], "period"] == "2026-10"          # UTC 16:00 = 00:00 Shanghai: the whole of October
    assert zh.loc[ids["e01_done"], "download"] == f'<a href="/statements/{ids["e01_done"]}" download>下载</a>'
    assert en.loc[ids["e01_done"], "download"].endswith(">Download</a>")
    assert zh.loc[ids["e01_failed"], "download"] == ""
    assert zh.loc[ids["park_done"], "enterprise"] == "园区级" and en.loc[ids["park_done"], "enterprise"] == "Park-level"
    assert zh.loc[ids["e02_done"], "enterprise"] == "E02 水厂" and en.loc[ids["e02_done"], "enterprise"] == "E02 water works"
    assert zh.loc[ids["e01_done"], "status"] == "已完成" and en.loc[ids["e02_queued"], "status"] == "Queued"
    assert zh.loc[ids["e01_done"], "kind"] == "monthly_statement"         # a kind without a message: its code
    assert zh.loc[ids["e01_done"], "finished"] == "2026-11-26 08:05"


# ------------------------------------------------------------------------------------------------ alarms, work orders
def test_alarm_history_scoped_with_usernames(park):
    engine, who = park
    a1, a2 = add_alarm(engine), add_alarm(engine, enterprise_id="E02", device_id="E02-M0", target="E02-M0.p_kw")
    with engine.begin() as c:
        c.execute(sa.insert(TABLES["alarm_event"]).values(alarm_id=a1, ts=T0, action="raised", detail={"value": 5210}))
    qa.ack(engine, who["ent1"], a1, "on site", now=T0 + dt.timedelta(minutes=5))
    hist = wl.alarm_history(engine, who["op1"], a1)
    assert [(h["action"], h["user"]) for h in hist] == [("raised", ""), ("acked", "ent1")]
    table = wl.history_table(hist, "zh_CN", "alarms_event_")
    assert table.to_dict("records") == [
        {"time": "2026-11-25 08:00:00", "action": "发生", "user": "系统", "detail": "value: 5210"},
        {"time": "2026-11-25 08:05:00", "action": "确认", "user": "ent1", "detail": "note: on site"}]
    assert wl.alarm_history(engine, who["ent2"], a2) == []
    for user in ("ent2", "vis"):               # another enterprise's alarm does not exist for them
        with pytest.raises(QualityError, match="no such alarm"):
            wl.alarm_history(engine, who[user], a1)


def test_assignable_users_are_active_users_who_can_see_the_item(park):
    engine, who = park
    assert wl.assignable_users(engine, who["op1"], "E01") == ["admin1", "ent1", "op1"]
    assert wl.assignable_users(engine, who["admin1"], "E02") == ["admin1", "ent2", "op1"]
    assert wl.assignable_users(engine, who["op1"], None) == ["admin1", "op1"]
    for user in ("ent1", "vis"):
        with pytest.raises(AccessError, match="may not workorder.update"):
            wl.assignable_users(engine, who[user], "E01")


def test_order_table_and_history(park):
    engine, who = park
    aid = add_alarm(engine)
    wid = wo.create(engine, who["op1"], "", alarm_id=aid, priority="P1", now=T0)
    wo.update(engine, who["op1"], wid, status="in_progress", assignee="ent1", now=T0 + dt.timedelta(hours=1))
    rows = wo.list_orders(engine, who["ent1"], now=T0 + dt.timedelta(hours=5))     # P1: due after 4 h
    zh = wl.order_table(rows, "zh_CN", NAMES)
    assert zh.to_dict("records") == [{
        "id": wid, "title": "E01-L1.p_kw: 5,210 above the high limit 5,000", "status": "处理中", "priority": "P1",
        "due": "2026-11-25 12:00", "overdue": "逾期", "assignee": "ent1", "enterprise": "E01 钢厂",
        "device": "E01-L1"}]
    assert wl.order_table(rows, "en", NAMES).loc[0, "status"] == "In progress"
    assert wl.order_table(wo.list_orders(engine, who["ent2"]), "en", NAMES).empty
    hist = wl.order_history(wo.get(engine, who["ent1"], wid), engine)
    assert [(h["action"], h["user"]) for h in hist] == [("work_order_created", "op1"), ("work_order_updated", "op1")]
    detail = wl.history_table(hist, "en", "alarms_audit_").loc[1, "detail"]
    assert detail == "status: open → in_progress; assignee: – → ent1"


def test_alarm_table_filters_and_labels():
    now = T0 + dt.timedelta(hours=1)
    rows = [{"id": 1, "raised_at": T0, "severity": "critical", "state": "active_unack", "enterprise_id": "E01",
             "target": "E01-L1.p_kw", "device_id": "E01-L1", "message": "m1", "shelved_until": None, "kind": "range"},
            {"id": 2, "raised_at": T0, "severity": "low", "state": "active_ack", "enterprise_id": None,
             "target": "", "device_id": "G0", "message": "<b>m2</b>", "shelved_until": now + dt.timedelta(hours=1),
             "kind": "stale"},
            {"id": 3, "raised_at": T0, "severity": "low", "state": "cleared_unack", "enterprise_id": "E02",
             "target": "E02-M0.p_kw", "device_id": "E02-M0", "message": "m3", "shelved_until": T0, "kind": "range"}]
    ids = lambda rs: [r["id"] for r in rs]                                     # noqa: E731
    assert ids(wl.filter_alarms(rows, now=now)) == [1, 2, 3]
    assert ids(wl.filter_alarms(rows, severity="low", now=now)) == [2, 3]
    assert ids(wl.filter_alarms(rows, state="shelved", now=now)) == [2]         # shelving of 3 has ended
    assert ids(wl.filter_alarms(rows, state="active_ack", now=now)) == []       # 2 is shelved
    assert ids(wl.filter_alarms(rows, state="cleared_unack", severity="low", now=now)) == [3]
    zh = wl.alarm_table(rows, "zh_CN", NAMES, now=now)
    assert list(zh.columns) == list(wl.ALARM_COLUMNS)
    assert zh.loc[0, ["raised", "severity", "state", "enterprise"]].tolist() == [
        "2026-11-25 08:00", "紧急", "活动·未确认", "E01 钢厂"]
    assert zh.loc[1, ["enterprise", "target", "message"]].tolist() == ["园区公共", "G0", "<b>m2</b>"]
    assert zh.loc[1, "state"] == "活动·已确认 · 已搁置至 2026-11-25 10:00"
    en = wl.alarm_table(rows, "en", NAMES, now=now)
    assert en.loc[2, ["severity", "state", "enterprise"]].tolist() == ["Low", "Cleared, unacknowledged", "E02 water works"]
    assert en.loc[1, "state"] == "Active, acknowledged · shelved until 2026-11-25 10:00"


def test_history_html_escapes_every_cell():
    rows = [{"ts": T0, "action": "commented", "user_id": 3, "user": "ent1", "detail": {"text": "<script>x</script>"}}]
    out = wl.history_html(wl.history_table(rows, "en", "alarms_audit_work_order_"), "en")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<th>Time</th>" in out and "<th>Detail</th>" in out and "Commented" in out
    assert wl.history_html(wl.history_table([], "en", ""), "en") == ""


# ------------------------------------------------------------------------------------------------ pure helpers
def test_next_statuses_follow_the_work_order_flow():
    assert wl.next_statuses("open") == ["open", "in_progress"]
    assert wl.next_statuses("in_progress") == ["open", "in_progress", "resolved"]
    assert wl.next_statuses("resolved") == ["in_progress", "resolved", "closed"]
    assert wl.next_statuses("closed") == ["closed"]
    for old in wo.STATUSES:
        for new in wl.next_statuses(old):
            wo.check_transition(old, new)                # every offered status is one the library accepts


def test_local_time_and_detail_text():
    assert wl.local_time(None) == ""
    assert wl.local_time(dt.datetime(2026, 11, 25, 16, 30)) == "2026-11-26 00:30"        # naive = UTC
    assert wl.local_time(T0, "%H:%M:%S") == "08:00:00"
    assert wl.describe_detail(None) == "" and wl.describe_detail("plain") == "plain"
    assert wl.describe_detail({"until": "2026-11-25T02:00:00+00:00", "reason": "meter swap", "x": None}) == \
        "until: 2026-11-25 10:00; reason: meter swap"
    assert wl.describe_detail({"comment_id": 4, "text": "ok"}) == "text: ok"
    assert wl.describe_detail('{"note": "n"}') == "note: n"
    assert wl.describe_detail({"changes": {"due_at": ["2026-11-25T04:00:00+00:00", "2026-11-26T00:00:00+00:00"],
                                           "assignee": [None, "op1"]}}) == \
        "due_at: 2026-11-25 12:00 → 2026-11-26 08:00; assignee: – → op1"
    long = wl.describe_detail({"text": "x" * 500})
    assert len(long) == 160 and long.endswith("…")


def test_tabulator_config_localises_pagination_and_cuts_long_columns():
    zh = wl.tabulator_config("zh_CN", ["id", "message", "target"])
    assert zh["langs"][zh["locale"]]["pagination"]["next"] == "下一页"
    assert zh["columns"] == [{"field": "message", "maxWidth": 420}]
    assert wl.tabulator_config("en")["langs"]["portal"]["pagination"]["first"] == "First"


def test_message_files_cover_every_label_the_pages_use():
    """Both files parse to {key: {zh_CN, en}} with the page's prefix, and every state, severity, status and action
    the tables label has a message (a missing one would show the raw code)."""
    keys = {}
    for name, prefix in (("alarms", "alarms_"), ("reports", "reports_")):
        raw = yaml.safe_load((REPO / "data" / "i18n" / f"{name}.yaml").read_text(encoding="utf-8"))
        for key, texts in raw.items():
            assert key.startswith(prefix), key
            assert set(texts) == {"zh_CN", "en"} and all(isinstance(v, str) and v for v in texts.values()), key
        keys |= raw
    wanted = ([f"alarms_state_{s}" for s in (*qa.OPEN, "cleared", "shelved")]
              + [f"alarms_sev_{s}" for s in wl.SEVERITIES] + [f"alarms_wo_status_{s}" for s in wo.STATUSES]
              + [f"alarms_event_{a}" for a in ("raised", "cleared", "acked", "shelved", "unshelved", "work_order")]
              + [f"alarms_audit_work_order_{a}" for a in ("created", "updated", "commented")]
              + [f"reports_status_{s}" for s in wl.REPORT_STATUSES]
              + [f"alarms_col_{c}" for c in (*wl.ALARM_COLUMNS, *wl.ORDER_COLUMNS, "time", "action", "user", "detail")]
              + [f"reports_col_{c}" for c in (*wl.REPORT_COLUMNS, "error")])
    assert [k for k in wanted if k not in keys] == []
