"""``anning users``: add portal users, reset passwords, change roles, (de)activate, list.

These commands run as the library's SYSTEM actor, which may administer every user: they are for the operator at
the server's console (whoever can run them can already read the database); everybody else administers users
through the portal's admin page, as an ``admin`` user. Every change leaves an ``audit_log`` row.

Passwords are never taken as command-line arguments (they would land in the shell history and in ``ps``): they
are prompted for twice without echo, or read as one line from standard input with ``--password-stdin`` (scripts).

The database is ``ANNING_DB_URL`` (default SQLite in ``var/``). Bad input raises an AccessError naming the field
and value, which the ``anning`` entry point prints as one line (exit status 2); nothing is changed then.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from zoneinfo import ZoneInfo

import typer

from anning_lib.config import get_settings
from anning_lib.errors import AccessError

users_app = typer.Typer(no_args_is_help=True, help="Portal users: add, passwd, role, deactivate, activate, list.")

_STDIN_HELP = "read the password as one line from standard input (for scripts) instead of prompting"
_ENT_HELP = "enterprise id (only and always for role enterprise), e.g. E01"


def _engine():
    """The engine, schema checked."""
    from anning_lib.store.engine import check_schema, make_engine

    engine = make_engine(get_settings().database_url)
    check_schema(engine)
    return engine


def _password(from_stdin: bool) -> str:
    """The new password: one line of stdin (without its line end) or prompted twice without echo."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise AccessError("password: --password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    return typer.prompt("New password", hide_input=True, confirmation_prompt=True)


@users_app.command("add")
def add_cmd(username: str = typer.Argument(..., help="login name: 2-64 of a-z, 0-9, '_', '.', '-'"),
            role: str = typer.Option(..., "--role", help="admin, operator, enterprise or visitor"),
            enterprise: str | None = typer.Option(None, "--enterprise", help=_ENT_HELP),
            name: str = typer.Option("", "--name", help="display name (default: the user name)"),
            password_stdin: bool = typer.Option(False, "--password-stdin", help=_STDIN_HELP)) -> None:
    """Create a portal user."""
    from anning_lib.auth import users
    from anning_lib.auth.access import SYSTEM

    engine = _engine()
    users.check_username(username)  # refuse a bad name or a taken one before asking for a password
    if _exists(engine, username):
        raise AccessError(f"username: user {username!r} exists already")
    uid = users.add_user(engine, SYSTEM, username, _password(password_stdin), role, enterprise_id=enterprise,
                         display_name=name)
    typer.echo(f"user {username!r} added (id {uid}, role {role}{', enterprise ' + enterprise if enterprise else ''})")


@users_app.command("passwd")
def passwd_cmd(username: str = typer.Argument(..., help="the user whose password is reset"),
               password_stdin: bool = typer.Option(False, "--password-stdin", help=_STDIN_HELP)) -> None:
    """Set a user's password (administrator reset; also unlocks the account)."""
    from anning_lib.auth import users
    from anning_lib.auth.access import SYSTEM

    engine = _engine()
    _require_user(engine, username)
    users.set_password(engine, SYSTEM, username, _password(password_stdin))
    typer.echo(f"password of {username!r} set; account unlocked")


@users_app.command("role")
def role_cmd(username: str = typer.Argument(..., help="the user"),
             role: str = typer.Argument(..., help="admin, operator, enterprise or visitor"),
             enterprise: str | None = typer.Option(None, "--enterprise", help=_ENT_HELP)) -> None:
    """Change a user's role (and enterprise)."""
    from anning_lib.auth import users
    from anning_lib.auth.access import SYSTEM

    users.set_role(_engine(), SYSTEM, username, role, enterprise)
    typer.echo(f"user {username!r} now has role {role}{', enterprise ' + enterprise if enterprise else ''}")


@users_app.command("deactivate")
def deactivate_cmd(username: str = typer.Argument(..., help="the user")) -> None:
    """Stop a user from logging in (open portal sessions are refused on their next request)."""
    from anning_lib.auth import users
    from anning_lib.auth.access import SYSTEM

    users.set_active(_engine(), SYSTEM, username, False)
    typer.echo(f"user {username!r} deactivated")


@users_app.command("activate")
def activate_cmd(username: str = typer.Argument(..., help="the user")) -> None:
    """Let a deactivated user log in again; also unlocks a locked account."""
    from anning_lib.auth import users
    from anning_lib.auth.access import SYSTEM

    users.set_active(_engine(), SYSTEM, username, True)
    typer.echo(f"user {username!r} active and unlocked")


def _exists(engine, username: str) -> bool:
    import sqlalchemy as sa

    from anning_lib.store.schema import TABLES

    users = TABLES["app_user"]
    with engine.connect() as conn:
        return conn.execute(sa.select(users.c.id).where(users.c.username == username)).first() is not None


def _require_user(engine, username: str) -> None:
    """AccessError unless ``username`` exists (checked before prompting for a password)."""
    if not _exists(engine, username):
        raise AccessError(f"username: unknown user {username!r}")


def _show(v, tz: str) -> str:
    return v.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if isinstance(v, dt.datetime) else "-"


@users_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Every portal user: name, role, enterprise, state, last login (display time zone)."""
    from anning_lib.auth import users
    from anning_lib.auth.access import SYSTEM

    engine = _engine()
    tz = get_settings().timezone
    rows = users.list_users(engine, SYSTEM)
    now = dt.datetime.now(dt.UTC)
    if as_json:
        doc = [{k: (v.astimezone(ZoneInfo(tz)).isoformat() if isinstance(v, dt.datetime) else v)
                for k, v in r.items()} for r in rows]
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=1))
        return
    for r in rows:
        locked = r["locked_until"] is not None and r["locked_until"] > now
        state = "inactive" if not r["is_active"] else f"locked until {_show(r['locked_until'], tz)}" if locked \
            else "active"
        typer.echo(f"{r['username']:<20} {r['role_id']:<10} {r['enterprise_id'] or '-':<6} {state:<28} "
                   f"last login {_show(r['last_login_at'], tz)}  {r['display_name']}")
    typer.echo(f"{len(rows)} user(s)", err=True)
