"""Who may see and do what with alarms and work orders (ARCHITECTURE.md §6).

=========== ============================================ ===================================================
role        sees                                         may do
=========== ============================================ ===================================================
admin       everything                                   everything
operator    everything                                   everything here (ack, shelve, work orders)
system      everything (the alarm engine, scheduled      everything
            jobs, a CLI run without ``--as``)
enterprise  only items of its own enterprise; **not**    ``alarm.ack``, ``workorder.create`` and
            park-level items (``enterprise_id`` NULL)    ``workorder.comment`` on its own enterprise's items
visitor     nothing (alarms and work orders are not      nothing
            public figures)
=========== ============================================ ===================================================

Scoping is enforced in the library's data access (:func:`scope_filter` in every query), not only hidden in the
UI. The checks are pure functions of an :class:`Actor`; :func:`actor_from_db` is the one reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.errors import QualityError
from anning_lib.store.assets import (  # the role table's rows, seeded by init_db
    ROLES,
    sync_roles,
)
from anning_lib.store.schema import TABLES

RoleName = Literal["admin", "operator", "enterprise", "visitor", "system"]



ACTIONS: dict[str, frozenset[str]] = {
    "alarm.see": frozenset({"admin", "operator", "system", "enterprise"}),
    "workorder.see": frozenset({"admin", "operator", "system", "enterprise"}),
    "alarm.ack": frozenset({"admin", "operator", "system", "enterprise"}),
    "alarm.shelve": frozenset({"admin", "operator", "system"}),
    "workorder.create": frozenset({"admin", "operator", "system", "enterprise"}),
    "workorder.update": frozenset({"admin", "operator", "system"}),
    "workorder.comment": frozenset({"admin", "operator", "system", "enterprise"}),
    "alarm.rule": frozenset({"admin", "system"}),
}
"""Which roles may do an action; an ``enterprise`` actor only on items of its own enterprise. ``*.see`` is
viewing one item (same rule as :func:`can_see`)."""

_PARK_WIDE = frozenset({"admin", "operator", "system"})


@dataclass(frozen=True)
class Actor:
    """Who does something: a user of ``app_user`` or the library itself (:data:`SYSTEM`).

    Parameters
    ----------
    user_id : int or None
        ``app_user.id`` (None for the system); written to ``audit_log.user_id`` and friends.
    role : str
        admin, operator, enterprise, visitor or system.
    enterprise_id : str, optional
        the enterprise of an ``enterprise`` user.
    username : str
        for messages (empty for the system).
    """

    user_id: int | None
    role: RoleName
    enterprise_id: str | None = None
    username: str = ""

    def describe(self) -> str:
        """``user 'ent1' (role enterprise, enterprise E01)`` for error messages."""
        who = f"user {self.username!r}" if self.username else f"user id {self.user_id}" if self.user_id else "system"
        ent = f", enterprise {self.enterprise_id}" if self.enterprise_id else ""
        return f"{who} (role {self.role}{ent})"


SYSTEM = Actor(None, "system")
"""The library's own actor (alarm engine, schedulers, CLI without ``--as``): sees and may do everything."""


def can_see(actor: Actor, enterprise_id: str | None) -> bool:
    """Whether ``actor`` may see an item of ``enterprise_id`` (None: a park-level item).

    Admin, operator and system see everything; an enterprise user only its own enterprise's items, **not**
    park-level ones (those may concern other enterprises' supply); a visitor sees no alarms or work orders.
    """
    if actor.role in _PARK_WIDE:
        return True
    if actor.role == "enterprise":
        return actor.enterprise_id is not None and enterprise_id == actor.enterprise_id
    return False


def require(actor: Actor, action: str, enterprise_id: str | None) -> None:
    """Raise unless ``actor`` may do ``action`` on an item of ``enterprise_id`` (None: park-level).

    Raises
    ------
    QualityError
        naming the user, role, action and enterprise, e.g. ``user 'ent1' (role enterprise, enterprise E01)
        may not workorder.update on enterprise E02``.
    """
    if action not in ACTIONS:
        raise QualityError(f"action: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if actor.role in ACTIONS[action] and can_see(actor, enterprise_id):
        return
    where = f"enterprise {enterprise_id}" if enterprise_id else "park-level items"
    raise QualityError(f"{actor.describe()} may not {action} on {where}")


def require_visible(actor: Actor, what: str, enterprise_id: str | None) -> None:
    """Raise :class:`QualityError` naming user and enterprise unless ``actor`` may see ``what``."""
    if not can_see(actor, enterprise_id):
        where = f"enterprise {enterprise_id}" if enterprise_id else "the park (park-level)"
        raise QualityError(f"{actor.describe()} may not see {what} of {where}")


def scope_filter(actor: Actor, column: sa.ColumnElement) -> sa.ColumnElement | None:
    """A where-clause restricting a query on ``column`` (an ``enterprise_id`` column) to what ``actor`` sees.

    Returns
    -------
    sqlalchemy.ColumnElement or None
        None for admin, operator and system (no restriction); ``column = <own enterprise>`` for an enterprise
        user (which excludes park-level rows, whose column is NULL); ``false`` for a visitor.

    Examples
    --------
    ::

        q = sa.select(wo)
        if (cond := scope_filter(actor, wo.c.enterprise_id)) is not None:
            q = q.where(cond)
    """
    if actor.role in _PARK_WIDE:
        return None
    if actor.role == "enterprise" and actor.enterprise_id is not None:
        return column == actor.enterprise_id
    return sa.false()


def actor_from_db(engine: Engine, username: str) -> Actor:
    """The :class:`Actor` of an active ``app_user``.

    Raises
    ------
    QualityError
        if the user is unknown, inactive, or has a role this module does not know.
    """
    users = TABLES["app_user"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(users.c.id, users.c.role_id, users.c.enterprise_id, users.c.is_active)
                           .where(users.c.username == username)).first()
    if row is None:
        raise QualityError(f"user: unknown user {username!r}")
    if not row.is_active:
        raise QualityError(f"user: user {username!r} is inactive")
    if row.role_id not in ROLES:
        raise QualityError(f"user: user {username!r} has unknown role {row.role_id!r} (known: {', '.join(ROLES)})")
    return Actor(row.id, row.role_id, row.enterprise_id, username)


def ensure_roles(engine: Engine) -> None:
    """Insert the rows of :data:`ROLES` missing from the ``role`` table (``init_db`` does it too)."""
    sync_roles(engine)
