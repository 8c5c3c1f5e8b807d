"""The KPI registry: every headline number of every domain, gathered from the domains.

Each domain declares its KPIs (``layers/<domain>/``); this module lists them in registry order
and computes them in one call. A KPI's ``id`` is permanent (URLs, exports, the API).
"""
from __future__ import annotations

from sqlalchemy import Connection

from layers import DOMAIN_BY_ID, DOMAINS
from layers._domain import STALE_PERIODS, WINDOWS
from layers._kpi import Kpi, KpiValue, plural

__all__ = ["Kpi", "KpiValue", "KPIS", "KPI_BY_ID", "DEFINITIONS", "FEED_PERIOD", "STALE_PERIODS", "WINDOWS",
           "compute_all", "plural"]

KPIS: list[Kpi] = [k for d in DOMAINS for k in d.kpis]
KPI_BY_ID: dict[str, Kpi] = {k.id: k for k in KPIS}
#: One line per KPI saying what it measures: the cards' hover text and accessible description.
DEFINITIONS: dict[str, str] = {k.id: k.definition for k in KPIS}
#: How often each domain's feed reports, in seconds; older than STALE_PERIODS periods = stale.
FEED_PERIOD: dict[str, int] = {d.id: d.period_s for d in DOMAINS}
assert len(KPI_BY_ID) == len(KPIS), "KPI ids must be unique"
assert all(DEFINITIONS.values()), "every KPI has a definition"


def compute_all(conn: Connection, now: float, window: str = "24h", district: str | None = None,
                aqi_standard: str = "cn", domain: str | None = None,
                thresholds: dict[str, tuple[float, float]] | None = None) -> list[KpiValue]:
    """Compute every KPI (of ``domain``) for the window and district, straight from the store (no cache)."""
    from dashboard.snapshot import compute

    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r} (choose {', '.join(WINDOWS)})")
    domains = DOMAINS if domain is None else [DOMAIN_BY_ID[domain]]
    return compute(conn, now, window, district, thresholds=thresholds, options={"aqi_standard": aqi_standard},
                   domains=domains).kpis
