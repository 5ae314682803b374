"""Checks of time-series input: instants must be time-zone aware, values finite, points known.

Pure functions apart from :func:`prepare_measurements`, which reads the ``point`` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection

from anning_lib.errors import StoreError
from anning_lib.store.assets import point_ids, unknown_tags_message

EPOCH_TS = pd.Timestamp(0, tz="UTC")
"""1970-01-01 UTC, the zero of the integer instants [ms or us] the store binds."""


def instant(value: object, field: str) -> pd.Timestamp:
    """``value`` as a UTC :class:`pandas.Timestamp`; naive or unparsable instants raise StoreError."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise StoreError(f"{field}: cannot read {value!r} as a timestamp") from None
    if ts is pd.NaT:
        raise StoreError(f"{field}: missing timestamp {value!r}")
    if ts.tzinfo is None:
        raise StoreError(f"{field}: naive timestamp {value!r} has no time zone; give it one (e.g. UTC)")
    return ts.tz_convert("UTC")


def utc_column(col: pd.Series, field: str = "ts") -> pd.Series:
    """A column of instants as ``datetime64[..., UTC]``; rejects naive, missing or unparsable values.

    Raises
    ------
    StoreError
        naming the first offending value.
    """
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        out = col.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(col.dtype):
        raise StoreError(
            f"{field}: naive timestamp {col.iloc[0]!r} has no time zone; give it one (e.g. UTC)"
        )
    else:  # objects: datetimes, Timestamps or strings, possibly in different zones
        out = pd.Series([instant(v, field) for v in col], index=col.index, dtype="datetime64[us, UTC]")
    if out.isna().any():
        raise StoreError(f"{field}: missing timestamp at row {col.index[out.isna().to_numpy()][0]!r}")
    return out


def epoch_ints(ts_utc: pd.Series, unit: str) -> np.ndarray:
    """Instants as integers since 1970-01-01 UTC in ``unit`` ("ms" or "us"), floored."""
    return ((ts_utc - EPOCH_TS) // pd.Timedelta(1, unit)).to_numpy(dtype="int64")


def _labels(df: pd.DataFrame, mask: np.ndarray) -> str:
    row = df[mask].iloc[0]
    who = row["tag"] if "tag" in df.columns else f"point_id {row['point_id']}"
    return f"{who} at {row['ts']!r}"


def prepare_measurements(
    conn: Connection, df: pd.DataFrame, nan: str = "skip", floor: str = "us", best_quality: bool = False
) -> pd.DataFrame:
    """Check a long frame and resolve its points: returns columns ``point_id, ts (UTC), value, quality``.

    Pure apart from reading the ``point`` table; rules in :mod:`anning_lib.store.timeseries`. Instants are
    floored to ``floor`` (the database's resolution: "ms" SQLite, "us" PostgreSQL) before duplicates
    ``(point, ts)`` are resolved: the last wins, or with ``best_quality`` the best quality (then the last)
    ``(point, ts)`` are dropped (last one wins).
    """
    if not isinstance(df, pd.DataFrame):
        raise StoreError(f"measurements: expected a pandas DataFrame, got {type(df).__name__}")
    key = "tag" if "tag" in df.columns else "point_id" if "point_id" in df.columns else None
    missing = [c for c in ("ts", "value") if c not in df.columns] + ([] if key else ["tag or point_id"])
    if missing:
        raise StoreError(f"measurements: missing column(s) {', '.join(missing)} (have {list(df.columns)})")
    if nan not in ("skip", "raise"):
        raise StoreError(f"nan: expected 'skip' or 'raise', got {nan!r}")
    df = df.reset_index(drop=True)
    ts = utc_column(df["ts"])
    try:
        value = df["value"].astype("float64").to_numpy()
    except (TypeError, ValueError):
        bad = next(v for v in df["value"] if not _is_number(v))
        raise StoreError(f"value: {bad!r} is not a number") from None
    if np.isinf(value).any():
        raise StoreError(f"value: infinite value for {_labels(df, np.isinf(value))}")
    isnan = np.isnan(value)
    if isnan.any() and nan == "raise":
        raise StoreError(f"value: NaN for {_labels(df, isnan)}")
    if "quality" in df.columns:
        q = pd.to_numeric(df["quality"], errors="coerce").to_numpy(dtype="float64")
        bad = ~np.isfinite(q) | (q != np.round(q)) | (q < 0) | (q > 32767)
        if bad.any():
            raise StoreError(f"quality: {df['quality'][bad].iloc[0]!r} is not an integer 0..32767")
        quality = q.astype("int64")
    else:
        quality = np.zeros(len(df), dtype="int64")

    known = point_ids(conn)
    if key == "tag":
        codes, uniques = pd.factorize(df["tag"].astype(str))
        unknown = sorted(set(uniques) - set(known))
        if unknown:
            raise StoreError(unknown_tags_message(unknown))
        pid = np.array([known[t] for t in uniques], dtype="int64")[codes]
    else:
        try:
            pid = df["point_id"].astype("int64").to_numpy()
        except (TypeError, ValueError):
            raise StoreError(f"point_id: {df['point_id'].iloc[0]!r} is not an integer id") from None
        unknown = sorted(set(pid.tolist()) - set(known.values()))
        if unknown:
            raise StoreError(f"point_id: unknown point id {unknown[0]!r} ({len(unknown)} unknown ids in all)")
    # floor to the stored resolution before de-duplicating, so that two instants within one stored step
    # do not reach one INSERT as two rows for the same key
    out = pd.DataFrame({"point_id": pid, "ts": ts.dt.floor(floor), "value": value, "quality": quality},
                       index=df.index)
    out = out[~isnan]
    if best_quality:  # among duplicates keep the best quality (lowest code), the last of equals
        out = out.iloc[np.argsort(-out["quality"].to_numpy(), kind="stable")]
    return out.drop_duplicates(["point_id", "ts"], keep="last")


def _is_number(v: object) -> bool:
    try:
        float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True
