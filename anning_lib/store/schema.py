"""SQLAlchemy models of the store (ARCHITECTURE.md §4).

These models describe the schema at the *head* revision; the migrations in
``anning_lib/store/migrations/versions`` build it (and ``tests/test_store_migrations.py`` checks that the two
agree). Change a model only together with a new migration.

Conventions: times are :class:`~anning_lib.store.types.UtcDateTime` (UTC; shown in Asia/Shanghai by the
readers); units are in column names (``co2_t``, ``p_kw``, ``price_cny_per_t``) or, where a table holds many
units, in an explicit ``unit`` column.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from anning_lib.store.types import NAMING, UtcDateTime, utcnow

ID_LEN = 48


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


# ============================================================================================ 0001: assets
class Enterprise(Base):
    """An enterprise of the park (natural key: the park model's id, e.g. ``E01``)."""

    __tablename__ = "enterprise"
    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    name_en: Mapped[str] = mapped_column(sa.String(200))
    sector: Mapped[str] = mapped_column(sa.String(40))


class Building(Base):
    """A building as a prism: footprint polygon [m] (JSON text ``[[x, y], ...]``) extruded to ``height_m`` [m].

    Building ids are unique within an enterprise only, so the natural key is ``(enterprise_id, code)``.
    """

    __tablename__ = "building"
    __table_args__ = (sa.UniqueConstraint("enterprise_id", "code"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprise.id"))
    code: Mapped[str] = mapped_column(sa.String(ID_LEN))
    name: Mapped[str] = mapped_column(sa.String(200))
    footprint_m: Mapped[str] = mapped_column(sa.Text)
    height_m: Mapped[float] = mapped_column(sa.Float)
    use: Mapped[str] = mapped_column(sa.String(40))


class Device(Base):
    """A device: meter, PV, storage, boiler, process line... ``enterprise_id`` is NULL for park devices."""

    __tablename__ = "device"
    id: Mapped[str] = mapped_column(sa.String(ID_LEN), primary_key=True)
    enterprise_id: Mapped[str | None] = mapped_column(sa.ForeignKey("enterprise.id"), index=True)
    building_id: Mapped[int | None] = mapped_column(sa.ForeignKey("building.id"))
    name: Mapped[str] = mapped_column(sa.String(200))
    type: Mapped[str] = mapped_column(sa.String(32))
    carrier: Mapped[str] = mapped_column(sa.String(32))
    protocol: Mapped[str] = mapped_column(sa.String(16))
    unit_id: Mapped[int | None] = mapped_column(sa.Integer)
    params: Mapped[dict] = mapped_column(sa.JSON)


class Point(Base):
    """A measured quantity of a device. ``id`` is a stable surrogate; ``tag`` (``DEV.point``) the natural key.

    ``min``/``max`` are plausibility limits in ``unit``; ``address`` is the protocol address as text (Modbus
    register number, OPC UA node id or MQTT topic); engineering value = raw * ``scale``.
    """

    __tablename__ = "point"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tag: Mapped[str] = mapped_column(sa.String(2 * ID_LEN + 1), unique=True)
    device_id: Mapped[str] = mapped_column(sa.ForeignKey("device.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(ID_LEN))
    quantity: Mapped[str] = mapped_column(sa.String(40))
    unit: Mapped[str] = mapped_column(sa.String(20))
    min: Mapped[float | None] = mapped_column(sa.Float)
    max: Mapped[float | None] = mapped_column(sa.Float)
    scale: Mapped[float] = mapped_column(sa.Float)
    address: Mapped[str] = mapped_column(sa.Text)
    dtype: Mapped[str] = mapped_column(sa.String(16))
    writable: Mapped[bool] = mapped_column(sa.Boolean)


class Measurement(Base):
    """One value of one point at one instant, in the point's ``unit``. ``quality`` 0 = good."""

    __tablename__ = "measurement"
    __table_args__ = {"sqlite_with_rowid": False}
    point_id: Mapped[int] = mapped_column(sa.ForeignKey("point.id"), primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    value: Mapped[float] = mapped_column(sa.Float)
    quality: Mapped[int] = mapped_column(sa.SmallInteger, server_default=sa.text("0"))


# ============================================================================= 0002: rollups, alarms, users
class Rollup15Min(Base):
    """15-minute aggregate of a point; bucket ``[ts_start, ts_start + 15 min)`` aligned to UTC quarter hours."""

    __tablename__ = "rollup_15min"
    __table_args__ = {"sqlite_with_rowid": False}
    point_id: Mapped[int] = mapped_column(sa.ForeignKey("point.id"), primary_key=True)
    ts_start: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    n: Mapped[int] = mapped_column(sa.Integer)
    mean: Mapped[float] = mapped_column(sa.Float)
    min: Mapped[float] = mapped_column(sa.Float)
    max: Mapped[float] = mapped_column(sa.Float)


class Role(Base):
    """admin, operator, enterprise, visitor (ARCHITECTURE.md §6)."""

    __tablename__ = "role"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")


class User(Base):
    """A portal user (table ``app_user``: ``user`` is a reserved word in PostgreSQL)."""

    __tablename__ = "app_user"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    role_id: Mapped[str] = mapped_column(sa.ForeignKey("role.id"))
    enterprise_id: Mapped[str | None] = mapped_column(sa.ForeignKey("enterprise.id"))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    # 0007: lock-out after repeated failed logins
    failed_logins: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Alarm(Base):
    """A raised alarm on a point or device; cleared and acknowledged separately."""

    __tablename__ = "alarm"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    point_id: Mapped[int | None] = mapped_column(sa.ForeignKey("point.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(sa.ForeignKey("device.id"))
    kind: Mapped[str] = mapped_column(sa.String(40))
    severity: Mapped[str] = mapped_column(sa.String(16))
    message: Mapped[str] = mapped_column(sa.Text, default="")
    value: Mapped[float | None] = mapped_column(sa.Float)
    limit_value: Mapped[float | None] = mapped_column(sa.Float)
    raised_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    cleared_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    acked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    acked_by: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    # 0006: lifecycle (ISA-18.2 states), the rule that raised it, shelving, flood parent
    rule_id: Mapped[str | None] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(100), server_default="")
    enterprise_id: Mapped[str | None] = mapped_column(sa.ForeignKey("enterprise.id", name="fk_alarm_enterprise"),
                                                      index=True)
    state: Mapped[str] = mapped_column(sa.String(16), server_default="active_unack", index=True)
    shelved_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    parent_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alarm.id", name="fk_alarm_parent"))
    updated_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class WorkOrder(Base):
    """A maintenance task, usually opened from an alarm."""

    __tablename__ = "work_order"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alarm.id"))
    device_id: Mapped[str | None] = mapped_column(sa.ForeignKey("device.id"))
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)
    assignee_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # 0006
    priority: Mapped[str] = mapped_column(sa.String(8), server_default="P3")
    due_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    enterprise_id: Mapped[str | None] = mapped_column(sa.ForeignKey("enterprise.id", name="fk_work_order_enterprise"))
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id", name="fk_work_order_created_by"))


class AuditLog(Base):
    """Who did what when (every setpoint write, approval, user or factor change)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(200), default="")
    detail: Mapped[dict | None] = mapped_column(sa.JSON)


# ============================================================== 0003: carbon, forecast, dispatch, reports
class EmissionFactor(Base):
    """An emission factor, versioned, with its source (e.g. grid factor 0.5366 tCO2/MWh, MEE 2022)."""

    __tablename__ = "emission_factor"
    __table_args__ = (sa.UniqueConstraint("key", "region", "version"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(64))
    region: Mapped[str] = mapped_column(sa.String(64), default="")
    value: Mapped[float] = mapped_column(sa.Float)
    unit: Mapped[str] = mapped_column(sa.String(40))
    version: Mapped[str] = mapped_column(sa.String(32))
    valid_from: Mapped[dt.date | None] = mapped_column(sa.Date)
    valid_to: Mapped[dt.date | None] = mapped_column(sa.Date)
    source: Mapped[str] = mapped_column(sa.Text)


class ActivityData(Base):
    """Activity data of an enterprise over ``[period_start, period_end)``: fuel, material, heat, electricity."""

    __tablename__ = "activity_data"
    __table_args__ = (sa.UniqueConstraint("enterprise_id", "kind", "item", "period_start"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprise.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    item: Mapped[str] = mapped_column(sa.String(64))
    period_start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    period_end: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    amount: Mapped[float] = mapped_column(sa.Float)
    unit: Mapped[str] = mapped_column(sa.String(20))
    source: Mapped[str] = mapped_column(sa.String(64), default="metered")


class Forecast(Base):
    """One forecast value of ``target`` (a point tag or a named series) for instant ``ts``, issued at
    ``issued_at`` by ``model``; ``lower``/``upper`` an optional interval, all in ``unit``."""

    __tablename__ = "forecast"
    __table_args__ = {"sqlite_with_rowid": False}
    target: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    model: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime, primary_key=True)
    value: Mapped[float] = mapped_column(sa.Float)
    lower: Mapped[float | None] = mapped_column(sa.Float)
    upper: Mapped[float | None] = mapped_column(sa.Float)
    unit: Mapped[str] = mapped_column(sa.String(20))


class DispatchSchedule(Base):
    """A dispatch plan over ``[horizon_start, horizon_end)``; ``plan`` JSON holds per-step setpoints [kW]."""

    __tablename__ = "dispatch_schedule"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    strategy: Mapped[str] = mapped_column(sa.String(64))
    horizon_start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    horizon_end: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    objective_cny: Mapped[float | None] = mapped_column(sa.Float)
    plan: Mapped[dict | None] = mapped_column(sa.JSON)
    approved_by: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    approved_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class DispatchCommand(Base):
    """A setpoint for a device (``p_kw`` > 0 discharges), advisory or executed, with its outcome."""

    __tablename__ = "dispatch_command"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("dispatch_schedule.id"))
    device_id: Mapped[str] = mapped_column(sa.ForeignKey("device.id"), index=True)
    due_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    setpoint_p_kw: Mapped[float] = mapped_column(sa.Float)
    mode: Mapped[str] = mapped_column(sa.String(16), default="advisory")
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    issued_by: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    issued_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[str] = mapped_column(sa.Text, default="")


class ReportRun(Base):
    """A run of a report notebook (papermill) and where its output went."""

    __tablename__ = "report_run"
    __table_args__ = (sa.Index("ix_report_run_kind_period", "kind", "enterprise_id", "period_start"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    enterprise_id: Mapped[str | None] = mapped_column(sa.ForeignKey("enterprise.id"))
    period_start: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    period_end: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    params: Mapped[dict | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    requested_by: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    started_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    output_path: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # 0008: the output's SHA-256, how many tries the run took
    checksum: Mapped[str | None] = mapped_column(sa.String(80))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")


# ============================================================== 0004: ingestion health
class IngestHealth(Base):
    """Health of one gateway connection, refreshed every few seconds by ``anning ingest run``."""

    __tablename__ = "ingest_health"
    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    protocol: Mapped[str] = mapped_column(sa.String(16))
    connected: Mapped[bool] = mapped_column(sa.Boolean)
    last_seen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    n_samples: Mapped[int] = mapped_column(sa.BigInteger)
    n_bad: Mapped[int] = mapped_column(sa.BigInteger)
    n_errors: Mapped[int] = mapped_column(sa.BigInteger)
    last_error: Mapped[str] = mapped_column(sa.Text)
    lag_s: Mapped[float | None] = mapped_column(sa.Float)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


# ============================================================== 0005: carbon results and ledger
class CarbonRun(Base):
    """One carbon account of an enterprise over ``[period_start, period_end)`` with one factor-set version.

    Recomputing the same enterprise, period and factor version replaces the run; another factor version adds a
    run, so results under earlier factor sets stay retrievable.
    """

    __tablename__ = "carbon_run"
    __table_args__ = (sa.UniqueConstraint("enterprise_id", "period_start", "period_end", "factor_version"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprise.id"), index=True)
    period_start: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    period_end: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    factor_version: Mapped[str] = mapped_column(sa.String(32))
    computed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    total_co2_t: Mapped[float] = mapped_column(sa.Float)


class CarbonLine(Base):
    """One line of a carbon account: activity x factor = emission, with the factor's source and the formula."""

    __tablename__ = "carbon_line"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("carbon_run.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(sa.String(16))          # scope1, scope2_location, scope2_market, scope3
    category: Mapped[str] = mapped_column(sa.String(40))       # combustion, process, electricity, heat, ...
    item: Mapped[str] = mapped_column(sa.String(64))           # natural_gas, limestone, electricity, ...
    activity_amount: Mapped[float] = mapped_column(sa.Float)
    activity_unit: Mapped[str] = mapped_column(sa.String(20))
    activity_source: Mapped[str] = mapped_column(sa.String(200))
    factor_value: Mapped[float] = mapped_column(sa.Float)
    factor_unit: Mapped[str] = mapped_column(sa.String(40))
    factor_source: Mapped[str] = mapped_column(sa.Text)
    formula: Mapped[str] = mapped_column(sa.Text)
    co2_t: Mapped[float] = mapped_column(sa.Float)


class CarbonLedger(Base):
    """One movement of carbon assets of an enterprise for a compliance year [t CO2].

    ``instrument``: CEA (national allowance) or CCER (certified reduction); ``kind``: allocated, bought, sold,
    surrendered; ``quantity_t`` > 0 (the kind gives the sign); ``price_cny_per_t`` for trades.
    """

    __tablename__ = "carbon_ledger"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    enterprise_id: Mapped[str] = mapped_column(sa.ForeignKey("enterprise.id"), index=True)
    year: Mapped[int] = mapped_column(sa.Integer)
    instrument: Mapped[str] = mapped_column(sa.String(8))
    kind: Mapped[str] = mapped_column(sa.String(16))
    quantity_t: Mapped[float] = mapped_column(sa.Float)
    price_cny_per_t: Mapped[float | None] = mapped_column(sa.Float)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    market: Mapped[str] = mapped_column(sa.String(32), default="")
    note: Mapped[str] = mapped_column(sa.Text, default="")


# ============================================================== 0006: alarm lifecycle, rules, notifications, work orders
class AlarmEvent(Base):
    """One step in an alarm's history: raised, acked, cleared, shelved, unshelved, suppressed, notified."""

    __tablename__ = "alarm_event"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(sa.ForeignKey("alarm.id", ondelete="CASCADE"), index=True)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    action: Mapped[str] = mapped_column(sa.String(24))
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    detail: Mapped[dict | None] = mapped_column(sa.JSON)


class AlarmRuleRow(Base):
    """An alarm rule edited by an admin (the same schema as ``data/alarms/rules.yaml``); overrides a file rule
    of the same id."""

    __tablename__ = "alarm_rule"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    definition: Mapped[dict] = mapped_column(sa.JSON)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))


class Notification(Base):
    """A message about an alarm on one channel (e-mail, webhook), with its delivery attempts."""

    __tablename__ = "notification"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alarm.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    recipient: Mapped[str] = mapped_column(sa.String(200))
    subject: Mapped[str] = mapped_column(sa.String(200))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class ReportDefinition(Base):
    """A saved custom report (自定义报表): metrics, dimension, period, granularity and filters as JSON
    (:class:`anning_lib.reports.custom.Definition`), owned by the user who saved it."""

    __tablename__ = "report_definition"
    __table_args__ = (sa.UniqueConstraint("owner_id", "name", name="uq_report_definition_owner_name"),)
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    owner_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    definition: Mapped[dict] = mapped_column(sa.JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class WorkOrderComment(Base):
    """A comment on a work order."""

    __tablename__ = "work_order_comment"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    work_order_id: Mapped[int] = mapped_column(sa.ForeignKey("work_order.id", ondelete="CASCADE"), index=True)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("app_user.id"))
    text: Mapped[str] = mapped_column(sa.Text)


TABLES: dict[str, sa.Table] = dict(Base.metadata.tables)
"""Every table of the head schema by name."""
