"""``anning workorders``: list, open and update work orders (工单).

``--as USER`` runs a command as that ``app_user`` (role and enterprise scoping apply). Without it the command
runs as the library's SYSTEM actor, which sees and may do everything: that is for the operator at the server's
console and for scripts; a production deployment gives users these functions through the portal's login instead.

Times are printed, and naive ``--due`` times read, in the display time zone (``ANNING_TIMEZONE``, default
Asia/Shanghai). The database is ``ANNING_DB_URL`` (default SQLite in ``var/``). Bad input raises a QualityError
naming the field and value, which the ``anning`` entry point prints as one line (exit status 2).
"""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import typer

from anning_lib.config import get_settings
from anning_lib.errors import QualityError

workorders_app = typer.Typer(no_args_is_help=True, help="Work orders (工单): list, create, update.")

_AS_HELP = "act as this portal user (role and enterprise apply); default: the system actor"
_DUE_HELP = "due time, ISO 8601 (e.g. 2026-11-26T18:00; without an offset: display time zone)"


def _context(user: str | None):
    """The engine (schema checked) and the actor of ``--as``."""
    from anning_lib.auth.access import SYSTEM, actor_from_db
    from anning_lib.store.engine import check_schema, make_engine

    engine = make_engine(get_settings().database_url)
    check_schema(engine)
    return engine, (actor_from_db(engine, user) if user else SYSTEM)


def parse_due(text: str | None, tz: str) -> dt.datetime | None:
    """``--due`` as an aware datetime; a time without offset is in ``tz``."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise QualityError(f"--due: not an ISO 8601 time: {text!r}") from None
    return t.replace(tzinfo=ZoneInfo(tz)) if t.tzinfo is None else t


def _show(v, tz: str):
    return v.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if isinstance(v, dt.datetime) else v


def _jsonable(v, tz: str):
    if isinstance(v, dict):
        return {k: _jsonable(x, tz) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x, tz) for x in v]
    return v.astimezone(ZoneInfo(tz)).isoformat() if isinstance(v, dt.datetime) else v


def _line(wo: dict, tz: str) -> str:
    late = " OVERDUE 超期" if wo["overdue"] else ""
    where = wo["enterprise_id"] or "park"
    return (f"#{wo['id']:<5} {wo['priority']} {wo['status']:<11} due {_show(wo['due_at'], tz)}{late}  "
            f"[{where}{'/' + wo['device_id'] if wo['device_id'] else ''}] {wo['title']}  "
            f"-> {wo['assignee'] or '-'}")


@workorders_app.command("list")
def list_cmd(status: str | None = typer.Option(None, "--status", help="open, in_progress, resolved or closed"),
             overdue: bool = typer.Option(False, "--overdue", help="only overdue work orders"),
             enterprise: str | None = typer.Option(None, "--enterprise", help="only this enterprise's"),
             user: str | None = typer.Option(None, "--as", help=_AS_HELP),
             as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the work orders you may see, earliest due first."""
    from anning_lib.quality import workorders

    engine, actor = _context(user)
    tz = get_settings().timezone
    rows = workorders.list_orders(engine, actor, status=status, overdue=True if overdue else None,
                                  enterprise_id=enterprise)
    if as_json:
        typer.echo(json.dumps(_jsonable(rows, tz), ensure_ascii=False, indent=1))
        return
    for wo in rows:
        typer.echo(_line(wo, tz))
    typer.echo(f"{len(rows)} work order(s)", err=True)


@workorders_app.command("create")
def create_cmd(title: str = typer.Option("", "--title", help="what is to be done (default: the alarm's message)"),
               device: str | None = typer.Option(None, "--device", help="device id, e.g. E01-L1"),
               alarm: int | None = typer.Option(None, "--alarm", help="open it from this alarm id"),
               enterprise: str | None = typer.Option(None, "--enterprise", help="enterprise id (else from device)"),
               priority: str = typer.Option("P3", "--priority", help="P1 (4 h) .. P4 (7 d)"),
               due: str | None = typer.Option(None, "--due", help=_DUE_HELP),
               assignee: str | None = typer.Option(None, "--assignee", help="username of the assignee"),
               description: str = typer.Option("", "--description", help="details"),
               user: str | None = typer.Option(None, "--as", help=_AS_HELP),
               as_json: bool = typer.Option(False, "--json", help="print the work order as JSON")) -> None:
    """Open a work order and print it (its id first)."""
    from anning_lib.quality import workorders

    engine, actor = _context(user)
    tz = get_settings().timezone
    wo_id = workorders.create(engine, actor, title, device_id=device, alarm_id=alarm, enterprise_id=enterprise,
                              priority=priority, due_at=parse_due(due, tz), assignee=assignee,
                              description=description)
    _print_one(workorders.get(engine, actor, wo_id), tz, as_json, "created")


@workorders_app.command("update")
def update_cmd(wo_id: int = typer.Argument(..., metavar="ID", help="work order id"),
               status: str | None = typer.Option(None, "--status", help="open, in_progress, resolved or closed"),
               assignee: str | None = typer.Option(None, "--assignee", help='username ("" unassigns)'),
               priority: str | None = typer.Option(None, "--priority", help="P1 .. P4"),
               due: str | None = typer.Option(None, "--due", help=_DUE_HELP),
               comment: str | None = typer.Option(None, "--comment", help="add this comment"),
               user: str | None = typer.Option(None, "--as", help=_AS_HELP),
               as_json: bool = typer.Option(False, "--json", help="print the work order as JSON")) -> None:
    """Change a work order's status, assignee, priority or due time, and/or comment on it."""
    from anning_lib.quality import workorders

    if comment is not None and not comment.strip():
        raise QualityError("--comment: a comment must not be empty")
    engine, actor = _context(user)
    tz = get_settings().timezone
    if any(v is not None for v in (status, assignee, priority, due)):
        workorders.update(engine, actor, wo_id, status=status, assignee=assignee, priority=priority,
                          due_at=parse_due(due, tz))
    if comment is not None:
        workorders.comment(engine, actor, wo_id, comment)
    _print_one(workorders.get(engine, actor, wo_id), tz, as_json, "updated")


def _print_one(wo: dict, tz: str, as_json: bool, verb: str) -> None:
    if as_json:
        typer.echo(json.dumps(_jsonable(wo, tz), ensure_ascii=False, indent=1))
        return
    typer.echo(_line(wo, tz))
    for c in wo["comments"]:
        typer.echo(f"    {_show(c['ts'], tz)} {c['user'] or 'system'}: {c['text']}")
    typer.echo(f"work order {wo['id']} {verb}", err=True)
