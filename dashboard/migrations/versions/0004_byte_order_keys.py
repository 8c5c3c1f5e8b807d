"""byte-order text keys and room for in-place updates (PostgreSQL)

The text key columns of readings, latest and the rollups use the "C" collation (byte
comparisons: ids and metric names are ASCII, so every order and equality is unchanged), and the
tables updated in place on every write keep a fifth of each page free. Nothing changes on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 23:00:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_KEYS = {"readings": {"metric": 32}, "latest": {"metric": 32}, "rollup_asset": {"metric": 32},
         "rollup_district": {"district_id": 64, "metric": 32}}
_UPDATED = ("latest", "rollup_asset", "rollup_district")


def _alter(collate: str, fillfactor: int) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, cols in _KEYS.items():
        for col, n in cols.items():
            op.execute(f'ALTER TABLE {table} ALTER COLUMN {col} TYPE varchar({n}){collate}')
    for table in _UPDATED:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {fillfactor})")


def upgrade() -> None:
    """Byte-order keys; fillfactor 80 (new pages; existing ones fill up as before)."""
    _alter(' COLLATE "C"', 80)


def downgrade() -> None:
    """The database's default collation; full pages."""
    _alter("", 100)
