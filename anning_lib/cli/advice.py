"""``anning advice``: energy-saving and decarbonisation advice of an enterprise, ranked by NPV and abatement cost.

With ``--json`` only JSON is printed on standard output.
"""

from __future__ import annotations

import json

import typer

from anning_lib.config import get_settings


def _jsonable(obj):
    import pandas as pd

    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, pd.DataFrame):
        return json.loads(obj.to_json(orient="records", force_ascii=False))
    return str(obj)


def _line(it: dict) -> str:
    mac = it["abatement_cost_cny_per_t"]
    return (f"  {it['rank_npv'] or '-':>2} {it['name']:<14} NPV {it['npv_cny'] / 1e4:>10,.1f} 万元  "
            f"capex {it['capex_cny'] / 1e4:>9,.1f} 万元  net {it['annual_net_cny'] / 1e4:>9,.1f} 万元/a  "
            f"CO2 {it['co2_t_a']:>10,.1f} t/a  "
            f"{'MAC ' + format(mac, ',.0f') + ' CNY/t' if mac is not None else ''}"
            f"{'' if it['recommended'] else '  (' + (it['reason'] or 'not worth it') + ')'}")


def register(app: typer.Typer) -> None:
    """Add ``anning advice`` to the command line."""

    @app.command("advice")
    def advice_cmd(enterprise: str = typer.Option(..., help="enterprise id, or 'all' (then also the park's MACC)"),
                   start: str = typer.Option(None, help="first local day YYYY-MM-DD (default: up to the last "
                                                         "three complete months)"),
                   end: str = typer.Option(None, help="day after the last, YYYY-MM-DD"),
                   as_json: bool = typer.Option(False, "--json", help="print the advice as JSON"),
                   refresh: bool = typer.Option(True, help="bring the period's 15-minute rollups up to date first")):
        """Advice (节能优化建议): each measure sized and valued from the enterprise's data, best NPV first."""
        import pandas as pd

        from anning_lib.advice.engine import advise, macc
        from anning_lib.errors import AnningError
        from anning_lib.park import load_park
        from anning_lib.store.engine import check_schema, make_engine

        settings = get_settings()
        engine, park = make_engine(settings.database_url), load_park(settings.park_path)
        check_schema(engine)
        tz = park.meta.site.timezone
        bounds = [pd.Timestamp(x, tz=tz) if x else None for x in (start, end)]
        ids = [e.id for e in park.enterprises] if enterprise == "all" else [enterprise]
        if enterprise != "all" and enterprise not in {e.id for e in park.enterprises}:
            raise AnningError(f"enterprise: unknown enterprise {enterprise!r}")
        out = [advise(engine, park, eid, *bounds, refresh=refresh) for eid in ids]
        curve = macc(out) if len(out) > 1 else None
        if as_json:
            doc = out[0] if curve is None else {"enterprises": out, "macc": curve}
            typer.echo(json.dumps(doc, ensure_ascii=False, indent=2, default=_jsonable))
            return
        for a in out:
            typer.echo(f"{a['enterprise_id']}: {a['start']:%Y-%m-%d}..{a['end']:%Y-%m-%d} ({a['days']:.0f} days, "
                       f"scaled to a year), tariff {a['prices']['tariff']}, discount rate {a['discount_rate']:.0%}, "
                       f"catalogue {a['catalogue_version']}")
            b = a.get("benchmark")
            if b and b.get("value") is not None:
                typer.echo(f"  benchmark: {b['product']} {b['indicator']} {b['value']:,.1f} {b['unit']} "
                           f"({b['position']}; limit {b['levels'].get('limit')}, grade 1 {b['levels'].get('grade1')}; "
                           f"counted: {b['boundary']})")
            for it in a["measures"]:
                typer.echo(_line(it))
        if curve is not None:
            typer.echo(f"park MACC: {len(curve)} measures abate {curve['co2_t_a'].sum():,.0f} tCO2/a")
