"""The demo's portal users: ``admin``, ``operator``, ``visitor`` and one ``ent-<id>`` user per enterprise.

``anning demo`` calls :func:`ensure_demo_users` after ``init_db``. A user missing from ``app_user`` is created
with a random password (:func:`secrets.token_urlsafe`), and the passwords are kept in ``<var_dir>/demo-users.json``
(mode 0600, a list of ``{username, role, enterprise_id, password}``) so that every later run can print them
again. A user that exists already keeps its password; if the file has no entry for it (file deleted), its
password is reset to a new random one and recorded. If a password was changed since (portal or ``anning users
passwd``), the demo leaves it alone and records ``password: null`` ("changed since"), never resetting it.

These are demonstration accounts on a simulated park; a real deployment creates its users with
``anning users add``.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.auth.access import SYSTEM
from anning_lib.auth.passwords import verify_password
from anning_lib.auth.users import add_user, set_password
from anning_lib.park.schema import Park
from anning_lib.store.schema import TABLES

DEMO_FILE = "demo-users.json"
"""File name (under the var dir) of the demo users' passwords."""


def demo_user_specs(park: Park) -> list[dict]:
    """The demo users of ``park``: ``username, role, enterprise_id, display_name`` (no passwords)."""
    specs = [dict(username="admin", role="admin", enterprise_id=None, display_name="Demo administrator"),
             dict(username="operator", role="operator", enterprise_id=None, display_name="Demo operator"),
             dict(username="visitor", role="visitor", enterprise_id=None, display_name="Demo visitor")]
    for ent in park.enterprises:
        specs.append(dict(username=f"ent-{ent.id.lower()}", role="enterprise", enterprise_id=ent.id,
                          display_name=f"{ent.name} ({ent.id})"))
    return specs


def _read_file(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # unreadable: treated as missing (the passwords are reset and the file rewritten)
    if not isinstance(rows, list):
        return {}
    return {r["username"]: r for r in rows if isinstance(r, dict) and isinstance(r.get("username"), str)}


def _write_file(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as JSON with mode 0600 (a temporary file replaced atomically: never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode only applies to a new file (and is masked by umask)
        json.dump(rows, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def ensure_demo_users(engine: Engine, park: Park, var_dir: Path) -> list[dict]:
    """Create the demo users missing from ``app_user`` and return every demo user with its password.

    Parameters
    ----------
    engine : Engine
        a database migrated with ``park``'s enterprises (``init_db``).
    park : Park
    var_dir : Path
        where ``demo-users.json`` lives.

    Returns
    -------
    list of dict
        ``username, role, enterprise_id, password`` per demo user, in the order admin, operator, visitor, then
        the enterprises; ``password`` is None for a user whose password was changed since the demo set it.
    """
    path = Path(var_dir) / DEMO_FILE
    known = _read_file(path)
    users = TABLES["app_user"]
    with engine.connect() as conn:
        existing = {r.username: r for r in conn.execute(
            sa.select(users.c.username, users.c.role_id, users.c.enterprise_id, users.c.password_hash))}
    rows: list[dict] = []
    for spec in demo_user_specs(park):
        name = spec["username"]
        row = existing.get(name)
        entry = known.get(name)
        if row is None:
            password = secrets.token_urlsafe(12)
            add_user(engine, SYSTEM, name, password, spec["role"], enterprise_id=spec["enterprise_id"],
                     display_name=spec["display_name"])
            role, ent = spec["role"], spec["enterprise_id"]
        else:
            role, ent = row.role_id, row.enterprise_id  # an admin may have changed them: show what is stored
            if entry is None:
                password = secrets.token_urlsafe(12)
                set_password(engine, SYSTEM, name, password)
            else:
                password = entry.get("password")
                if password is not None and not verify_password(row.password_hash, password):
                    password = None  # changed since (portal or CLI): not ours to reset
        rows.append(dict(username=name, role=role, enterprise_id=ent, password=password))
    if rows != [known.get(r["username"]) for r in rows] or not path.is_file():
        _write_file(path, rows)
    else:
        os.chmod(path, 0o600)
    return rows


def format_demo_users(rows: list[dict]) -> str:
    """The demo users as a short table for the terminal (one user a line, under a header)."""
    width = max([len("user")] + [len(r["username"]) for r in rows])
    lines = [f"{'user':<{width}}  {'role':<10}  {'enterprise':<10}  password"]
    for r in rows:
        pw = r["password"] if r["password"] is not None else "(changed since the demo set it)"
        lines.append(f"{r['username']:<{width}}  {r['role']:<10}  {r['enterprise_id'] or '-':<10}  {pw}")
    return "\n".join(lines)
