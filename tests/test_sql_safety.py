"""No query is built by string formatting: hostile text is stored and filtered verbatim.

Two checks: a scan of the source for SQL built with f-strings, ``%`` or ``.format`` (a short,
reasoned allow-list of internal constants), and a district, an asset and a category whose ids
are SQL fragments, stored, filtered on and served by the API exactly as given.
"""
from __future__ import annotations

import ast
import json
import urllib.parse
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from dashboard.kpis import compute_all
from dashboard.store import readmodel as rm
from dashboard.store.ingest import Ingestor
from dashboard.store.schema import assets, districts

ROOT = Path(__file__).resolve().parent.parent
SQL_CALLS = {"text", "exec_driver_sql", "execute", "executemany", "executescript"}

#: Formatted SQL that only interpolates the code's own constants, never input.
ALLOWED = {
    ("dashboard/store/ingest_writers.py", "pg_stage"),          # staging-table names from the _PG_TEMP dict
    ("dashboard/store/ingest_rollups.py", "write_rollups"),     # the upsert's row source: a constant VALUES/SELECT
    ("dashboard/store/ingest_rollups.py", "_pg_rollup_asset"),  # idem
    ("dashboard/store/ingest_rollups.py", "upsert"),            # idem (inner function of _pg_rollup_asset)
    ("dashboard/store/ingest_writers.py", "latest_ts"),         # a run of bind placeholders (?, ?, …): values are bound
    ("dashboard/store/ingest_writers.py", "update_latest"),     # a constant SET clause shared by both engines
    # runs of the driver's bind placeholder (? or %s) and the modules' own column-name constants:
    ("layers/air_quality/rollup.py", "update"),
    ("layers/air_quality/rollup.py", "_write"),
    ("layers/air_quality/rollup.py", "rebuild"),
    ("dashboard/store/service_rollup.py", "apply_frame"),
    ("dashboard/api.py", "_wait_at_most"),  # SQLite's PRAGMA busy_timeout takes no bind: int() of a setting
}

EVIL = "o'hare\"; DROP TABLE readings; --"


def _formatted(node: ast.AST) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, (ast.Constant, ast.JoinedStr)):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        base = node.func.value
        # psycopg's sql.SQL(...).format(...) quotes what it composes: that is the safe way
        return not (isinstance(base, ast.Call) and getattr(base.func, "attr", getattr(base.func, "id", "")) == "SQL")
    return False


def formatted_sql() -> list[tuple[str, str, int]]:
    """Return (file, function, line) of every SQL call whose statement is built by formatting."""
    found = []
    for path in sorted([*(ROOT / "dashboard").rglob("*.py"), *(ROOT / "layers").rglob("*.py")]):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and node.args:
                    name = getattr(node.func, "attr", getattr(node.func, "id", None))
                    if name in SQL_CALLS and _formatted(node.args[0]):
                        found.append((str(path.relative_to(ROOT)), fn.name, node.lineno))
    return found


def test_no_sql_is_built_by_string_formatting():
    found = formatted_sql()
    bad = [(f, fn, ln) for f, fn, ln in found if (f, fn) not in ALLOWED]
    assert not bad, f"SQL built by string formatting (bind parameters instead): {bad}"


def test_the_scan_finds_formatting():
    src = "def f(conn, x):\n    conn.execute(text(f'SELECT {x}'))\n    conn.exec_driver_sql('SELECT %s' % x)\n"
    hits = [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call) and n.args
            and getattr(n.func, "attr", getattr(n.func, "id", None)) in SQL_CALLS and _formatted(n.args[0])]
    assert len(hits) == 2


@pytest.fixture
def evil_city(small_city):
    """The small city plus a district, a road and readings whose ids are SQL fragments."""
    eng = small_city["engine"]
    with eng.begin() as conn:
        geom = conn.execute(select(districts.c.geometry).where(districts.c.id == "east")).scalar()
        conn.execute(insert(districts), [{"id": EVIL, "name": EVIL, "population": 10, "area_km2": 1.0,
                                          "label_lon": 116.2, "label_lat": 40.0, "geometry": geom}])
        conn.execute(insert(assets), [{"id": EVIL + "-road", "kind": "road_segment", "district_id": EVIL,
                                       "name": EVIL, "lon": 116.2, "lat": 40.0, "geometry": None,
                                       "attributes": {"free_flow_kmh": 50.0}}])
    return small_city


def test_hostile_ids_are_stored_and_filtered_verbatim(evil_city):
    eng = evil_city["engine"]
    now = 1_736_899_200 + 3600
    res = Ingestor(eng).ingest([{"asset": EVIL + "-road", "metric": "speed_kmh", "ts": now - 60 * i, "value": 25.0}
                                for i in range(10)], source=EVIL, now=now)
    assert res.accepted == 10
    with eng.connect() as conn:
        wide = rm.latest_wide(conn, "road_segment", ["speed_kmh"], district=EVIL)
        assert list(wide["asset_id"]) == [EVIL + "-road"] and list(wide["district_id"]) == [EVIL]
        series = rm.district_series(conn, "speed_kmh", now - 3600, now + 1, 300, district=EVIL)
        assert len(series) > 0
        kpis = {k.id: k for k in compute_all(conn, now, "1h", EVIL, domain="traffic")}
        everywhere = {k.id: k for k in compute_all(conn, now, "1h", None, domain="traffic")}
    assert kpis["traffic.mean_speed"].value == pytest.approx(25.0)
    assert everywhere["traffic.mean_speed"].value is not None
    with eng.connect() as conn:
        assert conn.execute(select(districts.c.name).where(districts.c.id == EVIL)).scalar() == EVIL


def test_api_filters_on_a_hostile_district_id(evil_city, tmp_path):
    from dashboard.app import create_app
    from dashboard.settings import Settings

    url = evil_city["engine"].url.render_as_string(hide_password=False)
    client = create_app(Settings(data_dir=tmp_path, database_url=url)).server.test_client()
    r = client.get("/api/kpis?window=24h&district=" + urllib.parse.quote(EVIL))
    assert r.status_code == 200, r.data[:300]
    assert json.loads(r.data)["district"] == EVIL
