"""Carbon accounts (runs and lines, per factor version) and the carbon-asset ledger (CEA and CCER).

Replaces the unused ``allowance`` and ``carbon_trade`` tables of 0003 by one ledger of movements.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = sa.String(48)


def upgrade() -> None:
    op.drop_table("carbon_trade")
    op.drop_table("allowance")
    op.create_table(
        "carbon_run",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False, index=True),
        sa.Column("period_start", UtcDateTime, nullable=False),
        sa.Column("period_end", UtcDateTime, nullable=False),
        sa.Column("factor_version", sa.String(32), nullable=False),
        sa.Column("computed_at", UtcDateTime, nullable=False),
        sa.Column("total_co2_t", sa.Float, nullable=False),
        sa.UniqueConstraint("enterprise_id", "period_start", "period_end", "factor_version"),
    )
    op.create_table(
        "carbon_line",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("carbon_run.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("category", sa.String(40), nullable=False),
        sa.Column("item", sa.String(64), nullable=False),
        sa.Column("activity_amount", sa.Float, nullable=False),
        sa.Column("activity_unit", sa.String(20), nullable=False),
        sa.Column("activity_source", sa.String(200), nullable=False),
        sa.Column("factor_value", sa.Float, nullable=False),
        sa.Column("factor_unit", sa.String(40), nullable=False),
        sa.Column("factor_source", sa.Text, nullable=False),
        sa.Column("formula", sa.Text, nullable=False),
        sa.Column("co2_t", sa.Float, nullable=False),
    )
    op.create_table(
        "carbon_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False, index=True),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("instrument", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("quantity_t", sa.Float, nullable=False),
        sa.Column("price_cny_per_t", sa.Float, nullable=True),
        sa.Column("ts", UtcDateTime, nullable=False),
        sa.Column("market", sa.String(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("carbon_ledger")
    op.drop_table("carbon_line")
    op.drop_table("carbon_run")
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
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False, index=True),
        sa.Column("ts", UtcDateTime, nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity_co2_t", sa.Float, nullable=False),
        sa.Column("price_cny_per_t", sa.Float, nullable=False),
        sa.Column("market", sa.String(32), nullable=False),
    )
