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

from anning_lib.config import get_settings
from anning_lib.errors import AnningError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Anning zero-carbon park workbench.")
db_app = typer.Typer(no_args_is_help=True, help="Database: create, migrate, inspect.")
sim_app = typer.Typer(no_args_is_help=True, help="The park simulator.")
park_app = typer.Typer(no_args_is_help=True, help="The park model file.")
app.add_typer(db_app, name="db")
app.add_typer(sim_app, name="sim")
app.add_typer(park_app, name="park")


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


# ---------------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo(
    days: int = typer.Option(90, help="days of simulated history"),
    live: bool = typer.Option(True, help="keep the live simulator running after the backfill"),
    interval: float = typer.Option(10.0, help="seconds between live writes"),
    duration: float = typer.Option(None, help="stop the live simulator after this many seconds"),
):
    """Bring the whole simulated park up on this machine."""
    from anning_lib.sim.live import LiveFeed, run_live
    from anning_lib.store.engine import init_db
    from anning_lib.store.timeseries import refresh_rollups, write_measurements

    settings = get_settings()
    park = _park()
    engine = _engine()
    counts = init_db(engine, park)
    _say(f"database: {engine.url.render_as_string(hide_password=True)} ({counts})")
    sim, end = backfill(days, None, "15min", engine=engine, park=park)
    if not live:
        return
    feed = LiveFeed(sim, end)

    def tick(now, n):
        if n:
            refresh_rollups(engine, now - pd.Timedelta("30min"), now)
            _say(f"live {now.tz_convert(settings.timezone):%Y-%m-%d %H:%M:%S}: {n:,d} rows")

    _say("running:")
    _say(f"  simulator -> store, 1-minute telemetry of {sum(1 for _ in park.iter_points())} points every {interval:g} s")
    _say("  (the protocol gateway, portal and dispatch arrive with their issues; see README)")
    _say("stop with Ctrl-C")
    try:
        run_live(feed, lambda df: write_measurements(engine, df), interval, duration, tick)
    except KeyboardInterrupt:
        _say("stopped")


def main() -> None:
    """Console entry point: run the app, turning library errors into one line and exit status 2."""
    try:
        app()  # usage errors are handled by typer (exit status 2)
    except AnningError as err:
        typer.echo(f"anning: error: {err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
