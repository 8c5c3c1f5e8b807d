"""escalation clock: the unacknowledged time that counts, paused while muted or shelved

An alert escalates after ``escalate_after`` of being open, new and neither muted nor shelved, not
of wall time since it opened: ``alerts.unacked_s`` is the time counted since it opened or last
escalated, up to ``unacked_since`` (when the clock last started; NULL while paused). Alerts not
resolved are backfilled from their event history, as the store's fold computes it.

Revision ID: 0011
Revises: 0010
Create Date: 2027-01-08 09:00:00

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0011'
down_revision: Union[str, Sequence[str], None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OPEN_STATES = ("firing", "nodata", "error")


def upgrade() -> None:
    """Add the two columns and walk each open alert's events to fill them."""
    with op.batch_alter_table("alerts") as b:
        b.add_column(sa.Column("unacked_s", sa.Float, nullable=False, server_default="0"))
        b.add_column(sa.Column("unacked_since", sa.Float))
    conn = op.get_bind()
    alerts = sa.table("alerts", sa.column("id"), sa.column("status"), sa.column("unacked_s"),
                      sa.column("unacked_since"))
    events = sa.table("alert_events", sa.column("alert_id"), sa.column("seq"), sa.column("at"),
                      sa.column("action"), sa.column("detail", sa.JSON))
    for (aid,) in conn.execute(sa.select(alerts.c.id).where(alerts.c.status != "resolved")).all():
        r = {"status": "new", "state": None, "muted": None, "shelved": False, "acked": False, "assignee": False}
        counted, since = 0.0, None
        for at, action, d in conn.execute(sa.select(events.c.at, events.c.action, events.c.detail)
                                          .where(events.c.alert_id == aid).order_by(events.c.seq)).all():
            d = d or {}
            if action in ("open", "engine"):
                r.update(state=d.get("state"), muted=d.get("muted"))
            elif action == "ack":
                r.update(status="acknowledged", acked=True)
            elif action == "assign":
                r.update(status="assigned", acked=True, assignee=True)
            elif action == "resolve":
                r["status"] = "resolved"
            elif action == "reopen":
                r["status"] = "assigned" if r["assignee"] else "acknowledged" if r["acked"] else "new"
            elif action in ("shelve", "unshelve"):
                r["shelved"] = action == "shelve"
            if since is not None:
                counted += max(0.0, at - since)
            if action == "escalate":
                counted = 0.0
            running = r["status"] == "new" and r["state"] in OPEN_STATES and not r["muted"] and not r["shelved"]
            since = at if running else None
        conn.execute(sa.update(alerts).where(alerts.c.id == aid).values(unacked_s=counted, unacked_since=since))


def downgrade() -> None:
    """Drop the escalation clock."""
    with op.batch_alter_table("alerts") as b:
        b.drop_column("unacked_since")
        b.drop_column("unacked_s")
