"""报告 / Reports: the statements (``report_run`` rows) the user may see, newest first, with a download link for a
finished one (``/statements/<id>``, checked again by the server).

Read through :func:`anning_lib.portal.worklists.list_reports` (scoped in the query: an enterprise user sees only its
own enterprise's reports, park-level ones only park-wide roles). Reports are produced by the scheduler; running one
on demand comes with the reports engine (papermill), so this page offers no "run" button yet and says so.
"""

import html
import logging

import panel as pn

from anning_lib.auth.access import allowed
from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal import worklists as wl
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
if allowed(actor, "report.run"):
    notes.append(pn.pane.Alert(html.escape(t("reports_run_note", lang)), alert_type="info",
                               sizing_mode="stretch_width", margin=(4, 5)))

for w in (status_sel, kind_sel):
    w.param.watch(_refresh, "value")
_refresh()
pn.state.add_periodic_callback(_refresh, period=REFRESH_MS)

shell("reports", actor, lang,
      pn.Column(pn.pane.Markdown(f"### {t('reports_heading', lang)}", margin=(10, 5, 0, 5)), *notes,
                pn.FlexBox(status_sel, kind_sel, count, flex_wrap="wrap", align_items="flex-end",
                           sizing_mode="stretch_width"),
                alert, table, empty, sizing_mode="stretch_width", margin=(0, 11)),
      ).servable(title=t("page_reports", lang))
