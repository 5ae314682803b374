"""Scenario runs (模拟仿真) asked for on the portal's scenarios page, and the views of the saved runs.

A run is checked at once (who asks, the file, the history asked for; a refusal names the field and the value and
starts nothing), recorded in ``audit_log`` and then made in a background thread of the server process: a year of
the whole park takes about 2 minutes of HiGHS and the simulator, and the page's callbacks run on the server's event
loop, which serves every open page, so they must not wait for it. One run at a time per server process; the page
polls the small in-memory status table (``queued`` -> ``running`` -> ``done``/``failed`` with the error text). A
finished run is saved as ``anning scenario run`` saves it (:func:`anning_lib.scenario.engine.save_run` under
``var_dir/scenarios``, with the user's name), so ``anning scenario list`` and the page show the same runs.

The rest of the module turns a saved record into what the page shows: the list of runs, the comparison of the
headline figures (:data:`anning_lib.scenario.engine.HEADLINE`, the same as the command line's), the investments
with their sources and the monthly grid import of both cases. Every text comes from ``data/i18n/scenarios.yaml``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import re
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role
from anning_lib.auth.audit import audit
from anning_lib.errors import AnningError
from anning_lib.i18n import t
from anning_lib.park.loader import problems_from
from anning_lib.scenario.spec import History, ScenarioFileError, read_scenario

log = logging.getLogger(__name__)

ACTION = "page.scenarios"
"""The right a run needs (:data:`anning_lib.auth.access.ACTIONS`): the results hold every enterprise's figures."""
SOURCES = ("simulated", "store")
MIN_DAYS, MAX_DAYS = 2, 365
"""Length of the period a portal user may ask for [d] (a year takes about 2 min; the command line allows more)."""
MAX_WAITING = 5
"""Runs queued or running at most per server process; a sixth request is refused until one finishes."""
KEEP_JOBS = 100
"""Finished jobs kept in the status table (oldest dropped first)."""
RUN_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{12}$")
"""A saved run's id (:func:`anning_lib.scenario.engine.run_id`): two 12-digit hex prefixes, nothing else."""
DIGITS = {"万元": 1, "MW": 1, "GWh": 3, "%": 2, "tCO2": 1}
"""Decimals shown per unit of :data:`~anning_lib.scenario.engine.HEADLINE`."""
CHART_COLOURS = ("#9fb7c6", "#11698e")
"""Base case, scenario."""

_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scenario-run")
_JOBS: OrderedDict[str, dict] = OrderedDict()
_FUTURES: dict[str, Future] = {}
_LOCK = threading.Lock()


# ------------------------------------------------------------------------------------------------ running
def example_files(data_dir: Path) -> list[tuple[Path, str]]:
    """The scenario files of ``data_dir/scenarios`` with their names, sorted by file name.

    Returns
    -------
    list of (Path, str)
        ``(path, name)``; the name is the file's ``name`` (the file name where it has none or cannot be read).
    """
    out = []
    for path in sorted((Path(data_dir) / "scenarios").glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            raw = None
        name = raw.get("name") if isinstance(raw, dict) else None
        out.append((path, str(name) if name else path.name))
    return out


def override_history(h: History, source: str, days: int, start: dt.date | str | None) -> History:
    """``h`` with the source, length [d] and first day asked for on the page (``start`` None: the file's start for
    a simulated history, the last ``days`` complete days for the store).

    Raises
    ------
    ScenarioFileError
        naming ``history.source``, ``history.days`` or ``history.start`` and the bad value.
    """
    if source not in SOURCES:
        raise ScenarioFileError([("history.source", source, f"{source!r} is not one of {', '.join(SOURCES)}")])
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise ScenarioFileError([("history.days", days, f"{days!r} is not a whole number of days between "
                                                        f"{MIN_DAYS} and {MAX_DAYS}")])
    if isinstance(start, str):
        try:
            start = dt.date.fromisoformat(start.strip()) if start.strip() else None
        except ValueError:
            raise ScenarioFileError([("history.start", start, f"{start!r} is not a date (YYYY-MM-DD)")]) from None
    if start is None and source == "simulated":
        start = h.start
    try:
        return History.model_validate({**h.model_dump(), "source": source, "days": days, "start": start})
    except ValidationError as err:
        raise ScenarioFileError(problems_from(err, "history")) from None


def start_run(engine: Engine, actor: Actor, file: Path | str, *, source: str, days: int,
              start: dt.date | str | None = None, park=None, data_dir: Path | None = None,
              var_dir: Path | None = None) -> str:
    """Check a scenario run on behalf of ``actor`` and start it in the background.

    Parameters
    ----------
    engine : Engine
        the store (``audit_log``; the history when ``source`` is ``store``).
    actor : Actor
        who asks; needs ``page.scenarios`` (admin, operator, system).
    file : Path or str
        a scenario file (YAML; :mod:`anning_lib.scenario.spec`).
    source : {"simulated", "store"}
        the history both cases run on.
    days : int
        length of the period [d], :data:`MIN_DAYS` .. :data:`MAX_DAYS`.
    start : date or str, optional
        first local day (default: see :func:`override_history`).
    park, data_dir, var_dir
        the park model and folders (default: the settings'); the run is saved under ``var_dir/scenarios``.

    Returns
    -------
    str
        the job's id in the status table (:func:`job_status`, :func:`wait`).

    Raises
    ------
    AccessError
        when ``actor`` may not run scenarios.
    ScenarioFileError
        naming the field and value of a bad file or history; nothing is started or audited then.
    AnningError
        when :data:`MAX_WAITING` runs are already waiting.
    """
    from anning_lib.config import get_settings

    require_role(actor, ACTION)
    settings = get_settings()
    data_dir, var_dir = Path(data_dir or settings.data_dir), Path(var_dir or settings.var_dir)
    if park is None:
        from anning_lib.park import load_park

        park = load_park(settings.park_path)
    sc = read_scenario(file, park, data_dir)
    sc = sc.model_copy(update={"history": override_history(sc.history, source, days, start)})
    with _LOCK:
        if sum(j["status"] in ("queued", "running") for j in _JOBS.values()) >= MAX_WAITING:
            raise AnningError(f"queue: {MAX_WAITING} scenario runs are already waiting; start this one when one "
                              f"has finished")
        job_id = uuid.uuid4().hex[:12]
        _JOBS[job_id] = {"id": job_id, "status": "queued", "error": None, "run_id": None, "name": sc.name,
                         "file": Path(file).name, "source": source, "days": days,
                         "start": sc.history.start.isoformat() if sc.history.start else None,
                         "user": actor.username, "queued_at": _now(), "finished_at": None}
        _trim()
    audit(engine, "scenario_requested", f"scenario:{Path(file).name}",
          {"job": job_id, "name": sc.name, "sha256": sc.sha256(), **sc.history.model_dump(mode="json")},
          actor.user_id)
    _FUTURES[job_id] = _POOL.submit(_run, job_id, engine, sc, park, data_dir, var_dir / "scenarios",
                                    actor.username)
    return job_id


def _run(job_id: str, engine: Engine, sc, park, data_dir: Path, folder: Path, username: str) -> str | None:
    """The background part of :func:`start_run`: history, both cases, the saved record (returns its run id)."""
    from anning_lib.scenario.engine import run_id, run_scenario, save_run, to_record
    from anning_lib.scenario.history import simulated_history, stored_history

    _set(job_id, status="running", started_at=_now())
    try:
        if sc.history.source == "store":      # the rollups as the gateway keeps them: the portal does not write them
            wide, start = stored_history(engine, park, sc.history, refresh=False)
        else:
            wide, start = simulated_history(park, sc.history, data_dir)
        record = to_record(run_scenario(sc, park, wide, start, data_dir))
        save_run(record, folder, user=username)
    except AnningError as err:
        _set(job_id, status="failed", error=str(err), finished_at=_now())
        return None
    except Exception as err:  # noqa: BLE001 - a thread's exception would vanish: log it, show it
        log.exception("scenario run %s failed", job_id)
        _set(job_id, status="failed", error=f"{type(err).__name__}: {err}", finished_at=_now())
        return None
    _set(job_id, status="done", run_id=run_id(record), finished_at=_now())
    return run_id(record)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _set(job_id: str, **fields) -> None:
    with _LOCK:
        if job_id in _JOBS:
            _JOBS[job_id].update(fields)


def _trim() -> None:
    """Drop the oldest finished jobs beyond :data:`KEEP_JOBS` (call with the lock held)."""
    done = [k for k, j in _JOBS.items() if j["status"] in ("done", "failed")]
    for k in done[:max(0, len(_JOBS) - KEEP_JOBS)]:
        _JOBS.pop(k, None)
        _FUTURES.pop(k, None)


def job_status(job_id: str) -> dict | None:
    """A copy of a job's row (``id, status, error, run_id, name, file, source, days, start, user, queued_at,
    started_at, finished_at``), or None for an unknown id."""
    with _LOCK:
        row = _JOBS.get(job_id)
        return dict(row) if row is not None else None


def wait(job_id: str, timeout_s: float | None = None) -> dict:
    """Block until the job has finished (for tests and scripts, never a page callback) and return its row."""
    _FUTURES[job_id].result(timeout=timeout_s)
    return job_status(job_id)


# ------------------------------------------------------------------------------------------------ saved runs
def saved_runs(var_dir: Path) -> pd.DataFrame:
    """The saved runs of ``var_dir/scenarios`` (:func:`anning_lib.scenario.engine.list_runs`)."""
    from anning_lib.scenario.engine import list_runs

    return list_runs(Path(var_dir) / "scenarios")


def load_run(var_dir: Path, run_id: str) -> dict:
    """The saved record ``run_id`` of ``var_dir/scenarios``.

    Raises
    ------
    AnningError
        naming ``run_id`` when it is not the id of a saved run (only ``<12 hex>-<12 hex>`` is looked for, so no
        path leads out of the folder).
    """
    folder = Path(var_dir) / "scenarios"
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or not (folder / f"{run_id}.json").is_file():
        raise AnningError(f"run_id: no saved scenario run {run_id!r}")
    return json.loads((folder / f"{run_id}.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ views
def _local(iso: str | None, tz: str) -> str:
    if not iso:
        return ""
    return pd.Timestamp(iso).tz_convert(tz).strftime("%Y-%m-%d %H:%M")


def payback_text(payback_a: float | None, capex_cny: float, lang: str) -> str:
    """``4.0`` [a], ``never`` (an investment that does not pay back) or ``–`` (no investment)."""
    if payback_a is not None:
        return f"{payback_a:,.1f}"
    return t("scenarios_never", lang) if capex_cny > 0 else "–"


def history_text(source: str, start: str, days: float, lang: str) -> str:
    """``模拟 2025-01-01 · 2 天`` / ``simulated 2025-01-01 · 2 d``."""
    return t("scenarios_history", lang, source=t(f"scenarios_source_{source}", lang), start=str(start)[:10],
             days=f"{float(days):g}")


def runs_view(var_dir: Path, lang: str, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """The saved runs for the page's list, newest first: ``name, history, saved_at`` (local time), yearly saving
    ``saving`` [万元/a], ``co2`` saving [t/a], ``payback`` [a] (as text: ``never`` is a word) and the run ``id``."""
    runs = saved_runs(var_dir)
    rows = []
    for _k, r in runs.iterrows():
        folder = Path(var_dir) / "scenarios"
        capex = json.loads((folder / f"{r['id']}.json").read_text(encoding="utf-8"))["comparison"]["capex_cny"]
        payback = None if pd.isna(r["payback_a"]) else float(r["payback_a"])
        rows.append({"name": r["name"], "history": history_text(r["source"], r["start"], r["days"], lang),
                     "saved_at": _local(r["saved_at"], tz), "saving": round(r["saving_cny_a"] / 1e4, 1),
                     "co2": round(r["co2_saving_t_a"], 1), "payback": payback_text(payback, capex, lang),
                     "id": r["id"]})
    out = pd.DataFrame(rows, columns=["name", "history", "saved_at", "saving", "co2", "payback", "id"])
    return out.sort_values("saved_at", ascending=False, kind="stable").reset_index(drop=True)


def _value(case: dict, path: tuple) -> float:
    for k in path:
        case = case[k]
    return float("nan") if case is None else float(case)


def comparison(record: dict) -> pd.DataFrame:
    """The headline figures of a run (:data:`~anning_lib.scenario.engine.HEADLINE`): one row per figure with its
    ``label``, ``unit``, ``base``, ``scenario`` and ``change`` (scenario − base) in that unit."""
    from anning_lib.scenario.engine import HEADLINE

    rows = []
    for label, path, unit, scale in HEADLINE:
        b, s = _value(record["base"], path) * scale, _value(record["scenario_case"], path) * scale
        rows.append({"label": label, "unit": unit, "base": b, "scenario": s, "change": s - b})
    return pd.DataFrame(rows)


def _label_key(label: str) -> str:
    return "scenarios_row_" + re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _unit(unit: str, lang: str) -> str:
    return t("scenarios_unit_wan", lang) if unit == "万元" else unit


def _num(v: float, digits: int, sign: bool = False) -> str:
    if v != v:
        return "–"
    if round(v, digits) == 0:
        v, sign = 0.0, False               # no "+0.0" / "-0.0" for no change
    return f"{v:+,.{digits}f}" if sign else f"{v:,.{digits}f}"


CSS = """
.scn-wrap{overflow-x:auto;max-width:100%}
table.scn{border-collapse:collapse;font-size:14px;min-width:100%;font-family:"WenQuanYi Zen Hei",sans-serif}
table.scn th,table.scn td{border-bottom:1px solid #d5e1e8;padding:4px 8px;text-align:right;white-space:nowrap}
table.scn th:first-child,table.scn td:first-child{text-align:left;white-space:normal}
table.scn tr.inv td{border-bottom:none}
table.scn td.src{white-space:normal;text-align:left;font-size:12px;color:#4a6272;padding-top:0}
table.scn tr.head th{background:#eef4f7}
"""


def comparison_html(record: dict, lang: str) -> str:
    """The comparison as an HTML table (figure [unit], base, scenario, change) that scrolls sideways on a phone."""
    head = "".join(f"<th>{html.escape(t(k, lang))}</th>" for k in ("scenarios_col_figure", "scenarios_base",
                                                                     "scenarios_scenario", "scenarios_change"))
    body = ""
    for r in comparison(record).itertuples():
        d = DIGITS.get(r.unit, 1)
        body += (f'<tr data-figure="{html.escape(r.label)}"><td>{html.escape(t(_label_key(r.label), lang))} '
                 f'[{html.escape(_unit(r.unit, lang))}]</td><td>{_num(r.base, d)}</td><td>{_num(r.scenario, d)}</td>'
                 f'<td>{_num(r.change, d, sign=True)}</td></tr>')
    return f'<div class="scn-wrap"><table class="scn scn-compare"><tr class="head">{head}</tr>{body}</table></div>'


def summary_items(record: dict, lang: str) -> list[tuple[str, str, str]]:
    """Figure tiles ``(label, value, unit)``: yearly saving, CO2 saving, investment, payback, NPV."""
    c = record["comparison"]
    npv = "–" if c.get("npv_cny") is None else f"{c['npv_cny'] / 1e4:,.1f}"
    wan_a = t("scenarios_unit_wan_a", lang)
    return [(t("scenarios_saving", lang), f"{c['saving_cny_a'] / 1e4:,.1f}", wan_a),
            (t("scenarios_co2_saving", lang), f"{c['co2_saving_t_a']:,.1f}", "tCO2/a"),
            (t("scenarios_capex", lang), f"{c['capex_cny'] / 1e4:,.1f}", t("scenarios_unit_wan", lang)),
            (t("scenarios_payback", lang), payback_text(c["payback_a"], c["capex_cny"], lang), "a"),
            (t("scenarios_npv", lang), npv, t("scenarios_unit_wan", lang))]


def investments_html(record: dict, lang: str) -> str:
    """The investments (what, capex [万元], O&M [万元/a], lifetime [a]) with the source of each number."""
    inv = record["comparison"].get("investments") or []
    if not inv:
        return f"<p>{html.escape(t('scenarios_no_investment', lang))}</p>"
    head = "".join(f"<th>{html.escape(t(k, lang))}</th>" for k in (
        "scenarios_inv_what", "scenarios_inv_capex", "scenarios_inv_opex", "scenarios_inv_life"))
    src = t("scenarios_inv_source", lang)
    body = "".join(f'<tr class="inv"><td>{html.escape(str(i["label"]))}</td><td>{i["capex_cny"] / 1e4:,.1f}</td>'
                   f'<td>{i["opex_cny_a"] / 1e4:,.1f}</td><td>{i["lifetime_a"]:g}</td></tr>'
                   f'<tr><td class="src" colspan="4">{html.escape(src)}{html.escape(str(i.get("source") or "–"))}'
                   f'</td></tr>' for i in inv)
    return f'<div class="scn-wrap"><table class="scn scn-invest"><tr class="head">{head}</tr>{body}</table></div>'


def monthly_frame(record: dict) -> pd.DataFrame:
    """Grid import per month of both cases [GWh]: columns ``month``, ``base``, ``scenario``."""
    base = {r["month"]: r["grid_import_e_kwh"] for r in record["monthly"]["base"]}
    case = {r["month"]: r["grid_import_e_kwh"] for r in record["monthly"]["scenario"]}
    months = sorted(set(base) | set(case))
    return pd.DataFrame({"month": months, "base": [(base.get(m) or 0.0) / 1e6 for m in months],
                         "scenario": [(case.get(m) or 0.0) / 1e6 for m in months]})


def monthly_chart(record: dict, lang: str):
    """Bars of the monthly grid import, base case beside scenario [GWh] (a plain Bokeh figure)."""
    from bokeh.models import ColumnDataSource, FactorRange, HoverTool
    from bokeh.plotting import figure
    from bokeh.transform import factor_cmap

    df = monthly_frame(record)
    cases = (t("scenarios_base", lang), t("scenarios_scenario", lang))
    x = [(m, c) for m in df["month"] for c in cases]
    gwh = [v for b, s in zip(df["base"], df["scenario"]) for v in (b, s)]
    src = ColumnDataSource({"x": x, "gwh": gwh})
    fig = figure(x_range=FactorRange(*x), height=300, sizing_mode="stretch_width", toolbar_location=None,
                 title=t("scenarios_chart_title", lang), y_axis_label="GWh")
    fig.vbar(x="x", top="gwh", width=0.85, source=src, line_color=None,
             fill_color=factor_cmap("x", list(CHART_COLOURS), list(cases), start=1, end=2))
    fig.add_tools(HoverTool(tooltips=[("", "@x"), ("GWh", "@gwh{0,0.000}")]))
    fig.y_range.start = 0
    fig.xaxis.major_label_orientation = 0.9 if len(df) > 6 else 0
    fig.xgrid.grid_line_color = None
    return fig


def status_text(job: dict | None, lang: str) -> tuple[str, str]:
    """The page's line about a job and its alert type (``info``, ``success``, ``danger``)."""
    if job is None:
        return "", "light"
    kind = {"queued": "info", "running": "info", "done": "success", "failed": "danger"}[job["status"]]
    return t(f"scenarios_status_{job['status']}", lang, name=job["name"], days=job["days"],
             error=job["error"] or "", run_id=job["run_id"] or ""), kind
