"""``anning carbon``: accounts, factors, a calculator, activity import and carbon assets.

With ``--json`` a command prints only JSON on standard output; everything else goes to standard error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from anning_lib.config import get_settings
from anning_lib.errors import CarbonError

carbon_app = typer.Typer(no_args_is_help=True, help="Carbon accounting (scope 1/2/3) and carbon assets.")
factors_app = typer.Typer(no_args_is_help=True, help="The emission-factor library.")
ledger_app = typer.Typer(no_args_is_help=True, help="The carbon-asset ledger (CEA allowances, CCER).")
carbon_app.add_typer(factors_app, name="factors")
carbon_app.add_typer(ledger_app, name="ledger")


def _jsonable(obj):
    """pandas objects inside results -> plain JSON values (records, {index: value}, ISO times)."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return json.loads(obj.to_json(orient="records", date_format="iso", force_ascii=False))
    if isinstance(obj, pd.Series):
        return {str(k): v for k, v in json.loads(obj.to_json(date_format="iso", force_ascii=False)).items()}
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    return str(obj)


def _out(obj, as_json: bool, text: str) -> None:
    if as_json:
        typer.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=_jsonable))
    else:
        typer.echo(text)


def _ctx():
    from anning_lib.carbon.factors import load_factor_set
    from anning_lib.park import load_park
    from anning_lib.store.engine import check_schema, make_engine

    engine = make_engine(get_settings().database_url)
    check_schema(engine)
    return engine, load_park(), load_factor_set()


def _lines_text(r: dict) -> str:
    out = []
    for ln in r["lines"]:
        if ln["scope"] == "memo":
            out.append(f"  memo             {ln['item']:<24} {ln['activity_amount']:>14,.1f} {ln['activity_unit']:<9} "
                       f"({ln['factor_source']})")
        else:
            out.append(f"  {ln['scope']:<16} {ln['item']:<24} {ln['co2_t']:>14,.1f} tCO2   {ln['formula']}")
            out.append(f"  {'':<16} {'':<24} {'':>14}        activity: {ln['activity_source']}; "
                       f"factor: {ln['factor_source']}")
    return "\n".join(out)


def _summary(r: dict) -> str:
    t = r["totals"]
    return (f"{r.get('enterprise_id', 'park')} {r['month']} (factor set {r['factor_version']}): total "
            f"{t['total']:,.1f} tCO2 = scope 1 {t['scope1']:,.1f} + scope 2 location {t['scope2_location']:,.1f}; "
            f"scope 2 market {t['scope2_market']:,.1f}; scope 3 {t['scope3']:,.1f}")


def _partial(r: dict) -> str:
    if not r.get("partial"):
        return ""
    return f"  (PARTIAL: meters cover {r['coverage_frac']:.0%} of the month)"


@carbon_app.command("compute")
def compute(
    month: str = typer.Option(..., help="local month YYYY-MM"),
    enterprise: str = typer.Option(None, help="enterprise id (default: every enterprise and the park total)"),
    region: str = typer.Option("yunnan", help="grid region for location-based scope 2"),
    residual: str = typer.Option("location", help="market-based residual factor: location | national_residual"),
    as_json: bool = typer.Option(False, "--json", help="print JSON only"),
):
    """Account a month from the meters and the entered activity data; store it under the factor version."""
    from anning_lib.carbon.compute import compare, compute_enterprise, compute_park
    from anning_lib.carbon.records import sync_factors

    engine, park, fs = _ctx()
    sync_factors(engine, fs)
    kw = {"region": region.lower(), "residual": residual, "tz": get_settings().timezone}
    if enterprise:
        try:
            park.enterprise(enterprise)
        except KeyError:
            raise CarbonError(f"--enterprise: unknown enterprise {enterprise!r}") from None
        r = compute_enterprise(engine, park, fs, enterprise, month, **kw)
        r["change"] = compare(engine, enterprise, month, fs.version, kw["tz"])
        change = "; ".join(f"{k}: {v['change_frac']:+.1%} vs {v['previous_month']}" for k, v in r["change"].items() if v)
        _out(r, as_json, _summary(r) + (f"\n  {change}" if change else "") + _partial(r) + "\n" + _lines_text(r))
        return
    r = compute_park(engine, park, fs, month, **kw)
    text = "\n".join([_summary(e) + _partial(e) for e in r["enterprises"]] + [_summary(r)])
    _out(r, as_json, text)


@carbon_app.command("summary")
def summary_cmd(year: int = typer.Option(..., help="local calendar year"),
                version: str = typer.Option(None, help="factor-set version (default: the newest used that year)"),
                as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Year totals by enterprise, sector and park from the stored monthly accounts."""
    from anning_lib.carbon.compute import summary
    from anning_lib.carbon.records import year_lines

    engine, park, _fs = _ctx()
    lines = year_lines(engine, year, version, get_settings().timezone)
    tables = summary(lines, park)
    if as_json:
        typer.echo(json.dumps({"year": year, "factor_version": lines["factor_version"].iloc[0] if len(lines) else
                               version, **{k: json.loads(v.to_json(orient="index")) for k, v in tables.items()}},
                              ensure_ascii=False, indent=2))
        return
    for name, table in tables.items():
        typer.echo(f"\n{name}\n{table.round(1).to_string()}")


@factors_app.command("list")
def factors_list(kind: str = typer.Option(None, help="fuel | grid | heat | process | scope3"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Every factor of the current factor set with its source."""
    from anning_lib.carbon.factors import load_factor_set

    rows = load_factor_set().rows()
    if kind:
        rows = rows[rows["kind"] == kind]
    if as_json:
        typer.echo(rows.to_json(orient="records", force_ascii=False, indent=2))
        return
    for r in rows.itertuples():
        typer.echo(f"{r.key:<36} {r.region:<10} {r.value:>12.6g} {r.unit:<16} {r.version}  {r.source}, {r.clause}")


def _calculator_activity(kind: str, amount: float, unit: str, fs):
    """The activity a calculator call describes: ``kind`` is a fuel, material, scope 3 or heat key, or electricity."""
    from anning_lib.carbon.accounting import Activity

    if kind == "electricity":
        return Activity("electricity", "electricity", amount, unit, "calculator")
    if kind == "heat":
        kind = "purchased_heat"
    for what, lookup in (("fuel", fs.fuel), ("process", fs.process), ("scope3", fs.scope3), ("heat", fs.heat)):
        try:
            lookup(kind)
        except CarbonError:
            continue
        return Activity(what, kind, amount, unit, "calculator")
    rows = fs.rows()
    known = sorted(k.split(":", 1)[-1] for k in rows.loc[rows["kind"] != "grid", "key"])
    raise CarbonError(f"--kind: unknown kind {kind!r} (electricity, heat or one of: {', '.join(known)})")


@carbon_app.command("activity")
def activity(
    kind: str = typer.Option(..., help="electricity, a fuel (natural_gas, diesel, ...), a material, heat or scope 3 key"),
    amount: float = typer.Option(..., help="the amount, in --unit"),
    unit: str = typer.Option(..., help="Nm3, m3, t, kg, GJ, kWh, MWh, t*km ..."),
    region: str = typer.Option("yunnan", help="electricity: grid region (yunnan, national, ...)"),
    year: int = typer.Option(None, help="electricity: data year of the grid factor (default the latest)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON only"),
):
    """Calculator: tCO2 of one activity and the factors used, with their sources."""
    from anning_lib.carbon.accounting import account
    from anning_lib.carbon.factors import load_factor_set

    fs = load_factor_set()
    if not math.isfinite(amount) or amount < 0:
        raise CarbonError(f"--amount: must be a finite number >= 0, got {amount}")
    lines = account([_calculator_activity(kind, amount, unit, fs)], fs, region=region.lower(), data_year=year)
    main = [ln for ln in lines if ln.scope in ("scope1", "scope2_location", "scope3")]
    co2 = sum(ln.co2_t for ln in main)
    obj = {"kind": kind, "amount": amount, "unit": unit, "co2_t": co2, "factor_version": fs.version,
           "lines": [ln.__dict__ for ln in main]}
    text = "\n".join(f"{co2:,.4f} tCO2  {ln.formula}\n  factor: {ln.factor_source}" for ln in main)
    _out(obj, as_json, text)


@carbon_app.command("import")
def import_activity(file: Path = typer.Argument(..., help="CSV or Excel activity file (see `carbon template`)")):
    """Load entered activity data (fuels, materials, heat, green certificates, output value ...); a bad row refuses
    the whole file, naming its line, column and value."""
    from anning_lib.carbon.activity_file import import_activity_file

    engine, park, fs = _ctx()
    n = import_activity_file(engine, file, fs, park)
    typer.echo(f"{file}: {n} activity records stored")


@carbon_app.command("template")
def template(path: Path = typer.Argument(Path("activity_template.csv"), help="where to write the template")):
    """Write the activity-data template (CSV, UTF-8 with BOM for Excel)."""
    from anning_lib.carbon.activity_file import write_template

    write_template(path)
    typer.echo(f"template written to {path}")


@ledger_app.command("add")
def ledger_add(
    enterprise: str = typer.Option(...), year: int = typer.Option(..., help="compliance year"),
    instrument: str = typer.Option("CEA", help="CEA or CCER"),
    kind: str = typer.Option(..., help="allocated | bought | sold | surrendered"),
    quantity: float = typer.Option(..., help="tCO2 (> 0)"),
    price: float = typer.Option(None, help="CNY/t (trades)"),
    note: str = typer.Option("", help="free text"),
):
    """Record one movement of carbon assets."""
    import datetime as dt

    from anning_lib.carbon.ledger import record_movement

    engine, _park, _fs = _ctx()
    m = {"year": year, "instrument": instrument, "kind": kind, "quantity_t": quantity,
         "price_cny_per_t": price, "ts": dt.datetime.now(dt.UTC), "note": note}
    row = record_movement(engine, enterprise, m)
    typer.echo(f"ledger row {row}: {enterprise} {year} {instrument} {kind} {quantity:,.1f} t")


@ledger_app.command("list")
def ledger_list(enterprise: str = typer.Option(...), year: int = typer.Option(...),
                as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """The movements of one enterprise and year."""
    from anning_lib.carbon.ledger import read_ledger

    engine, _park, _fs = _ctx()
    df = read_ledger(engine, enterprise, year)
    _out(json.loads(df.to_json(orient="records", date_format="iso")), as_json, df.to_string(index=False))


@carbon_app.command("position")
def position_cmd(enterprise: str = typer.Option(...), year: int = typer.Option(...),
                 price: float = typer.Option(..., help="allowance price to value the surplus or deficit [CNY/t]"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON only")):
    """Compliance position: allowances against emissions, surplus or deficit and its value, year-end projection."""
    from anning_lib.carbon.ledger import position

    engine, _park, _fs = _ctx()
    p = position(engine, enterprise, year, price)
    pos, src = p["position"], p["verified_source"]
    text = [f"{enterprise} {year}: emissions {p['verified_co2_t']:,.1f} t (direct, from {src.get('from')}"
            + (f", {src['covered_frac']:.0%} of the year" if "covered_frac" in src else "") + ")",
            f"  {'surplus' if pos['surplus_t'] >= 0 else 'DEFICIT'} {abs(pos['surplus_t']):,.1f} t, worth "
            f"{abs(pos['value_cny']):,.0f} CNY at {price:g} CNY/t", f"  {pos.get('formula', '')}"]
    for method, proj in (p.get("projected_position") or {}).items():
        if proj:
            text.append(f"  year end ({method}): {'surplus' if proj['surplus_t'] >= 0 else 'DEFICIT'} "
                        f"{abs(proj['surplus_t']):,.1f} t, {abs(proj['value_cny']):,.0f} CNY")
    _out(p, as_json, "\n".join(text))
