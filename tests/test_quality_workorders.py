"""Work orders: status flow, priorities and due times, overdue, role checks and enterprise scoping, creation from
an alarm, audit trail, and the ``anning workorders`` commands."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from anning_lib.auth.access import (
    SYSTEM,
    Actor,
    actor_from_db,
    can_see,
    ensure_roles,
    require,
    scope_filter,
)
from anning_lib.errors import AccessError, QualityError
from anning_lib.quality import workorders as wo
from anning_lib.store.schema import TABLES

T0 = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
USERS = [("admin1", "admin", None, True), ("op1", "operator", None, True), ("ent1", "enterprise", "E01", True),
         ("ent2", "enterprise", "E02", True), ("vis", "visitor", None, True), ("gone", "operator", None, False)]


def add_users(engine) -> None:
    ensure_roles(engine)
    with engine.begin() as c:
        c.execute(sa.insert(TABLES["app_user"]), [
            {"username": u, "role_id": r, "enterprise_id": e, "is_active": a, "display_name": u}
            for u, r, e, a in USERS])


@pytest.fixture
def park(db):
    """The tiny park's store with users of every role; returns (engine, {username: Actor})."""
    add_users(db)
    return db, {u: actor_from_db(db, u) for u, *_r, active in USERS if active}


def rows(engine, table: str, **where) -> list[dict]:
    t = TABLES[table]
    q = sa.select(t).where(*(t.c[k] == v for k, v in where.items())).order_by(t.c.id)
    with engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(q)]


def add_alarm(engine, **kw) -> int:
    values = {"kind": "range", "severity": "high", "message": "range: 5210 kW > 5000 kW", "raised_at": T0,
              "device_id": "E01-L1", "enterprise_id": "E01", "target": "E01-L1.p_kw", "value": 5210.0,
              "limit_value": 5000.0} | kw
    with engine.begin() as c:
        return c.execute(sa.insert(TABLES["alarm"]).values(**values).returning(TABLES["alarm"].c.id)).scalar_one()


# ------------------------------------------------------------------------------------------------ access (pure)
def test_access_matrix():
    op, ent, vis = Actor(2, "operator"), Actor(3, "enterprise", "E01", "ent1"), Actor(5, "visitor", None, "vis")
    assert can_see(SYSTEM, None) and can_see(op, "E02") and can_see(ent, "E01")
    assert not can_see(ent, "E02") and not can_see(ent, None) and not can_see(vis, "E01")
    assert not can_see(Actor(9, "enterprise", None, "x"), None)     # an enterprise user without enterprise
    for action in ("alarm.see", "workorder.see", "alarm.ack", "workorder.create", "workorder.comment"):
        require(ent, action, "E01")
    for action, target in (("alarm.see", "E02"), ("alarm.see", None), ("alarm.shelve", "E01"), ("workorder.update", "E01"), ("alarm.ack", "E02"),
                           ("workorder.create", None)):
        with pytest.raises(AccessError, match=f"user 'ent1' \\(role enterprise, enterprise E01\\) may not {action}"):
            require(ent, action, target)
    with pytest.raises(AccessError, match="'vis'.*may not alarm.ack on enterprise E01"):
        require(vis, "alarm.ack", "E01")
    with pytest.raises(AccessError, match="unknown action 'alarm.delete'"):
        require(op, "alarm.delete", None)
    col = TABLES["work_order"].c.enterprise_id
    assert scope_filter(op, col) is None and scope_filter(SYSTEM, col) is None
    assert "enterprise_id = " in str(scope_filter(ent, col)) and str(scope_filter(vis, col)) == "false"


def test_actor_from_db(park):
    engine, actors = park
    assert actors["ent1"] == Actor(actors["ent1"].user_id, "enterprise", "E01", "ent1")
    with pytest.raises(AccessError, match="user: unknown user 'nobody'"):
        actor_from_db(engine, "nobody")
    with pytest.raises(AccessError, match="user 'gone' is inactive"):
        actor_from_db(engine, "gone")


# ------------------------------------------------------------------------------------------------ status flow
def test_full_status_flow_with_timestamps(park):
    engine, a = park
    op = a["op1"]
    i = wo.create(engine, op, "Replace CT on E01 main meter", device_id="E01-M0", now=T0)
    w = wo.get(engine, op, i, now=T0)
    assert (w["status"], w["priority"], w["enterprise_id"], w["created_by_user"]) == ("open", "P3", "E01", "op1")
    assert w["created_at"] == T0 and w["due_at"] == T0 + 72 * H and w["closed_at"] is None
    flow = ["in_progress", "resolved", "in_progress", "resolved", "closed"]     # incl. a reopening
    for k, status in enumerate(flow, start=1):
        w = wo.update(engine, op, i, status=status, now=T0 + k * H)
        assert w["status"] == status and w["updated_at"] == T0 + k * H
    assert w["closed_at"] == T0 + 5 * H and not w["overdue"]
    changes = [h["detail"]["changes"]["status"] for h in w["history"] if h["action"] == "work_order_updated"]
    assert changes == [["open", "in_progress"], ["in_progress", "resolved"], ["resolved", "in_progress"],
                       ["in_progress", "resolved"], ["resolved", "closed"]]
    # back from in_progress to open (reassign), and an update to the same status changes nothing
    j = wo.create(engine, op, "second", now=T0)
    wo.update(engine, op, j, status="in_progress", now=T0 + H)
    assert wo.update(engine, op, j, status="open", now=T0 + 2 * H)["status"] == "open"
    n_audit = len(rows(engine, "audit_log"))
    assert wo.update(engine, op, j, status="open", priority="P3", now=T0 + 3 * H)["updated_at"] == T0 + 2 * H
    assert len(rows(engine, "audit_log")) == n_audit


@pytest.mark.parametrize(("path", "to"), [([], "resolved"), ([], "closed"), (["in_progress"], "closed"),
                                          (["in_progress", "resolved", "closed"], "open"),
                                          (["in_progress", "resolved"], "open")])
def test_illegal_transition_names_states_and_changes_nothing(park, path, to):
    engine, a = park
    i = wo.create(engine, a["op1"], "t", now=T0)
    for s in path:
        wo.update(engine, a["op1"], i, status=s, now=T0)
    before, n_audit = wo.get(engine, SYSTEM, i), len(rows(engine, "audit_log"))
    frm = path[-1] if path else "open"
    with pytest.raises(QualityError, match=f"status: cannot go from '{frm}' to '{to}'"):
        wo.update(engine, a["op1"], i, status=to, priority="P1", now=T0 + H)
    assert wo.get(engine, SYSTEM, i) == before and len(rows(engine, "audit_log")) == n_audit
    with pytest.raises(QualityError, match="status: unknown status 'done'"):
        wo.update(engine, a["op1"], i, status="done")


def test_priorities_due_times_and_overdue(park):
    engine, a = park
    op = a["op1"]
    p1 = wo.create(engine, op, "urgent", priority="P1", now=T0)
    p4 = wo.create(engine, op, "later", priority="P4", now=T0)
    fixed = wo.create(engine, op, "fixed due", priority="P2", due_at=T0 + 2 * H, now=T0)
    due = {w["id"]: w["due_at"] for w in wo.list_orders(engine, op, now=T0)}
    assert due == {p1: T0 + 4 * H, p4: T0 + 7 * 24 * H, fixed: T0 + 2 * H}
    assert [w["id"] for w in wo.list_orders(engine, op, now=T0)] == [fixed, p1, p4]   # earliest due first
    at = T0 + 5 * H
    flags = {w["id"]: w["overdue"] for w in wo.list_orders(engine, op, now=at)}
    assert flags == {p1: True, p4: False, fixed: True}
    assert [w["id"] for w in wo.list_orders(engine, op, overdue=True, now=at)] == [fixed, p1]
    assert [w["id"] for w in wo.list_orders(engine, op, overdue=False, now=at)] == [p4]
    wo.update(engine, op, fixed, status="in_progress", now=at)
    wo.update(engine, op, fixed, status="resolved", now=at)             # resolved is never overdue
    assert [w["id"] for w in wo.list_orders(engine, op, overdue=True, now=at)] == [p1]
    assert wo.get(engine, op, p1, now=at)["overdue"] and not wo.get(engine, op, p1, now=T0)["overdue"]
    # escalating P4 -> P1 without a due time moves the due time to creation + 4 h; with one it is kept
    assert wo.update(engine, op, p4, priority="P1", now=at)["due_at"] == T0 + 4 * H
    assert wo.update(engine, op, p4, priority="P2", due_at=T0 + 48 * H, now=at)["due_at"] == T0 + 48 * H
    assert [w["id"] for w in wo.list_orders(engine, op, status="resolved")] == [fixed]
    # several statuses at once, and the earliest-due few (the portal's "not closed" board)
    wo.update(engine, op, fixed, status="closed", now=at)
    assert [w["id"] for w in wo.list_orders(engine, op, status=("open", "in_progress", "resolved"))] == [p1, p4]
    assert [w["id"] for w in wo.list_orders(engine, op, limit=2)] == [fixed, p1]
    with pytest.raises(QualityError, match="status: unknown status 'done'"):
        wo.list_orders(engine, op, status=("open", "done"))


@pytest.mark.parametrize(("kw", "match"), [
    ({"title": "  "}, "title: must not be empty"),
    ({"title": "x" * 201}, "title: longer than 200"),
    ({"priority": "P9"}, "priority: unknown priority 'P9'"),
    ({"device_id": "E09-X"}, "device_id: unknown device 'E09-X'"),
    ({"alarm_id": 999}, "alarm_id: unknown alarm 999"),
    ({"enterprise_id": "E77"}, "enterprise_id: unknown enterprise 'E77'"),
    ({"device_id": "E02-M0", "enterprise_id": "E01"}, "enterprise_id: 'E01' differs from device E02-M0's 'E02'"),
    ({"assignee": "nobody"}, "assignee: unknown or inactive user 'nobody'"),
    ({"assignee": "gone"}, "assignee: unknown or inactive user 'gone'"),
    ({"assignee": "ent2", "enterprise_id": "E01"}, "assignee: user 'ent2' .*enterprise E01"),
    ({"due_at": dt.datetime(2026, 11, 26, 8)}, "due_at: naive timestamp"),
])
def test_bad_input_is_refused_naming_field_and_nothing_is_stored(park, kw, match):
    engine, a = park
    with pytest.raises(QualityError, match=match):
        wo.create(engine, a["op1"], **({"title": "t"} | kw))
    assert rows(engine, "work_order") == [] and rows(engine, "audit_log") == []
    i = wo.create(engine, a["op1"], "ok", enterprise_id="E01")
    with pytest.raises(QualityError, match="work_order: unknown id 4711"):
        wo.update(engine, a["op1"], 4711, status="in_progress")
    with pytest.raises(QualityError, match="text: a comment must not be empty"):
        wo.comment(engine, a["op1"], i, " ")


# ------------------------------------------------------------------------------------------------ scoping
def test_enterprise_scoping(park):
    engine, a = park
    op, ent1 = a["op1"], a["ent1"]
    e1 = wo.create(engine, op, "E01 job", device_id="E01-L1", now=T0)
    e2 = wo.create(engine, op, "E02 job", device_id="E02-M0", now=T0)
    pk = wo.create(engine, op, "park job", device_id="G0", now=T0)
    assert [w["enterprise_id"] for w in wo.list_orders(engine, op)] == ["E01", "E02", None]
    assert [w["id"] for w in wo.list_orders(engine, ent1)] == [e1]
    assert wo.list_orders(engine, a["vis"]) == []
    for wid, ent in ((e2, "enterprise E02"), (pk, "the park")):
        with pytest.raises(AccessError, match=f"user 'ent1' \\(role enterprise, enterprise E01\\) may not see "
                                               f"work order {wid} of {ent}"):
            wo.get(engine, ent1, wid)
        with pytest.raises(AccessError, match="user 'ent1'.*may not see"):
            wo.update(engine, ent1, wid, status="in_progress")
        with pytest.raises(AccessError, match="user 'ent1'.*may not see"):
            wo.comment(engine, ent1, wid, "hello")
    with pytest.raises(AccessError, match="user 'ent1'.*may not see work orders of enterprise E02"):
        wo.list_orders(engine, ent1, enterprise_id="E02")
    with pytest.raises(AccessError, match="user 'ent1'.*may not workorder.create on enterprise E02"):
        wo.create(engine, ent1, "for them", enterprise_id="E02")
    with pytest.raises(AccessError, match="user 'ent1'.*may not workorder.update on enterprise E01"):
        wo.update(engine, ent1, e1, status="in_progress")
    with pytest.raises(AccessError, match="user 'vis' \\(role visitor\\) may not workorder.create"):
        wo.create(engine, a["vis"], "x", enterprise_id="E01")
    # what an enterprise user may do: comment on its own, create for its own (default: its enterprise)
    wo.comment(engine, ent1, e1, "the furnace is back", now=T0 + H)
    own = wo.create(engine, ent1, "please check our meter", now=T0)
    assert wo.get(engine, ent1, own)["enterprise_id"] == "E01"
    assert [w["id"] for w in wo.list_orders(engine, ent1, enterprise_id="E01")] == [e1, own]
    assert wo.get(engine, op, e2)["status"] == "open"               # nothing changed by the refusals
    assert wo.get(engine, op, e1)["comments"][0] | {"id": 0} == {"id": 0, "ts": T0 + H, "user": "ent1",
                                                                  "user_id": ent1.user_id,
                                                                  "text": "the furnace is back"}


def test_assignee(park):
    engine, a = park
    op = a["op1"]
    i = wo.create(engine, op, "E01 job", enterprise_id="E01", assignee="ent1")
    assert wo.get(engine, op, i)["assignee"] == "ent1"
    with pytest.raises(QualityError, match="assignee: user 'ent2'"):
        wo.update(engine, op, i, assignee="ent2")
    assert wo.update(engine, op, i, assignee="op1")["assignee"] == "op1"
    assert wo.update(engine, op, i, assignee="")["assignee"] is None


# ------------------------------------------------------------------------------------------------ alarms, audit
def test_create_from_alarm_copies_device_enterprise_and_records_event(park):
    engine, a = park
    alarm_id = add_alarm(engine)
    i = wo.create(engine, a["op1"], "", alarm_id=alarm_id, priority="P1", now=T0 + H)
    w = wo.get(engine, a["op1"], i)
    assert (w["device_id"], w["enterprise_id"], w["alarm_id"]) == ("E01-L1", "E01", alarm_id)
    assert w["title"] == "range: 5210 kW > 5000 kW" and w["due_at"] == T0 + 5 * H
    [ev] = rows(engine, "alarm_event", alarm_id=alarm_id)
    assert (ev["action"], ev["ts"], ev["user_id"]) == ("work_order", T0 + H, a["op1"].user_id)
    assert ev["detail"]["work_order_id"] == i
    # an enterprise user can open one from its own alarm, not from another enterprise's
    other = add_alarm(engine, device_id="E02-M0", enterprise_id="E02", target="E02-M0.p_kw")
    assert wo.create(engine, a["ent1"], "our furnace", alarm_id=alarm_id)
    # another enterprise's alarm does not exist for this user (the refusal does not reveal it), nor a park alarm
    with pytest.raises(QualityError, match=f"alarm_id: unknown alarm {other}"):
        wo.create(engine, a["ent1"], "", alarm_id=other)
    park_alarm = add_alarm(engine, device_id=None, enterprise_id=None, target="GRID.p_kw")
    with pytest.raises(QualityError, match=f"alarm_id: unknown alarm {park_alarm}"):
        wo.create(engine, a["ent1"], "", alarm_id=park_alarm, enterprise_id="E01")
    with pytest.raises(QualityError, match="device_id: 'E01-M0' differs from alarm"):
        wo.create(engine, a["op1"], "", alarm_id=alarm_id, device_id="E01-M0")
    assert len(rows(engine, "alarm_event")) == 2


def test_every_change_is_audited(park):
    engine, a = park
    op = a["op1"]
    i = wo.create(engine, op, "audit me", enterprise_id="E01", priority="P2", now=T0)
    wo.update(engine, op, i, status="in_progress", assignee="op1", now=T0 + H)
    wo.comment(engine, op, i, "started", now=T0 + H)
    log = rows(engine, "audit_log", target=f"work_order:{i}")
    assert [r["action"] for r in log] == ["work_order_created", "work_order_updated", "work_order_commented"]
    assert all(r["user_id"] == op.user_id for r in log)
    assert log[0]["detail"]["priority"] == "P2" and log[0]["detail"]["title"] == "audit me"
    assert log[1]["detail"]["changes"] == {"status": ["open", "in_progress"], "assignee": [None, "op1"]}
    assert log[2]["detail"]["text"] == "started"
    assert [h["action"] for h in wo.get(engine, op, i)["history"]] == [r["action"] for r in log]
    wo.create(engine, SYSTEM, "by the system")
    assert rows(engine, "audit_log")[-1]["user_id"] is None


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def cli_store(tmp_path, tiny_park, monkeypatch):
    from anning_lib.config import get_settings
    from anning_lib.store import init_db, make_engine

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    engine = make_engine(url)
    init_db(engine, tiny_park)
    add_users(engine)
    monkeypatch.setenv("ANNING_DB_URL", url)
    monkeypatch.setenv("ANNING_TIMEZONE", "Asia/Shanghai")
    get_settings.cache_clear()
    yield engine
    get_settings.cache_clear()
    engine.dispose()


def cli(*args):
    from anning_lib.cli.workorders import workorders_app

    return CliRunner().invoke(workorders_app, [str(x) for x in args])


def test_cli_create_list_update_round_trip(cli_store):
    r = cli("create", "--title", "Inspect furnace", "--device", "E01-L1", "--priority", "P1",
            "--due", "2026-11-25T18:00", "--as", "op1", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["status"], doc["priority"], doc["enterprise_id"]) == ("open", "P1", "E01")
    assert doc["due_at"] == "2026-11-25T18:00:00+08:00"              # naive --due is Beijing time
    i = doc["id"]
    r = cli("create", "--title", "Water meter", "--device", "E02-M0")   # as the system actor
    assert r.exit_code == 0, r.output
    assert "E02-M0" in r.stdout

    r = cli("list", "--json")
    assert [w["title"] for w in json.loads(r.stdout)] == ["Inspect furnace", "Water meter"]
    r = cli("list", "--as", "ent1", "--json")
    assert [w["id"] for w in json.loads(r.stdout)] == [i]
    r = cli("list", "--overdue")                                      # due 2026-11-25 18:00 +08 is long past
    assert r.exit_code == 0 and f"#{i}" in r.stdout and "OVERDUE" in r.stdout and "Water meter" not in r.stdout

    r = cli("update", i, "--status", "in_progress", "--assignee", "op1", "--comment", "on site", "--as", "op1",
            "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["status"], doc["assignee"]) == ("in_progress", "op1")
    assert [(c["user"], c["text"]) for c in doc["comments"]] == [("op1", "on site")]
    r = cli("update", i, "--comment", "furnace back at 5 MW", "--as", "ent1")
    assert r.exit_code == 0, r.output
    assert "furnace back at 5 MW" in r.stdout
    r = cli("list", "--status", "in_progress")
    assert f"#{i}" in r.stdout and "-> op1" in r.stdout

    # refusals surface as QualityError (the `anning` entry point prints them as one line, exit status 2)
    for args, match in ((("update", i, "--status", "closed"), "cannot go from 'in_progress' to 'closed'"),
                        (("update", i, "--status", "resolved", "--as", "ent1"), "may not workorder.update"),
                        (("list", "--as", "nobody"), "unknown user 'nobody'"),
                        (("create", "--title", "x", "--due", "tomorrow"), "--due: not an ISO 8601 time")):
        r = cli(*args)
        assert isinstance(r.exception, (QualityError, AccessError)) and match in str(r.exception), (args, r.output)
    assert wo.get(cli_store, SYSTEM, i)["status"] == "in_progress"
