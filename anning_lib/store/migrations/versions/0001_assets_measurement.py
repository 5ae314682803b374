"""Assets (enterprise, building, device, point) and the measurement table.

On PostgreSQL with the TimescaleDB extension available, ``measurement`` becomes a hypertable on ``ts``.
That branch is untested here (no TimescaleDB package on the build machine); without the extension, and on
SQLite, ``measurement`` is a plain table (``WITHOUT ROWID`` on SQLite: the primary key is the storage order).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(48)


def _timescaledb_available(bind) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    row = bind.exec_driver_sql("select 1 from pg_available_extensions where name = 'timescaledb'").first()
    return row is not None


def upgrade() -> None:
    op.create_table(
        "enterprise",
        sa.Column("id", ID, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("sector", sa.String(40), nullable=False),
    )
    op.create_table(
        "building",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=False),
        sa.Column("code", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("footprint_m", sa.Text, nullable=False),
        sa.Column("height_m", sa.Float, nullable=False),
        sa.Column("use", sa.String(40), nullable=False),
        sa.UniqueConstraint("enterprise_id", "code"),
    )
    op.create_table(
        "device",
        sa.Column("id", ID, primary_key=True),
        sa.Column("enterprise_id", ID, sa.ForeignKey("enterprise.id"), nullable=True),
        sa.Column("building_id", sa.Integer, sa.ForeignKey("building.id"), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("carrier", sa.String(32), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("unit_id", sa.Integer, nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
    )
    op.create_index("ix_device_enterprise_id", "device", ["enterprise_id"])
    op.create_table(
        "point",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tag", sa.String(97), nullable=False, unique=True),
        sa.Column("device_id", ID, sa.ForeignKey("device.id"), nullable=False),
        sa.Column("code", ID, nullable=False),
        sa.Column("quantity", sa.String(40), nullable=False),
        sa.Column("unit", sa.String(20), nullable=False),
        sa.Column("min", sa.Float, nullable=True),
        sa.Column("max", sa.Float, nullable=True),
        sa.Column("scale", sa.Float, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("dtype", sa.String(16), nullable=False),
        sa.Column("writable", sa.Boolean, nullable=False),
    )
    op.create_index("ix_point_device_id", "point", ["device_id"])
    op.create_table(
        "measurement",
        sa.Column("point_id", sa.Integer, sa.ForeignKey("point.id"), primary_key=True),
        sa.Column("ts", UtcDateTime, primary_key=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("quality", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
        sqlite_with_rowid=False,
    )
    bind = op.get_bind()
    if _timescaledb_available(bind):  # pragma: no cover - no TimescaleDB on the build machine
        op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        op.execute(
            "SELECT create_hypertable('measurement', 'ts', migrate_data => true, if_not_exists => true)"
        )


def downgrade() -> None:
    op.drop_table("measurement")
    op.drop_index("ix_point_device_id", table_name="point")
    op.drop_table("point")
    op.drop_index("ix_device_enterprise_id", table_name="device")
    op.drop_table("device")
    op.drop_table("building")
    op.drop_table("enterprise")
