"""Alarms in the store: raise and clear from the engine's transitions, acknowledge, shelve, list; every step kept
in ``alarm_event``.

States (after ANSI/ISA-18.2-2016, the alarm state transition diagram):

| state | meaning | next |
|---|---|---|
| ``active_unack`` | condition present, not acknowledged | ack -> ``active_ack``; clear -> ``cleared_unack`` |
| ``active_ack`` | condition present, acknowledged | clear -> ``cleared`` |
| ``cleared_unack`` | returned to normal, not acknowledged | ack -> ``cleared``; raise again -> ``active_unack`` |
| ``cleared`` | returned to normal and acknowledged: closed, history only | - |

Shelving is orthogonal: ``shelved_until`` hides an alarm from the active list and from notifications until it
expires (at most :data:`MAX_SHELVE`). No second alarm is raised for a (rule, target) while one is open.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anning_lib.auth.access import SYSTEM, Actor, can_see, require, scope_filter
from anning_lib.errors import QualityError
from anning_lib.quality.engine import Transition
from anning_lib.store.schema import TABLES

log = logging.getLogger(__name__)

OPEN = ("active_unack", "active_ack", "cleared_unack")
ACTIVE = ("active_unack", "active_ack")
MAX_SHELVE = dt.timedelta(hours=24)
"""Longest shelving an operator may set (ISA-18.2 asks for a time limit on shelving)."""


def _utc(t_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t_s, dt.UTC)


def _event(conn: Connection, alarm_id: int, ts: dt.datetime, action: str, user_id: int | None = None,
           detail: dict | None = None) -> None:
    conn.execute(sa.insert(TABLES["alarm_event"]).values(alarm_id=alarm_id, ts=ts, action=action, user_id=user_id,
                                                         detail=detail))


def message_of(tr: Transition) -> str:
    """The alarm text: the rule's template filled in, or the check's own text (:meth:`AlarmRule.render`)."""
    return tr.rule.render(tr.target, tr.detail)


def _open_alarm(conn: Connection, tr: Transition):
    a = TABLES["alarm"]
    return conn.execute(sa.select(a.c.id, a.c.state).where(a.c.rule_id == tr.rule.id, a.c.target == tr.target,
                                                           a.c.state.in_(OPEN)).order_by(a.c.id.desc())).first()


def _raise(conn: Connection, tr: Transition, point_id: int | None) -> int | None:
    a, ts = TABLES["alarm"], _utc(tr.t_s)
    row = _open_alarm(conn, tr)
    if row is not None and row.state in ACTIVE:
        return None                                      # no duplicate while active
    if row is not None:                                  # returned to normal, unacknowledged: it re-alarms
        conn.execute(sa.update(a).where(a.c.id == row.id).values(state="active_unack", cleared_at=None,
                                                                 updated_at=ts, value=tr.detail.get("value")))
        _event(conn, row.id, ts, "raised", detail=tr.detail)
        return row.id
    aid = conn.execute(sa.insert(a).values(
        point_id=point_id, device_id=tr.device_id, enterprise_id=tr.enterprise_id, rule_id=tr.rule.id,
        target=tr.target, kind=tr.rule.condition.kind, severity=tr.rule.severity, message=message_of(tr),
        value=tr.detail.get("value"), limit_value=tr.detail.get("limit"), raised_at=ts, state="active_unack",
        updated_at=ts).returning(a.c.id)).scalar_one()
    _event(conn, aid, ts, "raised", detail=tr.detail)
    return aid


def _clear(conn: Connection, tr: Transition) -> int | None:
    a, ts = TABLES["alarm"], _utc(tr.t_s)
    row = _open_alarm(conn, tr)
    if row is None or row.state not in ACTIVE:
        return None
    new = "cleared_unack" if row.state == "active_unack" else "cleared"
    conn.execute(sa.update(a).where(a.c.id == row.id).values(state=new, cleared_at=ts, updated_at=ts))
    _event(conn, row.id, ts, "cleared", detail=tr.detail)
    return row.id


def apply(engine: Engine, transitions: list[Transition], point_ids: dict[str, int] | None = None
          ) -> list[tuple[int, str]]:
    """Store the engine's transitions; returns ``(alarm id, "raise" | "clear")`` of what changed."""
    out = []
    if not transitions:
        return out
    with engine.begin() as conn:
        if point_ids is None:
            point_ids = point_id_map(conn)
        for tr in transitions:
            try:
                with conn.begin_nested():        # one bad transition must not lose the others
                    aid = _raise(conn, tr, point_ids.get(tr.target)) if tr.action == "raise" else _clear(conn, tr)
            except (sa.exc.DataError, sa.exc.IntegrityError, TypeError, ValueError) as err:
                log.error("alarm transition %s %s/%s not stored: %s", tr.action, tr.rule.id, tr.target, err)
                continue
            if aid is not None:
                out.append((aid, tr.action))
    return out


def raise_event(engine: Engine, rule_id: str, target: str, message: str, *, severity: str = "high",
                kind: str = "system", enterprise_id: str | None = None, detail: dict | None = None,
                now: dt.datetime | None = None) -> int | None:
    """Raise an alarm for an event of the system itself (a report run failed, a scheduled job missed), with no
    point or device behind it; returns its id, or None while one of (rule, target) is already active.

    Same life cycle and the same no-duplicate rule as the engine's alarms (:func:`_raise`); :func:`clear_event`
    clears it when the condition is gone (the report produced after all).
    """
    ts = now or dt.datetime.now(dt.UTC)
    a = TABLES["alarm"]
    with engine.begin() as conn:
        row = conn.execute(sa.select(a.c.id, a.c.state).where(a.c.rule_id == rule_id, a.c.target == target,
                                                              a.c.state.in_(OPEN)).order_by(a.c.id.desc())).first()
        if row is not None and row.state in ACTIVE:
            return None
        if row is not None:
            conn.execute(sa.update(a).where(a.c.id == row.id).values(state="active_unack", cleared_at=None,
                                                                     updated_at=ts, message=message))
            _event(conn, row.id, ts, "raised", detail=detail)
            return row.id
        aid = conn.execute(sa.insert(a).values(
            rule_id=rule_id, target=target, kind=kind, severity=severity, message=message,
            enterprise_id=enterprise_id, raised_at=ts, state="active_unack", updated_at=ts).returning(a.c.id)
        ).scalar_one()
        _event(conn, aid, ts, "raised", detail=detail)
    return aid


def clear_event(engine: Engine, rule_id: str, target: str, *, detail: dict | None = None,
                now: dt.datetime | None = None) -> int | None:
    """Clear the active alarm of :func:`raise_event` for (rule, target), if any; returns its id."""
    ts = now or dt.datetime.now(dt.UTC)
    a = TABLES["alarm"]
    with engine.begin() as conn:
        row = conn.execute(sa.select(a.c.id, a.c.state).where(a.c.rule_id == rule_id, a.c.target == target,
                                                              a.c.state.in_(ACTIVE))).first()
        if row is None:
            return None
        new = "cleared_unack" if row.state == "active_unack" else "cleared"
        conn.execute(sa.update(a).where(a.c.id == row.id).values(state=new, cleared_at=ts, updated_at=ts))
        _event(conn, row.id, ts, "cleared", detail=detail)
    return row.id


def point_id_map(conn: Connection) -> dict[str, int]:
    """Point tag -> ``point.id``."""
    p = TABLES["point"]
    return {r.tag: r.id for r in conn.execute(sa.select(p.c.id, p.c.tag))}


def _get(conn: Connection, alarm_id: int, actor: Actor = SYSTEM):
    """The alarm row; one the actor may not see does not exist for it (the refusal reveals nothing)."""
    a = TABLES["alarm"]
    row = conn.execute(sa.select(a).where(a.c.id == alarm_id)).first()
    if row is None or not can_see(actor, row.enterprise_id):
        raise QualityError(f"alarm {alarm_id}: no such alarm")
    return row


def ack(engine: Engine, actor: Actor, alarm_id: int, note: str = "", now: dt.datetime | None = None) -> str:
    """Acknowledge an alarm; returns its new state. Enterprise users only their own enterprise's alarms."""
    now = now or dt.datetime.now(dt.UTC)
    a = TABLES["alarm"]
    with engine.begin() as conn:
        row = _get(conn, alarm_id, actor)
        require(actor, "alarm.ack", row.enterprise_id)
        new = {"active_unack": "active_ack", "cleared_unack": "cleared"}.get(row.state)
        if new is None:
            raise QualityError(f"alarm {alarm_id}: state {row.state!r} needs no acknowledgement")
        conn.execute(sa.update(a).where(a.c.id == alarm_id).values(state=new, acked_at=now, acked_by=actor.user_id,
                                                                   updated_at=now))
        _event(conn, alarm_id, now, "acked", actor.user_id, {"note": note} if note else None)
    return new


def shelve(engine: Engine, actor: Actor, alarm_id: int, duration: dt.timedelta, reason: str,
           now: dt.datetime | None = None) -> dt.datetime:
    """Shelve an open alarm for ``duration`` (at most :data:`MAX_SHELVE`); returns when it ends."""
    now = now or dt.datetime.now(dt.UTC)
    if not dt.timedelta(0) < duration <= MAX_SHELVE:
        raise QualityError(f"duration: {duration} must be more than 0 and at most {MAX_SHELVE}")
    if not reason.strip():
        raise QualityError("reason: shelving needs a reason")
    a = TABLES["alarm"]
    with engine.begin() as conn:
        row = _get(conn, alarm_id, actor)
        require(actor, "alarm.shelve", row.enterprise_id)
        if row.state not in OPEN:
            raise QualityError(f"alarm {alarm_id}: state {row.state!r} is closed, nothing to shelve")
        until = now + duration
        conn.execute(sa.update(a).where(a.c.id == alarm_id).values(shelved_until=until, updated_at=now))
        _event(conn, alarm_id, now, "shelved", actor.user_id, {"until": until.isoformat(), "reason": reason})
    return until


def expire_shelving(engine: Engine, now: dt.datetime | None = None) -> list[int]:
    """Return open alarms whose shelving has ended to the active list; returns their ids."""
    now = now or dt.datetime.now(dt.UTC)
    a = TABLES["alarm"]
    with engine.begin() as conn:
        ended = sa.and_(a.c.shelved_until.is_not(None), a.c.shelved_until <= now)
        ids = [r.id for r in conn.execute(sa.select(a.c.id).where(ended, a.c.state.in_(OPEN)))]
        for aid in ids:
            _event(conn, aid, now, "unshelved")
        conn.execute(sa.update(a).where(ended).values(shelved_until=None))
    return ids


def open_keys(engine: Engine) -> dict[tuple[str, str], str]:
    """(rule id, target) -> state of every open alarm raised by a rule (to resume the engine after a restart)."""
    a = TABLES["alarm"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.rule_id, a.c.target, a.c.state).where(a.c.state.in_(OPEN),
                                                                                 a.c.rule_id.is_not(None)))
        return {(r.rule_id, r.target): r.state for r in rows}


def close_orphans(engine: Engine, keys: list[tuple[str, str]], reason: str,
                  now: dt.datetime | None = None) -> list[int]:
    """Close open alarms of rules no longer in force (removed or disabled): cleared, with the reason."""
    now = now or dt.datetime.now(dt.UTC)
    a, out = TABLES["alarm"], []
    with engine.begin() as conn:
        for rule_id, target in keys:
            for r in conn.execute(sa.select(a.c.id).where(a.c.rule_id == rule_id, a.c.target == target,
                                                          a.c.state.in_(OPEN))).all():
                conn.execute(sa.update(a).where(a.c.id == r.id).values(state="cleared", cleared_at=now,
                                                                       updated_at=now))
                _event(conn, r.id, now, "cleared", detail={"reason": reason})
                out.append(r.id)
    return out


def get_alarm(engine: Engine, alarm_id: int) -> dict:
    """One alarm row (no scoping: for the library's own jobs)."""
    with engine.connect() as conn:
        return dict(_get(conn, alarm_id)._mapping)


def list_alarms(engine: Engine, actor: Actor = SYSTEM, *, open_only: bool = True, include_shelved: bool = False,
                enterprise_id: str | None = None, limit: int = 500, now: dt.datetime | None = None) -> list[dict]:
    """Alarms the actor may see, newest first (scoped in the query: ARCHITECTURE.md §6)."""
    now = now or dt.datetime.now(dt.UTC)
    a = TABLES["alarm"]
    q = sa.select(a).order_by(a.c.raised_at.desc(), a.c.id.desc()).limit(limit)
    scope = scope_filter(actor, a.c.enterprise_id)
    if scope is not None:
        q = q.where(scope)
    if open_only:
        q = q.where(a.c.state.in_(OPEN))
    if not include_shelved:
        q = q.where(sa.or_(a.c.shelved_until.is_(None), a.c.shelved_until <= now))
    if enterprise_id is not None:
        q = q.where(a.c.enterprise_id == enterprise_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def history(engine: Engine, actor: Actor, alarm_id: int) -> list[dict]:
    """Every step of one alarm, oldest first."""
    e = TABLES["alarm_event"]
    with engine.connect() as conn:
        _get(conn, alarm_id, actor)                  # refuses what the actor may not see
        return [dict(r._mapping) for r in conn.execute(sa.select(e).where(e.c.alarm_id == alarm_id).order_by(e.c.id))]
