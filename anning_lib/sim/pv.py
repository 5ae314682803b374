"""PV array model: plane-of-array irradiance, cell temperature, DC power and inverter clipping (pvlib)."""

from __future__ import annotations

import pandas as pd
import pvlib

from anning_lib.park.schema import PvParams

# Faiman model coefficients (u0 [W/(m2 K)], u1 [W s/(m3 K)]) for two mountings.
# source: pvlib defaults (u0=25, u1=6.84, open rack) and PVsyst's insulated-back value range for roofs: ASSUMPTION.
FAIMAN_U = {"ground": (25.0, 6.84), "roof": (20.0, 3.0)}


def pv_output(weather: pd.DataFrame, params: PvParams, wind_m_s: float = 1.5) -> pd.DataFrame:
    """AC output of one PV array.

    Parameters
    ----------
    weather : DataFrame
        ``ghi_w_m2, dni_w_m2, dhi_w_m2, temp_air_degc, zenith_deg, azimuth_deg`` [W/m2, degC, deg],
        tz-aware index.
    params : PvParams
        array and inverter ratings [kWp, kW, deg].
    wind_m_s : float
        wind speed for the cell temperature [m/s].

    Returns
    -------
    DataFrame
        ``p_kw`` (AC, >= 0, never above ``params.ac_kw``), ``g_poa_w_m2``, ``t_cell_degc``.

    References
    ----------
    Dobos, A. P. (2014), PVWatts Version 5 Manual, NREL/TP-6A20-62641 (DC and inverter models).
    Faiman, D. (2008), Assessing the outdoor operating temperature of photovoltaic modules,
    Progress in Photovoltaics 16(4), 307-315.
    """
    poa = pvlib.irradiance.get_total_irradiance(
        surface_tilt=params.tilt_deg,
        surface_azimuth=params.azimuth_deg,
        solar_zenith=weather["zenith_deg"],
        solar_azimuth=weather["azimuth_deg"],
        dni=weather["dni_w_m2"],
        ghi=weather["ghi_w_m2"],
        dhi=weather["dhi_w_m2"],
        model="isotropic",
    )
    g_poa = poa["poa_global"].fillna(0.0).clip(lower=0.0)
    u0, u1 = FAIMAN_U[params.mounting]
    t_cell = pvlib.temperature.faiman(g_poa, weather["temp_air_degc"], wind_m_s, u0=u0, u1=u1)
    p_dc_kw = pvlib.pvsystem.pvwatts_dc(g_poa, t_cell, params.dc_kwp, params.gamma_pdc_per_degc)
    p_dc_kw = p_dc_kw * (1.0 - params.losses_frac)
    # pvwatts inverter: pdc0 is the DC input at which the AC output reaches the rating; above it, it clips.
    p_ac_kw = pvlib.inverter.pvwatts(p_dc_kw, pdc0=params.ac_kw / params.eta_inv_nom, eta_inv_nom=params.eta_inv_nom)
    p_ac_kw = p_ac_kw.clip(lower=0.0, upper=params.ac_kw)
    return pd.DataFrame({"p_kw": p_ac_kw, "g_poa_w_m2": g_poa, "t_cell_degc": t_cell}, index=weather.index)
