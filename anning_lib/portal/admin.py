"""The admin page's edits of the store's points (tariff files: :mod:`anning_lib.portal.tariff_edit`).

Every edit is checked first and stored only if the whole of it is good; a refused edit changes nothing (no row,
no audit row). Every edit needs the admin's role (``admin.point`` in :data:`anning_lib.auth.access.ACTIONS`)
and leaves one ``audit_log`` row in the same transaction as the change.

:func:`add_point` and :func:`update_point_limits` check through the park model's own
:class:`~anning_lib.park.schema.Point` validators against the units catalogue (``data/units.yaml``) and raise
:class:`~anning_lib.errors.ParkModelError` with one ``(field, value, reason)`` per problem, e.g.
``unit: unknown unit 'kwhh' for quantity active_power (known: W, kW, MW)``. They change the ``point`` table
only: the park model file stays the source of the gateway, the control path and the alarm limits, and
``anning db init`` (:func:`~anning_lib.store.assets.sync_park`) writes the file's limits back over a point
the file also has.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from anning_lib.auth.access import Actor, require_role
from anning_lib.auth.audit import audit
from anning_lib.errors import ParkModelError
from anning_lib.park.catalogue import Catalogue, load_catalogue
from anning_lib.park.loader import problems_from
from anning_lib.park.schema import Point, point_tag
from anning_lib.store.schema import TABLES

if TYPE_CHECKING:
    from anning_lib.park.schema import Park

Problem = tuple[str, object, str]
"""``(field path, value, reason)``, as :class:`~anning_lib.errors.ProblemsError` holds them."""

POINT_ID_RE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
"""Point ids as in the park model: lower-case words joined by ``_``, the unit last (``p_kw``, ``soc_frac``)."""


# ============================================================================================== points
def _catalogue(catalogue: Catalogue | None) -> Catalogue:
    if catalogue is not None:
        return catalogue
    from anning_lib.config import get_settings

    return load_catalogue(get_settings().data_dir)


def _units_of(cat: Catalogue, unit: object) -> list[str]:
    return [name for name, q in cat.quantities.items() if unit in q.factors]


def _point_problems(err: ValidationError, cat: Catalogue | None, values: dict) -> list[Problem]:
    """The pydantic problems of a :class:`Point`, with the form's field names and the catalogue's choices."""
    out = []
    for path, value, reason in problems_from(err):
        if path == "id":
            path = "point_id"
        elif path == "<root>":                       # the model validator: min below max
            path, value = "max", values.get("max")
        elif path == "quantity" and cat is not None and reason.startswith("unknown quantity"):
            reason = f"{reason} (known: {', '.join(cat.quantities)})"
        elif path == "unit" and cat is not None and reason.startswith("unknown unit"):
            quantity = values["quantity"]
            reason = (f"unknown unit {value!r} for quantity {quantity} "
                      f"(known: {', '.join(cat.quantities[quantity].factors)})")
            elsewhere = _units_of(cat, value)
            if elsewhere:
                reason += f"; {value!r} is a unit of {', '.join(elsewhere)}"
        out.append((path, value, reason))
    return out


def _finite_limits(values: dict) -> list[Problem]:
    return [(k, values[k], f"{values[k]!r} is not a finite number") for k in ("min", "max")
            if isinstance(values.get(k), float) and not math.isfinite(values[k])]


def check_point(device_id: str, point_id: str, quantity: str, unit: str, min_value: float | None = None,
                max_value: float | None = None, writable: bool = False, *,
                catalogue: Catalogue | None = None) -> Point:
    """The :class:`Point` an admin's form describes, checked against the catalogue (pure, no database).

    Raises
    ------
    ParkModelError
        one problem per bad field: a point id not like ``p_kw``, an unknown quantity, a unit unknown or not of
        the quantity, limits not finite or ``min >= max``.
    """
    cat = _catalogue(catalogue)
    problems: list[Problem] = []
    if not isinstance(device_id, str) or not device_id:
        problems.append(("device_id", device_id, "a device id is needed"))
    if not isinstance(point_id, str) or not POINT_ID_RE.match(point_id):
        problems.append(("point_id", point_id, f"{point_id!r} must be lower-case words joined by '_' with the "
                                                "unit last, like the park's points (p_kw, soc_frac, t_cell_degc)"))
    values = {"id": point_id, "quantity": quantity, "unit": unit, "min": min_value, "max": max_value,
              "writable": writable}
    flagged = {path for path, _v, _r in problems}
    point = None
    try:
        point = Point.model_validate(values, context={"catalogue": cat})
    except ValidationError as err:
        problems += [p for p in _point_problems(err, cat, values) if p[0] not in flagged]
    if point is not None:
        problems += _finite_limits({"min": point.min, "max": point.max})
    if problems:
        raise ParkModelError(problems)
    assert point is not None
    return point


def add_point(engine: Engine, park: Park | None, actor: Actor, device_id: str, point_id: str, quantity: str,
              unit: str, min_value: float | None = None, max_value: float | None = None, writable: bool = False,
              *, catalogue: Catalogue | None = None) -> int:
    """An admin adds a point ``<device_id>.<point_id>`` to the store; returns its ``point.id``.

    The point row and its ``point_added`` audit row are written in one transaction. ``park`` (the park model
    in force; None skips the check) must know the device, and must not have the point already. ``catalogue``
    defaults to the one of the settings' data folder.

    Raises
    ------
    AccessError
        if ``actor`` may not ``admin.point``.
    ParkModelError
        naming each bad field and its value (see :func:`check_point`), an unknown device or a tag that exists;
        nothing is written.
    """
    require_role(actor, "admin.point")
    point = check_point(device_id, point_id, quantity, unit, min_value, max_value, writable, catalogue=catalogue)
    tag = point_tag(device_id, point.id)
    if park is not None:
        try:
            dev = park.device(device_id)
        except KeyError:
            raise ParkModelError([("device_id", device_id, f"unknown device {device_id!r} in the park model")]) \
                from None
        if any(p.id == point.id for p in dev.points):
            raise ParkModelError([("point_id", point.id, f"point {tag!r} exists already (park model)")])
    device, pt = TABLES["device"], TABLES["point"]
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(device.c.id).where(device.c.id == device_id)).first() is None:
                raise ParkModelError([("device_id", device_id, f"unknown device {device_id!r} in the store; add it "
                                                               "to the park model and run `anning db init`")])
            if conn.execute(sa.select(pt.c.id).where(pt.c.tag == tag)).first() is not None:
                raise ParkModelError([("point_id", point.id, f"point {tag!r} exists already")])
            pid = conn.execute(sa.insert(pt).values(
                tag=tag, device_id=device_id, code=point.id, quantity=point.quantity, unit=point.unit,
                min=point.min, max=point.max, scale=1.0, address="", dtype="", writable=point.writable,
            ).returning(pt.c.id)).scalar_one()
            audit(conn, "point_added", tag, {"point_id": pid, "quantity": point.quantity, "unit": point.unit,
                                             "min": point.min, "max": point.max, "writable": point.writable},
                  actor.user_id)
    except sa.exc.IntegrityError:           # another admin added the same tag meanwhile
        raise ParkModelError([("point_id", point.id, f"point {tag!r} exists already")]) from None
    return pid


def update_point_limits(engine: Engine, actor: Actor, tag: str, min_value: float | None,
                        max_value: float | None) -> None:
    """An admin sets the plausibility limits of a stored point [its unit]; None is no limit on that side.

    The change and its ``point_limits_set`` audit row (``detail``: ``from`` and ``to`` as ``[min, max]``) are
    one transaction; unchanged limits write nothing.

    Raises
    ------
    AccessError
        if ``actor`` may not ``admin.point``.
    ParkModelError
        for an unknown tag, limits that are not finite numbers or ``min >= max``; nothing is written.
    """
    require_role(actor, "admin.point")
    pt = TABLES["point"]
    with engine.begin() as conn:
        q = sa.select(pt.c.id, pt.c.code, pt.c.quantity, pt.c.unit, pt.c.min, pt.c.max).where(pt.c.tag == tag)
        if conn.dialect.name == "postgresql":
            q = q.with_for_update()
        row = conn.execute(q).first()
        if row is None:
            raise ParkModelError([("tag", tag, f"unknown point tag {tag!r}")])
        values = {"id": row.code, "quantity": row.quantity, "unit": row.unit, "min": min_value,
                  "max": max_value}
        try:
            point = Point.model_validate(values)
        except ValidationError as err:
            problems = [p for p in _point_problems(err, None, values) if p[0] in ("min", "max")]
            raise ParkModelError(problems or problems_from(err)) from None
        problems = _finite_limits({"min": point.min, "max": point.max})
        if problems:
            raise ParkModelError(problems)
        if (row.min, row.max) == (point.min, point.max):
            return
        conn.execute(sa.update(pt).where(pt.c.id == row.id).values(min=point.min, max=point.max))
        audit(conn, "point_limits_set", tag, {"from": [row.min, row.max], "to": [point.min, point.max]},
              actor.user_id)
