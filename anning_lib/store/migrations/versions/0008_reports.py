"""Reports: checksum, attempts and language of a report run; saved custom report definitions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_run") as b:
        b.add_column(sa.Column("checksum", sa.String(80), nullable=True))
        b.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        b.create_index("ix_report_run_kind_period", ["kind", "enterprise_id", "period_start"])
    op.create_table(
        "report_definition",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("app_user.id"), nullable=True),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("owner_id", "name", name="uq_report_definition_owner_name"),
    )


def downgrade() -> None:
    op.drop_table("report_definition")
    with op.batch_alter_table("report_run") as b:
        b.drop_index("ix_report_run_kind_period")
        b.drop_column("attempts")
        b.drop_column("checksum")
