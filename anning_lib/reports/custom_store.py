"""Saved custom report definitions (``report_definition``): save (upsert by owner and name), list, load (validated
again), delete; a user sees and changes only its own, admin and the system every user's."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role, require_visible
from anning_lib.errors import AccessError, ReportError
from anning_lib.reports.custom import READ, Definition, parse_definition
from anning_lib.store.schema import TABLES

# ======================================================================================== saved definitions
_SEE_ALL = frozenset({"admin", "system"})
"""Roles that list, load and delete every user's saved definitions; others only their own."""
LIST_COLUMNS = ["id", "name", "owner_id", "owner", "dimension", "granularity", "start", "end", "created_at",
                "updated_at"]


def _owner_is(t: sa.Table, actor: Actor) -> sa.ColumnElement:
    return t.c.owner_id.is_(None) if actor.user_id is None else t.c.owner_id == actor.user_id


def save_definition(engine: Engine, actor: Actor, definition: Definition | dict | str) -> int:
    """Save a definition as the actor's, replacing the actor's definition of the same name; returns its id.

    Raises
    ------
    AccessError
        for a visitor, or a filter naming an enterprise the actor may not see (nothing is saved).
    ReportError
        for a bad definition.
    """
    d = parse_definition(definition)
    require_role(actor, READ)
    for eid in d.filters.enterprise_ids or []:
        require_visible(actor, "custom reports", eid)
    t, now, body = TABLES["report_definition"], dt.datetime.now(dt.UTC), d.model_dump(mode="json")
    with engine.begin() as conn:
        old = conn.execute(sa.select(t.c.id).where(_owner_is(t, actor), t.c.name == d.name)).scalar()
        if old is not None:
            conn.execute(sa.update(t).where(t.c.id == old).values(definition=body, updated_at=now))
            return int(old)
        return int(conn.execute(sa.insert(t).values(name=d.name, owner_id=actor.user_id, definition=body,
                                                    created_at=now, updated_at=now).returning(t.c.id)).scalar_one())


def list_definitions(engine: Engine, actor: Actor, *, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """The saved definitions the actor may use: its own (admin and system: everyone's), by name.

    Returns
    -------
    pandas.DataFrame
        :data:`LIST_COLUMNS`: ``owner`` is the user name (None for the system's); ``start``, ``end`` local dates
        (text, as stored); ``created_at``, ``updated_at`` in ``tz``.
    """
    require_role(actor, READ)
    t, users = TABLES["report_definition"], TABLES["app_user"]
    q = (sa.select(t.c.id, t.c.name, t.c.owner_id, users.c.username, t.c.definition, t.c.created_at, t.c.updated_at)
         .join_from(t, users, users.c.id == t.c.owner_id, isouter=True).order_by(t.c.name, t.c.id))
    if actor.role not in _SEE_ALL:
        q = q.where(_owner_is(t, actor))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    df = pd.DataFrame([{"id": r.id, "name": r.name, "owner_id": r.owner_id, "owner": r.username,
                        **{k: (r.definition or {}).get(k) for k in ("dimension", "granularity", "start", "end")},
                        "created_at": r.created_at, "updated_at": r.updated_at} for r in rows], columns=LIST_COLUMNS)
    for col in ("created_at", "updated_at"):
        df[col] = pd.to_datetime(df[col], utc=True).dt.tz_convert(tz)
    return df


def _row(conn, actor: Actor, definition_id: int):
    """The stored row of a definition the actor may use (own; admin and system: any)."""
    t = TABLES["report_definition"]
    row = conn.execute(sa.select(t).where(t.c.id == definition_id)).first()
    if row is None:
        raise ReportError(f"id: no saved report definition {definition_id!r}")
    if actor.role not in _SEE_ALL and row.owner_id != actor.user_id:
        raise AccessError(f"{actor.describe()} may not use report definition {definition_id} of another user")
    return row


def load_definition(engine: Engine, actor: Actor, definition_id: int) -> Definition:
    """A saved definition, validated again (the catalogue or the rules may have changed since it was saved).

    Raises
    ------
    AccessError
        for someone else's definition (unless admin or system) or a visitor.
    ReportError
        for an unknown id, or a stored definition that is no longer valid (naming the id, field and value).
    """
    require_role(actor, READ)
    with engine.connect() as conn:
        row = _row(conn, actor, definition_id)
    try:
        return parse_definition(row.definition)
    except ReportError as err:
        raise ReportError(f"report definition {definition_id}: {err}") from None


def delete_definition(engine: Engine, actor: Actor, definition_id: int) -> None:
    """Delete a saved definition (own; admin and system: any); AccessError or ReportError as
    :func:`load_definition`."""
    require_role(actor, READ)
    t = TABLES["report_definition"]
    with engine.begin() as conn:
        _row(conn, actor, definition_id)
        conn.execute(sa.delete(t).where(t.c.id == definition_id))
