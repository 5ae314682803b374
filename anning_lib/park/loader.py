"""Read and check the park model file.

Checks run in two passes: the pydantic schema (types, ranges, units against ``data/units.yaml``), then the
cross-references a schema cannot see (unique ids, buildings, carriers, device parameters by type, one main
meter per enterprise). Every problem is reported as ``field.path[i]: reason`` naming the bad value.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from anning_lib.errors import ParkModelError
from anning_lib.park.catalogue import Catalogue, load_catalogue
from anning_lib.park.schema import PARAMS_BY_TYPE, Park


def format_loc(loc: tuple) -> str:
    """``('enterprises', 3, 'devices', 1, 'unit')`` -> ``'enterprises[3].devices[1].unit'``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def problems_from(err: ValidationError, prefix: str = "") -> list[tuple[str, object, str]]:
    problems = []
    for e in err.errors():
        path = format_loc(tuple(e["loc"]))
        path = f"{prefix}.{path}" if prefix and path != "<root>" else (prefix or path)
        msg = e["msg"].removeprefix("Value error, ")
        value = e.get("input")
        if e["type"] not in ("value_error", "assertion_error") and not isinstance(value, (dict, list)):
            msg = f"{msg} (got {value!r})"
        problems.append((path, value, msg))
    return problems


def _drop_templates(raw: dict) -> dict:
    """Drop ``x-*`` keys (YAML anchors for templates) from the top level."""
    return {k: v for k, v in raw.items() if not str(k).startswith("x-")}


def _device_entries(park: Park):
    for j, d in enumerate(park.park_devices):
        yield f"park_devices[{j}]", None, d
    for i, e in enumerate(park.enterprises):
        for j, d in enumerate(e.devices):
            yield f"enterprises[{i}].devices[{j}]", e, d


def _check_references(park: Park, cat: Catalogue) -> list[tuple[str, object, str]]:
    problems: list[tuple[str, object, str]] = []
    seen_dev: dict[str, str] = {}
    all_ids = {d.id for _p, _e, d in _device_entries(park)}
    for path, ent, d in _device_entries(park):
        if d.id in seen_dev:
            problems.append((f"{path}.id", d.id, f"duplicate device id '{d.id}' (also {seen_dev[d.id]})"))
        seen_dev.setdefault(d.id, path)
        if d.carrier not in cat.carriers:
            problems.append((f"{path}.carrier", d.carrier, f"unknown carrier '{d.carrier}'"))
        if d.building is not None:
            known = {b.id for b in ent.buildings} if ent else set()
            if d.building not in known:
                problems.append((f"{path}.building", d.building, f"unknown building '{d.building}'"))
        pids = [p.id for p in d.points]
        for k, pid in enumerate(pids):
            if pid in pids[:k]:
                problems.append((f"{path}.points[{k}].id", pid, f"duplicate point id '{pid}'"))
        try:
            typed = PARAMS_BY_TYPE[d.type].model_validate(d.params)
        except ValidationError as err:
            problems.extend(problems_from(err, f"{path}.params"))
            continue
        problems.extend(_check_assumptions(path, d.assumptions, typed))
        for k, src in enumerate(getattr(typed, "sources", []) or []):
            if src not in all_ids:
                problems.append((f"{path}.params.sources[{k}]", src, f"unknown device '{src}'"))
        fuel = getattr(typed, "fuel", None)
        if fuel is not None and fuel not in cat.carriers:
            problems.append((f"{path}.params.fuel", fuel, f"unknown carrier '{fuel}'"))
    for i, e in enumerate(park.enterprises):
        n_main = sum(d.type == "main_meter" for d in e.devices)
        if n_main != 1:
            problems.append((f"enterprises[{i}].devices", e.id, f"needs exactly one main_meter, has {n_main}"))
        lines = {d.id for d in e.devices if any(p.id == "production_t_h" for p in d.points)}
        for k, dev_id in enumerate(e.product_devices or []):
            if dev_id not in lines:
                problems.append((f"enterprises[{i}].product_devices[{k}]", dev_id,
                                 f"'{dev_id}' is not a process line of {e.id} with a production_t_h point"))
        bids = [b.id for b in e.buildings]
        for k, b in enumerate(bids):
            if b in bids[:k]:
                problems.append((f"enterprises[{i}].buildings[{k}].id", b, f"duplicate building id '{b}'"))
    eids = [e.id for e in park.enterprises]
    for i, eid in enumerate(eids):
        if eid in eids[:i]:
            problems.append((f"enterprises[{i}].id", eid, f"duplicate enterprise id '{eid}'"))
    n_grid = sum(d.type == "grid_meter" for d in park.park_devices)
    if n_grid != 1:
        problems.append(("park_devices", n_grid, f"needs exactly one grid_meter, has {n_grid}"))
    return problems


def _check_assumptions(path: str, assumptions: dict[str, str], typed: BaseModel):
    fields = set(type(typed).model_fields)
    return [
        (f"{path}.assumptions.{k}", k, f"assumption names unknown parameter '{k}'")
        for k in assumptions
        if k not in fields
    ]


def parse_park(raw: dict, data_dir: Path, source: str | None = None) -> Park:
    """Validate a park model already read into a dict (pure; see :func:`load_park` for files).

    Raises
    ------
    ParkModelError
        naming the field path and value of every problem found.
    """
    if not isinstance(raw, dict):
        raise ParkModelError([("<root>", raw, "the park file must be a mapping")], source)
    cat = load_catalogue(Path(data_dir))
    try:
        park = Park.model_validate(_drop_templates(raw), context={"catalogue": cat})
    except ValidationError as err:
        raise ParkModelError(problems_from(err), source) from None
    problems = _check_references(park, cat)
    if problems:
        raise ParkModelError(problems, source)
    return park


def load_park(path: Path | str | None = None, data_dir: Path | str | None = None) -> Park:
    """Read and validate the park model file (default ``data/park/anning.yaml``)."""
    from anning_lib.config import get_settings

    settings = get_settings()
    path = Path(path) if path else settings.park_path
    data_dir = Path(data_dir) if data_dir else settings.data_dir
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ParkModelError([("file", str(path), f"park file not found: {path}")]) from None
    except yaml.YAMLError as err:
        raise ParkModelError([("file", str(path), f"not valid YAML: {err}")]) from None
    return parse_park(raw, data_dir, source=str(path))
