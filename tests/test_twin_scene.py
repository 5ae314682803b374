"""The 3-D twin without a browser: geometry worked by hand, the legend's bins, the scene built once and updated in
place, picking, the scoped live state, and the twin notebook executed."""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from anning_lib.auth.access import SYSTEM, Actor
from anning_lib.park import load_park
from anning_lib.twin import colours, geometry, live, scene

LEGEND = yaml.safe_load((REPO / "data" / "twin" / "legend.yaml").read_text(encoding="utf-8"))
PALETTE = yaml.safe_load((REPO / "data" / "twin" / "carrier_colours.yaml").read_text(encoding="utf-8"))
PARK_YAML = yaml.safe_load((REPO / "data" / "park" / "anning.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def park():
    return load_park()


def _tri_area(t) -> float:
    return 0.5 * float(np.linalg.norm(np.cross(t[1] - t[0], t[2] - t[0])))


def _tris(mesh) -> np.ndarray:
    return mesh.positions_m.reshape(-1, 3, 3)


# ------------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("ring", [[(0, 0), (10, 0), (10, 20), (0, 20)], [(0, 20), (10, 20), (10, 0), (0, 0)]],
                         ids=["counter-clockwise", "clockwise"])
def test_a_10_by_20_m_footprint_5_m_high_is_a_box(ring):
    roof, walls, outline = geometry.prism(ring, 5.0)
    # roof: 2 triangles at z = 5 covering 10 x 20 = 200 m2, facing up, on the four corners
    assert roof.n_triangles == 2
    t = _tris(roof)
    assert np.all(t[:, :, 2] == 5.0)
    assert sum(_tri_area(x) for x in t) == pytest.approx(200.0)
    assert np.allclose(roof.normals, [0, 0, 1])
    assert {tuple(v) for v in t.reshape(-1, 3)} == {(0, 0, 5), (10, 0, 5), (10, 20, 5), (0, 20, 5)}
    # walls: 4 sides x 2 triangles; area = perimeter 60 m x 5 m = 300 m2; each faces out
    assert walls.n_triangles == 8
    w = _tris(walls)
    assert sum(_tri_area(x) for x in w) == pytest.approx(300.0)
    south = [x for x in w if np.allclose(x[:, 1], 0)]
    assert len(south) == 2
    assert {tuple(v) for x in south for v in x} == {(0, 0, 0), (10, 0, 0), (10, 0, 5), (0, 0, 5)}
    normals = walls.normals.reshape(-1, 3, 3)[:, 0]
    centres = w.mean(axis=1)
    out = {(0.0, -1.0): centres[:, 1] == 0, (1.0, 0.0): centres[:, 0] == 10, (0.0, 1.0): centres[:, 1] == 20,
           (-1.0, 0.0): centres[:, 0] == 0}
    for (nx, ny), on_side in out.items():
        assert np.allclose(normals[on_side], [nx, ny, 0]), (nx, ny)
    # the alarm outline: 4 top + 4 bottom + 4 vertical edges
    assert outline.shape == (12, 2, 3)


def test_a_concave_l_footprint_is_cut_into_triangles_inside_it():
    ell = [(0, 0), (10, 0), (10, 5), (5, 5), (5, 10), (0, 10)]         # 10 x 10 less the 5 x 5 corner: 75 m2
    tri = geometry.triangulate(ell)
    assert tri.shape == (4, 3)                                        # n - 2 triangles
    p = np.asarray(ell, dtype=float)
    assert sum(_tri_area(np.column_stack([p[t], [0, 0, 0]])) for t in tri) == pytest.approx(75.0)
    for t in tri:                                                     # counter-clockwise, none in the notch
        a, b, c = p[t]
        assert (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) > 0
        cx, cy = p[t].mean(axis=0)
        assert not (cx > 5 and cy > 5)
    # a vertex in the middle of an edge makes no zero-area triangle
    sq = np.array([(0, 0), (5, 0), (10, 0), (10, 10), (0, 10)], dtype=float)
    areas = [_tri_area(np.column_stack([sq[t], [0, 0, 0]])) for t in geometry.triangulate(sq)]
    assert min(areas) > 0 and sum(areas) == pytest.approx(100.0)


def test_park_axes_map_to_three_js_y_up_keeping_handedness():
    assert tuple(geometry.to_three([1.0, 2.0, 3.0])) == (1.0, 3.0, -2.0)     # east, up, minus north
    x, y, z = (geometry.to_three(v) for v in np.eye(3))
    assert np.allclose(np.cross(x, y), z)                                       # a rotation, not a mirror


def test_pv_rows_on_a_100_by_50_m_field_facing_south():
    """Rows 4 m deep at 30 deg, ground coverage 0.5 (pitch 8 m), 5 m inset, lower edge 1 m above ground.

    Along the facing direction (south) the field runs from y = 50 to y = 0; the first row's lower edge is 5 m
    inside the south edge (y = 5), the next at 13, 21, 29 and 37; a sixth (45) would end at 48.46 > 45. Each row
    spans x 5..95 (90 m) and rises 4 sin 30 = 2 m over 4 cos 30 = 3.464 m."""
    rule = {"row_depth_m": 4.0, "ground_coverage_ratio": 0.5, "low_edge_m": 1.0, "inset_m": 5.0}
    m = geometry.pv_rows([(0, 0), (100, 0), (100, 50), (0, 50)], 30.0, 180.0, 0.0, rule)
    assert m.n_triangles == 10
    v = m.positions_m
    low = sorted({round(y, 6) for y, z in zip(v[:, 1], v[:, 2]) if z == pytest.approx(1.0)})
    assert low == pytest.approx([5, 13, 21, 29, 37])
    high = sorted({round(y, 3) for y, z in zip(v[:, 1], v[:, 2]) if z == pytest.approx(3.0)})
    assert high == pytest.approx([5 + 3.464, 13 + 3.464, 21 + 3.464, 29 + 3.464, 37 + 3.464], abs=1e-3)
    assert v[:, 0].min() == 5.0 and v[:, 0].max() == 95.0
    assert sum(_tri_area(t) for t in _tris(m)) == pytest.approx(5 * 90 * 4)
    assert np.allclose(m.normals, [0, -0.5, math.sqrt(3) / 2])          # tilted 30 deg towards the south


def test_containers_for_8_mwh_in_a_40_by_20_m_yard():
    rule = {"length_m": 6.0, "width_m": 2.5, "height_m": 2.6, "gap_m": 2.0, "kwh_per_container": 3700}
    slots = geometry.container_slots([(0, 0), (40, 0), (40, 20), (0, 20)], 3, rule)   # ceil(8000 / 3700) = 3
    assert slots == [(5.0, 3.25, 0.0), (13.0, 3.25, 0.0), (21.0, 3.25, 0.0)]          # 2 + 3, 2 + 6 + 2 + 3, ...
    m = geometry.containers([(0, 0), (40, 0), (40, 20), (0, 20)], 8000.0, rule)
    assert m.n_triangles == 3 * 10                                   # a box: 2 roof + 4 x 2 wall triangles
    assert m.positions_m[:, 2].max() == pytest.approx(2.6)


def test_every_building_of_the_park_model_is_drawn_with_its_equipment(park):
    n_buildings = sum(len(e.get("buildings", [])) for e in PARK_YAML["enterprises"])
    parts = geometry.parts(park)
    assert sum(p.kind == "building" for p in parts) == n_buildings == 39
    devices = [d for d in PARK_YAML["park_devices"]] + [d for e in PARK_YAML["enterprises"] for d in e["devices"]]
    pv = [d["id"] for d in devices if d["type"] == "pv" and (d.get("building") or d.get("footprint_m"))]
    bess = [d["id"] for d in devices if d["type"] == "bess"]
    assert sorted(p.key for p in parts if p.kind == "pv") == sorted(pv)
    assert sorted(p.key for p in parts if p.kind == "bess") == sorted(bess) == ["E05-BESS", "E10-BESS", "E12-BESS",
                                                                                "SES"]
    assert [p.key for p in parts if p.kind == "substation"] == ["GRID"]
    e03 = next(p for p in parts if p.key == "E03/SAF")
    assert e03.top_m == 38 and _tris(e03.top)[:, :, 2].max() == 38


def test_node_positions_follow_the_documented_rules(park):
    from anning_lib.twin import flows

    pos = geometry.node_positions(park, flows.nodes(park))
    # E01: largest building without a PV array is MELT (ROLL carries E01-PV): roof centre (390, 230) at 35 m
    assert tuple(pos.loc["E01", ["x_m", "y_m", "z_m"]]) == pytest.approx((390.0, 230.0, 35.0))
    # the substation: centre of GRID's footprint (-110..-10, -10..60) at the 14 m gantry
    assert tuple(pos.loc["SUBSTATION", ["x_m", "y_m", "z_m"]]) == pytest.approx((-60.0, 25.0, 14.0))
    # the 110 kV line: 250 m west of the substation
    assert tuple(pos.loc["GRID", ["x_m", "y_m"]]) == pytest.approx((-310.0, 25.0))
    # a rooftop array: its roof's centre, on top of the panels (22 m + 0.3 m + 2.3 m x sin 10 deg)
    assert tuple(pos.loc["E01-PV", ["x_m", "y_m", "z_m"]]) == pytest.approx(
        (460.0, 312.5, 22.3 + 2.3 * math.sin(math.radians(10))))
    assert "LOSSES" not in pos.index                                  # a virtual node has no place


def test_route_arrow_and_line_width():
    path = geometry.route_path((0, 0, 10), (100, 0, 20), 90.0)
    assert path.tolist() == [[0, 0, 10], [0, 0, 90], [100, 0, 90], [100, 0, 20]]
    at, d = geometry.arrow_pose(path)
    assert at.tolist() == [50, 0, 90] and d.tolist() == [1, 0, 0]
    assert geometry.arrow_pose(path, forward=False)[1].tolist() == [-1, 0, 0]
    qx, qy, qz, qw = scene.quaternion_from_y(geometry.to_three([1, 0, 0]))   # +Y onto +X: -90 deg about Z
    assert (qx, qy, qz, qw) == pytest.approx((0, 0, -math.sqrt(0.5), math.sqrt(0.5)))
    rules = {"routes": {"width_px": [2.0, 10.0], "reference_kw": 40000.0}}
    assert geometry.flow_width_px(0.0, rules) == 0.0
    assert geometry.flow_width_px(10000.0, rules) == pytest.approx(2 + 8 * 0.5)    # sqrt(1/4)
    assert geometry.flow_width_px(90000.0, rules) == 10.0


def test_camera_sees_the_whole_park_from_the_south(park):
    parts = geometry.parts(park)
    x0, y0, x1, y1 = geometry.extent_m(parts)
    pose = scene.camera_pose((x0, y0, x1, y1), 1.6, top_m=70.0)
    assert pose["position_m"][1] < y0 and pose["position_m"][2] > 0          # south of the park, above it
    corners = [[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (0, 70)]
    assert np.abs(scene.view_ndc(pose, corners)).max() == pytest.approx(0.96, abs=1e-3)


# ------------------------------------------------------------------------------------------------ colours
def test_a_value_on_a_bin_edge_takes_the_bin_that_starts_there():
    lg = colours.legend("load_kw")
    edges, palette = LEGEND["metrics"]["load_kw"]["edges"], LEGEND["palette"]
    assert edges == [1000, 2000, 5000, 10000, 20000, 40000] and len(palette) == 7
    assert lg.bin_of(5000.0) == 3 and lg.colour_of(5000.0) == palette[3]      # [5000, 10000)
    assert lg.bin_of(4999.9) == 2 and lg.colour_of(4999.9) == palette[2]
    assert lg.colour_of(-300.0) == palette[0] and lg.colour_of(40000.0) == palette[6]
    assert lg.colour_of(float("nan")) == lg.colour_of(None) == LEGEND["no_data"] == "#c8c8c8"
    assert lg.rows()[0] == (palette[0], "< 1,000") and lg.rows()[3] == (palette[3], "5,000 – 10,000")
    assert lg.rows()[-1] == (palette[6], "≥ 40,000")
    assert colours.legend("co2_t_per_mwh").colour_of(0.09) == palette[5]      # [0.09, 0.10)
    assert colours.alarm_colour() == LEGEND["alarm"] not in palette and LEGEND["no_data"] not in palette
    assert colours.carrier_colour("steam") == PALETTE["carriers"]["steam"]
    assert colours.carrier_colour("plasma") == PALETTE["fallback"]


def test_a_legend_file_with_the_wrong_number_of_colours_is_refused(tmp_path):
    from anning_lib.errors import ConfigError

    bad = dict(LEGEND, metrics={"x": {"unit": "kW", "edges": [1, 2]}})
    (tmp_path / "legend.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(ConfigError, match="metrics.x.edges: 2 edges need 3 colours"):
        colours.legend("x", tmp_path / "legend.yaml")


# ------------------------------------------------------------------------------------------------ the scene
@pytest.fixture(scope="module")
def view(park):
    from anning_lib.twin import flows
    from anning_lib.twin.scene import TwinView

    v = TwinView(park, flows.nodes(park), flows.edges(park))
    yield v
    v.close()


def _model_ids(view) -> set[str]:
    from ipywidgets import Widget

    def walk(w, seen):
        if isinstance(w, Widget) and w.model_id not in seen:
            seen.add(w.model_id)
            for name in w.keys:
                v = getattr(w, name, None)
                for x in (v if isinstance(v, (list, tuple)) else v.values() if isinstance(v, dict) else [v]):
                    walk(x, seen)
        return seen
    return walk(view.renderer, set())


def test_update_changes_colours_flows_and_labels_in_place(view):
    palette, no_data = LEGEND["palette"], LEGEND["no_data"]
    before = _model_ids(view)
    scene = view.renderer.scene
    flows = pd.DataFrame([("SUBSTATION", "E03", "electricity", 12500.0), ("SES", "SUBSTATION", "electricity", 0.0),
                          ("GAS", "E04-B1", "natural_gas", 50000.0)], columns=["src", "dst", "carrier", "p_kw"])
    view.update({"E03": palette[4]}, alarms={"E01/MELT"}, flows=flows, labels={"E03": "E03 12.5 MW"})
    assert view.roofs["E03"].color == view.walls["E03"].color == palette[4]
    assert view.roofs["E01"].color == no_data                                 # not named: no data
    assert view.outlines["E01/MELT"].visible and not view.outlines["E01/ROLL"].visible
    r = view.routes[("SUBSTATION", "E03")]
    w0, w1 = view.rules["routes"]["width_px"]
    ref = view.rules["routes"]["reference_kw"]
    assert r["line"].visible and r["material"].linewidth == pytest.approx(w0 + (w1 - w0) * math.sqrt(12500 / ref))
    assert r["material"].color == PALETTE["carriers"]["electricity"]
    gas = view.routes[("GAS", "E04-B1")]
    assert gas["line"].visible and gas["material"].color == PALETTE["carriers"]["natural_gas"]
    assert gas["material"].linewidth == pytest.approx(w1)                      # at or above the reference
    assert not view.routes[("SES", "SUBSTATION")]["line"].visible             # 0 kW: no line
    assert view.labels["E03"][1].string == "E03 12.5 MW"
    # the arrow points from the substation towards E03 (east), then the other way when the flow turns
    ahead = np.array(view.routes[("SUBSTATION", "E03")]["arrow"].quaternion)
    view.update({}, flows=flows.assign(src=["E03", "SES", "GAS"], dst=["SUBSTATION", "SUBSTATION", "E04-B1"]))
    back = np.array(view.routes[("SUBSTATION", "E03")]["arrow"].quaternion)
    assert not np.allclose(ahead, back)
    assert view.roofs["E03"].color == no_data
    assert _model_ids(view) == before and view.renderer.scene is scene        # nothing built, nothing lost


def test_a_click_on_a_roof_names_its_building_and_enterprise(view):
    roof = next(m for m in view.pick.children if m.name == "E03")
    point = geometry.to_three([1400.0, 225.0, 38.0]) - view.origin_three    # on E03's furnace hall (SAF)
    part = view.part_of(roof, point)
    assert (part.key, part.enterprise_id, part.building_id) == ("E03/SAF", "E03", "SAF")
    ses = next(m for m in view.pick.children if m.name == "SES")
    assert view.part_of(ses, (0, 0, 0)).key == "SES"


def test_widget_assets_are_the_installed_files():
    from anning_lib.twin.scene import widget_asset

    index, three, pkg = (widget_asset("jupyter-threejs", "dist/index"), widget_asset("three", "dist/index"),
                         widget_asset("jupyter-threejs", "package.json"))
    assert index.read_text()[:400].find("define(") >= 0 and "threejs.org/license" in three.read_text()[:200]
    assert yaml.safe_load(pkg.read_text())["dependencies"]["three"].startswith("^0.")
    assert widget_asset("jupyter-threejs", "../../etc/passwd") is None and widget_asset("evil", "dist/index") is None


# ------------------------------------------------------------------------------------------------ live data
def _nodes(park):
    from anning_lib.twin import flows

    return flows.nodes(park)


def test_each_role_sees_only_its_flows(park):
    nodes = _nodes(park)
    f = pd.DataFrame([("GRID", "SUBSTATION", "electricity", 9.0), ("SUBSTATION", "E01", "electricity", 5.0),
                      ("SUBSTATION", "E02", "electricity", 4.0), ("E01-PV", "E01", "electricity", 1.0),
                      ("SES", "SUBSTATION", "electricity", 2.0)], columns=["src", "dst", "carrier", "p_kw"])
    pairs = lambda df: list(zip(df["src"], df["dst"]))
    assert len(live.visible_flows(f, nodes, Actor(1, "operator"))) == 5
    assert pairs(live.visible_flows(f, nodes, Actor(2, "enterprise", "E01"))) == [
        ("GRID", "SUBSTATION"), ("SUBSTATION", "E01"), ("E01-PV", "E01")]
    assert pairs(live.visible_flows(f, nodes, Actor(3, "visitor"))) == [("GRID", "SUBSTATION")]


def test_alarms_outline_the_building_of_their_device(park):
    keys = {p.key for p in geometry.parts(park)}
    got = live.alarm_parts(park, [{"device_id": "E01-EAF", "enterprise_id": "E01"},     # a furnace in MELT
                                  {"device_id": "SES", "enterprise_id": None},          # the storage yard
                                  {"device_id": "E03-MM", "enterprise_id": "E03"}], keys)  # a meter: all of E03
    assert got == {"E01/MELT", "SES", "E03/SAF", "E03/RAW"}


def test_details_show_figures_and_links_only_where_the_user_may(park):
    import html

    from anning_lib.i18n import t

    part = next(p for p in geometry.parts(park) if p.key == "E03/SAF")
    refusal = html.escape(t("tw_not_yours", "en"))
    fig = pd.DataFrame({"load_kw": [7500.0], "e_kwh": [1.0], "grid_e_kwh": [1.0], "co2_t": [0.1],
                        "co2_t_per_mwh": [0.1], "alarms": [0.0]}, index=pd.Index(["E03"], name="enterprise_id"))
    admin = live.details_html(park, part, {"figures": fig, "latest": {}}, Actor(1, "admin"), "en")
    assert "7.5 MW" in admin and 'href="/enterprise?enterprise=E03"' in admin
    empty = fig.iloc[:0]
    visitor = live.details_html(park, part, {"figures": empty, "latest": {}}, Actor(2, "visitor"), "en")
    assert "MW" not in visitor and "href" not in visitor and refusal in visitor
    other = live.details_html(park, part, {"figures": empty, "latest": {}}, Actor(3, "enterprise", "E01"), "en")
    assert "href" not in other and refusal in other


def test_frame_colours_the_visible_enterprises_by_the_legend():
    fig = pd.DataFrame({"load_kw": [1500.0, np.nan], "co2_t": [3.0, 1.0]}, index=["E01", "E02"])
    state = {"figures": fig, "alarms": {"E01/MELT"}, "flows": pd.DataFrame(columns=["src", "dst", "carrier", "p_kw"])}
    out = live.frame(state, "load_kw", ["E01", "E02", "E03", "SUBSTATION"])
    assert out["enterprise_colours"] == {"E01": LEGEND["palette"][1], "E02": LEGEND["no_data"]}
    assert out["labels"] == {"E01": "E01 1.5 MW", "E02": "E02 –", "E03": "E03", "SUBSTATION": "SUBSTATION"}
    assert live.frame(state, "co2_t", ["E01"])["enterprise_colours"]["E01"] == LEGEND["palette"][2]   # [2, 5) t


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from portal_harness import seed_store

    return seed_store(tmp_path_factory.mktemp("twin"), days=1, statements=False)


def test_twin_state_is_scoped_and_adds_up_to_the_overview(park, store):
    from anning_lib.portal.views import park_snapshot
    from anning_lib.store.engine import make_engine
    from anning_lib.store.timeseries import write_measurements
    from anning_lib.twin import flows

    engine = make_engine(store)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    write_measurements(engine, pd.DataFrame({"tag": ["E03-MM.p_kw"], "ts": [now], "value": [7500.0]}))
    keys = {p.key for p in geometry.parts(park)}
    nodes = flows.nodes(park)
    op = live.twin_state(engine, park, SYSTEM, nodes, keys, now=now)
    assert op["figures"].loc["E03", "load_kw"] == 7500.0                      # E03 has no PV or storage
    assert len(op["figures"]) == 13
    snap = park_snapshot(engine, park, SYSTEM, now, refresh=False)
    assert op["figures"]["co2_t"].sum() == pytest.approx(snap["today_co2_t"], rel=1e-9)   # the overview's method
    assert op["figures"]["e_kwh"].sum() == pytest.approx(snap["today_e_kwh"], rel=1e-9)
    e01 = live.twin_state(engine, park, Actor(9, "enterprise", "E01", "e"), nodes, keys, now=now)
    assert list(e01["figures"].index) == ["E01"]
    assert {n for f in zip(e01["flows"]["src"], e01["flows"]["dst"]) for n in f} <= {"GRID", "SUBSTATION", "E01",
                                                                                       "E01-PV", "GAS"}
    vis = live.twin_state(engine, park, Actor(8, "visitor", None, "v"), nodes, keys, now=now)
    assert vis["figures"].empty and list(zip(vis["flows"]["src"], vis["flows"]["dst"])) in (
        [("GRID", "SUBSTATION")], [("SUBSTATION", "GRID")])
    assert set(vis["latest"]) == {"GRID.p_kw"}
    engine.dispose()


def test_the_twin_notebook_runs_and_is_committed_clean(store, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    path = REPO / "dashboards" / "twin.ipynb"
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
    monkeypatch.setenv("ANNING_DB_URL", store)
    monkeypatch.setenv("ANNING_VAR_DIR", str(tmp_path))
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(path).parent)}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views, "the notebook shows no widget"


def test_close_frees_every_widget_even_when_the_comm_is_gone(park):
    # at the end of a portal session the Bokeh document is torn down first, so a comm's close raises; the widgets
    # must still leave ipywidgets' registry, or every closed twin page would keep its ~600 widgets in the server
    from ipywidgets.widgets.widget import _instances

    from anning_lib.twin import flows
    from anning_lib.twin.scene import TwinView

    before = set(_instances)
    v = TwinView(park, flows.nodes(park), flows.edges(park))
    mine = set(_instances) - before
    assert len(mine) > 100

    def dead(*_a, **_k):
        raise AttributeError("'DocumentCallbackManager' object has no attribute '_change_callbacks'")

    v.renderer.comm.close = dead
    assert v.close() >= 3
    assert not (set(_instances) & mine)
