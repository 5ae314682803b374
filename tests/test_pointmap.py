"""Gateway point maps: the real maps cover the park exactly once; bad maps are refused naming field and value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from anning_lib.errors import ConfigError, PointMapError
from anning_lib.ingest.pointmap import (
    SecretRef,
    check_against_park,
    load_pointmaps,
    mqtt_topic_table,
    parse_pointmap,
)
from anning_lib.park import load_park

REPO = Path(__file__).resolve().parent.parent
PARK = load_park()
RAW = {p: yaml.safe_load((REPO / "ingest" / f"{p}.yaml").read_text(encoding="utf-8")) for p in ("modbus", "opcua", "mqtt")}


def test_every_park_point_is_mapped_exactly_once():
    maps = load_pointmaps(REPO / "ingest", PARK)
    tags = [f"{d.device}.{p.point}" for c in maps.modbus.connections for d in c.devices for p in d.points]
    tags += [f"{d.device}.{p.point}" for c in maps.opcua.connections for d in c.devices for p in d.points]
    tags += list(mqtt_topic_table(maps.mqtt.connections[0], PARK).values())
    park_tags = [f"{d.id}.{p.id}" for _e, d, p in PARK.iter_points()]
    assert sorted(tags) == sorted(park_tags)
    assert len(tags) == len(set(tags))


def test_topic_convention():
    table = mqtt_topic_table(load_pointmaps(REPO / "ingest", PARK).mqtt.connections[0], PARK)
    assert table["anning/E04/E04-CEMS1/co2_t_h"] == "E04-CEMS1.co2_t_h"
    assert table["anning/park/WX/ghi_w_m2"] == "WX.ghi_w_m2"   # park-level devices use 'park'


def _problems(proto: str, edit) -> list[tuple[str, object, str]]:
    raw = copy.deepcopy(RAW[proto])
    edit(raw)
    return check_against_park(parse_pointmap(raw), PARK)


def _dev(raw, device_id):
    return next(d for d in raw["connections"][0]["devices"] if d["device"] == device_id)


@pytest.mark.parametrize("proto, edit, path, value", [
    ("modbus", lambda r: _dev(r, "SES").update(device="SES9"), "connections[0].devices[1].device", "SES9"),
    ("modbus", lambda r: _dev(r, "GRID")["points"].pop(), "connections[0].devices[0].points", "pf"),
    ("modbus", lambda r: _dev(r, "GRID")["points"][1].update(address=1), "connections[0].devices[0].points[1].address", 1),
    ("modbus", lambda r: _dev(r, "GRID")["points"][0].update(type="int16"), "connections[0].devices[0].points[0].type",
     "int16"),                                       # int16 at scale 1 cannot hold -440,000 kW
    ("modbus", lambda r: _dev(r, "SES")["points"][2].update(function="input", address=20),
     "connections[0].devices[1].points[2].function", "input"),   # p_set_kw is writable: must be holding
    ("modbus", lambda r: _dev(r, "E01-MM").update(unit_id=40), "connections[0].devices[3].unit_id", 40),
    ("opcua", lambda r: r["connections"][0]["devices"].append(copy.deepcopy(r["connections"][0]["devices"][0])),
     "connections[0].devices[24].device", "E01-EAF"),
    ("mqtt", lambda r: r["connections"][0]["devices"].append("E01-MM"), "connections[0].devices[25].device", "E01-MM"),
    ("mqtt", lambda r: r["connections"][0]["devices"].remove("WX"), "connections", "WX"),
])
def test_bad_maps_name_field_and_value(proto, edit, path, value):
    problems = _problems(proto, edit)
    assert (path, value) in [(p, v) for p, v, _reason in problems], problems


def test_schema_errors_name_the_file_and_field(tmp_path):
    raw = copy.deepcopy(RAW["modbus"])
    _dev(raw, "GRID")["points"][0]["type"] = "int64"
    (tmp_path / "modbus.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(PointMapError) as err:
        load_pointmaps(tmp_path, PARK)
    assert "modbus.yaml" in str(err.value) and "connections[0].devices[0].points[0].type" in str(err.value)


def test_secret_file_must_be_private(tmp_path, monkeypatch):
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SecretRef(file=Path("pw")).resolve(tmp_path)
    f.chmod(0o600)
    assert SecretRef(file=Path("pw")).resolve(tmp_path).get_secret_value() == "s3cret"
    assert "s3cret" not in repr(SecretRef(file=Path("pw")).resolve(tmp_path))   # never printed
    monkeypatch.delenv("ANNING_T_PW", raising=False)
    with pytest.raises(ConfigError, match="ANNING_T_PW is not set"):
        SecretRef(env="ANNING_T_PW").resolve(tmp_path)
