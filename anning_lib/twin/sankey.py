"""Draw the period links of :mod:`anning_lib.twin.flows` as a Sankey (holoviews ``hv.Sankey``, bokeh backend).

Labels come from the message catalogue (``data/i18n/flows.yaml``, zh_CN or en; carrier names from
``data/carriers.yaml``), colours from ``data/twin/carrier_colours.yaml``: a link has its carrier's colour, a node
the colour of the carrier it puts out.

A Sankey must be acyclic, but a period has flows both ways on one edge (import and export, charging and
discharging). :func:`plot_frames` therefore draws a flow *into* a source node (the grid, a PV array, a storage, a
fuel supply) into a copy of it on the right (``SES (charging)``, ``Grid (export)``), a flow from an enterprise back
into the substation out of a copy of the enterprise on the left (``E01 (feed-in)``), and a negative residual out
of a copy of ``LOSSES``. No value changes; only where the flow is drawn.
"""

from __future__ import annotations

from collections import defaultdict, deque

import pandas as pd

from anning_lib.errors import AnningError
from anning_lib.i18n import DEFAULT_LANG, t
from anning_lib.park.catalogue import Catalogue
from anning_lib.park.schema import Park
from anning_lib.twin.colours import load_colours
from anning_lib.twin.flows import SOURCE_KINDS, default_catalogue, nodes

PLOT_EDGE_COLUMNS = ["src", "dst", "value", "carrier", "carrier_name", "colour"]
PLOT_NODE_COLUMNS = ["node", "label", "colour"]


def _label(row: pd.Series, park: Park, lang: str, cat: Catalogue) -> str:
    """The display name of a node of :func:`anning_lib.twin.flows.nodes`."""
    kind = row["kind"]
    if kind in ("grid", "substation", "gas_supply", "coal_supply", "losses"):
        return t(f"flows_node_{kind}", lang)
    if kind == "fuel_supply":
        c = cat.carriers.get(row["carrier"])
        return t("flows_node_fuel_supply", lang, fuel=(c.name_en if lang == "en" else c.name_zh) if c else row["node"])
    if kind == "enterprise":
        e = park.enterprise(row["node"])
        return t("flows_enterprise", lang, id=e.id, name=e.name_en if lang == "en" else e.name)
    return t("flows_device", lang, id=row["node"], kind=t(f"flows_kind_{kind}", lang))


def _split(src: str, dst: str, kind: dict[str, str]) -> tuple[str, str, tuple | None, tuple | None]:
    """Where one link is drawn: ``(src', dst', copy of src, copy of dst)``; a copy is ``(id, of, message key)``."""
    ks, kd = kind.get(src), kind.get(dst)
    copy_src = copy_dst = None
    if kd in SOURCE_KINDS:
        key = {"grid": "flows_in_grid", "bess": "flows_in_bess"}.get(kd, "flows_in_other")
        copy_dst = (f"{dst}~in", dst, key)
    if ks == "enterprise" and kd == "substation":
        copy_src = (f"{src}~out", src, "flows_out_enterprise")
    elif ks == "losses":
        copy_src = (f"{src}~out", src, "flows_out_losses")
    return (copy_src[0] if copy_src else src), (copy_dst[0] if copy_dst else dst), copy_src, copy_dst


def _check_acyclic(edges: pd.DataFrame) -> None:
    """Kahn's algorithm: raise naming the nodes left on a cycle (the Sankey layout cannot draw one)."""
    out, indeg = defaultdict(set), defaultdict(int)
    for a, b in set(zip(edges["src"], edges["dst"])):
        out[a].add(b)
        indeg[b] += 1
        indeg.setdefault(a, 0)
    todo = deque(n for n, d in indeg.items() if d == 0)
    while todo:
        n = todo.popleft()
        for m in out[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                todo.append(m)
    if left := sorted(n for n, d in indeg.items() if d > 0):
        raise AnningError(f"links: a cycle through {', '.join(left)} cannot be drawn as a Sankey")


def plot_frames(links: pd.DataFrame, park: Park, *, lang: str = DEFAULT_LANG, catalogue: Catalogue | None = None,
                colours: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The edges and nodes a Sankey draws (pure; method: module docstring).

    Parameters
    ----------
    links : pandas.DataFrame
        ``src, dst, carrier`` and ``e_kwh`` [kWh] (energy) or ``co2_t`` [tCO2] (carbon), e.g.
        :attr:`anning_lib.twin.flows.PeriodSankey.energy`; links of 0 or NaN are left out.
    park : Park
    lang : str
        ``zh_CN`` or ``en``.
    catalogue, colours : optional
        carriers (names) and :func:`load_colours` (defaults: the files of ``data/``).

    Returns
    -------
    (pandas.DataFrame, pandas.DataFrame)
        edges :data:`PLOT_EDGE_COLUMNS`, ``value`` in MWh (energy) or tCO2 (carbon); nodes
        :data:`PLOT_NODE_COLUMNS`.
    """
    cat = catalogue or default_catalogue()
    pal = colours or load_colours()
    table = nodes(park).set_index("node", drop=False)
    kind = table["kind"].to_dict()
    energy = "e_kwh" in links.columns
    per = cat.quantities["energy"].to_canonical("MWh") if energy else 1.0
    value = links["e_kwh" if energy else "co2_t"].astype("float64") / per
    keep = links[value > 0].assign(value=value[value > 0])

    def colour_of(node: str) -> str:
        k, c = kind.get(node), table["carrier"].get(node)
        return pal["nodes"].get(k) or pal["carriers"].get(c) or pal["fallback"]

    edge_rows, node_rows = [], {}
    for src, dst, carrier, v in keep[["src", "dst", "carrier", "value"]].itertuples(index=False):
        a, b, copy_a, copy_b = _split(src, dst, kind)
        c = cat.carriers.get(carrier)
        name = (c.name_en if lang == "en" else c.name_zh) if c else carrier
        edge_rows.append((a, b, v, carrier, name, pal["carriers"].get(carrier, pal["fallback"])))
        for node, copy in ((src, copy_a), (dst, copy_b)):
            base = _label(table.loc[node], park, lang, cat) if node in table.index else node
            if copy is None:
                node_rows[node] = (node, base, colour_of(node))
            else:
                node_rows[copy[0]] = (copy[0], t(copy[2], lang, label=base), colour_of(node))
    edges = pd.DataFrame(edge_rows, columns=PLOT_EDGE_COLUMNS)
    _check_acyclic(edges)
    return edges, pd.DataFrame(list(node_rows.values()), columns=PLOT_NODE_COLUMNS)


def _period_text(start: object, end: object) -> dict[str, str]:
    """``[start, end)`` for a title: whole days as first and last date, else times to the minute."""
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s == s.normalize() and e == e.normalize():
        return {"start": f"{s:%Y-%m-%d}", "end": f"{e - pd.Timedelta('1D'):%Y-%m-%d}"}
    return {"start": f"{s:%Y-%m-%d %H:%M}", "end": f"{e:%Y-%m-%d %H:%M}"}


def sankey_plot(links: pd.DataFrame, park: Park, *, lang: str = DEFAULT_LANG, start: object = None,
                end: object = None, title: str | None = None, catalogue: Catalogue | None = None,
                colours: dict | None = None, width: int = 1000, height: int = 640):
    """An energy or carbon Sankey of period links (holoviews, bokeh backend).

    Parameters
    ----------
    links : pandas.DataFrame
        :attr:`~anning_lib.twin.flows.PeriodSankey.energy` [kWh] or ``.carbon`` [tCO2].
    park : Park
    lang : str
        ``zh_CN`` (default) or ``en``.
    start, end : timestamp, optional
        the period ``[start, end)``, for the default title (whole days: first and last date; else the times).
    title : str, optional
        instead of the default.
    catalogue, colours : optional
        as :func:`plot_frames`.
    width, height : int
        size [px].

    Returns
    -------
    holoviews.Sankey
        values in MWh or tCO2 with their unit on the node labels; hover shows from, to, carrier and value (node
        keys are the labels). Without a link to draw: a ``holoviews.Text`` saying so.
    """
    import holoviews as hv
    from holoviews import dim

    if "bokeh" not in hv.Store.loaded_backends():
        import holoviews.plotting.bokeh  # registers the backend without notebook output
    edges, node_table = plot_frames(links, park, lang=lang, catalogue=catalogue, colours=colours)
    energy = "e_kwh" in links.columns
    if title is None and start is not None and end is not None:
        title = t("flows_title_energy" if energy else "flows_title_carbon", lang, **_period_text(start, end))
    if edges.empty:                      # hv.Sankey cannot lay out an empty graph: say so instead
        return hv.Text(0, 0, t("flows_no_links", lang)).opts(xaxis=None, yaxis=None, width=width, height=height,
                                                              title=title or "", backend="bokeh")
    name = dict(zip(node_table["node"], node_table["label"]))
    drawn = edges.assign(src=edges["src"].map(name), dst=edges["dst"].map(name))
    unit = "MWh" if energy else "tCO2"
    value = hv.Dimension("value", label=t("flows_value_energy" if energy else "flows_value_co2", lang), unit=unit,
                         value_format=lambda v: f"{v:,.1f}")
    kdims = [hv.Dimension("src", label=t("flows_from", lang)), hv.Dimension("dst", label=t("flows_to", lang))]
    vdims = [value, hv.Dimension("carrier_name", label=t("flows_carrier", lang)), "carrier"]
    node_ds = hv.Dataset(node_table.assign(node=node_table["label"]), "node", ["colour"])
    tips = [(t("flows_from", lang), "@{src}"), (t("flows_to", lang), "@{dst}"),
            (t("flows_carrier", lang), "@{carrier_name}"), (f"{value.label} [{unit}]", "@{value}{0,0.0}")]
    palette = edges.drop_duplicates("carrier").set_index("carrier")["colour"].to_dict()
    plot = hv.Sankey((drawn, node_ds), kdims, vdims)
    return plot.opts(edge_color=dim("carrier").categorize(palette), node_color="colour", label_position="right",
                     width=width, height=height, title=title or "", hover_tooltips=tips, backend="bokeh")
