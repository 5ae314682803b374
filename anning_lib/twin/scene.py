"""The 3-D twin as a pythreejs scene, built once from the park model (:mod:`.geometry`) and updated in place.

:class:`TwinView` holds the renderer, the camera, orbit controls (drag to turn, wheel to zoom, right-drag to pan)
and a picker. :meth:`TwinView.update` changes only material colours, flow lines' widths, colours and visibility,
arrow directions, alarm outlines' visibility and label text: the browser receives those few properties, never
the scene again.

Widgets per building kind: one roof mesh (unlit ``MeshBasicMaterial``, so its pixels are exactly the legend's
colour) and one wall mesh (lit, for depth) per enterprise; one mesh per piece of equipment; one outline per part
(shown in the alarm colour while an alarm is active); one line and one arrow per flow route; one sprite per label.

In a browser the widgets' JavaScript (``jupyter-threejs`` and its ``three``) comes from the page's own server:
:func:`widget_asset` maps the URLs ``ipywidgets_bokeh`` asks for to the files pythreejs installs, and
:func:`panel_pane` points the Panel pane at them (``anning_lib.portal.server`` serves them under
:data:`WIDGET_PREFIX`); Voilà serves the same files from the installed lab extension.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pythreejs as p3

from anning_lib.park.schema import Park
from anning_lib.twin import colours, geometry
from anning_lib.twin.geometry import Mesh, Part, to_three

log = logging.getLogger(__name__)

WIDGET_PREFIX = "/twin-widgets"
"""URL prefix under which the portal serves the widgets' JavaScript (``<prefix>/<package>@<version>/...``)."""
GROUND = "#e9ede6"
SKY = "#f4f7fa"
EQUIPMENT = {"pv": "#1f3a5f", "bess": "#8d6e63", "substation": "#5f6f7f"}
"""Equipment colours (PV navy, storage brown, substation slate): none in the legend's palette, grey or red."""
LABEL_PX = 48
"""Font size the label textures are drawn at [px] (sharp when scaled)."""


# ------------------------------------------------------------------------------------------------ camera (pure)
def quaternion_from_y(direction) -> tuple[float, float, float, float]:
    """The rotation ``(x, y, z, w)`` that turns three.js's +Y (a cone's axis) onto ``direction`` (three.js axes),
    as three.js ``Quaternion.setFromUnitVectors``."""
    d = np.asarray(direction, dtype="float64")
    d = d / np.linalg.norm(d)
    y = np.array([0.0, 1.0, 0.0])
    w = 1.0 + float(y @ d)
    if w < 1e-9:                                   # opposite: half a turn about x
        return (1.0, 0.0, 0.0, 0.0)
    q = np.append(np.cross(y, d), w)
    q = q / np.linalg.norm(q)
    return tuple(float(v) for v in q)


def look_at_quaternion(eye, target) -> tuple[float, float, float, float]:
    """The orientation ``(x, y, z, w)`` of a three.js camera at ``eye`` looking at ``target`` with +Y up (three.js
    axes), as ``Object3D.lookAt``: the camera's -Z axis points at the target."""
    z = np.asarray(eye, dtype="float64") - np.asarray(target, dtype="float64")
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.column_stack([x, y, z])
    w = math.sqrt(max(0.0, 1.0 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    if w < 1e-6:
        raise ValueError("camera looking straight up or down: give it an elevation below 90 degrees")
    return (float((m[2, 1] - m[1, 2]) / (4 * w)), float((m[0, 2] - m[2, 0]) / (4 * w)),
            float((m[1, 0] - m[0, 1]) / (4 * w)), float(w))


def view_ndc(pose: dict, xyz_m) -> np.ndarray:
    """Normalised device coordinates ``(n, 2)`` (-1..1 across the view) of park points seen from ``pose``
    (:func:`camera_pose`), by the pinhole model of a three.js ``PerspectiveCamera`` (points behind it: NaN)."""
    eye, target = to_three(pose["position_m"]), to_three(pose["target_m"])
    f = (target - eye) / np.linalg.norm(target - eye)
    r = np.cross(f, [0.0, 1.0, 0.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    d = to_three(np.atleast_2d(xyz_m)) - eye
    depth = d @ f
    half = math.tan(math.radians(pose["fov_deg"]) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.column_stack([(d @ r) / (depth * half * pose["aspect"]), (d @ u) / (depth * half)])
    out[depth <= 0] = np.nan
    return out


def camera_pose(extent: tuple[float, float, float, float], aspect: float, top_m: float = 0.0,
                fov_deg: float = 40.0, elevation_deg: float = 50.0, fill: float = 0.96) -> dict:
    """A camera south of the park looking north and down, just far enough to see the whole extent, centred.

    Parameters
    ----------
    extent : (x0, y0, x1, y1) [m]
    aspect : float
        width / height of the view [-].
    top_m : float
        height of the tallest thing to keep in view [m].
    fov_deg : float
        vertical field of view [deg].
    elevation_deg : float
        angle of the line of sight below the horizontal [deg].
    fill : float
        the farthest corner of the extent lands at this fraction of the half-view [-].

    Returns
    -------
    dict
        ``position_m`` and ``target_m`` (x, y, z, park axes), ``fov_deg``, ``aspect``, ``near_m``, ``far_m``.
    """
    x0, y0, x1, y1 = extent
    target = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    el = math.radians(elevation_deg)
    back = np.array([0.0, -math.cos(el), math.sin(el)])
    corners = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (0.0, top_m)])
    dist = max(x1 - x0, y1 - y0)
    half = math.tan(math.radians(fov_deg) / 2)
    for _ in range(50):    # NDC scale about as 1/distance; a ground shift dy moves the view by dy sin(elevation)
        pose = {"position_m": target + dist * back, "target_m": target, "fov_deg": fov_deg, "aspect": aspect}
        ndc = view_ndc(pose, corners)
        if not np.isfinite(ndc).all():
            dist *= 2.0
            continue
        target = target + [0.0, (ndc[:, 1].max() + ndc[:, 1].min()) / 2 * dist * half / math.sin(el), 0.0]
        dist *= float(np.abs(ndc).max()) / fill
    return {"position_m": target + dist * back, "target_m": target, "fov_deg": fov_deg, "aspect": aspect,
            "near_m": dist / 100, "far_m": dist * 10}


def _buffer(mesh: Mesh) -> p3.BufferGeometry:
    return p3.BufferGeometry(attributes={
        "position": p3.BufferAttribute(to_three(mesh.positions_m).astype("float32"), normalized=False),
        "normal": p3.BufferAttribute(to_three(mesh.normals).astype("float32"), normalized=False)})


def _segments(segments_m: np.ndarray) -> p3.LineSegmentsGeometry:
    return p3.LineSegmentsGeometry(positions=to_three(segments_m).astype("float32"))


class TwinView:
    """The park in 3-D, drawn once; :meth:`update` for live data, :meth:`on_pick` for clicks.

    Parameters
    ----------
    park : Park
    nodes : pandas.DataFrame
        the energy-flow nodes (``anning_lib.twin.flows.nodes``: ``node, kind, carrier, enterprise_id, device_id``).
    width_px, height_px : int
        the canvas [px] (a page may show it smaller; picking and orbiting follow the shown size).
    edges : pandas.DataFrame
        the graph's edges ``src, dst`` (``anning_lib.twin.flows.edges``): a route is drawn, hidden, for every pair
        of placed nodes; a flow between other nodes gets its route when it first appears.
    """

    def __init__(self, park: Park, nodes: pd.DataFrame, edges: pd.DataFrame, *, width_px: int = 1000,
                 height_px: int = 600, rules: dict | None = None):
        self.park, self.rules = park, rules or geometry.load_rules()
        self.parts = geometry.parts(park, self.rules)
        self.nodes = geometry.node_positions(park, nodes, self.parts, self.rules)
        self.route_z_m = geometry.route_height_m(park, self.rules)
        no_data = colours.no_data_colour()
        self._widgets: list = []
        self.roofs: dict[str, p3.MeshBasicMaterial] = {}
        self.walls: dict[str, p3.MeshLambertMaterial] = {}
        self._mesh_part: dict[str, object] = {}        # pythreejs model id -> enterprise id or Part
        self.pick = pick = p3.Group(children=self._buildings(no_data) + self._equipment())
        self.outlines = self._outlines()
        self.routes: dict[tuple[str, str], dict] = {}
        self.flow_group = p3.Group()
        r = self.rules["routes"]
        self._cone = self._keep(p3.ConeGeometry(radius=r["arrow_radius_m"], height=r["arrow_length_m"],
                                                radialSegments=12))
        for a, b in zip(edges["src"], edges["dst"]):
            if a in self.nodes.index and b in self.nodes.index:
                self._route(a, b)
        self.labels = self._labels()
        self.camera, self.controls = self._camera(width_px / height_px)
        self.picker = p3.Picker(controlling=pick, event="click")
        world = p3.Group(children=[self._ground(), pick, p3.Group(children=list(self.outlines.values())),
                                   self.flow_group, p3.Group(children=[s for s, _t in self.labels.values()])],
                         position=tuple(float(v) for v in -self.origin_three))
        scene = p3.Scene(children=[world, self.camera, p3.AmbientLight(color="#ffffff", intensity=0.6),
                                   p3.DirectionalLight(color="#ffffff", intensity=0.5, position=[-0.4, 1.0, 0.7])],
                         background=SKY)
        self.renderer = p3.Renderer(scene=scene, camera=self.camera, controls=[self.controls, self.picker],
                                    width=width_px, height=height_px, antialias=True)
        self._pick_callbacks: list[Callable[[Part], None]] = []
        self.picker.observe(self._picked, names=["point"])

    # -------------------------------------------------------------------------------------------- building
    def _keep(self, w):
        self._widgets.append(w)
        return w

    def _buildings(self, no_data: str) -> list:
        out = []
        for e in self.park.enterprises:
            mine = [p for p in self.parts if p.kind == "building" and p.enterprise_id == e.id]
            if not mine:
                continue
            self.roofs[e.id] = self._keep(p3.MeshBasicMaterial(color=no_data))
            self.walls[e.id] = self._keep(p3.MeshLambertMaterial(color=no_data))
            for mesh, mat in ((geometry.merge([p.top for p in mine]), self.roofs[e.id]),
                              (geometry.merge([p.sides for p in mine]), self.walls[e.id])):
                m = self._keep(p3.Mesh(_buffer(mesh), mat, name=e.id))
                self._mesh_part[m.model_id] = e.id
                out.append(m)
        return out

    def _equipment(self) -> list:
        out = []
        for p in self.parts:
            if p.kind == "building" or not p.top.n_triangles:
                continue
            mat = self._keep(p3.MeshLambertMaterial(color=EQUIPMENT.get(p.kind, "#888888"),
                                                    side="DoubleSide" if p.kind == "pv" else "FrontSide"))
            m = self._keep(p3.Mesh(_buffer(p.top), mat, name=p.key))
            self._mesh_part[m.model_id] = p
            out.append(m)
        return out

    def _outlines(self) -> dict[str, p3.LineSegments2]:
        mat = self._keep(p3.LineMaterial(color=colours.alarm_colour(), linewidth=4.0))
        return {p.key: self._keep(p3.LineSegments2(_segments(p.outline_m), mat, visible=False))
                for p in self.parts}

    def _ground(self) -> p3.Mesh:
        x0, y0, x1, y1 = geometry.extent_m(self.parts, self.nodes)
        pad = 0.05 * max(x1 - x0, y1 - y0)
        quad = [[x0 - pad, y0 - pad], [x1 + pad, y0 - pad], [x1 + pad, y1 + pad], [x0 - pad, y1 + pad]]
        roof, _walls, _o = geometry.prism(quad, 0.1, -0.2)
        return self._keep(p3.Mesh(_buffer(roof), p3.MeshBasicMaterial(color=GROUND)))

    def _route(self, a: str, b: str) -> dict | None:
        """The line and arrow of the flow route a - b (built hidden; None when a node is unknown)."""
        if (a, b) in self.routes or (b, a) in self.routes:
            return self.routes.get((a, b)) or self.routes.get((b, a))
        if a not in self.nodes.index or b not in self.nodes.index:
            log.warning("twin: no position for flow %s - %s; not drawn", a, b)
            return None
        path = geometry.route_path(self.nodes.loc[a, ["x_m", "y_m", "z_m"]].to_numpy(float),
                                   self.nodes.loc[b, ["x_m", "y_m", "z_m"]].to_numpy(float), self.route_z_m)
        seg = np.stack([path[:-1], path[1:]], axis=1)
        mat = self._keep(p3.LineMaterial(color=colours.carrier_colour("electricity"), linewidth=1.0,
                                         transparent=True, opacity=0.85))
        line = self._keep(p3.LineSegments2(_segments(seg), mat, visible=False))
        arrow_mat = self._keep(p3.MeshBasicMaterial(color=colours.carrier_colour("electricity")))
        arrow = self._keep(p3.Mesh(self._cone, arrow_mat, visible=False))
        route = {"path": path, "line": line, "material": mat, "arrow": arrow, "arrow_material": arrow_mat}
        self.routes[(a, b)] = route
        self.flow_group.children = (*self.flow_group.children, line, arrow)
        return route

    def _labels(self) -> dict[str, tuple[p3.Sprite, p3.TextTexture]]:
        out = {}
        for node, r in geometry.label_anchors(self.nodes, self.rules).iterrows():
            tex = self._keep(p3.TextTexture(string=str(node), size=LABEL_PX, color="#0f2a3d", squareTexture=True))
            mat = self._keep(p3.SpriteMaterial(map=tex, transparent=True, depthTest=False, depthWrite=False))
            sprite = self._keep(p3.Sprite(material=mat, position=tuple(to_three([r.x_m, r.y_m, r.z_m])),
                                          scale=self._label_scale(str(node)), renderOrder=10))
            out[str(node)] = (sprite, tex)
        return out

    def _label_scale(self, text: str) -> tuple[float, float, float]:
        """A square sprite whose text band is ``labels.height_m`` high: the texture is as wide as the text
        (about 0.6 em a character), and as high, so the side is the text's width [m]."""
        h = self.rules["labels"]["height_m"]
        side = h * max(1.0, (0.6 * LABEL_PX * len(text) + 2) / (LABEL_PX + 2))
        return (side, side, 1.0)

    def _camera(self, aspect: float):
        """The camera of :func:`camera_pose`. The scene's ``world`` group is shifted by
        ``-origin_three`` (the view's centre in three.js axes), so the camera looks at, and orbits, three.js's
        origin: pythreejs builds its ``OrbitControls`` looking at (0, 0, 0) whatever target it is given."""
        pose = camera_pose(geometry.extent_m(self.parts), aspect,       # the feeds may lie outside
                           top_m=max(p.top_m for p in self.parts))
        self.pose, self.origin_three = pose, to_three(pose["target_m"])
        eye = to_three(pose["position_m"]) - self.origin_three
        cam = self._keep(p3.PerspectiveCamera(position=tuple(float(v) for v in eye), fov=pose["fov_deg"],
                                              aspect=aspect, near=pose["near_m"], far=pose["far_m"],
                                              quaternion=look_at_quaternion(eye, (0.0, 0.0, 0.0))))
        return cam, p3.OrbitControls(controlling=cam, target=(0.0, 0.0, 0.0), maxPolarAngle=math.radians(85))

    # -------------------------------------------------------------------------------------------- updating
    def update(self, enterprise_colours: Mapping[str, str], alarms: set[str] | frozenset[str] = frozenset(),
               flows: pd.DataFrame | None = None, labels: Mapping[str, str] | None = None) -> None:
        """Show new live data (nothing is rebuilt; unchanged values are not sent again).

        Parameters
        ----------
        enterprise_colours : mapping
            enterprise id -> ``#rrggbb`` of its roofs and walls; an enterprise not named gets the no-data colour.
        alarms : set of str
            keys of the parts (:attr:`geometry.Part.key`) to outline in the alarm colour.
        flows : pandas.DataFrame, optional
            ``src, dst, carrier, p_kw`` (p_kw >= 0 [kW], from src to dst); routes not named are hidden.
        labels : mapping, optional
            label node -> its text.
        """
        no_data = colours.no_data_colour()
        for eid, mat in self.roofs.items():
            c = enterprise_colours.get(eid, no_data)
            mat.color = c
            self.walls[eid].color = c
        for key, outline in self.outlines.items():
            outline.visible = key in alarms
        self._show_flows(flows if flows is not None else pd.DataFrame(columns=["src", "dst", "carrier", "p_kw"]))
        for node, text in (labels or {}).items():
            if node in self.labels:
                sprite, tex = self.labels[node]
                tex.string = text
                sprite.scale = self._label_scale(text)

    def _show_flows(self, flows: pd.DataFrame) -> None:
        net: dict[tuple[str, str], tuple[float, str]] = {}
        for r in flows.itertuples(index=False):
            if pd.isna(r.p_kw) or self._route(r.src, r.dst) is None:
                continue
            key = (r.src, r.dst) if (r.src, r.dst) in self.routes else (r.dst, r.src)
            sign = 1.0 if key == (r.src, r.dst) else -1.0
            p, _c = net.get(key, (0.0, r.carrier))
            net[key] = (p + sign * float(r.p_kw), r.carrier)
        for key, route in self.routes.items():
            p_kw, carrier = net.get(key, (0.0, None))
            width = geometry.flow_width_px(abs(p_kw), self.rules)
            route["line"].visible = route["arrow"].visible = width > 0
            if width > 0:
                colour = colours.carrier_colour(carrier)
                route["material"].linewidth, route["material"].color = width, colour
                route["arrow_material"].color = colour
                pos, d = geometry.arrow_pose(route["path"], forward=p_kw > 0)
                route["arrow"].position = tuple(float(v) for v in to_three(pos))
                route["arrow"].quaternion = quaternion_from_y(to_three(d))

    # -------------------------------------------------------------------------------------------- picking
    def on_pick(self, callback: Callable[[Part], None]) -> None:
        """Call ``callback(part)`` with the building or equipment the user clicks."""
        self._pick_callbacks.append(callback)

    def part_of(self, obj, point_world) -> Part | None:
        """The part a picked mesh and point (three.js world coordinates) belong to."""
        if obj is None:
            return None
        hit = self._mesh_part.get(obj.model_id)
        if isinstance(hit, Part):
            return hit
        if hit is None:
            return None
        x, _y, z = np.asarray(point_world, dtype="float64") + self.origin_three
        return geometry.part_at(self.parts, float(x), -float(z), enterprise_id=hit)

    def _picked(self, change) -> None:
        part = self.part_of(self.picker.object, self.picker.point)
        if part is None:
            return
        for cb in self._pick_callbacks:
            try:
                cb(part)
            except Exception:
                log.exception("twin: pick callback failed for %s", part.key)

    def close(self) -> int:
        """Close every widget of the scene, down to each geometry's buffers (a page does it when its session
        ends); returns how many.

        At the end of a session the Bokeh document the widgets talked through is already torn down, so closing a
        widget's comm can fail; ipywidgets has dropped the widget from its registry by then (``Widget.close``
        does that first), which is what frees it, so the failure is ignored and the next widget closed."""
        ws = widget_tree(self.renderer, self.picker, self.controls, *self._widgets)
        for w in ws:
            try:
                w.close()
            except Exception:  # noqa: BLE001 - the document's callbacks are gone; the registry entry is not
                w.comm = None
        return len(ws)


def widget_tree(*roots) -> list:
    """Every widget reachable from ``roots`` through their synced traits (children, materials, geometries,
    buffer attributes...), each once."""
    from ipywidgets import Widget

    seen: dict[int, Widget] = {}
    stack = list(roots)
    while stack:
        w = stack.pop()
        if not isinstance(w, Widget) or id(w) in seen:
            continue
        seen[id(w)] = w
        for name in w.keys:
            v = getattr(w, name, None)
            items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else (v,)
            stack.extend(x for x in items if isinstance(x, Widget))
    return list(seen.values())


# ------------------------------------------------------------------------------------------------ in a page
WIDGET_FILES = {("jupyter-threejs", "dist/index"): ("static", "index.js"),
                ("jupyter-threejs", "package.json"): ("labextension", "package.json"),
                ("three", "dist/index"): ("static", "three.js")}
"""What ``ipywidgets_bokeh``'s loader asks for (``<package>@<version>/<file>``) -> the file in the pythreejs
package: the AMD bundle of ``jupyter-threejs``, its ``package.json`` (read for the ``three`` version it needs)
and that ``three``."""


def widget_asset(package: str, file: str) -> Path | None:
    """The installed file answering ``<WIDGET_PREFIX>/<package>@<version>/<file>`` (None: not ours, 404)."""
    where = WIDGET_FILES.get((package, file.removesuffix(".js")))
    return None if where is None else Path(p3.__file__).parent.joinpath(*where)


@lru_cache(maxsize=1)
def _pane_class():
    import panel as pn

    class LocalIPyWidget(pn.pane.IPyWidget):
        """An ipywidget pane whose widget modules load from this server (:data:`WIDGET_PREFIX`), not unpkg.com."""

        priority = 0                              # never picked by pn.panel() for other widgets

        def _get_ipywidget(self, obj, doc, root, comm, **kwargs):
            model = super()._get_ipywidget(obj, doc, root, comm, **kwargs)
            if hasattr(model, "cdn"):
                model.cdn = WIDGET_PREFIX
                model.stylesheets = [*model.stylesheets, *self.stylesheets]    # not passed on by Panel
            return model

    return LocalIPyWidget


def panel_pane(view: TwinView, **kwargs):
    """The renderer as a Panel pane for a page of the portal (after ``pn.extension("ipywidgets")``).

    Also keeps the page air-gapped: Panel's ipywidgets support adds Font Awesome style sheets from two CDNs
    (``panel.io.ipywidget`` on the ipywidgets_bokeh model, ``pn.extension`` on the page); both are replaced by
    the copy Panel ships and serves itself."""
    import panel as pn
    from ipywidgets_bokeh.widget import IPyWidget

    local = "static/extensions/panel/bundled/font-awesome/css/all.min.css"
    IPyWidget.__css__ = [local]
    pn.config.css_files = [local if "font-awesome" in str(u) else u for u in pn.config.css_files]
    return _pane_class()(view.renderer, **kwargs)
