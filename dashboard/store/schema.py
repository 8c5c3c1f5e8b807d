"""The SQL store: tables, engine, and schema creation (SQLite or PostgreSQL).

Times are integer seconds since the Unix epoch (UTC) everywhere: compact, fast to index,
identical on both engines.
"""
from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)

metadata = MetaData()

#: Text key columns of the write-heavy tables. On PostgreSQL they use the "C" collation: plain
#: byte comparisons in their B-trees (ids and metric names are ASCII; a database's default
#: locale such as C.UTF-8 compares through the C library, a fifth of ingest time). Migration 0004.
KEY32 = String(32).with_variant(String(32, collation="C"), "postgresql")
KEY64 = String(64).with_variant(String(64, collation="C"), "postgresql")
#: Tables whose rows are updated in place on every write (latest values, open rollup buckets):
#: room in each page keeps those updates on the page (HOT) without new index entries.
UPDATED_IN_PLACE = {"postgresql_with": {"fillfactor": 80}}

districts = Table(
    "districts", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("name_local", String(200)),
    Column("population", BigInteger),
    Column("area_km2", Float),
    Column("label_lon", Float),
    Column("label_lat", Float),
    Column("geometry", Text, nullable=False),  # GeoJSON geometry, EPSG:4326
)

assets = Table(
    "assets", metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("id", String(128), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("district_id", String(64), ForeignKey("districts.id")),
    Column("name", String(200)),
    Column("lon", Float),
    Column("lat", Float),
    Column("geometry", Text),  # GeoJSON geometry
    Column("attributes", JSON, nullable=False, default=dict),
    Index("ix_assets_kind", "kind", "district_id"),
    # covers the assets part of the latest-values join (map layers, KPIs): no read of the wide rows
    Index("ix_assets_kind_cover", "kind", "pk", "id", "name", "district_id"),
)

readings = Table(
    "readings", metadata,
    Column("asset_pk", Integer, primary_key=True),
    Column("metric", KEY32, primary_key=True),
    Column("ts", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,
)

latest = Table(
    "latest", metadata,
    Column("asset_pk", Integer, primary_key=True),
    Column("metric", KEY32, primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("value", Float, nullable=False),
    sqlite_with_rowid=False,
    **UPDATED_IN_PLACE,
)

rollup_asset = Table(
    "rollup_asset", metadata,
    Column("res", Integer, primary_key=True),
    Column("asset_pk", Integer, primary_key=True),
    Column("metric", KEY32, primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("sum", Float, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    sqlite_with_rowid=False,
    **UPDATED_IN_PLACE,
)

rollup_district = Table(
    "rollup_district", metadata,
    Column("res", Integer, primary_key=True),
    Column("district_id", KEY64, primary_key=True),  # "*" = the whole city
    Column("metric", KEY32, primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("sum", Float, nullable=False),
    Column("min", Float, nullable=False),
    Column("max", Float, nullable=False),
    sqlite_with_rowid=False,
    **UPDATED_IN_PLACE,
)

#: The AQI of each air-quality station and hour, per AQI standard, derived at ingest from the
#: hourly per-asset rollups of the six pollutants (the AQI of the hour's mean concentrations;
#: NULL when none can be indexed). Kept current by the reading ingest (the air-quality domain's ingest hook).
aqi_hourly = Table(
    "aqi_hourly", metadata,
    Column("standard", String(8), primary_key=True),  # cn | us
    Column("bucket", BigInteger, primary_key=True),  # start of the hour
    Column("asset_pk", Integer, primary_key=True),
    Column("aqi", Float),
    sqlite_with_rowid=False,
)

service_categories = Table(
    "service_categories", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("sla_hours", Float, nullable=False),
)

service_requests = Table(
    "service_requests", metadata,
    Column("id", String(128), primary_key=True),
    Column("category_id", String(64), ForeignKey("service_categories.id"), nullable=False),
    Column("district_id", String(64), ForeignKey("districts.id")),
    Column("lon", Float),
    Column("lat", Float),
    Column("description", Text),
    Column("opened_at", BigInteger, nullable=False),
    Column("due_at", BigInteger, nullable=False),
    Column("closed_at", BigInteger),
    Column("status", String(16), nullable=False),  # open | closed
    Column("satisfaction", Integer),  # 1..5, given on closure
    Index("ix_sr_opened", "opened_at"),
    Index("ix_sr_closed", "closed_at"),
    Index("ix_sr_status", "status", "district_id"),
    # covers the closure reads (edges of the service rollups' days, open-at counts): index-only
    Index("ix_sr_closure", "closed_at", "district_id", "opened_at", "due_at", "satisfaction"),
)

#: Closed service requests per district and UTC day of closure, kept current by the request
#: ingest (dashboard.store.services): the satisfaction KPIs read these instead of scanning requests.
#: ``district_id`` "*" = the whole city, "" = requests without a district; ``bucket`` =
#: closed_at // 86400 * 86400.
service_rollup = Table(
    "service_rollup", metadata,
    Column("district_id", String(64), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("closed", Integer, nullable=False),  # requests closed
    Column("rated", Integer, nullable=False),  # ... with a satisfaction score
    Column("sat_sum", Integer, nullable=False),  # sum of the scores
    Column("satisfied", Integer, nullable=False),  # ... scored 4 or 5
    Column("late", Integer, nullable=False),  # ... closed after due_at
    Column("close_s", BigInteger, nullable=False),  # sum of closed_at - opened_at (seconds)
    sqlite_with_rowid=False,
)

#: Time-to-close histogram of the same closures, in two levels: the count per bin of
#: closed_at - opened_at (``bin`` = service_rollup.close_bin: whole seconds under 64 s, then bins
#: 2 % wide) per district and UTC day of closure, and the count per span of 32 bins (``span`` =
#: ``bin`` // 32). A median reads the spans, then the bins of the one or two spans of its ranks.
service_close_spans = Table(
    "service_close_spans", metadata,
    Column("district_id", String(64), primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("span", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    sqlite_with_rowid=False,
)
service_close_hist = Table(
    "service_close_hist", metadata,
    Column("district_id", String(64), primary_key=True),
    Column("span", Integer, primary_key=True),
    Column("bucket", BigInteger, primary_key=True),
    Column("bin", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    sqlite_with_rowid=False,
)

#: Alerting (migration 0008). The engine's state per alert key (rule|scope): only entries that are
#: not inactive are kept, and only changed ones are written each tick (:mod:`dashboard.alerts.store`).
alert_state = Table(
    "alert_state", metadata,
    Column("key", String(300), primary_key=True),
    Column("entry", JSON, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

#: One row per evaluation tick (``tick`` = time // tick seconds): the evaluator of a tick inserts it in
#: the tick's transaction, so a tick is evaluated once whatever the number of workers and hosts.
alert_ticks = Table(
    "alert_ticks", metadata,
    Column("tick", BigInteger, primary_key=True, autoincrement=False),
    Column("at", Float, nullable=False),
    Column("worker", String(64), nullable=False),
    Column("ms", Float, nullable=False),
    Column("transitions", Integer, nullable=False),
)

#: One row per occurrence of an alert (a rule × scope from its firing to its resolution). Every
#: change of a row comes from an ``alert_events`` row (:func:`dashboard.alerts.store.apply`): replaying
#: an alert's events rebuilds it. ``status`` is the lifecycle (new, acknowledged, assigned, resolved);
#: ``state`` the engine's (firing, nodata, error; inactive once the condition is clear).
alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False),
    Column("rule", String(100), nullable=False),
    Column("scope", String(200), nullable=False),
    Column("district_id", String(64)),
    Column("domain", String(32), nullable=False),
    Column("asset", String(128)),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("summary", Text),
    Column("opened_at", Float, nullable=False),
    Column("since", Float, nullable=False),
    Column("value", Float),
    Column("repeat", Integer, nullable=False),
    Column("muted", String(200)),
    Column("clear_since", Float),
    Column("acknowledged_by", String(100)),
    Column("acknowledged_at", Float),
    Column("ack_note", Text),
    Column("assignee", String(100)),
    Column("assignee_kind", String(8)),
    Column("shelved_until", Float),
    Column("shelved_by", String(100)),
    Column("resolved_at", Float),
    Column("resolved_by", String(100)),
    Column("escalation", Integer, nullable=False),
    Column("escalated_at", Float),
    Column("escalated_to", String(100)),
    Column("updated_at", Float, nullable=False),
    Column("events", Integer, nullable=False),
    # the escalation clock (migration 0011): seconds it was open, new, neither muted nor shelved,
    # since it opened or last escalated, up to ``unacked_since`` (when it last started; NULL: paused)
    Column("unacked_s", Float, nullable=False, server_default="0"),
    Column("unacked_since", Float),
    Index("ix_alerts_key_open", "key", unique=True, sqlite_where=text("status != 'resolved'"),
          postgresql_where=text("status != 'resolved'")),
    Index("ix_alerts_status", "status", "severity"),
    Index("ix_alerts_district", "district_id", "id"),
    Index("ix_alerts_updated", "updated_at"),
)

#: What happened to each alert, appended and never updated: the engine's transitions, the lifecycle
#: actions (ack, assign, resolve, reopen, shelve, comment), escalations. ``uid`` (alert id and the
#: event's number in it) is stable: the key of the notification of that change.
alert_events = Table(
    "alert_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(40), nullable=False, unique=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(16), nullable=False),
    Column("from_status", String(16)),
    Column("to_status", String(16)),
    Column("note", Text),
    Column("detail", JSON, nullable=False),
    Index("ix_alert_events_alert", "alert_id", "seq", unique=True),
    Index("ix_alert_events_at", "at"),
)

#: Maintenance windows: alerts they match (rule, domain, district, asset) are muted from ``starts_at``
#: to ``ends_at``, then no more by themselves; ``ended_at`` when someone ended one early.
silences = Table(
    "silences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(100)),
    Column("domain", String(32)),
    Column("district_id", String(64)),
    Column("asset", String(128)),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("ended_by", String(100)),
    Index("ix_silences_ends", "ends_at"),
)

#: Incidents (migration 0010): alerts grouped into one event to handle, with a type whose standard
#: operating procedure is a checklist (:mod:`dashboard.incidents`). Like an alert, a row changes only
#: through an ``incident_events`` row (:func:`dashboard.incidents.store.apply`), so replaying an
#: incident's events rebuilds it; ``status`` is open or closed.
incidents = Table(
    "incidents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("type", String(100), nullable=False),
    Column("title", String(200), nullable=False),
    Column("district_id", String(64)),
    Column("domain", String(32)),
    Column("severity", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("owner", String(100)),
    Column("rule", String(100)),
    Column("opened_at", Float, nullable=False),
    Column("opened_by", String(100), nullable=False),
    Column("closed_at", Float),
    Column("closed_by", String(100)),
    Column("summary", Text),
    Column("handover", Text),
    Column("handover_at", Float),
    Column("handover_by", String(100)),
    Column("alerts", Integer, nullable=False),
    Column("last_alert_at", Float),
    Column("steps_done", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("events", Integer, nullable=False),
    Index("ix_incidents_status", "status", "district_id", "domain"),
    Index("ix_incidents_updated", "updated_at"),
)

#: Which alerts an incident groups (an alert is in one incident at most), who added each and when.
incident_alerts = Table(
    "incident_alerts", metadata,
    Column("incident_id", Integer, ForeignKey("incidents.id"), primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id"), primary_key=True),
    Column("added_at", Float, nullable=False),
    Column("added_by", String(100), nullable=False),
    Index("ix_incident_alerts_alert", "alert_id", unique=True),
)

#: What happened to each incident, appended and never updated: opened, alerts added, owner changed,
#: notes, handover notes, checklist steps done (with their fields), closed, reopened.
incident_events = Table(
    "incident_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(40), nullable=False, unique=True),
    Column("incident_id", Integer, ForeignKey("incidents.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(16), nullable=False),
    Column("note", Text),
    Column("detail", JSON, nullable=False),
    Index("ix_incident_events_incident", "incident_id", "seq", unique=True),
    Index("ix_incident_events_at", "at"),
)

rejected = Table(
    "rejected", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", BigInteger, nullable=False),
    Column("source", String(500), nullable=False),
    Column("line", Integer),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Index("ix_rejected_received", "received_at"),
)

#: People who sign in (migration 0007): a role (viewer, operator, admin), an optional district scope
#: (a JSON list of district ids; NULL = every district) and an Argon2id hash, never the password.
users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("districts", JSON),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("password_set_at", BigInteger, nullable=False),
    Column("last_login_at", BigInteger),
)

#: Signed-in browsers: the SHA-256 of the session token (the cookie holds the token itself).
sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("ended_at", BigInteger),
    Index("ix_sessions_user", "user_id"),
)

#: Wall kiosks: a long-lived token (kept as its SHA-256) locked to one wall URL and its districts.
devices = Table(
    "devices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("path", String(500), nullable=False),
    Column("districts", JSON),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(64)),
    Column("revoked_at", BigInteger),
    Column("last_seen_at", BigInteger),
)

#: Logins, failed logins and admin actions, appended (never updated).
audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(100)),
    Column("action", String(40), nullable=False),
    Column("target", String(200)),
    Column("detail", JSON),
    Column("ip", String(64)),
    Index("ix_audit_log_at", "at"),
)

#: Notifications waiting to go out, and what became of them (migration 0008): one row per state change
#: per channel, ``key`` unique so that enqueueing the same change twice inserts once
#: (:mod:`dashboard.alerts.outbox`). Times are float seconds, unlike the other tables: retries back
#: off by fractions of a second and delivery latency is measured in milliseconds.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),
    Column("target", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),  # NULL once delivered or failed: nothing more to do
    Column("delivered_at", Float),
    Column("failed_at", Float),
    Column("last_error", Text),
    Index("ix_outbox_due", "next_attempt_at"),
)

meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text),
)

#: The ``meta`` row that triggers renew (a random token) on every change to ``assets`` (migration 0003).
ASSETS_REV_KEY = "assets_rev"
#: The ``meta`` row of a background history fill's progress (``panorama run``'s first start): JSON
#: ``{"from": ts, "to": ts, "done": ts, "failed": bool}``, the days [from, to) being written oldest
#: first and filled up to ``done``. In the store, so every worker process reads the same.
HISTORY_FILL_KEY = "history_fill"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.execute("PRAGMA cache_size=-16384")  # 16 MB of pages per connection: bounded memory
    cur.close()


def make_engine(url: str, **kw) -> Engine:
    """Create an engine for ``url`` with the pragmas/pooling City Panorama relies on."""
    if url.startswith("sqlite"):
        from pathlib import Path

        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, **kw)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kw.setdefault("pool_pre_ping", True)
    kw.setdefault("pool_size", 5)
    return create_engine(url, **kw)


def create_schema(engine: Engine) -> None:
    """Bring the store to this release's schema: the Alembic migrations, up to head."""
    from dashboard.store.migrate import upgrade

    upgrade(engine)


def drop_schema(engine: Engine) -> None:
    """Drop every table of the store, and its migration record."""
    from sqlalchemy import text

    metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        if conn.dialect.name == "postgresql":  # the assets table's triggers went with it; their function stays
            conn.execute(text("DROP FUNCTION IF EXISTS panorama_assets_rev()"))
