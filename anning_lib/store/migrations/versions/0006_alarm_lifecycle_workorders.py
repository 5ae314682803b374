"""Alarm lifecycle (ISA-18.2 states, shelving, flood parent, history), alarm rules editable in the database,
notifications with retries, and work orders with priority, due time and comments.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.String(48)


def upgrade() -> None:
    with op.batch_alter_table("alarm") as b:
        b.add_column(sa.Column("rule_id", sa.String(64), nullable=True))
        b.add_column(sa.Column("target", sa.String(100), nullable=False, server_default=""))
        b.add_column(sa.Column("enterprise_id", ID, nullable=True))
        b.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="active_unack"))
        b.add_column(sa.Column("shelved_until", UtcDateTime, nullable=True))
        b.add_column(sa.Column("parent_id", sa.Integer, nullable=True))
        b.add_column(sa.Column("updated_at", UtcDateTime, nullable=True))
        b.create_foreign_key("fk_alarm_enterprise", "enterprise", ["enterprise_id"], ["id"])
        b.create_foreign_key("fk_alarm_parent", "alarm", ["parent_id"], ["id"])
        b.create_index("ix_alarm_state", ["state"])
        b.create_index("ix_alarm_enterprise_id", ["enterprise_id"])
    op.create_table(
        "alarm_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.Integer, sa.ForeignKey("alarm.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("ts", UtcDateTime, nullable=False),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("detail", sa.JSON, nullable=True),
    )
    op.create_table(
        "alarm_rule",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("updated_by", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
    )
    op.create_table(
        "notification",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.Integer, sa.ForeignKey("alarm.id", ondelete="CASCADE"), nullable=True, index=True),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
    )
    with op.batch_alter_table("work_order") as b:
        b.add_column(sa.Column("priority", sa.String(8), nullable=False, server_default="P3"))
        b.add_column(sa.Column("due_at", UtcDateTime, nullable=True))
        b.add_column(sa.Column("enterprise_id", ID, nullable=True))
        b.add_column(sa.Column("created_by", sa.Integer, nullable=True))
        b.create_foreign_key("fk_work_order_enterprise", "enterprise", ["enterprise_id"], ["id"])
        b.create_foreign_key("fk_work_order_created_by", "app_user", ["created_by"], ["id"])
        b.create_index("ix_work_order_status", ["status"])
    op.create_table(
        "work_order_comment",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("work_order_id", sa.Integer, sa.ForeignKey("work_order.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("ts", UtcDateTime, nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("work_order_comment")
    with op.batch_alter_table("work_order") as b:
        b.drop_index("ix_work_order_status")
        b.drop_constraint("fk_work_order_created_by", type_="foreignkey")
        b.drop_constraint("fk_work_order_enterprise", type_="foreignkey")
        for c in ("created_by", "enterprise_id", "due_at", "priority"):
            b.drop_column(c)
    op.drop_table("notification")
    op.drop_table("alarm_rule")
    op.drop_table("alarm_event")
    with op.batch_alter_table("alarm") as b:
        b.drop_index("ix_alarm_enterprise_id")
        b.drop_index("ix_alarm_state")
        b.drop_constraint("fk_alarm_parent", type_="foreignkey")
        b.drop_constraint("fk_alarm_enterprise", type_="foreignkey")
        for c in ("updated_at", "parent_id", "shelved_until", "state", "enterprise_id", "target", "rule_id"):
            b.drop_column(c)
