"""service time-to-close histogram in 2 % bins

``service_close_hist`` / ``service_close_spans`` counted closures per 15-minute bin of time to
close, so the median time to close was off by up to 7.5 minutes (7.625 h for 7.50 h). Their bins
are now whole seconds under a minute, then 2 % wide (:func:`dashboard.store.service_rollup.close_bin`):
the median is within 1 %. Same tables, new bins: refilled from the requests.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:30:00

"""
from typing import Sequence, Union

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Refill the service rollups with the 2 % time-to-close bins."""
    from dashboard.store import service_rollup

    service_rollup.rebuild(op.get_bind())


def downgrade() -> None:
    """Refill the time-to-close histogram with the 15-minute bins of revision 0005."""
    conn = op.get_bind()
    conn.exec_driver_sql("DELETE FROM service_close_hist")
    conn.exec_driver_sql("DELETE FROM service_close_spans")
    dur = "(closed_at - opened_at)"
    for key, by in (("COALESCE(district_id, '')", "COALESCE(district_id, ''), "), ("'*'", "")):
        conn.exec_driver_sql(
            "INSERT INTO service_close_hist (district_id, span, bucket, bin, n) "
            f"SELECT {key}, {dur} / 900 / 32, closed_at / 86400 * 86400, {dur} / 900, count(*) "
            "FROM service_requests WHERE closed_at IS NOT NULL "
            f"GROUP BY {by}{dur} / 900 / 32, closed_at / 86400 * 86400, {dur} / 900")
    conn.exec_driver_sql(
        "INSERT INTO service_close_spans (district_id, bucket, span, n) "
        "SELECT district_id, bucket, span, sum(n) FROM service_close_hist GROUP BY district_id, bucket, span")
