"""turns: where each turn came from (the service, or a client's history)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05 05:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Every turn stored so far is marked ``service``: turns a client sent along were stored as
    # completed answers and cannot be told apart now. A plain ASCII column: MySQL's table
    # options (utf8mb4, binary comparison) apply to it as to the others. Batch mode rebuilds
    # the table on SQLite; the other databases add the column in place, the default filling
    # the rows already there.
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=16), server_default="service", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("turns", schema=None) as batch_op:
        batch_op.drop_column("source")
