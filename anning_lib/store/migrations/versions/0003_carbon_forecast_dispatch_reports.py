"""Carbon (emission factors, activity data, allowances, trades), forecasts, dispatch and report runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(48)


def upgrade() -> None:
    op.create_table(
        "emission_factor",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("unit", sa.String(40), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("valid_from", sa.Date, nullable=True),
        sa.Column("valid_to", sa.Date, nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.UniqueConstraint("key", "region", "version"),
    )
    op.create_table(
        "activity_data",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("period_start", UtcDateTime, nullable=False),
        sa.Column("period_end", UtcDateTime, nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.UniqueConstraint("enterprise_id", "kind", "item", "period_start"),
    )
    op.create_table(
        "allowance",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("allocated_co2_t", sa.Float, nullable=False),
        sa.Column("surrendered_co2_t", sa.Float, nullable=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.UniqueConstraint("enterprise_id", "year"),
    )
    op.create_table(
        "carbon_trade",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False),
        sa.Column("ts", UtcDateTime, nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity_co2_t", sa.Float, nullable=False),
        sa.Column("price_cny_per_t", sa.Float, nullable=False),
        sa.Column("market", sa.String(32), nullable=False),
    )
    op.create_index("ix_carbon_trade_enterprise_id", "carbon_trade", ["enterprise_id"])
    op.create_table(
        "forecast",
        sa.Column("target", sa.String(100), primary_key=True),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("issued_at", UtcDateTime, primary_key=True),
        sa.Column("ts", UtcDateTime, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("lower", sa.Float, nullable=True),
        sa.Column("upper", sa.Float, nullable=True),
        sa.Column("unit", sa.String(20), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "dispatch_schedule",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("horizon_start", UtcDateTime, nullable=False),
        sa.Column("horizon_end", UtcDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("objective_cny", sa.Float, nullable=True),
        sa.Column("plan", sa.JSON, nullable=True),
        sa.Column("approved_by", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("approved_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "dispatch_command",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("schedule_id", sa.Integer, sa.ForeignKey("dispatch_schedule.id"), nullable=True),
        sa.Column("device_id", ID, sa.ForeignKey("device.id"), nullable=False),
        sa.Column("due_at", UtcDateTime, nullable=False),
        sa.Column("setpoint_p_kw", sa.Float, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_by", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("issued_at", UtcDateTime, nullable=True),
        sa.Column("result", sa.Text, nullable=False),
    )
    op.create_index("ix_dispatch_command_device_id", "dispatch_command", ["device_id"])
    op.create_table(
        "report_run",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=True),
        sa.Column("period_start", UtcDateTime, nullable=True),
        sa.Column("period_end", UtcDateTime, nullable=True),
        sa.Column("params", sa.JSON, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("output_path", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("report_run")
    op.drop_index("ix_dispatch_command_device_id", table_name="dispatch_command")
    op.drop_table("dispatch_command")
    op.drop_table("dispatch_schedule")
    op.drop_table("forecast")
    op.drop_index("ix_carbon_trade_enterprise_id", table_name="carbon_trade")
    op.drop_table("carbon_trade")
    op.drop_table("allowance")
    op.drop_table("activity_data")
    op.drop_table("emission_factor")
