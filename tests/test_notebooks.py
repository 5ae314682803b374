"""Every notebook runs top to bottom (committed without outputs) on a store holding one simulated month."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from conftest import REPO, simulated_store
from nbclient import NotebookClient

from anning_lib.store import make_engine

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def month_db(tmp_path_factory) -> str:
    """A SQLite store with October 2026 of the simulated park (15-minute means)."""
    path = tmp_path_factory.mktemp("nb") / "store.sqlite"
    engine, _park = simulated_store(path, date(2026, 10, 1), date(2026, 11, 1), ("2026-10",))  # + entered data
    engine.dispose()
    return f"sqlite:///{path}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_and_is_committed_clean(path: Path, month_db, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} is committed with outputs"
    monkeypatch.setenv("ANNING_DB_URL", month_db)
    monkeypatch.setenv("ANNING_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("ANNING_MONTH", raising=False)          # the notebook finds the month itself
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                   for c in nb.cells for o in c.get("outputs", []))
    expected = {"carbon_accounting.ipynb": ("2026-10", "natural_gas", "electrode", "coke", "freight_rail",
                                            "green_contract"),   # every scope and source: meters and entered data
                "forecast_study.ipynb": ("gradient_boosting", "seasonal_naive", "grid:park", "pv:PARK-PV"),
                "dispatch_study.ipynb": ("optimal", "rule", "capture ratio", "E10"),
                "energy_balance.ipynb": ("2026-10", "supply = use + residual", "grid_import", "residual", "E13",
                                         "natural_gas", "steam", "daily_electricity"),
                "scenario_study.ipynb": ("2026-10", "self-sufficiency", "scope2_location", "payback", "add_pv park",
                                         "SES", "saved"),
                "macc.ipynb": ("measures abate", "save money", "rooftop_pv", "green_electricity"),
                "data_quality_audit.ipynb": ("2026-10", "completeness", "longest gap", "bad or stale", "out of range",
                                             "flat line", "open alarms", "ingest health")}
    for word in expected.get(path.name, ()):
        assert word in text, word
    if path.name == "macc.ipynb":            # the curve the notebook drew is the engine's, number for number
        from anning_lib.advice.engine import advise, macc
        from anning_lib.config import get_settings
        from anning_lib.park import load_park

        get_settings.cache_clear()
        park, engine = load_park(), make_engine(month_db)
        want = macc([advise(engine, park, e.id) for e in park.enterprises])
        got = pd.read_csv(tmp_path / "macc.csv")
        assert len(want) > 5 and list(got["id"]) == list(want["id"])
        for col in ("co2_t_a", "abatement_cost_cny_per_t", "cum_co2_t_a"):
            assert got[col].to_numpy() == pytest.approx(want[col].to_numpy(), rel=1e-9), col
        get_settings.cache_clear()
