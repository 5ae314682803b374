"""``anning alarms``: list, acknowledge and shelve alarms; check a rules file.

``--as USER`` acts as a user of ``app_user`` (role-checked and scoped: an enterprise user sees and acknowledges
only its own enterprise's alarms); without it the command acts as the system (the operator's console on the
server). The portal will call the same library functions with the logged-in user.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import typer

from anning_lib.config import get_settings

alarms_app = typer.Typer(no_args_is_help=True, help="Alarms (告警): list, acknowledge, shelve; rule files.")


def _engine():
    from anning_lib.store.engine import make_engine

    return make_engine(get_settings().database_url)


def _actor(engine, username: str | None):
    from anning_lib.auth.access import SYSTEM, actor_from_db

    return SYSTEM if username is None else actor_from_db(engine, username)


@alarms_app.command("list")
def list_cmd(all_states: bool = typer.Option(False, "--all", help="closed alarms too"),
             shelved: bool = typer.Option(False, help="shelved alarms too"),
             enterprise: str = typer.Option(None, help="one enterprise"),
             limit: int = typer.Option(100, help="at most this many, newest first"),
             as_user: str = typer.Option(None, "--as", help="act as this user (role and enterprise scope)"),
             as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Open alarms (newest first) that the user may see."""
    from anning_lib.quality.alarms import list_alarms

    engine = _engine()
    rows = list_alarms(engine, _actor(engine, as_user), open_only=not all_states, include_shelved=shelved,
                       enterprise_id=enterprise, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=1))
        return
    tz = ZoneInfo(get_settings().timezone)
    for r in rows:
        when = r["raised_at"].astimezone(tz)
        shelf = f" shelved until {r['shelved_until']:%H:%M}" if r["shelved_until"] else ""
        typer.echo(f"{r['id']:>6} {when:%Y-%m-%d %H:%M:%S} {r['severity']:<8} {r['state']:<13} "
                   f"{r['enterprise_id'] or 'park':<5} {r['message']}{shelf}")
    if not rows:
        typer.echo("no alarms")


@alarms_app.command("ack")
def ack_cmd(alarm_id: int = typer.Argument(..., help="alarm id"),
            note: str = typer.Option("", help="a note kept in the alarm's history"),
            as_user: str = typer.Option(None, "--as", help="act as this user")):
    """Acknowledge an alarm."""
    from anning_lib.quality.alarms import ack

    engine = _engine()
    state = ack(engine, _actor(engine, as_user), alarm_id, note)
    typer.echo(f"alarm {alarm_id}: {state}")


@alarms_app.command("shelve")
def shelve_cmd(alarm_id: int = typer.Argument(..., help="alarm id"),
               minutes: float = typer.Option(..., help="how long, at most 24 h"),
               reason: str = typer.Option(..., help="why (kept in the alarm's history)"),
               as_user: str = typer.Option(None, "--as", help="act as this user")):
    """Shelve an alarm: hidden from the active list and from notifications until it expires."""
    from anning_lib.quality.alarms import shelve

    engine = _engine()
    until = shelve(engine, _actor(engine, as_user), alarm_id, dt.timedelta(minutes=minutes), reason)
    typer.echo(f"alarm {alarm_id}: shelved until {until.isoformat(timespec='seconds')}")


@alarms_app.command("history")
def history_cmd(alarm_id: int = typer.Argument(..., help="alarm id"),
                as_user: str = typer.Option(None, "--as", help="act as this user")):
    """Every step of one alarm."""
    from anning_lib.quality.alarms import history

    engine = _engine()
    for e in history(engine, _actor(engine, as_user), alarm_id):
        typer.echo(f"{e['ts'].isoformat(timespec='seconds')} {e['action']:<10} user {e['user_id'] or '-'} "
                   f"{json.dumps(e['detail'], default=str) if e['detail'] else ''}")


@alarms_app.command("rules")
def rules_cmd(file: Path = typer.Option(None, "--check", help="a rules file to check (default the park's)"),
              as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Check an alarm rules file against the park model; print how many targets each rule covers."""
    from anning_lib.park import load_park
    from anning_lib.quality.rules import check_rules_file, expand, read_rules_file

    s = get_settings()
    park = load_park(s.park_path)
    path = file or s.data_dir / "alarms" / "rules.yaml"
    check_rules_file(path, park)                 # raises, naming every bad field
    rules, _problems = read_rules_file(path, park)
    counts = {r.id: len(expand(r, park)) for r in rules}
    if as_json:
        typer.echo(json.dumps({"file": str(path), "rules": counts}, indent=1))
        return
    typer.echo(f"{path}: {len(rules)} rules, {sum(counts.values()):,d} targets: OK")
    for r in rules:
        typer.echo(f"  {r.id:<28} {r.condition.kind:<10} {r.severity:<8} {counts[r.id]:>5} targets")


@alarms_app.command("rule-set")
def rule_set_cmd(file: Path = typer.Argument(..., help="one rule in YAML or JSON (the schema of rules.yaml)"),
                 disable: bool = typer.Option(False, help="store it disabled"),
                 as_user: str = typer.Option(None, "--as", help="act as this user (an admin)")):
    """Store an admin's rule in the database; it overrides the file's rule of the same id from the next start."""
    import yaml

    from anning_lib.errors import AlarmRuleError
    from anning_lib.park import load_park
    from anning_lib.quality.service import put_rule

    if not file.is_file():
        raise AlarmRuleError([("(file)", str(file), "no such file")], str(file))
    try:
        definition = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise AlarmRuleError([("(file)", None, f"not YAML/JSON: {err}")], str(file)) from None
    engine = _engine()
    rid = put_rule(engine, _actor(engine, as_user), load_park(get_settings().park_path), definition,
                   enabled=not disable)
    typer.echo(f"rule {rid} stored ({'disabled' if disable else 'enabled'}); it takes effect when the gateway "
               "restarts")

