"""Reference data: districts, assets, the city's facts, a history fill's progress, counts.

What changes when a city is installed or edited, not with every reading.
"""
from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import Connection, func, select

from dashboard.store.drivers import rows_frame
from dashboard.store.latest import asset_directory
from dashboard.store.schema import ASSETS_REV_KEY, HISTORY_FILL_KEY, assets, districts, meta


def districts_frame(conn: Connection) -> pd.DataFrame:
    """Return every district: id, name, name_local, population, area_km2, label_lon, label_lat, geometry (dict)."""
    rows = conn.execute(select(districts).order_by(districts.c.name)).all()
    df = rows_frame(rows, [c.name for c in districts.columns])
    df["geometry"] = [json.loads(g) for g in df["geometry"]]
    return df


def assets_frame(conn: Connection, kind: str, district: str | None = None) -> pd.DataFrame:
    """Return the assets of ``kind`` (id, name, district_id, lon, lat, geometry dict, attributes dict)."""
    q = select(assets.c.pk, assets.c.id, assets.c.name, assets.c.district_id, assets.c.lon, assets.c.lat,
               assets.c.geometry, assets.c.attributes).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    df = rows_frame(conn.execute(q.order_by(assets.c.pk)).all(),
                     ["pk", "id", "name", "district_id", "lon", "lat", "geometry", "attributes"])
    df["geometry"] = [json.loads(g) if g else None for g in df["geometry"]]
    return df


def city_meta(conn: Connection) -> dict[str, str]:
    """Return the key/value facts stored about the city (name, timezone); not the store's own bookkeeping."""
    return {r.key: r.value for r in conn.execute(
        select(meta).where(meta.c.key.not_in([ASSETS_REV_KEY, HISTORY_FILL_KEY]))).all()}


def history_fill(conn: Connection) -> dict | None:
    """Return the progress of a background history fill still under way (or failed), else None.

    ``{"from", "to", "done", "failed", "percent"}``: the days [from, to) are being written oldest
    first and are complete up to ``done``.
    """
    raw = conn.execute(select(meta.c.value).where(meta.c.key == HISTORY_FILL_KEY)).scalar()
    try:
        p = json.loads(raw) if raw else None
        lo, hi, done = int(p["from"]), int(p["to"]), int(p["done"])
    except (TypeError, ValueError, KeyError):
        return None
    if done >= hi:
        return None
    pct = int(100 * max(0, done - lo) / (hi - lo)) if hi > lo else 0
    return {"from": lo, "to": hi, "done": done, "failed": bool(p.get("failed")), "percent": min(pct, 99)}


def record_history_fill(conn: Connection, start: int, end: int, done: int, failed: bool = False) -> None:
    """Record a background history fill's progress (see :func:`history_fill`)."""
    value = json.dumps({"from": int(start), "to": int(end), "done": int(done), "failed": bool(failed)})
    conn.execute(meta.delete().where(meta.c.key == HISTORY_FILL_KEY))
    conn.execute(meta.insert().values(key=HISTORY_FILL_KEY, value=value))


def asset_count_by_district(conn: Connection, kind: str) -> dict[str, int]:
    """Return how many assets of ``kind`` each district has (assets without a district left out)."""
    q = (select(assets.c.district_id, func.count()).where(assets.c.kind == kind, assets.c.district_id.is_not(None))
         .group_by(assets.c.district_id))
    return {r[0]: int(r[1]) for r in conn.execute(q).all()}


def district_populations(conn: Connection) -> pd.Series:
    """Return the population of each district, indexed by id."""
    rows = conn.execute(select(districts.c.id, districts.c.population)).all()
    return pd.Series({r.id: r.population for r in rows}, dtype=float)


def asset_count(conn: Connection, kind: str, district: str | None = None) -> int:
    """Return how many assets of ``kind`` there are (in ``district``)."""
    d = asset_directory(conn, kind)
    if d is not None:
        return int(d.n if not district else (d.district == district).sum())
    q = select(func.count()).select_from(assets).where(assets.c.kind == kind)
    if district:
        q = q.where(assets.c.district_id == district)
    return int(conn.execute(q).scalar() or 0)
