"""``anning``: the one command line of the workbench.

Every command prints a single line ``anning: error: <field>: <reason>`` and exits with status 2 when the
input is bad; nothing already stored is changed by a rejected input.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import typer
from tqdm import tqdm

from anning_lib.cli.advice import register as register_advice
from anning_lib.cli.alarms import alarms_app
from anning_lib.cli.backup import register as register_backup
from anning_lib.cli.carbon import carbon_app
from anning_lib.cli.dispatch import dispatch_app
from anning_lib.cli.forecast import forecast_app
from anning_lib.cli.lab import register as register_lab
from anning_lib.cli.reports import report_app
from anning_lib.cli.scenario import register as register_scenario
from anning_lib.cli.users import users_app
from anning_lib.cli.workorders import workorders_app
from anning_lib.config import get_settings
from anning_lib.errors import AnningError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Anning zero-carbon park workbench.")
db_app = typer.Typer(no_args_is_help=True, help="Database: create, migrate, inspect.")
sim_app = typer.Typer(no_args_is_help=True, help="The park simulator.")
park_app = typer.Typer(no_args_is_help=True, help="The park model file.")
ingest_app = typer.Typer(no_args_is_help=True, help="The ingestion gateway: point maps, run, import, setpoints.")
app.add_typer(ingest_app, name="ingest")
app.add_typer(carbon_app, name="carbon")
app.add_typer(forecast_app, name="forecast")
app.add_typer(dispatch_app, name="dispatch")
app.add_typer(alarms_app, name="alarms")
app.add_typer(workorders_app, name="workorders")
app.add_typer(users_app, name="users")
app.add_typer(report_app, name="report")
app.add_typer(db_app, name="db")
app.add_typer(sim_app, name="sim")
app.add_typer(park_app, name="park")
register_lab(app)
register_advice(app)
register_backup(app)
register_scenario(app)


def _park(path: Path | None = None):
    from anning_lib.park import load_park

    return load_park(path)


def _engine():
    from anning_lib.store.engine import make_engine

    return make_engine(get_settings().database_url)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


# ---------------------------------------------------------------------------------------------- park
@park_app.command("check")
def park_check(file: Path = typer.Argument(None, help="park YAML (default data/park/anning.yaml)")):
    """Validate the park model and print what it holds."""
    park = _park(file)
    n_dev = sum(1 for _ in park.iter_devices())
    n_pts = sum(1 for _ in park.iter_points())
    typer.echo(f"{park.meta.name} v{park.meta.version}: {len(park.enterprises)} enterprises, {n_dev} devices, {n_pts} points: OK")


# ---------------------------------------------------------------------------------------------- db
@db_app.command("init")
def db_init():
    """Create or upgrade the schema and load the park model (safe to run again)."""
    from anning_lib.store.engine import current_revision, init_db

    engine = _engine()
    counts = init_db(engine, _park())
    typer.echo(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
    if counts:
        typer.echo("park model: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


@db_app.command("status")
def db_status():
    """Schema revision and row counts."""
    from anning_lib.store.engine import current_revision
    from anning_lib.store.timeseries import count_rows

    engine = _engine()
    typer.echo(f"database {engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
    for table in ("enterprise", "device", "point", "measurement", "rollup_15min"):
        typer.echo(f"  {table:<14} {count_rows(engine, table):>12,d} rows")


@db_app.command("prune")
def db_prune(keep_days: float = typer.Option(None, help="raw days to keep (default ANNING_RAW_RETENTION_DAYS)"),
             dry_run: bool = typer.Option(False, "--dry-run", help="count what would go, change nothing")):
    """Delete raw measurements older than the retention period, after their 15-minute rollups are up to date."""
    from anning_lib.ops.retention import prune_measurements

    days = keep_days if keep_days is not None else get_settings().raw_retention_days
    res = prune_measurements(_engine(), days, dry_run=dry_run)
    typer.echo(f"{'would delete' if dry_run else 'deleted'} {res['rows']:,d} raw rows before {res['cutoff']:%Y-%m-%d %H:%M} "
               f"UTC (kept {days:g} days; {res['buckets']:,d} rollup buckets brought up to date first)")


# ---------------------------------------------------------------------------------------------- sim
def _date_range(days: int, start: str | None) -> tuple[date, date]:
    if days <= 0:
        raise AnningError(f"--days: must be positive, got {days}")
    if start is None:
        end = pd.Timestamp.now(tz=get_settings().timezone).date()
        return end - timedelta(days=days), end
    try:
        first = date.fromisoformat(start)
    except ValueError:
        raise AnningError(f"--start: not a date YYYY-MM-DD: {start!r}") from None
    return first, first + timedelta(days=days)


def backfill(days: int, start: str | None, step: str, seed: int | None = None, engine=None, park=None):
    """Simulate ``days`` local days and upsert them; returns the simulator (state at the end) and the end day."""
    from anning_lib.sim import ParkSimulator, to_long
    from anning_lib.store.engine import check_schema
    from anning_lib.store.timeseries import refresh_rollups, write_measurements

    settings = get_settings()
    first, end = _date_range(days, start)
    engine = engine or _engine()
    check_schema(engine)
    sim = ParkSimulator(park or _park(), settings.seed if seed is None else seed, settings.data_dir)
    rows = 0
    with tqdm(total=(end - first).days, desc="backfill", unit="day", file=sys.stderr) as bar:
        for frame in sim.run(first, end, step):
            rows += write_measurements(engine, to_long(frame))
            bar.update(1)
    refresh_rollups(engine, pd.Timestamp(first, tz=settings.timezone), pd.Timestamp(end, tz=settings.timezone))
    _say(f"backfill: {first} .. {end - timedelta(days=1)} ({days} days, step {step}): {rows:,d} rows upserted")
    return sim, end


@sim_app.command("backfill")
def sim_backfill(
    days: int = typer.Option(90, help="number of days to simulate"),
    start: str = typer.Option(None, help="first local day YYYY-MM-DD (default: DAYS before today)"),
    step: str = typer.Option("15min", help="interval of the stored means (1min .. 1h)"),
    seed: int = typer.Option(None, help="simulator seed (default ANNING_SEED)"),
):
    """Simulate history and store it (idempotent: the same range twice stores the same rows)."""
    backfill(days, start, step, seed)


# ---------------------------------------------------------------------------------------------- ingest
def _maps(park, folder: Path | None = None):
    from anning_lib.ingest.pointmap import load_pointmaps

    return load_pointmaps(folder or get_settings().ingest_dir, park)


@ingest_app.command("check")
def ingest_check(folder: Path = typer.Argument(None, help="folder of modbus/opcua/mqtt.yaml (default ingest/)")):
    """Validate the gateway's point maps against the park model."""
    park = _park()
    maps = _maps(park, folder)
    for proto in ("modbus", "opcua", "mqtt"):
        m = getattr(maps, proto)
        if m is None:
            typer.echo(f"{proto:<7} no map")
            continue
        devs = [d if isinstance(d, str) else d.device for c in m.connections for d in c.devices]
        n_pts = sum(len(park.device(d).points) for d in devs)
        typer.echo(f"{proto:<7} {len(m.connections)} connection(s), {len(devs)} devices, {n_pts} points: OK")


@ingest_app.command("run")
def ingest_run(duration: float = typer.Option(None, help="stop after this many seconds (default: run until Ctrl-C)"),
               dispatch: bool = typer.Option(False, help="also run the storage MPC (every ANNING_DISPATCH_INTERVAL_S)"),
               forecast: bool = typer.Option(False, help="also train and forecast every 15 minutes (loads, grid, PV)")):
    """Run the gateway: poll, subscribe and store every point of the maps, with the alarms and the 15-minute
    rollups kept a minute behind (and, with --dispatch, the storage MPC and peak guard; with --forecast, the
    day-ahead forecasts)."""
    import asyncio

    from anning_lib.aio import stop_on_signal
    from anning_lib.ingest.gateway import Gateway
    from anning_lib.ingest.pointmap import describe_addresses
    from anning_lib.store.engine import init_db

    settings = get_settings()
    park = _park()
    maps = _maps(park)
    engine = _engine()
    init_db(engine, park, describe_addresses(maps, park))
    gw = Gateway(park, maps, engine, settings.var_dir)

    async def go():
        stop = asyncio.Event()
        stop_on_signal(stop, duration)
        from anning_lib.cli.live import forecast_loop, rollup_loop
        from anning_lib.quality.service import alarm_service

        alarms = alarm_service(engine, park, settings, _say)
        gw.intake.listeners.append(alarms)
        loops = [gw.run(stop), alarms.run(stop, gw), rollup_loop(engine, stop)]
        if forecast:
            loops.append(forecast_loop(engine, park, settings.var_dir, stop, _say))
        if dispatch:
            from anning_lib.dispatch.mpc import control_loops

            loops += control_loops(engine, park, gw, stop, _say, settings)
        await asyncio.gather(*loops)

    _say(f"gateway: {len(gw.adapters)} connections -> {engine.url.render_as_string(hide_password=True)}")
    asyncio.run(go())
    for h in gw.health:
        _say(f"  {h.source:<14} {'up' if h.connected else 'down':<5} {h.n_samples:>10,d} samples {h.n_bad:>6,d} bad "
             f"{h.n_errors:>6,d} errors {h.last_error}")


@ingest_app.command("import")
def ingest_import(
    file: Path = typer.Argument(..., help="CSV or Excel (.xlsx) file: long (tag, ts, value[, quality]) or wide"),
    tz: str = typer.Option(None, help="time zone of times written without an offset (default ANNING_TIMEZONE)"),
    overwrite: bool = typer.Option(False, help="let the file replace stored values whatever their quality"),
):
    """Load historical readings; every row is checked first, and a bad row refuses the whole file."""
    from anning_lib.ingest.tablefile import import_file
    from anning_lib.store.engine import check_schema

    settings = get_settings()
    engine = _engine()
    check_schema(engine)
    n = import_file(engine, file, _park(), tz=tz or settings.timezone, overwrite=overwrite)
    typer.echo(f"{file}: {n:,d} rows stored")


@ingest_app.command("setpoint")
def ingest_setpoint(tag: str = typer.Argument(..., help="writable point, e.g. SES.p_set_kw"),
                    value: float = typer.Argument(..., help="value in the point's unit (storage: kW, > 0 discharges)")):
    """Write one setpoint over the device's own protocol, read it back and record it in the audit log."""
    import asyncio

    from anning_lib.ingest.control import setpoint_once

    settings = get_settings()
    park = _park()
    engine = _engine()
    readback = asyncio.run(setpoint_once(_maps(park), park, engine, settings.var_dir, tag, value))
    typer.echo(f"{tag} = {readback:g} (read back)")


# ---------------------------------------------------------------------------------------------- portal
@app.command("serve")
def serve(port: int = typer.Option(None, help="TCP port (default ANNING_PORTAL_PORT, 5006)"),
          address: str = typer.Option(None, help="listen address (default ANNING_PORTAL_ADDRESS, 127.0.0.1)"),
          num_procs: int = typer.Option(1, "--num-procs", help="server processes (0: one per core)")):
    """Run the portal (dashboards with log-in). HTTPS with ANNING_PORTAL_CERTFILE/KEYFILE, else loopback only."""
    from anning_lib.portal.server import make_server
    from anning_lib.store.engine import check_schema

    settings = get_settings()
    check_schema(_engine())
    port = port or settings.portal_port
    address = address or settings.portal_address
    server = make_server(settings.database_url, port=port, address=address, certfile=settings.portal_certfile,
                         keyfile=settings.portal_keyfile, num_procs=num_procs)
    _report_schedule(settings)
    scheme = "https" if settings.portal_certfile else "http"
    _say(f"portal: {scheme}://{'localhost' if address in ('127.0.0.1', 'localhost') else address}:{port}/ "
         f"({num_procs or 'one per core'} process(es)); stop with Ctrl-C")
    server.start()
    server.io_loop.start()


def _report_schedule(settings):
    """The monthly report schedule, in one server process only (the first one when Tornado forks several)."""
    import logging

    import tornado.process

    from anning_lib.reports.schedule import start_scheduler

    if not settings.report_schedule or tornado.process.task_id() not in (None, 0):
        return None
    logging.getLogger("anning_lib.reports").setLevel(logging.INFO)
    return start_scheduler(_engine(), _park(settings.park_path))


# ---------------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo(
    days: int = typer.Option(90, help="days of simulated history"),
    live: bool = typer.Option(True, help="serve the simulated devices and run the gateway after the backfill"),
    duration: float = typer.Option(None, help="stop the live part after this many seconds"),
    serve: bool = typer.Option(True, help="run the portal (anning serve) beside the live part"),
):
    """Bring the whole simulated park up on this machine."""
    import asyncio

    from anning_lib.auth.demo_users import ensure_demo_users, format_demo_users
    from anning_lib.cli.live import run_live
    from anning_lib.ingest.pointmap import describe_addresses
    from anning_lib.store.engine import init_db

    settings = get_settings()
    park = _park()
    maps = _maps(park)
    engine = _engine()
    counts = init_db(engine, park, describe_addresses(maps, park))
    _say(f"database: {engine.url.render_as_string(hide_password=True)} ({counts})")
    _say(format_demo_users(ensure_demo_users(engine, park, settings.var_dir)))
    sim, end = backfill(days, None, "15min", engine=engine, park=park)
    _demo_carbon(engine, park, end - timedelta(days=days), end)
    if not live:
        return
    portal = _start_portal(settings) if serve else None
    try:
        asyncio.run(run_live(park, maps, engine, sim, end, settings.var_dir, settings.timezone, _say, duration))
    finally:
        if portal is not None:
            portal.terminate()
            portal.wait(10)


def _start_portal(settings):
    """``anning serve`` beside the live demo, in its own process (its pages never slow the gateway down)."""
    import subprocess

    log = open(settings.var_dir / "portal.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "anning_lib.cli.main", "serve"], stdout=log, stderr=log)
    _say(f"portal: http://localhost:{settings.portal_port}/ (log {settings.var_dir / 'portal.log'}); "
         "log in with a demo user above")
    return proc


def _demo_carbon(engine, park, first: date, end: date) -> None:
    """Demo activity data and carbon accounts of every complete month of the backfilled history."""
    from anning_lib.carbon.compute import compute_park
    from anning_lib.carbon.factors import load_factor_set
    from anning_lib.carbon.records import sync_factors
    from anning_lib.sim.activity import write_demo_activity

    settings = get_settings()
    fs = load_factor_set()
    sync_factors(engine, fs)
    months = pd.period_range(first, end, freq="M")
    for m in months:
        if m.start_time.date() < first or (m + 1).start_time.date() > end:
            continue  # only months the history covers completely
        write_demo_activity(engine, park, settings.data_dir, str(m), settings.timezone, fs)
        r = compute_park(engine, park, fs, str(m), tz=settings.timezone)
        t = r["totals"]
        _say(f"carbon {m} (factor set {fs.version}): park {t['total']:,.0f} tCO2 = scope 1 {t['scope1']:,.0f} + "
             f"scope 2 {t['scope2_location']:,.0f} (market-based {t['scope2_market']:,.0f}); scope 3 {t['scope3']:,.0f}")


def main() -> None:
    """Console entry point: run the app, turning library errors into one line and exit status 2."""
    try:
        app()  # usage errors are handled by typer (exit status 2)
    except AnningError as err:
        typer.echo(f"anning: error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
