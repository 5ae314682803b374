"""模拟仿真 / Scenarios: run a scenario file against the base case without the command line, and read the saved
runs (docs/scenario.md).

Park-wide roles only (``page.scenarios``: the results hold every enterprise's figures). Everything is done by
:mod:`anning_lib.portal.scenario_jobs`: the request is checked and audited, the run is made in the background and
saved under ``var/scenarios`` as ``anning scenario run`` saves it; this page polls its status every 3 s while it
runs, then lists the new run and shows its comparison.
"""

import html
import logging

import panel as pn

from anning_lib.config import get_settings
from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal import scenario_jobs as sj
from anning_lib.portal.layout import CSS, shell, tiles_html

log = logging.getLogger("anning.portal.scenarios")
POLL_MS = 3000
LIST_MS = 30_000

engine, actor, lang = context.engine(), context.actor(), context.lang()
settings = get_settings()
var_dir, tz = settings.var_dir, settings.timezone
state = {"job": None, "run": None}

# ------------------------------------------------------------------------------------------------ the form
files = {name: str(path) for path, name in sj.example_files(settings.data_dir)}
file_sel = pn.widgets.Select(name=t("scenarios_file", lang), options=files, width=330)
source_sel = pn.widgets.Select(name=t("scenarios_source", lang), width=130, options={
    t(f"scenarios_source_{s}", lang): s for s in sj.SOURCES})
days_in = pn.widgets.IntInput(name=t("scenarios_days", lang), value=365, start=sj.MIN_DAYS, end=sj.MAX_DAYS,
                              width=110)
start_in = pn.widgets.DatePicker(name=t("scenarios_start", lang), value=None, width=150)
run_button = pn.widgets.Button(name=t("scenarios_run_button", lang), button_type="primary", width=110, align="end")
status = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 5))

# ------------------------------------------------------------------------------------------------ saved runs
columns = sj.runs_view(var_dir, lang, tz).columns
runs_table = pn.widgets.Tabulator(
    sj.runs_view(var_dir, lang, tz), disabled=True, selectable=1, show_index=False, layout="fit_data_stretch",
    sizing_mode="stretch_width", titles={c: t(f"scenarios_col_{c}", lang) for c in columns}, max_height=320,
    margin=(4, 5))
runs_empty = pn.pane.Alert(t("scenarios_saved_empty", lang), alert_type="light", visible=False,
                           sizing_mode="stretch_width", margin=(4, 5))
list_alert = pn.pane.Alert(visible=False, alert_type="danger", sizing_mode="stretch_width", margin=(4, 5))

detail_head = pn.pane.Markdown("", margin=(10, 5, 0, 5))
detail_tiles = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[CSS], margin=(0, 4))
compare = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[sj.CSS], margin=(4, 5))
invest = pn.pane.HTML("", sizing_mode="stretch_width", stylesheets=[sj.CSS], margin=(4, 5))
chart = pn.pane.Bokeh(None, sizing_mode="stretch_width", margin=(4, 5))
detail = pn.Column(detail_head, detail_tiles, compare,
                   pn.pane.Markdown(t("scenarios_detail_note", lang), styles={"font-size": "12px"}, margin=(0, 5)),
                   pn.pane.Markdown(f"#### {t('scenarios_invest_heading', lang)}", margin=(6, 5, 0, 5)), invest,
                   chart, visible=False, sizing_mode="stretch_width")


def show_run(run_id: str | None) -> None:
    """Show one saved run (or nothing)."""
    if not run_id:
        detail.visible = False
        return
    try:
        rec = sj.load_run(var_dir, run_id)
    except AnningError as err:
        list_alert.param.update(object=html.escape(t("scenarios_error", lang, error=str(err))), visible=True)
        return
    h = rec["history"]
    state["run"] = run_id
    detail_head.object = "### " + t("scenarios_detail_heading", lang, name=rec["scenario"]["name"],
                                    history=sj.history_text(h["source"], h["start"], h["days"], lang))
    detail_tiles.object = tiles_html(sj.summary_items(rec, lang))
    compare.object = sj.comparison_html(rec, lang)
    invest.object = sj.investments_html(rec, lang)
    chart.object = sj.monthly_chart(rec, lang)
    detail.visible = True


def refresh_runs(select: str | None = None) -> None:
    """Re-read the saved runs; select ``select`` (a run id) if given."""
    try:
        df = sj.runs_view(var_dir, lang, tz)
    except Exception as err:               # noqa: BLE001 - a broken file: the user sees a note, the log the traceback
        log.exception("scenarios page: list failed")
        list_alert.param.update(object=html.escape(t("scenarios_error", lang, error=str(err))), visible=True)
        return
    list_alert.visible = False
    if not runs_table.value.equals(df):
        runs_table.value = df
    runs_empty.visible, runs_table.visible = df.empty, not df.empty
    if select is not None and select in set(df["id"]):
        runs_table.selection = [int(df.index[df["id"] == select][0])]


def on_select(event) -> None:
    rows = event.new
    show_run(runs_table.value["id"].iloc[rows[0]] if rows else None)


def poll() -> None:
    """Show the session's job; once it has finished, stop polling and list (and select) the new run."""
    job = sj.job_status(state["job"]) if state["job"] else None
    text, kind = sj.status_text(job, lang)
    status.param.update(object=html.escape(text), alert_type=kind, visible=bool(text))
    if job is None or job["status"] in ("done", "failed"):
        if poller.running:
            poller.stop()
        run_button.disabled = False
        if job is not None and job["status"] == "done":
            refresh_runs(select=job["run_id"])


def run_clicked(_event) -> None:
    try:
        state["job"] = sj.start_run(engine, context.actor(), file_sel.value, source=source_sel.value,
                                    days=days_in.value, start=start_in.value, park=context.park())
    except AnningError as err:
        status.param.update(object=html.escape(t("scenarios_refused", lang, error=str(err))), alert_type="danger",
                            visible=True)
        return
    run_button.disabled = True
    poll()
    if not poller.running:
        poller.start()


poller = pn.state.add_periodic_callback(poll, period=POLL_MS, start=False)
run_button.on_click(run_clicked)
runs_table.param.watch(on_select, "selection")
refresh_runs()
pn.state.add_periodic_callback(refresh_runs, period=LIST_MS)     # runs another user finished

form = pn.Column(pn.pane.Markdown(f"#### {t('scenarios_run_heading', lang)}", margin=(6, 5, 0, 5)),
                 pn.FlexBox(file_sel, source_sel, days_in, start_in, run_button, flex_wrap="wrap",
                            align_items="flex-end", sizing_mode="stretch_width"),
                 pn.pane.Markdown(t("scenarios_start_note", lang), styles={"font-size": "12px"}, margin=(0, 5)),
                 status, sizing_mode="stretch_width")
body = pn.Column(pn.pane.Markdown(f"### {t('scenarios_heading', lang)}", margin=(10, 5, 0, 5)),
                 pn.pane.Alert(html.escape(t("scenarios_intro", lang)), alert_type="info", sizing_mode="stretch_width",
                               margin=(4, 5)),
                 form, pn.pane.Markdown(f"#### {t('scenarios_saved_heading', lang)}", margin=(10, 5, 0, 5)),
                 pn.pane.Markdown(t("scenarios_select_hint", lang), styles={"font-size": "12px"}, margin=(0, 5)),
                 list_alert, runs_table, runs_empty, detail, sizing_mode="stretch_width", margin=(0, 11))
shell("scenarios", actor, lang, body).servable(title=t("page_scenarios", lang))
