"""assets revision

A ``meta`` row ``assets_rev`` that changes (to a new random token) whenever a row of ``assets`` is
inserted, updated or deleted, by triggers, whoever writes. Screens keep the asset directory
(ids, names, districts, attributes) in memory and re-read it only when the token changes, so the
hot latest-value reads need no join with ``assets``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 22:40:00

"""
from typing import Sequence, Union

from alembic import op

from dashboard.store.schema import ASSETS_REV_KEY

# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_SQLITE_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    """Add the revision row and the triggers that renew it."""
    bind = op.get_bind()
    op.execute(f"DELETE FROM meta WHERE key = '{ASSETS_REV_KEY}'")
    if bind.dialect.name == "sqlite":
        op.execute(f"INSERT INTO meta (key, value) VALUES ('{ASSETS_REV_KEY}', lower(hex(randomblob(8))))")
        for ev in _SQLITE_EVENTS:  # SQLite has row triggers only: cheap enough for an asset table
            op.execute(f"CREATE TRIGGER assets_rev_{ev} AFTER {ev.upper()} ON assets BEGIN "
                       f"UPDATE meta SET value = lower(hex(randomblob(8))) WHERE key = '{ASSETS_REV_KEY}'; END")
    else:
        op.execute(f"INSERT INTO meta (key, value) VALUES ('{ASSETS_REV_KEY}', md5(random()::text || clock_timestamp()::text))")
        op.execute(
            "CREATE OR REPLACE FUNCTION panorama_assets_rev() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"UPDATE meta SET value = md5(random()::text || clock_timestamp()::text) WHERE key = '{ASSETS_REV_KEY}'; "
            "RETURN NULL; END $$")
        op.execute("CREATE TRIGGER assets_rev AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON assets "
                   "FOR EACH STATEMENT EXECUTE FUNCTION panorama_assets_rev()")


def downgrade() -> None:
    """Drop the triggers and the row."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for ev in _SQLITE_EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS assets_rev_{ev}")
    else:
        op.execute("DROP TRIGGER IF EXISTS assets_rev ON assets")
        op.execute("DROP FUNCTION IF EXISTS panorama_assets_rev()")
    op.execute(f"DELETE FROM meta WHERE key = '{ASSETS_REV_KEY}'")
