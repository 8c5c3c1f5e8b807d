"""drop the secondary index of rollup_asset

``ix_rollup_asset_bucket (res, metric, bucket)`` served no screen: every read of the per-asset
rollups names the resolution and the assets (the primary key's order), and the one read by
resolution and metric alone, rebuilding the hourly AQI, is an administrative pass. Each ingested
batch paid for it with an index entry per rollup row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 02:30:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_rollup_asset_bucket", table_name="rollup_asset")


def downgrade() -> None:
    """Recreate the index."""
    op.create_index("ix_rollup_asset_bucket", "rollup_asset", ["res", "metric", "bucket"])
