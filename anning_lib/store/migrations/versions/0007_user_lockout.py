"""Portal logins: failed-login counter, lock-out, last login and password change times on ``app_user``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from anning_lib.store.types import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_user") as b:
        b.add_column(sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"))
        b.add_column(sa.Column("locked_until", UtcDateTime, nullable=True))
        b.add_column(sa.Column("last_login_at", UtcDateTime, nullable=True))
        b.add_column(sa.Column("password_changed_at", UtcDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app_user") as b:
        for col in ("password_changed_at", "last_login_at", "locked_until", "failed_logins"):
            b.drop_column(col)
