"""``anning report``: produce reports from the templates of ``reports/``, list them, run the monthly schedule.

With ``--json`` a command prints only JSON on standard output; progress and kernel messages go to standard error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from anning_lib.config import get_settings
from anning_lib.errors import ReportError

report_app = typer.Typer(no_args_is_help=True, help="Reports: monthly statements and park reports (PDF).")

ROW_KEYS = ("id", "kind", "enterprise_id", "status", "attempts", "output_path", "checksum", "error")


def _ctx():
    from anning_lib.park import load_park
    from anning_lib.store.engine import check_schema, make_engine

    settings = get_settings()
    engine = make_engine(settings.database_url)
    check_schema(engine)
    return engine, load_park(settings.park_path)


def _row(r: dict) -> dict:
    out = {k: r.get(k) for k in ROW_KEYS}
    out["month"] = (r.get("params") or {}).get("month")
    if out["error"]:
        out["error"] = out["error"].strip().splitlines()[-1]
    return out


@report_app.command("run")
def run(kind: str = typer.Argument(..., help="report kind, e.g. monthly-statement"),
        month: str = typer.Option(None, help="YYYY-MM (default: the last complete month of the store)"),
        enterprise: str = typer.Option(None, help="enterprise id, or 'all' (per-enterprise reports)"),
        lang: str = typer.Option("zh_CN", help="zh_CN or en"),
        jobs: int = typer.Option(1, help="reports produced at a time (one per core is fastest)"),
        as_json: bool = typer.Option(False, "--json", help="print the report_run rows as JSON")):
    """Produce a report (or one per enterprise with --enterprise all); exit status 1 if any failed."""
    from anning_lib.carbon.records import last_complete_month
    from anning_lib.reports.runner import KINDS, run_many

    engine, park = _ctx()
    if kind not in KINDS:
        raise ReportError(f"kind: unknown report {kind!r} (one of {', '.join(KINDS)})")
    month = month or last_complete_month(engine, get_settings().timezone)
    if KINDS[kind].per_enterprise:
        if not enterprise:
            raise ReportError(f"enterprise: the {kind} report needs --enterprise ID or --enterprise all")
        ids = [e.id for e in park.enterprises] if enterprise == "all" else [enterprise]
    else:
        ids = None if enterprise is None else [enterprise]
    rows = run_many(engine, kind, month, ids, lang=lang, jobs=jobs)
    for r in rows:
        typer.echo(f"{kind} {r['enterprise_id'] or 'park'} {month}: {r['status']} "
                   f"({r['attempts']} tr{'y' if r['attempts'] == 1 else 'ies'}) "
                   f"{r['output_path'] or _row(r)['error']}", err=True)
    if as_json:
        typer.echo(json.dumps([_row(r) for r in rows], ensure_ascii=False, indent=2))
    failed = sum(r["status"] != "done" for r in rows)
    typer.echo(f"{len(rows) - failed} produced, {failed} failed", err=True)
    if failed:
        sys.exit(1)


@report_app.command("list")
def list_runs(limit: int = typer.Option(20, help="newest runs to show"),
              as_json: bool = typer.Option(False, "--json")):
    """The newest report runs."""
    from anning_lib.auth.access import SYSTEM
    from anning_lib.portal.worklists import list_reports

    engine, _park = _ctx()
    rows = list_reports(engine, SYSTEM, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
        return
    for r in rows:
        typer.echo(f"{r['id']:>5}  {r['kind']:<20} {r['enterprise_id'] or 'park':<5} "
                   f"{r['period_start']:%Y-%m-%d}  {r['status']:<8} {r['download_url'] or ''}")


@report_app.command("scheduler")
def scheduler():
    """Run the monthly report schedule in the foreground (``anning serve`` runs it too)."""
    from anning_lib.reports.schedule import start_scheduler

    engine, park = _ctx()
    typer.echo("report scheduler: monthly on day 1 at 02:00 (Ctrl-C to stop)", err=True)
    start_scheduler(engine, park, blocking=True)


@report_app.command("custom")
def custom(definition: Path = typer.Argument(..., help="custom report definition (JSON or YAML, docs/reports.md)"),
           fmt: str = typer.Option("csv", "--format", help="csv, xlsx or pdf"),
           out: Path = typer.Option(None, "--out", "-o", help="output file (default <name>.<format> here)"),
           as_user: str = typer.Option(None, "--as", help="run as this user (its role and enterprise scope)"),
           lang: str = typer.Option("zh_CN", help="zh_CN or en (PDF and XLSX titles)"),
           refresh: bool = typer.Option(False, help="bring the 15-minute rollups of the period up to date first")):
    """Run a custom report (自定义报表) and export it; the rows are those the user may see."""
    import yaml

    from anning_lib.auth.access import SYSTEM, actor_from_db
    from anning_lib.reports.custom import parse_definition, run
    from anning_lib.reports.custom_export import export

    engine, park = _ctx()
    try:
        raw = yaml.safe_load(definition.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"definition: cannot read {definition}: {err}") from None
    d = parse_definition(raw)
    actor = SYSTEM if as_user is None else actor_from_db(engine, as_user)
    df = run(engine, park, actor, d, refresh=refresh)
    path = export(df, d, fmt, out or Path(f"{d.name}.{fmt}"), lang=lang, actor=actor)
    typer.echo(f"{d.name}: {len(df)} rows -> {path}", err=True)
