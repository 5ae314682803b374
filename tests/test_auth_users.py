"""Portal users (anning_lib.auth.users, .passwords), the ``anning users`` CLI and the demo users.

Expected values are worked out by hand from the rules (policy: at least 10 characters, not the user name;
lock-out after 3 failures for 15 min in these tests), with explicit ``now=`` times so nothing depends on the
clock. The library tests use the ``db`` fixture: they run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import stat
import sys

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from anning_lib.auth import users
from anning_lib.auth.access import SYSTEM, Actor, actor_from_db
from anning_lib.auth.audit import read_audit
from anning_lib.auth.demo_users import DEMO_FILE, ensure_demo_users, format_demo_users
from anning_lib.auth.passwords import check_policy, verify_password
from anning_lib.errors import AccessError
from anning_lib.store.schema import TABLES

T0 = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
POLICY = users.LockoutPolicy(max_failures=3, lock_min=15)
PW = "correct-horse-1"          # 15 characters
PW2 = "battery-staple-2"


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(TABLES[table])).scalar_one()


def user_row(engine, username: str):
    t = TABLES["app_user"]
    with engine.connect() as conn:
        return conn.execute(sa.select(t).where(t.c.username == username)).first()


def actions(engine, target: str) -> list[str]:
    """Audit actions on ``target``, oldest first."""
    return [r["action"] for r in reversed(read_audit(engine, target=target))]


# ---------------------------------------------------------------------------------------------- add_user
def test_add_user_by_system_and_by_admin(db):
    uid = users.add_user(db, SYSTEM, "boss", PW, "admin", display_name="Park admin", now=T0)
    admin = actor_from_db(db, "boss")
    assert admin == Actor(uid, "admin", None, "boss")
    uid2 = users.add_user(db, admin, "ent-e01", PW2, "enterprise", enterprise_id="E01", now=T0 + MIN)
    row = user_row(db, "ent-e01")
    assert (row.id, row.role_id, row.enterprise_id, row.display_name, row.is_active, row.failed_logins) == \
        (uid2, "enterprise", "E01", "ent-e01", True, 0)    # display name defaults to the user name
    assert row.locked_until is None and row.last_login_at is None
    assert row.created_at == T0 + MIN and row.password_changed_at == T0 + MIN
    assert user_row(db, "boss").display_name == "Park admin"
    # audit: who added whom (the system: user_id None; the admin: its id)
    added = {r["target"]: r for r in read_audit(db, action_prefix="user_added")}
    assert added["user:boss"]["user_id"] is None
    assert added["user:boss"]["detail"] == {"role": "admin", "enterprise_id": None}
    assert added["user:ent-e01"]["user_id"] == uid
    assert added["user:ent-e01"]["detail"] == {"role": "enterprise", "enterprise_id": "E01"}
    assert added["user:ent-e01"]["ts"] == T0 + MIN


@pytest.mark.parametrize("role", ["operator", "enterprise", "visitor"])
def test_add_user_refused_for_non_admin(db, role):
    users.add_user(db, SYSTEM, "someone", PW, role, enterprise_id="E01" if role == "enterprise" else None)
    actor = actor_from_db(db, "someone")
    n_users, n_audit = count(db, "app_user"), count(db, "audit_log")
    with pytest.raises(AccessError) as e:
        users.add_user(db, actor, "newbie", PW2, "visitor")
    ent = ", enterprise E01" if role == "enterprise" else ""
    assert str(e.value) == f"user 'someone' (role {role}{ent}) may not user.admin"
    assert (count(db, "app_user"), count(db, "audit_log")) == (n_users, n_audit)
    for call in (lambda: users.set_password(db, actor, "someone", PW2),
                 lambda: users.set_role(db, actor, "someone", "admin"),
                 lambda: users.set_active(db, actor, "someone", False),
                 lambda: users.list_users(db, actor)):
        with pytest.raises(AccessError, match=r"user 'someone' .* may not user\.admin"):
            call()
    assert user_row(db, "someone").role_id == role


@pytest.mark.parametrize("name", ["a", "", "Alice", "-bob", ".bob", "_bob", "a b", "bob!", "x" * 65, "名字",
                                  "bob\n", None, 42])
def test_bad_usernames_are_refused(db, name):
    with pytest.raises(AccessError, match=r"^username: .* must be 2-64 characters"):
        users.add_user(db, SYSTEM, name, PW, "visitor")
    assert count(db, "app_user") == 0 and count(db, "audit_log") == 0


@pytest.mark.parametrize("name", ["ab", "x" * 64, "ent-e01", "a.b_c-9", "9lives"])
def test_good_usernames(name):
    assert users.check_username(name) == name


@pytest.mark.parametrize(("role", "ent", "message"), [
    ("root", None, "role: unknown role 'root' (known: admin, operator, enterprise, visitor)"),
    ("system", None, "role: unknown role 'system'"),           # the library's actor, never a login
    ("Admin", None, "role: unknown role 'Admin'"),
    ("enterprise", None, "enterprise: an enterprise user needs an enterprise id"),
    ("enterprise", "", "enterprise: an enterprise user needs an enterprise id"),
    ("enterprise", "E99", "enterprise: unknown enterprise 'E99'"),
    ("enterprise", "e01", "enterprise: unknown enterprise 'e01'"),
    ("operator", "E01", "enterprise: only enterprise users belong to an enterprise (role 'operator', "
                        "enterprise 'E01')"),
    ("visitor", "E02", "enterprise: only enterprise users belong to an enterprise"),
])
def test_role_and_enterprise_validation(db, role, ent, message):
    users.add_user(db, SYSTEM, "first", PW, "operator")
    n_users, n_audit = count(db, "app_user"), count(db, "audit_log")
    with pytest.raises(AccessError) as e:
        users.add_user(db, SYSTEM, "second", PW, role, enterprise_id=ent)
    assert str(e.value).startswith(message)
    assert (count(db, "app_user"), count(db, "audit_log")) == (n_users, n_audit)   # nothing added
    assert user_row(db, "second") is None


def test_duplicate_username_is_refused(db):
    users.add_user(db, SYSTEM, "dup", PW, "visitor")
    with pytest.raises(AccessError, match="username: user 'dup' exists already"):
        users.add_user(db, SYSTEM, "dup", PW2, "admin")
    assert count(db, "app_user") == 1
    assert user_row(db, "dup").role_id == "visitor" and verify_password(user_row(db, "dup").password_hash, PW)


# ---------------------------------------------------------------------------------------------- passwords
@pytest.mark.parametrize(("password", "message"), [
    ("", "password: must have at least 10 characters"),
    ("123456789", "password: must have at least 10 characters"),         # 9 characters
    ("x" * 129, "password: must have at most 128 characters"),
    ("stationmaster", "password: must not be the user name"),           # equal to the user name
    ("StationMaster", "password: must not be the user name"),           # ... whatever the case
    (" stationmaster ", "password: must not be the user name"),         # ... or surrounding blanks
])
def test_password_policy_refuses(db, password, message):
    with pytest.raises(AccessError) as e:
        users.add_user(db, SYSTEM, "stationmaster", password, "operator")
    assert str(e.value) == message
    assert count(db, "app_user") == 0 and count(db, "audit_log") == 0


@pytest.mark.parametrize("password", ["1234567890", "x" * 128, "stationmaster2", "密码密码密码密码密码"])
def test_password_policy_accepts(password):
    check_policy(password, "stationmaster")        # 10 characters, 128 characters, not the name, 10 CJK


def test_stored_hash_is_argon2id_never_the_password(db):
    users.add_user(db, SYSTEM, "alice", PW, "operator")
    h = user_row(db, "alice").password_hash
    assert h.startswith("$argon2id$v=19$")
    assert PW not in h
    assert verify_password(h, PW) and not verify_password(h, PW + "x")
    users.add_user(db, SYSTEM, "bob", PW, "operator")
    assert user_row(db, "bob").password_hash != h       # salted: same password, other hash


def test_verify_password_of_missing_or_bad_hash():
    assert not verify_password(None, PW)
    assert not verify_password("", PW)
    assert not verify_password("not-a-hash", PW)
    assert not verify_password("$argon2id$v=19$m=65536,t=3,p=4$garbage", PW)


# ---------------------------------------------------------------------------------------------- log in
def test_authenticate_returns_the_actor(db):
    uid = users.add_user(db, SYSTEM, "ent-e02", PW, "enterprise", enterprise_id="E02", now=T0)
    actor = users.authenticate(db, "ent-e02", PW, source="10.0.0.7", policy=POLICY, now=T0 + MIN)
    assert actor == Actor(uid, "enterprise", "E02", "ent-e02")
    row = user_row(db, "ent-e02")
    assert (row.failed_logins, row.locked_until, row.last_login_at) == (0, None, T0 + MIN)
    (login,) = read_audit(db, action_prefix="login")
    assert (login["action"], login["target"], login["user_id"], login["ts"], login["detail"]) == \
        ("login", "user:ent-e02", uid, T0 + MIN, {"source": "10.0.0.7"})


def test_unknown_user_and_wrong_password(db):
    uid = users.add_user(db, SYSTEM, "carol", PW, "visitor")
    for name, pw in (("nobody", PW), ("carol", PW2), ("Carol", PW), ("carol", ""), (None, PW)):
        with pytest.raises(AccessError) as e:
            users.authenticate(db, name, pw, source="lan", policy=POLICY, now=T0)
        assert str(e.value) == users.LOGIN_ERROR                   # never says which part was wrong
    rows = read_audit(db, action_prefix="login_failed")[::-1]
    assert [(r["target"], r["user_id"], r["detail"]["reason"]) for r in rows] == [
        ("user:?", None, "unknown user"), ("user:carol", uid, "wrong password"), ("user:?", None, "unknown user"),
        ("user:carol", uid, "wrong password"), ("user:?", None, "unknown user")]
    assert rows[0]["detail"] == {"reason": "unknown user", "source": "lan", "username": "(unknown)"}
    assert rows[1]["detail"] == {"reason": "wrong password", "source": "lan", "failures": 1}
    assert user_row(db, "carol").failed_logins == 2


def test_lockout_after_three_failures_then_unlocks_after_lock_time(db):
    uid = users.add_user(db, SYSTEM, "dave", PW, "operator", now=T0)
    for k in range(3):                                             # 08:00:00, 08:00:10, 08:00:20
        with pytest.raises(AccessError, match="^login: wrong user name or password"):
            users.authenticate(db, "dave", f"wrong-guess-{k}", policy=POLICY, now=T0 + dt.timedelta(seconds=10 * k))
    row = user_row(db, "dave")
    locked_until = dt.datetime(2026, 11, 25, 8, 15, 20, tzinfo=dt.UTC)   # third failure + 15 min
    assert (row.failed_logins, row.locked_until) == (3, locked_until)

    # the right password one minute later is refused: the account is locked (counter 4, lock not extended)
    with pytest.raises(AccessError) as e:
        users.authenticate(db, "dave", PW, policy=POLICY, now=T0 + MIN)
    assert str(e.value) == users.LOGIN_ERROR
    row = user_row(db, "dave")
    assert (row.failed_logins, row.locked_until) == (4, locked_until)
    assert users.active_actor(db, "dave") == Actor(uid, "operator", None, "dave")   # locked, still active

    # 08:16 is after 08:15:20: accepted, counter reset
    assert users.authenticate(db, "dave", PW, policy=POLICY, now=T0 + 16 * MIN) == Actor(uid, "operator", None,
                                                                                          "dave")
    row = user_row(db, "dave")
    assert (row.failed_logins, row.locked_until, row.last_login_at) == (0, None, T0 + 16 * MIN)

    log = [(r["action"], r["ts"], r["detail"]) for r in reversed(read_audit(db, target="user:dave"))]
    assert [a for a, _t, _d in log] == ["user_added", "login_failed", "login_failed", "login_failed", "user_locked",
                                        "login_failed", "login"]
    assert [d["reason"] for a, _t, d in log if a == "login_failed"] == ["wrong password"] * 3 + ["locked"]
    assert [d["failures"] for a, _t, d in log if a == "login_failed"] == [1, 2, 3, 4]
    assert log[3][2]["locked_until"] == "2026-11-25T08:15:20+00:00"
    assert log[4] == ("user_locked", T0 + dt.timedelta(seconds=20), {"failures": 3, "minutes": 15})
    assert log[6][1] == T0 + 16 * MIN


def test_lock_counts_failures_in_a_row_only(db):
    users.add_user(db, SYSTEM, "erin", PW, "operator")
    for t in range(2):
        with pytest.raises(AccessError):
            users.authenticate(db, "erin", "wrong-guess", policy=POLICY, now=T0 + t * MIN)
    users.authenticate(db, "erin", PW, policy=POLICY, now=T0 + 2 * MIN)                  # resets to 0
    for t in range(2):
        with pytest.raises(AccessError):
            users.authenticate(db, "erin", "wrong-guess", policy=POLICY, now=T0 + (3 + t) * MIN)
    row = user_row(db, "erin")
    assert (row.failed_logins, row.locked_until) == (2, None)                   # 2 + 2 failures, never 3 in a row
    users.authenticate(db, "erin", PW, policy=POLICY, now=T0 + 5 * MIN)
    assert read_audit(db, action_prefix="user_locked") == []


def test_audit_never_holds_password_or_hash(db):
    users.add_user(db, SYSTEM, "frank", PW, "operator", now=T0)
    for k in range(3):
        with pytest.raises(AccessError):
            users.authenticate(db, "frank", f"{PW}-typo{k}", policy=POLICY, now=T0)
    with pytest.raises(AccessError):
        users.authenticate(db, PW, PW, policy=POLICY, now=T0)        # password typed into the name field
    users.set_password(db, SYSTEM, "frank", PW2, now=T0)
    users.authenticate(db, "frank", PW2, policy=POLICY, now=T0)
    with pytest.raises(AccessError):
        users.change_password(db, "frank", PW, "a-third-password")
    users.change_password(db, "frank", PW2, "a-third-password")
    text = json.dumps(read_audit(db), default=str)
    assert len(read_audit(db)) == 10
    for secret in (PW, PW2, "a-third-password", "typo", user_row(db, "frank").password_hash, "argon2"):
        assert secret not in text


def test_rehash_of_old_parameters_on_login(db):
    from argon2 import PasswordHasher

    users.add_user(db, SYSTEM, "gina", PW, "operator")
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PW)
    with db.begin() as conn:
        conn.execute(sa.update(TABLES["app_user"]).where(TABLES["app_user"].c.username == "gina")
                     .values(password_hash=old))
    users.authenticate(db, "gina", PW, policy=POLICY, now=T0)
    new = user_row(db, "gina").password_hash
    assert new != old and new.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and verify_password(new, PW)


def test_rehash_of_a_password_older_than_the_policy_does_not_refuse_the_login(db):
    """A hash with old parameters of a password that today's policy would refuse (9 characters): the login is
    still accepted (the password was verified); the hash stays as it is until the user changes the password."""
    from argon2 import PasswordHasher

    uid = users.add_user(db, SYSTEM, "hank", PW, "operator")
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("short-pw9")
    with db.begin() as conn:
        conn.execute(sa.update(TABLES["app_user"]).where(TABLES["app_user"].c.username == "hank")
                     .values(password_hash=old))
    assert users.authenticate(db, "hank", "short-pw9", policy=POLICY, now=T0) == Actor(uid, "operator", None, "hank")
    assert user_row(db, "hank").last_login_at == T0


# ---------------------------------------------------------------------------------------------- changes
def test_change_password(db):
    uid = users.add_user(db, SYSTEM, "ivan", PW, "visitor", now=T0)
    before = user_row(db, "ivan")
    with pytest.raises(AccessError, match="^password: the current password is wrong$"):
        users.change_password(db, "ivan", "not-my-password", PW2, now=T0 + MIN)
    after = user_row(db, "ivan")
    assert (after.password_hash, after.password_changed_at) == (before.password_hash, T0)     # nothing changed
    users.authenticate(db, "ivan", PW, policy=POLICY, now=T0 + 2 * MIN)                      # old still works
    (failed,) = read_audit(db, action_prefix="password_change_failed")
    assert (failed["target"], failed["user_id"], failed["detail"]) == \
        ("user:ivan", uid, {"reason": "wrong current password"})

    for new, message in ((PW, "password: the new password must differ from the current one"),
                         ("short", "password: must have at least 10 characters"),
                         ("IVAN", "password: must have at least 10 characters")):
        with pytest.raises(AccessError) as e:
            users.change_password(db, "ivan", PW, new, now=T0 + 3 * MIN)
        assert str(e.value) == message
    assert user_row(db, "ivan").password_hash == before.password_hash

    users.change_password(db, "ivan", PW, PW2, now=T0 + 4 * MIN)
    assert user_row(db, "ivan").password_changed_at == T0 + 4 * MIN
    with pytest.raises(AccessError):
        users.authenticate(db, "ivan", PW, policy=POLICY, now=T0 + 5 * MIN)
    assert users.authenticate(db, "ivan", PW2, policy=POLICY, now=T0 + 6 * MIN).user_id == uid
    assert actions(db, "user:ivan") == ["user_added", "password_change_failed", "login", "password_changed",
                                        "login_failed", "login"]
    with pytest.raises(AccessError, match="username: unknown user 'nobody'"):
        users.change_password(db, "nobody", PW, PW2)


def test_set_password_by_admin_unlocks(db):
    users.add_user(db, SYSTEM, "judy", PW, "operator", now=T0)
    for k in range(3):
        with pytest.raises(AccessError):
            users.authenticate(db, "judy", "wrong-guess", policy=POLICY, now=T0 + k * MIN)
    assert user_row(db, "judy").locked_until == T0 + 2 * MIN + 15 * MIN
    admin_id = users.add_user(db, SYSTEM, "root1", PW2, "admin")
    users.set_password(db, actor_from_db(db, "root1"), "judy", "reset-by-admin", now=T0 + 3 * MIN)
    row = user_row(db, "judy")
    assert (row.failed_logins, row.locked_until, row.password_changed_at) == (0, None, T0 + 3 * MIN)
    with pytest.raises(AccessError):                                         # the old password is gone
        users.authenticate(db, "judy", PW, policy=POLICY, now=T0 + 4 * MIN)
    users.authenticate(db, "judy", "reset-by-admin", policy=POLICY, now=T0 + 4 * MIN)   # within the old lock
    (reset,) = read_audit(db, action_prefix="user_password_reset")
    assert (reset["target"], reset["user_id"], reset["detail"]) == ("user:judy", admin_id, {})
    for name, pw, message in (("nobody", "reset-by-admin", "username: unknown user 'nobody'"),
                              ("judy", "judy", "password: must have at least 10 characters")):
        with pytest.raises(AccessError, match=message):
            users.set_password(db, SYSTEM, name, pw)


def test_set_role(db):
    uid = users.add_user(db, SYSTEM, "kim", PW, "operator")
    users.set_role(db, SYSTEM, "kim", "enterprise", "E02", now=T0)
    assert actor_from_db(db, "kim") == Actor(uid, "enterprise", "E02", "kim")
    (ev,) = read_audit(db, action_prefix="user_role_set")
    assert ev["detail"] == {"from": ["operator", None], "to": ["enterprise", "E02"]} and ev["ts"] == T0
    for role, ent, message in (("enterprise", None, "enterprise: an enterprise user needs an enterprise id"),
                               ("admin", "E01", "enterprise: only enterprise users belong to an enterprise"),
                               ("superuser", None, "role: unknown role 'superuser'")):
        with pytest.raises(AccessError, match=message):
            users.set_role(db, SYSTEM, "kim", role, ent)
    assert actor_from_db(db, "kim") == Actor(uid, "enterprise", "E02", "kim")    # unchanged
    users.set_role(db, SYSTEM, "kim", "visitor")
    assert actor_from_db(db, "kim") == Actor(uid, "visitor", None, "kim")   # the enterprise is dropped
    with pytest.raises(AccessError, match="username: unknown user 'nobody'"):
        users.set_role(db, SYSTEM, "nobody", "visitor")


def test_set_active(db):
    uid = users.add_user(db, SYSTEM, "leo", PW, "operator")
    admin_id = users.add_user(db, SYSTEM, "root1", PW2, "admin")
    admin = actor_from_db(db, "root1")
    session = users.authenticate(db, "leo", PW, policy=POLICY, now=T0)
    assert users.active_actor(db, "leo") == session
    users.set_active(db, admin, "leo", False, now=T0 + MIN)
    assert users.active_actor(db, "leo") is None                 # an open session stops at its next request
    with pytest.raises(AccessError) as e:
        users.authenticate(db, "leo", PW, policy=POLICY, now=T0 + 2 * MIN)
    assert str(e.value) == users.LOGIN_ERROR
    assert read_audit(db, action_prefix="login_failed")[0]["detail"]["reason"] == "inactive"
    with pytest.raises(AccessError, match="user 'leo' is inactive"):
        actor_from_db(db, "leo")
    with pytest.raises(AccessError, match="username: 'root1' may not deactivate their own account"):
        users.set_active(db, admin, "root1", False)

    # two more failures while inactive lock the account (3 in a row); activating unlocks it
    for t in (3, 4):
        with pytest.raises(AccessError):
            users.authenticate(db, "leo", PW, policy=POLICY, now=T0 + t * MIN)
    assert user_row(db, "leo").locked_until is not None
    users.set_active(db, admin, "leo", True, now=T0 + 5 * MIN)
    row = user_row(db, "leo")
    assert (row.is_active, row.failed_logins, row.locked_until) == (True, 0, None)
    assert users.authenticate(db, "leo", PW, policy=POLICY, now=T0 + 6 * MIN) == Actor(uid, "operator", None, "leo")
    ev = [(r["action"], r["user_id"]) for r in reversed(read_audit(db, action_prefix="user_")) if r["target"] ==
          "user:leo"]
    assert ev == [("user_added", None), ("user_deactivated", admin_id), ("user_locked", uid),
                  ("user_activated", admin_id)]
    assert users.active_actor(db, "nobody") is None


def test_list_users(db):
    users.add_user(db, SYSTEM, "zed", PW, "visitor")
    users.add_user(db, SYSTEM, "amy", PW, "enterprise", enterprise_id="E01", display_name="Amy")
    rows = users.list_users(db, SYSTEM)
    assert [(r["username"], r["role_id"], r["enterprise_id"], r["display_name"], r["is_active"]) for r in rows] == \
        [("amy", "enterprise", "E01", "Amy", True), ("zed", "visitor", None, "zed", True)]
    assert all("password_hash" not in r for r in rows)


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def cli_db(tmp_path, tiny_park, monkeypatch):
    from anning_lib.config import get_settings
    from anning_lib.store import init_db, make_engine

    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    engine = make_engine(url)
    init_db(engine, tiny_park)
    monkeypatch.setenv("ANNING_DB_URL", url)
    monkeypatch.setenv("ANNING_TIMEZONE", "Asia/Shanghai")
    get_settings.cache_clear()
    yield engine
    get_settings.cache_clear()
    engine.dispose()


def cli(*args, input: str | None = None):
    from anning_lib.cli.users import users_app

    return CliRunner().invoke(users_app, [str(x) for x in args], input=input)


def test_cli_add_with_password_stdin_then_login(cli_db):
    r = cli("add", "ent-e01", "--role", "enterprise", "--enterprise", "E01", "--name", "钢厂 operator",
            "--password-stdin", input=PW + "\n")
    assert r.exit_code == 0, r.output
    assert "user 'ent-e01' added" in r.stdout and PW not in r.output
    actor = users.authenticate(cli_db, "ent-e01", PW, policy=POLICY, now=T0)
    assert (actor.role, actor.enterprise_id) == ("enterprise", "E01")
    assert user_row(cli_db, "ent-e01").display_name == "钢厂 operator"
    (added,) = read_audit(cli_db, action_prefix="user_added")
    assert added["user_id"] is None                                   # the CLI acts as the system


def test_cli_add_prompts_twice(cli_db):
    r = cli("add", "opx", "--role", "operator", input=f"{PW}\n{PW}\n")
    assert r.exit_code == 0, r.output
    assert PW not in r.output                                          # hidden input
    users.authenticate(cli_db, "opx", PW, policy=POLICY, now=T0)
    r = cli("add", "opy", "--role", "operator", input=f"{PW}\n{PW2}\n{PW2}\n{PW2}\n")   # mismatch: asked again
    assert r.exit_code == 0, r.output
    users.authenticate(cli_db, "opy", PW2, policy=POLICY, now=T0)


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("add", "bob", "--role", "root"), PW, "role: unknown role 'root'"),
    (("add", "bob", "--role", "enterprise"), PW, "enterprise: an enterprise user needs an enterprise id"),
    (("add", "bob", "--role", "operator", "--enterprise", "E01"), PW, "enterprise: only enterprise users"),
    (("add", "Bob", "--role", "operator"), PW, "username: 'Bob' must be"),
    (("add", "bob", "--role", "operator"), "short", "password: must have at least 10 characters"),
    (("add", "bob", "--role", "operator"), "", "password: --password-stdin: standard input is empty"),
])
def test_cli_add_refusals_add_nothing(cli_db, args, stdin, message):
    r = cli(*args, "--password-stdin", input=stdin + "\n" if stdin else "")
    assert isinstance(r.exception, AccessError) and message in str(r.exception), r.output
    assert count(cli_db, "app_user") == 0 and count(cli_db, "audit_log") == 0


def test_cli_bad_role_exits_2_with_one_line(cli_db, monkeypatch, capsys):
    from anning_lib.cli.main import main

    monkeypatch.setattr(sys, "argv", ["anning", "users", "add", "bob", "--role", "root", "--password-stdin"])
    monkeypatch.setattr(sys, "stdin", io.StringIO(PW + "\n"))
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("anning: error: role: unknown role 'root'") and err.count("\n") == 1
    assert count(cli_db, "app_user") == 0


def test_cli_passwd_role_deactivate_activate_list(cli_db):
    assert cli("add", "mia", "--role", "operator", "--password-stdin", input=PW + "\n").exit_code == 0
    assert cli("add", "ned", "--role", "visitor", "--password-stdin", input=PW + "\n").exit_code == 0
    for k in range(3):
        with pytest.raises(AccessError):
            users.authenticate(cli_db, "mia", "wrong-guess", policy=POLICY)
    r = cli("passwd", "mia", "--password-stdin", input=PW2 + "\n")
    assert r.exit_code == 0, r.output
    assert users.authenticate(cli_db, "mia", PW2, policy=POLICY).username == "mia"          # unlocked, new pw
    r = cli("passwd", "nobody", "--password-stdin", input=PW2 + "\n")
    assert isinstance(r.exception, AccessError) and "unknown user 'nobody'" in str(r.exception)

    r = cli("role", "mia", "enterprise", "--enterprise", "E02")
    assert r.exit_code == 0, r.output
    assert actor_from_db(cli_db, "mia").enterprise_id == "E02"
    r = cli("role", "mia", "admin", "--enterprise", "E02")
    assert isinstance(r.exception, AccessError) and actor_from_db(cli_db, "mia").role == "enterprise"

    assert cli("deactivate", "ned").exit_code == 0
    assert users.active_actor(cli_db, "ned") is None
    r = cli("list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split()[:4] for ln in lines] == [["mia", "enterprise", "E02", "active"],
                                                ["ned", "visitor", "-", "inactive"]]
    assert cli("activate", "ned").exit_code == 0
    doc = json.loads(cli("list", "--json").stdout)
    assert [(u["username"], u["is_active"]) for u in doc] == [("mia", True), ("ned", True)]
    assert doc[0]["last_login_at"].endswith("+08:00")                  # display time zone
    assert all("password_hash" not in u for u in doc)


# ---------------------------------------------------------------------------------------------- demo users
def test_demo_users(db, tiny_park, tmp_path):
    var = tmp_path / "var"
    rows = ensure_demo_users(db, tiny_park, var)
    assert [(r["username"], r["role"], r["enterprise_id"]) for r in rows] == [
        ("admin", "admin", None), ("operator", "operator", None), ("visitor", "visitor", None),
        ("ent-e01", "enterprise", "E01"), ("ent-e02", "enterprise", "E02")]
    assert len({r["password"] for r in rows}) == 5 and all(len(r["password"]) == 16 for r in rows)  # 12 bytes
    for r in rows:
        actor = users.authenticate(db, r["username"], r["password"], policy=POLICY)
        assert (actor.role, actor.enterprise_id) == (r["role"], r["enterprise_id"])
    path = var / DEMO_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == rows
    assert count(db, "app_user") == 5

    n_audit = count(db, "audit_log")
    assert ensure_demo_users(db, tiny_park, var) == rows                # second run: same passwords
    assert count(db, "app_user") == 5 and count(db, "audit_log") == n_audit   # nothing created or reset

    table = format_demo_users(rows)
    assert table.splitlines()[0].split() == ["user", "role", "enterprise", "password"]
    assert table.splitlines()[4].split() == ["ent-e01", "enterprise", "E01", rows[3]["password"]]
    assert len(table.splitlines()) == 6

    # a password changed since (portal): left alone, shown as changed
    users.change_password(db, "operator", rows[1]["password"], "operator-own-pw")
    again = ensure_demo_users(db, tiny_park, var)
    assert again[1]["password"] is None and again[0] == rows[0]
    assert "(changed since" in format_demo_users(again).splitlines()[2]
    users.authenticate(db, "operator", "operator-own-pw", policy=POLICY)

    # the file lost: existing users get new passwords, recorded in a new file (mode 0600)
    path.unlink()
    third = ensure_demo_users(db, tiny_park, var)
    assert count(db, "app_user") == 5
    assert [r["username"] for r in third] == [r["username"] for r in rows]
    assert all(t["password"] != r["password"] for t, r in zip(third, rows, strict=True))
    for r in third:
        users.authenticate(db, r["username"], r["password"], policy=POLICY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text()) == third


def test_demo_users_keep_a_role_changed_by_an_admin(db, tiny_park, tmp_path):
    ensure_demo_users(db, tiny_park, tmp_path)
    users.set_role(db, SYSTEM, "visitor", "operator")
    rows = ensure_demo_users(db, tiny_park, tmp_path)
    assert rows[2]["role"] == "operator" and actor_from_db(db, "visitor").role == "operator"
