"""Helpers of the importer tests (tests/test_import_*.py): real data paths, store snapshots, writers."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select

from dashboard.importers import run_import
from dashboard.store.schema import create_schema, make_engine, metadata

REPO = Path(__file__).resolve().parents[1]
#: Small excerpts of real public data carried by the repository (sources and licences in their README.md).
FIXTURES = REPO / "tests" / "fixtures"
FIWARE = FIXTURES / "fiware"
#: The demo city's real district boundaries (data/MANIFEST.md).
BEIJING_DISTRICTS = REPO / "data" / "beijing" / "districts.geojson"


def snapshot(engine) -> str:
    """Return a checksum of every row of every table (the ``rejected`` table without its clock)."""
    h = hashlib.sha256()
    with engine.connect() as conn:
        for t in metadata.sorted_tables:
            cols = [c for c in t.columns if not (t.name == "rejected" and c.name in ("id", "received_at"))]
            rows = sorted(repr(tuple(r)) for r in conn.execute(select(*cols)))
            h.update(f"{t.name}:{len(rows)}\n".encode())
            for r in rows:
                h.update(r.encode())
    return h.hexdigest()


def counts(engine) -> dict[str, int]:
    """Return the row count of every table."""
    from sqlalchemy import func

    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in metadata.sorted_tables}


def sqlite_store(tmp_path: Path, name: str = "store.sqlite"):
    """Return an engine on an empty SQLite store."""
    eng = make_engine(f"sqlite:///{tmp_path / name}")
    create_schema(eng)
    return eng


def beijing_store(tmp_path: Path):
    """Return a SQLite store with the Beijing demo city installed."""
    from dashboard.city import install_city, load_city

    eng = sqlite_store(tmp_path)
    install_city(eng, load_city(REPO / "data" / "beijing"))
    return eng


def imp(engine, fn, *args, dry_run: bool = False, **kw):
    """Run an importer ``fn(conn, *args, **kw)`` in one transaction."""
    return run_import(engine, lambda conn: fn(conn, *args, **kw), dry_run=dry_run)


def election_geojson(tmp_path: Path) -> Path:
    """Write plotly's Montreal districts (plotly.data.election_geojson) to a file."""
    import plotly.data

    p = tmp_path / "montreal.geojson"
    p.write_text(json.dumps(plotly.data.election_geojson()), encoding="utf-8")
    return p


def write_topojson(frame, path: Path, id_field: str) -> Path:
    """Write polygons as a minimal TopoJSON topology (one arc per ring, no quantization)."""
    arcs, geoms = [], []

    def ring_arcs(poly):
        out = []
        for ring in [poly.exterior, *poly.interiors]:
            arcs.append([list(c) for c in ring.coords])
            out.append([len(arcs) - 1])
        return out

    for _, r in frame.iterrows():
        g = r.geometry
        props = {k: (v if not hasattr(v, "item") else v.item()) for k, v in r.drop("geometry").items()}
        if g.geom_type == "Polygon":
            geoms.append({"type": "Polygon", "arcs": ring_arcs(g), "properties": props})
        else:
            geoms.append({"type": "MultiPolygon", "arcs": [ring_arcs(p) for p in g.geoms], "properties": props})
    topo = {"type": "Topology", "objects": {"districts": {"type": "GeometryCollection", "geometries": geoms}},
            "arcs": arcs}
    path.write_text(json.dumps(topo), encoding="utf-8")
    return path
