"""告警与工单 / Alarms & work orders.

Open alarms (acknowledge with a note, shelve for a time with a reason, open a work order from one) and the
work-order board (status, priority, assignee, comments), each with the selected item's history. Both tables are
re-read every 5 s. Reads are :func:`anning_lib.quality.alarms.list_alarms` and
:func:`anning_lib.quality.workorders.list_orders` with the logged-in user (scoped in the query); every action is a
library call that checks the user's role and enterprise again. Buttons the role may not use are not shown.
"""

import datetime as dt
import html
import logging

import panel as pn

from anning_lib.auth.access import allowed
from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.portal import context
from anning_lib.portal import worklists as wl
from anning_lib.portal.layout import shell
from anning_lib.quality import alarms as qa
from anning_lib.quality import workorders as wo

log = logging.getLogger("anning.portal.alarms")
REFRESH_MS = 5000
PAGE_SIZE = 20
SHELVE_MINUTES = (15, 30, 60, 120, 240, 480, 1440)      # at most qa.MAX_SHELVE (24 h)
UNACKED = ("active_unack", "cleared_unack")

engine, actor, lang = context.engine(), context.actor(), context.lang()
names = wl.enterprise_names(engine)
may = {a: allowed(actor, a) for a in ("alarm.ack", "alarm.shelve", "workorder.create", "workorder.update",
                                      "workorder.comment")}
STYLE = """
.wl-info{font-size:14px;color:#1b2733;line-height:1.6}.wl-info b{color:#4a6272;font-weight:normal}
.wl-head{font-size:16px;font-weight:bold;color:#0f2a3d;word-break:break-word;margin-top:6px}
.wl-scroll{overflow-x:auto;max-width:100%}
table.wl-hist{border-collapse:collapse;font-size:13px;min-width:100%}
table.wl-hist th{text-align:left;background:#eef3f6;color:#4a6272;font-weight:normal;padding:4px 8px;white-space:nowrap}
table.wl-hist td{border-top:1px solid #dde6eb;padding:4px 8px;vertical-align:top}
table.wl-hist td:nth-child(-n+3){white-space:nowrap}
.wl-muted{font-size:13px;color:#4a6272}
.wl-comment{border-left:3px solid #5bc0de;padding:2px 8px;margin:4px 0;font-size:14px;word-break:break-word}
.wl-comment .who{color:#4a6272;font-size:12px}
"""


def _who():
    """The session's user, re-read from the store (a deactivated user's open page stops acting at once)."""
    return context.actor()


def _wrap(text: str, css: str) -> str:
    """``text`` (HTML the page built, every value escaped) in ``<div class=css>``: the page's stylesheet applies
    inside the pane's shadow root."""
    return f'<div class="{css}">{text}</div>' if text else ""


def _html(text: str, css: str = "wl-info", **kw) -> pn.pane.HTML:
    opts = dict(stylesheets=[STYLE], sizing_mode="stretch_width", margin=(2, 5))
    return pn.pane.HTML(_wrap(text, css), **(opts | kw))


def _say(alert: pn.pane.Alert, text: str, kind: str = "success") -> None:
    alert.param.update(object=html.escape(text), alert_type=kind, visible=True)


def _attempt(alert: pn.pane.Alert, fn):
    """Run a library call; a refusal (:class:`AnningError`: AccessError, QualityError) is shown with its
    message, anything else as a short note (the traceback goes to the server log only). Returns the call's
    result or None."""
    try:
        return fn()
    except AnningError as err:
        _say(alert, t("alarms_refused", lang, error=str(err)), "danger")
    except Exception:                      # noqa: BLE001 - the user sees a note, the log the traceback
        log.exception("alarms page: action failed")
        _say(alert, t("alarms_unexpected", lang), "danger")
    return None


def _table(df, columns, prefix: str, **kw) -> pn.widgets.Tabulator:
    """A read-only, paginated, single-select table with translated headers for every one of ``columns`` (the
    page may show some of them only at times)."""
    opts = dict(pagination="remote", page_size=PAGE_SIZE, layout="fit_data_stretch", selectable=1, disabled=True,
                show_index=False, sizing_mode="stretch_width", titles={c: t(f"{prefix}{c}", lang) for c in columns},
                configuration=wl.tabulator_config(lang, columns), margin=(4, 5))
    return pn.widgets.Tabulator(df, **(opts | kw))


def _history(rows: list[dict], prefix: str) -> str:
    """An item's history as a small scrollable HTML table (cells escaped by :func:`worklists.history_html`)."""
    table = wl.history_html(wl.history_table(rows, lang, prefix), lang)
    return f'<div class="wl-scroll">{table}</div>' if table else ""


def _options(prefix: str, values, all_key: str = "alarms_all") -> dict[str, str]:
    return {t(all_key, lang): ""} | {wl.label(prefix, v, lang): v for v in values}


def _selected_id(table: pn.widgets.Tabulator) -> int | None:
    sel = table.selection
    if not sel or sel[0] >= len(table.value):
        return None
    return int(table.value.iloc[sel[0]]["id"])


def _shown(df):
    """The columns worth a place: no enterprise column for an enterprise user (all rows are its own). The set
    stays the same for the whole session: a table whose columns change while new rows arrive can show stale
    rows in the browser."""
    return df.drop(columns=["enterprise"]) if own_only else df


quiet = {"on": False}
"""True while the page itself replaces a table's rows (the selection events that causes are not the user's)."""


def _put(table: pn.widgets.Tabulator, df, keep_id: int | None) -> None:
    """Show ``df`` if it differs from what is shown, keeping the row of ``keep_id`` selected."""
    if table.value.equals(df):
        return
    rows = df.index[df["id"] == keep_id] if keep_id is not None else []
    quiet["on"] = True
    try:
        table.value = df                  # then the selection: set together, the browser drops it
        table.selection = [int(rows[0])] if len(rows) else []
    finally:
        quiet["on"] = False


# ================================================================================================== alarms
state_sel = pn.widgets.Select(name=t("alarms_filter_state", lang), width=170,
                              options=_options("alarms_state_", (*qa.OPEN, "shelved")))
sev_sel = pn.widgets.Select(name=t("alarms_filter_severity", lang), width=120,
                            options=_options("alarms_sev_", wl.SEVERITIES))
own_only = actor.role == "enterprise"
alarm_count = _html("", "wl-muted", sizing_mode=None, align="end", margin=(5, 10, 16, 10))
alarm_tbl = _table(_shown(wl.alarm_table([], lang, names)), wl.ALARM_COLUMNS, "alarms_col_", frozen_columns=["id"])
alarm_alert = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 5))
alarm_rows: dict[int, dict] = {}
shown = {"alarm": None, "alarm_stamp": None, "order": None, "order_stamp": None}

alarm_head = _html("", "wl-head")
alarm_info = _html("")
ack_note = pn.widgets.TextInput(name=t("alarms_ack_note", lang), width=260)
ack_btn = pn.widgets.Button(name=t("alarms_ack", lang), button_type="primary", width=140, align="end")
shelve_for = pn.widgets.Select(name=t("alarms_shelve_duration", lang), width=110, options={
    (t("alarms_minutes", lang, n=m) if m < 60 else t("alarms_hours", lang, n=m // 60)): m for m in SHELVE_MINUTES},
    value=60)
shelve_reason = pn.widgets.TextInput(name=t("alarms_shelve_reason", lang), width=260)
shelve_btn = pn.widgets.Button(name=t("alarms_shelve", lang), button_type="warning", width=140, align="end")
new_title = pn.widgets.TextInput(name=t("alarms_wo_title", lang), width=260)
new_prio = pn.widgets.Select(name=t("alarms_wo_priority", lang), options=list(wo.PRIORITIES), value="P3", width=110)
new_btn = pn.widgets.Button(name=t("alarms_wo_create", lang), button_type="primary", width=140, align="end")
alarm_hist = _html("", "wl-info")


def _row(*items) -> pn.FlexBox:
    return pn.FlexBox(*items, flex_wrap="wrap", align_items="flex-end", sizing_mode="stretch_width")


alarm_actions = [c for c, ok in ((_row(ack_note, ack_btn), may["alarm.ack"]),
                                 (_row(shelve_for, shelve_reason, shelve_btn), may["alarm.shelve"]),
                                 (_row(new_title, new_prio, new_btn), may["workorder.create"])) if ok]
alarm_detail = pn.Column(alarm_head, alarm_info, *alarm_actions,
                         pn.pane.Markdown(f"**{t('alarms_history', lang)}**", margin=(8, 5, 0, 5)), alarm_hist,
                         sizing_mode="stretch_width", visible=False)
alarm_hint = _html(t("alarms_select_hint" if may["alarm.shelve"] else "alarms_select_hint_ack", lang), "wl-muted")


def _alarm_info(r: dict) -> str:
    parts = [(t("alarms_col_state", lang), wl.label("alarms_state_", r["state"], lang)),
             (t("alarms_col_severity", lang), wl.label("alarms_sev_", r["severity"], lang)),
             (t("alarms_col_raised", lang), wl.local_time(r["raised_at"])),
             (t("alarms_col_enterprise", lang), wl.enterprise_label(r["enterprise_id"], names, lang)),
             (t("alarms_col_target", lang), r.get("target") or r.get("device_id") or "")]
    if r.get("shelved_until"):
        parts.append((t("alarms_col_shelved_until", lang), wl.local_time(r["shelved_until"])))
    return " · ".join(f"<b>{html.escape(k)}</b> {html.escape(str(v))}" for k, v in parts)


def _show_alarm(alarm_id: int | None) -> None:
    """Fill the detail panel of the selected alarm (or hide it)."""
    r = alarm_rows.get(alarm_id) if alarm_id is not None else None
    shown["alarm"], shown["alarm_stamp"] = alarm_id, (r or {}).get("updated_at")
    if r is None:
        alarm_detail.visible, alarm_hint.visible = False, True
        return
    alarm_head.object = _wrap(html.escape(t("alarms_alarm_heading", lang, id=r["id"],
                                            message=r["message"] or r["kind"])), "wl-head")
    alarm_info.object = _wrap(_alarm_info(r), "wl-info")
    ack_btn.disabled = r["state"] not in UNACKED
    hist = _attempt(alarm_alert, lambda: wl.alarm_history(engine, _who(), alarm_id))
    alarm_hist.object = _history(hist or [], "alarms_event_")
    alarm_detail.visible, alarm_hint.visible = True, False


def _load_alarms() -> None:
    shelved = state_sel.value == "shelved"
    rows = qa.list_alarms(engine, _who(), include_shelved=shelved)
    rows = wl.filter_alarms(rows, state_sel.value or None, sev_sel.value or None)
    alarm_rows.clear()
    alarm_rows.update({r["id"]: r for r in rows})
    keep = shown["alarm"]
    _put(alarm_tbl, _shown(wl.alarm_table(rows, lang, names)), keep)
    alarm_count.object = _wrap(html.escape(t("alarms_count", lang, n=len(rows))), "wl-muted")
    r = alarm_rows.get(keep) if keep is not None else None
    if keep is not None and (r is None or r.get("updated_at") != shown["alarm_stamp"]):
        _show_alarm(keep if r is not None else None)


def _on_alarm_select(_event) -> None:
    if quiet["on"]:
        return
    aid = _selected_id(alarm_tbl)
    if aid != shown["alarm"]:
        alarm_alert.visible = False
        ack_note.value = shelve_reason.value = new_title.value = ""
        _show_alarm(aid)


def _ack(_event) -> None:
    aid = shown["alarm"]
    if aid is None:
        return
    new = _attempt(alarm_alert, lambda: qa.ack(engine, _who(), aid, ack_note.value.strip()))
    if new is not None:
        ack_note.value = ""
        _say(alarm_alert, t("alarms_acked", lang, id=aid, state=wl.label("alarms_state_", new, lang)))
    _refresh()
    _show_alarm(aid)


def _shelve(_event) -> None:
    aid = shown["alarm"]
    if aid is None:
        return
    until = _attempt(alarm_alert, lambda: qa.shelve(engine, _who(), aid, dt.timedelta(minutes=shelve_for.value),
                                                    shelve_reason.value))
    if until is not None:
        shelve_reason.value = ""
        _say(alarm_alert, t("alarms_shelved", lang, id=aid, until=wl.local_time(until)))
    _refresh()
    _show_alarm(aid)


def _new_order(_event) -> None:
    aid = shown["alarm"]
    if aid is None:
        return
    wo_id = _attempt(alarm_alert, lambda: wo.create(engine, _who(), new_title.value, alarm_id=aid,
                                                    priority=new_prio.value))
    if wo_id is None:
        return
    new_title.value = ""
    _say(alarm_alert, t("alarms_wo_created", lang, id=wo_id))
    status_sel.value, overdue_chk.value = NOT_CLOSED, False      # show the new work order on the board, selected
    shown["order"] = wo_id
    _refresh()
    _show_alarm(aid)
    _show_order(wo_id)


# ================================================================================================== work orders
NOT_CLOSED = "not_closed"
status_sel = pn.widgets.Select(name=t("alarms_filter_status", lang), width=150, value=NOT_CLOSED,
                               options={t("alarms_wo_not_closed", lang): NOT_CLOSED}
                               | _options("alarms_wo_status_", wo.STATUSES))
overdue_chk = pn.widgets.Checkbox(name=t("alarms_filter_overdue", lang), align="end", margin=(5, 10, 14, 10))
order_count = _html("", "wl-muted", sizing_mode=None, align="end", margin=(5, 10, 16, 10))
order_tbl = _table(_shown(wl.order_table([], lang, names)), wl.ORDER_COLUMNS, "alarms_col_", frozen_columns=["id"])
order_alert = pn.pane.Alert(visible=False, sizing_mode="stretch_width", margin=(4, 5))

order_head = _html("", "wl-head")
order_info = _html("")
upd_status = pn.widgets.Select(name=t("alarms_wo_status", lang), width=130)
upd_prio = pn.widgets.Select(name=t("alarms_col_priority", lang), options=list(wo.PRIORITIES), width=90)
upd_assignee = pn.widgets.Select(name=t("alarms_wo_assignee", lang), width=170)
upd_btn = pn.widgets.Button(name=t("alarms_wo_save", lang), button_type="primary", width=140, align="end")
comment_text = pn.widgets.TextAreaInput(name=t("alarms_comment", lang), rows=2, max_length=2000,
                                        sizing_mode="stretch_width", min_width=240, max_width=560)
comment_btn = pn.widgets.Button(name=t("alarms_comment_add", lang), button_type="default", width=140, align="end")
comments = _html("")
order_hist = _html("", "wl-info")
order_actions = [c for c, ok in ((_row(upd_status, upd_prio, upd_assignee, upd_btn), may["workorder.update"]),
                                 (_row(comment_text, comment_btn), may["workorder.comment"])) if ok]
order_detail = pn.Column(order_head, order_info, *order_actions,
                         pn.pane.Markdown(f"**{t('alarms_comments', lang)}**", margin=(8, 5, 0, 5)), comments,
                         pn.pane.Markdown(f"**{t('alarms_history', lang)}**", margin=(8, 5, 0, 5)), order_hist,
                         sizing_mode="stretch_width", visible=False)
order_hint = _html(t("alarms_wo_select_hint" if may["workorder.update"] else "alarms_wo_select_hint_comment", lang),
                   "wl-muted")
order_rows: dict[int, dict] = {}


def _order_info(d: dict) -> str:
    parts = [(t("alarms_col_status", lang), wl.label("alarms_wo_status_", d["status"], lang)),
             (t("alarms_col_priority", lang), d["priority"]),
             (t("alarms_col_due", lang), wl.local_time(d["due_at"]) +
              (f" ({t('alarms_overdue_yes', lang)})" if d["overdue"] else "")),
             (t("alarms_col_assignee", lang), d.get("assignee") or t("alarms_unassigned", lang)),
             (t("alarms_col_enterprise", lang), wl.enterprise_label(d["enterprise_id"], names, lang)),
             (t("alarms_col_device", lang), d.get("device_id") or "–")]
    text = " · ".join(f"<b>{html.escape(k)}</b> {html.escape(str(v))}" for k, v in parts)
    if d.get("description"):
        text += f"<br>{html.escape(d['description'])}"
    return text


def _comments_html(rows: list[dict]) -> str:
    if not rows:
        return f'<span class="wl-muted">{html.escape(t("alarms_no_comments", lang))}</span>'
    return "".join(f'<div class="wl-comment"><div class="who">{html.escape(c.get("user") or "")} · '
                   f'{wl.local_time(c["ts"])}</div>{html.escape(c["text"])}</div>' for c in rows)


def _show_order(wo_id: int | None) -> None:
    """Fill the detail panel of the selected work order (or hide it)."""
    d = _attempt(order_alert, lambda: wo.get(engine, _who(), wo_id)) if wo_id is not None else None
    shown["order"], shown["order_stamp"] = (wo_id, d["updated_at"]) if d else (None, None)
    if d is None:
        order_detail.visible, order_hint.visible = False, True
        return
    order_head.object = _wrap(html.escape(t("alarms_wo_heading", lang, id=d["id"], title=d["title"])), "wl-head")
    order_info.object = _wrap(_order_info(d), "wl-info")
    if may["workorder.update"]:
        upd_status.options = {wl.label("alarms_wo_status_", s, lang): s for s in wl.next_statuses(d["status"])}
        upd_status.value, upd_prio.value = d["status"], d["priority"]
        users = _attempt(order_alert, lambda: wl.assignable_users(engine, _who(), d["enterprise_id"])) or []
        cur = d.get("assignee") or ""
        upd_assignee.options = {t("alarms_unassigned", lang): ""} | {u: u for u in sorted({*users, cur} - {""})}
        upd_assignee.value = cur
    comments.object = _wrap(_comments_html(d["comments"]), "wl-info")
    order_hist.object = _history(wl.order_history(d, engine), "alarms_audit_")
    order_detail.visible, order_hint.visible = True, False


def _load_orders() -> None:
    status = status_sel.value if status_sel.value in wo.STATUSES else None
    if status_sel.value == NOT_CLOSED:
        status = tuple(s for s in wo.STATUSES if s != "closed")
    rows = wo.list_orders(engine, _who(), status=status, overdue=True if overdue_chk.value else None, limit=1000)
    order_rows.clear()
    order_rows.update({r["id"]: r for r in rows})
    keep = shown["order"]
    _put(order_tbl, _shown(wl.order_table(rows, lang, names)), keep)
    order_count.object = _wrap(html.escape(t("alarms_count", lang, n=len(rows))), "wl-muted")
    r = order_rows.get(keep) if keep is not None else None
    if keep is not None and r is not None and r["updated_at"] != shown["order_stamp"]:
        _show_order(keep)


def _on_order_select(_event) -> None:
    if quiet["on"]:
        return
    oid = _selected_id(order_tbl)
    if oid != shown["order"]:
        order_alert.visible = False
        comment_text.value = ""
        _show_order(oid)


def _update(_event) -> None:
    oid = shown["order"]
    cur = order_rows.get(oid)
    if oid is None or cur is None:
        return
    if (upd_status.value, upd_prio.value, upd_assignee.value) == (cur["status"], cur["priority"],
                                                                  cur.get("assignee") or ""):
        _say(order_alert, t("alarms_wo_nochange", lang), "info")
        return
    done = _attempt(order_alert, lambda: wo.update(engine, _who(), oid, status=upd_status.value,
                                                   priority=upd_prio.value, assignee=upd_assignee.value))
    if done is not None:
        _say(order_alert, t("alarms_wo_saved", lang, id=oid))
    _refresh()
    _show_order(oid)


def _comment(_event) -> None:
    oid = shown["order"]
    if oid is None:
        return
    cid = _attempt(order_alert, lambda: wo.comment(engine, _who(), oid, comment_text.value))
    if cid is not None:
        comment_text.value = ""
        _say(order_alert, t("alarms_commented", lang))
    _refresh()
    _show_order(oid)


# ================================================================================================== wiring
updated = _html("", "wl-muted", sizing_mode=None, align="end", margin=(5, 10, 16, 10))


def _refresh(*_event) -> None:
    """Re-read both lists (two indexed queries; the detail panels only when their item changed)."""
    try:
        _load_alarms()
        _load_orders()
    except AnningError as err:            # e.g. the user was deactivated: show nothing more of the lists
        _say(alarm_alert, t("alarms_refused", lang, error=str(err)), "danger")
        shown["alarm"] = shown["order"] = None
        alarm_rows.clear()
        order_rows.clear()
        alarm_count.object = order_count.object = ""
        _put(alarm_tbl, alarm_tbl.value.iloc[0:0], None)
        _put(order_tbl, order_tbl.value.iloc[0:0], None)
        alarm_detail.visible = order_detail.visible = False
        return
    except Exception:                      # noqa: BLE001
        log.exception("alarms page: refresh failed")
        _say(alarm_alert, t("alarms_unexpected", lang), "danger")
        return
    now = wl.local_time(dt.datetime.now(dt.UTC), "%H:%M:%S")
    updated.object = _wrap(html.escape(t("alarms_updated", lang, time=now)), "wl-muted")


alarm_tbl.param.watch(_on_alarm_select, "selection")
order_tbl.param.watch(_on_order_select, "selection")
for w in (state_sel, sev_sel, status_sel, overdue_chk):
    w.param.watch(_refresh, "value")
ack_btn.on_click(_ack)
shelve_btn.on_click(_shelve)
new_btn.on_click(_new_order)
upd_btn.on_click(_update)
comment_btn.on_click(_comment)
_refresh()
pn.state.add_periodic_callback(_refresh, period=REFRESH_MS)


def _section(title: str, *items) -> pn.Column:
    return pn.Column(pn.pane.Markdown(f"### {title}", margin=(10, 5, 0, 5)), *items,
                     sizing_mode="stretch_width", margin=(0, 11))


shell("alarms", actor, lang,
      _section(t("alarms_section_alarms", lang), _row(state_sel, sev_sel, alarm_count, updated), alarm_tbl,
               alarm_alert, alarm_hint, alarm_detail),
      _section(t("alarms_section_orders", lang), _row(status_sel, overdue_chk, order_count), order_tbl,
               order_alert, order_hint, order_detail),
      ).servable(title=t("page_alarms", lang))
