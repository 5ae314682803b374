"""Scoped reads and table shaping for the portal's work lists: alarms, work orders and statements (report runs).

The pages ``dashboards/alarms.py`` and ``dashboards/reports.py`` compose these with
:mod:`anning_lib.quality.alarms` and :mod:`anning_lib.quality.workorders`: every read takes the :class:`Actor`
and is scoped in the query (:func:`~anning_lib.auth.access.scope_filter`, ARCHITECTURE.md §6); the ``*_table``
functions are pure (rows in, :class:`pandas.DataFrame` out) so that a test reaches what a page shows.

Times are stored in UTC and shown in Asia/Shanghai (ARCHITECTURE.md §4) as ``YYYY-MM-DD HH:MM`` text, which sorts
correctly and needs no time-zone handling in the browser.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, can_see, require, scope_filter
from anning_lib.i18n import t, word
from anning_lib.quality import alarms as qa
from anning_lib.quality import workorders as wo
from anning_lib.store.schema import TABLES

TZ = ZoneInfo("Asia/Shanghai")
"""The park's display time zone."""
SEVERITIES = ("critical", "high", "medium", "low")
"""Alarm priorities, most urgent first (``alarm.severity``)."""
ALARM_STATES = qa.OPEN
"""States of an open alarm (the page's state filter; closed alarms are history)."""
REPORT_STATUSES = ("queued", "running", "done", "failed")
"""``report_run.status`` values."""

ALARM_COLUMNS = ("id", "raised", "severity", "state", "message", "target", "enterprise")
ORDER_COLUMNS = ("id", "title", "status", "priority", "due", "overdue", "assignee", "enterprise", "device")
REPORT_COLUMNS = ("id", "period", "status", "download", "kind", "finished", "enterprise")


# ------------------------------------------------------------------------------------------------ formatting
def local_time(ts: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """``ts`` (UTC, or naive taken as UTC) in Asia/Shanghai as text; ``""`` for None."""
    if ts is None:
        return ""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(TZ).strftime(fmt)


def label(prefix: str, value: object, lang: str) -> str:
    """The catalogue text of ``<prefix><value>`` if the catalogue has it, else ``value`` itself (a kind or
    action added later shows as its code rather than breaking the page)."""
    return word(prefix.removesuffix("_"), value, lang)


def enterprise_label(enterprise_id: str | None, names: dict[str, tuple[str, str]], lang: str,
                     park_key: str = "alarms_park_level") -> str:
    """``E01 钢厂`` (``E01 steel works`` in English); the park's own items are the text of ``park_key``."""
    if enterprise_id is None:
        return t(park_key, lang)
    zh, en = names.get(enterprise_id, ("", ""))
    name = en if lang == "en" else zh
    return f"{enterprise_id} {name}".strip()


def _shown_value(value: object) -> str:
    """A detail value as text: ISO times in Asia/Shanghai, None as ``–``."""
    if value is None:
        return "–"
    if isinstance(value, str) and len(value) >= 19 and value[4:5] == "-" and value[10:11] == "T":
        try:
            return local_time(dt.datetime.fromisoformat(value))
        except ValueError:
            pass
    return str(value)


_HIDDEN_DETAIL = frozenset({"comment_id"})
"""Detail keys that mean nothing to a reader (internal row ids)."""


def describe_detail(detail: object, max_chars: int = 160) -> str:
    """An event's or audit row's JSON detail as one short line: ``note: meter replaced; until: 2026-11-25 10:00``.

    Times in ISO text are shown in Asia/Shanghai; work-order ``changes`` read ``status: open → in_progress``;
    empty values are left out and the line is cut at ``max_chars``.
    """
    if not detail:
        return ""
    if isinstance(detail, str):
        try:
            detail = json.loads(detail)
        except ValueError:
            return detail
    if not isinstance(detail, dict):
        return str(detail)
    parts = []
    for key, value in detail.items():
        if value is None or value == "" or key in _HIDDEN_DETAIL:
            continue
        if key == "changes" and isinstance(value, dict):
            parts += [f"{field}: {_shown_value(old)} → {_shown_value(new)}" for field, (old, new) in value.items()]
            continue
        parts.append(f"{key}: {_shown_value(value)}")
    text = "; ".join(parts)
    return text if len(text) <= max_chars else text[:max_chars - 1] + "…"


LONG_COLUMNS = ("message", "title")
"""Free-text columns cut at a width (full text as a tooltip), so that one long message does not push the others
off a phone's screen."""


def tabulator_config(lang: str, columns: Iterable[str] = (), max_width_px: int = 420) -> dict:
    """Tabulator ``configuration`` for the portal's tables: pagination buttons in ``lang``; cells of
    :data:`LONG_COLUMNS` among ``columns`` at most ``max_width_px`` wide, with the full text as a tooltip."""
    words = {k: t(f"alarms_pg_{k}", lang) for k in ("first", "prev", "next", "last")}
    return {"columnDefaults": {"tooltip": True}, "locale": "portal",
            "columns": [{"field": c, "maxWidth": max_width_px} for c in columns if c in LONG_COLUMNS],
            "langs": {"portal": {"pagination": words | {f"{k}_title": v for k, v in words.items()}}}}


# ------------------------------------------------------------------------------------------------ lookups
def enterprise_names(engine: Engine) -> dict[str, tuple[str, str]]:
    """Enterprise id -> (Chinese name, English name) (reference data, the same for every user)."""
    e = TABLES["enterprise"]
    with engine.connect() as conn:
        return {r.id: (r.name, r.name_en) for r in conn.execute(sa.select(e.c.id, e.c.name, e.c.name_en))}


def _usernames(engine: Engine, ids: Iterable[int | None]) -> dict[int, str]:
    ids = sorted({i for i in ids if i is not None})
    if not ids:
        return {}
    u = TABLES["app_user"]
    with engine.connect() as conn:
        return {r.id: r.username for r in conn.execute(sa.select(u.c.id, u.c.username).where(u.c.id.in_(ids)))}


def alarm_history(engine: Engine, actor: Actor, alarm_id: int) -> list[dict]:
    """The steps of one alarm the actor may see (:func:`anning_lib.quality.alarms.history`, which refuses
    others with "no such alarm"), each with ``user`` (username or ``""`` for the system), oldest first."""
    rows = qa.history(engine, actor, alarm_id)
    names = _usernames(engine, (r["user_id"] for r in rows))
    return [r | {"user": names.get(r["user_id"], "")} for r in rows]


def order_history(order: dict, engine: Engine) -> list[dict]:
    """The ``history`` of a work order from :func:`anning_lib.quality.workorders.get` (already scoped), each
    row with ``user``."""
    rows = order.get("history", [])
    names = _usernames(engine, (r["user_id"] for r in rows))
    return [dict(r) | {"user": names.get(r["user_id"], "")} for r in rows]


def assignable_users(engine: Engine, actor: Actor, enterprise_id: str | None) -> list[str]:
    """Usernames of active users who may be assigned a work order of ``enterprise_id`` (those who can see it);
    only for an actor who may update such work orders (:class:`AccessError` otherwise)."""
    require(actor, "workorder.update", enterprise_id)
    u = TABLES["app_user"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(u.c.id, u.c.username, u.c.role_id, u.c.enterprise_id)
                            .where(u.c.is_active.is_(True)).order_by(u.c.username)).all()
    return [r.username for r in rows
            if can_see(Actor(r.id, r.role_id, r.enterprise_id, r.username), enterprise_id)]


def next_statuses(status: str) -> list[str]:
    """``status`` and the statuses a work order may go to from it (:data:`workorders.TRANSITIONS`), in flow
    order."""
    return [s for s in wo.STATUSES if s == status or (status, s) in wo.TRANSITIONS]


def list_reports(engine: Engine, actor: Actor, *, status: str | None = None, kind: str | None = None,
                 limit: int = 1000) -> list[dict]:
    """The report runs (statements) ``actor`` may see, newest first.

    Scoped in the query with :func:`~anning_lib.auth.access.scope_filter` on ``report_run.enterprise_id``: admin,
    operator and system see every run, park-level ones (``enterprise_id`` NULL) included; an enterprise user only
    its own enterprise's; a visitor none. The server path of the file is not returned: ``has_file`` says whether
    the run names one, ``download_url`` is ``/statements/<id>`` for a finished run with a file (the download
    handler checks the user again).

    Returns
    -------
    list of dict
        ``id, kind, enterprise_id, period_start, period_end, status, started_at, finished_at, error, has_file,
        download_url`` (``download_url`` None unless status is ``done`` and there is a file).
    """
    r = TABLES["report_run"]
    cols = [r.c.id, r.c.kind, r.c.enterprise_id, r.c.period_start, r.c.period_end, r.c.status, r.c.started_at,
            r.c.finished_at, r.c.error, r.c.output_path.is_not(None).label("has_file")]
    q = sa.select(*cols).order_by(sa.func.coalesce(r.c.finished_at, r.c.started_at).desc(), r.c.id.desc())
    if (cond := scope_filter(actor, r.c.enterprise_id)) is not None:
        q = q.where(cond)
    if status is not None:
        q = q.where(r.c.status == status)
    if kind is not None:
        q = q.where(r.c.kind == kind)
    with engine.connect() as conn:
        rows = [dict(x._mapping) for x in conn.execute(q.limit(limit))]
    for row in rows:
        row["has_file"] = bool(row["has_file"])
        row["download_url"] = f"/statements/{row['id']}" if row["status"] == "done" and row["has_file"] else None
    return rows


# ------------------------------------------------------------------------------------------------ tables
def filter_alarms(rows: list[dict], state: str | None = None, severity: str | None = None,
                  now: dt.datetime | None = None) -> list[dict]:
    """Alarms of one state and/or severity; ``state="shelved"`` keeps the shelved ones, any other state keeps
    only the unshelved alarms of it (a shelved alarm is out of the active list until it expires)."""
    now = now or dt.datetime.now(dt.UTC)

    def shelved(r):
        return _shelved_until(r, now) is not None

    out = []
    for r in rows:
        if severity and r.get("severity") != severity:
            continue
        if state == "shelved" and not shelved(r):
            continue
        if state and state != "shelved" and (r.get("state") != state or shelved(r)):
            continue
        out.append(r)
    return out


def _shelved_until(row: dict, now: dt.datetime) -> dt.datetime | None:
    until = row.get("shelved_until")
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    return until if until is not None and until > now else None


def alarm_table(rows: list[dict], lang: str, names: dict[str, tuple[str, str]],
                now: dt.datetime | None = None) -> pd.DataFrame:
    """The alarm list as shown: columns :data:`ALARM_COLUMNS`, times in Asia/Shanghai, words in ``lang``; the
    state of an alarm shelved at ``now`` ends with ``已搁置至 <time>`` (``Shelved until <time>``)."""
    now = now or dt.datetime.now(dt.UTC)

    def state(r):
        text = label("alarms_state_", r["state"], lang)
        until = _shelved_until(r, now)
        return f"{text} · {t('alarms_shelved_until', lang, time=local_time(until))}" if until else text

    data = [{"id": r["id"], "raised": local_time(r["raised_at"]),
             "severity": label("alarms_sev_", r["severity"], lang), "state": state(r),
             "message": r.get("message") or "", "target": r.get("target") or r.get("device_id") or "",
             "enterprise": enterprise_label(r["enterprise_id"], names, lang)} for r in rows]
    return pd.DataFrame(data, columns=list(ALARM_COLUMNS))


def order_table(rows: list[dict], lang: str, names: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The work-order list as shown: columns :data:`ORDER_COLUMNS` (``overdue`` as a word, empty when not)."""
    data = [{"id": r["id"], "title": r["title"], "status": label("alarms_wo_status_", r["status"], lang),
             "priority": r["priority"], "due": local_time(r["due_at"]),
             "overdue": t("alarms_overdue_yes", lang) if r["overdue"] else "",
             "assignee": r.get("assignee") or "", "enterprise": enterprise_label(r["enterprise_id"], names, lang),
             "device": r.get("device_id") or ""} for r in rows]
    return pd.DataFrame(data, columns=list(ORDER_COLUMNS))


def history_table(rows: list[dict], lang: str, prefix: str) -> pd.DataFrame:
    """An alarm's events or a work order's audit rows: ``time, action, user, detail`` (``prefix`` + action
    is the catalogue key of the action's word)."""
    data = [{"time": local_time(r["ts"], "%Y-%m-%d %H:%M:%S"), "action": label(prefix, r["action"], lang),
             "user": r.get("user") or (t("alarms_system_user", lang) if r.get("user_id") is None else ""),
             "detail": describe_detail(r.get("detail"))} for r in rows]
    return pd.DataFrame(data, columns=["time", "action", "user", "detail"])


def history_html(df: pd.DataFrame, lang: str) -> str:
    """A :func:`history_table` as a small HTML table (every cell escaped), headers in ``lang``: the detail panels
    show it without a second paginated widget."""
    if df.empty:
        return ""
    shown = df.rename(columns={c: t(f"alarms_col_{c}", lang) for c in df.columns})
    return shown.to_html(index=False, escape=True, border=0, classes="wl-hist")


def report_table(rows: list[dict], lang: str, names: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """The statements list as shown: columns :data:`REPORT_COLUMNS`; ``download`` is an HTML link to
    ``/statements/<id>`` for a finished run, else empty (built from the integer id and catalogue text only)."""
    def period(r):              # a whole local month as "2026-10"; else first and last day (the end is exclusive)
        if r["period_start"] is None or r["period_end"] is None:
            return local_time(r["period_start"] or r["period_end"], "%Y-%m-%d")
        s, e = (pd.Timestamp(r[k]).tz_convert(TZ) for k in ("period_start", "period_end"))
        if s == s.normalize() and s.day == 1 and e == s + pd.offsets.MonthBegin(1):
            return f"{s:%Y-%m}"
        last = e - pd.Timedelta("1ns")
        return f"{s:%Y-%m-%d} – {last:%Y-%m-%d}" if last.normalize() != s.normalize() else f"{s:%Y-%m-%d}"

    data = [{"id": r["id"], "kind": label("reports_kind_", r["kind"], lang),
             "enterprise": enterprise_label(r["enterprise_id"], names, lang, "reports_park_level"),
             "period": period(r), "status": label("reports_status_", r["status"], lang),
             "finished": local_time(r["finished_at"]),
             "download": (f'<a href="{r["download_url"]}" download>{t("reports_download", lang)}</a>'
                          if r["download_url"] else "")} for r in rows]
    return pd.DataFrame(data, columns=list(REPORT_COLUMNS))
