"""报告 / Reports: the statements (``report_run`` rows) the user may see, newest first, with a download link for a
finished one (``/statements/<id>``, checked again by the server).

Read through :func:`anning_lib.portal.worklists.list_reports` (scoped in the query: an enterprise user sees only its
own enterprise's reports, park-level ones only park-wide roles). Reports are produced by the monthly schedule; an
operator or admin may also ask for one here (:func:`anning_lib.portal.report_jobs.request_runs`: checked, queued,
produced in the background; the list shows its status as it goes). The second tab runs, saves and exports custom
reports (:mod:`anning_lib.portal.custom_panel`), within the user's scope.
"""

import html
import logging

import panel as pn

from anning_lib.auth.access import allowed
from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.portal import context, report_jobs
from anning_lib.portal import worklists as wl
from anning_lib.portal.custom_panel import custom_reports_panel
from anning_lib.portal.layout import shell

log = logging.getLogger("anning.portal.reports")
REFRESH_MS = 30_000
PAGE_SIZE = 20

engine, actor, lang = context.engine(), context.actor(), context.lang()
names = wl.enterprise_names(engine)
own_only = actor.role == "enterprise"
show_errors = allowed(actor, "report.run")       # failure texts (paths, stack lines) for operators only


def _options(prefix: str, values) -> dict[str, str]:
    return {t("reports_all", lang): ""} | {wl.label(prefix, v, lang): v for v in values}


status_sel = pn.widgets.Select(name=t("reports_filter_status", lang), width=140,
                               options=_options("reports_status_", wl.REPORT_STATUSES))
kind_sel = pn.widgets.Select(name=t("reports_filter_kind", lang), width=170, options=_options("reports_kind_", []))
count = pn.pane.HTML("", margin=(5, 10, 14, 10), align="end", styles={"font-size": "13px", "color": "#4a6272"})
alert = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 5))
empty = pn.pane.Alert(t("reports_empty", lang), alert_type="light", visible=False, sizing_mode="stretch_width",
                      margin=(4, 5))


def _frame(rows):
    df = wl.report_table(rows, lang, names)
    if own_only:                    # an enterprise user's reports are all its own
        df = df.drop(columns=["enterprise"])
    if show_errors:
        df["error"] = [(r["error"] or "").strip().splitlines()[-1][:160] if r["error"] else "" for r in rows]
    return df


columns = _frame([]).columns
table = pn.widgets.Tabulator(
    _frame([]), pagination="remote", page_size=PAGE_SIZE, layout="fit_data_stretch", disabled=True,
    selectable=False, show_index=False, sizing_mode="stretch_width", frozen_columns=["id"],
    titles={c: t(f"reports_col_{c}", lang) for c in columns},
    formatters={"download": {"type": "html"}},
    configuration=wl.tabulator_config(lang, columns), margin=(4, 5))


def _refresh(*_event) -> None:
    try:
        rows = wl.list_reports(engine, context.actor(), status=status_sel.value or None, kind=kind_sel.value or None)
        if not kind_sel.value:      # the kinds offered are those of the reports this user can see
            kinds = sorted({r["kind"] for r in rows})
            if kinds != sorted(v for v in kind_sel.options.values() if v):
                kind_sel.options = _options("reports_kind_", kinds)
    except AnningError as err:
        alert.param.update(object=html.escape(t("reports_error", lang, error=str(err))), alert_type="danger",
                           visible=True)
        return
    except Exception:                      # noqa: BLE001 - the user sees a note, the log the traceback
        log.exception("reports page: list failed")
        alert.param.update(object=html.escape(t("alarms_unexpected", lang)), alert_type="danger", visible=True)
        return
    alert.visible = False
    df = _frame(rows)
    if not table.value.equals(df):
        table.value = df
    count.object = html.escape(t("reports_count", lang, n=len(rows)))
    empty.visible = not rows


notes = []
if actor.role == "enterprise" and actor.enterprise_id:
    notes.append(pn.pane.Alert(html.escape(t("reports_scope_enterprise", lang, ent=wl.enterprise_label(
        actor.enterprise_id, names, lang))), alert_type="info", sizing_mode="stretch_width", margin=(4, 5)))
run_form = None
if allowed(actor, "report.run"):
    from anning_lib.carbon.records import last_complete_month
    from anning_lib.reports.runner import KINDS

    try:
        default_month = last_complete_month(engine)
    except AnningError:
        default_month = ""
    kinds = {wl.label("reports_kind_", k, lang): k for k in KINDS}
    run_kind = pn.widgets.Select(name=t("reports_run_kind", lang), options=kinds, width=200)
    run_month = pn.widgets.TextInput(name=t("reports_run_month", lang), value=default_month, width=110,
                                     placeholder="YYYY-MM")
    run_ent = pn.widgets.Select(name=t("reports_run_enterprise", lang), width=220, options={
        t("reports_run_all", lang): "all", **{wl.enterprise_label(e, names, lang): e for e in names}})
    run_button = pn.widgets.Button(name=t("reports_run_button", lang), button_type="primary", width=120,
                                   align="end")
    run_alert = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 5))

    def _run_clicked(_event) -> None:
        per = KINDS[run_kind.value].per_enterprise if run_kind.value in KINDS else True
        try:
            ids, _futures = report_jobs.request_runs(engine, context.park(), context.actor(), run_kind.value,
                                                    run_month.value.strip(), run_ent.value if per else None,
                                                    lang=lang)
        except AnningError as err:
            run_alert.param.update(object=html.escape(t("reports_run_refused", lang, error=str(err))),
                                   alert_type="danger", visible=True)
            return
        run_alert.param.update(object=html.escape(t("reports_run_queued", lang, n=len(ids),
                                                    first=ids[0], last=ids[-1])),
                               alert_type="success", visible=True)
        _refresh()

    run_button.on_click(_run_clicked)
    notes.append(pn.pane.Alert(html.escape(t("reports_run_note", lang)), alert_type="info",
                               sizing_mode="stretch_width", margin=(4, 5)))
    run_form = pn.Column(pn.pane.Markdown(f"#### {t('reports_run_heading', lang)}", margin=(6, 5, 0, 5)),
                         pn.FlexBox(run_kind, run_month, run_ent, run_button, flex_wrap="wrap",
                                    align_items="flex-end", sizing_mode="stretch_width"),
                         run_alert, sizing_mode="stretch_width")

for w in (status_sel, kind_sel):
    w.param.watch(_refresh, "value")
_refresh()
pn.state.add_periodic_callback(_refresh, period=REFRESH_MS)

listing = pn.Column(pn.pane.Markdown(f"### {t('reports_heading', lang)}", margin=(10, 5, 0, 5)), *notes,
                    pn.FlexBox(status_sel, kind_sel, count, flex_wrap="wrap", align_items="flex-end",
                               sizing_mode="stretch_width"),
                    alert, table, empty, *([run_form] if run_form is not None else []), sizing_mode="stretch_width")
tabs = pn.Tabs((t("reports_tab_list", lang), listing),
               (t("custom_title", lang), custom_reports_panel(engine, context.park(), actor, lang)),
               dynamic=True, sizing_mode="stretch_width", margin=(0, 11))
shell("reports", actor, lang, tabs).servable(title=t("page_reports", lang))
