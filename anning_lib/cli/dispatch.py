"""``anning dispatch``: optimise a case file, show a tariff, run the MPC, the year backtest and demand response.

With ``--json`` a command prints only JSON on standard output; logs and the solver's banner go to standard error.
Exit status: 0 done, 1 infeasible (reported, in JSON when asked), 2 bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import typer

from anning_lib.cli.dr import dr_app
from anning_lib.config import get_settings
from anning_lib.errors import InfeasibleError

dispatch_app = typer.Typer(no_args_is_help=True, help="Storage dispatch, MPC and demand response.")
dispatch_app.add_typer(dr_app, name="dr")


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@dispatch_app.command("optimize")
def optimize_cmd(case_file: Path = typer.Option(..., "--case", help="case file (JSON, docs/dispatch.md)"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON only"),
                 time_limit: float = typer.Option(None, help="solver time limit [s]")):
    """Least-cost storage schedule of a case file, with its cost split and the no-storage baseline."""
    from anning_lib.dispatch.case import read_case
    from anning_lib.dispatch.optimize import optimize

    case = read_case(case_file)
    try:
        schedule = optimize(case, time_limit_s=time_limit)
    except InfeasibleError as err:
        if as_json:
            typer.echo(json.dumps({"status": "infeasible", "message": str(err)}))
        else:
            _say(f"anning: {err}")
        sys.exit(1)
    out = {"status": "optimal", **schedule.to_dict()}
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    split = ", ".join(f"{k} {v:,.2f}" for k, v in out["cost_split_cny"].items())
    typer.echo(f"{case_file.name}: {case.n_steps} steps of {case.timestep_minutes:g} min, {len(case.storage)} storages;"
               f" solved in {schedule.detail['solve_s'] * 1000:.0f} ms ({schedule.detail['exclusive']})")
    typer.echo(f"  cost {out['total_cost_cny']:,.2f} CNY ({split}); baseline without storage "
               f"{out['baseline_cost_cny']:,.2f}; savings {out['savings_cny']:,.2f} CNY; peak import "
               f"{out['peak_import_kw']:,.0f} kW")


@dispatch_app.command("tariff")
def tariff_cmd(connection: str = typer.Option("park", help="park or an enterprise id (data/tariffs/assignments.yaml)"),
               day: str = typer.Option("2026-07-01", help="local day to price"),
               as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """The tariff a connection pays and its hourly prices on one day."""
    from anning_lib.dispatch.tariff import prices, tariff_for

    s = get_settings()
    tariff, bands, mult = tariff_for(connection, s.data_dir)
    idx = pd.date_range(pd.Timestamp(day, tz="Asia/Shanghai"), periods=24, freq="1h")
    p = prices(tariff, bands, mult, idx)
    if as_json:
        typer.echo(json.dumps({"tariff": tariff.model_dump(), "hours": [
            {"start": t.isoformat(), "band": r.band, "import_price_cny_per_kwh": round(r.import_price_cny_per_kwh, 5)}
            for t, r in p.iterrows()]}, indent=1))
        return
    typer.echo(f"{connection}: {tariff.id} ({tariff.name}); demand charge {tariff.demand_charge_cny_per_kw_month:g} "
               f"CNY/kW-month; export limit {tariff.export_limit_kw:g} kW")
    for t, r in p.iterrows():
        typer.echo(f"  {t:%H:%M} {r.band:<6} {r.import_price_cny_per_kwh:.4f} CNY/kWh")
