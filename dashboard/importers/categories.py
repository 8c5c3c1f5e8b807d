"""Service categories from CSV (id, name, sla_hours), upserted by id."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import Connection, insert, select

from dashboard.importers import ImportProblem, ImportReport, pick_column, read_table
from dashboard.store.schema import service_categories


def import_categories(conn: Connection, path) -> ImportReport:
    """Upsert the categories of a CSV file in the open transaction ``conn``."""
    report = ImportReport("categories", str(path))
    frame = read_table(path)
    idc = pick_column(path, frame.columns, None, ("id", "service_code"), "id")
    namec = pick_column(path, frame.columns, None, ("name", "service_name"), "name")
    slac = pick_column(path, frame.columns, None, ("sla_hours",), "sla_hours")
    sla = pd.to_numeric(frame[slac], errors="coerce")
    if sla.isna().any() or (sla <= 0).any():
        ln = frame.loc[sla.isna() | (sla <= 0), "line"].iloc[0]
        raise ImportProblem(f"{path}: line {ln}: sla_hours must be a positive number")
    if frame[idc].duplicated().any():
        raise ImportProblem(f"{path}: line {frame.loc[frame[idc].duplicated(), 'line'].iloc[0]}: duplicate id")
    stored = {r.id: (r.name, r.sla_hours) for r in conn.execute(select(service_categories))}
    for cid, name, h in zip(frame[idc], frame[namec], sla):
        if cid not in stored:
            conn.execute(insert(service_categories).values(id=cid, name=name, sla_hours=float(h)))
            report.count("inserted")
        elif stored[cid] != (name, float(h)):
            conn.execute(service_categories.update().where(service_categories.c.id == cid)
                         .values(name=name, sla_hours=float(h)))
            report.count("updated")
        else:
            report.count("unchanged")
    return report
