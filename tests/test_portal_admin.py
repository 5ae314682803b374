"""The admin page's edits: points (store) and tariff files; bad input is named and changes nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.dispatch.tariff import check_tou_periods, load_tariff, load_tou_bands
from anning_lib.errors import AccessError, CaseFileError, ParkModelError
from anning_lib.park import load_catalogue
from anning_lib.portal.admin import add_point, update_point_limits
from anning_lib.portal.tariff_edit import (
    save_tou_file,
    validate_tou_text,
)
from anning_lib.store.schema import TABLES

REPO = Path(__file__).resolve().parent.parent
TARIFFS = REPO / "data" / "tariffs"
CAT = load_catalogue(REPO / "data")

OPERATOR = Actor(None, "operator", username="op1")
ENTERPRISE = Actor(None, "enterprise", "E01", "ent1")




def counts(engine) -> tuple[int, int]:
    with engine.connect() as c:
        return tuple(c.execute(sa.select(sa.func.count()).select_from(TABLES[t])).scalar_one()
                     for t in ("point", "audit_log"))


def point_row(engine, tag: str):
    pt = TABLES["point"]
    with engine.connect() as c:
        return c.execute(sa.select(pt).where(pt.c.tag == tag)).first()


def audit_rows(engine, action: str) -> list:
    log = TABLES["audit_log"]
    with engine.connect() as c:
        return list(c.execute(sa.select(log).where(log.c.action == action).order_by(log.c.id)))


# ============================================================================================== points
@pytest.mark.parametrize("kw, field, words", [
    ({"unit": "kwhh"}, "unit", ["unit: unknown unit 'kwhh' for quantity active_power", "known: W, kW, MW"]),
    ({"unit": "kWh"}, "unit", ["'kWh'", "active_power", "'kWh' is a unit of energy"]),
    ({"quantity": "active_powr"}, "quantity", ["unknown quantity 'active_powr'", "known: active_power"]),
    ({"min_value": 10.0, "max_value": 10.0}, "max", ["min 10.0 must be below max 10.0"]),
    ({"min_value": 50.0, "max_value": 10.0}, "max", ["min 50.0 must be below max 10.0"]),
    ({"max_value": float("inf")}, "max", ["inf is not a finite number"]),
    ({"min_value": "abc"}, "min", ["'abc'"]),
    ({"point_id": "P-KW"}, "point_id", ["'P-KW' must be lower-case"]),
    ({"point_id": "p_kw"}, "point_id", ["'G0.p_kw' exists already"]),
    ({"device_id": "NOPE"}, "device_id", ["unknown device 'NOPE'"]),
])
def test_add_point_refuses_bad_input_and_writes_nothing(admin, tiny_park, kw, field, words):
    engine, actor = admin
    args = {"device_id": "G0", "point_id": "q_kvar", "quantity": "active_power", "unit": "kW",
            "min_value": -100.0, "max_value": 100.0} | kw
    before = counts(engine)
    with pytest.raises(ParkModelError) as err:
        add_point(engine, tiny_park, actor, catalogue=CAT, **args)
    assert err.value.problems[0][0] == field
    for w in words:
        assert w in str(err.value)
    assert counts(engine) == before


def test_add_point_checks_the_store_too(admin):
    """Without a park model the store decides: a tag there is refused, an unknown device too."""
    engine, actor = admin
    before = counts(engine)
    with pytest.raises(ParkModelError, match=r"point_id: point 'E01-M0.e_kwh' exists already"):
        add_point(engine, None, actor, "E01-M0", "e_kwh", "energy", "kWh", catalogue=CAT)
    with pytest.raises(ParkModelError, match=r"device_id: unknown device 'E09-X' in the store"):
        add_point(engine, None, actor, "E09-X", "p_kw", "active_power", "kW", catalogue=CAT)
    assert counts(engine) == before


@pytest.mark.parametrize("who", [OPERATOR, ENTERPRISE, Actor(None, "visitor")])
def test_only_admins_edit_points(admin, tiny_park, who):
    engine, _actor = admin
    before = counts(engine)
    with pytest.raises(AccessError, match="may not admin.point"):
        add_point(engine, tiny_park, who, "G0", "q_kvar", "reactive_power", "kvar", catalogue=CAT)
    with pytest.raises(AccessError, match="may not admin.point"):
        update_point_limits(engine, who, "G0.p_kw", 0.0, 10.0)
    assert counts(engine) == before


def test_add_point_stores_the_row_and_its_audit_row(admin, tiny_park):
    engine, actor = admin
    n_points, n_audit = counts(engine)
    pid = add_point(engine, tiny_park, actor, "E01-L1", "q_kvar", "reactive_power", "Mvar", -2.5, 2.5,
                    catalogue=CAT)
    row = point_row(engine, "E01-L1.q_kvar")
    assert row.id == pid and row.device_id == "E01-L1" and row.code == "q_kvar"
    assert (row.quantity, row.unit, row.min, row.max, row.writable) == ("reactive_power", "Mvar", -2.5, 2.5, False)
    assert counts(engine) == (n_points + 1, n_audit + 1)
    (log,) = audit_rows(engine, "point_added")
    assert log.target == "E01-L1.q_kvar" and log.user_id == actor.user_id
    assert log.detail == {"point_id": pid, "quantity": "reactive_power", "unit": "Mvar", "min": -2.5, "max": 2.5,
                          "writable": False}
    # the same point again is refused, and the system actor may add points too
    with pytest.raises(ParkModelError, match="exists already"):
        add_point(engine, None, actor, "E01-L1", "q_kvar", "reactive_power", "kvar", catalogue=CAT)
    assert add_point(engine, tiny_park, SYSTEM, "E02-M0", "e_kwh", "energy", "MWh", catalogue=CAT) > pid


def test_update_point_limits(admin):
    engine, actor = admin
    before = counts(engine)
    for lo, hi, field, words in [(10.0, 10.0, "max", "min 10.0 must be below max 10.0"),
                                 (float("nan"), 1.0, "min", "nan is not a finite number"),
                                 (0.0, "lots", "max", "'lots'")]:
        with pytest.raises(ParkModelError) as err:
            update_point_limits(engine, actor, "G0.p_kw", lo, hi)
        assert err.value.problems[0][0] == field and words in str(err.value)
    with pytest.raises(ParkModelError, match="tag: unknown point tag 'G0.nope'"):
        update_point_limits(engine, actor, "G0.nope", 0.0, 1.0)
    assert counts(engine) == before
    assert (point_row(engine, "G0.p_kw").min, point_row(engine, "G0.p_kw").max) == (0.0, 1e5)

    update_point_limits(engine, actor, "G0.p_kw", -60000.0, 60000.0)
    row = point_row(engine, "G0.p_kw")
    assert (row.min, row.max) == (-60000.0, 60000.0)
    (log,) = audit_rows(engine, "point_limits_set")
    assert log.target == "G0.p_kw" and log.user_id == actor.user_id
    assert log.detail == {"from": [0.0, 1e5], "to": [-60000.0, 60000.0]}
    update_point_limits(engine, actor, "G0.p_kw", -60000.0, 60000.0)        # unchanged: nothing written
    update_point_limits(engine, actor, "G0.p_kw", None, 60000.0)            # one-sided
    assert point_row(engine, "G0.p_kw").min is None
    assert len(audit_rows(engine, "point_limits_set")) == 2


# ============================================================================================== tariffs
BANDS_TEXT = (TARIFFS / "yunnan_tou_2026.yaml").read_text(encoding="utf-8")
AGENT_TEXT = (TARIFFS / "yunnan_agent_purchase_2026.yaml").read_text(encoding="utf-8")


@pytest.fixture
def tariffs(tmp_path) -> Path:
    """A copy of ``data/tariffs``."""
    return Path(shutil.copytree(TARIFFS, tmp_path / "tariffs"))


def test_the_real_tariff_files_pass():
    check = validate_tou_text(BANDS_TEXT, tariff_dir=TARIFFS)
    assert check.kind == "bands" and check.bands == load_tou_bands(TARIFFS / "yunnan_tou_2026.yaml")[0]
    for name in ("yunnan_agent_purchase_2026.yaml", "yunnan_market_contract_example.yaml"):
        check = validate_tou_text((TARIFFS / name).read_text(encoding="utf-8"), name, tariff_dir=TARIFFS)
        tariff, bands, mult = load_tariff(TARIFFS / name)
        assert check.kind == "tariff" and check.tariff == tariff and (check.bands, check.multipliers) == (bands, mult)


def test_check_tou_periods_names_overlaps_and_gaps():
    assert check_tou_periods([(0, 7, "valley"), (7, 24, "flat")]) == []
    probs = check_tou_periods([(0, 11, "flat"), (11, 14, "peak"), (14, 24, "flat"), (10, 12, "peak")], "periods")
    assert [(p, r) for p, _v, r in probs] == [("periods[3]", "10:00-12:00 overlaps periods[0]: 00:00-11:00"),
                                              ("periods[1]", "11:00-14:00 overlaps periods[3]: 10:00-12:00")]
    probs = check_tou_periods([(1, 8, "flat"), (2, 4, "peak"), (9, 20, "flat"), (18, 16, "peak")])
    assert [r for _p, _v, r in probs] == [
        "18:00-16:00: the end is not after the start (a period across midnight is two periods, ...-24:00 and "
        "00:00-...)",
        "00:00-01:00 is covered by no period (before bands[0])",
        "02:00-04:00 overlaps bands[0]: 01:00-08:00",
        "08:00-09:00 is covered by no period (between bands[0] and bands[2])",
        "20:00-24:00 is covered by no period (after bands[2])"]


@pytest.mark.parametrize("old, new, words", [
    ('{band: flat,   start: "09:00", end: "12:00"}', '{band: flat,   start: "09:00", end: "13:00"}',
     ["bands[5]: 12:00-16:00 overlaps bands[4]: 09:00-13:00"]),
    ('{band: flat,   start: "09:00", end: "12:00"}', '{band: flat,   start: "09:00", end: "11:30"}',
     ["bands: 11:30-12:00 is covered by no period (between bands[4] and bands[5])"]),
    ('{band: valley, start: "02:00"', '{band: offpeak, start: "02:00"',
     ["bands[1].band: unknown band 'offpeak' (known: peak, flat, valley)"]),
    ("peak: 1.5", "peak: -1.5", ["multiplier.peak: -1.5 is negative"]),
    ('end: "24:00"', "end: 24:00", ['bands[7].end: 1440 is not a time "HH:MM": quote times']),
    ('start: "16:00"', 'start: "16:75"', ["bands[6].start: '16:75' is not a time"]),
    ("multiplier: {peak: 1.5, flat: 1.0, valley: 0.5}", "multiplier: {peak: 1.5, flat: 1.0}",
     ["multiplier: no value for band 'valley'"]),
    ("timezone: Asia/Shanghai", "timezone: Europe/Berlin", ["timezone: 'Europe/Berlin'"]),
    ("bands:", "bandz:", ["unknown key 'bandz'"]),
])
def test_bad_band_texts_are_named(old, new, words):
    assert old in BANDS_TEXT
    with pytest.raises(CaseFileError) as err:
        validate_tou_text(BANDS_TEXT.replace(old, new, 1), tariff_dir=TARIFFS)
    for w in words:
        assert w in err.value.report()


@pytest.mark.parametrize("old, new, words", [
    ("export_price_cny_per_kwh: 0.0 ", "export_price_cny_per_kwh: -0.05 ",
     ["export_price_cny_per_kwh: -0.05 is negative"]),
    ("energy_price_flat_cny_per_kwh: 0.30", "energy_price_flat_cny_per_kwh: -0.30",
     ["energy_price_flat_cny_per_kwh: Input should be greater than or equal to 0"]),
    ("bands_file: yunnan_tou_2026.yaml", "bands_file: yunnan_tou_2027.yaml",
     ["bands_file: no band file 'yunnan_tou_2027.yaml'"]),
    ("bands_file: yunnan_tou_2026.yaml", "bands_file: ../../etc/passwd", ["bands_file: must be the name"]),
    ("assumptions:", "seasons:\n  - {months: [6, 7], multiplier: {peak: 1.2, flat: 1.0, valley: 0.6}}\n"
                     "  - {months: [7, 8], multiplier: {peak: 1.4, flat: 1.0}}\nassumptions:",
     ["seasons[1].multiplier: no value for band 'valley'", "seasons[1].months: month 7 is in seasons[0] too"]),
    ('valid_from: "2026-03-01"', 'valid_from: "2026-13-01"', ["valid_from: '2026-13-01' is not a date"]),
])
def test_bad_tariff_texts_are_named(old, new, words):
    assert old in AGENT_TEXT
    with pytest.raises(CaseFileError) as err:
        validate_tou_text(AGENT_TEXT.replace(old, new, 1), "yunnan_agent_purchase_2026.yaml", tariff_dir=TARIFFS)
    for w in words:
        assert w in err.value.report()


def test_an_overlapping_tariff_is_refused_and_the_file_untouched(admin, tariffs):
    engine, actor = admin
    path = tariffs / "yunnan_tou_2026.yaml"
    before, n = path.read_bytes(), counts(engine)
    bad = BANDS_TEXT.replace('{band: valley, start: "12:00", end: "16:00"}',
                             '{band: valley, start: "10:00", end: "16:00"}')
    with pytest.raises(CaseFileError) as err:
        save_tou_file(actor, bad, path, engine=engine)
    assert "bands[5]: 10:00-16:00 overlaps bands[4]: 09:00-12:00" in str(err.value)
    assert str(path) in str(err.value)
    assert path.read_bytes() == before and counts(engine) == n
    assert sorted(p.name for p in tariffs.iterdir()) == sorted(p.name for p in TARIFFS.iterdir())  # no .bak, no temp
    for who in (OPERATOR, ENTERPRISE):
        with pytest.raises(AccessError, match="may not admin.tariff"):
            save_tou_file(who, BANDS_TEXT.replace("peak: 1.5", "peak: 1.6"), path, engine=engine)
    assert path.read_bytes() == before and counts(engine) == n


def test_a_valid_band_edit_is_saved_kept_and_loadable(admin, tariffs):
    engine, actor = admin
    path = tariffs / "yunnan_tou_2026.yaml"
    old = path.read_bytes()
    assert load_tou_bands(path)[0][5] == (12.0, 16.0, "valley")              # cached by the loader
    new = (BANDS_TEXT.replace('{band: valley, start: "12:00", end: "16:00"}',
                              '{band: valley, start: "12:00", end: "15:00"}')
           .replace('{band: flat,   start: "16:00", end: "18:00"}', '{band: flat,   start: "15:00", end: "18:00"}')
           .replace("valley: 0.5}", "valley: 0.4}"))
    assert save_tou_file(actor, new.replace("\n", "\r\n"), path, engine=engine,
                         expected_sha256=hashlib.sha256(old).hexdigest()) == path
    assert path.read_text(encoding="utf-8") == new
    assert (tariffs / "yunnan_tou_2026.yaml.bak").read_bytes() == old
    bands, mult = load_tou_bands(path)
    assert bands[5] == (12.0, 15.0, "valley") and bands[6] == (15.0, 18.0, "flat") and mult["valley"] == 0.4
    tariff, bands2, mult2 = load_tariff(tariffs / "yunnan_agent_purchase_2026.yaml")
    assert bands2 == bands and mult2["valley"] == 0.4
    (log,) = audit_rows(engine, "tariff_saved")
    assert log.target == "tariff:yunnan_tou_2026.yaml" and log.user_id == actor.user_id
    assert log.detail["sha256_old"] == hashlib.sha256(old).hexdigest()
    assert log.detail["sha256_new"] == hashlib.sha256(new.encode()).hexdigest()
    assert log.detail["kind"] == "bands" and log.detail["backup"] == "yunnan_tou_2026.yaml.bak"
    assert not list(tariffs.glob(".*.tmp"))
    # a form opened on the old version is refused; the same text again writes nothing
    with pytest.raises(CaseFileError, match="was changed by someone else"):
        save_tou_file(actor, BANDS_TEXT, path, engine=engine, expected_sha256=hashlib.sha256(old).hexdigest())
    save_tou_file(actor, new, path, engine=engine)
    assert len(audit_rows(engine, "tariff_saved")) == 1 and path.read_text(encoding="utf-8") == new


def test_a_valid_tariff_edit_is_saved_and_loadable(admin, tariffs):
    engine, actor = admin
    path = tariffs / "yunnan_agent_purchase_2026.yaml"
    new = AGENT_TEXT.replace("energy_price_flat_cny_per_kwh: 0.30", "energy_price_flat_cny_per_kwh: 0.32")
    save_tou_file(actor, new, path, engine=engine)
    tariff, _bands, _mult = load_tariff(path)
    assert tariff.energy_price_flat_cny_per_kwh == 0.32
    assert (tariffs / "yunnan_agent_purchase_2026.yaml.bak").read_text(encoding="utf-8") == AGENT_TEXT
    # a new file: its id must be its name
    with pytest.raises(CaseFileError, match="id: must be the file's name 'other'"):
        save_tou_file(actor, new, tariffs / "other.yaml", engine=engine)
    assert not (tariffs / "other.yaml").exists()
    copy = new.replace("id: yunnan_agent_purchase_2026", "id: other")
    save_tou_file(actor, copy, tariffs / "other.yaml", engine=engine, expected_sha256="")
    assert load_tariff(tariffs / "other.yaml")[0].id == "other"
    assert not (tariffs / "other.yaml.bak").exists()
    assert audit_rows(engine, "tariff_saved")[-1].detail["sha256_old"] is None


def test_a_band_edit_that_breaks_a_tariff_naming_it_is_refused(admin, tariffs):
    """A tariff whose own multipliers name peak and flat only loads while the band file has no valley."""
    engine, actor = admin
    two = ("multiplier: {peak: 1.5, flat: 1.0}\nbands:\n  - {band: flat, start: \"00:00\", end: \"08:00\"}\n"
           "  - {band: peak, start: \"08:00\", end: \"24:00\"}\n")
    save_tou_file(actor, two, tariffs / "two_bands.yaml", engine=engine)
    tariff = AGENT_TEXT.replace("id: yunnan_agent_purchase_2026", "id: two_tariff").replace(
        "bands_file: yunnan_tou_2026.yaml", "bands_file: two_bands.yaml\nmultiplier: {peak: 1.3, flat: 1.0}")
    save_tou_file(actor, tariff, tariffs / "two_tariff.yaml", engine=engine)
    before = (tariffs / "two_bands.yaml").read_bytes()
    three = two.replace("{peak: 1.5, flat: 1.0}", "{peak: 1.5, flat: 1.0, valley: 0.5}").replace(
        '{band: flat, start: "00:00"', '{band: valley, start: "00:00"')
    with pytest.raises(CaseFileError) as err:
        save_tou_file(actor, three, tariffs / "two_bands.yaml", engine=engine)
    assert "tariff two_tariff.yaml would no longer load: multiplier: no value for band 'valley'" in str(err.value)
    assert (tariffs / "two_bands.yaml").read_bytes() == before


def test_bad_file_names_and_texts(admin, tariffs):
    engine, actor = admin
    for name in ("../escape.yaml", "x.yml", ".hidden.yaml"):
        with pytest.raises(CaseFileError):
            save_tou_file(actor, BANDS_TEXT, tariffs / name, engine=engine)
    with pytest.raises(CaseFileError, match="not valid YAML"):
        validate_tou_text("bands: [", tariff_dir=TARIFFS)
    with pytest.raises(CaseFileError, match="neither a band file"):
        validate_tou_text("default: yunnan_agent_purchase_2026\n", tariff_dir=TARIFFS)
    with pytest.raises(CaseFileError, match="more than the"):
        validate_tou_text("#" * 70_000, tariff_dir=TARIFFS)


def test_a_failed_audit_leaves_the_file_as_it_was(admin, tariffs, monkeypatch):
    engine, actor = admin
    path = tariffs / "yunnan_tou_2026.yaml"
    before, n = path.read_bytes(), counts(engine)

    def broken(*_a, **_k):
        raise RuntimeError("database gone")

    monkeypatch.setattr("anning_lib.portal.filesave.audit", broken)
    with pytest.raises(RuntimeError, match="database gone"):
        save_tou_file(actor, BANDS_TEXT.replace("peak: 1.5", "peak: 1.6"), path, engine=engine)
    assert path.read_bytes() == before and counts(engine) == n
    assert not list(tariffs.glob(".*.tmp"))


def test_a_failed_commit_puts_the_old_file_back(admin, tariffs):
    engine, actor = admin
    path = tariffs / "yunnan_tou_2026.yaml"
    before, n = path.read_bytes(), counts(engine)

    def refuse(_conn):
        raise RuntimeError("commit refused")

    sa.event.listen(engine, "commit", refuse)
    try:
        with pytest.raises(RuntimeError, match="commit refused"):
            save_tou_file(actor, BANDS_TEXT.replace("peak: 1.5", "peak: 1.6"), path, engine=engine)
    finally:
        sa.event.remove(engine, "commit", refuse)
    assert path.read_bytes() == before and counts(engine) == n
    assert not list(tariffs.glob(".*.tmp"))
