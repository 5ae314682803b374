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


def report_infeasible(err: InfeasibleError, as_json: bool) -> None:
    """An infeasible problem is an answer, not a crash: said (as JSON with ``--json``), exit status 1."""
    if as_json:
        typer.echo(json.dumps({"status": "infeasible", "message": str(err)}))
    else:
        _say(f"anning: {err}")
    sys.exit(1)


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
        report_infeasible(err, as_json)
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


def _site(name: str):
    from anning_lib.dispatch.sites import sites_from_park
    from anning_lib.errors import DispatchError
    from anning_lib.park import load_park

    s = get_settings()
    park = load_park(s.park_path)
    sites = sites_from_park(park, s.data_dir)
    if name == "all":
        return park, sites
    chosen = [x for x in sites if x.connection == name]
    if not chosen:
        raise DispatchError(f"--site: no storage site {name!r} (sites: {', '.join(x.connection for x in sites)}, all)")
    return park, chosen


@dispatch_app.command("plan")
def plan_cmd(site: str = typer.Option("all", help="park, an enterprise id with storage, or all"),
             as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Plan the next day of each storage site from the store now, without writing any setpoint (what the MPC
    would do)."""
    from anning_lib.dispatch.mpc import MpcConfig, plan_all
    from anning_lib.store.engine import make_engine

    s = get_settings()
    _park, sites = _site(site)
    engine = make_engine(s.database_url)
    plans = plan_all(engine, sites, pd.Timestamp.now(tz="UTC"),
                     MpcConfig(time_limit_s=s.dispatch_time_limit_s, tz=s.timezone))
    if as_json:
        typer.echo(json.dumps([{"site": p.site.connection, "fallback": p.fallback, **p.schedule.to_dict()}
                               for p in plans], indent=1))
        return
    for p in plans:
        sp = ", ".join(f"{k} {v:+,.0f} kW" for k, v in p.schedule.setpoints_kw(0).items())
        flag = f" FALLBACK ({p.fallback})" if p.fallback else ""
        typer.echo(f"{p.site.connection}: {p.schedule.strategy}{flag}; now {sp}; the next day saves "
                   f"{p.schedule.savings_cny:,.0f} CNY against no storage; demand threshold "
                   f"{p.case.tariff.demand_threshold_kw or 0:,.0f} kW")


@dispatch_app.command("backtest")
def backtest_cmd(site: str = typer.Option("park", help="park or an enterprise id with storage"),
                 start: str = typer.Option(..., help="first local day billed, YYYY-MM-DD (28 days of history before)"),
                 end: str = typer.Option(None, help="day after the last billed (default: the store's last day)"),
                 replan_steps: int = typer.Option(4, help="the MPC re-plans every N quarter-hours"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Bill no storage, the rule, the MPC on forecasts and perfect foresight month by month on the store's data."""
    from anning_lib.dispatch.backtest import run_backtest
    from anning_lib.dispatch.sites import site_history
    from anning_lib.errors import DispatchError
    from anning_lib.store.engine import make_engine
    from anning_lib.store.timeseries import data_range

    s = get_settings()
    _park, (one,) = _site(site)
    engine = make_engine(s.database_url)
    try:
        first = pd.Timestamp(start, tz=s.timezone)
        last = pd.Timestamp(end, tz=s.timezone) if end else data_range(engine, s.timezone)[1].floor("D")
    except (ValueError, TypeError) as err:
        raise DispatchError(f"--start/--end: not a date: {err}") from None
    gross, pv = site_history(engine, one, last, days=(last - first).days + 28, tz=s.timezone, refresh_days=None)
    if gross.empty or gross.index[0] > first - pd.Timedelta(days=1):
        raise DispatchError(f"--start: {start}: the store has no day of history before it")
    r = run_backtest(one, gross, pv, first, replan_steps=replan_steps)
    out = {"site": site, "start": start, "end": str(last.date()), "totals_cny": r.totals(),
           "savings_cny": r.savings(), "capture_ratio": r.capture_ratio, "mpc_solves": r.n_solves,
           "mpc_fallbacks": r.n_fallbacks,
           "monthly_total_cny": r.monthly.xs("total", axis=1, level=1).round(2).to_dict(orient="index")}
    if as_json:
        typer.echo(json.dumps(out, indent=1))
        return
    typer.echo(r.monthly.xs("total", axis=1, level=1).round(0).to_string())
    sav = r.savings()
    typer.echo(f"savings against no storage: rule {sav['rule']:,.0f}, MPC {sav['mpc']:,.0f}, perfect foresight "
               f"{sav['perfect']:,.0f} CNY; capture ratio {r.capture_ratio:.2f}")
