"""Live data of the 3-D twin, read through the user's scope (ARCHITECTURE.md §6), and what the scene shows of it.

============  ==============================================  ===========================================
role          coloured and labelled                           flows drawn
============  ==============================================  ===========================================
admin,        every enterprise                                every flow
operator
enterprise    its own enterprise; the others in no-data grey  its own (feeder, PV, storage, boilers) and
                                                              the park's grid import
visitor       none (park figures only, as the overview)       the park's grid import (a public figure)
============  ==============================================  ===========================================

Figures per enterprise: ``load_kw`` (gross load now, from :func:`anning_lib.portal.live.snapshot`, shared by every
session of a scope) and today's ``e_kwh`` (consumed), ``grid_e_kwh`` (bought), ``co2_t`` (location-based scope 2 of
the electricity bought, the overview's method and factor) and ``co2_t_per_mwh`` (``co2_t`` per MWh consumed),
from the 15-minute rollups of the local day. Reads are cached :data:`TTL_S` per scope, so fifty open twins cost
the store one query set per period.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, allowed, can_see, require_role
from anning_lib.i18n import t
from anning_lib.park.schema import Park, point_tag
from anning_lib.portal.layout import fmt
from anning_lib.portal.live import cached
from anning_lib.twin import colours
from anning_lib.twin.geometry import Part

TTL_S = 4.0
"""How long one scope's live state is reused [s] (below the page's 5 s refresh)."""
METRICS = ("load_kw", "co2_t_per_mwh", "co2_t")
FIGURE_COLUMNS = ["load_kw", "e_kwh", "grid_e_kwh", "co2_t", "co2_t_per_mwh", "alarms"]
PUBLIC_FLOWS = {("GRID", "SUBSTATION")}
"""Flows anyone may see: the park's grid import is a figure of the public big screen."""



# ------------------------------------------------------------------------------------------------ reading
def enterprise_today(engine: Engine, park: Park, enterprise_ids: list[str], factor_t_per_mwh: float,
                     now: pd.Timestamp) -> pd.DataFrame:
    """Today's (local day) electricity and emissions of the given enterprises (the caller checked the scope).

    Energy is Σ 15-minute mean × hours of the quarter-hour, the running quarter-hour counting for the time elapsed
    in it (as :func:`anning_lib.portal.views.park_snapshot`).

    Returns
    -------
    pandas.DataFrame
        indexed by ``enterprise_id``: ``e_kwh`` (consumed = bought + own PV + own storage) [kWh], ``grid_e_kwh``
        (Σ main meters) [kWh], ``co2_t`` = ``grid_e_kwh / 1000 × factor_t_per_mwh`` [tCO2], ``co2_t_per_mwh`` (per
        MWh consumed; NaN without consumption) [tCO2/MWh].
    """
    from anning_lib.store.timeseries import read_series

    tz = park.meta.site.timezone
    start = now.tz_convert(tz).normalize().tz_convert("UTC")
    tags = {e: ([point_tag(d.id, "p_kw") for d in park.enterprise(e).devices if d.type == "main_meter"],
                [point_tag(d.id, "p_kw") for d in park.enterprise(e).devices if d.type in ("pv", "bess")])
            for e in enterprise_ids}
    every = [x for bought, own in tags.values() for x in bought + own]
    rows = []
    if not every:
        return pd.DataFrame(columns=["e_kwh", "grid_e_kwh", "co2_t", "co2_t_per_mwh"], dtype="float64",
                            index=pd.Index([], name="enterprise_id"))
    means = read_series(engine, every, start, now, resolution="15min", tz="UTC")
    begins = means.index.to_series()
    hours = ((begins + pd.Timedelta("15min")).clip(upper=now) - begins).dt.total_seconds() / 3600.0
    for e, (bought, own) in tags.items():
        grid_e = float(means[bought].sum(axis=1).mul(hours).sum()) if bought else np.nan
        e_kwh = grid_e + (float(means[own].sum(axis=1).mul(hours).sum()) if own else 0.0)
        co2 = grid_e / 1000.0 * factor_t_per_mwh
        rows.append((e, e_kwh, grid_e, co2, co2 / (e_kwh / 1000.0) if e_kwh > 0 else np.nan))
    return pd.DataFrame(rows, columns=["enterprise_id", "e_kwh", "grid_e_kwh", "co2_t", "co2_t_per_mwh"]) \
        .set_index("enterprise_id")


def _latest(engine: Engine, park: Park, actor: Actor, grid_import_kw: float | None) -> dict[str, float]:
    """Newest good readings (as the big screen's) of every point the actor may see; the park's grid import for
    everybody (a public figure)."""
    from anning_lib.portal.views import STALE_AFTER_S, latest_values
    from anning_lib.store.timeseries import MAX_ROLLUP_QUALITY

    out: dict[str, float] = {}
    if actor.role != "visitor":
        tags = [point_tag(d.id, p.id) for eid, d, p in park.iter_points() if can_see(actor, eid)]
        if tags:
            df = latest_values(engine, park, actor, tags, max_age_s=STALE_AFTER_S,
                               max_quality=MAX_ROLLUP_QUALITY).dropna(subset=["value"])
            out.update(zip(df["tag"], df["value"].astype(float)))
    grid = next((d for d in park.park_devices if d.type == "grid_meter"), None)
    if grid is not None and grid_import_kw is not None:
        out[point_tag(grid.id, "p_kw")] = float(grid_import_kw)
    return out


def visible_flows(flows: pd.DataFrame, nodes: pd.DataFrame, actor: Actor) -> pd.DataFrame:
    """The flows ``actor`` may see (module table): every one for park-wide roles; for an enterprise user those
    touching a node of its enterprise; for everybody the public ones (:data:`PUBLIC_FLOWS`)."""
    if actor.role in ("admin", "operator", "system"):
        return flows.reset_index(drop=True)
    owner = nodes.set_index("node")["enterprise_id"] if "node" in nodes.columns else nodes["enterprise_id"]
    mine = {n for n, e in owner.items() if actor.role == "enterprise" and e == actor.enterprise_id}
    keep = [(s, d) in PUBLIC_FLOWS or s in mine or d in mine for s, d in zip(flows["src"], flows["dst"])]
    return flows[keep].reset_index(drop=True)


def alarm_parts(park: Park, alarms: list[dict], part_keys: set[str]) -> set[str]:
    """Keys of the parts an alarm list concerns: the building of the alarm's device, else the device's own part
    (PV, storage, substation), else every building of the alarm's enterprise (pure)."""
    out: set[str] = set()
    for a in alarms:
        dev = a.get("device_id")
        ent = a.get("enterprise_id")
        device = next((d for _e, d in park.iter_devices() if d.id == dev), None) if dev else None
        if device is not None and device.building and ent:
            out.add(f"{ent}/{device.building}")
        elif dev in part_keys:
            out.add(dev)
        elif ent:
            out |= {f"{ent}/{b.id}" for b in park.enterprise(ent).buildings}
    return out & part_keys


def twin_state(engine: Engine, park: Park, actor: Actor, nodes: pd.DataFrame, part_keys: set[str],
               now: object = None) -> dict:
    """What the twin shows ``actor`` now, shared by every session of its scope for :data:`TTL_S`.

    Returns
    -------
    dict
        ``as_of`` (newest reading, park time zone, or None); ``park``: the overview's public figures
        (:func:`anning_lib.portal.views.park_snapshot`); ``figures``: DataFrame indexed by the enterprises the
        actor may see, :data:`FIGURE_COLUMNS`; ``alarms``: part keys with an active alarm; ``flows``: the visible
        flows ``src, dst, carrier, p_kw``; ``latest``: tag -> newest value the actor may see.

    Raises
    ------
    AccessError
        for a role that may not open the twin.
    """
    require_role(actor, "page.twin")
    key = ("twin", str(engine.url), actor.role, actor.enterprise_id, now)
    return cached(key, lambda: _state(engine, park, actor, nodes, part_keys, now), TTL_S)


def _state(engine, park, actor, nodes, part_keys, now) -> dict:
    from anning_lib.portal.live import snapshot
    from anning_lib.portal.views import park_snapshot
    from anning_lib.twin import flows as flow_model

    snap = snapshot(engine, park, actor) if now is None else park_snapshot(engine, park, actor, now, refresh=False)
    ids = [r["enterprise_id"] for r in snap["enterprises"]]
    today = enterprise_today(engine, park, ids, snap["grid_factor_t_per_mwh"], snap["now"].tz_convert("UTC"))
    figures = pd.DataFrame(index=pd.Index(ids, name="enterprise_id"), columns=FIGURE_COLUMNS, dtype="float64")
    figures["load_kw"] = [np.nan if r["load_kw"] is None else r["load_kw"] for r in snap["enterprises"]]
    figures.update(today)
    alarms: list[dict] = []
    if allowed(actor, "alarm.see"):
        from anning_lib.quality.alarms import list_alarms

        alarms = list_alarms(engine, actor, limit=10000)
    counts = pd.Series([a.get("enterprise_id") for a in alarms], dtype=object).value_counts()
    figures["alarms"] = [float(counts.get(e, 0)) for e in ids]
    latest = _latest(engine, park, actor, snap["grid_import_kw"])
    flows = flow_model.live_flows(park, latest)
    return {"as_of": snap["as_of"], "park": snap, "figures": figures,
            "alarms": alarm_parts(park, alarms, part_keys), "flows": visible_flows(flows, nodes, actor),
            "latest": latest}


# ------------------------------------------------------------------------------------------------ showing
def metric_text(metric: str, value: float | None) -> str:
    """A metric's value as a label shows it: ``31.2 MW``, ``0.105 t/MWh``, ``12.3 t`` (``–`` without one)."""
    if value is None or math.isnan(value):
        return "–"
    if metric == "load_kw":
        return f"{value / 1000:,.1f} MW"
    if metric == "co2_t_per_mwh":
        return f"{value:.3f} t/MWh"
    return f"{value:,.1f} t"


def frame(state: dict, metric: str, label_nodes: list[str]) -> dict:
    """The arguments of :meth:`anning_lib.twin.scene.TwinView.update` for ``state`` coloured by ``metric``
    (pure): roof colours of the visible enterprises by the legend, alarm outlines, flows, labels (an
    enterprise's id with its value where the user may see it, other nodes their id)."""
    legend = colours.legend(metric)
    values = state["figures"][metric].to_dict() if metric in state["figures"] else {}
    labels = {n: f"{n} {metric_text(metric, values[n])}" if n in values else n for n in label_nodes}
    return {"enterprise_colours": legend.colours_of(values), "alarms": set(state["alarms"]),
            "flows": state["flows"], "labels": labels}


def legend_html(metric: str, lang: str) -> str:
    """The legend of ``metric``: a swatch per bin with its bounds, the no-data and the alarm colours."""
    lg = colours.legend(metric)
    row = '<div style="display:flex;align-items:center;gap:6px;font-size:13px"><span style="display:inline-block;' \
          'width:18px;height:14px;background:{c};border:1px solid #889"></span>{label}</div>'
    rows = [row.format(c=c, label=html.escape(f"{label} {lg.unit}")) for c, label in reversed(lg.rows())]
    rows.append(row.format(c=lg.no_data, label=html.escape(t("tw_no_data", lang))))
    rows.append(row.format(c=colours.alarm_colour(), label=html.escape(t("tw_alarm", lang))))
    title = html.escape(t(f"tw_metric_{metric}", lang))
    return f'<div class="twin-legend"><b>{title}</b>{"".join(rows)}</div>'


def details_html(park: Park, part: Part, state: dict, actor: Actor, lang: str) -> str:
    """What the details panel says about a picked part: for a building its enterprise's figures and a link to the
    enterprise page, for equipment its power now and a link to the device page, each only where the user may
    see them (otherwise a sentence saying so)."""
    eid = part.enterprise_id
    if eid:
        e = park.enterprise(eid)
        head = f"{eid} · {e.name_en if lang == 'en' else e.name}"
    else:
        head = t("tw_park_asset", lang)
    lines = [f"<b>{html.escape(head)}</b>", html.escape(f"{part.name} ({part.key})")]
    fig, link = state["figures"], None
    if part.kind == "building" and eid in fig.index:
        r = fig.loc[eid]
        items = [("tw_load", fmt(r["load_kw"] / 1000, 1), "MW"), ("tw_today_e", fmt(r["e_kwh"] / 1000, 1), "MWh"),
                 ("tw_today_co2", fmt(r["co2_t"], 2), "tCO2"),
                 ("tw_intensity", fmt(r["co2_t_per_mwh"], 3), "tCO2/MWh"), ("tw_alarms", fmt(r["alarms"]), "")]
        lines += [html.escape(f"{t(k, lang)}: {v} {u}".rstrip()) for k, v, u in items]
        if allowed(actor, "page.enterprise"):
            link = (f"/enterprise?enterprise={eid}", "tw_open_enterprise")
    elif part.kind != "building" and actor.role != "visitor" and can_see(actor, eid):
        v = state["latest"].get(point_tag(part.device_id, "p_kw"))
        lines.append(html.escape(f"{t('tw_power', lang)}: {fmt(v, 0)} kW"))
        if allowed(actor, "page.device"):
            link = (f"/device?device={part.device_id}", "tw_open_device")
    else:
        lines.append(html.escape(t("tw_not_yours", lang)))
    if link:
        lines.append(f'<a href="{html.escape(link[0])}">{html.escape(t(link[1], lang))}</a>')
    return '<div class="twin-details">' + "".join(f"<div>{x}</div>" for x in lines) + "</div>"
