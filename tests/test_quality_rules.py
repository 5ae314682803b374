"""Alarm rules as data: the shipped rules on the real park, target expansion, bad rules, database overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from anning_lib.errors import AlarmRuleError
from anning_lib.park import load_park
from anning_lib.quality.checks import BalanceDetector, FaultDetector, make_detector
from anning_lib.quality.rules import (
    AlarmRule,
    balance_terms,
    check_rules_file,
    expand,
    fault_texts,
    load_fault_codes,
    load_rules,
    merge_rules,
    read_rules_file,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
RULES_FILE = DATA / "alarms" / "rules.yaml"
FAULT_FILE = DATA / "alarms" / "fault_codes.yaml"


@pytest.fixture(scope="module")
def park():
    return load_park(DATA / "park" / "anning.yaml", DATA)


@pytest.fixture(scope="module")
def shipped(park):
    rules, problems = read_rules_file(RULES_FILE, park)
    assert problems == []
    return {r.id: r for r in rules}


def _good(rule_id="good.one", **over):
    rule = {"id": rule_id, "name": "E01 main meter range", "target": {"tag": "E01-MM.p_kw"},
            "condition": {"kind": "range", "low": -1000, "high": 50000}, "severity": "medium"}
    return {**rule, **over}


# ---------------------------------------------------------------------------------------------- shipped rules
def test_shipped_rules_load_without_problems(park, shipped):
    assert len(shipped) == 55
    assert check_rules_file(RULES_FILE, park)                     # strict variant does not raise
    kinds = {r.condition.kind for r in shipped.values()}
    assert kinds == {"range", "spike", "flatline", "stale", "fault", "quality", "balance", "comm_loss"}


def test_fault_rules_expand_to_every_fault_point(park, shipped):
    # devices with a `fault` point in data/park/anning.yaml, counted by hand:
    # pv: PARK-PV, E01-PV, E02-PV, E08-PV, E09-PV, E10-PV, E11-PV, E12-PV, E13-PV = 9
    # bess: SES, E05-BESS, E10-BESS, E12-BESS = 4
    assert expand(shipped["fault.bess"], park) == ["SES.fault", "E05-BESS.fault", "E10-BESS.fault",
                                                   "E12-BESS.fault"]
    assert len(expand(shipped["fault.pv"], park)) == 9
    every_fault = {f"{d.id}.fault" for _e, d in park.iter_devices() if any(p.id == "fault" for p in d.points)}
    assert set(expand(shipped["fault.pv"], park)) | set(expand(shipped["fault.bess"], park)) == every_fault


def test_expand_counts(park, shipped):
    # 13 enterprises, one main meter each, 3 points (p_kw, q_kvar, pf) -> 39 range targets, 13 balance devices
    assert len(expand(shipped["range.main_meter"], park)) == 39
    assert expand(shipped["balance.main_meter"], park) == [f"E{i:02d}-MM" for i in range(1, 14)]
    assert expand(shipped["spike.e05-mm"], park) == ["E05-MM.p_kw"]
    # every one of the park's points has exactly one range, one stale and one quality rule
    all_tags = sorted(f"{d.id}.{p.id}" for _e, d, p in park.iter_points())
    for kind in ("range", "stale", "quality"):
        got = sorted(t for r in shipped.values() if r.condition.kind == kind for t in expand(r, park))
        assert got == all_tags, kind


def test_stale_age_follows_the_protocol(park, shipped):
    """MQTT points 60 s, Modbus and OPC UA points 30 s (the header's assumption)."""
    for r in shipped.values():
        if r.condition.kind != "stale":
            continue
        for tag in expand(r, park):
            proto = park.device(tag.split(".")[0]).protocol
            assert r.condition.max_age_s == (60 if proto == "mqtt" else 30), tag
            assert r.enabled == (proto != "opcua"), tag


def test_spike_limits_are_a_fifth_of_the_rating(park, shipped):
    for r in shipped.values():
        if r.condition.kind == "spike":
            (tag,) = expand(r, park)
            assert r.condition.max_change_per_s == park.device(tag.split(".")[0]).p.rated_kva / 5, r.id


def test_shipped_fault_codes_overlay_the_default(shipped):
    codes = load_fault_codes(FAULT_FILE)
    bess = fault_texts(codes, "bess")
    det = make_detector(shipped["fault.bess"].condition, fault_texts=bess)
    assert isinstance(det, FaultDetector)
    det.update(0.0, float(0x0012))                                # the value the Modbus test server sets on SES
    assert det.detail["text"] == "fault word 0x0012: cell under-voltage; charge over-current"
    assert fault_texts(codes, "boiler")[0] == "general fault"    # no boiler map: the default


def test_bad_fault_codes_file_names_the_key(tmp_path):
    f = tmp_path / "fc.yaml"
    f.write_text("codes:\n  metre: {0: x}\n  pv: {40: y}\n", encoding="utf-8")
    with pytest.raises(AlarmRuleError) as info:
        load_fault_codes(f)
    paths = [p for p, _v, _r in info.value.problems]
    assert paths == ["codes.metre", "codes.pv.40"]


# ---------------------------------------------------------------------------------------------- bad rules
BAD = [
    ({"condition": {"kind": "wobble"}}, "rules[1].condition.kind", "wobble", "unknown condition kind 'wobble'"),
    ({"on_delay_s": -5}, "rules[2].on_delay_s", -5, "greater than or equal to 0 (got -5)"),
    ({"target": {"device_type": "metre", "point": "p_kw"}}, "rules[3].target.device_type", "metre",
     "unknown device type 'metre'"),
    ({"target": {"tag": "E01-MM.p_kwh"}}, "rules[4].target.tag", "E01-MM.p_kwh",
     "unknown tag 'E01-MM.p_kwh': no such point in the park"),
    ({"target": {"tag": "E01-MM.p_kw", "device_type": "pv"}}, "rules[5].target.device_type", "pv",
     "device_type 'pv' is not allowed together with tag 'E01-MM.p_kw'"),
    ({}, "rules[6].id", "good.one", "duplicate rule id 'good.one' (also rules[0])"),
    ({"condition": {"kind": "spike", "max_change_per_s": 0}}, "rules[7].condition.max_change_per_s", 0,
     "greater than 0 (got 0)"),
    ({"condition": {"kind": "flatline", "window_s": 60, "windw": 5}}, "rules[8].condition.windw", 5,
     "Extra inputs are not permitted"),
    ({"target": {"device_type": "pv"}, "condition": {"kind": "balance", "tolerance_frac": 0.05}},
     "rules[9].target.device_type", "pv", "a balance condition applies to main_meter devices"),
    ({"target": {"device": "E01-MM", "enterprise": "E77"}}, "rules[10].target.enterprise", "E77",
     "unknown enterprise 'E77'"),
    ({"message": "{tag} at {valu}"}, "rules[11].message", "{tag} at {valu}", "unknown placeholder '{valu}'"),
    ({"condition": {"kind": "fault"}}, "rules[12].target", {"tag": "E01-MM.p_kw"},
     "matches no point with a status word"),
    ({"target": {"device": "E01-MM", "enterprise": "E02"}}, "rules[13].target.enterprise", "E02",
     "device 'E01-MM' belongs to 'E01'"),
    ({"condition": {"kind": "comm_loss"}}, "rules[14].target.tag", "E01-MM.p_kw",
     "a comm_loss condition applies to devices, not points"),
]


def test_each_bad_rule_is_named_and_skipped_while_the_others_load(park):
    raw = [_good()]
    for i, (over, *_expected) in enumerate(BAD, start=1):
        raw.append(_good("good.one" if over == {} else f"bad.{i}", **over))
    raw.append(_good("good.two", target={"device_type": "bess", "enterprise": "park", "point": "soc_frac"}))
    rules, problems = load_rules({"version": 1, "rules": raw}, park)
    assert [r.id for r in rules] == ["good.one", "good.two"]
    assert expand(rules[1], park) == ["SES.soc_frac"]               # the park-level storage only
    assert len(problems) == len(BAD)
    for (path, value, reason), (_over, e_path, e_value, e_reason) in zip(problems, BAD):
        assert (path, value) == (e_path, e_value)
        assert e_reason in reason, (path, reason)


def test_structural_problems(park):
    _rules, problems = load_rules([_good(target={}), "not a rule",
                                   _good(condition={"kind": "range"}, target={"tag": "E01-MM.pf"},
                                         severity="urgent")], park)
    assert problems[0][:1] == ("rules[0].target",) and "needs one of tag" in problems[0][2]
    assert problems[1][0] == "rules[1]" and "must be a mapping" in problems[1][2]
    assert problems[2][0] == "rules[2].severity"
    _rules, problems = load_rules({"rulez": []}, park)
    assert [p[0] for p in problems] == ["rulez", "rules"]


def test_check_rules_file_raises_naming_the_field(tmp_path, park):
    f = tmp_path / "rules.yaml"
    bad = _good(condition={"kind": "spike", "max_change_per_s": -1})
    f.write_text(yaml.safe_dump({"version": 1, "rules": [_good("ok"), bad]}), encoding="utf-8")
    with pytest.raises(AlarmRuleError) as info:
        check_rules_file(f, park)
    assert str(info.value) == (f"{f}: rules[1].condition.max_change_per_s: Input should be greater than 0 "
                               "(got -1)")
    rules, problems = read_rules_file(tmp_path / "missing.yaml", park)
    assert rules == [] and problems[0][0] == "file"


# ---------------------------------------------------------------------------------------------- database rows
def test_merge_rules_db_overrides_and_bad_rows(park, shipped):
    file_rules = list(shipped.values())
    new_def = {"name": "E01 EAF above 40 MW", "target": {"tag": "E01-EAF.p_kw"},
               "condition": {"kind": "range", "high": 40000, "deadband": 500}, "severity": "high"}
    rows = [
        {"id": "range.main_meter", "enabled": False,
         "definition": shipped["range.main_meter"].model_dump(mode="json") | {"severity": "high"}},
        {"id": "site.e01-eaf-high", "enabled": True, "definition": new_def},
        {"id": "spike.e01-mm", "enabled": True, "definition": {"name": "x", "target": {"tag": "E01-MM.p_kw"},
                                                               "condition": {"kind": "jump"}, "severity": "low"}},
        {"id": "stale.bess", "enabled": True, "definition": {"id": "other", "name": "x"}},
    ]
    merged, problems = merge_rules(file_rules, rows, park)
    by_id = {r.id: r for r in merged}
    assert len(merged) == 56                                             # 55 + one new
    assert by_id["range.main_meter"].enabled is False and by_id["range.main_meter"].severity == "high"
    assert [r.id for r in merged].index("range.main_meter") == [r.id for r in file_rules].index("range.main_meter")
    assert merged[-1].id == "site.e01-eaf-high" and expand(merged[-1], park) == ["E01-EAF.p_kw"]
    # the bad rows are problems; the file rules of those ids stay in force
    assert [(p, v) for p, v, _r in problems] == [("alarm_rule[spike.e01-mm].definition.condition.kind", "jump"),
                                                 ("alarm_rule[stale.bess].definition.id", "other")]
    assert by_id["spike.e01-mm"] == shipped["spike.e01-mm"] and by_id["stale.bess"] == shipped["stale.bess"]


# ---------------------------------------------------------------------------------------------- helpers
def test_balance_terms_and_detector_from_park(park, shipped):
    # E05 in data/park/anning.yaml: loads E05-PP (process_line), E05-WH (sub_meter), E05-B1 (boiler aux);
    # sources E05-BESS; main meter loss_frac 0.012
    main, loads, sources, loss = balance_terms(park, "E05-MM")
    assert (main, loads, sources, loss) == ("E05-MM.p_kw", ["E05-PP.p_kw", "E05-WH.p_kw", "E05-B1.p_kw"],
                                            ["E05-BESS.p_kw"], 0.012)
    det = make_detector(shipped["balance.main_meter"].condition, park=park, device_id="E05-MM")
    assert isinstance(det, BalanceDetector)
    # loads 8000 + 500 + 300 = 8800 -> x 1.012 = 8905.6; BESS discharging 1000: expected 7905.6 kW
    # main 8300: mismatch 394.4 kW; allowed 0.05 * max(8300, 500) = 415 -> no violation
    assert det.update_values(0.0, {"E05-MM.p_kw": 8300.0, "E05-PP.p_kw": 8000.0, "E05-WH.p_kw": 500.0,
                                   "E05-B1.p_kw": 300.0, "E05-BESS.p_kw": 1000.0}) is False
    assert det.detail["value"] == pytest.approx(394.4)
    assert det.update_values(1.0, {"E05-MM.p_kw": 8400.0}) is True      # 494.4 > 0.05 * 8400 = 420
    with pytest.raises(ValueError):
        balance_terms(park, "GRID")


def test_render_message():
    rule = AlarmRule.model_validate(_good(message="{tag} = {value:.1f} kW (limit {limit:g})"))
    assert rule.render("E01-MM.p_kw", {"value": 51234.56, "limit": 50000.0}) == "E01-MM.p_kw = 51234.6 kW (limit 50000)"
    # a template that does not fit the values falls back to the check's text
    assert rule.render("E01-MM.p_kw", {"value": None, "text": "stale"}) == "E01-MM.p_kw: stale"
    assert AlarmRule.model_validate(_good()).render("X.y", {"text": "t"}) == "X.y: t"


def test_a_deadband_that_could_never_clear_is_refused():
    # low 0, high 10: inside by 5 from both sides leaves nothing to return to
    from anning_lib.park import load_park
    from anning_lib.quality.rules import load_rules

    bad = {"id": "db", "name": "x", "target": {"tag": "SES.soc_frac"},
           "condition": {"kind": "range", "low": 0, "high": 10, "deadband": 5}, "severity": "low"}
    rules, problems = load_rules([bad], load_park())
    assert rules == [] and problems[0][0].startswith("rules[0].condition")
    assert "could never clear" in problems[0][2]
