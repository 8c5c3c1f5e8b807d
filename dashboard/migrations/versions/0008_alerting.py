"""alerting: engine state, ticks, alerts, their events, silences

Issue 19: the alert engine's state per alert key, one row per evaluation tick (the election of
the tick's evaluator), one row per alert occurrence with its lifecycle, an append-only event log
each row can be replayed from, and maintenance windows. Replaces the unused ``alerts`` table of
0001 (nothing ever wrote it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 09:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: Union[str, Sequence[str], None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OPEN = sa.text("status != 'resolved'")


def upgrade() -> None:
    """Drop the unused alerts table of 0001; create the alerting tables."""
    op.drop_table("alerts")
    op.create_table(
        "alert_state",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("entry", sa.JSON, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "alert_ticks",
        sa.Column("tick", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("ms", sa.Float, nullable=False),
        sa.Column("transitions", sa.Integer, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("district_id", sa.String(64)),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("asset", sa.String(128)),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("repeat", sa.Integer, nullable=False),
        sa.Column("muted", sa.String(200)),
        sa.Column("clear_since", sa.Float),
        sa.Column("acknowledged_by", sa.String(100)),
        sa.Column("acknowledged_at", sa.Float),
        sa.Column("ack_note", sa.Text),
        sa.Column("assignee", sa.String(100)),
        sa.Column("assignee_kind", sa.String(8)),
        sa.Column("shelved_until", sa.Float),
        sa.Column("shelved_by", sa.String(100)),
        sa.Column("resolved_at", sa.Float),
        sa.Column("resolved_by", sa.String(100)),
        sa.Column("escalation", sa.Integer, nullable=False),
        sa.Column("escalated_at", sa.Float),
        sa.Column("escalated_to", sa.String(100)),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
    )
    op.create_index("ix_alerts_key_open", "alerts", ["key"], unique=True, sqlite_where=OPEN, postgresql_where=OPEN)
    op.create_index("ix_alerts_status", "alerts", ["status", "severity"])
    op.create_index("ix_alerts_district", "alerts", ["district_id", "id"])
    op.create_index("ix_alerts_updated", "alerts", ["updated_at"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(40), nullable=False, unique=True),
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_status", sa.String(16)),
        sa.Column("to_status", sa.String(16)),
        sa.Column("note", sa.Text),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id", "seq"], unique=True)
    op.create_index("ix_alert_events_at", "alert_events", ["at"])
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(100)),
        sa.Column("domain", sa.String(32)),
        sa.Column("district_id", sa.String(64)),
        sa.Column("asset", sa.String(128)),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("ended_by", sa.String(100)),
    )
    op.create_index("ix_silences_ends", "silences", ["ends_at"])


def downgrade() -> None:
    """Drop the alerting tables; put back the (empty) alerts table of 0001."""
    op.drop_index("ix_silences_ends", "silences")
    op.drop_table("silences")
    op.drop_index("ix_alert_events_at", "alert_events")
    op.drop_index("ix_alert_events_alert", "alert_events")
    op.drop_table("alert_events")
    for ix in ("ix_alerts_updated", "ix_alerts_district", "ix_alerts_status", "ix_alerts_key_open"):
        op.drop_index(ix, "alerts")
    op.drop_table("alerts")
    op.drop_table("alert_ticks")
    op.drop_table("alert_state")
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("district_id", sa.String(64)),
        sa.Column("severity", sa.Integer, nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("opened_at", sa.BigInteger, nullable=False),
        sa.Column("acknowledged_at", sa.BigInteger),
        sa.Column("acknowledged_by", sa.String(200)),
        sa.Column("closed_at", sa.BigInteger),
    )
