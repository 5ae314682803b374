"""``anning dispatch dr``: the park's flexibility, allocation of a demand-response event and its settlement.

With ``--json`` a command prints only JSON on standard output; the solver's banner and messages go to standard
error. Exit status: 0 done, 1 infeasible (reported, in JSON when asked), 2 bad input (a DispatchError naming the
file, field or column, turned into one line by the ``anning`` entry point). User guide: docs/demand_response.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import typer

from anning_lib.cli.files import read_csv_text
from anning_lib.config import get_settings
from anning_lib.errors import DispatchError, InfeasibleError

dr_app = typer.Typer(no_args_is_help=True, help="Demand response / virtual power plant (需求响应 / 虚拟电厂).")

_PARK_HELP = "park model YAML (default ANNING_PARK_FILE or data/park/anning.yaml)"
_STEP_HELP = "length of the event's intervals in minutes; settle's meter CSVs must have this step"
_TOL_KWH = 1e-6
_VALUE_HELP = "value of a kWh kept in storage, added to its cost in the allocation [CNY/kWh]"
_DEGRADATION_HELP = "storage wear per kWh discharged [CNY/kWh]"


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _clean(v):
    """JSON-ready: numpy scalars as Python numbers rounded to 1e-3, non-finite numbers as null."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return round(float(v), 3) if math.isfinite(v) else None
    return v


def _echo_json(doc: dict) -> None:
    typer.echo(json.dumps(_clean(doc), indent=1, ensure_ascii=False))


def _park(park_file: Path | None):
    from anning_lib.park import load_park

    return load_park(park_file)


# ---------------------------------------------------------------------------------------------- input files
def read_event(path: Path):
    """The :class:`~anning_lib.dispatch.vpp.DrEvent` of a JSON file; errors name the file and the field."""
    from anning_lib.dispatch.vpp import DrEvent

    if not path.is_file():
        raise DispatchError(f"--event: file not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DispatchError(f"{path}: not valid JSON: {err}") from None
    try:
        return DrEvent.from_dict(raw)
    except DispatchError as err:
        raise DispatchError(f"{path}: {err}") from None


def _stamp(path: Path, line: int, text: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(text.strip())
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise DispatchError(f"{path}: column 'ts', line {line}: {text!r} is not a date-time")
    if ts.tz is None:
        raise DispatchError(f"{path}: column 'ts', line {line}: {text!r} has no time zone (give an offset such as "
                            "+08:00)")
    return ts.tz_convert("UTC")


def read_meter_csv(path: Path, option: str, known: set[str]) -> pd.DataFrame:
    """A meter CSV: column ``ts`` (ISO 8601 with an offset) and one column of metered kW per enterprise id.

    Empty cells are missing values. Errors name the file, the column, the line and the value.
    """
    raw = read_csv_text(path, option, DispatchError)
    if "ts" not in raw.columns:
        raise DispatchError(f"{path}: no column 'ts' (columns: {', '.join(raw.columns)})")
    cols = [c for c in raw.columns if c != "ts"]
    if not cols or len(raw) == 0:
        raise DispatchError(f"{path}: needs rows and at least one enterprise column besides 'ts'")
    for c in cols:
        if c not in known:
            raise DispatchError(f"{path}: column {c!r} is not an enterprise of the park (known: "
                                f"{', '.join(sorted(known))})")
    index = pd.DatetimeIndex([_stamp(path, i + 2, v) for i, v in enumerate(raw["ts"])])
    dup = index.duplicated()
    if dup.any():
        i = int(dup.argmax())
        raise DispatchError(f"{path}: column 'ts', line {i + 2}: {raw['ts'].iloc[i]!r} appears twice")
    out = pd.DataFrame(index=index)
    for c in cols:
        text = raw[c].str.strip()
        vals = pd.to_numeric(text.replace("", np.nan), errors="coerce").astype(float)
        bad = (vals.isna() & (text != "")) | np.isinf(vals)
        if bad.any():
            i = int(bad.to_numpy().argmax())
            raise DispatchError(f"{path}: column {c!r}, line {i + 2}: {raw[c].iloc[i]!r} is not a number [kW]")
        out[c] = vals.to_numpy()
    return out.sort_index()


# ---------------------------------------------------------------------------------------------- allocation
def _allocate_or_exit(event, park, step_min: float, storage_value: float, degradation: float, as_json: bool):
    """The allocation of ``event`` over the park's resources; infeasible: one message and exit status 1."""
    from anning_lib.dispatch.vpp import allocate, resources_from_park

    try:
        resources = resources_from_park(park, degradation_cny_per_kwh=degradation)
        return allocate(event, resources, step_min=step_min, storage_energy_value_cny_per_kwh=storage_value)
    except InfeasibleError as err:
        from anning_lib.cli.dispatch import report_infeasible

        report_infeasible(err, as_json)


def allocation_dict(a) -> dict:
    """An allocation as JSON-ready values (see docs/demand_response.md, "Command line")."""
    ent_kw = a.enterprise_kw()
    return {"event": a.event.to_dict(), "step_min": a.dt_h * 60.0, "cost_cny": a.cost_cny,
            "revenue_cny": a.revenue_cny, "margin_cny": a.margin_cny,
            "enterprises": a.by_enterprise[["peak_kw", "energy_kwh", "cost_cny", "rebound_kwh"]].to_dict("index"),
            "resources": a.resources.to_dict("index"),
            "intervals": [{"start": t.isoformat(), "kw": row.to_dict()} for t, row in ent_kw.iterrows()],
            "excluded": dict(a.excluded), "notes": list(a.notes)}


def _event_line(event, n: int, step_min: float) -> str:
    start, end = event.window_start, event.window_end
    return (f"{event.event_id}: {event.target_kw:,.0f} kW less import from {start.isoformat()} to "
            f"{end.isoformat()}, {event.price_cny_per_kwh:g} CNY/kWh, {event.notice_min:g} min notice; {n} "
            f"intervals of {step_min:g} min")


def _print_allocation(a) -> None:
    typer.echo(_event_line(a.event, len(a.kw), a.dt_h * 60.0))
    typer.echo(f"  {'enterprise':<12}{'peak kW':>12}{'energy kWh':>14}{'cost CNY':>14}{'rebound kWh':>14}")
    for eid, r in a.by_enterprise.iterrows():
        typer.echo(f"  {eid:<12}{r.peak_kw:>12,.1f}{r.energy_kwh:>14,.1f}{r.cost_cny:>14,.2f}{r.rebound_kwh:>14,.1f}")
    ent_kw = a.enterprise_kw()
    typer.echo("  kW per interval: " + "  ".join(f"{e:>10}" for e in ent_kw.columns))
    for t, row in ent_kw.iterrows():
        typer.echo(f"  {t:%H:%M}{'':>12}" + "  ".join(f"{v:>10,.1f}" for v in row))
    typer.echo(f"  cost {a.cost_cny:,.2f} CNY; revenue {a.revenue_cny:,.2f} CNY; margin {a.margin_cny:,.2f} CNY")
    for rid, why in a.excluded.items():
        typer.echo(f"  excluded {rid}: {why}")
    for note in a.notes:
        typer.echo(f"  note {note}")


# ---------------------------------------------------------------------------------------------- settlement
def _baseline(history: pd.DataFrame, history_file: Path, eid: str, event, win: pd.DatetimeIndex, tz: str,
              opts: dict) -> pd.Series:
    """Customer baseline of enterprise ``eid`` on the window's intervals; errors name the file and column."""
    from anning_lib.dispatch.drbaseline import customer_baseline

    if eid not in history.columns:
        raise DispatchError(f"{history_file}: no column {eid!r}, needed for the baseline of {eid}")
    start, end = event.window_start.tz_convert(tz), event.window_end.tz_convert(tz)
    if end.date() != start.date():
        raise DispatchError(f"event.window_end: {event.window_end.isoformat()} is not on the local day of "
                            "window_start; a baseline needs a window within one day")
    try:
        base = customer_baseline(history[eid], start.date(), (start.time(), end.time()), tz=tz, **opts)
    except DispatchError as err:
        raise DispatchError(f"{history_file}: column {eid!r}: {err}") from None
    base = base.reindex(win)
    if base.isna().any():
        raise DispatchError(f"{history_file}: column {eid!r}: the baseline has no value at "
                            f"{base.index[base.isna()][0].isoformat()}: the history's step must be the event's "
                            "intervals (--step-min)")
    return base


def settlement(event, allocation, measured: pd.DataFrame, measured_file: Path, history: pd.DataFrame,
               history_file: Path, tz: str, opts: dict) -> pd.DataFrame:
    """:func:`~anning_lib.dispatch.drbaseline.settle` of meter tables (columns enterprise ids, kW).

    Baselines are :func:`customer_baseline` of ``history`` with ``opts``; the park's shared storage (``"park"``)
    has baseline 0 and its column holds ``-p_kw``.
    """
    from anning_lib.dispatch.drbaseline import settle
    from anning_lib.dispatch.vpp import PARK

    win, baselines, metered = allocation.kw.index, {}, {}
    # readings finer than the event's intervals become interval means (labelled at the interval start), so 5-minute
    # meter data is averaged, not sampled
    step = pd.Timedelta(hours=allocation.dt_h)
    measured = measured.resample(step, label="left", closed="left").mean()
    history = history.resample(step, label="left", closed="left").mean()
    for eid, kwh in allocation.by_enterprise["energy_kwh"].items():
        if kwh <= _TOL_KWH:
            continue
        if eid not in measured.columns:
            raise DispatchError(f"{measured_file}: no column {eid!r}; enterprise {eid} has {kwh:,.1f} kWh allocated")
        m = measured[eid].reindex(win)
        if m.isna().any():
            raise DispatchError(f"{measured_file}: column {eid!r}: no value at {m.index[m.isna()][0].isoformat()}")
        metered[eid] = m
        baselines[eid] = pd.Series(0.0, index=win) if eid == PARK else \
            _baseline(history, history_file, eid, event, win, tz, opts)
    return settle(event, allocation, baselines, metered)


def _print_settlement(event, s: pd.DataFrame, n: int, step_min: float) -> None:
    typer.echo(_event_line(event, n, step_min))
    head = ["allocated", "baseline", "measured", "delivered", "perf", "paid", "payment", "penalty", "net"]
    typer.echo(f"  {'enterprise':<12}" + "".join(f"{h:>12}" for h in head) + "   (kWh, -, CNY)")
    for eid, r in s.iterrows():
        vals = [r.allocated_kwh, r.baseline_kwh, r.measured_kwh, r.delivered_kwh]
        typer.echo(f"  {eid:<12}" + "".join(f"{v:>12,.1f}" for v in vals) + f"{r.performance_frac:>12.3f}"
                   + "".join(f"{v:>12,.1f}" for v in (r.paid_kwh, r.payment_cny, r.penalty_cny, r.net_cny)))


# ---------------------------------------------------------------------------------------------- commands
@dr_app.command("flex")
def flex_cmd(day: str = typer.Option(None, help="local day YYYY-MM-DD (default today)"),
             park_file: Path = typer.Option(None, "--park", help=_PARK_HELP),
             as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """The park's flexible resources and their total up / down capacity in each hour of one local day."""
    from anning_lib.dispatch.vpp import flexibility, resources_from_park

    tz = get_settings().timezone
    try:
        first = date.fromisoformat(day) if day else pd.Timestamp.now(tz=tz).date()
    except ValueError:
        raise DispatchError(f"--day: {day!r} is not a date YYYY-MM-DD") from None
    res = resources_from_park(_park(park_file))
    start = pd.Timestamp(first).tz_localize(tz)
    idx = pd.date_range(start, start + pd.Timedelta(days=1), freq="1h", inclusive="left")
    f = flexibility(res, idx)
    hours = [{"start": t.isoformat(), "up_kw": r["total.up_kw"], "down_kw": r["total.down_kw"]}
             for t, r in f.iterrows()]
    rows = [asdict(r) | {"up_kw_1h": f[f"{r.id}.up_kw"].iloc[0], "down_kw_1h": f[f"{r.id}.down_kw"].iloc[0]}
            for r in res]
    if as_json:
        _echo_json({"day": first.isoformat(), "timezone": tz, "resources": rows, "hours": hours})
        return
    typer.echo(f"{len(res)} flexible resources; up = less grid import, down = more; '1 h': held through a "
               "whole hour")
    typer.echo(f"  {'resource':<12}{'enterprise':<12}{'kind':<12}{'up kW':>10}{'down kW':>10}{'up 1 h':>10}"
               f"{'down 1 h':>10}{'max h':>7}{'CNY/kWh':>9}{'notice':>8}")
    for r in rows:
        typer.echo(f"  {r['id']:<12}{r['enterprise_id']:<12}{r['kind']:<12}{r['up_kw']:>10,.0f}"
                   f"{r['down_kw']:>10,.0f}{r['up_kw_1h']:>10,.0f}{r['down_kw_1h']:>10,.0f}"
                   f"{r['max_duration_h']:>7.2f}{r['cost_cny_per_kwh']:>9.3f}{r['notice_min']:>6.0f} m")
    typer.echo(f"  {first.isoformat()} ({tz}), park total per hour:")
    for t, r in f.iterrows():
        typer.echo(f"  {t:%H:%M}  up {r['total.up_kw']:>12,.0f} kW  down {r['total.down_kw']:>12,.0f} kW")


@dr_app.command("allocate")
def allocate_cmd(event_file: Path = typer.Option(..., "--event", help="DR event (JSON, docs/demand_response.md)"),
                 step_min: float = typer.Option(15.0, "--step-min", help=_STEP_HELP),
                 storage_value: float = typer.Option(0.0, "--storage-value", help=_VALUE_HELP),
                 degradation: float = typer.Option(0.0, "--degradation", help=_DEGRADATION_HELP),
                 park_file: Path = typer.Option(None, "--park", help=_PARK_HELP),
                 as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Least-cost split of a DR event across the park's flexible resources: kW and kWh per enterprise."""
    event = read_event(event_file)
    a = _allocate_or_exit(event, _park(park_file), step_min, storage_value, degradation, as_json)
    if as_json:
        _echo_json({"status": "optimal", **allocation_dict(a)})
    else:
        _print_allocation(a)


@dr_app.command("settle")
def settle_cmd(event_file: Path = typer.Option(..., "--event", help="DR event (JSON)"),
               measured_file: Path = typer.Option(..., "--measured", help="CSV: ts, one column of kW per enterprise"),
               history_file: Path = typer.Option(None, "--history",
                                                 help="CSV of earlier days for the baseline (default --measured)"),
               n_days: int = typer.Option(10, "--n-days", help="like days averaged by the baseline"),
               select: str = typer.Option("similar", help="like days: similar (same working-day type) or all"),
               adjustment: str = typer.Option("none", help="same-day baseline adjustment: none or additive"),
               step_min: float = typer.Option(15.0, "--step-min", help=_STEP_HELP),
               storage_value: float = typer.Option(0.0, "--storage-value", help=_VALUE_HELP),
               degradation: float = typer.Option(0.0, "--degradation", help=_DEGRADATION_HELP),
               park_file: Path = typer.Option(None, "--park", help=_PARK_HELP),
               as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Settlement of a DR event from metered kW: baseline, delivered reduction, payment or penalty per enterprise."""
    from anning_lib.dispatch.vpp import PARK

    if adjustment not in ("none", "additive"):
        raise DispatchError(f"--adjustment: {adjustment!r} is not none or additive")
    if select not in ("similar", "all"):
        raise DispatchError(f"--select: {select!r} is not similar or all")
    if n_days < 1:
        raise DispatchError(f"--n-days: {n_days} must be >= 1")
    tz = get_settings().timezone
    event = read_event(event_file)
    park = _park(park_file)
    known = {e.id for e in park.enterprises} | {PARK}
    measured = read_meter_csv(measured_file, "--measured", known)
    history = measured if history_file is None else read_meter_csv(history_file, "--history", known)
    a = _allocate_or_exit(event, park, step_min, storage_value, degradation, as_json)
    opts = {"n_days": n_days, "select": select, "adjustment": None if adjustment == "none" else adjustment}
    s = settlement(event, a, measured, measured_file, history, history_file or measured_file, tz, opts)
    if as_json:
        rows = s.drop(index="TOTAL").to_dict("index")
        _echo_json({"status": "settled", "event": event.to_dict(), "baseline": opts, "enterprises": rows,
                    "total": s.loc["TOTAL"].to_dict()})
    else:
        _print_settlement(event, s, len(a.kw), step_min)
