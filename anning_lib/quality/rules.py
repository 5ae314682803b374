"""Alarm rules as data: what to watch (target), when it is wrong (condition), how urgent (severity, delays).

Rules come from ``data/alarms/rules.yaml`` (the park's defaults) and from the ``alarm_rule`` table (admins' edits,
which override file rules of the same id, see :func:`merge_rules`). Every rule is validated on its own: a bad rule
becomes ``(field_path, value, reason)`` problems and is skipped, the other rules still load. Paths name the rule
by its position, e.g. ``rules[3].condition.max_change_per_s``.

A target selects points or devices of the park model (``anning_lib.park``): one ``tag`` (``DEVICE.point``), or
every device of a ``device_type``, or one ``device``, optionally narrowed to one ``point`` id and one
``enterprise`` (``park`` for park-level devices). :func:`expand` turns a rule into its concrete targets: point
tags for point-level conditions, device ids for device-level ones (``balance``, ``comm_loss``).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from anning_lib.errors import AlarmRuleError
from anning_lib.park.loader import format_loc
from anning_lib.park.schema import DeviceType, Park

Problem = tuple[str, object, str]
DEVICE_TYPES: tuple[str, ...] = get_args(DeviceType)
POINT_KINDS = ("range", "spike", "flatline", "stale", "fault", "quality")
DEVICE_KINDS = ("balance", "comm_loss")
PARK_LEVEL = "park"            # Target.enterprise value for the park-level devices (GRID, SES, PARK-PV, WX)
MESSAGE_FIELDS = ("tag", "value", "limit", "text")
BALANCE_LOADS = ("sub_meter", "process_line", "boiler")   # consumption behind a main meter (docs/glossary.md)
BALANCE_SOURCES = ("pv", "bess")                          # supply behind a main meter


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------- target
class Target(_Strict):
    """What a rule watches. ``tag`` alone, or ``device_type``/``device`` narrowed by ``point``/``enterprise``."""

    tag: str | None = Field(None, description="one point, ``DEVICE.point``")
    device_type: str | None = Field(None, description="every device of this type (anning_lib.park DeviceType)")
    device: str | None = Field(None, description="one device id")
    point: str | None = Field(None, description="the point id on each matched device (default: all its points)")
    enterprise: str | None = Field(None, description="only devices of this enterprise; 'park' for park-level ones")

    @field_validator("tag")
    @classmethod
    def _tag_form(cls, v: str | None) -> str | None:
        if v is not None and (v.count(".") < 1 or not all(v.split(".", 1))):
            raise ValueError(f"tag '{v}' must be DEVICE.point")
        return v

    @field_validator("device_type")
    @classmethod
    def _known_type(cls, v: str | None, info: ValidationInfo) -> str | None:
        cls._not_with_tag(v, info, "device_type")
        if v is not None and v not in DEVICE_TYPES:
            raise ValueError(f"unknown device type '{v}' (one of {', '.join(DEVICE_TYPES)})")
        return v

    @field_validator("device", "point", "enterprise")
    @classmethod
    def _exclusive(cls, v: str | None, info: ValidationInfo) -> str | None:
        cls._not_with_tag(v, info, info.field_name)
        return v

    @staticmethod
    def _not_with_tag(v: str | None, info: ValidationInfo, name: str) -> None:
        tag = info.data.get("tag")
        if v is not None and tag is not None:
            raise ValueError(f"{name} '{v}' is not allowed together with tag '{tag}' (a tag names one point)")

    @model_validator(mode="after")
    def _something(self) -> Target:
        if self.tag is None and self.device_type is None and self.device is None:
            raise ValueError("target needs one of tag, device_type or device")
        return self


# ---------------------------------------------------------------------------------------------- conditions
class RangeCondition(_Strict):
    """Value outside [low, high] [point unit]; both None: the point's min/max from the park model. Hysteresis: once
    true, false again only inside [low + deadband, high - deadband]."""

    kind: Literal["range"]
    low: float | None = None
    high: float | None = None
    deadband: float = Field(0.0, ge=0, description="hysteresis [point unit]")
    deadband_frac: float = Field(0.0, ge=0, lt=0.5, description="hysteresis as a share of high - low [-] (for "
                                 "rules over points of different spans; not together with deadband)")

    @model_validator(mode="after")
    def _order(self) -> RangeCondition:
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"low {self.low:g} must be below high {self.high:g}")
        if self.deadband and self.deadband_frac:
            raise ValueError("give deadband or deadband_frac, not both")
        if self.low is not None and self.high is not None and self.deadband * 2 >= self.high - self.low:
            raise ValueError(f"deadband {self.deadband:g} is half the span {self.high - self.low:g} or more: "
                             "the alarm could never clear")
        return self

    def limits(self, point: Any = None) -> tuple[float | None, float | None, float]:
        """``(low, high, deadband)`` in the point's unit; None limits are taken from ``point`` (its min/max)."""
        low, high = self.low, self.high
        if low is None and high is None and point is not None:
            low, high = point.min, point.max
        deadband = self.deadband
        if self.deadband_frac and low is not None and high is not None:
            deadband = self.deadband_frac * (high - low)
        return low, high, deadband


class SpikeCondition(_Strict):
    """|change| between consecutive samples / their time step above a rate [point unit / s]."""

    kind: Literal["spike"]
    max_change_per_s: float = Field(gt=0, description="largest plausible rate of change [point unit/s]")


class FlatlineCondition(_Strict):
    """Stuck sensor: max - min over the last ``window_s`` <= ``min_change``, with >= 3 samples in the window."""

    kind: Literal["flatline"]
    window_s: float = Field(gt=0, description="window length [s]")
    min_change: float = Field(0.0, ge=0, description="largest span still counted as stuck [point unit]")


class StaleCondition(_Strict):
    """No sample for ``max_age_s``."""

    kind: Literal["stale"]
    max_age_s: float = Field(gt=0, description="longest silence [s]")


class FaultCondition(_Strict):
    """The point is a device's fault/status word; active when != 0 (bits decoded with fault_codes.yaml)."""

    kind: Literal["fault"]


class QualityCondition(_Strict):
    """The sample's quality code (anning_lib.ingest.model.Quality) is at least ``at_least``."""

    kind: Literal["quality"]
    at_least: Literal["uncertain", "bad", "stale"] = "bad"


class BalanceCondition(_Strict):
    """A main meter disagrees with its enterprise's sub-meters (docs/glossary.md, enterprise balance) by more than
    ``tolerance_frac * max(|main|, min_kw)``."""

    kind: Literal["balance"]
    tolerance_frac: float = Field(gt=0, description="allowed mismatch as a share of the main meter reading [-]")
    min_kw: float = Field(0.0, ge=0, description="floor of the reference reading for small loads [kW]")


class CommLossCondition(_Strict):
    """The gateway reports the device's connection (source) as disconnected."""

    kind: Literal["comm_loss"]


Condition = Annotated[
    Union[RangeCondition, SpikeCondition, FlatlineCondition, StaleCondition, FaultCondition, QualityCondition,
          BalanceCondition, CommLossCondition],
    Field(discriminator="kind"),
]
KINDS: tuple[str, ...] = POINT_KINDS + DEVICE_KINDS


# ---------------------------------------------------------------------------------------------- rule
class AlarmRule(_Strict):
    """One alarm rule. The condition must hold ``on_delay_s`` before the alarm is raised and be false
    ``off_delay_s`` before it clears."""

    id: str = Field(pattern=r"^[a-z0-9_.-]+$", max_length=64)
    name: str = Field(min_length=1)
    target: Target
    condition: Condition
    severity: Literal["critical", "high", "medium", "low"]
    on_delay_s: float = Field(0.0, ge=0, description="condition must hold this long before raising [s]")
    off_delay_s: float = Field(0.0, ge=0, description="condition must be false this long before clearing [s]")
    enabled: bool = True
    message: str = Field("", description="template with {tag}, {value}, {limit}, {text}; empty: the check's text")

    @field_validator("message")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        try:
            names = [f for _lit, f, _spec, _conv in string.Formatter().parse(v) if f is not None]
        except ValueError as err:
            raise ValueError(f"message template {v!r} is malformed: {err}") from None
        bad = [n for n in names if n not in MESSAGE_FIELDS]
        if bad:
            raise ValueError(f"unknown placeholder '{{{bad[0]}}}' in message (use {{tag}}, {{value}}, {{limit}}, "
                             "{text})")
        return v

    @property
    def level(self) -> Literal["point", "device"]:
        """'point' when the rule's targets are tags, 'device' when they are device ids."""
        return "device" if self.condition.kind in DEVICE_KINDS else "point"

    def render(self, target: str, detail: dict) -> str:
        """The alarm message for one target from a detector's ``detail``; the check's own text without a template
        (or when the template does not fit the values, e.g. ``{value:.1f}`` with no value)."""
        text = str(detail.get("text") or self.name)
        if not self.message:
            return f"{target}: {text}"
        try:
            return self.message.format(tag=target, value=detail.get("value"), limit=detail.get("limit"), text=text)
        except (ValueError, TypeError, KeyError, IndexError):
            return f"{target}: {text}"


# ---------------------------------------------------------------------------------------------- validation
def _rule_problems(err: ValidationError, prefix: str) -> list[Problem]:
    """pydantic errors -> problems; discriminated-union locations lose the tag and name ``condition.kind``."""
    out: list[Problem] = []
    for e in err.errors():
        loc, value, msg, kind = list(e["loc"]), e.get("input"), e["msg"].removeprefix("Value error, "), e["type"]
        if len(loc) >= 2 and loc[0] == "condition" and loc[1] in KINDS:
            del loc[1]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("kind")
            value = value.get("kind") if isinstance(value, dict) else None
            msg = (f"unknown condition kind '{value}'" if kind == "union_tag_invalid" else "condition needs a kind")
            msg += f" (one of {', '.join(KINDS)})"
        elif kind not in ("value_error", "assertion_error") and not isinstance(value, (dict, list)):
            msg = f"{msg} (got {value!r})"
        path = format_loc(tuple(loc))
        out.append((f"{prefix}.{path}" if path != "<root>" else prefix, value, msg))
    return out


def _matched_devices(t: Target, park: Park) -> list[tuple[str | None, Any]]:
    dev_id = t.tag.split(".", 1)[0] if t.tag else t.device
    out = []
    for eid, d in park.iter_devices():
        if dev_id is not None and d.id != dev_id:
            continue
        if t.device_type is not None and d.type != t.device_type:
            continue
        if t.enterprise is not None and (eid or PARK_LEVEL) != t.enterprise:
            continue
        out.append((eid, d))
    return out


def _keep_point(cond: Any, p: Any) -> bool:
    if cond.kind == "range" and cond.low is None and cond.high is None:
        return p.min is not None or p.max is not None
    if cond.kind == "fault":
        return p.quantity == "status"
    return True


def expand(rule: AlarmRule, park: Park) -> list[str]:
    """The rule's concrete targets in park order: point tags (point-level conditions) or device ids (``balance``:
    main meters only; ``comm_loss``). A ``range`` without low/high skips points with neither min nor max, a
    ``fault`` keeps status-word points only."""
    t, cond = rule.target, rule.condition
    devices = _matched_devices(t, park)
    if cond.kind in DEVICE_KINDS:
        return [d.id for _e, d in devices if cond.kind != "balance" or d.type == "main_meter"]
    pid = t.tag.split(".", 1)[1] if t.tag else t.point
    return [f"{d.id}.{p.id}" for _e, d in devices for p in d.points
            if (pid is None or p.id == pid) and _keep_point(cond, p)]


def _park_problems(rule: AlarmRule, park: Park) -> list[Problem]:
    """What the schema cannot see: names against the park, the target's fit to the condition."""
    t, kind = rule.target, rule.condition.kind
    tags = {f"{d.id}.{p.id}" for _e, d, p in park.iter_points()}
    dev_ids = {d.id for _e, d in park.iter_devices()}
    if t.tag is not None and t.tag not in tags:
        return [("target.tag", t.tag, f"unknown tag '{t.tag}': no such point in the park")]
    if t.device is not None and t.device not in dev_ids:
        return [("target.device", t.device, f"unknown device '{t.device}'")]
    ents = {e.id for e in park.enterprises} | {PARK_LEVEL}
    if t.enterprise is not None and t.enterprise not in ents:
        return [("target.enterprise", t.enterprise, f"unknown enterprise '{t.enterprise}' (or '{PARK_LEVEL}')")]
    if kind in DEVICE_KINDS and (t.tag or t.point):
        field = "target.tag" if t.tag else "target.point"
        return [(field, t.tag or t.point, f"a {kind} condition applies to devices, not points")]
    if kind == "balance":
        if t.device_type not in (None, "main_meter"):
            return [("target.device_type", t.device_type, "a balance condition applies to main_meter devices")]
        if t.device is not None and park.device(t.device).type != "main_meter":
            return [("target.device", t.device, f"'{t.device}' is not a main_meter (balance needs one)")]
    if t.device is not None and t.enterprise is not None:
        owner = park.enterprise_of(t.device) or PARK_LEVEL
        if owner != t.enterprise:
            return [("target.enterprise", t.enterprise, f"device '{t.device}' belongs to '{owner}'")]
    devices = _matched_devices(t, park)
    if not devices:
        return [("target", t.model_dump(exclude_none=True), "matches no device in the park")]
    if t.point is not None and not any(p.id == t.point for _e, d in devices for p in d.points):
        return [("target.point", t.point, f"no device matched by the target has a point '{t.point}'")]
    if not expand(rule, park):
        why = {"range": "with a min or max (give low/high)", "fault": "with a status word (quantity status)",
               "balance": "of type main_meter"}.get(kind, "")
        return [("target", t.model_dump(exclude_none=True), f"matches no {rule.level} {why}".rstrip())]
    return []


def validate_rule(raw: Any, park: Park | None, prefix: str) -> tuple[AlarmRule | None, list[Problem]]:
    """One rule dict -> (rule, []) or (None, problems named ``prefix.field``)."""
    if not isinstance(raw, dict):
        return None, [(prefix, raw, f"a rule must be a mapping, got {type(raw).__name__}")]
    try:
        rule = AlarmRule.model_validate(raw)
    except ValidationError as err:
        return None, _rule_problems(err, prefix)
    problems = [] if park is None else _park_problems(rule, park)
    if problems:
        return None, [(f"{prefix}.{path}", value, reason) for path, value, reason in problems]
    return rule, []


FILE_KEYS = ("rules", "version", "source", "assumptions")


def load_rules(raw: list[dict] | dict, park: Park, source: str | None = None
               ) -> tuple[list[AlarmRule], list[Problem]]:
    """Validate rules one by one against the schema and the park (pure; see :func:`read_rules_file`).

    Parameters
    ----------
    raw : list of dict or dict
        the rules, or a rules file's mapping (``rules`` list plus ``version``, ``source``, ``assumptions``).
    park : Park
        the park model the targets refer to.
    source : str, optional
        where the rules came from; unused here, kept for symmetry with :func:`check_rules_file`.

    Returns
    -------
    (rules, problems)
        the good rules in file order, and ``(field_path, value, reason)`` for every bad one (skipped). A repeated
        id is a problem of the later rule.
    """
    problems: list[Problem] = []
    if isinstance(raw, dict):
        problems += [(str(k), k, f"unknown key '{k}' (one of {', '.join(FILE_KEYS)})") for k in raw
                     if k not in FILE_KEYS]
        raw = raw.get("rules")
        if raw is None:
            return [], problems + [("rules", None, "the file has no rules list")]
    if not isinstance(raw, list):
        return [], problems + [("rules", raw, "rules must be a list")]
    rules: list[AlarmRule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        rule, bad = validate_rule(item, park, f"rules[{i}]")
        if rule is not None and rule.id in seen:
            bad = [(f"rules[{i}].id", rule.id, f"duplicate rule id '{rule.id}' (also rules[{seen[rule.id]}])")]
        problems += bad
        if rule is not None and not bad:
            seen[rule.id] = i
            rules.append(rule)
    return rules, problems


def read_yaml(path: Path) -> tuple[Any, list[Problem]]:
    """A YAML file of ``data/alarms/`` as ``(content, problems)``: a missing or malformed file is a problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh), []
    except FileNotFoundError:
        return None, [("file", str(path), f"file not found: {path}")]
    except yaml.YAMLError as err:
        return None, [("file", str(path), f"not valid YAML: {err}")]


def read_rules_file(path: Path | str, park: Park) -> tuple[list[AlarmRule], list[Problem]]:
    """Read a rules YAML file (``rules:`` list, ``version``, ``source``) and validate it with :func:`load_rules`."""
    raw, problems = read_yaml(Path(path))
    if problems:
        return [], problems
    if not isinstance(raw, dict):
        return [], [("<root>", raw, "a rules file must be a mapping with a rules list")]
    return load_rules(raw, park, source=str(path))


def check_rules_file(path: Path | str, park: Park) -> list[AlarmRule]:
    """Like :func:`read_rules_file` but strict (``anning alarms rules --check FILE``).

    Raises
    ------
    AlarmRuleError
        naming the field path and value of every problem, when there is any.
    """
    rules, problems = read_rules_file(path, park)
    if problems:
        raise AlarmRuleError(problems, str(path))
    return rules


def merge_rules(file_rules: list[AlarmRule], db_rows: list[dict], park: Park | None = None
                ) -> tuple[list[AlarmRule], list[Problem]]:
    """File rules overridden by database rows (``alarm_rule``: ``id``, ``definition``, ``enabled``).

    A row replaces the file rule of the same id in place (new ids are appended in row order); the row's
    ``enabled`` column wins over the definition's. A bad row is a problem named ``alarm_rule[<id>]...`` and is
    skipped: the file rule of that id, if any, stays in force. With ``park`` the rows are also checked against it.
    """
    by_id = {r.id: r for r in file_rules}
    problems: list[Problem] = []
    for i, row in enumerate(db_rows):
        rid = row.get("id") if isinstance(row, dict) else None
        prefix = f"alarm_rule[{rid}]" if rid else f"alarm_rule[#{i}]"
        definition = row.get("definition") if isinstance(row, dict) else None
        if not rid or not isinstance(definition, dict):
            problems.append((prefix, row, "a rule row needs an id and a definition mapping"))
            continue
        if definition.get("id", rid) != rid:
            problems.append((f"{prefix}.definition.id", definition["id"], f"does not match the row id '{rid}'"))
            continue
        merged = {**definition, "id": rid}
        if row.get("enabled") is not None:
            merged["enabled"] = row["enabled"]
        rule, bad = validate_rule(merged, park, f"{prefix}.definition")
        problems += bad
        if rule is not None:
            by_id[rid] = rule
    return list(by_id.values()), problems


# ---------------------------------------------------------------------------------------------- fault codes
def default_rules_path() -> Path:
    from anning_lib.config import get_settings

    return get_settings().data_dir / "alarms" / "rules.yaml"


def load_fault_codes(path: Path | str | None = None) -> dict[str, dict[int, str]]:
    """Read ``data/alarms/fault_codes.yaml``: ``default`` and per device type maps ``{bit: text}``.

    Raises
    ------
    AlarmRuleError
        when the file is missing, not YAML, or a key is not a device type / a bit is not 0..31.
    """
    if path is None:
        from anning_lib.config import get_settings

        path = get_settings().data_dir / "alarms" / "fault_codes.yaml"
    raw, problems = read_yaml(Path(path))
    codes: dict[str, dict[int, str]] = {}
    maps = raw.get("codes") if isinstance(raw, dict) else None
    if not problems and not isinstance(maps, dict):
        problems.append(("codes", maps, "fault_codes needs a codes mapping: device type or default -> {bit: text}"))
    for key, bits in (maps or {}).items() if not problems else ():
        if key != "default" and key not in DEVICE_TYPES:
            problems.append((f"codes.{key}", key, f"unknown device type '{key}'"))
            continue
        if not isinstance(bits, dict):
            problems.append((f"codes.{key}", bits, "must map bit numbers to texts"))
            continue
        for bit, text in bits.items():
            if not isinstance(bit, int) or not 0 <= bit <= 31 or not isinstance(text, str):
                problems.append((f"codes.{key}.{bit}", text, "bits are integers 0..31 with a text"))
        codes[key] = {b: t for b, t in bits.items() if isinstance(b, int) and isinstance(t, str)}
    if problems:
        raise AlarmRuleError(problems, str(path))
    return codes


def fault_texts(codes: dict[str, dict[int, str]], device_type: str) -> dict[int, str]:
    """Bit texts for one device type: the ``default`` map overlaid with the type's own."""
    return {**codes.get("default", {}), **codes.get(device_type, {})}


def balance_terms(park: Park, main_meter_id: str) -> tuple[str, list[str], list[str], float]:
    """``(main tag, load tags, source tags, loss_frac)`` of a main meter's enterprise balance: loads are the
    enterprise's sub_meter, process_line and boiler ``p_kw``; sources its pv and bess ``p_kw``."""
    main = park.device(main_meter_id)
    eid = park.enterprise_of(main_meter_id)
    if main.type != "main_meter" or eid is None:
        raise ValueError(f"'{main_meter_id}' is not an enterprise's main_meter")

    def tags(types: tuple[str, ...]) -> list[str]:
        return [f"{d.id}.p_kw" for d in park.devices_of(eid, *types) if any(p.id == "p_kw" for p in d.points)]

    return f"{main.id}.p_kw", tags(BALANCE_LOADS), tags(BALANCE_SOURCES), main.p.loss_frac
