"""The admin page's edits of the tariff files of ``data/tariffs/`` (points: :mod:`anning_lib.portal.admin`).

:func:`validate_tou_text` reads the text of a band file (``yunnan_tou_2026.yaml``: ``bands`` and
``multiplier``) or of a tariff file (``bands_file``, prices, ``seasons``) as the loaders of
:mod:`anning_lib.dispatch.tariff` do, names every overlap, gap, unknown band and negative price by its place in
the file (``bands[3]: 10:00-12:00 overlaps bands[1]: 11:00-14:00``), then has the loaders themselves read it.
:func:`save_tou_file` (role ``admin.tariff``) writes a checked text atomically, keeps the previous version as
``<name>.bak`` and leaves one ``audit_log`` row; a refused text changes not a byte.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role
from anning_lib.dispatch.tariff import (
    BANDS,
    Tariff,
    check_tou_periods,
    load_tariff,
    load_tou_bands,
)
from anning_lib.errors import AnningError, CaseFileError
from anning_lib.park.loader import problems_from
from anning_lib.portal.filesave import replace_audited, sha256_of

Problem = tuple[str, object, str]
"""``(field path, value, reason)``, as :class:`~anning_lib.errors.ProblemsError` holds them."""

TEXT_MAX_CHARS = 64_000
"""Largest tariff text the admin page accepts (the real files are about 2 000 characters)."""

FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*\.yaml$")
"""Names of the files :func:`save_tou_file` writes and of a tariff's ``bands_file``: no folders."""

BAND_FILE_KEYS = ("version", "timezone", "valid_from", "multiplier", "bands")
"""The keys of a band file."""

TOU_TIMEZONE = "Asia/Shanghai"
"""The time zone the dispatch code reads band hours in (:func:`anning_lib.dispatch.tariff.prices`)."""


# ============================================================================================== tariffs
@dataclass(frozen=True)
class TouCheck:
    """What a checked tariff text holds.

    ``kind`` is ``bands`` for a band file, ``tariff`` for a tariff file; ``bands`` and ``multipliers`` are as
    :func:`~anning_lib.dispatch.tariff.load_tariff` returns them (for a tariff: its band file's bands);
    ``tariff`` is the tariff of a tariff file.
    """

    kind: Literal["bands", "tariff"]
    bands: list[tuple[float, float, str]]
    multipliers: dict[str, float]
    tariff: Tariff | None = None


_HHMM_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


def _parse_time(value: object, path: str, problems: list[Problem]) -> float | None:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080 (07:00, with its leading zero, stays text)
        problems.append((path, value, f"{value!r} is not a time \"HH:MM\": quote times in YAML (\"18:00\"), an "
                                      f"unquoted {value // 60}:{value % 60:02d} reads as the number {value}"))
        return None
    m = _HHMM_RE.match(value) if isinstance(value, str) else None
    if m is None or int(m[2]) > 59 or int(m[1]) > 24 or (int(m[1]) == 24 and int(m[2]) != 0):
        problems.append((path, value, f"{value!r} is not a time \"HH:MM\" between 00:00 and 24:00"))
        return None
    return int(m[1]) + int(m[2]) / 60.0


def _check_multipliers(mult: object, path: str, problems: list[Problem], required: bool = True) -> dict[str, float]:
    """Band multipliers: known bands, finite numbers, none negative."""
    if mult is None and not required:
        return {}
    if not isinstance(mult, dict) or not mult:
        problems.append((path, mult, f"must map bands ({', '.join(BANDS)}) to multipliers"))
        return {}
    out = {}
    for band, value in mult.items():
        if band not in BANDS:
            problems.append((f"{path}.{band}", band, f"unknown band {band!r} (known: {', '.join(BANDS)})"))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append((f"{path}.{band}", value, f"{value!r} is not a finite number"))
        elif value < 0:
            problems.append((f"{path}.{band}", value, f"{value!r} is negative: a price may not be negative"))
        else:
            out[band] = float(value)
    return out


def _missing_bands(mult: object, used: set[str], path: str) -> list[Problem]:
    """Bands in use without a multiplier in ``mult`` (a mapping; a bad value counts as given)."""
    if not isinstance(mult, dict) or not mult:
        return []
    return [(path, sorted(map(str, mult)), f"no value for band {b!r}") for b in sorted(used - set(mult))]


def _band_file_problems(raw: dict) -> tuple[list[Problem], list[tuple[float, float, str]], dict[str, float]]:
    problems: list[Problem] = []
    for key in raw:
        if key not in BAND_FILE_KEYS:
            problems.append((str(key), key, f"unknown key {key!r} of a band file (known: {', '.join(BAND_FILE_KEYS)})"))
    tz = raw.get("timezone", TOU_TIMEZONE)
    if tz != TOU_TIMEZONE:
        problems.append(("timezone", tz, f"{tz!r}: the dispatch code reads the bands in {TOU_TIMEZONE} only"))
    if "valid_from" in raw:
        _check_date(raw["valid_from"], "valid_from", problems)
    mult = _check_multipliers(raw.get("multiplier"), "multiplier", problems)
    periods: list[tuple[float, float, str]] = []
    items = raw.get("bands")
    if not isinstance(items, list) or not items:
        problems.append(("bands", items, "must be a list of {band, start, end} covering 00:00-24:00"))
        return problems, [], mult
    complete = True
    for i, item in enumerate(items):
        path = f"bands[{i}]"
        if not isinstance(item, dict):
            problems.append((path, item, "must be a mapping {band, start, end}"))
            complete = False
            continue
        for key in item:
            if key not in ("band", "start", "end"):
                problems.append((f"{path}.{key}", key, f"unknown key {key!r} (known: band, start, end)"))
        band = item.get("band")
        if band not in BANDS:
            problems.append((f"{path}.band", band, f"unknown band {band!r} (known: {', '.join(BANDS)})"))
        lo = _parse_time(item.get("start"), f"{path}.start", problems)
        hi = _parse_time(item.get("end"), f"{path}.end", problems)
        if lo is None or hi is None:
            complete = False
            continue
        periods.append((lo, hi, str(band)))
    if complete:
        problems += check_tou_periods(periods)
    problems += _missing_bands(raw.get("multiplier"), {b for _lo, _hi, b in periods if b in BANDS}, "multiplier")
    return problems, periods, mult


def _check_date(value: object, path: str, problems: list[Problem]) -> None:
    try:
        dt.date.fromisoformat(value)             # type: ignore[arg-type]
    except (TypeError, ValueError):
        hint = " (quote it: an unquoted date is not text)" if isinstance(value, dt.date) else ""
        problems.append((path, value, f"{value!r} is not a date \"YYYY-MM-DD\"{hint}"))


def _tariff_problems(tariff: Tariff, bands: list[tuple[float, float, str]],
                     band_mult: dict[str, float]) -> list[Problem]:
    """What the tariff model leaves to run time: multipliers per band and season, season months, prices."""
    problems: list[Problem] = []
    used = {b for _lo, _hi, b in bands}
    _check_date(tariff.valid_from, "valid_from", problems)
    export = tariff.export_price_cny_per_kwh
    if not math.isfinite(export):
        problems.append(("export_price_cny_per_kwh", export, f"{export!r} is not a finite number"))
    elif export < 0:
        problems.append(("export_price_cny_per_kwh", export, f"{export!r} is negative: a price may not be negative"))
    if tariff.multiplier is not None:
        _check_multipliers(tariff.multiplier, "multiplier", problems)
        problems += _missing_bands(tariff.multiplier, used, "multiplier")
    else:
        problems += _missing_bands(band_mult, used, f"multiplier (of {tariff.bands_file})")
    seen: dict[int, int] = {}
    for i, season in enumerate(tariff.seasons):
        path = f"seasons[{i}]"
        _check_multipliers(season.multiplier, f"{path}.multiplier", problems)
        problems += _missing_bands(season.multiplier, used, f"{path}.multiplier")
        for m in season.months:
            if m in seen and seen[m] != i:
                problems.append((f"{path}.months", m, f"month {m} is in seasons[{seen[m]}] too"))
            seen.setdefault(m, i)
    return problems


def _tariff_dir(tariff_dir: Path | str | None) -> Path:
    if tariff_dir is not None:
        return Path(tariff_dir)
    from anning_lib.config import get_settings

    return get_settings().data_dir / "tariffs"


def _loader_problems(kind: str, text: str, name: str, tariff_dir: Path, bands_file: str | None) -> list[Problem]:
    """Have :mod:`anning_lib.dispatch.tariff`'s loaders read ``text`` from a scratch folder."""
    with tempfile.TemporaryDirectory(prefix="anning-tariff-") as tmp:
        scratch = Path(tmp) / name
        scratch.write_text(text, encoding="utf-8")
        try:
            if kind == "bands":
                load_tou_bands.__wrapped__(scratch)          # not the cached one: the text is new
            else:
                shutil.copyfile(tariff_dir / str(bands_file), Path(tmp) / str(bands_file))
                load_tariff(scratch)
        except (AnningError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            return [("<root>", name, f"the tariff loader refuses it: {err}")]
    return []


def validate_tou_text(text: str, source: str = "<form>", *, tariff_dir: Path | str | None = None) -> TouCheck:
    """Check the text of a band file or a tariff file of ``data/tariffs/`` (pure but for reading the folder).

    A band file (``bands``, ``multiplier``) must have periods ``{band, start: "HH:MM", end: "HH:MM"}`` of known
    bands (``peak``, ``flat``, ``valley``) covering 00:00-24:00 exactly once (:func:`check_tou_periods`), and a
    multiplier for every band, none negative. A tariff file must pass :class:`~anning_lib.dispatch.tariff.Tariff`
    and name a band file of ``tariff_dir`` (default: the settings' ``data/tariffs``); each season's multipliers
    must cover every band, a month be in one season at most, and no price be negative. Last, the file loaders
    read the text, so whatever passes here loads.

    Raises
    ------
    CaseFileError
        with every problem found, each naming its field path and value (``source`` names the file).
    """
    problems: list[Problem] = []
    if not isinstance(text, str):
        raise CaseFileError([("text", type(text).__name__, "a tariff must be given as text")], source)
    if len(text) > TEXT_MAX_CHARS:
        raise CaseFileError([("text", len(text), f"{len(text)} characters, more than the {TEXT_MAX_CHARS} a "
                                                 "tariff file may have")], source)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CaseFileError([("text", source, f"not valid YAML: {err}")], source) from None
    if not isinstance(raw, dict):
        raise CaseFileError([("<root>", raw, "a tariff file must be a mapping")], source)
    folder = _tariff_dir(tariff_dir)
    name = Path(source).name if FILE_NAME_RE.match(Path(source).name) else "form.yaml"
    if "bands" in raw or "bands_file" not in raw:
        kind = "bands"
        problems, bands, mult = _band_file_problems(raw)
        tariff = None
        if "bands" not in raw and not any(k in raw for k in BAND_FILE_KEYS):
            problems = [("<root>", sorted(map(str, raw)), "neither a band file (with 'bands') nor a tariff file "
                                                          "(with 'bands_file')")]
    else:
        kind = "tariff"
        bands, mult = [], {}
        try:
            tariff = Tariff.model_validate(raw)
        except ValidationError as err:
            raise CaseFileError(problems_from(err), source) from None
        bands_path = folder / tariff.bands_file
        if not FILE_NAME_RE.match(tariff.bands_file):
            problems.append(("bands_file", tariff.bands_file, "must be the name of a band file beside the tariff "
                                                              "(like yunnan_tou_2026.yaml), no folders"))
        elif not bands_path.is_file():
            problems.append(("bands_file", tariff.bands_file, f"no band file {tariff.bands_file!r} in {folder}"))
        else:
            try:
                bands, mult = load_tou_bands.__wrapped__(bands_path)
            except (AnningError, OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                problems.append(("bands_file", tariff.bands_file, f"the band file does not load: {err}"))
            else:
                problems += _tariff_problems(tariff, bands, mult)
    if not problems:
        problems = _loader_problems(kind, text, name, folder, tariff.bands_file if tariff else None)
    if problems:
        raise CaseFileError(problems, source)
    if tariff is not None:
        mult = dict(tariff.multiplier or mult)
    return TouCheck(kind, bands, mult, tariff)


def _dependants_problems(text: str, path: Path) -> list[Problem]:
    """Problems a new band file would cause in the tariff files beside it that name it."""
    problems: list[Problem] = []
    for other in sorted(path.parent.glob("*.yaml")):
        if other.name == path.name:
            continue
        try:
            raw = yaml.safe_load(other.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("bands_file") != path.name:
                continue
            load_tariff(other)                          # it loads with the band file in force...
        except (AnningError, OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
            continue                                    # ...else its trouble is not this edit's
        with tempfile.TemporaryDirectory(prefix="anning-tariff-") as tmp:
            (Path(tmp) / path.name).write_text(text, encoding="utf-8")
            try:
                validate_tou_text(other.read_text(encoding="utf-8"), other.name, tariff_dir=tmp)
            except CaseFileError as err:
                problems += [("bands", other.name, f"tariff {other.name} would no longer load: {p}: {r}")
                             for p, _v, r in err.problems]
    return problems


def save_tou_file(actor: Actor, text: str, path: Path | str, *, engine: Engine,
                  expected_sha256: str | None = None) -> Path:
    """An admin saves a band or tariff file (``data/tariffs/<name>.yaml``); returns its path.

    The text is checked by :func:`validate_tou_text` against the folder it goes to; a tariff's ``id`` must be
    the file's name, and a band file must leave the tariffs that name it loadable. The new text replaces the
    file atomically (a scratch file in the same folder, then ``os.replace``), the previous version is kept as
    ``<name>.bak``, and one ``tariff_saved`` audit row records it (``detail``: ``sha256_old``, ``sha256_new``,
    ``kind``, ``backup``); the file is replaced inside the audit row's transaction, so neither lands without
    the other. Line ends are stored as ``\\n``. A text equal to the file writes nothing.

    Parameters
    ----------
    expected_sha256 : str, optional
        the sha256 of the file as the admin's form loaded it (None for a new file to be refused if one exists:
        pass ``""``); a file changed meanwhile by someone else is refused.

    Raises
    ------
    AccessError
        if ``actor`` may not ``admin.tariff``.
    CaseFileError
        naming every problem; the file, its backup and the audit log are untouched.
    """
    require_role(actor, "admin.tariff")
    path = Path(path)
    if ".." in path.parts or not FILE_NAME_RE.match(path.name):
        raise CaseFileError([("path", path.name, "a tariff file name is letters, digits, '_' and '-' ending in "
                                                 "'.yaml'")], str(path))
    if not path.parent.is_dir():
        raise CaseFileError([("path", str(path.parent), "no such folder")], str(path))
    text = text.replace("\r\n", "\n") if isinstance(text, str) else text
    check = validate_tou_text(text, str(path), tariff_dir=path.parent)
    problems: list[Problem] = []
    if check.tariff is not None and check.tariff.id != path.stem:
        problems.append(("id", check.tariff.id, f"must be the file's name {path.stem!r} (assignments.yaml names "
                                                "tariffs by file)"))
    if check.tariff is not None and check.tariff.bands_file == path.name:
        problems.append(("bands_file", path.name, "a tariff file cannot be its own band file"))
    problems += _dependants_problems(text, path)        # tariffs naming this file as their band file
    old = path.read_bytes() if path.is_file() else None
    if expected_sha256 is not None and (sha256_of(old) or "") != expected_sha256:
        problems.append(("text", expected_sha256, f"{path.name} exists already" if expected_sha256 == "" else
                         f"{path.name} was changed by someone else since the form was opened; reload it and edit "
                         "again"))
    if problems:
        raise CaseFileError(problems, str(path))
    try:
        replace_audited(path, text.encode("utf-8"), engine=engine, action="tariff_saved", target=f"tariff:{path.name}",
                        detail={"file": str(path), "kind": check.kind}, user_id=actor.user_id)
    finally:
        load_tou_bands.cache_clear()                   # this process reads the new bands from now on
    return path
