"""Scenario simulation (模拟仿真): the base case and the scenario on the same history, compared.

:func:`run_scenario` builds the park as it is from the history (:func:`~anning_lib.scenario.parkcase.base_case`),
applies the scenario's changes (:mod:`anning_lib.scenario.changes`), runs both with the same dispatch
(:mod:`anning_lib.scenario.simulate`) and compares: energy cost, peak demand, emissions by scope,
self-sufficiency, investment and payback. A run is a JSON record (:func:`to_record`) that names the scenario's
and the history's sha256, so it can be saved (:func:`save_run`) and reproduced exactly.

References
----------
.. [1] Payback and NPV: :mod:`anning_lib.advice.finance` (annuity method).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from anning_lib.advice.catalogue import load_catalogue as load_measures
from anning_lib.advice.finance import npv_cny, payback_a
from anning_lib.carbon.factors import load_factor_set
from anning_lib.park.schema import Park
from anning_lib.scenario.changes import Context, apply_changes
from anning_lib.scenario.history import fingerprint
from anning_lib.scenario.parkcase import base_case
from anning_lib.scenario.simulate import CaseRun, RunOptions, run_case
from anning_lib.scenario.spec import Scenario

SCOPES = ("scope1", "scope2_location", "scope2_market", "total")
HEADLINE = [("cost", ("cost_cny", "total_cny"), "万元", 1e-4), ("peak import", ("peak_import_kw",), "MW", 1e-3),
            ("grid import", ("grid_import_e_kwh",), "GWh", 1e-6), ("PV used", ("pv_used_e_kwh",), "GWh", 1e-6),
            ("self-sufficiency", ("self_sufficiency_frac",), "%", 100.0),
            ("scope 1", ("co2_t", "scope1"), "tCO2", 1.0),
            ("scope 2 location", ("co2_t", "scope2_location"), "tCO2", 1.0),
            ("scope 2 market", ("co2_t", "scope2_market"), "tCO2", 1.0)]
"""The headline figures of a comparison (``anning scenario run`` and the portal's scenarios page): ``(label,
path in a case's summary, unit shown, scale from the summary's unit to it)``; the summary's units are CNY, kW, kWh,
fraction and tCO2."""


@dataclass
class ScenarioResult:
    """Both cases, their comparison and the provenance of the run."""

    scenario: Scenario
    base: CaseRun
    case: CaseRun
    comparison: dict
    history: dict


def _delta(base: dict, new: dict) -> dict:
    return {k: new[k] - base[k] for k in base if isinstance(base[k], (int, float)) and k in new}


def compare(base: dict, new: dict, investments: list, rate: float) -> dict:
    """Differences (scenario − base) over the period and per year, and the investment's payback and NPV.

    A year is the period scaled by 365 / period_days. Payback = capex / (yearly saving − yearly opex); NPV over the
    shortest lifetime of the investments at the catalogue's discount rate ``rate`` [-/a]."""
    per_year = 365.0 / base["period_days"]
    saving_a = (base["cost_cny"]["total_cny"] - new["cost_cny"]["total_cny"]) * per_year
    capex = sum(i.capex_cny for i in investments)
    opex = sum(i.opex_cny_a for i in investments)
    life = min((i.lifetime_a for i in investments), default=0.0)
    net_a = saving_a - opex
    return {"delta": _delta(base, new), "delta_cost_cny": _delta(base["cost_cny"], new["cost_cny"]),
            "delta_co2_t": _delta(base["co2_t"], new["co2_t"]), "per_year_factor": per_year,
            "saving_cny_a": saving_a, "co2_saving_t_a": (base["co2_t"]["total"] - new["co2_t"]["total"]) * per_year,
            "capex_cny": capex, "opex_cny_a": opex, "net_cny_a": net_a,
            "payback_a": payback_a(capex, net_a) if capex > 0 else None,
            "npv_cny": npv_cny(capex, net_a, rate, life) if capex > 0 and life > 0 else None,
            "lifetime_a": life, "discount_rate": rate,
            "investments": [i.__dict__ for i in investments]}


def run_scenario(sc: Scenario, park: Park, wide: pd.DataFrame, start: pd.Timestamp, data_dir: Path) -> ScenarioResult:
    """Run ``sc`` on the history ``wide`` (:mod:`anning_lib.scenario.history`; the period begins at ``start``,
    what comes before is warm-up) against the base case."""
    data_dir = Path(data_dir)
    measures = load_measures(data_dir / "advice" / "measures.yaml")
    fs = load_factor_set(data_dir / "emission_factors")
    opt = RunOptions(sc.dispatch.mode, int(round(sc.dispatch.replan_h * 4)), start, measures.gas_price_cny_per_nm3())
    base = base_case(park, wide, data_dir)
    changed = apply_changes(base, sc, Context(park, data_dir, measures), wide)
    b, s = run_case(park, base, opt, fs), run_case(park, changed, opt, fs)
    cmp = compare(b.summary, s.summary, changed.investments, measures.rate())
    end = wide.index[-1] + pd.Timedelta("15min")
    hist = {"source": sc.history.source, "start": start.isoformat(), "end": end.isoformat(),
            "days": sc.history.days, "seed": sc.history.seed if sc.history.source == "simulated" else None,
            "sha256": fingerprint(wide)}
    return ScenarioResult(sc, b, s, cmp, hist)


def _clean(x):
    """JSON-safe: NaN -> None, numpy scalars -> float, rounded to 6 decimals."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return None if v != v else round(v, 6) + 0.0


def to_record(r: ScenarioResult) -> dict:
    """The JSON record of a run (``anning scenario run --json``; docs/scenario.md)."""
    from anning_lib import __version__

    return _clean({
        "scenario": {"name": r.scenario.name, "sha256": r.scenario.sha256(),
                     "spec": r.scenario.model_dump(mode="json")},
        "history": r.history, "dispatch": r.scenario.dispatch.model_dump(mode="json"),
        "version": __version__,
        "base": r.base.summary, "scenario_case": r.case.summary, "comparison": r.comparison,
        "enterprises": {"base": r.base.enterprises.reset_index().to_dict("records"),
                        "scenario": r.case.enterprises.reset_index().to_dict("records")},
        "monthly": {"base": r.base.monthly.reset_index(names="month").to_dict("records"),
                    "scenario": r.case.monthly.reset_index(names="month").to_dict("records")}})


def run_id(record: dict) -> str:
    """``<scenario sha256[:12]>-<history sha256[:12]>``: the same scenario on the same history, the same id."""
    return f"{record['scenario']['sha256'][:12]}-{record['history']['sha256'][:12]}"


def save_run(record: dict, folder: Path, user: str | None = None) -> Path:
    """Write ``record`` to ``folder/<run id>.json`` with the time and user of the run; returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id(record)}.json"
    saved = {**record, "saved_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "saved_by": user}
    path.write_text(json.dumps(saved, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def list_runs(folder: Path) -> pd.DataFrame:
    """The saved runs of ``folder``: id, scenario name, history, time, and the headline differences."""
    rows = []
    for p in sorted(Path(folder).glob("*.json")):
        r = json.loads(p.read_text(encoding="utf-8"))
        c = r["comparison"]
        rows.append({"id": p.stem, "name": r["scenario"]["name"], "source": r["history"]["source"],
                     "start": r["history"]["start"][:10], "days": r["history"]["days"], "saved_at": r.get("saved_at"),
                     "saving_cny_a": c["saving_cny_a"], "co2_saving_t_a": c["co2_saving_t_a"],
                     "payback_a": c["payback_a"]})
    return pd.DataFrame(rows, columns=["id", "name", "source", "start", "days", "saved_at", "saving_cny_a",
                                       "co2_saving_t_a", "payback_a"])
