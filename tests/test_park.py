"""The park model file and its validation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anning_lib.errors import ParkModelError
from anning_lib.park import load_park, parse_park

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
PARK_FILE = DATA / "park" / "anning.yaml"


@pytest.fixture(scope="module")
def raw():
    with open(PARK_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def test_shipped_park_covers_the_sectors_and_the_park_assets():
    park = load_park(PARK_FILE, DATA)
    assert len(park.enterprises) >= 12
    sectors = {e.sector for e in park.enterprises}
    assert {"steel", "petrochemical", "phosphorus_chemical", "battery_materials", "utilities"} <= sectors
    park_types = [d.type for d in park.park_devices]
    assert park_types.count("grid_meter") == 1 and "bess" in park_types
    grid = next(d for d in park.park_devices if d.type == "grid_meter")
    assert grid.p.voltage_kv == 110.0
    for e in park.enterprises:
        types = {d.type for d in e.devices}
        assert "main_meter" in types and types & {"sub_meter", "process_line"}, e.id
        assert e.buildings and all(b.height_m > 0 and len(b.footprint_m) >= 3 for b in e.buildings), e.id
    kinds = {d.type for _e, d in park.iter_devices()}
    assert {"pv", "bess", "boiler", "process_line", "carbon_monitor", "sub_meter"} <= kinds


def test_every_rating_of_a_device_is_backed_by_an_assumption_or_a_default(raw):
    """Devices with ratings carry an ``assumptions`` mapping naming the basis of their main numbers."""
    park = parse_park(raw, DATA)
    rated = [d for _e, d in park.iter_devices() if d.type in ("pv", "bess", "boiler", "process_line", "sub_meter")]
    missing = [d.id for d in rated if not d.assumptions]
    assert missing == []


def test_bad_unit_names_path_and_value(raw):
    bad = yaml.safe_load(yaml.safe_dump(raw, allow_unicode=True))
    bad["enterprises"][3]["devices"][1]["points"][0]["unit"] = "kwhh"
    with pytest.raises(ParkModelError) as info:
        parse_park(bad, DATA)
    assert str(info.value).startswith("enterprises[3].devices[1].points[0].unit: unknown unit 'kwhh'")


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda r: r["enterprises"][0]["devices"][1].update(params={**r["enterprises"][0]["devices"][1]["params"], "rated_kw": -5}),
         "enterprises[0].devices[1].params.rated_kw: Input should be greater than 0 (got -5)"),
        (lambda r: r["enterprises"][1]["devices"][1].update(building="NOPE"),
         "enterprises[1].devices[1].building: unknown building 'NOPE'"),
        (lambda r: r["enterprises"][2]["devices"][0].update(id="E01-MM"),
         "enterprises[2].devices[0].id: duplicate device id 'E01-MM'"),
        (lambda r: r["enterprises"][0]["devices"][0].update(carrier="plasma"),
         "enterprises[0].devices[0].carrier: unknown carrier 'plasma'"),
        (lambda r: r["park_devices"][0]["points"][0].update(quantity="vibes"),
         "park_devices[0].points[0].quantity: unknown quantity 'vibes'"),
    ],
)
def test_bad_fields_are_named(raw, edit, expected):
    bad = yaml.safe_load(yaml.safe_dump(raw, allow_unicode=True))
    edit(bad)
    with pytest.raises(ParkModelError) as info:
        parse_park(bad, DATA)
    assert str(info.value).startswith(expected), str(info.value)


def test_a_new_carrier_is_data_only(raw, tmp_path):
    """Adding hydrogen-rich 'syngas' to carriers.yaml lets a device use it: no code involved."""
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    with open(data / "carriers.yaml", "a", encoding="utf-8") as fh:
        fh.write("  syngas: {name_zh: 合成气, name_en: syngas, flow_quantity: volume_flow_gas, unit: Nm3}\n")
    edited = yaml.safe_load(yaml.safe_dump(raw, allow_unicode=True))
    edited["enterprises"][5]["devices"][0]["carrier"] = "syngas"
    park = parse_park(edited, data)
    assert park.enterprises[5].devices[0].carrier == "syngas"


def test_cli_reports_one_line_and_exit_2(raw, tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(raw, allow_unicode=True))
    bad["enterprises"][3]["devices"][1]["points"][0]["unit"] = "kwhh"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    anning = Path(sys.executable).with_name("anning")
    res = subprocess.run([str(anning), "park", "check", str(path)], capture_output=True, text=True)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "enterprises[3].devices[1].points[0].unit: unknown unit 'kwhh'" in lines[0]
