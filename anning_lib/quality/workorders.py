"""Work orders (工单): a maintenance task with a status, priority, due time, assignee and comments, usually
opened from an alarm.

Status flow::

    open ──▶ in_progress ──▶ resolved ──▶ closed
      ◀──────────┘  ◀─────────────┘
      (back / reassign)  (reopened)

Setting the status a work order already has changes nothing (not an error). A work order is *overdue* when
``due_at`` is past and it is still ``open`` or ``in_progress``. Without ``due_at`` the due time is the creation time
plus :data:`DEFAULT_DUE` of the priority; changing the priority without a due time moves it the same way.

Who may do what is :mod:`anning_lib.auth.access` (enterprise users create and comment on their own
enterprise's work orders, operators and admins do everything); every query is scoped with
:func:`~anning_lib.auth.access.scope_filter`. Every change writes an ``audit_log`` row (target
``work_order:<id>``) right after it commits; a refused operation changes nothing.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anning_lib.auth.access import (
    Actor,
    can_see,
    require,
    require_visible,
    scope_filter,
)
from anning_lib.auth.audit import audit
from anning_lib.errors import QualityError, StoreError
from anning_lib.store.schema import TABLES
from anning_lib.store.types import to_utc

STATUSES = ("open", "in_progress", "resolved", "closed")
ACTIVE = ("open", "in_progress")
"""Statuses in which a work order can be overdue."""
TRANSITIONS = frozenset({("open", "in_progress"), ("in_progress", "resolved"), ("resolved", "closed"),
                         ("in_progress", "open"), ("resolved", "in_progress")})
"""Allowed ``(from, to)`` status changes."""
PRIORITIES = ("P1", "P2", "P3", "P4")
DEFAULT_DUE = {"P1": dt.timedelta(hours=4), "P2": dt.timedelta(hours=24), "P3": dt.timedelta(hours=72),
               "P4": dt.timedelta(days=7)}
"""Due time after creation by priority, when no ``due_at`` is given (park maintenance practice: P1 urgent,
4 h; P2 next day; P3 within three days; P4 within a week)."""
TITLE_MAX = 200

WO, COMMENT, USER = TABLES["work_order"], TABLES["work_order_comment"], TABLES["app_user"]


# ------------------------------------------------------------------------------------------------ pure rules
def check_transition(old: str, new: str) -> None:
    """Raise :class:`QualityError` naming both states unless ``old -> new`` is allowed (or ``old == new``)."""
    if new not in STATUSES:
        raise QualityError(f"status: unknown status {new!r} (known: {', '.join(STATUSES)})")
    if old != new and (old, new) not in TRANSITIONS:
        allowed = ", ".join(t for f, t in sorted(TRANSITIONS) if f == old) or "none"
        raise QualityError(f"status: cannot go from {old!r} to {new!r} (from {old!r}: {allowed})")


def default_due(priority: str, created_at: dt.datetime) -> dt.datetime:
    """``created_at`` plus the :data:`DEFAULT_DUE` of ``priority``."""
    return created_at + DEFAULT_DUE[check_priority(priority)]


def check_priority(priority: str) -> str:
    if priority not in PRIORITIES:
        raise QualityError(f"priority: unknown priority {priority!r} (known: {', '.join(PRIORITIES)})")
    return priority


def is_overdue(due_at: dt.datetime | None, status: str, now: dt.datetime) -> bool:
    """Whether a work order is overdue at ``now``: past its due time and still open or in progress."""
    return due_at is not None and due_at < now and status in ACTIVE


def _aware(value, field: str) -> dt.datetime:
    try:
        return to_utc(value, field)
    except StoreError as err:
        raise QualityError(str(err)) from None


def _now(now: dt.datetime | None) -> dt.datetime:
    return dt.datetime.now(dt.UTC) if now is None else _aware(now, "now")


def _json(v):
    return v.isoformat() if isinstance(v, dt.datetime) else v


# ------------------------------------------------------------------------------------------------ lookups
def _assignee_id(conn: Connection, username: str, enterprise_id: str | None) -> int:
    """The id of an active user who can see work orders of ``enterprise_id``; QualityError otherwise."""
    row = conn.execute(sa.select(USER.c.id, USER.c.role_id, USER.c.enterprise_id, USER.c.is_active)
                       .where(USER.c.username == username)).first()
    if row is None or not row.is_active:
        raise QualityError(f"assignee: unknown or inactive user {username!r}")
    if not can_see(Actor(row.id, row.role_id, row.enterprise_id, username), enterprise_id):
        where = f"enterprise {enterprise_id}" if enterprise_id else "park-level items"
        raise QualityError(f"assignee: user {username!r} (role {row.role_id}) cannot see work orders of {where}")
    return row.id


def _query() -> sa.Select:
    assignee, creator = USER.alias("assignee_user"), USER.alias("creator_user")
    return (sa.select(WO, assignee.c.username.label("assignee"), creator.c.username.label("created_by_user"))
            .outerjoin(assignee, assignee.c.id == WO.c.assignee_id)
            .outerjoin(creator, creator.c.id == WO.c.created_by))


def _as_dict(row, now: dt.datetime) -> dict:
    d = dict(row._mapping)
    d["overdue"] = is_overdue(d["due_at"], d["status"], now)
    return d


def _load(conn: Connection, actor: Actor, wo_id: int, now: dt.datetime) -> dict:
    row = conn.execute(_query().where(WO.c.id == wo_id)).first()
    if row is None:
        raise QualityError(f"work_order: unknown id {wo_id!r}")
    d = _as_dict(row, now)
    require_visible(actor, f"work order {wo_id}", d["enterprise_id"])
    return d


def _origin(conn: Connection, actor: Actor, alarm_id: int | None, device_id: str | None,
            enterprise_id: str | None) -> tuple[dict | None, str | None, str | None]:
    """The alarm row (if any), device and enterprise of a new work order, checked to exist and agree."""
    alarm = None
    if alarm_id is not None:
        alarm = conn.execute(sa.select(TABLES["alarm"]).where(TABLES["alarm"].c.id == alarm_id)).first()
        if alarm is None or not can_see(actor, alarm.enterprise_id):   # what the user may not see does not exist
            raise QualityError(f"alarm_id: unknown alarm {alarm_id!r}")
        alarm = dict(alarm._mapping)
        if enterprise_id is not None and alarm["enterprise_id"] is None:
            raise QualityError(f"enterprise_id: alarm {alarm_id} is the park's, not {enterprise_id!r}'s")
        for field, given in (("device_id", device_id), ("enterprise_id", enterprise_id)):
            if given is not None and alarm[field] is not None and given != alarm[field]:
                raise QualityError(f"{field}: {given!r} differs from alarm {alarm_id}'s {alarm[field]!r}")
        device_id = device_id or alarm["device_id"]
        enterprise_id = enterprise_id or alarm["enterprise_id"]
    if device_id is not None:
        dev_ent = conn.execute(sa.select(TABLES["device"].c.enterprise_id)
                               .where(TABLES["device"].c.id == device_id)).first()
        if dev_ent is None:
            raise QualityError(f"device_id: unknown device {device_id!r}")
        if enterprise_id is not None and dev_ent[0] is not None and dev_ent[0] != enterprise_id:
            raise QualityError(f"enterprise_id: {enterprise_id!r} differs from device {device_id}'s {dev_ent[0]!r}")
        enterprise_id = enterprise_id or dev_ent[0]
    if enterprise_id is not None and conn.execute(sa.select(TABLES["enterprise"].c.id)
                                                  .where(TABLES["enterprise"].c.id == enterprise_id)).first() is None:
        raise QualityError(f"enterprise_id: unknown enterprise {enterprise_id!r}")
    return alarm, device_id, enterprise_id


# ------------------------------------------------------------------------------------------------ commands
def create(engine: Engine, actor: Actor, title: str, *, device_id: str | None = None, alarm_id: int | None = None,
           enterprise_id: str | None = None, priority: str = "P3", due_at: dt.datetime | None = None,
           assignee: str | None = None, description: str = "", now: dt.datetime | None = None) -> int:
    """Open a work order and return its id.

    From an alarm (``alarm_id``) the device and enterprise are the alarm's, the title its message when
    ``title`` is empty, and an ``alarm_event`` row (action ``work_order``) is added to the alarm's history. An
    enterprise user's work order without device, alarm or enterprise belongs to the user's enterprise.

    Raises
    ------
    QualityError
        naming the field and value: empty or too long title, unknown alarm / device / enterprise / assignee,
        bad priority, naive ``due_at``; or naming user and enterprise when ``actor`` may not create it there.
    """
    now, priority = _now(now), check_priority(priority)
    if actor.role == "enterprise" and alarm_id is None and device_id is None and enterprise_id is None:
        enterprise_id = actor.enterprise_id
    title = (title or "").strip()
    with engine.begin() as conn:
        alarm, device_id, enterprise_id = _origin(conn, actor, alarm_id, device_id, enterprise_id)
        require(actor, "workorder.create", enterprise_id)
        if not title and alarm is not None:
            title = (alarm["message"] or f"{alarm['kind']} {alarm['target'] or device_id or ''}").strip()
            title = title if len(title) <= TITLE_MAX else title[:TITLE_MAX - 1] + "…"
        if not title:
            raise QualityError("title: must not be empty")
        if len(title) > TITLE_MAX:
            raise QualityError(f"title: longer than {TITLE_MAX} characters ({len(title)})")
        values = {"title": title, "description": description or "", "status": "open", "priority": priority,
                  "due_at": _aware(due_at, "due_at") if due_at is not None else default_due(priority, now),
                  "device_id": device_id, "alarm_id": alarm_id, "enterprise_id": enterprise_id,
                  "assignee_id": _assignee_id(conn, assignee, enterprise_id) if assignee else None,
                  "created_by": actor.user_id, "created_at": now, "updated_at": now}
        wo_id = conn.execute(sa.insert(WO).values(**values).returning(WO.c.id)).scalar_one()
        if alarm is not None:
            conn.execute(sa.insert(TABLES["alarm_event"]).values(
                alarm_id=alarm_id, ts=now, action="work_order", user_id=actor.user_id,
                detail={"work_order_id": wo_id, "priority": priority}))
    detail = {k: _json(v) for k, v in values.items() if k not in ("created_at", "updated_at", "created_by")}
    audit(engine, "work_order_created", f"work_order:{wo_id}", detail | {"assignee": assignee}, actor.user_id)
    return wo_id


def _changes(conn: Connection, cur: dict, status, assignee, priority, due_at, now) -> tuple[dict, dict]:
    """The column values to write and the ``{field: [old, new]}`` changes of an update (validated)."""
    values, changes = {}, {}
    if status is not None and status != cur["status"]:
        check_transition(cur["status"], status)
        values["status"], changes["status"] = status, [cur["status"], status]
        if status == "closed":
            values["closed_at"] = now
    if priority is not None and check_priority(priority) != cur["priority"]:
        values["priority"], changes["priority"] = priority, [cur["priority"], priority]
        if due_at is None:
            due_at = default_due(priority, cur["created_at"])
    if due_at is not None and (due_at := _aware(due_at, "due_at")) != cur["due_at"]:
        values["due_at"], changes["due_at"] = due_at, [_json(cur["due_at"]), _json(due_at)]
    if assignee is not None and (assignee or None) != cur["assignee"]:
        values["assignee_id"] = _assignee_id(conn, assignee, cur["enterprise_id"]) if assignee else None
        changes["assignee"] = [cur["assignee"], assignee or None]
    if values:
        values["updated_at"] = now
    return values, changes


def update(engine: Engine, actor: Actor, wo_id: int, *, status: str | None = None, assignee: str | None = None,
           priority: str | None = None, due_at: dt.datetime | None = None, now: dt.datetime | None = None) -> dict:
    """Change status, assignee (username; ``""`` unassigns), priority and/or due time; return the work order.

    Closing sets ``closed_at``. Fields given with their current value change nothing; an update that changes
    nothing writes no audit row.

    Raises
    ------
    QualityError
        unknown id, illegal transition (naming both states), unknown assignee, bad priority; or naming user and
        enterprise when ``actor`` may not see or update the work order. Nothing is changed then.
    """
    now = _now(now)
    with engine.begin() as conn:
        cur = _load(conn, actor, wo_id, now)
        require(actor, "workorder.update", cur["enterprise_id"])
        values, changes = _changes(conn, cur, status, assignee, priority, due_at, now)
        if values:
            conn.execute(sa.update(WO).where(WO.c.id == wo_id).values(**values))
    if changes:
        audit(engine, "work_order_updated", f"work_order:{wo_id}", {"changes": changes}, actor.user_id)
    return get(engine, actor, wo_id, now=now)


def comment(engine: Engine, actor: Actor, wo_id: int, text: str, *, now: dt.datetime | None = None) -> int:
    """Add a comment to a work order and return the comment's id (QualityError on empty text or refusal)."""
    now, text = _now(now), (text or "").strip()
    if not text:
        raise QualityError("text: a comment must not be empty")
    with engine.begin() as conn:
        cur = _load(conn, actor, wo_id, now)
        require(actor, "workorder.comment", cur["enterprise_id"])
        cid = conn.execute(sa.insert(COMMENT).values(work_order_id=wo_id, ts=now, user_id=actor.user_id, text=text)
                           .returning(COMMENT.c.id)).scalar_one()
        conn.execute(sa.update(WO).where(WO.c.id == wo_id).values(updated_at=now))
    audit(engine, "work_order_commented", f"work_order:{wo_id}", {"comment_id": cid, "text": text}, actor.user_id)
    return cid


# ------------------------------------------------------------------------------------------------ queries
def get(engine: Engine, actor: Actor, wo_id: int, *, now: dt.datetime | None = None) -> dict:
    """One work order with ``assignee`` (username), ``overdue``, ``comments`` (``ts, user, text``, oldest first)
    and ``history`` (its ``audit_log`` rows: ``ts, action, user_id, detail``)."""
    now = _now(now)
    audit_log = TABLES["audit_log"]
    with engine.connect() as conn:
        d = _load(conn, actor, wo_id, now)
        d["comments"] = [dict(r._mapping) for r in conn.execute(
            sa.select(COMMENT.c.id, COMMENT.c.ts, COMMENT.c.user_id, USER.c.username.label("user"), COMMENT.c.text)
            .outerjoin(USER, USER.c.id == COMMENT.c.user_id).where(COMMENT.c.work_order_id == wo_id)
            .order_by(COMMENT.c.ts, COMMENT.c.id))]
        d["history"] = [dict(r._mapping) for r in conn.execute(
            sa.select(audit_log.c.ts, audit_log.c.action, audit_log.c.user_id, audit_log.c.detail)
            .where(audit_log.c.target == f"work_order:{wo_id}").order_by(audit_log.c.ts, audit_log.c.id))]
    return d


def list_orders(engine: Engine, actor: Actor, *, status: str | tuple[str, ...] | None = None,
                overdue: bool | None = None, enterprise_id: str | None = None, now: dt.datetime | None = None,
                limit: int | None = None) -> list[dict]:
    """The work orders ``actor`` may see, earliest due first, each with an ``overdue`` flag.

    Parameters
    ----------
    status : str or tuple of str, optional
        only this status (or these statuses).
    overdue : bool, optional
        True: only overdue ones; False: only those not overdue; None: all.
    enterprise_id : str, optional
        only this enterprise's (an enterprise user asking for another enterprise is refused).
    now : datetime, optional
        the instant ``overdue`` is judged at (default: now).
    limit : int, optional
        at most this many (the earliest due).
    """
    now = _now(now)
    q = _query().order_by(WO.c.due_at.is_(None), WO.c.due_at, WO.c.id)
    if (cond := scope_filter(actor, WO.c.enterprise_id)) is not None:
        q = q.where(cond)
    if status is not None:
        wanted = (status,) if isinstance(status, str) else tuple(status)
        for one in wanted:
            if one not in STATUSES:
                raise QualityError(f"status: unknown status {one!r} (known: {', '.join(STATUSES)})")
        q = q.where(WO.c.status.in_(wanted))
    if enterprise_id is not None:
        require_visible(actor, "work orders", enterprise_id)
        q = q.where(WO.c.enterprise_id == enterprise_id)
    late = sa.and_(WO.c.due_at.is_not(None), WO.c.due_at < now, WO.c.status.in_(ACTIVE))
    if overdue is not None:
        q = q.where(late if overdue else sa.not_(late))
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        return [_as_dict(r, now) for r in conn.execute(q)]
