"""Demo activity data that meters do not measure (fuels for vehicles and reductants, process materials, output
value, green electricity, freight), derived month by month from the simulated production.

The intensities are assumptions of the fictitious demo enterprises, each with its basis, in
``data/sim/activity_templates.yaml``; the records are stored exactly as an enterprise's imported ledgers would
be (``activity_data``, source "demo estimate"), so the carbon accounts of the demo have every scope to show.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy.engine import Engine

from anning_lib.carbon.metered import metered_activities
from anning_lib.carbon.records import month_bounds, save_activities
from anning_lib.errors import SimulationError
from anning_lib.park.schema import Park

SOURCE = "demo estimate (assumption)"


def load_templates(data_dir: Path) -> dict[str, list[dict]]:
    """Enterprise id -> its template rows (``kind, item, unit`` and ``per_t_product`` or ``per_month``)."""
    path = Path(data_dir) / "sim" / "activity_templates.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    out = raw.get("enterprises") or {}
    for eid, rows in out.items():
        for k, r in enumerate(rows):
            if ("per_t_product" in r) == ("per_month" in r):
                raise SimulationError(f"{path}: enterprises.{eid}[{k}]: give per_t_product or per_month")
    return out


def demo_records(templates: dict[str, list[dict]], month: str, production_t: dict[str, float],
                 tz: str = "Asia/Shanghai") -> list[dict]:
    """Activity records of one month (pure): per-tonne rows scaled by the enterprise's production [t]."""
    start, end = month_bounds(month, tz)
    out = []
    for eid, rows in templates.items():
        for r in rows:
            amount = r["per_month"] if "per_month" in r else r["per_t_product"] * production_t.get(eid, 0.0)
            out.append({"enterprise_id": eid, "kind": r["kind"], "item": r["item"], "amount": float(amount),
                        "unit": r["unit"], "period_start": start, "period_end": end, "source": SOURCE})
    return out


def write_demo_activity(engine: Engine, park: Park, data_dir: Path, month: str, tz: str = "Asia/Shanghai",
                        fs=None) -> int:
    """Store the demo records of ``month`` for every enterprise with a template; returns the records stored."""
    templates = {eid: rows for eid, rows in load_templates(data_dir).items() if eid in
                 {e.id for e in park.enterprises}}
    start, end = month_bounds(month, tz)
    production = {}
    for eid in templates:
        acts, _coverage = metered_activities(engine, park, eid, start, end, tz)
        production[eid] = sum(a.amount for a in acts if a.kind == "production")
    return save_activities(engine, demo_records(templates, month, production, tz), fs)
