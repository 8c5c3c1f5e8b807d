"""The SQL store: schema creation and the Beijing demo city installed into it (SQLite and PostgreSQL)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, insert, inspect, select

from dashboard.city import install_city, load_city
from dashboard.store import is_initialised
from dashboard.store import readmodel as rm
from dashboard.store.schema import (
    assets,
    create_schema,
    districts,
    metadata,
    readings,
    service_categories,
)

CITY_DIR = Path(__file__).resolve().parent.parent / "data" / "beijing"
#: 2020 census resident population of Beijing's 16 districts.
BEIJING_POPULATION = 21_893_095

needs_city = pytest.mark.skipif(not (CITY_DIR / "city.toml").is_file(), reason="demo city data missing")


def snapshot(engine) -> dict:
    """Return everything install_city writes, as plain Python values."""
    with engine.connect() as conn:
        return {
            "districts": sorted(tuple(r) for r in conn.execute(select(districts)).all()),
            "assets": sorted((r.pk, r.id, r.kind, r.district_id, r.name, r.lon, r.lat, r.geometry,
                              sorted(r.attributes.items())) for r in conn.execute(select(assets)).all()),
            "categories": sorted(tuple(r) for r in conn.execute(select(service_categories)).all()),
            "meta": sorted(rm.city_meta(conn).items()),  # not the assets revision: any write renews it
        }


def test_create_schema_is_idempotent(engine):
    names = set(inspect(engine).get_table_names())
    assert names == set(metadata.tables) | {"alembic_version"}
    with engine.begin() as conn:
        conn.execute(insert(districts).values(id="d", name="D", population=1, geometry="{}"))
    assert is_initialised(engine)  # a district exists
    create_schema(engine)
    create_schema(engine)
    assert set(inspect(engine).get_table_names()) == names
    with engine.connect() as conn:
        assert conn.execute(select(districts.c.id)).scalars().all() == ["d"]


def test_empty_store_is_not_initialised(engine):
    assert is_initialised(engine) is False


@needs_city
def test_install_beijing(engine):
    counts = install_city(engine, load_city(CITY_DIR))
    assert counts["districts"] == 16 and counts["categories"] > 0
    with engine.connect() as conn:
        dist = conn.execute(select(districts)).all()
        rows = conn.execute(select(assets)).all()
        cats = conn.execute(select(service_categories)).all()
        m = rm.city_meta(conn)
    assert counts["assets"] == len(rows)
    assert len(dist) == 16
    assert sum(d.population for d in dist) == BEIJING_POPULATION
    assert all(d.population > 0 and d.geometry.startswith("{") for d in dist)
    ids = {d.id for d in dist}
    by_kind: dict[str, list] = {}
    for r in rows:
        by_kind.setdefault(r.kind, []).append(r)
    # every asset kind of the registry's domains has assets in the demo city
    from dashboard.metrics import ASSET_KINDS

    assert set(by_kind) == set(ASSET_KINDS)
    assert all(r.district_id in ids for rs in by_kind.values() for r in rs if r.kind != "transit_line")
    assert len(by_kind["aq_station"]) == 12
    assert all(r.district_id in ids for r in by_kind["aq_station"])
    roads = by_kind["road_segment"]
    assert len(roads) >= 300
    for r in roads:
        a = r.attributes
        assert r.district_id in ids, r.id
        assert a["length_m"] > 0 and a["free_flow_kmh"] > 0 and a["lanes"] >= 1, r.id
    subs = by_kind["substation"]
    assert len(subs) >= 16
    assert {s.district_id for s in subs} == ids  # at least one in every district
    assert all(s.attributes["capacity_mw"] > 0 for s in subs)
    assert len(cats) == counts["categories"]
    assert all(c.sla_hours > 0 and c.name for c in cats)
    assert m == {"city": "Beijing", "timezone": "Asia/Shanghai"}
    assert is_initialised(engine)


@needs_city
def test_install_twice_changes_nothing(engine):
    city = load_city(CITY_DIR)
    first_counts = install_city(engine, city)
    first = snapshot(engine)
    assert install_city(engine, city) == first_counts
    assert snapshot(engine) == first  # same rows, same asset primary keys


def test_beijing_fixture_has_city_but_no_history(beijing_engine):
    with beijing_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(districts)).scalar() == 16
        assert conn.execute(select(func.count()).select_from(readings)).scalar() == 0
        assert conn.execute(select(func.sum(districts.c.population))).scalar() == BEIJING_POPULATION
