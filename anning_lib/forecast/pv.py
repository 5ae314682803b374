"""PV forecasting: the physical clear-sky output of the array times a learned clear-sky index.

``p(t) = k(t) × p_cs(t)``: ``p_cs`` is the array's AC output under a clear sky (pvlib: Ineichen clear sky with the
Linke turbidity climatology, plane-of-array transposition, PVWatts DC and inverter, as the simulator and the
real plant's datasheet give); ``k`` is the clear-sky index, learned with quantile gradient boosting from the time
of day, the season and the recent sky (the daily index of the last complete day before the target's day and of the
day before it, the index at the same time yesterday). Night steps are zero; P10/P50/P90 are clipped to ``[0, ac_kw]``.

References
----------
.. [1] Ineichen, P. and Perez, R. (2002), A new airmass independent formulation for the Linke turbidity
   coefficient, Solar Energy 73(3), 151-157.
.. [2] Lauret, P., David, M. and Pedro, H. T. C. (2017), Probabilistic solar forecasting using quantile
   regression models, Energies 10(10), 1591 (clear-sky index as the learned quantity).
.. [3] Romano, Y., Patterson, E. and Candès, E. (2019), Conformalized quantile regression, NeurIPS 32
   (the P10-P90 band widened by the conformity score on held-out days so that it covers 80 %).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor

from anning_lib.errors import ForecastError
from anning_lib.forecast.models import Forecaster
from anning_lib.park.schema import PvParams
from anning_lib.sim.pv import pv_output
from anning_lib.sim.weather import clear_sky

QUANTILES = (0.1, 0.5, 0.9)
DAYLIGHT_FRAC = 0.05
"""A step counts as daylight when the clear-sky output is above this share of the inverter rating [-]."""
CLEAR_SKY_TEMP_DEGC = 20.0
"""Air temperature assumed for the clear-sky output when no temperature is given [degC]."""


def clear_sky_power(index: pd.DatetimeIndex, params: PvParams, latitude_deg: float, longitude_deg: float,
                    altitude_m: float, temp_air_degc: pd.Series | None = None) -> pd.Series:
    """AC output of the array under a clear sky [kW] at ``index`` (tz-aware)."""
    cs = clear_sky(index, latitude_deg, longitude_deg, altitude_m)
    temp = temp_air_degc.reindex(index).to_numpy() if temp_air_degc is not None else CLEAR_SKY_TEMP_DEGC
    weather = pd.DataFrame({"ghi_w_m2": cs["ghi"], "dni_w_m2": cs["dni"], "dhi_w_m2": cs["dhi"],
                            "temp_air_degc": temp, "zenith_deg": cs["apparent_zenith"],
                            "azimuth_deg": cs["azimuth"]}, index=index)
    return pv_output(weather, params)["p_kw"]


def _index_features(index: pd.DatetimeIndex, tz: str) -> pd.DataFrame:
    local = index.tz_convert(tz)
    hour = local.hour + local.minute / 60.0
    doy = local.dayofyear
    return pd.DataFrame({"hour_sin": np.sin(2 * np.pi * hour / 24), "hour_cos": np.cos(2 * np.pi * hour / 24),
                         "doy_sin": np.sin(2 * np.pi * doy / 365.25), "doy_cos": np.cos(2 * np.pi * doy / 365.25)},
                        index=index)


class ClearSkyIndexPv(Forecaster):
    """P10/P50/P90 of a PV array's AC power [kW]: clear-sky output × quantile-regressed clear-sky index.

    Parameters
    ----------
    params : PvParams
        the array (kWp, kW, tilt, azimuth, losses).
    latitude_deg, longitude_deg, altitude_m : float
        the site [deg, deg, m].
    tz : str
        local time zone of the site (for the time-of-day features).
    """

    name = "pv_clear_sky_index"

    def __init__(self, params: PvParams, latitude_deg: float, longitude_deg: float, altitude_m: float,
                 tz: str = "Asia/Shanghai", max_iter: int = 200, random_state: int = 0, calibration_days: int = 7):
        self.params, self.site, self.tz = params, (latitude_deg, longitude_deg, altitude_m), tz
        self.kw = {"max_iter": max_iter, "learning_rate": 0.05, "random_state": random_state,
                   "min_samples_leaf": 40}
        self.calibration_days = calibration_days
        self.models: dict[float, HistGradientBoostingRegressor] = {}
        self.widen = 0.0   # conformal widening of the P10-P90 band, in clear-sky index [-]

    def _pcs(self, index: pd.DatetimeIndex) -> pd.Series:
        return clear_sky_power(index, self.params, *self.site)

    def _kindex(self, y: pd.Series) -> tuple[pd.Series, pd.Series]:
        pcs = self._pcs(y.index)
        day = pcs > DAYLIGHT_FRAC * self.params.ac_kw
        k = (y / pcs.where(day)).clip(0.0, 1.5)
        return k, day

    def _features(self, index: pd.DatetimeIndex, k_hist: pd.Series) -> pd.DataFrame:
        """Features of target steps ``index`` from the clear-sky index known before each target's local day."""
        f = _index_features(index, self.tz)
        local_day = index.tz_convert(self.tz).normalize()
        days = k_hist.index.tz_convert(self.tz).normalize()
        daily = k_hist.groupby(days).mean()
        if len(k_hist) and k_hist.index[-1] + (k_hist.index[-1] - k_hist.index[-2] if len(k_hist) > 1 else
                                                 pd.Timedelta(0)) < days[-1] + pd.Timedelta(days=1):
            daily = daily.iloc[:-1]          # the last day is not complete at the origin: not a daily mean
        span = pd.date_range(min(daily.index.min(), local_day.min()) if len(daily) else local_day.min(),
                             local_day.max(), freq="D", tz=self.tz) if len(local_day) else daily.index
        known = daily.reindex(span.union(daily.index)).ffill()   # the latest complete day before each target day
        f["k_yesterday"] = known.reindex(local_day - pd.Timedelta(days=1)).to_numpy()
        f["k_2days"] = known.reindex(local_day - pd.Timedelta(days=2)).to_numpy()
        f["k_same_time_yesterday"] = k_hist.reindex(index - pd.Timedelta(days=1)).to_numpy()
        return f

    def fit(self, y: pd.Series, X: pd.DataFrame | None = None, *, horizon: int | None = None) -> ClearSkyIndexPv:
        """Learn the clear-sky index quantiles from measured AC power ``y`` [kW] (tz-aware index)."""
        if y.index.tz is None:
            raise ForecastError("index: PV forecasting needs time-zone-aware timestamps (solar position)")
        k, day = self._kindex(y)
        f = self._features(y.index, k)
        rows = day & k.notna() & f["k_yesterday"].notna()
        if rows.sum() < 50:
            raise ForecastError(f"y: {int(rows.sum())} daylight steps with a known previous day; need at least 50")
        cut = y.index[-1] - pd.Timedelta(days=self.calibration_days)
        fit_rows, cal_rows = rows & (y.index <= cut), rows & (y.index > cut)
        if fit_rows.sum() >= 50 and cal_rows.sum() >= 20:   # conformalised quantile regression [3]
            models = self._fit_models(f[fit_rows], k[fit_rows])
            lo, hi = (models[q].predict(f[cal_rows]) for q in (QUANTILES[0], QUANTILES[-1]))
            score = np.maximum(lo - k[cal_rows].to_numpy(), k[cal_rows].to_numpy() - hi)
            n = len(score)
            self.widen = max(0.0, float(np.quantile(score, min(1.0, 0.8 * (1 + 1 / n)))))
        self.models = self._fit_models(f[rows], k[rows])
        return self

    def _fit_models(self, f: pd.DataFrame, k: pd.Series) -> dict[float, HistGradientBoostingRegressor]:
        return {q: HistGradientBoostingRegressor(loss="quantile", quantile=q, **self.kw).fit(f, k) for q in QUANTILES}

    def predict(self, index: pd.DatetimeIndex, history: pd.Series, X: pd.DataFrame | None = None) -> pd.DataFrame:
        """P10/P50/P90 [kW] at ``index``, from the measured ``history`` before it."""
        if not self.models:
            raise ForecastError("model: fit the PV forecaster before predicting")
        k_hist, _day = self._kindex(history)
        f = self._features(index, k_hist)
        pcs = self._pcs(index).to_numpy()
        preds = np.sort(np.column_stack([self.models[q].predict(f) for q in QUANTILES]), axis=1)
        preds[:, 0] -= self.widen
        preds[:, -1] += self.widen
        p = np.clip(preds * pcs[:, None], 0.0, self.params.ac_kw)
        p[pcs <= DAYLIGHT_FRAC * self.params.ac_kw] = 0.0
        return pd.DataFrame(p, index=index, columns=["p10", "p50", "p90"])
