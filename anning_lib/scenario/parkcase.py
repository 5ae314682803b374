"""The park as a scenario sees it: per enterprise its gross load, its PV, its fuels; per billing connection its
storages and tariff. Built from the park model and a history (:func:`base_case`), changed by
:mod:`anning_lib.scenario.changes`, run by :mod:`anning_lib.scenario.simulate`.

Electricity (signs of ``docs/glossary.md``, the park simulator's network)::

    gross_e   = main_e.p_kw + Σ pv_e.p_kw + Σ bess_e.p_kw        (load behind the main meter, its losses included)
    main_e    = gross_e - pv_e - bess_e                          (what the enterprise's meter imports)
    net_park  = Σ main_e - park pv - Σ park bess
    grid      = net_park + loss_frac × |net_park|                (the 110 kV meter; loss_frac of the park model)

so a scenario re-runs the storages and PV on the measured gross loads; what the meters measured of the storages
is not reused, the same dispatch runs in the base case and the scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from anning_lib.dispatch.tariff import load_tariff, tariff_for
from anning_lib.park.schema import Device, Park


@dataclass(frozen=True)
class Investment:
    """What a change costs: ``capex_cny`` once, ``opex_cny_a`` a year, over ``lifetime_a`` years."""

    label: str
    capex_cny: float
    opex_cny_a: float
    lifetime_a: float
    source: str


@dataclass
class ParkCase:
    """One case of a scenario over a history (module docstring).

    Attributes
    ----------
    gross_kw : DataFrame
        per enterprise id, load behind its main meter without storage [kW].
    pv_kw : DataFrame
        per PV array (device id or a scenario's new array), generation [kW].
    pv_site : dict
        PV array -> ``"park"`` or the enterprise it sits behind.
    fuel : DataFrame
        per fuel-burning device, fuel flow [Nm3/h]; ``fuel_of`` maps it to ``(enterprise id, fuel key)``.
    storages : dict
        site (``"park"`` or enterprise id) -> storage devices behind its meter.
    tariffs : dict
        connection -> ``(Tariff, bands, multipliers)``.
    green_frac : dict
        enterprise -> share of its net purchased electricity covered by green certificates [-];
        ``green_premium`` its price [CNY/kWh].
    loss_frac : float
        the 110 kV network's loss fraction [-].
    investments : list of Investment
    """

    gross_kw: pd.DataFrame
    pv_kw: pd.DataFrame
    pv_site: dict[str, str]
    fuel: pd.DataFrame
    fuel_of: dict[str, tuple[str, str]]
    storages: dict[str, list[Device]]
    tariffs: dict[str, tuple]
    loss_frac: float
    green_frac: dict[str, float] = field(default_factory=dict)
    green_premium: dict[str, float] = field(default_factory=dict)
    investments: list[Investment] = field(default_factory=list)

    @property
    def index(self) -> pd.DatetimeIndex:
        return self.gross_kw.index

    def copy(self) -> ParkCase:
        """A deep enough copy for a change to edit."""
        return replace(self, gross_kw=self.gross_kw.copy(), pv_kw=self.pv_kw.copy(), pv_site=dict(self.pv_site),
                       fuel=self.fuel.copy(), fuel_of=dict(self.fuel_of),
                       storages={k: list(v) for k, v in self.storages.items()}, tariffs=dict(self.tariffs),
                       green_frac=dict(self.green_frac), green_premium=dict(self.green_premium),
                       investments=list(self.investments))

    def sites(self) -> list[str]:
        """Connections, enterprises first and the park last (the park meter sees the enterprises' plans)."""
        return list(self.gross_kw.columns) + ["park"]

    def pv_of(self, site: str) -> pd.Series:
        """Total PV behind ``site``'s meter [kW]."""
        cols = [c for c, s in self.pv_site.items() if s == site]
        return self.pv_kw[cols].sum(axis=1) if cols else pd.Series(0.0, index=self.index)


def _col(wide: pd.DataFrame, tag: str) -> pd.Series:
    return wide[tag] if tag in wide.columns else pd.Series(0.0, index=wide.index)


def base_case(park: Park, wide: pd.DataFrame, data_dir: Path) -> ParkCase:
    """The park as it is, over the history ``wide`` (15-minute means by point tag, :mod:`.history`) (pure but
    for reading the tariff files)."""
    gross, pv, pv_site, fuel, fuel_of, storages, tariffs = {}, {}, {}, {}, {}, {}, {}
    for e in park.enterprises:
        main = next(d for d in e.devices if d.type == "main_meter")
        own = [d for d in e.devices if d.type in ("pv", "bess")]
        gross[e.id] = _col(wide, f"{main.id}.p_kw") + sum((_col(wide, f"{d.id}.p_kw") for d in own), 0.0)
        storages[e.id] = [d for d in own if d.type == "bess"]
        tariffs[e.id] = tariff_for(e.id, data_dir)
        for d in e.devices:
            if d.type == "pv":
                pv[d.id], pv_site[d.id] = _col(wide, f"{d.id}.p_kw").clip(lower=0.0), e.id
            if any(p.id == "gas_nm3_h" for p in d.points):
                fuel[d.id] = _col(wide, f"{d.id}.gas_nm3_h").clip(lower=0.0)
                fuel_of[d.id] = (e.id, d.p.fuel if d.type == "boiler" else "natural_gas")
    for d in park.park_devices:
        if d.type == "pv":
            pv[d.id], pv_site[d.id] = _col(wide, f"{d.id}.p_kw").clip(lower=0.0), "park"
    storages["park"] = park.devices_of(None, "bess")
    tariffs["park"] = tariff_for("park", data_dir)
    grid = next(d for d in park.park_devices if d.type == "grid_meter")
    idx = wide.index
    return ParkCase(pd.DataFrame(gross, index=idx), pd.DataFrame(pv, index=idx), pv_site,
                    pd.DataFrame(fuel, index=idx), fuel_of, storages, tariffs, float(grid.p.loss_frac))


def tariff_by_id(tariff_id: str, data_dir: Path) -> tuple:
    """``(Tariff, bands, multipliers)`` of ``data_dir/tariffs/<tariff_id>.yaml``."""
    return load_tariff(Path(data_dir) / "tariffs" / f"{tariff_id}.yaml")
