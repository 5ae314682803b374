"""``anning scenario run|list|show``: scenario simulation (模拟仿真) against the base case (docs/scenario.md).

With ``--json`` only JSON is printed on standard output (progress goes to standard error).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from anning_lib.config import get_settings

scenario_app = typer.Typer(help="Scenario simulation: add PV or storage, change a tariff, electrify a boiler, shift "
                                "a process, buy green electricity; a year against the base case.",
                           no_args_is_help=True)


def _get(d: dict, path: tuple) -> float:
    for k in path:
        d = d[k]
    return d


def summary_lines(rec: dict) -> list[str]:
    """The human-readable comparison of a run record."""
    from anning_lib.scenario.engine import HEADLINE

    h, c = rec["history"], rec["comparison"]
    out = [f"{rec['scenario']['name']}: {h['source']} history {h['start'][:10]} .. {h['end'][:10]} "
           f"({rec['base']['period_days']:.0f} days), dispatch {rec['dispatch']['mode']}",
           f"  {'':<26}{'base':>14}{'scenario':>14}{'change':>14}"]
    for label, path, unit, scale in HEADLINE:
        b, s = _get(rec["base"], path) * scale, _get(rec["scenario_case"], path) * scale
        out.append(f"  {label + ' [' + unit + ']':<26}{b:>14,.1f}{s:>14,.1f}{s - b:>+14,.1f}")
    pb = "never" if c["payback_a"] is None and c["capex_cny"] > 0 else (
        "-" if c["payback_a"] is None else f"{c['payback_a']:.1f} a")
    out.append(f"  per year: saving {c['saving_cny_a'] / 1e4:,.1f} 万元, CO2 {c['co2_saving_t_a']:,.0f} t; "
               f"investment {c['capex_cny'] / 1e4:,.1f} 万元, payback {pb}"
               + (f", NPV {c['npv_cny'] / 1e4:,.1f} 万元 over {c['lifetime_a']:g} a" if c["npv_cny"] is not None else ""))
    return out


@scenario_app.command("run")
def run_cmd(file: Path = typer.Argument(..., help="scenario file (YAML; examples in data/scenarios/)"),
            as_json: bool = typer.Option(False, "--json", help="print the run record as JSON"),
            save: bool = typer.Option(True, help="save the run record under var/scenarios/")):
    """Run a scenario and its base case on the same history and compare them."""
    from anning_lib.park import load_park
    from anning_lib.scenario.engine import run_scenario, save_run, to_record
    from anning_lib.scenario.history import simulated_history, stored_history
    from anning_lib.scenario.spec import read_scenario

    settings = get_settings()
    park = load_park(settings.park_path)
    sc = read_scenario(file, park, settings.data_dir)
    typer.echo(f"scenario {sc.name}: reading {sc.history.source} history ({sc.history.days} days)", err=True)
    if sc.history.source == "store":
        from anning_lib.store.engine import check_schema, make_engine

        engine = make_engine(settings.database_url)
        check_schema(engine)
        wide, start = stored_history(engine, park, sc.history)
    else:
        wide, start = simulated_history(park, sc.history, settings.data_dir)
    typer.echo(f"scenario {sc.name}: running base case and scenario ({sc.dispatch.mode} dispatch)", err=True)
    rec = to_record(run_scenario(sc, park, wide, start, settings.data_dir))
    if save:
        path = save_run(rec, settings.var_dir / "scenarios")
        typer.echo(f"saved {path}", err=True)
    if as_json:
        typer.echo(json.dumps(rec, ensure_ascii=False, indent=1))
    else:
        typer.echo("\n".join(summary_lines(rec)))


@scenario_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json")):
    """The saved scenario runs."""
    from anning_lib.scenario.engine import list_runs

    runs = list_runs(get_settings().var_dir / "scenarios")
    if as_json:
        typer.echo(runs.to_json(orient="records", force_ascii=False))
    elif runs.empty:
        typer.echo("no saved scenario runs")
    else:
        typer.echo(runs.to_string(index=False, float_format=lambda v: f"{v:,.1f}"))


@scenario_app.command("show")
def show_cmd(run_id: str = typer.Argument(..., help="id from `anning scenario list`"),
             as_json: bool = typer.Option(False, "--json")):
    """One saved run."""
    from anning_lib.errors import AnningError

    path = get_settings().var_dir / "scenarios" / f"{run_id}.json"
    if not path.is_file():
        raise AnningError(f"run_id: no saved scenario run {run_id!r} (see `anning scenario list`)")
    rec = json.loads(path.read_text(encoding="utf-8"))
    typer.echo(json.dumps(rec, ensure_ascii=False, indent=1) if as_json else "\n".join(summary_lines(rec)))


def register(app: typer.Typer) -> None:
    """Add ``anning scenario`` to the command line."""
    app.add_typer(scenario_app, name="scenario")
