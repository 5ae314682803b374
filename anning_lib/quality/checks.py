"""Data-quality checks: streaming detectors for the live stream and batch functions for stored series.

Pure code (no I/O). A streaming detector watches one target of one rule: :meth:`update` takes each new sample and
says whether the rule's condition is true (``None``: cannot tell, e.g. the first sample of a spike check, or a
sample of bad quality); :meth:`tick` lets time pass without samples (only the stale check answers). Delays
(on/off) and the alarm lifecycle are the engine's business, not the detectors'. Times are seconds since the
epoch (UTC, float); values are in the point's unit. ``detail`` holds what the alarm message needs: ``value``,
``limit`` and a readable ``text``.

Value checks (range, spike, flatline, fault) skip samples whose quality is BAD or STALE (the ``quality`` rule
reports those; a STALE sample repeats the last value and is no measurement). The batch functions take a pandas
Series with a DatetimeIndex and return flags aligned with it; NaN counts as missing there (see :func:`gaps`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

import numpy as np
import pandas as pd

SKIP_QUALITY = 2                                         # Quality.BAD: value checks skip BAD (2) and STALE (3)
QUALITY_LEVELS = {"good": 0, "uncertain": 1, "bad": 2, "stale": 3}   # anning_lib.ingest.model.Quality


class Detector(Protocol):
    """One rule on one target, fed sample by sample."""

    detail: dict

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None: ...

    def tick(self, now_s: float) -> bool | None: ...


def _usable(value: float, quality: int) -> bool:
    return quality < SKIP_QUALITY and math.isfinite(value)


# ---------------------------------------------------------------------------------------------- streaming
class RangeDetector:
    """Value outside ``[low, high]``, with hysteresis.

    Parameters
    ----------
    low, high : float or None
        limits [point unit]; None: no limit on that side.
    deadband : float
        hysteresis [point unit]: once true, the condition is false again only for a value inside
        ``[low + deadband, high - deadband]``. A non-finite value is a violation.
    """

    def __init__(self, low: float | None, high: float | None, deadband: float = 0.0):
        if low is None and high is None:
            raise ValueError("a range check needs low or high")
        self.low, self.high, self.deadband = low, high, deadband
        self.active = False
        self.detail: dict = {"low": low, "high": high, "deadband": deadband}

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None:
        if quality >= SKIP_QUALITY:
            return None
        finite = math.isfinite(value)
        above = self.high is not None and value > self.high
        below = self.low is not None and value < self.low
        if above or below or not finite:
            self.active = True
        elif self.active:
            inside = ((self.low is None or value >= self.low + self.deadband)
                      and (self.high is None or value <= self.high - self.deadband))
            self.active = not inside
        high_side = self.low is None or (self.high is not None and not value < (self.low + self.high) / 2)
        limit, side = (self.high, "above the high") if high_side else (self.low, "below the low")
        if above or below or not finite:
            text = f"{value:g} {side} limit {limit:g}"
        else:
            text = (f"{value:g} not back inside limit {limit:g} by the deadband {self.deadband:g}" if self.active
                    else f"{value:g} within the limits")
        self.detail.update(t_s=t_s, value=value, limit=limit if self.active else None, text=text)
        return self.active

    def tick(self, now_s: float) -> bool | None:
        return None


class SpikeDetector:
    """Rate of change between consecutive samples above ``max_change_per_s`` [point unit/s].

    The first sample, a repeated or older timestamp and unusable samples give ``None``.
    """

    def __init__(self, max_change_per_s: float):
        if not max_change_per_s > 0:
            raise ValueError("max_change_per_s must be > 0")
        self.max_change_per_s = max_change_per_s
        self._prev: tuple[float, float] | None = None
        self.detail: dict = {"limit": max_change_per_s}

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None:
        if not _usable(value, quality):
            return None
        prev = self._prev
        if prev is not None and t_s <= prev[0]:
            return None
        self._prev = (t_s, value)
        if prev is None:
            return None
        rate = abs(value - prev[1]) / (t_s - prev[0])
        self.detail.update(t_s=t_s, value=value, previous=prev[1], rate_per_s=rate,
                           text=f"changed {value - prev[1]:+g} in {t_s - prev[0]:g} s ({rate:g}/s, limit "
                                f"{self.max_change_per_s:g}/s)")
        return rate > self.max_change_per_s

    def tick(self, now_s: float) -> bool | None:
        return None


class FlatlineDetector:
    """Stuck sensor: ``max - min <= min_change`` over the samples in ``[t - window_s, t]``.

    Needs at least 3 samples in the window and a window fully observed (first sample at or before
    ``t - window_s``), else ``None``. Running min/max by monotonic deques: O(1) amortised per sample.

    Parameters
    ----------
    window_s : float
        window length [s].
    min_change : float
        largest span still counted as stuck [point unit].
    """

    def __init__(self, window_s: float, min_change: float = 0.0):
        if not window_s > 0 or min_change < 0:
            raise ValueError("window_s must be > 0 and min_change >= 0")
        self.window_s, self.min_change = window_s, min_change
        self._win: deque[tuple[float, float]] = deque()
        self._max: deque[tuple[float, float]] = deque()     # values decreasing from the left
        self._min: deque[tuple[float, float]] = deque()     # values increasing from the left
        self._first: float | None = None
        self.detail: dict = {"limit": min_change, "window_s": window_s}

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None:
        if not _usable(value, quality) or (self._win and t_s < self._win[-1][0]):
            return None
        if self._first is None:
            self._first = t_s
        self._win.append((t_s, value))
        while self._max and self._max[-1][1] <= value:
            self._max.pop()
        self._max.append((t_s, value))
        while self._min and self._min[-1][1] >= value:
            self._min.pop()
        self._min.append((t_s, value))
        start = t_s - self.window_s
        for dq in (self._win, self._max, self._min):
            while dq[0][0] < start:
                dq.popleft()
        span = self._max[0][1] - self._min[0][1]
        n = len(self._win)
        self.detail.update(t_s=t_s, value=value, span=span, n=n,
                           text=f"changed {span:g} over {self.window_s:g} s ({n} samples; stuck at <= "
                                f"{self.min_change:g})")
        if n < 3 or self._first > start:
            return None
        return span <= self.min_change

    def tick(self, now_s: float) -> bool | None:
        return None


class StaleDetector:
    """No sample for more than ``max_age_s`` [s] (asked through :meth:`tick`).

    A sample of quality STALE (the source was not read; its last value repeated) does not count as data. Before
    the first sample the age counts from ``since_s`` when given, else the answer is ``None``.
    """

    def __init__(self, max_age_s: float, since_s: float | None = None):
        if not max_age_s > 0:
            raise ValueError("max_age_s must be > 0")
        self.max_age_s, self.since_s = max_age_s, since_s
        self.last_s: float | None = None
        self.detail: dict = {"limit": max_age_s}

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None:
        if quality >= QUALITY_LEVELS["stale"]:
            return self.tick(t_s)
        self.last_s = t_s if self.last_s is None else max(self.last_s, t_s)
        self.detail.update(value=0.0, last_s=self.last_s, text="fresh data")
        return False

    def tick(self, now_s: float) -> bool | None:
        ref = self.last_s if self.last_s is not None else self.since_s
        if ref is None:
            return None
        age = now_s - ref
        since = "last sample" if self.last_s is not None else "start"
        self.detail.update(value=age, last_s=self.last_s,
                           text=f"no data for {age:.0f} s since {since} (limit {self.max_age_s:g} s)")
        return age > self.max_age_s


class FaultDetector:
    """A device's fault/status word: true when != 0; ``detail['text']`` names the set bits.

    Parameters
    ----------
    bit_texts : dict of int to str
        text per bit number (0 = least significant); unknown bits read ``bit N``.
    """

    def __init__(self, bit_texts: dict[int, str] | None = None):
        self.bit_texts = dict(bit_texts or {})
        self.detail: dict = {"limit": 0}

    def decode(self, word: int) -> list[str]:
        """Texts of the set bits, lowest bit first."""
        return [self.bit_texts.get(b, f"bit {b}") for b in range(32) if word >> b & 1]

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None:
        if not _usable(value, quality):
            return None
        word = int(round(value)) & 0xFFFFFFFF
        texts = self.decode(word)
        self.detail.update(t_s=t_s, value=word, bits=[b for b in range(32) if word >> b & 1],
                           text=f"fault word 0x{word:04X}: {'; '.join(texts)}" if word else "no fault")
        return word != 0

    def tick(self, now_s: float) -> bool | None:
        return None


class QualityDetector:
    """The sample's quality code is at least ``at_least`` ('uncertain' < 'bad' < 'stale')."""

    def __init__(self, at_least: str = "bad"):
        self.level = QUALITY_LEVELS[at_least]
        self.detail: dict = {"limit": at_least}

    def update(self, t_s: float, value: float, quality: int = 0) -> bool | None:
        name = next((k for k, v in QUALITY_LEVELS.items() if v == quality), str(quality))
        self.detail.update(t_s=t_s, value=value, quality=quality, text=f"quality {name} (value {value:g})")
        return quality >= self.level

    def tick(self, now_s: float) -> bool | None:
        return None


class CommLossDetector:
    """The gateway's health says the device's connection is down (``SourceHealth.connected``)."""

    def __init__(self) -> None:
        self.detail: dict = {"limit": None}

    def update_health(self, t_s: float, connected: bool, last_error: str = "") -> bool:
        self.detail.update(t_s=t_s, value=connected,
                           text="connected" if connected else f"source disconnected: {last_error}".rstrip(": "))
        return not connected

    def tick(self, now_s: float) -> bool | None:
        return None


def balance_violation(main_kw: float, parts: dict[str, float], loss_frac: float, tolerance_frac: float,
                      min_kw: float = 0.0, sources: dict[str, float] | None = None) -> tuple[bool, float]:
    """Enterprise balance (docs/glossary.md): ``main = sum(parts) * (1 + loss_frac) - sum(sources)``.

    Parameters
    ----------
    main_kw : float
        main meter reading, import positive [kW].
    parts : dict of str to float
        the loads behind it (sub-meters, process lines, boilers), consumption positive [kW].
    loss_frac : float
        the main meter's ``loss_frac`` [-].
    tolerance_frac : float
        allowed mismatch as a share of ``max(|main_kw|, min_kw)`` [-].
    min_kw : float
        floor of the reference reading [kW].
    sources : dict of str to float, optional
        PV (generation) and storage (discharge) ``p_kw`` behind the meter [kW].

    Returns
    -------
    (violated, mismatch_kw)
        ``mismatch_kw = main - sum(parts)*(1+loss_frac) + sum(sources)`` [kW]; violated when
        ``|mismatch_kw| > tolerance_frac * max(|main_kw|, min_kw)``.
    """
    expected = sum(parts.values()) * (1.0 + loss_frac) - sum((sources or {}).values())
    mismatch = main_kw - expected
    return bool(abs(mismatch) > tolerance_frac * max(abs(main_kw), min_kw)), mismatch


class BalanceDetector:
    """Energy balance of one main meter from the latest values of its tags [kW].

    ``None`` until every tag has a value no older than ``max_skew_s`` [s] at the update time.
    """

    def __init__(self, main_tag: str, load_tags: list[str], source_tags: list[str] = (), *, loss_frac: float,
                 tolerance_frac: float, min_kw: float = 0.0, max_skew_s: float = 30.0):
        self.main_tag, self.load_tags, self.source_tags = main_tag, list(load_tags), list(source_tags)
        self.loss_frac, self.tolerance_frac, self.min_kw = loss_frac, tolerance_frac, min_kw
        self.max_skew_s = max_skew_s
        self._tags = [self.main_tag, *self.load_tags, *self.source_tags]
        self._tagset = frozenset(self._tags)
        self._latest: dict[str, tuple[float, float]] = {}
        self.detail: dict = {}

    @classmethod
    def from_park(cls, condition: Any, park: Any, main_meter_id: str, max_skew_s: float = 30.0) -> BalanceDetector:
        """The detector of a ``balance`` condition on one main meter of ``park``."""
        from anning_lib.quality.rules import balance_terms

        main, loads, sources, loss = balance_terms(park, main_meter_id)
        return cls(main, loads, sources, loss_frac=loss, tolerance_frac=condition.tolerance_frac,
                   min_kw=condition.min_kw, max_skew_s=max_skew_s)

    @property
    def tags(self) -> list[str]:
        """Every tag the balance reads."""
        return list(self._tags)

    def update_values(self, t_s: float, values: dict[str, float]) -> bool | None:
        for tag, v in values.items():
            if tag in self._tagset and math.isfinite(v):
                self._latest[tag] = (t_s, v)
        fresh = {k: v for k, (ts, v) in self._latest.items() if t_s - ts <= self.max_skew_s}
        if any(tag not in fresh for tag in self._tags):
            return None
        main = fresh[self.main_tag]
        bad, mismatch = balance_violation(main, {k: fresh[k] for k in self.load_tags}, self.loss_frac,
                                          self.tolerance_frac, self.min_kw, {k: fresh[k] for k in self.source_tags})
        allowed = self.tolerance_frac * max(abs(main), self.min_kw)
        self.detail.update(t_s=t_s, value=mismatch, limit=allowed, main_kw=main, expected_kw=main - mismatch,
                           text=f"main meter {main:g} kW, sub-meters explain {main - mismatch:g} kW: mismatch "
                                f"{mismatch:+.0f} kW (allowed {allowed:.0f} kW)")
        return bad

    def update_tag(self, tag: str, t_s: float, value: float, quality: int = 0) -> bool | None:
        """One sample of one of :attr:`tags`; samples of BAD or STALE quality are ignored."""
        return None if quality >= SKIP_QUALITY else self.update_values(t_s, {tag: value})

    def tick(self, now_s: float) -> bool | None:
        return None


def make_detector(condition: Any, point: Any = None, fault_texts: dict[int, str] | None = None, *,
                  park: Any = None, device_id: str | None = None, since_s: float | None = None) -> Any:
    """The detector of a rule condition (``anning_lib.quality.rules``) for one target.

    ``range`` without low/high takes the ``point``'s min/max; ``fault`` decodes with ``fault_texts``;
    ``balance`` needs ``park`` and the main meter's ``device_id``; ``stale`` counts the age of a point that has
    not reported yet from ``since_s`` [s] (e.g. the engine's start), else it waits for a first sample.
    """
    kind = condition.kind
    if kind == "range":
        low, high, deadband = condition.limits(point)
        if low is None and high is None:
            raise ValueError("a range without low/high needs a point with min or max")
        return RangeDetector(low, high, deadband)
    if kind == "balance":
        if park is None or device_id is None:
            raise ValueError("a balance detector needs park and device_id")
        return BalanceDetector.from_park(condition, park, device_id)
    simple = {
        "spike": lambda: SpikeDetector(condition.max_change_per_s),
        "flatline": lambda: FlatlineDetector(condition.window_s, condition.min_change),
        "stale": lambda: StaleDetector(condition.max_age_s, since_s),
        "fault": lambda: FaultDetector(fault_texts),
        "quality": lambda: QualityDetector(condition.at_least),
        "comm_loss": CommLossDetector,
    }
    if kind not in simple:
        raise ValueError(f"unknown condition kind {kind!r}")
    return simple[kind]()


# ---------------------------------------------------------------------------------------------- batch
def _sorted_values(s: pd.Series) -> pd.Series:
    if not isinstance(s.index, pd.DatetimeIndex):
        raise TypeError("the series needs a DatetimeIndex")
    return s.dropna().sort_index()


def range_flags(s: pd.Series, low: float | None, high: float | None) -> pd.Series:
    """True where a value is below ``low`` or above ``high`` [unit of s] (no hysteresis; NaN: False)."""
    out = pd.Series(False, index=s.index)
    if low is not None:
        out |= s < low
    if high is not None:
        out |= s > high
    return out


def spike_flags(s: pd.Series, max_change_per_s: float) -> pd.Series:
    """True at a sample whose change from the previous non-NaN sample, divided by the time step, exceeds
    ``max_change_per_s`` [unit of s / s] (as :class:`SpikeDetector`; repeated timestamps: False)."""
    v = _sorted_values(s)
    dt = v.index.to_series().diff().dt.total_seconds().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.abs(v.diff().to_numpy()) / dt
    flags = pd.Series(np.where(dt > 0, rate > max_change_per_s, False), index=v.index)
    flags = flags[~flags.index.duplicated(keep="last")]
    return flags.reindex(s.index, fill_value=False).astype(bool)


def flatline_flags(s: pd.Series, window_s: float, min_change: float = 0.0) -> pd.Series:
    """True at a sample where the window ``[t - window_s, t]`` ending at it holds >= 3 non-NaN samples, is fully
    observed (first sample at or before ``t - window_s``) and spans <= ``min_change`` (as
    :class:`FlatlineDetector`)."""
    v = _sorted_values(s)
    roll = v.rolling(pd.Timedelta(seconds=window_s), closed="both")
    span = roll.max() - roll.min()
    covered = (v.index - v.index[0]).total_seconds() >= window_s if len(v) else np.array([], bool)
    flags = pd.Series((roll.count() >= 3) & covered & (span <= min_change), index=v.index)
    flags = flags[~flags.index.duplicated(keep="last")]
    return flags.reindex(s.index, fill_value=False).astype(bool)


def gaps(s: pd.Series, expected_step: float | str | pd.Timedelta) -> pd.DataFrame:
    """Runs of missing samples in a series sampled every ``expected_step`` ([s], or a pandas offset like '5min').

    Returns
    -------
    DataFrame
        one row per gap: ``start`` (the last sample before it), ``end`` (the first sample after it),
        ``missing_steps`` (``round((end - start) / step) - 1``, at least 1). NaN values count as missing.
    """
    step = pd.Timedelta(seconds=expected_step) if isinstance(expected_step, (int, float)) else pd.Timedelta(
        expected_step)
    idx = _sorted_values(s).index.unique()
    if len(idx) < 2:
        return pd.DataFrame({"start": idx[:0], "end": idx[:0], "missing_steps": np.array([], dtype=int)})
    missing = np.round((idx[1:] - idx[:-1]) / step).astype(int) - 1
    sel = missing >= 1
    return pd.DataFrame({"start": idx[:-1][sel], "end": idx[1:][sel], "missing_steps": missing[sel]})
