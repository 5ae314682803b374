"""Activity data from the meters: energy and material flows of an enterprise integrated over a period.

Read from the store's 15-minute rollups (refreshed for the enterprise's points first): an amount is
Σ mean × 0.25 h over the quarter-hours of ``[start, end)``. Which points feed which activity:

===================  ==================================================  ================================
activity             points                                              unit
===================  ==================================================  ================================
electricity          the main meter's ``p_kw`` (net purchased: import    kWh
                     minus export, as the guidelines' 净购入电力)
pv_self_use          ``p_kw`` of the enterprise's PV (behind the meter)  kWh
fuel                 ``gas_nm3_h`` of process lines (natural gas) and    Nm3
                     boilers (their ``fuel`` parameter)
production           ``production_t_h`` of the product lines             t
                     (``product_devices`` of the enterprise)
cems                 ``co2_t_h`` of carbon monitors                      t CO2
===================  ==================================================  ================================

Every activity names its points and its coverage (quarter-hours with data / quarter-hours in the period).
"""

from __future__ import annotations

import pandas as pd
from sqlalchemy.engine import Engine

from anning_lib.carbon.accounting import Activity
from anning_lib.errors import CarbonError
from anning_lib.park.schema import Park, point_tag
from anning_lib.store.timeseries import read_series, refresh_rollups

QUARTER_H = 0.25


def metered_points(park: Park, enterprise_id: str) -> list[tuple[str, str, str, list[str]]]:
    """``(kind, item, unit, tags)`` of every metered activity of an enterprise (pure)."""
    ent = park.enterprise(enterprise_id)
    out = []
    main = [d for d in ent.devices if d.type == "main_meter"]
    out.append(("electricity", "electricity", "kWh", [point_tag(d.id, "p_kw") for d in main]))
    pv = [point_tag(d.id, "p_kw") for d in ent.devices if d.type == "pv"]
    if pv:
        out.append(("pv_self_use", "electricity", "kWh", pv))
    fuels: dict[str, list[str]] = {}
    for d in ent.devices:
        if any(p.id == "gas_nm3_h" for p in d.points):
            fuel = d.p.fuel if d.type == "boiler" else "natural_gas"
            fuels.setdefault(fuel, []).append(point_tag(d.id, "gas_nm3_h"))
    out += [("fuel", fuel, "Nm3", tags) for fuel, tags in sorted(fuels.items())]
    prod = [point_tag(d.id, "production_t_h") for d in ent.product_lines()]
    if prod:
        out.append(("production", "product", "t", prod))
    cems = [point_tag(d.id, "co2_t_h") for d in ent.devices if d.type == "carbon_monitor"]
    if cems:
        out.append(("cems", "co2", "t", cems))
    return out


def integrate_quarters(means: pd.DataFrame) -> tuple[float, int]:
    """Σ over columns and quarter-hours of mean × 0.25 h, and the number of quarter-hours with data (pure)."""
    return float(means.sum(skipna=True).sum() * QUARTER_H), int(means.notna().any(axis=1).sum())


def metered_activities(engine: Engine, park: Park, enterprise_id: str, start: pd.Timestamp,
                       end: pd.Timestamp, tz: str = "Asia/Shanghai", *,
                       refresh: bool = True) -> tuple[list[Activity], float]:
    """The metered activities of ``enterprise_id`` over ``[start, end)`` and their coverage: the smallest share of
    the period's quarter-hours with data among them [-].

    With ``refresh`` (accounting) the period's rollups are recomputed first; a reader that must not write (a
    portal page) passes False and reads the rollups as the gateway left them (at most a minute behind).

    Raises
    ------
    CarbonError
        if the enterprise has no metered data at all in the period (dates in ``tz``).
    """
    specs = metered_points(park, enterprise_id)
    tags = [t for _k, _i, _u, ts in specs for t in ts]
    if refresh:
        refresh_rollups(engine, start, end, tags=tags)
    means = read_series(engine, tags, start, end, resolution="15min", tz="UTC")
    expected = int((end - start) / pd.Timedelta("15min"))
    if not means.notna().any().any():
        s, e = start.tz_convert(tz), end.tz_convert(tz) - pd.Timedelta("1ns")
        raise CarbonError(f"period: no metered data for enterprise {enterprise_id} from {s:%Y-%m-%d} to "
                          f"{e:%Y-%m-%d} (run the backfill or the gateway first)")
    out, coverage = [], 1.0
    for kind, item, unit, ts in specs:
        amount, n = integrate_quarters(means[ts])
        src = f"metered: {', '.join(ts)} (15-min means, {n:,d}/{expected:,d} quarter-hours)"
        out.append(Activity(kind, item, amount, unit, src))
        coverage = min(coverage, n / expected if expected else 0.0)
    return out, coverage
