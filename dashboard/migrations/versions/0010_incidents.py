"""incidents: grouped alerts, their checklist, an append-only event log

Issue 19: an incident groups alerts (by hand or by an ``[[incident_rule]]``), has a type whose
standard operating procedure is a checklist, an owner, notes and a handover note; every change is
an ``incident_events`` row the incident can be replayed from.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 09:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0010'
down_revision: Union[str, Sequence[str], None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Create the incident tables."""
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("district_id", sa.String(64)),
        sa.Column("domain", sa.String(32)),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(100)),
        sa.Column("rule", sa.String(100)),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("opened_by", sa.String(100), nullable=False),
        sa.Column("closed_at", sa.Float),
        sa.Column("closed_by", sa.String(100)),
        sa.Column("summary", sa.Text),
        sa.Column("handover", sa.Text),
        sa.Column("handover_at", sa.Float),
        sa.Column("handover_by", sa.String(100)),
        sa.Column("alerts", sa.Integer, nullable=False),
        sa.Column("last_alert_at", sa.Float),
        sa.Column("steps_done", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
    )
    op.create_index("ix_incidents_status", "incidents", ["status", "district_id", "domain"])
    op.create_index("ix_incidents_updated", "incidents", ["updated_at"])
    op.create_table(
        "incident_alerts",
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id"), primary_key=True),
        sa.Column("added_at", sa.Float, nullable=False),
        sa.Column("added_by", sa.String(100), nullable=False),
    )
    op.create_index("ix_incident_alerts_alert", "incident_alerts", ["alert_id"], unique=True)
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(40), nullable=False, unique=True),
        sa.Column("incident_id", sa.Integer, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_index("ix_incident_events_incident", "incident_events", ["incident_id", "seq"], unique=True)
    op.create_index("ix_incident_events_at", "incident_events", ["at"])


def downgrade() -> None:
    """Drop the incident tables."""
    op.drop_index("ix_incident_events_at", "incident_events")
    op.drop_index("ix_incident_events_incident", "incident_events")
    op.drop_table("incident_events")
    op.drop_index("ix_incident_alerts_alert", "incident_alerts")
    op.drop_table("incident_alerts")
    op.drop_index("ix_incidents_updated", "incidents")
    op.drop_index("ix_incidents_status", "incidents")
    op.drop_table("incidents")
