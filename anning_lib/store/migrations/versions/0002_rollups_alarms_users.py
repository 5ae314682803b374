"""15-minute rollups; alarms and work orders; users, roles and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(48)


def upgrade() -> None:
    op.create_table(
        "rollup_15min",
        sa.Column("point_id", sa.Integer, sa.ForeignKey("point.id"), primary_key=True),
        sa.Column("ts_start", UtcDateTime, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("mean", sa.Float, nullable=False),
        sa.Column("min", sa.Float, nullable=False),
        sa.Column("max", sa.Float, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "role",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
    )
    op.create_table(
        "app_user",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("role_id", sa.String(32), sa.ForeignKey("role.id"), nullable=False),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=True),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "alarm",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("point_id", sa.Integer, sa.ForeignKey("point.id"), nullable=True),
        sa.Column("device_id", ID, sa.ForeignKey("device.id"), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("value", sa.Float, nullable=True),
        sa.Column("limit_value", sa.Float, nullable=True),
        sa.Column("raised_at", UtcDateTime, nullable=False),
        sa.Column("cleared_at", UtcDateTime, nullable=True),
        sa.Column("acked_at", UtcDateTime, nullable=True),
        sa.Column("acked_by", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
    )
    op.create_index("ix_alarm_point_id", "alarm", ["point_id"])
    op.create_index("ix_alarm_raised_at", "alarm", ["raised_at"])
    op.create_table(
        "work_order",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.Integer, sa.ForeignKey("alarm.id"), nullable=True),
        sa.Column("device_id", ID, sa.ForeignKey("device.id"), nullable=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee_id", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("closed_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", UtcDateTime, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("detail", sa.JSON, nullable=True),
    )
    op.create_index("ix_audit_log_ts", "audit_log", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_ts", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("work_order")
    op.drop_index("ix_alarm_raised_at", table_name="alarm")
    op.drop_index("ix_alarm_point_id", table_name="alarm")
    op.drop_table("alarm")
    op.drop_table("app_user")
    op.drop_table("role")
    op.drop_table("rollup_15min")
