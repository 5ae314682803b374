"""Portal users (table ``app_user``): add, change password and role, lock-out, log in.

Every change is done by an :class:`~anning_lib.auth.access.Actor` allowed to do it (``user.admin``: admins;
``user.password``: everybody for their own password) and leaves an ``audit_log`` row; so does every login,
failed login and lock-out. A rejected input changes nothing.

Lock-out: after ``max_failures`` failed logins in a row an account is locked for ``lock_min`` minutes (settings
``ANNING_LOGIN_MAX_FAILURES`` = 5, ``ANNING_LOGIN_LOCK_MIN`` = 15; OWASP ASVS 4.0 §2.2.1 asks for such
throttling). A correct password while locked is refused too; a successful login resets the counter.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from anning_lib.auth.access import Actor, require_role
from anning_lib.auth.audit import audit
from anning_lib.auth.passwords import hash_password, needs_rehash, verify_password
from anning_lib.errors import AccessError
from anning_lib.store.assets import ROLES
from anning_lib.store.schema import TABLES

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
"""User names: 2-64 characters, lower-case letters, digits, ``_ . -``."""

LOGIN_ERROR = "login: wrong user name or password, or the account is locked"
"""What a refused login tells the person (never which part was wrong); the audit row has the reason."""


@dataclass(frozen=True)
class LockoutPolicy:
    """Failed logins in a row that lock an account, and for how long [min]."""

    max_failures: int = 5
    lock_min: float = 15.0

    @classmethod
    def from_settings(cls) -> LockoutPolicy:
        from anning_lib.config import get_settings

        s = get_settings()
        return cls(s.login_max_failures, s.login_lock_min)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def check_username(username: object) -> str:
    """The user name if valid, else :class:`AccessError` naming it."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):  # match: "bob\n" passed ($)
        raise AccessError(f"username: {username!r} must be 2-64 characters of a-z, 0-9, '_', '.', '-' "
                          "starting with a letter or digit")
    return username


def _check_role(conn: Connection, role: object, enterprise_id: object) -> tuple[str, str | None]:
    if role not in ROLES:
        raise AccessError(f"role: unknown role {role!r} (known: {', '.join(ROLES)})")
    if role == "enterprise":
        if not enterprise_id:
            raise AccessError("enterprise: an enterprise user needs an enterprise id")
        ent = TABLES["enterprise"]
        if conn.execute(sa.select(ent.c.id).where(ent.c.id == enterprise_id)).first() is None:
            raise AccessError(f"enterprise: unknown enterprise {enterprise_id!r}")
        return role, str(enterprise_id)
    if enterprise_id:
        raise AccessError(f"enterprise: only enterprise users belong to an enterprise (role {role!r}, "
                          f"enterprise {enterprise_id!r})")
    return role, None


def _row(conn: Connection, username: str, lock: bool = False):
    users = TABLES["app_user"]
    q = sa.select(users).where(users.c.username == username)
    if lock and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return conn.execute(q).first()


def _existing(conn: Connection, username: str):
    row = _row(conn, username, lock=True)
    if row is None:
        raise AccessError(f"username: unknown user {username!r}")
    return row


def add_user(engine: Engine, actor: Actor, username: str, password: str, role: str, *,
             enterprise_id: str | None = None, display_name: str = "", now: dt.datetime | None = None) -> int:
    """Create a user; returns its ``app_user.id``.

    Raises
    ------
    AccessError
        if ``actor`` is not an admin, the name is invalid or taken, the role unknown, an enterprise user has no
        (known) enterprise, or the password breaks the policy.
    """
    require_role(actor, "user.admin")
    check_username(username)
    pw_hash = hash_password(password, username)
    users = TABLES["app_user"]
    with engine.begin() as conn:
        role, enterprise_id = _check_role(conn, role, enterprise_id)
        if _row(conn, username) is not None:
            raise AccessError(f"username: user {username!r} exists already")
        uid = conn.execute(sa.insert(users).values(
            username=username, display_name=display_name or username, password_hash=pw_hash, role_id=role,
            enterprise_id=enterprise_id, is_active=True, created_at=_now(now), failed_logins=0,
            password_changed_at=_now(now)).returning(users.c.id)).scalar_one()
        audit(conn, "user_added", f"user:{username}", {"role": role, "enterprise_id": enterprise_id},
              actor.user_id, now=now)
    return uid


def set_password(engine: Engine, actor: Actor, username: str, new_password: str, *,
                 now: dt.datetime | None = None) -> None:
    """An admin sets another user's password (and unlocks the account)."""
    require_role(actor, "user.admin")
    pw_hash = hash_password(new_password, username)
    with engine.begin() as conn:
        _existing(conn, username)
        _update(conn, username, password_hash=pw_hash, password_changed_at=_now(now), failed_logins=0,
                locked_until=None)
        audit(conn, "user_password_reset", f"user:{username}", {}, actor.user_id, now=now)


def change_password(engine: Engine, username: str, old_password: str, new_password: str, *,
                    now: dt.datetime | None = None) -> None:
    """A user changes their own password; the old one must be right.

    Raises
    ------
    AccessError
        ``password: the current password is wrong`` or the policy rule the new one breaks.
    """
    with engine.begin() as conn:
        row = _existing(conn, username)
        wrong = not verify_password(row.password_hash, old_password)
        if wrong:  # the audit row must be committed: the refusal is raised after the transaction
            audit(conn, "password_change_failed", f"user:{username}", {"reason": "wrong current password"},
                  row.id, now=now)
        else:
            if old_password == new_password:
                raise AccessError("password: the new password must differ from the current one")
            _update(conn, username, password_hash=hash_password(new_password, username),
                    password_changed_at=_now(now))
            audit(conn, "password_changed", f"user:{username}", {}, row.id, now=now)
    if wrong:
        raise AccessError("password: the current password is wrong")


def set_role(engine: Engine, actor: Actor, username: str, role: str, enterprise_id: str | None = None, *,
             now: dt.datetime | None = None) -> None:
    """An admin changes a user's role (and enterprise, for enterprise users)."""
    require_role(actor, "user.admin")
    with engine.begin() as conn:
        row = _existing(conn, username)
        role, enterprise_id = _check_role(conn, role, enterprise_id)
        _update(conn, username, role_id=role, enterprise_id=enterprise_id)
        audit(conn, "user_role_set", f"user:{username}", {"from": [row.role_id, row.enterprise_id],
                                                          "to": [role, enterprise_id]}, actor.user_id, now=now)


def set_active(engine: Engine, actor: Actor, username: str, active: bool, *, now: dt.datetime | None = None) -> None:
    """An admin deactivates (no more logins; open sessions are refused on their next request) or re-activates
    a user; re-activating also unlocks."""
    require_role(actor, "user.admin")
    if actor.username == username and not active:
        raise AccessError(f"username: {username!r} may not deactivate their own account")
    with engine.begin() as conn:
        _existing(conn, username)
        values = {"is_active": bool(active)} | ({} if not active else {"failed_logins": 0, "locked_until": None})
        _update(conn, username, **values)
        audit(conn, "user_activated" if active else "user_deactivated", f"user:{username}", {}, actor.user_id,
              now=now)


def _update(conn: Connection, username: str, **values) -> None:
    users = TABLES["app_user"]
    conn.execute(sa.update(users).where(users.c.username == username).values(**values))


def _fail(conn: Connection, row, reason: str, source: str, policy: LockoutPolicy, now: dt.datetime) -> None:
    """Count a failed login and lock the account at ``policy.max_failures``."""
    detail = {"reason": reason, "source": source}
    if row is None:
        audit(conn, "login_failed", "user:?", detail | {"username": "(unknown)"}, None, now=now)
        return
    expired = row.locked_until is not None and row.locked_until <= now   # a lock served: count afresh
    failures = (0 if expired else row.failed_logins or 0) + 1
    values: dict = {"failed_logins": failures} | ({"locked_until": None} if expired else {})
    if failures >= policy.max_failures and reason != "locked":
        values["locked_until"] = now + dt.timedelta(minutes=policy.lock_min)
        detail["locked_until"] = values["locked_until"].isoformat()
    _update(conn, row.username, **values)
    audit(conn, "login_failed", f"user:{row.username}", detail | {"failures": failures}, row.id, now=now)
    if "locked_until" in values:
        audit(conn, "user_locked", f"user:{row.username}", {"failures": failures, "minutes": policy.lock_min},
              row.id, now=now)


def authenticate(engine: Engine, username: str, password: str, *, source: str = "",
                 policy: LockoutPolicy | None = None, now: dt.datetime | None = None) -> Actor:
    """Check a login; returns the user's :class:`Actor` or raises :data:`LOGIN_ERROR`.

    Parameters
    ----------
    username, password : str
        what the person typed.
    source : str
        where the attempt came from (client address), for the audit row.
    policy : LockoutPolicy, optional
        default :meth:`LockoutPolicy.from_settings`.
    now : datetime, optional
        the time (tests).

    Raises
    ------
    AccessError
        :data:`LOGIN_ERROR` for an unknown user, a wrong password, an inactive or locked account (the audit row
        says which).
    """
    policy = policy or LockoutPolicy.from_settings()
    now = _now(now)
    with engine.begin() as conn:
        row = _row(conn, username, lock=True) if isinstance(username, str) else None
        reason = None
        if row is None:
            reason = "unknown user"
        elif not row.is_active:
            reason = "inactive"
        elif row.locked_until is not None and row.locked_until > now:
            reason = "locked"
        elif not verify_password(row.password_hash, password):
            reason = "wrong password"
        elif row.role_id not in ROLES:
            reason = f"unknown role {row.role_id!r}"
        if reason is not None:
            _fail(conn, row, reason, source, policy, now)
        else:
            values = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
            if needs_rehash(row.password_hash):
                try:
                    values["password_hash"] = hash_password(password)
                except AccessError:
                    pass  # a password older than today's policy: keep its (verified) hash, do not refuse the login
            _update(conn, username, **values)
            audit(conn, "login", f"user:{username}", {"source": source}, row.id, now=now)
            return Actor(row.id, row.role_id, row.enterprise_id, username)
    raise AccessError(LOGIN_ERROR)


def active_actor(engine: Engine, username: str) -> Actor | None:
    """The :class:`Actor` of an active, unlocked user, or None (the portal checks every request with it, so a
    deactivated user's open sessions stop at once)."""
    with engine.connect() as conn:
        row = _row(conn, username)
    if row is None or not row.is_active or row.role_id not in ROLES:
        return None
    return Actor(row.id, row.role_id, row.enterprise_id, username)


def list_users(engine: Engine, actor: Actor) -> list[dict]:
    """Every user (admins only): name, display name, role, enterprise, active, locked until, last login."""
    require_role(actor, "user.admin")
    users = TABLES["app_user"]
    cols = [users.c.id, users.c.username, users.c.display_name, users.c.role_id, users.c.enterprise_id,
            users.c.is_active, users.c.failed_logins, users.c.locked_until, users.c.last_login_at]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(users.c.username))]
