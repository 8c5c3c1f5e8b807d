"""Test helpers for map layers: a layer's live frame as the screens get it (the base snapshot)."""
from __future__ import annotations

import time

import pandas as pd

from dashboard.snapshot import build_base, make_query
from layers import domain_of_layer


def layer_frame(conn, layer, now: float | None = None) -> pd.DataFrame:
    """Return the frame ``layer`` draws at ``now``: its domain's current values, city-wide."""
    d = domain_of_layer(layer.id)
    if d is None:  # the base layer: no live values
        return layer.prepare({})
    base = build_base(conn, make_query(time.time() if now is None else now, None, None), [d])
    return base.layer_frame(d)


def attention_items(statics: dict, frames: dict, overdue, now: float, district: str | None = None,
                    aqi_standard: str = "cn", aqi_thresholds: tuple | None = None) -> list[dict]:
    """The wall's "needs attention" list from hand-made layer statics and frames (as the old
    ``live.attention_items`` took them): each domain's rule on its frames, in the snapshot's order."""
    from dashboard.snapshot import attention_order
    from layers import DOMAIN_BY_ID
    from layers._domain import Frames

    q = make_query(now, "24h", district, thresholds={"air.aqi_worst": aqi_thresholds} if aqi_thresholds else None,
                   options={"aqi_standard": aqi_standard})
    ef = frames.get("energy", pd.DataFrame(columns=["district_id", "load_mw", "renewable_mw", "ts"]))
    parts = {  # each domain's frames by its own names
        "traffic": ({"roads": frames.get("traffic")}, statics.get("traffic")),
        "air_quality": ({"readings": frames.get("air_quality")}, statics.get("air_quality")),
        # one substation per district carrying the district's load: the layer sums them back
        "energy": ({"substations": ef.assign(asset_id=ef["district_id"])}, statics.get("energy")),
        "satisfaction": ({"overdue": _overdue_by_district(overdue, now)}, statics.get("energy")),
    }
    items, stale = [], []
    for dom, (f, static) in parts.items():
        d = DOMAIN_BY_ID[dom]
        fr = Frames(q, f)
        fr.static = static
        for i in d.attention(fr):
            (stale if i["level"] == "stale" else items).append(i)
    stale.sort(key=lambda i: i["score"])
    items.sort(key=attention_order)
    return [i for i in items + stale if district is None or i["district"] == district]


def _overdue_by_district(open_list: pd.DataFrame, now: float) -> pd.DataFrame:
    """Open requests (district_id, due_at) as the store's grouped read gives them: per district, those
    past their due time and the oldest due time."""
    late = open_list[open_list["due_at"] < now]
    g = late.groupby("district_id")["due_at"].agg(["size", "min"]).reset_index()
    return pd.DataFrame({"district_id": g["district_id"], "n": g["size"], "oldest_due": g["min"]})
