"""outbox: notifications waiting to go out

Alert notifications (issue 19) are written to this table in the transaction of the state change
that causes them, and a deliverer sends them (webhook, e-mail): one row per change per channel,
its key unique, so a change is never queued twice and a delivered row never sent again.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 09:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: Union[str, Sequence[str], None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create the outbox."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("delivered_at", sa.Float),
        sa.Column("failed_at", sa.Float),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_due", "outbox", ["next_attempt_at"])


def downgrade() -> None:
    """Drop the outbox."""
    op.drop_index("ix_outbox_due", "outbox")
    op.drop_table("outbox")
