"""Who may see and do what (ARCHITECTURE.md §6): alarms, work orders, portal pages, statements.

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

from anning_lib.errors import AccessError
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
    # users and reference data
    "user.admin": frozenset({"admin", "system"}),
    "admin.point": frozenset({"admin", "system"}),
    "admin.tariff": frozenset({"admin", "system"}),
    "admin.strategy": frozenset({"admin", "system"}),
    # dispatch (approve or execute a plan in advisory mode)
    "dispatch.approve": frozenset({"admin", "operator", "system"}),
    # statements: an enterprise user only its own
    "statement.download": frozenset({"admin", "operator", "system", "enterprise"}),
    "report.run": frozenset({"admin", "operator", "system"}),
    # portal pages (role only; what a page shows is scoped again by the data access)
    "page.overview": frozenset({"admin", "operator", "enterprise", "visitor", "system"}),
    "page.twin": frozenset({"admin", "operator", "enterprise", "visitor", "system"}),
    # scenario runs: results hold every enterprise's figures, so park-wide roles only
    "page.scenarios": frozenset({"admin", "operator", "system"}),
    "page.enterprise": frozenset({"admin", "operator", "enterprise", "system"}),
    "page.device": frozenset({"admin", "operator", "enterprise", "system"}),
    "page.alarms": frozenset({"admin", "operator", "enterprise", "system"}),
    "page.dispatch": frozenset({"admin", "operator", "system"}),
    "page.carbon": frozenset({"admin", "operator", "enterprise", "system"}),
    "page.reports": frozenset({"admin", "operator", "enterprise", "system"}),
    "page.admin": frozenset({"admin", "system"}),
    "page.account": frozenset({"admin", "operator", "enterprise", "visitor", "system"}),
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
    AccessError
        naming the user, role, action and enterprise, e.g. ``user 'ent1' (role enterprise, enterprise E01)
        may not workorder.update on enterprise E02``.
    """
    if action not in ACTIONS:
        raise AccessError(f"action: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    if actor.role in ACTIONS[action] and can_see(actor, enterprise_id):
        return
    where = f"enterprise {enterprise_id}" if enterprise_id else "park-level items"
    raise AccessError(f"{actor.describe()} may not {action} on {where}")


def allowed(actor: Actor, action: str) -> bool:
    """Whether ``actor``'s role may do ``action`` at all (pages, user admin); items of an enterprise are checked
    by :func:`require` as well."""
    if action not in ACTIONS:
        raise AccessError(f"action: unknown action {action!r} (known: {', '.join(ACTIONS)})")
    return actor.role in ACTIONS[action]


def require_role(actor: Actor, action: str) -> None:
    """Raise :class:`AccessError` naming the user and action unless ``actor``'s role may do ``action``."""
    if not allowed(actor, action):
        raise AccessError(f"{actor.describe()} may not {action}")


def require_visible(actor: Actor, what: str, enterprise_id: str | None) -> None:
    """Raise :class:`AccessError` naming user and enterprise unless ``actor`` may see ``what``."""
    if not can_see(actor, enterprise_id):
        where = f"enterprise {enterprise_id}" if enterprise_id else "the park (park-level)"
        raise AccessError(f"{actor.describe()} may not see {what} of {where}")


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
    AccessError
        if the user is unknown, inactive, or has a role this module does not know.
    """
    users = TABLES["app_user"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(users.c.id, users.c.role_id, users.c.enterprise_id, users.c.is_active)
                           .where(users.c.username == username)).first()
    if row is None:
        raise AccessError(f"user: unknown user {username!r}")
    if not row.is_active:
        raise AccessError(f"user: user {username!r} is inactive")
    if row.role_id not in ROLES:
        raise AccessError(f"user: user {username!r} has unknown role {row.role_id!r} (known: {', '.join(ROLES)})")
    return Actor(row.id, row.role_id, row.enterprise_id, username)


def ensure_roles(engine: Engine) -> None:
    """Insert the rows of :data:`ROLES` missing from the ``role`` table (``init_db`` does it too)."""
    sync_roles(engine)
