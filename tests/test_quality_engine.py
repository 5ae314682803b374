"""The alarm engine's delays and hysteresis (a flapping signal raises one alarm), flood suppression, and the alarm
lifecycle in the store (ISA-18.2 states, no duplicates, shelving, scoping, history, the CLI)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.errors import AccessError, QualityError
from anning_lib.park import load_park
from anning_lib.quality.alarms import (
    ack,
    apply,
    expire_shelving,
    history,
    list_alarms,
    shelve,
)
from anning_lib.quality.engine import AlarmEngine
from anning_lib.quality.rules import load_rules
from anning_lib.store import init_db

PARK = load_park()


@dataclass
class S:
    tag: str
    ts_ms: int
    value: float
    quality: int = 0


def engine_with(*rules):
    good, problems = load_rules(list(rules), PARK)
    assert problems == []
    return AlarmEngine(PARK, good)


HIGH = {"id": "high", "name": "SOC high", "target": {"tag": "SES.soc_frac"},
        "condition": {"kind": "range", "low": None, "high": 0.90, "deadband": 0.02}, "severity": "low",
        "on_delay_s": 2, "off_delay_s": 2}


def feed(eng, tag, values, start_s=1_000, step_s=1.0):
    out = []
    for i, v in enumerate(values):
        out += eng.on_samples([S(tag, int((start_s + i * step_s) * 1000), v)])
    return out


def test_flapping_signal_raises_one_alarm():
    # 0.905 / 0.895 alternating every second around the 0.90 limit for 60 s. With the 0.02 deadband the condition,
    # once true at t = 1000, stays true until the value falls below 0.88: after the 2 s on-delay one alarm
    # (t = 1002), and no clear while it keeps flapping inside the band.
    eng = engine_with(HIGH)
    out = feed(eng, "SES.soc_frac", [0.905, 0.895] * 30)
    assert [(t.action, t.t_s) for t in out] == [("raise", 1_002.0)]
    out = feed(eng, "SES.soc_frac", [0.87] * 4, start_s=1_060)           # below 0.88 for 2 s: cleared once
    assert [(t.action, t.t_s) for t in out] == [("clear", 1_062.0)]


def test_on_delay_filters_flapping_without_deadband():
    # no deadband: true and false alternate every second, and the 2 s on-delay never completes: no alarm at all
    eng = engine_with(HIGH | {"condition": {"kind": "range", "high": 0.90}})
    assert feed(eng, "SES.soc_frac", [0.905, 0.895] * 30) == []


def test_on_delay_completes_on_a_tick_without_new_samples():
    eng = engine_with(HIGH)
    assert feed(eng, "SES.soc_frac", [0.95]) == []                         # true at t = 1000
    assert eng.on_tick(1_001.5) == []
    assert [t.action for t in eng.on_tick(1_002.0)] == ["raise"]


def test_communication_loss_suppresses_the_devices_point_alarms():
    stale = {"id": "stale", "name": "no data", "target": {"tag": "SES.p_kw"},
             "condition": {"kind": "stale", "max_age_s": 3}, "severity": "medium"}
    comm = {"id": "comm", "name": "comm lost", "target": {"device": "SES"}, "condition": {"kind": "comm_loss"},
            "severity": "high"}
    eng = engine_with(stale, comm)
    feed(eng, "SES.p_kw", [100.0])
    out = eng.on_health(["SES"], False, 1_001.0)
    assert [(t.action, t.rule.id) for t in out] == [("raise", "comm")]
    assert eng.on_tick(1_010.0) == [] and eng.suppressed == 1               # stale held back, counted
    out = eng.on_health(["SES"], True, 1_011.0)
    assert [(t.action, t.rule.id) for t in out] == [("clear", "comm")]
    assert [t.rule.id for t in eng.on_tick(1_012.0)] == ["stale"]           # still no data: now it is raised


# ------------------------------------------------------------------------------------------------ the store
def raise_and_clear(engine, eng, t0=1_000):
    return (apply(engine, feed(eng, "SES.soc_frac", [0.95] * 3, start_s=t0)),
            apply(engine, feed(eng, "SES.soc_frac", [0.80] * 3, start_s=t0 + 10)))


def test_lifecycle_no_duplicates_and_history(engine):
    init_db(engine, PARK)
    eng = engine_with(HIGH)
    raised, cleared = raise_and_clear(engine, eng)
    (aid, _), = raised
    assert cleared == [(aid, "clear")]
    assert list_alarms(engine)[0]["state"] == "cleared_unack"              # back to normal, not acknowledged
    raised, _ = raise_and_clear(engine, eng, t0=2_000)                     # re-alarms: the same alarm again
    assert raised == [(aid, "raise")]
    assert ack(engine, SYSTEM, aid) == "cleared"
    with pytest.raises(QualityError, match=f"alarm {aid}: state 'cleared' needs no acknowledgement"):
        ack(engine, SYSTEM, aid)
    assert [e["action"] for e in history(engine, SYSTEM, aid)] == ["raised", "cleared", "raised", "cleared", "acked"]
    # a new raise after it was closed is a new alarm; while active, no second one
    raised, _ = raise_and_clear(engine, eng, t0=3_000)
    assert raised[0][0] != aid
    assert apply(engine, eng.on_samples([S("SES.soc_frac", 3_020_000, 0.99)])) == []


def test_shelving_hides_until_it_expires(engine):
    init_db(engine, PARK)
    eng = engine_with(HIGH)
    (aid, _), = apply(engine, feed(eng, "SES.soc_frac", [0.95] * 3))
    now = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
    with pytest.raises(QualityError, match="duration: 1 day, 1:00:00 must be"):
        shelve(engine, SYSTEM, aid, dt.timedelta(hours=25), "maintenance", now=now)
    until = shelve(engine, SYSTEM, aid, dt.timedelta(hours=2), "meter being replaced", now=now)
    assert until == now + dt.timedelta(hours=2)
    assert list_alarms(engine, now=now + dt.timedelta(hours=1)) == []
    assert expire_shelving(engine, now + dt.timedelta(hours=2, seconds=1)) == [aid]
    assert [r["id"] for r in list_alarms(engine, now=now + dt.timedelta(hours=3))] == [aid]


def test_enterprise_users_see_and_ack_only_their_own(engine):
    init_db(engine, PARK)
    rules = [{"id": "hi5", "name": "E05 load high", "target": {"tag": "E05-MM.p_kw"},
              "condition": {"kind": "range", "high": 10_000}, "severity": "medium"},
             {"id": "hi10", "name": "E10 load high", "target": {"tag": "E10-MM.p_kw"},
              "condition": {"kind": "range", "high": 10_000}, "severity": "medium"}]
    eng = engine_with(*rules)
    apply(engine, feed(eng, "E05-MM.p_kw", [12_000.0]) + feed(eng, "E10-MM.p_kw", [12_000.0]))
    e05 = Actor(None, "enterprise", "E05")
    mine = list_alarms(engine, e05)
    assert [r["enterprise_id"] for r in mine] == ["E05"]
    theirs = next(r["id"] for r in list_alarms(engine) if r["enterprise_id"] == "E10")
    with pytest.raises(QualityError, match=f"alarm {theirs}: no such alarm"):      # E10's does not exist for E05
        ack(engine, e05, theirs)
    with pytest.raises(QualityError, match=f"alarm {theirs}: no such alarm"):
        history(engine, e05, theirs)
    assert ack(engine, e05, mine[0]["id"]) == "active_ack"
    with pytest.raises(AccessError, match="shelve"):
        shelve(engine, e05, mine[0]["id"], dt.timedelta(hours=1), "no")
    assert list_alarms(engine, Actor(None, "visitor")) == []


def test_alarms_cli(engine, monkeypatch, tmp_path):
    if engine.dialect.name != "sqlite":
        pytest.skip("the CLI reads ANNING_DB_URL; one database is enough")
    init_db(engine, PARK)
    (aid, _), = apply(engine, feed(engine_with(HIGH), "SES.soc_frac", [0.95] * 3))
    monkeypatch.setenv("ANNING_DB_URL", engine.url.render_as_string(hide_password=False))
    from anning_lib.cli.alarms import alarms_app
    from anning_lib.config import get_settings

    get_settings.cache_clear() if hasattr(get_settings, "cache_clear") else None
    runner = CliRunner()
    r = runner.invoke(alarms_app, ["list"])
    assert r.exit_code == 0 and f"{aid:>6}" in r.stdout and "active_unack" in r.stdout
    r = runner.invoke(alarms_app, ["ack", str(aid), "--note", "seen"])
    assert r.exit_code == 0 and "active_ack" in r.stdout
    r = runner.invoke(alarms_app, ["rules"])
    assert r.exit_code == 0 and "OK" in r.stdout
    with engine.connect() as c:
        assert c.execute(sa.text("select count(*) from alarm_event where action = 'acked'")).scalar() == 1


def test_comm_loss_with_delays_raises_and_clears_on_ticks():
    # the shipped rules delay communication loss by 10 s: the health changes once, the delay completes on ticks
    comm = {"id": "comm", "name": "comm lost", "target": {"device": "SES"}, "condition": {"kind": "comm_loss"},
            "severity": "high", "on_delay_s": 10, "off_delay_s": 5}
    eng = engine_with(comm)
    assert eng.on_health(["SES"], False, 1_000.0) == []
    assert eng.on_tick(1_009.0) == []
    assert [(t.action, t.t_s) for t in eng.on_tick(1_010.0)] == [("raise", 1_010.0)]
    assert eng.on_health(["SES"], True, 1_020.0) == []
    assert [(t.action, t.t_s) for t in eng.on_tick(1_025.0)] == [("clear", 1_025.0)]


def test_after_a_restart_open_alarms_clear_and_orphans_close(engine):
    from anning_lib.quality.service import AlarmService

    init_db(engine, PARK)
    gone = {"id": "gone", "name": "a rule since removed", "target": {"tag": "SES.p_kw"},
            "condition": {"kind": "range", "high": 10}, "severity": "low"}
    first = engine_with(HIGH, gone)
    apply(engine, feed(first, "SES.soc_frac", [0.95] * 3) + feed(first, "SES.p_kw", [100.0]))
    # a new process with only HIGH: SOC is back to normal while it was down
    rules, _ = load_rules([HIGH], PARK)
    service = AlarmService(engine, PARK, rules)
    closed = service.resume()
    assert len(closed) == 1 and list_alarms(engine, open_only=False)[0]["state"] in ("active_unack", "cleared")
    service([S("SES.soc_frac", t * 1000, 0.80) for t in (5_000, 5_001, 5_002, 5_003)])
    changed = service.store(service.step(5_003.5))
    assert [a for _i, a in changed] == ["clear"]
    states = {r["rule_id"]: r["state"] for r in list_alarms(engine, open_only=False)}
    assert states == {"high": "cleared_unack", "gone": "cleared"}


def test_a_template_that_does_not_fit_never_blocks_the_others(engine):
    init_db(engine, PARK)
    odd = HIGH | {"id": "odd", "message": "{tag}: {text:.1f}"}        # a format that cannot apply to text
    plain = HIGH | {"id": "plain"}
    changed = apply(engine, feed(engine_with(odd, plain), "SES.soc_frac", [0.95] * 3))
    assert [a for _i, a in changed] == ["raise", "raise"]


def test_an_admin_rule_overrides_the_file_and_a_bad_one_is_refused(engine):
    from anning_lib.errors import AlarmRuleError
    from anning_lib.quality.service import put_rule, rules_in_force

    init_db(engine, PARK)
    mine = {"id": "range.bess", "name": "Storage out of range (tighter)", "target": {"device_type": "bess"},
            "condition": {"kind": "range", "deadband_frac": 0.02}, "severity": "high", "on_delay_s": 3}
    with pytest.raises(AccessError, match="may not alarm.rule"):
        put_rule(engine, Actor(None, "operator"), PARK, mine)
    assert put_rule(engine, SYSTEM, PARK, mine) == "range.bess"
    with pytest.raises(AlarmRuleError, match=r"rule.condition.max_change_per_s"):
        put_rule(engine, SYSTEM, PARK, mine | {"id": "x", "condition": {"kind": "spike", "max_change_per_s": -1}})
    from conftest import REPO
    rules, problems = rules_in_force(engine, PARK, REPO / "data")
    assert problems == []
    by_id = {r.id: r for r in rules}
    assert by_id["range.bess"].severity == "high" and by_id["range.bess"].on_delay_s == 3
    assert "x" not in by_id and len(rules) == 55                     # replaced in place, nothing added
