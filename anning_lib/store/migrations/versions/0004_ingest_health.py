"""Ingestion health: one row per gateway connection (Modbus server, OPC UA endpoint, MQTT broker, writer).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingest_health",
        sa.Column("source", sa.String(64), primary_key=True),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("connected", sa.Boolean, nullable=False),
        sa.Column("last_seen", UtcDateTime, nullable=True),
        sa.Column("n_samples", sa.BigInteger, nullable=False),
        sa.Column("n_bad", sa.BigInteger, nullable=False),
        sa.Column("n_errors", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
        sa.Column("lag_s", sa.Float, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ingest_health")
