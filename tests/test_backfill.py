"""Backfill through the command line, as a user runs it: idempotent, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from anning_lib.park import load_park
from anning_lib.store import count_rows, read_enterprise, read_series

ROOT = Path(__file__).resolve().parent.parent
ANNING = str(Path(sys.executable).with_name("anning"))


def _run(env, *args):
    res = subprocess.run([ANNING, *args], capture_output=True, text=True, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture
def env(engine):
    e = dict(os.environ, ANNING_DB_URL=engine.url.render_as_string(hide_password=False), ANNING_SEED="3")
    return e


def test_init_twice_and_backfill_twice_duplicate_nothing(engine, env):
    park = load_park(ROOT / "data" / "park" / "anning.yaml", ROOT / "data")
    n_points = sum(1 for _ in park.iter_points())
    _run(env, "db", "init")
    _run(env, "db", "init")
    assert count_rows(engine, "point") == n_points
    _run(env, "sim", "backfill", "--days", "2", "--start", "2026-04-01")
    # 2 days x 96 quarter-hours x every point, counted by hand
    expected = 2 * 96 * n_points
    assert count_rows(engine, "measurement") == expected
    before = read_series(engine, ["GRID.p_kw", "SES.soc_frac"], pd.Timestamp("2026-04-01", tz="Asia/Shanghai"),
                         pd.Timestamp("2026-04-03", tz="Asia/Shanghai"))
    _run(env, "sim", "backfill", "--days", "2", "--start", "2026-04-01")
    assert count_rows(engine, "measurement") == expected
    assert count_rows(engine, "rollup_15min") == expected
    after = read_series(engine, ["GRID.p_kw", "SES.soc_frac"], pd.Timestamp("2026-04-01", tz="Asia/Shanghai"),
                        pd.Timestamp("2026-04-03", tz="Asia/Shanghai"))
    pd.testing.assert_frame_equal(before, after)
    assert str(after.index.tz) == "Asia/Shanghai" and after.index[0] == pd.Timestamp("2026-04-01 00:00", tz="Asia/Shanghai")
    ent = read_enterprise(engine, "E04", pd.Timestamp("2026-04-01", tz="Asia/Shanghai"),
                          pd.Timestamp("2026-04-02", tz="Asia/Shanghai"), resolution="15min")
    assert len(ent) == 96 and "E04-B1.steam_t_h" in ent.columns


def test_backfill_refuses_an_uninitialised_database(tmp_path):
    env = dict(os.environ, ANNING_DB_URL=f"sqlite:///{tmp_path / 'empty.sqlite'}")
    res = subprocess.run([ANNING, "sim", "backfill", "--days", "1"], capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert res.stderr.startswith("anning: error:") and len(res.stderr.strip().splitlines()) == 1
