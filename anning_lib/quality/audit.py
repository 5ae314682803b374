"""A data-quality audit of stored history: completeness, gaps, out-of-range and flat-lined values by the alarm
rules, samples of bad quality, open alarms and the gateway's connection health.

The audit works on the store's 15-minute rollups (``rollup_15min``: count, mean, min and max of the good and
uncertain samples of each quarter-hour), so a month of one-second data costs no more than a month of
15-minute data:

* **completeness** of a point: quarter-hours with at least one usable sample / quarter-hours of the period;
  of a device: quarter-hours in which every one of its points has one;
* **gaps**: runs of quarter-hours without a usable sample (:func:`anning_lib.quality.checks.gaps`, plus the runs
  at the start and end of the period, which it cannot see), longest first;
* **out of range** by the ``range`` rules: a quarter-hour whose smallest sample is below the rule's low limit or
  whose largest is above its high limit (:func:`anning_lib.quality.checks.range_flags` on the rollups' min and
  max: catches a one-second excursion inside a quarter-hour);
* **flat line** by the ``flatline`` rules, on the 15-minute means
  (:func:`anning_lib.quality.checks.flatline_flags`): on means a stuck sensor shows as repeated identical means,
  and three samples need a window of at least 30 minutes, so the window is the rule's or ``min_window_s``,
  whichever is longer.

Pure functions except :func:`quality_counts` and :func:`ingest_health`, which read the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from anning_lib.park.schema import Park
from anning_lib.quality.checks import QUALITY_LEVELS, flatline_flags, gaps, range_flags
from anning_lib.quality.rules import AlarmRule, expand
from anning_lib.store.schema import TABLES

STEP = pd.Timedelta("15min")
FLATLINE_MIN_WINDOW_S = 3600.0
"""Shortest flat-line window on 15-minute means [s]: five identical means (an hour) before a point counts as stuck."""
COMPLETENESS_COLUMNS = ["tag", "device_id", "quarters", "quarters_with_data", "completeness_frac", "first", "last"]
DEVICE_COLUMNS = ["device_id", "points", "completeness_frac", "worst_tag", "worst_completeness_frac"]
GAP_COLUMNS = ["tag", "gap_start", "gap_end", "missing_quarters", "duration_h"]
RANGE_COLUMNS = ["rule_id", "severity", "tag", "quarters", "first", "last", "lowest", "highest", "low", "high"]
FLATLINE_COLUMNS = ["rule_id", "severity", "tag", "window_s", "quarters", "first", "last", "value"]
QUALITY_COLUMNS = ["tag", "n_good", "n_uncertain", "n_bad", "n_stale", "bad_frac"]
ALARM_SUMMARY_COLUMNS = ["rule_id", "severity", "open", "active_unack", "active_ack", "cleared_unack",
                         "oldest_raised_at", "targets"]
HEALTH_COLUMNS = ["source", "protocol", "connected", "last_seen", "age_s", "n_samples", "n_bad", "n_errors",
                  "last_error", "lag_s", "updated_at"]


def _grid(frame: pd.DataFrame, start: object, end: object) -> pd.DatetimeIndex:
    """The quarter-hour starts of ``[start, end)`` in the time zone of ``frame``'s index."""
    tz = getattr(frame.index, "tz", None) or "UTC"
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if s.tzinfo is None or e.tzinfo is None:
        raise ValueError(f"start, end: need time-zone-aware instants, got {start!r}, {end!r}")
    return pd.date_range(s.tz_convert(tz), e.tz_convert(tz), freq=STEP, inclusive="left", name="ts")


def _has_data(counts: pd.DataFrame, start: object, end: object) -> pd.DataFrame:
    """Boolean frame on the full quarter-hour grid: the quarter-hour has a usable sample of the tag."""
    return counts.reindex(_grid(counts, start, end)).fillna(0).gt(0)


def _device(tag: str) -> str:
    return tag.split(".", 1)[0]


# ------------------------------------------------------------------------------------------- completeness
def completeness(counts: pd.DataFrame, start: object, end: object) -> pd.DataFrame:
    """Completeness of each point over ``[start, end)`` (pure).

    Parameters
    ----------
    counts : pandas.DataFrame
        samples per quarter-hour, one column per tag, index the quarter-hour starts (aware):
        ``read_series(engine, tags, start, end, resolution="15min", stat="n")`` (missing row or NaN: none).
    start, end : aware timestamps

    Returns
    -------
    pandas.DataFrame
        one row per tag, in column order, :data:`COMPLETENESS_COLUMNS`: ``quarters`` of the period,
        ``quarters_with_data``, ``completeness_frac`` = their ratio [-], ``first``/``last`` quarter-hour with data
        (NaT without any).
    """
    has = _has_data(counts, start, end)
    n = len(has.index)
    rows = []
    for tag in has.columns:
        col = has[tag]
        idx = col.index[col.to_numpy()]
        rows.append({"tag": tag, "device_id": _device(tag), "quarters": n, "quarters_with_data": int(col.sum()),
                     "completeness_frac": float(col.sum()) / n if n else np.nan,
                     "first": idx[0] if len(idx) else pd.NaT, "last": idx[-1] if len(idx) else pd.NaT})
    return pd.DataFrame(rows, columns=COMPLETENESS_COLUMNS)


def device_completeness(counts: pd.DataFrame, start: object, end: object) -> pd.DataFrame:
    """Completeness of each device (tags ``DEVICE.point``) over ``[start, end)`` (pure): the share of quarter-hours
    in which every one of its points in ``counts`` has a sample, and its least complete point.

    Returns
    -------
    pandas.DataFrame
        one row per device, in order of first appearance, :data:`DEVICE_COLUMNS` (fractions [-]); sorted by the
        caller as it likes.
    """
    has = _has_data(counts, start, end)
    per_point = has.mean() if len(has.index) else pd.Series(np.nan, index=has.columns)
    rows = []
    for dev in dict.fromkeys(_device(t) for t in has.columns):
        tags = [t for t in has.columns if _device(t) == dev]
        worst = per_point[tags].idxmin() if per_point[tags].notna().any() else tags[0]
        rows.append({"device_id": dev, "points": len(tags),
                     "completeness_frac": float(has[tags].all(axis=1).mean()) if len(has.index) else np.nan,
                     "worst_tag": worst, "worst_completeness_frac": float(per_point[worst])})
    return pd.DataFrame(rows, columns=DEVICE_COLUMNS)


def completeness_by_period(counts: pd.DataFrame, start: object, end: object, *, freq: str = "D") -> pd.DataFrame:
    """Completeness of each device per period (pure): the share of the period's quarter-hours in which every one of
    the device's points in ``counts`` has a sample (as :func:`device_completeness`), for a heat map.

    Parameters
    ----------
    counts, start, end
        as :func:`completeness`.
    freq : str
        pandas offset of the periods, cut in the time zone of ``counts``' index (``"D"``: local days).

    Returns
    -------
    pandas.DataFrame
        index ``period`` (period start), one column per device in order of first appearance [-].
    """
    has = _has_data(counts, start, end)
    devices = list(dict.fromkeys(_device(t) for t in has.columns))
    every = pd.DataFrame({d: has[[t for t in has.columns if _device(t) == d]].all(axis=1) for d in devices},
                         index=has.index, columns=devices)
    out = every.astype("float64").resample(freq).mean()
    out.index.name = "period"
    return out


def missing_runs(counts: pd.DataFrame, start: object, end: object) -> pd.DataFrame:
    """Runs of quarter-hours without a sample, per tag, longest first (pure).

    Interior runs come from :func:`anning_lib.quality.checks.gaps`; a run at the start or the end of the period
    (before the first or after the last sample) and a tag without any sample are added here.

    Returns
    -------
    pandas.DataFrame
        :data:`GAP_COLUMNS`: ``gap_start`` (first missing quarter-hour), ``gap_end`` (the first quarter-hour with
        data after the run, or ``end``), ``missing_quarters``, ``duration_h`` [h]; sorted by length (longest
        first), then tag and start.
    """
    has = _has_data(counts, start, end)
    idx = has.index
    end_ts = pd.Timestamp(end).tz_convert(idx.tz) if idx.tz is not None else pd.Timestamp(end)
    rows = []
    for tag in has.columns:
        present = idx[has[tag].to_numpy()]
        if not len(idx):
            continue
        if not len(present):
            rows.append((tag, idx[0], end_ts, len(idx)))
            continue
        if present[0] > idx[0]:
            rows.append((tag, idx[0], present[0], int((present[0] - idx[0]) / STEP)))
        inner = gaps(pd.Series(1.0, index=present), STEP)
        rows += [(tag, r.start + STEP, r.end, int(r.missing_steps)) for r in inner.itertuples()]
        if present[-1] < idx[-1]:
            rows.append((tag, present[-1] + STEP, end_ts, int((idx[-1] - present[-1]) / STEP)))
    out = pd.DataFrame(rows, columns=GAP_COLUMNS[:4])
    out["missing_quarters"] = out["missing_quarters"].astype("int64")
    out["duration_h"] = out["missing_quarters"] * STEP.total_seconds() / 3600.0
    return out.sort_values(["missing_quarters", "tag", "gap_start"], ascending=[False, True, True],
                           ignore_index=True)[GAP_COLUMNS]


# ------------------------------------------------------------------------------------------- rule checks
def _point_rules(rules: Iterable[AlarmRule], kind: str, park: Park) -> list[tuple[AlarmRule, str]]:
    """``(rule, tag)`` of every enabled rule of ``kind`` and each of its targets (pure)."""
    return [(r, tag) for r in rules if r.enabled and r.condition.kind == kind for tag in expand(r, park)]


def _runs_summary(flags: pd.Series) -> tuple[int, pd.Timestamp, pd.Timestamp]:
    hit = flags.index[flags.to_numpy()]
    return len(hit), hit[0], hit[-1]


def range_findings(minimum: pd.DataFrame, maximum: pd.DataFrame, rules: Iterable[AlarmRule],
                   park: Park) -> pd.DataFrame:
    """Quarter-hours outside the limits of the enabled ``range`` rules (pure).

    Parameters
    ----------
    minimum, maximum : pandas.DataFrame
        the rollups' smallest and largest sample per quarter-hour (``read_series(..., resolution="15min",
        stat="min")`` and ``stat="max"``), one column per tag [point unit]; rule targets not among the columns
        are not checked.
    rules : iterable of AlarmRule
        e.g. :func:`anning_lib.quality.service.rules_in_force`; the limits are each rule's (or, without any, the
        point's min/max in the park model: :meth:`RangeCondition.limits`).
    park : Park

    Returns
    -------
    pandas.DataFrame
        one row per rule and tag with a finding, :data:`RANGE_COLUMNS`: ``quarters`` flagged, ``first``/``last``
        of them, ``lowest``/``highest`` sample of the period [point unit], the limits ``low``/``high``.
    """
    rows = []
    for rule, tag in _point_rules(rules, "range", park):
        if tag not in minimum.columns or tag not in maximum.columns:
            continue
        dev, pid = tag.split(".", 1)
        low, high, _deadband = rule.condition.limits(park.device(dev).point(pid))
        flags = range_flags(minimum[tag], low, None) | range_flags(maximum[tag], None, high)
        if flags.any():
            n, first, last = _runs_summary(flags)
            rows.append({"rule_id": rule.id, "severity": rule.severity, "tag": tag, "quarters": n, "first": first,
                         "last": last, "lowest": float(minimum[tag].min()), "highest": float(maximum[tag].max()),
                         "low": low, "high": high})
    return pd.DataFrame(rows, columns=RANGE_COLUMNS)


def flatline_findings(means: pd.DataFrame, rules: Iterable[AlarmRule], park: Park, *,
                      min_window_s: float = FLATLINE_MIN_WINDOW_S) -> pd.DataFrame:
    """Quarter-hours where a point of an enabled ``flatline`` rule has been stuck (pure).

    Parameters
    ----------
    means : pandas.DataFrame
        15-minute means, one column per tag [point unit]; rule targets not among the columns are not checked.
    rules : iterable of AlarmRule
    park : Park
    min_window_s : float
        shortest window [s] (module docstring); the rule's ``window_s`` if longer. ``min_change`` is the rule's.

    Returns
    -------
    pandas.DataFrame
        one row per rule and tag with a finding, :data:`FLATLINE_COLUMNS`: ``window_s`` used [s], ``quarters``
        flagged, ``first``/``last`` of them, ``value`` (the mean at the first) [point unit].
    """
    rows = []
    for rule, tag in _point_rules(rules, "flatline", park):
        if tag not in means.columns:
            continue
        window = max(float(rule.condition.window_s), float(min_window_s))
        flags = flatline_flags(means[tag], window, rule.condition.min_change)
        if flags.any():
            n, first, last = _runs_summary(flags)
            rows.append({"rule_id": rule.id, "severity": rule.severity, "tag": tag, "window_s": window,
                         "quarters": n, "first": first, "last": last, "value": float(means[tag].loc[first])})
    return pd.DataFrame(rows, columns=FLATLINE_COLUMNS)


# ------------------------------------------------------------------------------------------- alarms
def alarm_summary(alarms: Sequence[dict], tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Alarms counted by rule and severity (pure), most first.

    Parameters
    ----------
    alarms : sequence of dict
        alarm rows, e.g. :func:`anning_lib.quality.alarms.list_alarms` (open ones by default): ``rule_id``
        (None: raised by the library itself, shown as ``-``), ``severity``, ``state``, ``raised_at`` (aware),
        ``target``.
    tz : str
        time zone of ``oldest_raised_at``.

    Returns
    -------
    pandas.DataFrame
        :data:`ALARM_SUMMARY_COLUMNS`: ``open`` (count), the count per open state, ``oldest_raised_at``,
        ``targets`` (up to five, comma-separated, then ``+N``).
    """
    if not alarms:
        return pd.DataFrame(columns=ALARM_SUMMARY_COLUMNS)
    df = pd.DataFrame(list(alarms))
    df["rule_id"] = df["rule_id"].fillna("-")
    rows = []
    for (rule_id, severity), g in df.groupby(["rule_id", "severity"], sort=True):
        states = g["state"].value_counts()
        targets = list(dict.fromkeys(g["target"].fillna("").astype(str)))
        text = ", ".join(targets[:5]) + (f" +{len(targets) - 5}" if len(targets) > 5 else "")
        rows.append({"rule_id": rule_id, "severity": severity, "open": len(g),
                     **{s: int(states.get(s, 0)) for s in ("active_unack", "active_ack", "cleared_unack")},
                     "oldest_raised_at": pd.Timestamp(g["raised_at"].min()).tz_convert(tz), "targets": text})
    out = pd.DataFrame(rows, columns=ALARM_SUMMARY_COLUMNS)
    return out.sort_values(["open", "rule_id"], ascending=[False, True], ignore_index=True)


# ------------------------------------------------------------------------------------------- store reads
def quality_counts(engine: Engine, tags: Sequence[str], start: object, end: object) -> pd.DataFrame:
    """Stored samples of each tag over ``[start, end)`` by quality code (one grouped query).

    Quality codes (``anning_lib.ingest.model.Quality``): good 0, uncertain 1, bad 2, stale 3; bad and stale
    samples are kept for the record but never enter the rollups. Reads the raw ``measurement`` table through its
    primary key ``(point_id, ts)``.

    Returns
    -------
    pandas.DataFrame
        one row per tag, in order, :data:`QUALITY_COLUMNS`: ``n_good``, ``n_uncertain``, ``n_bad``, ``n_stale``
        (other codes count as bad), ``bad_frac`` = (bad + stale) / all [-] (NaN without samples).
    """
    tags = list(dict.fromkeys(tags))
    m, pt = TABLES["measurement"], TABLES["point"]
    s, e = (pd.Timestamp(t).tz_convert("UTC").to_pydatetime() for t in (start, end))
    q = (sa.select(pt.c.tag, m.c.quality, sa.func.count().label("n")).join_from(m, pt, m.c.point_id == pt.c.id)
         .where(pt.c.tag.in_(tags), m.c.ts >= s, m.c.ts < e).group_by(pt.c.tag, m.c.quality))
    with engine.connect() as conn:
        got = conn.execute(q).all() if tags else []
    names = {v: k for k, v in QUALITY_LEVELS.items()}
    counts = {t: dict.fromkeys(QUALITY_LEVELS, 0) for t in tags}
    for tag, quality, n in got:
        counts[tag][names.get(int(quality), "bad")] += int(n)
    rows = []
    for t in tags:
        c = counts[t]
        total = sum(c.values())
        rows.append({"tag": t, **{f"n_{k}": v for k, v in c.items()},
                     "bad_frac": (c["bad"] + c["stale"]) / total if total else np.nan})
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def ingest_health(engine: Engine, now: dt.datetime | None = None, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """The gateway's connection health as stored in ``ingest_health`` (one row per connection and the writer).

    Parameters
    ----------
    now : aware datetime, optional
        for ``age_s``; default the wall clock.
    tz : str
        time zone of the returned instants.

    Returns
    -------
    pandas.DataFrame
        :data:`HEALTH_COLUMNS`, disconnected first, then by source: ``age_s`` = now - ``last_seen`` [s] (NaN
        when never seen), ``lag_s`` newest sample's delay at the last refresh [s]; empty when the gateway has
        never run on this store.
    """
    t = TABLES["ingest_health"]
    with engine.connect() as conn:
        df = pd.DataFrame([dict(r._mapping) for r in conn.execute(sa.select(t))])
    if df.empty:
        return pd.DataFrame(columns=HEALTH_COLUMNS)
    now_ts = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
    for col in ("last_seen", "updated_at"):
        df[col] = pd.to_datetime(df[col], utc=True).dt.tz_convert(tz)
    df["age_s"] = (now_ts.tz_convert(tz) - df["last_seen"]).dt.total_seconds()
    df["connected"] = df["connected"].astype(bool)
    return df.sort_values(["connected", "source"], ignore_index=True)[HEALTH_COLUMNS]
