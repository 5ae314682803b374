"""Forecasting: series checks, forecasters with P10/P50/P90 (gradient boosting and honest baselines),
rolling-origin backtests and their metrics, for the park's series and for any other regular series."""
