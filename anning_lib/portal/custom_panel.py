"""The custom-report panel of the portal's reports page (自定义报表): pick metrics, dimension, period, granularity
and filters; run, see the table and chart, download CSV/XLSX/PDF, save and reload definitions.

Every computation is :mod:`anning_lib.reports.custom` with the page's user, so the rows are those the user may
see (an enterprise user is offered and given only its own enterprise). The page only composes widgets.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import logging
import tempfile
from pathlib import Path

import pandas as pd
import panel as pn

from anning_lib.auth.access import Actor, can_see
from anning_lib.errors import AnningError
from anning_lib.i18n import t, word
from anning_lib.reports import custom
from anning_lib.reports import custom_export as cx
from anning_lib.reports import custom_store as store

log = logging.getLogger(__name__)
TABLE_ROWS = 2000
"""Rows shown on the page (the downloads hold them all)."""


def _definition_from(w: dict) -> custom.Definition:
    filters = {"enterprise_ids": list(w["enterprises"].value), "sectors": list(w["sectors"].value)}
    return custom.Definition(name=w["name"].value.strip() or t("custom_title"), metrics=list(w["metrics"].value),
                             dimension=w["dimension"].value, start=w["start"].value, end=w["end"].value,
                             granularity=w["granularity"].value, filters=filters)


def _default_period(engine, park) -> tuple[dt.date, dt.date]:
    """The last complete month of the store (what most reports are about), else this month to today."""
    from anning_lib.carbon.records import last_complete_month

    tz = park.meta.site.timezone
    try:
        month = pd.Period(last_complete_month(engine, tz), "M")
        return month.start_time.date(), (month + 1).start_time.date()
    except AnningError:
        today = pd.Timestamp.now(tz=tz).date()
        return today.replace(day=1), today + dt.timedelta(days=1)


def _widgets(engine, park, actor: Actor, lang: str) -> dict:
    start, end = _default_period(engine, park)
    ents = {f"{e.id} {e.name if lang == 'zh_CN' else (e.name_en or e.name)}": e.id for e in park.enterprises
            if can_see(actor, e.id)}
    sectors = sorted({e.sector for e in park.enterprises if can_see(actor, e.id)})
    return {
        "name": pn.widgets.TextInput(name=t("custom_ui_name", lang), value=t("custom_title", lang), width=220),
        "metrics": pn.widgets.MultiChoice(name=t("custom_def_metrics", lang), value=["e_kwh", "cost_cny"],
                                          options={cx.metric_title(m, lang): m for m in custom.METRICS},
                                          width=420),
        "dimension": pn.widgets.Select(name=t("custom_def_dimension", lang), width=140, options={
            t(f"custom_dimension_{d}", lang): d for d in ("enterprise", "sector", "device")}),
        "start": pn.widgets.DatePicker(name=t("custom_ui_start", lang), value=start, width=140),
        "end": pn.widgets.DatePicker(name=t("custom_ui_end", lang), value=end, width=140),
        "granularity": pn.widgets.Select(name=t("custom_def_granularity", lang), value="day", width=120, options={
            t(f"custom_granularity_{g}", lang): g for g in ("hour", "day", "week", "month")}),
        "enterprises": pn.widgets.MultiChoice(name=t("custom_ui_enterprises", lang), options=ents, width=420),
        "sectors": pn.widgets.MultiChoice(name=t("custom_ui_sectors", lang), width=300,
                                          options={word("sector", s, lang): s for s in sectors}),
    }


def custom_reports_panel(engine, park, actor: Actor, lang: str) -> pn.Column:
    """The panel: form, result (table, chart, downloads), saved definitions."""
    w = _widgets(engine, park, actor, lang)
    alert = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 5))
    table = pn.widgets.Tabulator(pd.DataFrame(), pagination="remote", page_size=20, disabled=True, show_index=False,
                                 sizing_mode="stretch_width", visible=False, layout="fit_data_stretch")
    figure = pn.pane.Matplotlib(None, dpi=96, tight=True, visible=False, format="png", sizing_mode="scale_width",
                                max_width=960)
    state: dict = {"df": None, "d": None}
    saved = pn.widgets.Select(name=t("custom_ui_saved", lang), width=260)

    def say(text: str, kind: str = "danger") -> None:
        alert.param.update(object=html.escape(text), alert_type=kind, visible=True)

    def refresh_saved() -> None:
        rows = store.list_definitions(engine, actor)
        saved.options = {"": None, **{f"{r.name} (#{r.id})": int(r.id) for r in rows.itertuples()}}

    def on_run(_e=None) -> None:
        try:
            d = _definition_from(w)
            df = custom.run(engine, park, actor, d)
        except AnningError as err:
            say(str(err))
            return
        state.update(df=df, d=d)
        shown, titles, decimals = cx.pdf_table(df.head(TABLE_ROWS), d, lang)
        formatters = {c: {"type": "money", "thousand": ",", "decimal": ".", "precision": n}
                      for c, n in decimals.items() if c in shown.columns}
        table.param.update(value=shown, titles=titles, formatters=formatters, visible=True)
        figure.param.update(object=cx.chart(df, d, lang), visible=True)
        say(t("custom_ui_done", lang, n=len(df)), "success")

    def download(fmt: str):
        def make():
            if state["df"] is None:
                on_run()
            if state["df"] is None:
                return io.BytesIO(b"")
            with tempfile.TemporaryDirectory() as tmp:
                path = cx.export(state["df"], state["d"], fmt, Path(tmp) / f"report.{fmt}", lang=lang, actor=actor)
                return io.BytesIO(path.read_bytes())
        return pn.widgets.FileDownload(callback=make, filename=f"custom-report.{fmt}", label=fmt.upper(),
                                       button_type="default", width=90, embed=False)

    def on_save(_e) -> None:
        try:
            rid = store.save_definition(engine, actor, _definition_from(w))
        except AnningError as err:
            say(str(err))
            return
        refresh_saved()
        say(t("custom_ui_saved_ok", lang, id=rid), "success")

    def on_load(_e) -> None:
        if saved.value is None:
            return
        try:
            d = store.load_definition(engine, actor, int(saved.value))
        except AnningError as err:
            say(str(err))
            return
        w["name"].value, w["metrics"].value, w["dimension"].value = d.name, list(d.metrics), d.dimension
        w["start"].value, w["end"].value, w["granularity"].value = d.start, d.end, d.granularity
        w["enterprises"].value = [e for e in d.filters.enterprise_ids or [] if e in w["enterprises"].options.values()]
        w["sectors"].value = [s for s in d.filters.sectors or [] if s in w["sectors"].options.values()]
        on_run()

    def on_delete(_e) -> None:
        if saved.value is None:
            return
        try:
            store.delete_definition(engine, actor, int(saved.value))
        except AnningError as err:
            say(str(err))
            return
        refresh_saved()

    buttons = {k: pn.widgets.Button(name=t(f"custom_ui_{k}", lang), button_type=b, width=90, align="end")
               for k, b in (("run", "primary"), ("save", "default"), ("load", "default"), ("delete", "light"))}
    for k, f in (("run", on_run), ("save", on_save), ("load", on_load), ("delete", on_delete)):
        buttons[k].on_click(f)
    try:
        refresh_saved()
    except AnningError as err:
        say(str(err))
    flex = dict(flex_wrap="wrap", align_items="flex-end", sizing_mode="stretch_width")
    return pn.Column(
        pn.pane.Markdown(f"#### {t('custom_title', lang)}", margin=(6, 5, 0, 5)),
        pn.FlexBox(saved, buttons["load"], buttons["delete"], **flex),
        pn.FlexBox(w["name"], w["metrics"], **flex),
        pn.FlexBox(w["dimension"], w["start"], w["end"], w["granularity"], **flex),
        pn.FlexBox(w["enterprises"], w["sectors"], **flex),
        pn.FlexBox(buttons["run"], buttons["save"], download("csv"), download("xlsx"), download("pdf"), **flex),
        alert, figure, table, sizing_mode="stretch_width")
