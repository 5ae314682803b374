"""The 3-D twin in real headless Chromium (WebGL through SwiftShader), on a real portal and under Voilà.

The colour checks read the screenshot's pixels where a known building's roof lands on the screen: the projection
is worked here from the camera the scene sets (a pinhole camera, three.js axes), and the expected colour is the
legend's colour of the bin the written value falls in (``data/twin/legend.yaml``). Roofs are unlit
(``MeshBasicMaterial``), so their pixels are the legend's colour exactly. Screenshots: ``test-artifacts/twin/``
(or ``$ANNING_TEST_ARTIFACTS/twin``): look at them.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, free_port
from portal_harness import (
    DESKTOP,
    PHONE,
    Portal,
    login,
    offline_context,
    require_chromium,
    seed_store,
    wait_drawn,
)

require_chromium()

ARTIFACTS = Path(os.environ.get("ANNING_TEST_ARTIFACTS", REPO / "test-artifacts")) / "twin"
LEGEND = yaml.safe_load((REPO / "data" / "twin" / "legend.yaml").read_text(encoding="utf-8"))
CANVAS = (1000, 600)                 # the renderer of dashboards/twin.py [px]
TOLERANCE = 12                       # per channel, for the canvas's colour rounding [0..255]
# sample points on roofs, away from the flow lines rising from the enterprise's node and from its label:
E03_ROOF = (1400.0, 225.0, 38.0)     # E03 SAF: footprint x 1300..1420, y 200..250, 38 m high (data/park/anning.yaml)
E01_ROOF = (450.0, 215.0, 35.0)      # E01 MELT: x 300..480, y 200..260, 35 m


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    var = tmp_path_factory.mktemp("twin-portal")
    url = seed_store(var, days=1, statements=False)
    p = Portal(url, var, free_port()).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def pose():
    """The camera the page's scene sets (built here the way dashboards/twin.py builds it)."""
    from anning_lib.park import load_park
    from anning_lib.twin import flows
    from anning_lib.twin.scene import TwinView

    park = load_park()
    view = TwinView(park, flows.nodes(park), flows.edges(park), width_px=CANVAS[0], height_px=CANVAS[1])
    yield view.pose
    view.close()


# ------------------------------------------------------------------------------------------------ helpers
def _screen(page) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB")).astype(int)


def _canvas_box(page) -> dict:
    return page.locator("canvas").first.bounding_box()


def _canvas_pixels(page) -> np.ndarray:
    b = _canvas_box(page)
    x, y = math.ceil(b["x"]), math.ceil(b["y"])
    return _screen(page)[y:y + int(b["height"]) - 1, x:x + int(b["width"]) - 1]


def _wait_drawn_canvas(page, timeout_s: float = 60.0) -> np.ndarray:
    """The canvas once WebGL has drawn the park: many colours, not one flat fill."""
    page.locator("canvas").first.wait_for(timeout=timeout_s * 1000)
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        px = _canvas_pixels(page)
        if px.size and px.reshape(-1, 3).std(axis=0).max() > 15 and len(np.unique(px.reshape(-1, 3), axis=0)) > 100:
            return px
        time.sleep(0.5)
    raise AssertionError("the canvas stayed blank")


def _project(pose: dict, xyz, box: dict) -> tuple[float, float]:
    """Page pixel of a park point (x east, y north, z up [m]): three.js axes are (x, z, -y) and the scene's world is
    shifted so the camera's target is three.js's origin; then a pinhole camera looking from its position at the
    target with +Y up, vertical field of view ``fov_deg``, the canvas's aspect."""
    def three(p):
        return np.array([p[0], p[2], -p[1]], dtype=float)

    eye, target, q = three(pose["position_m"]), three(pose["target_m"]), three(xyz)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    d = q - eye
    depth = d @ forward
    tan_half = math.tan(math.radians(pose["fov_deg"]) / 2)
    aspect = box["width"] / box["height"]
    nx, ny = (d @ right) / (depth * tan_half * aspect), (d @ up) / (depth * tan_half)
    return box["x"] + (nx + 1) / 2 * box["width"], box["y"] + (1 - ny) / 2 * box["height"]


def _colour_at(page, pose: dict, xyz) -> tuple[int, int, int]:
    """Median colour of the 3 x 3 pixels where ``xyz`` lands."""
    x, y = _project(pose, xyz, _canvas_box(page))
    x, y = round(x), round(y)
    patch = _screen(page)[y - 1:y + 2, x - 1:x + 2]
    return tuple(int(v) for v in np.median(patch.reshape(-1, 3), axis=0))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _close(a, b) -> bool:
    return max(abs(x - y) for x, y in zip(a, b)) <= TOLERANCE


def _wait_colour(page, pose, xyz, hex_colour: str, timeout_s: float = 40.0) -> tuple[int, int, int]:
    """Wait for the next refreshes (every 5 s) until the point shows ``hex_colour``; the last colour seen."""
    t_end, seen = time.monotonic() + timeout_s, None
    while time.monotonic() < t_end:
        seen = _colour_at(page, pose, xyz)
        if _close(seen, _rgb(hex_colour)):
            return seen
        time.sleep(1.0)
    raise AssertionError(f"at {xyz}: saw {seen}, expected {hex_colour} {_rgb(hex_colour)}")


def _write(portal, values: dict[str, float]) -> None:
    """A reading of each tag, stamped now (newer than the seeded history)."""
    from anning_lib.store.engine import make_engine
    from anning_lib.store.timeseries import write_measurements

    engine = make_engine(portal.url)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    write_measurements(engine, pd.DataFrame({"tag": list(values), "ts": [now] * len(values),
                                             "value": list(values.values())}))
    engine.dispose()


def _mid(metric: str, i: int) -> float:
    """The middle of bin ``i`` of a legend: bins are [edge_{i-1}, edge_i) (legend.yaml's header)."""
    edges = LEGEND["metrics"][metric]["edges"]
    return (edges[i - 1] + edges[i]) / 2


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _open(browser, portal, user: str, size: dict, outside: list[str]):
    ctx = offline_context(browser, portal.base, size, outside)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, portal.base, user)
    page.goto(f"{portal.base}/twin")
    wait_drawn(page)
    _wait_drawn_canvas(page)
    return ctx, page, errors


# ------------------------------------------------------------------------------------------------ the tests
def test_widget_modules_come_from_the_portal(portal):
    """What ipywidgets_bokeh would fetch from unpkg.com is answered by the portal itself; nothing else is."""
    with urllib.request.urlopen(f"{portal.base}/twin-widgets/jupyter-threejs@%5E2.4.1/dist/index", timeout=30) as r:
        assert r.status == 200 and "javascript" in r.headers["Content-Type"]
        assert b"define(" in r.read(2000)
    with urllib.request.urlopen(f"{portal.base}/twin-widgets/three@%5E0.97.0/dist/index", timeout=30) as r:
        assert b"threejs.org/license" in r.read(200)
    for bad in ("/twin-widgets/jupyter-threejs@1/..%2F..%2Fsetup.py", "/twin-widgets/left-pad@1/dist/index"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(portal.base + bad, timeout=30)
        assert info.value.code == 404


def test_the_twin_draws_and_a_known_change_recolours_its_building(portal, browser, pose):
    """Admin: the canvas draws with WebGL; E03's main meter reads the middle of the legend's 5,000-10,000 kW bin,
    then of its 1,000-2,000 kW bin: E03's roof takes each bin's colour (E03 has no PV or storage, so its load is
    its main meter). A click on the roof names E03 and links to its enterprise page."""
    outside: list[str] = []
    ctx, page, errors = _open(browser, portal, "admin", DESKTOP, outside)
    assert page.locator("canvas").first.evaluate("c => [c.width, c.height]") == list(CANVAS)
    _shoot(page, "twin-admin-desktop")
    palette = LEGEND["palette"]
    for i in (3, 1):                                       # [5000, 10000) then [1000, 2000) kW
        _write(portal, {"E03-MM.p_kw": _mid("load_kw", i)})
        _wait_colour(page, pose, E03_ROOF, palette[i])
        _shoot(page, f"twin-admin-e03-bin{i}-desktop")
    _alarm_outlines_e03(portal, page, pose)
    x, y = _project(pose, E03_ROOF, _canvas_box(page))
    page.mouse.click(x, y)
    details = page.locator(".twin-details")
    details.get_by_text("E03").first.wait_for(timeout=20000)
    assert "SAF" in details.inner_text() and "1.5 MW" in details.inner_text()    # 1,500 kW = 1.5 MW
    link = details.locator("a")
    assert link.get_attribute("href") == "/enterprise?enterprise=E03"
    _shoot(page, "twin-admin-picked-desktop")
    link.click()
    page.wait_for_url("**/enterprise?enterprise=E03")
    wait_drawn(page)
    assert not errors, errors
    ctx.close()
    assert outside == []


def _alarm_outlines_e03(portal, page, pose) -> None:
    """An active alarm of E03 outlines its buildings in the legend's alarm colour: red pixels appear around E03's
    roof (there were none) and stay off the other enterprises."""
    from anning_lib.quality.alarms import raise_event
    from anning_lib.store.engine import make_engine

    def reds_near(xyz) -> int:
        x, y = _project(pose, xyz, _canvas_box(page))
        box = _screen(page)[int(y) - 25:int(y) + 25, int(x) - 40:int(x) + 40].reshape(-1, 3)
        return int((np.abs(box - _rgb(LEGEND["alarm"])).max(axis=1) <= 40).sum())

    assert reds_near(E03_ROOF) == 0
    engine = make_engine(portal.url)
    raise_event(engine, "test.twin", "E03", "a test alarm of E03", enterprise_id="E03")
    engine.dispose()
    t_end = time.monotonic() + 40
    while reds_near(E03_ROOF) < 20 and time.monotonic() < t_end:
        time.sleep(1.0)
    assert reds_near(E03_ROOF) >= 20 and reds_near(E01_ROOF) == 0
    _shoot(page, "twin-admin-alarm-desktop")


def test_an_enterprise_user_sees_only_its_own_enterprise_coloured(portal, browser, pose):
    outside: list[str] = []
    _write(portal, {"E01-MM.p_kw": _mid("load_kw", 3), "E01-PV.p_kw": 0.0})     # E01's load = main + PV
    ctx, page, errors = _open(browser, portal, "ent-e01", DESKTOP, outside)
    _wait_colour(page, pose, E01_ROOF, LEGEND["palette"][3])
    assert _close(_colour_at(page, pose, E03_ROOF), _rgb(LEGEND["no_data"]))    # another enterprise: no data
    _shoot(page, "twin-ent-e01-desktop")
    x, y = _project(pose, E03_ROOF, _canvas_box(page))
    page.mouse.click(x, y)
    details = page.locator(".twin-details")
    details.get_by_text("E03").first.wait_for(timeout=20000)
    assert "MW" not in details.inner_text() and details.locator("a").count() == 0
    assert not errors, errors
    ctx.close()
    assert outside == []


def test_a_visitor_sees_no_enterprise_values(portal, browser, pose):
    outside: list[str] = []
    ctx, page, errors = _open(browser, portal, "visitor", DESKTOP, outside)
    time.sleep(6)                                                                # past a refresh
    for roof in (E01_ROOF, E03_ROOF):
        assert _close(_colour_at(page, pose, roof), _rgb(LEGEND["no_data"])), roof
    _shoot(page, "twin-visitor-desktop")
    x, y = _project(pose, E03_ROOF, _canvas_box(page))
    page.mouse.click(x, y)
    details = page.locator(".twin-details")
    details.get_by_text("E03").first.wait_for(timeout=20000)
    assert "MW" not in details.inner_text() and details.locator("a").count() == 0
    # orbit (drag) and zoom (wheel) move the camera in the browser
    before = _canvas_pixels(page)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 150, y - 40, steps=10)
    page.mouse.up()
    page.mouse.wheel(0, -600)
    time.sleep(1.0)
    after = _canvas_pixels(page)
    assert np.abs(after - before).max(axis=2).astype(bool).mean() > 0.2      # most of the picture moved
    _shoot(page, "twin-visitor-orbited-desktop")
    assert not errors, errors
    ctx.close()
    assert outside == []


@pytest.mark.parametrize("user", ["admin", "ent-e01", "visitor"])
def test_the_twin_draws_on_a_phone(portal, browser, user):
    outside: list[str] = []
    ctx, page, errors = _open(browser, portal, user, PHONE, outside)
    box = _canvas_box(page)
    assert box["width"] <= PHONE["width"]                       # scaled to the phone, no sideways scrolling
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    _shoot(page, f"twin-{user}-phone")
    assert not errors, errors
    ctx.close()
    assert outside == []


def test_voila_serves_the_twin_notebook_on_its_own(portal, browser, tmp_path):
    """``voila dashboards/twin.ipynb`` (no portal): the notebook runs and its canvas draws in Chromium, its widget
    modules served by Voila from the installed jupyter-threejs lab extension."""
    port = free_port()
    env = os.environ | {"ANNING_DB_URL": portal.url, "ANNING_VAR_DIR": str(tmp_path)}
    with open(tmp_path / "voila.log", "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "voila"), str(REPO / "dashboards" / "twin.ipynb"),
                                 f"--port={port}", "--no-browser", "--Voila.ip=127.0.0.1"],
                                cwd=REPO, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            try:
                urllib.request.urlopen(base + "/voila/static/", timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.5)
        outside: list[str] = []
        ctx = offline_context(browser, base, DESKTOP, outside)
        page = ctx.new_page()
        page.goto(base + "/", timeout=120000)
        px = _wait_drawn_canvas(page, timeout_s=120)
        assert px.shape[1] >= CANVAS[0] - 2
        _shoot(page, "twin-voila-desktop")
        ctx.close()
        # Voila's own page template links Font Awesome from cdn.jsdelivr.net (aborted here: icons only, the twin
        # draws without it; docs/twin.md); the twin itself asks no other host for anything
        assert outside and all("fontawesome-free" in u for u in outside), outside
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
