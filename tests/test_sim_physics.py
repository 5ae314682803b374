"""Device models of the simulator, checked against hand calculations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from anning_lib.park.schema import BessParams, PvParams
from anning_lib.sim.pv import pv_output
from anning_lib.sim.storage import simulate_bess


def _weather(ghi, temp_air, n=1):
    idx = pd.date_range("2026-06-21 13:00", periods=n, freq="1min", tz="Asia/Shanghai")
    return pd.DataFrame({"ghi_w_m2": ghi, "dni_w_m2": 0.0, "dhi_w_m2": ghi, "temp_air_degc": temp_air,
                         "zenith_deg": 10.0, "azimuth_deg": 180.0}, index=idx)


def test_pv_dc_and_inverter_by_hand():
    """Horizontal array, diffuse light only: POA = DHI. Faiman roof: T_cell = T_air + G / (20 + 3 * 1.5)."""
    params = PvParams(dc_kwp=100.0, ac_kw=80.0, tilt_deg=0.0, mounting="roof", losses_frac=0.10,
                      gamma_pdc_per_degc=-0.004, eta_inv_nom=0.96)
    # 500 W/m2, cell at 25 degC: T_air = 25 - 500/24.5
    out = pv_output(_weather(500.0, 25.0 - 500.0 / 24.5), params)
    assert out["t_cell_degc"].iloc[0] == pytest.approx(25.0, abs=1e-9)
    p_dc = 100.0 * 0.5 * 0.9                            # 45 kW after 10 % losses
    pdc0 = 80.0 / 0.96                                  # PVWatts v5 inverter (Dobos 2014, eq. 11-12)
    zeta = p_dc / pdc0
    eta = 0.96 / 0.9637 * (-0.0162 * zeta - 0.0059 / zeta + 0.9858)
    assert out["p_kw"].iloc[0] == pytest.approx(eta * p_dc, rel=1e-9)


def test_pv_clips_at_inverter_rating_and_derates_with_heat():
    params = PvParams(dc_kwp=100.0, ac_kw=60.0, tilt_deg=0.0, mounting="ground", losses_frac=0.0)
    out = pv_output(_weather(1100.0, 30.0), params)
    assert out["p_kw"].iloc[0] == pytest.approx(60.0)
    hot = pv_output(_weather(400.0, 35.0), params)["p_kw"].iloc[0]
    cold = pv_output(_weather(400.0, 5.0), params)["p_kw"].iloc[0]
    # Faiman ground: T_cell = T_air + 400 / (25 + 6.84 * 1.5); DC scales with 1 - 0.0035 (T_cell - 25).
    rise = 400 / (25 + 6.84 * 1.5)
    dc_ratio = (1 - 0.0035 * (35 + rise - 25)) / (1 - 0.0035 * (5 + rise - 25))
    # the inverter efficiency differs by < 0.5 % between the two DC levels
    assert hot / cold == pytest.approx(dc_ratio, rel=0.005)


BESS = BessParams(capacity_kwh=100.0, p_max_kw=50.0, eta_charge=0.95, eta_discharge=0.95,
                  soc_min_frac=0.1, soc_max_frac=0.95, soc_init_frac=0.5)


def test_bess_discharge_stops_at_soc_min():
    # 1 h at 50 kW would take 50 / (0.95 * 100) = 0.526 of SOC; only 0.4 is available -> 0.4 * 100 * 0.95 = 38 kW
    p, soc = simulate_bess(np.array([50.0]), BESS, 1.0, 0.5)
    assert p[0] == pytest.approx(38.0)
    assert soc[0] == pytest.approx(0.1)


def test_bess_charge_stops_at_soc_max():
    # room 0.45 of 100 kWh at eta_c 0.95 -> 45 / 0.95 = 47.368 kW for 1 h
    p, soc = simulate_bess(np.array([-50.0]), BESS, 1.0, 0.5)
    assert p[0] == pytest.approx(-45.0 / 0.95)
    assert soc[0] == pytest.approx(0.95)


def test_bess_round_trip_efficiency():
    """Charge 20 kWh from the grid, discharge it all: 20 * 0.95 * 0.95 = 18.05 kWh come back."""
    sp = np.concatenate([np.full(2, -10.0), np.full(10, 10.0)])
    p, soc = simulate_bess(sp, BESS, 1.0, 0.1)
    assert -p[p < 0].sum() == pytest.approx(20.0)
    assert p[p > 0].sum() == pytest.approx(20.0 * 0.95 * 0.95)
    assert soc[-1] == pytest.approx(0.1)


def test_bess_power_limit():
    p, _ = simulate_bess(np.array([80.0, -80.0]), BESS, 0.25, 0.5)
    assert list(p) == [50.0, -50.0]
