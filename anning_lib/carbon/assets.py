"""Carbon assets: the allowance ledger of an enterprise (CEA and CCER), its holdings, the compliance position and a
projection of the year-end position from the year so far.

The ledger (table ``carbon_ledger``) is a list of *movements* for one compliance year, each a positive quantity
[t CO2] whose ``kind`` gives its sign:

============  ===========  ====================================================================
kind          sign         meaning
============  ===========  ====================================================================
allocated     +            allowances allocated by the authority (CEA only; CCERs are issued for
                           reductions and bought, never allocated)
bought        +            bought on a market, at ``price_cny_per_t`` [CNY/t] (required)
sold          -            sold on a market, at ``price_cny_per_t`` [CNY/t] (required)
surrendered   -            given up to the authority against the year's verified emissions
============  ===========  ====================================================================

This module holds the pure functions (:func:`validate_movement`, :func:`holdings`, :func:`compliance_position`,
:func:`project_year_end`); :mod:`anning_lib.carbon.ledger` is the thin store I/O around them
(``record_movement``, ``read_ledger``, ``position``). A refused movement raises :class:`~anning_lib.errors.CarbonError` naming the field and
its value, and changes nothing in the store.

Compliance years are calendar years in the park's time zone (Asia/Shanghai); one allowance covers 1 t CO2.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections.abc import Mapping

import numpy as np
import pandas as pd

from anning_lib.errors import CarbonError, StoreError
from anning_lib.store.types import to_utc

INSTRUMENTS = ("CEA", "CCER")
"""National carbon emission allowance (全国碳排放配额) and China certified emission reduction (核证自愿减排量)."""
KINDS = ("allocated", "bought", "sold", "surrendered")
TRADE_KINDS = ("bought", "sold")
YEAR_RANGE = (2000, 2100)
"""Accepted compliance years (inclusive)."""
CCER_CAP_FRAC = 0.05
"""CCER usable for compliance as a fraction of the allowances due [-]: 《碳排放权交易管理办法（试行）》 (MEE order
No. 19, 2021) article 29 (抵销比例不得超过应清缴碳排放配额的5%); REFERENCE.md "Carbon market"."""
MARKET_MAX_LEN = 32
"""Length of ``carbon_ledger.market``."""
TZ = "Asia/Shanghai"
LEDGER_COLUMNS = ("id", "enterprise_id", "year", "instrument", "kind", "quantity_t", "price_cny_per_t", "ts",
                  "market", "note")
_MOVEMENT_FIELDS = ("year", "instrument", "kind", "quantity_t", "price_cny_per_t", "ts", "market", "note")


# ------------------------------------------------------------------------------------------------ checks
def _number(field: str, value: object) -> float:
    """``value`` as a finite float, else CarbonError naming ``field`` (bools and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CarbonError(f"{field}: expected a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise CarbonError(f"{field}: must be a finite number, got {value!r}")
    return x


def _year(value: object, field: str = "year") -> int:
    lo, hi = YEAR_RANGE
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= int(value) <= hi:
        raise CarbonError(f"{field}: expected an integer year in {lo}..{hi}, got {value!r}")
    return int(value)


def _instant(value: object, field: str = "ts") -> dt.datetime:
    """An aware instant (datetime, pandas.Timestamp or ISO string with offset) in UTC."""
    try:
        ts = pd.Timestamp(value) if isinstance(value, str) else value
        return to_utc(ts, field)
    except (StoreError, ValueError) as err:
        raise CarbonError(f"{field}: expected a time-zone-aware instant, got {value!r} ({err})") from None


def _text(m: Mapping, field: str, max_len: int | None = None) -> str:
    value = m.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CarbonError(f"{field}: expected text, got {value!r}")
    if max_len is not None and len(value) > max_len:
        raise CarbonError(f"{field}: at most {max_len} characters, got {value!r}")
    return value


def validate_movement(m: Mapping) -> dict:
    """Check one ledger movement and return it normalised (pure).

    Parameters
    ----------
    m : mapping
        ``year`` (int, 2000..2100), ``instrument`` (``"CEA"`` or ``"CCER"``), ``kind`` (``allocated``,
        ``bought``, ``sold``, ``surrendered``), ``quantity_t`` [t CO2] > 0 and finite; optional
        ``price_cny_per_t`` [CNY/t] >= 0 (required for ``bought`` and ``sold``), ``ts`` (aware instant of the
        movement; None = when it is recorded), ``market`` (text, at most 32 characters), ``note`` (text).

    Returns
    -------
    dict
        Every field of ``m`` above: numbers as float/int, ``ts`` an aware UTC datetime or None, ``market`` and
        ``note`` as text ("" when absent), ``price_cny_per_t`` a float or None.

    Raises
    ------
    CarbonError
        naming the first bad field and its value: an unknown field, a missing one, an unknown instrument or
        kind, a CCER ``allocated``, a quantity not > 0, a negative or missing trade price, a naive ``ts``.
    """
    if not isinstance(m, Mapping):
        raise CarbonError(f"movement: expected a mapping of fields, got {m!r:.80}")
    for key in m:
        if key not in _MOVEMENT_FIELDS:
            raise CarbonError(f"{key}: unknown movement field (value {m[key]!r}); "
                              f"fields: {', '.join(_MOVEMENT_FIELDS)}")
    for key in ("year", "instrument", "kind", "quantity_t"):
        if m.get(key) is None:
            raise CarbonError(f"{key}: missing in movement {dict(m)!r:.120}")
    year = _year(m["year"])
    instrument, kind = m["instrument"], m["kind"]
    if not isinstance(instrument, str) or instrument not in INSTRUMENTS:
        raise CarbonError(f"instrument: expected one of {', '.join(INSTRUMENTS)}, got {instrument!r}")
    if not isinstance(kind, str) or kind not in KINDS:
        raise CarbonError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if instrument == "CCER" and kind == "allocated":
        raise CarbonError("kind: 'allocated' is not possible for instrument 'CCER' (CCERs are issued for "
                          "reductions and bought, never allocated)")
    quantity = _number("quantity_t", m["quantity_t"])
    if quantity <= 0:
        raise CarbonError(f"quantity_t: must be > 0 t (the kind gives the sign), got {m['quantity_t']!r}")
    price = m.get("price_cny_per_t")
    if price is None and kind in TRADE_KINDS:
        raise CarbonError(f"price_cny_per_t: required for a '{kind}' movement, got None")
    if price is not None:
        price = _number("price_cny_per_t", price)
        if price < 0:
            raise CarbonError(f"price_cny_per_t: must be >= 0 CNY/t, got {m['price_cny_per_t']!r}")
    ts = None if m.get("ts") is None else _instant(m["ts"])
    return {"year": year, "instrument": instrument, "kind": kind, "quantity_t": quantity,
            "price_cny_per_t": price, "ts": ts, "market": _text(m, "market", MARKET_MAX_LEN),
            "note": _text(m, "note")}


def _checked_ledger(ledger: pd.DataFrame) -> pd.DataFrame:
    """Columns instrument, kind, quantity_t, price_cny_per_t (NaN where absent), checked row by row."""
    if not isinstance(ledger, pd.DataFrame):
        raise CarbonError(f"ledger: expected a pandas DataFrame, got {type(ledger).__name__}")
    for col in ("instrument", "kind", "quantity_t"):
        if col not in ledger.columns:
            raise CarbonError(f"ledger: missing column {col!r} (has {list(ledger.columns)})")
    df = pd.DataFrame({"instrument": ledger["instrument"].astype(object), "kind": ledger["kind"].astype(object),
                       "quantity_t": pd.to_numeric(ledger["quantity_t"], errors="coerce").astype(float),
                       "price_cny_per_t": (pd.to_numeric(ledger["price_cny_per_t"], errors="coerce").astype(float)
                                           if "price_cny_per_t" in ledger.columns else np.nan)},
                      index=ledger.index)
    checks = [
        ("instrument", ~df["instrument"].isin(INSTRUMENTS), f"expected one of {', '.join(INSTRUMENTS)}"),
        ("kind", ~df["kind"].isin(KINDS), f"expected one of {', '.join(KINDS)}"),
        ("quantity_t", ~(np.isfinite(df["quantity_t"]) & (df["quantity_t"] > 0)), "must be a finite number > 0"),
        ("price_cny_per_t", df["kind"].isin(TRADE_KINDS) & ~(np.isfinite(df["price_cny_per_t"])
                                                             & (df["price_cny_per_t"] >= 0)),
         "a trade needs a finite price >= 0"),
    ]
    for col, bad, reason in checks:
        if bad.any():
            row = bad.idxmax()
            raise CarbonError(f"ledger.{col}: {reason}, got {ledger.loc[row, col] if col in ledger else None!r} "
                              f"in row {row!r}")
    return df


# ------------------------------------------------------------------------------------------------ pure
def holdings(ledger: pd.DataFrame) -> dict[str, dict]:
    """Holdings per instrument from ledger movements (pure).

    Parameters
    ----------
    ledger : pandas.DataFrame
        One row per movement with columns ``instrument``, ``kind``, ``quantity_t`` [t CO2] and (for trades)
        ``price_cny_per_t`` [CNY/t], as :func:`read_ledger` returns. Every row counts: pass one enterprise's
        movements of one compliance year.

    Returns
    -------
    dict
        ``{"CEA": {...}, "CCER": {...}}``, each with ``allocated``, ``bought``, ``sold``, ``surrendered`` [t CO2]
        (sums of quantities), ``balance_t`` = allocated + bought - sold - surrendered [t CO2],
        ``purchase_cost_cny`` = Σ bought q·p [CNY], ``sale_proceeds_cny`` = Σ sold q·p [CNY],
        ``avg_purchase_price_cny_per_t`` = purchase cost / bought [CNY/t] (None if nothing was bought) and
        ``net_trade_cash_cny`` = proceeds - cost [CNY] (positive: money came in).

    Raises
    ------
    CarbonError
        if a column is missing or a row has an unknown instrument or kind, a quantity not > 0 or a trade
        without a price >= 0 (the message names the column, value and row label).
    """
    df = _checked_ledger(ledger)
    value = df["quantity_t"] * df["price_cny_per_t"]
    out: dict[str, dict] = {}
    for instrument in INSTRUMENTS:
        mine = df["instrument"] == instrument
        t = {k: float(df.loc[mine & (df["kind"] == k), "quantity_t"].sum()) for k in KINDS}
        t["balance_t"] = t["allocated"] + t["bought"] - t["sold"] - t["surrendered"]
        cost = float(value[mine & (df["kind"] == "bought")].sum())
        proceeds = float(value[mine & (df["kind"] == "sold")].sum())
        t["purchase_cost_cny"] = cost
        t["sale_proceeds_cny"] = proceeds
        t["avg_purchase_price_cny_per_t"] = cost / t["bought"] if t["bought"] > 0 else None
        t["net_trade_cash_cny"] = proceeds - cost
        out[instrument] = t
    return out


def compliance_position(ledger: pd.DataFrame, verified_co2_t: float, price_cny_per_t: float,
                        ccer_cap_frac: float = CCER_CAP_FRAC) -> dict:
    """Allowances held against verified emissions: surplus (or deficit) and its value (pure).

    With ``due`` = verified emissions (one allowance per t CO2) and ``cap`` = ``ccer_cap_frac`` × due::

        ccer_usable_t   = min(max(CCER balance, 0), cap - CCER surrendered)    # cap not yet used
        ccer_unusable_t = max(CCER balance, 0) - ccer_usable_t
        outstanding_t   = max(due - CEA surrendered - min(CCER surrendered, cap), 0)
        available_t     = CEA balance + ccer_usable_t
        surplus_t       = available_t - outstanding_t                          # < 0: deficit
        value_cny       = surplus_t × price_cny_per_t

    With nothing surrendered yet this is available = CEA balance + min(CCER balance, cap × verified) and
    surplus = available - verified. Surrendered units count against the emissions they were given up for
    (CCER only up to the cap), so recording the surrender does not change the surplus.

    Parameters
    ----------
    ledger : pandas.DataFrame
        Movements of one enterprise and one compliance year (see :func:`holdings`).
    verified_co2_t : float
        Verified (or accounted) emissions of the year [t CO2], >= 0.
    price_cny_per_t : float
        Price to value the surplus or deficit at [CNY/t], >= 0 (e.g. the latest CEA close).
    ccer_cap_frac : float
        Cap on CCER offsets as a fraction of the allowances due [-], 0..1.

    Returns
    -------
    dict
        ``verified_co2_t``, ``cea_balance_t``, ``ccer_balance_t``, ``ccer_cap_t``, ``ccer_usable_t``,
        ``ccer_unusable_t``, ``surrendered_t`` (counted), ``outstanding_t``, ``available_t``, ``surplus_t``
        [t CO2]; ``status`` (``surplus``, ``deficit`` or ``balanced``), ``price_cny_per_t`` [CNY/t],
        ``value_cny`` [CNY] (negative: the cost of covering the deficit), ``ccer_cap_frac``, ``formula`` (text
        with the numbers) and ``holdings`` (:func:`holdings`).

    Raises
    ------
    CarbonError
        for a bad ledger (see :func:`holdings`), a ledger of several years, or a negative or non-finite
        emission, price or cap.

    References
    ----------
    .. [1] 生态环境部《碳排放权交易管理办法（试行）》(部令第19号, 2021), 第二十九条: CCER offsets at most 5 % of
       the allowances due (应清缴碳排放配额).
    .. [2] REFERENCE.md, "Carbon market": offsets capped at 5 % of allowances due.
    """
    verified = _non_negative("verified_co2_t", verified_co2_t)
    price = _non_negative("price_cny_per_t", price_cny_per_t)
    cap_frac = _non_negative("ccer_cap_frac", ccer_cap_frac)
    if cap_frac > 1:
        raise CarbonError(f"ccer_cap_frac: must be a fraction in 0..1, got {ccer_cap_frac!r}")
    if isinstance(ledger, pd.DataFrame) and "year" in ledger.columns and ledger["year"].nunique() > 1:
        raise CarbonError(f"ledger.year: movements of several years {sorted(ledger['year'].unique())}; "
                          "pass one compliance year")
    h = holdings(ledger)
    cea, ccer = h["CEA"], h["CCER"]
    cap_t = cap_frac * verified
    ccer_surrendered_t = min(ccer["surrendered"], cap_t)
    ccer_held_t = max(ccer["balance_t"], 0.0)
    ccer_usable_t = min(ccer_held_t, cap_t - ccer_surrendered_t)
    surrendered_t = cea["surrendered"] + ccer_surrendered_t
    outstanding_t = max(verified - surrendered_t, 0.0)
    available_t = cea["balance_t"] + ccer_usable_t
    surplus_t = available_t - outstanding_t
    value_cny = surplus_t * price
    status = "surplus" if surplus_t > 0 else "deficit" if surplus_t < 0 else "balanced"
    formula = (f"surplus = CEA balance {cea['balance_t']:,.3f} t + usable CCER {ccer_usable_t:,.3f} t "
               f"(cap {cap_frac:g} × {verified:,.3f} t) - outstanding {outstanding_t:,.3f} t "
               f"= {surplus_t:,.3f} t; value = {surplus_t:,.3f} t × {price:g} CNY/t = {value_cny:,.2f} CNY")
    return {"verified_co2_t": verified, "cea_balance_t": cea["balance_t"], "ccer_balance_t": ccer["balance_t"],
            "ccer_cap_t": cap_t, "ccer_usable_t": ccer_usable_t, "ccer_unusable_t": ccer_held_t - ccer_usable_t,
            "surrendered_t": surrendered_t, "outstanding_t": outstanding_t, "available_t": available_t,
            "surplus_t": surplus_t, "status": status, "price_cny_per_t": price, "value_cny": value_cny,
            "ccer_cap_frac": cap_frac, "formula": formula, "holdings": h}


def _non_negative(field: str, value: object) -> float:
    x = _number(field, value)
    if x < 0:
        raise CarbonError(f"{field}: must be >= 0, got {value!r}")
    return x


def _months(series: pd.Series, year: int, field: str) -> pd.Series:
    """Monthly values [t CO2] indexed by month number 1..12 (NaN months dropped), checked to lie in ``year``.

    The index may hold month numbers or timestamps (naive = local time; aware ones are converted to
    Asia/Shanghai) or monthly periods.
    """
    if not isinstance(series, pd.Series):
        raise CarbonError(f"{field}: expected a pandas Series, got {type(series).__name__}")
    s = series.dropna()
    idx = s.index.to_timestamp() if isinstance(s.index, pd.PeriodIndex) else s.index
    if isinstance(idx, pd.DatetimeIndex):
        local = idx.tz_convert(TZ) if idx.tz is not None else idx
        if (local.year != year).any():
            raise CarbonError(f"{field}: month {local[local.year != year][0]} is not in {year}")
        months = list(local.month)
    else:
        months = list(idx)
        bad = [m for m in months if isinstance(m, bool) or not isinstance(m, numbers.Integral) or not 1 <= m <= 12]
        if bad:
            raise CarbonError(f"{field}: month index must be 1..12 or month timestamps, got {bad[0]!r}")
    if len(set(months)) != len(months):
        dup = next(m for m in months if months.count(m) > 1)
        raise CarbonError(f"{field}: month {int(dup)} appears more than once")
    values = [_non_negative(f"{field}[{int(m)}]", v) for m, v in zip(months, s.to_numpy().tolist())]
    return pd.Series(values, index=pd.Index([int(m) for m in months], name="month"), name="co2_t").sort_index()


def project_year_end(monthly_co2_t: pd.Series, year: int, last_year: pd.Series | None = None) -> dict:
    """Project the year's emissions from the months observed so far (pure).

    Two explainable methods, with ``ytd`` = Σ observed months and ``n`` = number of months observed:

    * linear: ``year_end = ytd × 12 / n``;
    * seasonal (only with ``last_year``): ``year_end = ytd + Σ last year's missing months × (ytd / Σ last
      year's observed months)``, i.e. the rest of the year follows last year's monthly pattern scaled by how
      this year compares with the same months of last year.

    Parameters
    ----------
    monthly_co2_t : pandas.Series
        Emissions per month of ``year`` [t CO2]; index = month number 1..12 or month timestamps/periods (aware
        timestamps are read in Asia/Shanghai). NaN months count as not observed.
    year : int
        The year projected.
    last_year : pandas.Series, optional
        Emissions per month of ``year - 1`` [t CO2], same index forms; it must hold every month of the year.

    Returns
    -------
    dict
        ``year``, ``months_observed``, ``months_missing`` (lists of month numbers), ``ytd_co2_t`` [t CO2],
        ``linear`` and ``seasonal`` (None without ``last_year``): each ``{"year_end_co2_t": float or None,
        "formula": str}``. The seasonal ``year_end_co2_t`` is None, with the reason in ``formula``, when last
        year's observed months sum to 0 t.

    Raises
    ------
    CarbonError
        if no month is observed, a month is repeated, out of 1..12 or of another year, a value is negative,
        or ``last_year`` misses a month.
    """
    year = _year(year)
    cur = _months(monthly_co2_t, year, "monthly_co2_t")
    if cur.empty:
        raise CarbonError(f"monthly_co2_t: no month of {year} observed; at least one is needed")
    n, ytd = len(cur), float(cur.sum())
    observed = [int(m) for m in cur.index]
    missing = [m for m in range(1, 13) if m not in observed]
    linear = ytd * 12 / n
    out = {"year": year, "months_observed": observed, "months_missing": missing, "ytd_co2_t": ytd,
           "linear": {"year_end_co2_t": linear,
                      "formula": f"ytd × 12 / n = {ytd:,.3f} t × 12 / {n} = {linear:,.3f} t"},
           "seasonal": None}
    if last_year is not None:
        out["seasonal"] = _seasonal(cur, _months(last_year, year - 1, "last_year"), missing, ytd)
    return out


def _seasonal(cur: pd.Series, prev: pd.Series, missing: list[int], ytd: float) -> dict:
    absent = [m for m in range(1, 13) if m not in prev.index]
    if absent:
        raise CarbonError(f"last_year: month {absent[0]} is missing; the seasonal method needs all 12 months")
    base = float(prev.loc[list(cur.index)].sum())
    rest = float(prev.loc[missing].sum())
    if base <= 0:
        return {"year_end_co2_t": None,
                "formula": "undefined: last year's observed months sum to 0 t, so there is no ratio to scale by"}
    year_end = ytd + rest * (ytd / base)
    return {"year_end_co2_t": year_end,
            "formula": (f"ytd + Σ last year's missing months × (ytd / last year's same months) = {ytd:,.3f} t + "
                        f"{rest:,.3f} t × ({ytd:,.3f} / {base:,.3f}) = {year_end:,.3f} t")}
