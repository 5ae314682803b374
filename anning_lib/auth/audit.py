"""The audit trail: one ``audit_log`` row per login, failed login, user change and control action.

Every module that changes something a park manager must be able to trace (setpoints, dispatch approvals, work
orders, alarm rules, users, admin edits) writes through :func:`audit`, so the table has one shape.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anning_lib.store.schema import TABLES


def audit(bind: Engine | Connection, action: str, target: str, detail: dict | None = None,
          user_id: int | None = None, *, now: dt.datetime | None = None) -> None:
    """Append one row to ``audit_log``.

    Parameters
    ----------
    bind : Engine or Connection
        an engine (own transaction) or the connection of the caller's transaction (the row lands or not with
        the change it records).
    action : str
        what happened, e.g. ``login``, ``login_failed``, ``setpoint_written``, ``user_added``.
    target : str
        what it happened to, e.g. ``user:ent1``, ``E05-BESS.p_set_kw``.
    detail : dict, optional
        JSON-serialisable facts (never a password or a hash).
    user_id : int, optional
        ``app_user.id`` of who did it (None: the system or an unknown user).
    """
    row = dict(ts=now or dt.datetime.now(dt.UTC), user_id=user_id, action=action, target=target[:200],
               detail=detail or {})
    stmt = sa.insert(TABLES["audit_log"]).values(**row)
    if isinstance(bind, Connection):
        bind.execute(stmt)
    else:
        with bind.begin() as conn:
            conn.execute(stmt)


def read_audit(engine: Engine, *, action_prefix: str | None = None, target: str | None = None,
               limit: int = 200) -> list[dict]:
    """The newest ``audit_log`` rows first (``ts, user_id, action, target, detail``), optionally filtered."""
    log = TABLES["audit_log"]
    q = sa.select(log.c.id, log.c.ts, log.c.user_id, log.c.action, log.c.target, log.c.detail)
    if action_prefix:
        q = q.where(log.c.action.startswith(action_prefix))
    if target:
        q = q.where(log.c.target == target)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(log.c.id.desc()).limit(limit))]


AUDIT_COLUMNS = ["id", "ts", "username", "action", "target", "detail"]


def query_audit(engine: Engine, actor, *, action_prefix: str | None = None, username: str | None = None,
                start: dt.datetime | None = None, end: dt.datetime | None = None, limit: int = 5000,
                tz: str = "Asia/Shanghai"):
    """The audit trail as an admin reads it: newest first, filtered by action prefix, user and ``[start, end)``.

    Parameters
    ----------
    actor : Actor
        Must be an admin (``user.admin``); anyone else gets :class:`~anning_lib.errors.AccessError`.
    start, end : datetime, optional
        Aware bounds [instant].
    limit : int
        Most rows returned.

    Returns
    -------
    pandas.DataFrame
        :data:`AUDIT_COLUMNS`; ``ts`` in ``tz``; ``username`` empty for the system; ``detail`` as JSON text.
    """
    import json

    import pandas as pd

    from anning_lib.auth.access import require_role

    require_role(actor, "user.admin")
    log, user = TABLES["audit_log"], TABLES["app_user"]
    q = (sa.select(log.c.id, log.c.ts, user.c.username, log.c.action, log.c.target, log.c.detail)
         .select_from(log.outerjoin(user, user.c.id == log.c.user_id)))
    if action_prefix:
        q = q.where(log.c.action.startswith(action_prefix))
    if username:
        q = q.where(user.c.username == username)
    if start is not None:
        q = q.where(log.c.ts >= start)
    if end is not None:
        q = q.where(log.c.ts < end)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(q.order_by(log.c.id.desc()).limit(limit))]
    df = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.tz_convert(tz)
    df["username"] = df["username"].fillna("")
    df["detail"] = [json.dumps(d or {}, ensure_ascii=False, sort_keys=True) for d in df["detail"]]
    return df


def audit_csv(df) -> bytes:
    """An audit extract as CSV (UTF-8 with BOM, so Excel opens the Chinese text; times ISO 8601 with offset)."""
    out = df.copy()
    out["ts"] = out["ts"].map(lambda t: t.isoformat())
    return out.to_csv(index=False).encode("utf-8-sig")
