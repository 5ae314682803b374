"""The admin's dispatch strategies: one storage's control mode and SOC window edited in the park model file.

Expected values are read off the YAML text written in the test or off ``data/park/anning.yaml`` as committed
(E05-BESS: ``control: advisory``, ``soc_min_frac: 0.1``, ``soc_max_frac: 0.95``, ``soc_init_frac: 0.5``).
"""

from __future__ import annotations

import difflib
import shutil

import pytest
import sqlalchemy as sa

from anning_lib.auth.access import Actor
from anning_lib.config import get_settings
from anning_lib.errors import AccessError, ParkModelError
from anning_lib.park import load_park
from anning_lib.portal.filesave import sha256_of
from anning_lib.portal.strategy_edit import (
    save_strategy,
    storage_strategies,
    with_strategy,
)
from anning_lib.store.schema import TABLES

TEXT = """park:
  devices:
      - id: P-BESS
        type: bess
        params: {capacity_kwh: 100.0, p_max_kw: 50.0, soc_min_frac: 0.1, soc_max_frac: 0.95, control: auto}
        # a comment that stays
      - id: P-PV
        type: pv
        params: {dc_kwp: 10.0, ac_kw: 8.0, tilt_deg: 20}
"""


def test_with_strategy_rewrites_one_line_only():
    new = with_strategy(TEXT, "P-BESS", control="advisory", soc_min_frac=0.2, soc_max_frac=0.9)
    diff = [d for d in difflib.unified_diff(TEXT.split("\n"), new.split("\n"), lineterm="", n=0)
            if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    assert diff == ["-        params: {capacity_kwh: 100.0, p_max_kw: 50.0, soc_min_frac: 0.1, soc_max_frac: 0.95, "
                    "control: auto}",
                    "+        params: {capacity_kwh: 100.0, p_max_kw: 50.0, soc_min_frac: 0.2, soc_max_frac: 0.9, "
                    "control: advisory}"]


@pytest.mark.parametrize("device, words", [("P-PV", "not a storage"), ("P-XX", "no such device")])
def test_with_strategy_names_a_wrong_device(device, words):
    with pytest.raises(ParkModelError, match=words) as err:
        with_strategy(TEXT, device, control="auto", soc_min_frac=0.1, soc_max_frac=0.9)
    assert device in str(err.value)


@pytest.fixture
def park_copy(tmp_path):
    path = tmp_path / "anning.yaml"
    shutil.copy(get_settings().park_path, path)
    return path




def audits(engine) -> list:
    log = TABLES["audit_log"]
    with engine.connect() as c:
        return list(c.execute(sa.select(log).where(log.c.action == "strategy_saved")))


def test_an_admin_switches_a_storage_to_auto(admin, park_copy):
    engine, actor = admin
    assert storage_strategies(load_park(park_copy)).set_index("device_id").loc["E05-BESS", "control"] == "advisory"
    old = park_copy.read_text(encoding="utf-8")
    out = save_strategy(actor, "E05-BESS", control="auto", soc_min_frac=0.2, soc_max_frac=0.9, engine=engine,
                        path=park_copy, expected_sha256=sha256_of(old.encode()))
    assert out == {"before": {"control": "advisory", "soc_min_frac": 0.1, "soc_max_frac": 0.95},
                   "after": {"control": "auto", "soc_min_frac": 0.2, "soc_max_frac": 0.9}}
    p = load_park(park_copy).device("E05-BESS").p
    assert (p.control, p.soc_min_frac, p.soc_max_frac, p.capacity_kwh) == ("auto", 0.2, 0.9, 4000.0)
    changed = [ln for ln in difflib.ndiff(old.split("\n"), park_copy.read_text(encoding="utf-8").split("\n"))
               if ln[:1] in "+-"]
    assert len(changed) == 2 and "E05" not in changed[0]                # one line out, one in: the params
    (row,) = audits(engine)
    assert row.target == "device:E05-BESS" and row.user_id == actor.user_id
    assert row.detail["before"]["control"] == "advisory" and row.detail["after"]["control"] == "auto"
    assert (park_copy.parent / "anning.yaml.bak").read_text(encoding="utf-8") == old


@pytest.mark.parametrize("kw, field", [
    ({"control": "manual"}, "control"),
    ({"soc_min_frac": 0.95, "soc_max_frac": 0.9}, "soc_max_frac"),     # minimum not below the maximum
    ({"soc_min_frac": 0.6}, "soc_init_frac"),                          # the start SOC 0.5 falls outside the window
    ({"soc_max_frac": 1.5}, "soc_max_frac"),
])
def test_bad_strategies_are_named_and_nothing_changes(admin, park_copy, kw, field):
    engine, actor = admin
    before = park_copy.read_bytes()
    args = {"control": "auto", "soc_min_frac": 0.1, "soc_max_frac": 0.95} | kw
    with pytest.raises(ParkModelError, match=field):
        save_strategy(actor, "E05-BESS", engine=engine, path=park_copy, **args)
    assert park_copy.read_bytes() == before and audits(engine) == []
    assert not (park_copy.parent / "anning.yaml.bak").exists()


def test_only_admins_and_only_the_file_they_saw(admin, park_copy):
    engine, actor = admin
    before = park_copy.read_bytes()
    with pytest.raises(AccessError):
        save_strategy(Actor(None, "operator", None, "op"), "E05-BESS", control="auto", soc_min_frac=0.1,
                      soc_max_frac=0.95, engine=engine, path=park_copy)
    with pytest.raises(ParkModelError, match="changed by someone else"):
        save_strategy(actor, "E05-BESS", control="auto", soc_min_frac=0.1, soc_max_frac=0.95, engine=engine,
                      path=park_copy, expected_sha256="0" * 64)
    assert park_copy.read_bytes() == before and audits(engine) == []
