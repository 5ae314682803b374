"""设备 / Devices: every point of a device live, and any point's history (a day to a year, min-max
downsampled for display). Drill-down: the enterprise page links here with ``?device=``; an enterprise user sees
only its own devices (the library refuses any other tag)."""

import hvplot.pandas  # noqa: F401  (registers .hvplot)
import pandas as pd
import panel as pn

from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal.layout import shell
from anning_lib.portal.views import devices_of, latest_values, point_history

actor, lang = context.actor(), context.lang()
park, engine = context.park(), context.engine()
devs = devices_of(park, actor)
asked = ((pn.state.session_args or {}).get("device") or [b""])[0].decode() or None
RANGES = {"1 d": "1D", "7 d": "7D", "30 d": "30D", "1 y": "365D"}
labels = {f"{r.device_id} {r.name}": r.device_id for r in devs.itertuples()}
device = pn.widgets.Select(name=t("dev_device", lang), options=labels, width=320,
                           value=asked if asked in labels.values() else (devs["device_id"].iloc[0] if len(devs) else None))
point = pn.widgets.Select(name=t("dev_point", lang), width=200)
span = pn.widgets.RadioButtonGroup(name=t("dev_range", lang), options=list(RANGES), value="1 d")
live = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width")
chart = pn.pane.HoloViews(sizing_mode="stretch_width")
message = pn.pane.Alert(visible=False, alert_type="danger", sizing_mode="stretch_width")


def tags_of(device_id):
    row = devs[devs["device_id"] == device_id]
    return list(row["tags"].iloc[0]) if len(row) else []


def show_live():
    if not device.value:
        return
    v = latest_values(engine, park, actor, tags_of(device.value))
    v["ts"] = v["ts"].dt.strftime("%m-%d %H:%M:%S")
    units = {p.id: p.unit for p in park.device(device.value).points}
    v["unit"] = [units[tag.split(".", 1)[1]] for tag in v["tag"]]
    live.value = v[["tag", "value", "unit", "ts", "quality"]].round({"value": 3})


def show_history(*_):
    if not point.value:
        return
    end = pd.Timestamp.now(tz="UTC")
    try:
        s = point_history(engine, park, actor, point.value, end - pd.Timedelta(RANGES[span.value]), end)
    except AnningError as err:
        message.param.update(object=str(err), visible=True)
        return
    down = t("dev_downsampled", lang) if s.attrs["downsampled"] else ""
    chart.object = s.hvplot.line(height=320, responsive=True, ylabel=s.attrs["unit"], xlabel="",
                                 title=t("dev_history", lang, tag=point.value, n_raw=s.attrs["n_raw"], down=down))


def pick_device(*_):
    tags = tags_of(device.value)
    point.options = tags
    point.value = tags[0] if tags else None
    show_live()
    show_history()


device.param.watch(pick_device, "value")
point.param.watch(show_history, "value")
span.param.watch(show_history, "value")
if len(devs):
    pick_device()
    pn.state.add_periodic_callback(show_live, period=5000)
content = [pn.FlexBox(device, point, span, flex_wrap="wrap", sizing_mode="stretch_width"), message,
           pn.pane.Markdown(f"**{t('dev_live', lang)}**"), live, chart] if len(devs) else \
          [pn.pane.Markdown(t("dev_none", lang))]
shell("device", actor, lang, pn.Column(*content, margin=(6, 14), sizing_mode="stretch_width")
      ).servable(title=t("page_device", lang))
