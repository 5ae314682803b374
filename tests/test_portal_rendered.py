"""The server-rendered pages' pieces worked by hand: the SVG charts (anning_lib.portal.svg), the big screen's
parts and the cache they are shared through.

Every chart is parsed as XML (a label with ``<`` or ``&`` must not break it) and its bars are measured: lengths
proportional to the values on a scale whose ticks are Heckbert's nice numbers, worked out below.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from anning_lib.portal import svg

NS = {"s": "http://www.w3.org/2000/svg"}


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


@pytest.mark.parametrize("lo, hi, expected", [
    # range 26.02 -> nice 50 (f = 2.6 -> 5); step 50/4 = 12.5 -> nice rounded 10; 0 .. ceil(26.02/10)*10
    (0.0, 26.02, [0, 10, 20, 30]),
    # range 0.962 -> nice 1 (f = 9.62 -> 10 x 0.1); step 0.25 -> 0.2 (f = 2.5 < 3 -> 2)
    (0.0, 0.962, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    # range 10 -> 10; step 2.5 -> 2; floor(-3/2) = -2 -> -4, ceil(7/2) = 4 -> 8
    (-3.0, 7.0, [-4, -2, 0, 2, 4, 6, 8]),
    # an empty range is widened to one unit below a positive value: 4 .. 5 in steps of 0.2
    (5.0, 5.0, [4.0, 4.2, 4.4, 4.6, 4.8, 5.0]),
])
def test_nice_ticks_by_hand(lo, hi, expected):
    assert svg.nice_ticks(lo, hi) == pytest.approx(expected)


def test_nice_ticks_of_nothing_is_zero_to_one():
    assert svg.nice_ticks(float("nan"), 3.0) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])


def _bars(root):
    return [(g.find("s:title", NS).text, g.find("s:rect", NS)) for g in root.iter(f"{{{NS['s']}}}g")
            if g.get("class") == "bar"]


def test_hbars_lengths_are_proportional_and_labels_escaped():
    labels = ["E01 <steel> & co", "E02", "E03"]
    root = parse(svg.hbars(labels, [10.0, 5.0, float("nan")], title="Load <now>", unit="MW"))
    assert root.get("aria-label") == "Load <now>"
    (t1, r1), (t2, r2), (t3, r3) = _bars(root)
    assert t1 == "E01 <steel> & co: 10.0 MW" and t3 == "E03: – MW"
    assert r3 is None                                          # no value: no bar
    # ticks 0..10 (step 2): the 10 MW bar spans the whole axis, the 5 MW bar half of it, both from zero
    w1, w2 = float(r1.get("width")), float(r2.get("width"))
    assert w2 == pytest.approx(w1 / 2, abs=0.1)
    assert float(r1.get("x")) == float(r2.get("x"))
    ticks = [t.text for t in root.iter(f"{{{NS['s']}}}text") if t.get("text-anchor") == "middle"]
    assert ticks == ["0", "2", "4", "6", "8", "10"]


def test_hbars_highlight_and_long_labels_cut():
    long = "E12 安宁示范负极材料与电解液厂以及一个很长很长很长的名字"
    root = parse(svg.hbars([long, "E02"], [1.0, 2.0], title="t", unit="tCO2/t", highlight=[True, False], digits=3))
    (title, _r), _ = _bars(root)
    assert title.startswith(long)                                # the tooltip keeps the whole name
    shown = [t.text for t in root.iter(f"{{{NS['s']}}}text") if t.get("text-anchor") == "end"]
    assert any(s and s.endswith("…") and long.startswith(s[:-1]) for s in shown)
    bold = [t for t in root.iter(f"{{{NS['s']}}}text") if t.get("font-weight") == "bold" and t.text != "t"]
    assert bold and bold[0].text.endswith("…")
    assert "1.000" in [t.text for t in root.iter(f"{{{NS['s']}}}text")]


def test_stacked_columns_stack_up_and_down_from_zero():
    frame = pd.DataFrame({"grid": [3.0, 2.0], "pv": [1.0, float("nan")], "bess": [-1.0, 0.0]}, index=["d1", "d2"])
    colours = {"grid": "#111111", "pv": "#222222", "bess": "#333333"}
    root = parse(svg.stacked_columns(frame, colours, title="daily", unit="MWh"))
    cols = [g for g in root.iter(f"{{{NS['s']}}}g") if g.get("class") == "col"]
    assert [c.find("s:title", NS).text for c in cols] == ["d1: grid 3.0; pv 1.0; bess -1.0 MWh",
                                                          "d2: grid 2.0; pv –; bess 0.0 MWh"]
    rects = {r.get("fill"): r for r in cols[0].findall("s:rect", NS)}
    # ticks -1 .. 4 (range 5 -> 5, step 1.25 -> 1): one unit is the same height everywhere
    unit = float(rects["#222222"].get("height"))
    assert float(rects["#111111"].get("height")) == pytest.approx(3 * unit, abs=0.2)
    assert float(rects["#333333"].get("height")) == pytest.approx(unit, abs=0.2)
    zero = float(rects["#111111"].get("y")) + float(rects["#111111"].get("height"))    # grid starts at zero
    assert float(rects["#333333"].get("y")) == pytest.approx(zero, abs=0.2)              # bess hangs below it
    assert float(rects["#222222"].get("y")) + unit == pytest.approx(float(rects["#111111"].get("y")), abs=0.2)
    assert len(cols[1].findall("s:rect", NS)) == 1              # NaN and 0 draw nothing
    legend = [t.text for t in root.iter(f"{{{NS['s']}}}text")][1:4]
    assert legend == ["grid", "pv", "bess"]


def _square(eid: str, x: float, load_kw: float) -> dict:
    return {"x": [x, x + 10, x + 10, x], "y": [0, 0, 10, 10], "enterprise_id": eid, "enterprise": f"name {eid}",
            "name": f"hall {eid}", "load_kw": load_kw}


def test_plan_colours_follow_the_twins_legend():
    from anning_lib.twin.colours import legend

    lg = legend("load_kw")
    polys = [_square("E01", 0, 7500.0), _square("E02", 20, 1500.0), _square("E03", 40, float("nan"))]
    root = parse(svg.plan(polys, lg, title="plan", public=False))
    fills = {p.get("data-enterprise"): p.get("fill") for p in root.iter(f"{{{NS['s']}}}polygon")}
    # data/twin/legend.yaml: edges 1,000 2,000 5,000 10,000 ...: 7,500 kW in [5,000, 10,000) is the 4th colour,
    # 1,500 kW in [1,000, 2,000) the 2nd; no value: the no-data grey
    assert fills == {"E01": "#21918c", "E02": "#443983", "E03": "#c8c8c8"}
    titles = [p.find("s:title", NS).text for p in root.iter(f"{{{NS['s']}}}polygon")]
    assert titles[0] == "E01 name E01 · hall E01: 7,500 kW"
    # the squares keep their shape (one scale for x and y) and E02 sits 20 m east of E01
    xs = [[float(v.split(",")[0]) for v in p.get("points").split()] for p in root.iter(f"{{{NS['s']}}}polygon")]
    ys = [[float(v.split(",")[1]) for v in p.get("points").split()] for p in root.iter(f"{{{NS['s']}}}polygon")]
    side = max(xs[0]) - min(xs[0])
    assert max(ys[0]) - min(ys[0]) == pytest.approx(side, abs=0.2)
    assert min(xs[1]) - min(xs[0]) == pytest.approx(2 * side, abs=0.2)
    assert "≥ 40,000" in [t.text for t in root.iter(f"{{{NS['s']}}}text")]


def test_public_plan_shows_no_value():
    from anning_lib.twin.colours import legend

    text = svg.plan([_square("E01", 0, 7500.0)], legend("load_kw"), title="plan", public=True)
    assert "7,500" not in text and "kW" not in text and "#21918c" not in text


# ------------------------------------------------------------------------------------------------ the big screen
SNAP = {"as_of": pd.Timestamp("2026-12-04 18:27:00", tz="Asia/Shanghai"), "load_kw": 224725.8, "pv_kw": 0.0,
        "grid_import_kw": 199797.6, "bess_p_kw": 26632.0, "bess_soc_frac": 0.7517, "today_e_kwh": 4530025.0,
        "today_co2_t": 476.2495, "today_co2_t_per_mwh": 0.10513, "grid_factor_t_per_mwh": 0.1073,
        "grid_factor_source": "MEE 2024 <Yunnan>",
        "enterprises": [{"enterprise_id": "E01", "name": "steel", "load_kw": 8834.8},
                        {"enterprise_id": "E02", "name": "rolling", "load_kw": None},
                        {"enterprise_id": "E03", "name": "alloy", "load_kw": 26021.6}]}


def test_overview_tiles_by_hand():
    from anning_lib.portal.overview_page import figures

    got = {k: (v, u) for k, v, u in figures(SNAP, 3, "en")}
    assert got["Park load"] == ("224.7", "MW") and got["Grid import"] == ("199.8", "MW")
    assert got["Storage SOC"] == ("75", "%") and got["Storage power (+ discharge)"] == ("26,632", "kW")
    assert got["Electricity today"] == ("4,530.0", "MWh") and got["Emissions today (purchased power)"] == \
        ("476.2", "tCO2")
    assert got["Carbon intensity"] == ("0.105", "tCO2/MWh") and got["Active alarms"] == ("3", "")
    assert "Active alarms" not in {k for k, _v, _u in figures(SNAP, None, "en")}


def test_overview_parts_for_a_manager_and_a_visitor():
    from anning_lib.park import load_park
    from anning_lib.portal.overview_page import body, enterprise_loads, parts

    park = load_park()
    assert enterprise_loads(SNAP)["label"].tolist() == ["E03 alloy", "E01 steel", "E02 rolling"]   # largest first
    p = parts(SNAP, park, "en", 0)
    bars = parse(p["ov-bars"])
    assert [t for t, _r in _bars(bars)] == ["E03 alloy: 26.0 MW", "E01 steel: 8.8 MW", "E02 rolling: – MW"]
    assert p["ov-head"] == "Data as of 2026-12-04 18:27:00 (refreshes every 5 s)"
    page = body(p, SNAP, "en")
    assert "MEE 2024 &lt;Yunnan&gt;" in page and 'id="ov-bars"' in page
    public = parts({**SNAP, "enterprises": []}, park, "en", None)
    assert public["ov-bars"] == "" and "kW" not in public["ov-plan"] and "Active alarms" not in public["ov-tiles"]
    assert 'id="ov-bars"' not in body(public, SNAP, "en")


def test_the_shared_cache_reuses_within_its_time_and_forgets_old_entries(monkeypatch):
    from anning_lib.portal import live

    clock = {"t": 1000.0}
    monkeypatch.setattr(live.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(live, "_CACHE", {})
    made = []

    def make(v):
        made.append(v)
        return v

    assert live.cached(("a",), lambda: make(1), ttl_s=4.0) == 1
    clock["t"] += 3.9
    assert live.cached(("a",), lambda: make(2), ttl_s=4.0) == 1        # 3.9 s < 4 s: reused
    clock["t"] += 0.2
    assert live.cached(("a",), lambda: make(3), ttl_s=4.0) == 3        # 4.1 s: made again
    clock["t"] += live.KEEP_S + 1
    live.cached(("b",), lambda: make(4))
    assert set(live._CACHE) == {("b",)} and made == [1, 3, 4]          # ("a",) older than KEEP_S: dropped
