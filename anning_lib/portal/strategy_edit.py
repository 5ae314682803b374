"""The admin page's dispatch strategies (调度策略): each storage's control mode and state-of-charge window, edited
in the park model file, the one place they live (``data/park/anning.yaml``, ``params`` of each ``bess``).

``control``: ``advisory`` (the MPC's setpoints are proposed for an operator's approval) or ``auto`` (written to
the storage, bounded by its limits and audited); ``soc_min_frac`` / ``soc_max_frac``: the window the optimiser and
the peak guard keep the storage in [-]. :func:`save_strategy` changes only that device's ``params:`` line (comments
and the rest of the file stay as they are), checks the whole new model with the park loader, and replaces the file
with one ``strategy_saved`` audit row (:func:`anning_lib.portal.filesave.replace_audited`). The dispatch service
reads the park model when it starts: a change is in force from its next start (as the alarm rules).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import yaml
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role
from anning_lib.errors import ParkModelError
from anning_lib.park.loader import parse_park
from anning_lib.park.schema import Park
from anning_lib.portal.filesave import replace_audited, sha256_of

CONTROLS = ("advisory", "auto")
FIELDS = ("control", "soc_min_frac", "soc_max_frac")
"""The strategy's keys of a storage's ``params``."""
STRATEGY_COLUMNS = ["device_id", "name", "enterprise_id", "capacity_kwh", "p_max_kw", "control", "soc_min_frac",
                    "soc_max_frac"]


def storage_strategies(park: Park) -> pd.DataFrame:
    """Every storage with its strategy, :data:`STRATEGY_COLUMNS` (``enterprise_id`` None: the park's) (pure)."""
    rows = []
    for ent, d in park.iter_devices():              # ent: the owner's id, None for the park
        if d.type == "bess":
            p = d.p
            rows.append([d.id, d.name, ent, p.capacity_kwh, p.p_max_kw, p.control,
                         p.soc_min_frac, p.soc_max_frac])
    return pd.DataFrame(rows, columns=STRATEGY_COLUMNS)


def _check_values(control: str, soc_min_frac: float, soc_max_frac: float) -> list[tuple[str, object, str]]:
    problems = []
    if control not in CONTROLS:
        problems.append(("control", control, f"{control!r} is not one of {', '.join(CONTROLS)}"))
    for name, v in (("soc_min_frac", soc_min_frac), ("soc_max_frac", soc_max_frac)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            problems.append((name, v, f"{v!r} is not a fraction from 0 to 1"))
    return problems


def with_strategy(text: str, device_id: str, *, control: str, soc_min_frac: float, soc_max_frac: float) -> str:
    """The park model's text with one storage's strategy changed (pure): only the ``params: {...}`` line of the
    device ``device_id`` is rewritten, its other keys kept in their order.

    Raises
    ------
    ParkModelError
        naming the device when the file has no such device, it has no one-line ``params`` mapping, or it is
        not a storage.
    """
    lines = text.split("\n")
    start = next((i for i, ln in enumerate(lines) if re.fullmatch(rf"\s*- id: {re.escape(device_id)}\s*", ln)), None)
    if start is None:
        raise ParkModelError([("device", device_id, f"no such device {device_id!r} in the park model")])
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2        # the device's keys, under "- "
    for i in range(start + 1, len(lines)):
        ln = lines[i]
        if ln.strip() and len(ln) - len(ln.lstrip()) < indent:       # the next device or section: not found
            break
        m = re.fullmatch(r"(\s*)params: (\{.*\})\s*", ln)
        if m and len(m.group(1)) == indent:
            params = yaml.safe_load(m.group(2))
            if "capacity_kwh" not in params:
                raise ParkModelError([("device", device_id, f"{device_id!r} is not a storage (no capacity_kwh)")])
            params.update(control=control, soc_min_frac=float(soc_min_frac), soc_max_frac=float(soc_max_frac))
            flow = yaml.safe_dump(params, default_flow_style=True, sort_keys=False, width=10 ** 6,
                                  allow_unicode=True).strip()
            lines[i] = f"{m.group(1)}params: {flow}"
            return "\n".join(lines)
    raise ParkModelError([("device", device_id, f"{device_id!r} has no one-line 'params: {{...}}' mapping to edit")])


def save_strategy(actor: Actor, device_id: str, *, control: str, soc_min_frac: float, soc_max_frac: float,
                  engine: Engine, path: Path | str | None = None, data_dir: Path | str | None = None,
                  expected_sha256: str | None = None) -> dict:
    """An admin sets one storage's strategy in the park model file; returns ``{"before": ..., "after": ...}``
    (the three :data:`FIELDS`).

    Parameters
    ----------
    path, data_dir : path, optional
        the park model file and the reference data it is checked against (default: the settings').
    expected_sha256 : str, optional
        the file's sha256 when the admin's form was opened: a file changed meanwhile is refused.

    Raises
    ------
    AccessError
        if ``actor`` may not ``admin.strategy``.
    ParkModelError
        naming each bad field and value (a mode that is neither ``advisory`` nor ``auto``, a fraction outside
        0..1, a minimum not below the maximum, the state of charge at the simulation start outside the window...);
        the file and the audit log are then unchanged.
    """
    from anning_lib.config import get_settings

    require_role(actor, "admin.strategy")
    settings = get_settings()
    path = Path(path or settings.park_path)
    problems = _check_values(control, soc_min_frac, soc_max_frac)
    if problems:
        raise ParkModelError(problems, str(path))
    old = path.read_bytes()
    if expected_sha256 is not None and sha256_of(old) != expected_sha256:
        raise ParkModelError([("file", path.name, "was changed by someone else since the form was opened; reload "
                                                  "the page and edit again")], str(path))
    text = with_strategy(old.decode("utf-8"), device_id, control=control, soc_min_frac=soc_min_frac,
                         soc_max_frac=soc_max_frac)
    before_park = parse_park(yaml.safe_load(old), data_dir or settings.data_dir, source=str(path))
    try:
        parse_park(yaml.safe_load(text), data_dir or settings.data_dir, source=str(path))
    except ParkModelError as err:                  # the loader's field path, with the device it is about
        raise ParkModelError([(f"{device_id} ({p})", v, r) for p, v, r in err.problems], str(path)) from None
    before = storage_strategies(before_park).set_index("device_id").loc[device_id, list(FIELDS)].to_dict()
    after = {"control": control, "soc_min_frac": float(soc_min_frac), "soc_max_frac": float(soc_max_frac)}
    replace_audited(path, text.encode("utf-8"), engine=engine, action="strategy_saved", target=f"device:{device_id}",
                    detail={"file": str(path), "before": before, "after": after}, user_id=actor.user_id)
    return {"before": before, "after": after}
