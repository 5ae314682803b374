"""``anning dispatch dr`` (anning_lib.cli.dr): JSON only on stdout, exit 1 when infeasible, bad input named.

The commands run on a three-resource park written below, so that every expected number is worked by hand:
a park battery SES (1000 kWh, 1000 kW, state of charge 0.5, limits 0.1 .. 0.9, efficiencies 1.0, cost 0) and
two curtailable lines, E1-L (2000 kW at 0.5 CNY/kWh) and E2-L (2000 kW at 2.0 CNY/kWh).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from anning_lib.cli.dr import dr_app
from anning_lib.errors import DispatchError

PARK_YAML = """\
meta:
  name: 需求响应测试园区
  name_en: DR test park
  version: 0.0.1
  year: 2026
  source: tests/test_dr_cli.py
  site: {latitude_deg: 24.92, longitude_deg: 102.48, altitude_m: 1850, timezone: Asia/Shanghai, origin: substation}
park_devices:
  - {id: GRID, name: grid, type: grid_meter, protocol: modbus, params: {},
     points: [{id: p_kw, quantity: active_power, unit: kW}]}
  - {id: SES, name: park battery, type: bess, protocol: modbus,
     params: {capacity_kwh: 1000, p_max_kw: 1000, eta_charge: 1.0, eta_discharge: 1.0, soc_min_frac: 0.1,
              soc_max_frac: 0.9, soc_init_frac: 0.5},
     points: [{id: p_kw, quantity: active_power, unit: kW}]}
enterprises:
  - id: E1
    name: one
    name_en: one
    sector: steel
    devices:
      - {id: E1-MM, name: main, type: main_meter, protocol: modbus, params: {},
         points: [{id: p_kw, quantity: active_power, unit: kW}]}
      - {id: E1-L, name: line, type: process_line, protocol: modbus,
         params: {profile: continuous, rated_kw: 5000, load_factor: 0.8,
                  flex: {kind: curtailable, max_reduction_kw: 2000, max_duration_h: 4, cost_cny_per_kwh: 0.5,
                         notice_min: 30}},
         points: [{id: p_kw, quantity: active_power, unit: kW}]}
  - id: E2
    name: two
    name_en: two
    sector: utilities
    devices:
      - {id: E2-MM, name: main, type: main_meter, protocol: modbus, params: {},
         points: [{id: p_kw, quantity: active_power, unit: kW}]}
      - {id: E2-L, name: line, type: process_line, protocol: modbus,
         params: {profile: continuous, rated_kw: 5000, load_factor: 0.8,
                  flex: {kind: curtailable, max_reduction_kw: 2000, max_duration_h: 4, cost_cny_per_kwh: 2.0,
                         notice_min: 30}},
         points: [{id: p_kw, quantity: active_power, unit: kW}]}
"""

# Mon 29 and Tue 30 June 2026 (ordinary working days) are the baseline days of the event on Wed 1 July,
# 14:00-15:00 in four 15-min intervals. The park column is -p_kw of SES (only needed during the event).
HISTORY_CSV = """\
ts,E1,E2,park
2026-06-29T14:00+08:00,5000,4000,
2026-06-29T14:15+08:00,5000,4000,
2026-06-29T14:30+08:00,5000,4000,
2026-06-29T14:45+08:00,5000,4000,
2026-06-30T14:00+08:00,5200,4400,
2026-06-30T14:15+08:00,5200,4400,
2026-06-30T14:30+08:00,5200,4400,
2026-06-30T14:45+08:00,5200,4400,
"""
EVENT_DAY_CSV = """\
ts,E1,E2,park
2026-07-01T14:00+08:00,3000,4000,-400
2026-07-01T14:15+08:00,3000,4000,-400
2026-07-01T14:30+08:00,3200,4000,-400
2026-07-01T14:45+08:00,3400,4000,-400
"""


@pytest.fixture
def files(tmp_path):
    (tmp_path / "park.yaml").write_text(PARK_YAML, encoding="utf-8")

    def event(**kw) -> str:
        raw = {"event_id": "T-1", "window_start": "2026-07-01T14:00+08:00", "window_end": "2026-07-01T15:00+08:00",
               "target_kw": 3000, "price_cny_per_kwh": 3.0, "notice_min": 60} | kw
        path = tmp_path / f"event_{len(list(tmp_path.glob('event_*')))}.json"
        path.write_text(json.dumps(raw), encoding="utf-8")
        return str(path)

    return tmp_path, event


def run_dr(*args):
    """The commands in a fresh process (the HiGHS banner comes on the first solve of a process), with the
    ``anning`` entry point's handling of library errors: one line on stderr, exit status 2."""
    code = ("import sys\nfrom anning_lib.cli.dr import dr_app\nfrom anning_lib.errors import AnningError\n"
            "sys.argv[0] = 'dr'\ntry:\n    dr_app()\nexcept AnningError as err:\n"
            "    print(f'anning: error: {err}', file=sys.stderr)\n    sys.exit(2)\n")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def invoke(*args):
    return CliRunner().invoke(dr_app, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------- allocate
def test_allocate_json_only_on_stdout_and_by_hand(files):
    tmp, event = files
    out = run_dr("allocate", "--event", event(), "--park", tmp / "park.yaml", "--json")
    assert out.returncode == 0, out.stderr
    assert "HiGHS" not in out.stdout
    doc = json.loads(out.stdout)                      # stdout is JSON and nothing else
    # 3000 kW for 1 h. SES costs 0 but holds only (0.5 - 0.1) x 1000 kWh x 1.0 = 400 kWh -> 400 kW for the hour;
    # then E1 (0.5 CNY/kWh) its full 2000 kW; E2 (2.0) the remaining 3000 - 400 - 2000 = 600 kW.
    # cost = 0 x 400 + 0.5 x 2000 + 2.0 x 600 = 1000 + 1200 = 2200 CNY; revenue 3.0 x 3000 kWh = 9000; margin 6800
    assert doc["status"] == "optimal" and doc["step_min"] == 15
    ent = doc["enterprises"]
    assert {k: v["energy_kwh"] for k, v in ent.items()} == pytest.approx({"park": 400, "E1": 2000, "E2": 600})
    assert ent["E2"]["cost_cny"] == pytest.approx(1200) and ent["E1"]["peak_kw"] == pytest.approx(2000)
    assert (doc["cost_cny"], doc["revenue_cny"], doc["margin_cny"]) == pytest.approx((2200, 9000, 6800))
    assert len(doc["intervals"]) == 4
    assert all(sum(i["kw"].values()) == pytest.approx(3000) for i in doc["intervals"])
    assert doc["resources"]["SES"]["enterprise_id"] == "park" and doc["excluded"] == {} and doc["notes"] == []


def test_allocate_notice_excludes_and_human_output(files):
    tmp, event = files
    # 20 min notice: E1-L and E2-L need 30 min, only SES (400 kW for 1 h) can answer a 300 kW call
    r = invoke("allocate", "--event", event(target_kw=300, notice_min=20), "--park", tmp / "park.yaml", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc["excluded"]) == {"E1-L", "E2-L"} and "30 min" in doc["excluded"]["E1-L"]
    assert doc["enterprises"]["park"]["energy_kwh"] == pytest.approx(300)      # 300 kW x 1 h
    r = invoke("allocate", "--event", event(), "--park", tmp / "park.yaml")
    assert r.exit_code == 0 and "margin 6,800.00 CNY" in r.stdout
    # stored energy valued 2.5 CNY/kWh plus 0.1 wear: SES costs 2.5 / 1.0 + 0.1 = 2.6 > E2's 2.0 -> unused;
    # E1 2000 kW + E2 1000 kW, cost 0.5 x 2000 + 2.0 x 1000 = 3000 CNY
    r = invoke("allocate", "--event", event(), "--park", tmp / "park.yaml", "--storage-value", 2.5,
               "--degradation", 0.1, "--json")
    doc = json.loads(r.stdout)
    assert doc["cost_cny"] == pytest.approx(3000) and doc["enterprises"]["E2"]["energy_kwh"] == pytest.approx(1000)
    assert doc["enterprises"]["park"]["energy_kwh"] == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize("target, message", [
    # per interval at most min(1000 kW, 400 kWh / 0.25 h) + 2000 + 2000 = 5000 kW
    (6000, "event.target_kw: 6000 kW asked, at most 5000 kW available in interval 2026-07-01T14:00:00+08:00"),
    # 5000 kW in each interval, but through the hour only 400 kWh + 2000 + 2000 = 4400 kWh -> 4400 kW held
    (4500, "event.target_kw: 4500 kW asked, at most 4400 kW can be held through the whole window"),
])
def test_allocate_infeasible_exit_1(files, target, message):
    tmp, event = files
    path = event(target_kw=target)
    out = run_dr("allocate", "--event", path, "--park", tmp / "park.yaml", "--json")
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    assert doc["status"] == "infeasible" and doc["message"].startswith(message)
    out = run_dr("allocate", "--event", path, "--park", tmp / "park.yaml")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1].startswith(f"anning: {message}")


def test_bad_event_field_is_named(files):
    tmp, event = files
    path = event(target_kw=-5)
    r = invoke("allocate", "--event", path, "--park", tmp / "park.yaml")
    assert isinstance(r.exception, DispatchError)      # typer lets it through; the `anning` entry point exits 2
    assert str(r.exception) == f"{path}: event.target_kw: -5 must be > 0"
    out = run_dr("allocate", "--event", path, "--park", tmp / "park.yaml", "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == f"anning: error: {path}: event.target_kw: -5 must be > 0"
    r = invoke("allocate", "--event", tmp / "missing.json")
    assert str(r.exception) == f"--event: file not found: {tmp / 'missing.json'}"


# ---------------------------------------------------------------------------------------------- flex
def test_flex_per_hour_by_hand(files):
    tmp, _ = files
    r = invoke("flex", "--day", "2026-07-01", "--park", tmp / "park.yaml", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [x["id"] for x in doc["resources"]] == ["SES", "E1-L", "E2-L"]
    # up: SES min(1000 kW, 400 kWh / 1 h) = 400 + 2000 + 2000 = 4400 kW; down: SES min(1000, (0.9 - 0.5) x 1000
    # / 1.0 / 1 h = 400) + 0 + 0 (curtailable) = 400 kW; 24 hours from local midnight
    assert len(doc["hours"]) == 24 and doc["hours"][0]["start"] == "2026-07-01T00:00:00+08:00"
    assert {(h["up_kw"], h["down_kw"]) for h in doc["hours"]} == {(4400.0, 400.0)}
    assert doc["resources"][0]["up_kw_1h"] == 400.0 and doc["resources"][0]["up_kw"] == 1000.0
    r = invoke("flex", "--day", "1 July", "--park", tmp / "park.yaml")
    assert str(r.exception) == "--day: '1 July' is not a date YYYY-MM-DD"


# ---------------------------------------------------------------------------------------------- settle
@pytest.mark.parametrize("separate_history", [False, True])
def test_settle_by_hand(files, separate_history):
    tmp, event = files
    measured = tmp / "measured.csv"
    if separate_history:
        (tmp / "history.csv").write_text(HISTORY_CSV, encoding="utf-8")
        measured.write_text(EVENT_DAY_CSV, encoding="utf-8")
        extra = ["--history", tmp / "history.csv"]
    else:
        measured.write_text(HISTORY_CSV + EVENT_DAY_CSV.split("\n", 1)[1], encoding="utf-8")
        extra = []
    r = invoke("settle", "--event", event(), "--measured", measured, *extra, "--n-days", 2,
               "--park", tmp / "park.yaml", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    e = doc["enterprises"]
    # allocation as in test_allocate_json_only_on_stdout_and_by_hand: park 400, E1 2000, E2 600 kWh; price 3.0
    # park (SES): baseline 0, measured -400 kW -> delivered 400 kWh, performance 1.0 -> paid 400 kWh, 1200 CNY
    # E1: baseline (5000 + 5200) / 2 = 5100 kW; measured mean (3000 + 3000 + 3200 + 3400) / 4 = 3150 kW
    #     -> delivered 1950 kWh, performance 1950 / 2000 = 0.975 >= 0.5 -> paid min(1950, 1.2 x 2000) = 1950 kWh,
    #     3.0 x 1950 = 5850 CNY
    # E2: baseline (4000 + 4400) / 2 = 4200 kW, measured 4000 -> delivered 200 kWh, performance 200 / 600 = 0.333
    #     < 0.5 -> no payment, penalty 0.5 x 3.0 x (600 - 200) = 600 CNY, net -600
    assert (e["park"]["delivered_kwh"], e["park"]["payment_cny"]) == pytest.approx((400, 1200))
    assert (e["E1"]["baseline_kwh"], e["E1"]["measured_kwh"], e["E1"]["delivered_kwh"]) == \
        pytest.approx((5100, 3150, 1950))
    assert (e["E1"]["performance_frac"], e["E1"]["paid_kwh"], e["E1"]["net_cny"]) == pytest.approx((0.975, 1950, 5850))
    assert (e["E2"]["delivered_kwh"], e["E2"]["payment_cny"], e["E2"]["penalty_cny"], e["E2"]["net_cny"]) == \
        pytest.approx((200, 0, 600, -600), abs=1e-3)
    # TOTAL: allocated 3000; baseline 0 + 5100 + 4200 = 9300; measured -400 + 3150 + 4000 = 6750;
    # delivered 400 + 1950 + 200 = 2550 kWh (2550 / 3000 = 0.85); paid 400 + 1950 = 2350 kWh;
    # payment 1200 + 5850 = 7050, penalty 600, net 6450 CNY
    t = doc["total"]
    assert (t["allocated_kwh"], t["baseline_kwh"], t["measured_kwh"], t["delivered_kwh"]) == \
        pytest.approx((3000, 9300, 6750, 2550))
    assert (t["performance_frac"], t["paid_kwh"]) == pytest.approx((0.85, 2350))
    assert (t["payment_cny"], t["penalty_cny"], t["net_cny"]) == pytest.approx((7050, 600, 6450), abs=1e-3)
    r = invoke("settle", "--event", event(), "--measured", measured, *extra, "--n-days", 2,
               "--park", tmp / "park.yaml")
    assert r.exit_code == 0 and "TOTAL" in r.stdout


@pytest.mark.parametrize("edit, message", [
    (("2026-06-30T14:15+08:00", "2026-06-30T14:15"),
     "column 'ts', line 7: '2026-06-30T14:15' has no time zone"),
    (("2026-06-29T14:00+08:00", "yesterday"), "column 'ts', line 2: 'yesterday' is not a date-time"),
    (("3200,4000", "3.2k,4000"), "column 'E1', line 12: '3.2k' is not a number [kW]"),
    (("ts,E1,E2,park", "ts,E1,E3,park"), "column 'E3' is not an enterprise of the park"),
    (("ts,E1,E2,park", "time,E1,E2,park"), "no column 'ts'"),
    (("2026-06-29T14:15+08:00", "2026-06-29T14:00+08:00"), "column 'ts', line 3: '2026-06-29T14:00+08:00' appears"),
    (("3400,4000,-400", "3400,4000,"), "column 'park': no value at 2026-07-01T14:45:00+08:00"),
])
def test_settle_bad_csv_names_file_column_and_value(files, edit, message):
    tmp, event = files
    measured = tmp / "measured.csv"
    measured.write_text((HISTORY_CSV + EVENT_DAY_CSV.split("\n", 1)[1]).replace(*edit), encoding="utf-8")
    r = invoke("settle", "--event", event(), "--measured", measured, "--n-days", 2, "--park", tmp / "park.yaml")
    assert isinstance(r.exception, DispatchError), r.output
    assert str(r.exception).startswith(f"{measured}: {message}")


def test_settle_too_little_history_and_missing_column(files):
    tmp, event = files
    measured = tmp / "measured.csv"
    measured.write_text(HISTORY_CSV + EVENT_DAY_CSV.split("\n", 1)[1], encoding="utf-8")
    # default 10 like days; the file has 2
    out = run_dr("settle", "--event", event(), "--measured", measured, "--park", tmp / "park.yaml", "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines()[-1] == (    # after the HiGHS banner
        f"anning: error: {measured}: column 'E1': history_kw: only 2 complete working days in the 60 days before "
        "2026-07-01, n_days=10 needed")
    (tmp / "history.csv").write_text(HISTORY_CSV, encoding="utf-8")
    measured.write_text(EVENT_DAY_CSV.replace(",E2", "").replace(",4000,", ","), encoding="utf-8")
    r = invoke("settle", "--event", event(), "--measured", measured, "--history", tmp / "history.csv",
               "--n-days", 2, "--park", tmp / "park.yaml")
    assert str(r.exception) == f"{measured}: no column 'E2'; enterprise E2 has 600.0 kWh allocated"
    r = invoke("settle", "--event", event(), "--measured", measured, "--select", "best")
    assert str(r.exception) == "--select: 'best' is not similar or all"


def test_settle_averages_five_minute_readings(files):
    tmp, event = files
    (tmp / "history.csv").write_text(HISTORY_CSV, encoding="utf-8")
    # the event day at 5 minutes: E1's three readings per quarter-hour are (2000, 3500, 3500), (3000, 3000, 3000),
    # (3200, 3200, 3200), (3400, 3400, 3400): the quarter-hour means are the 3000, 3000, 3200, 3400 kW of
    # test_settle_by_hand, so E1's settlement is the same (measured 3150 kW, delivered 1950 kWh, 5850 CNY); read
    # at the quarter-hour stamps only, the first would be 2000 kW
    rows = ["ts,E1,E2,park"]
    e1 = [2000, 3500, 3500, 3000, 3000, 3000, 3200, 3200, 3200, 3400, 3400, 3400]
    for i, v in enumerate(e1):
        rows.append(f"2026-07-01T14:{5 * i:02d}+08:00,{v},4000,-400")
    (tmp / "measured.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    r = invoke("settle", "--event", event(), "--measured", tmp / "measured.csv", "--history", tmp / "history.csv",
               "--n-days", 2, "--park", tmp / "park.yaml", "--json")
    assert r.exit_code == 0, r.output
    e1_out = json.loads(r.stdout)["enterprises"]["E1"]
    assert (e1_out["measured_kwh"], e1_out["delivered_kwh"], e1_out["net_cny"]) == pytest.approx((3150, 1950, 5850))
