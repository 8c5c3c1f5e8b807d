"""Energy: districts coloured by the status of their load as a share of rated capacity (the "Of
capacity" KPI's thresholds, as the tile)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.theme import status_legend, status_scale
from layers._common import (age_text, aligned, district_geometry, fresh_first, freshness, hhmm, kpi_thresholds,
                            static_districts, with_age)
from layers._layer import LayerParams
from layers.energy.kpis import KIND, LOAD_THRESHOLDS


def _thresholds(params: LayerParams) -> tuple[float, float]:
    return kpi_thresholds(params, "energy.capacity_share", LOAD_THRESHOLDS)  # the "Of capacity" tile's


class EnergyLayer:
    """Districts coloured by load ÷ capacity."""

    id = "energy"
    name = "Energy load"
    domain = "energy"
    area = True  # fills the districts: one area layer at a time (see layers.exclusive_areas)
    description = "Districts coloured by the load of their substations as a share of rated capacity."

    def static(self, conn) -> pd.DataFrame:
        """Return the districts with their total rated capacity."""
        from dashboard.store.readmodel import assets_frame

        d = static_districts(conn)
        ss = assets_frame(conn, KIND)
        cap = pd.Series([float(a.get("capacity_mw", np.nan)) for a in ss["attributes"]], index=ss.index)
        d["capacity_mw"] = d["id"].map(cap.groupby(ss["district_id"]).sum())
        return d

    def prepare(self, latest: dict) -> pd.DataFrame:
        """Return the latest load and renewable supply summed per district (from the domain's current values)."""
        w = latest.get("substations")
        if w is None or w.empty:
            return pd.DataFrame(columns=["district_id", "load_mw", "renewable_mw", "ts"])
        # per district (sorted, as a groupby): sums of load and renewables (unknown counts 0), newest time
        codes, districts = pd.factorize(w["district_id"], sort=True)
        keep = codes >= 0  # substations without a district are left out
        codes, n = codes[keep], len(districts)
        ts = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(ts, codes, w["ts"].to_numpy(dtype=np.int64)[keep])
        return pd.DataFrame({
            "district_id": np.asarray(districts, dtype=object),
            **{m: np.bincount(codes, weights=np.nan_to_num(w[m].to_numpy(dtype=float)[keep]), minlength=n)
               for m in ("load_mw", "renewable_mw")},
            "ts": ts})

    def _state(self, static: pd.DataFrame, frame: pd.DataFrame, now: float | None = None) -> pd.DataFrame:
        """Per district: load, capacity and their share; a district whose newest reading is stale at
        ``now`` keeps its numbers but its share is not coloured (``stale``)."""
        v = aligned(static["id"], frame, "district_id", ["load_mw", "renewable_mw", "ts"])
        cap = static["capacity_mw"].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = 100 * v["load_mw"] / cap
        age, stale = freshness(v["ts"], now, self.domain)
        return pd.DataFrame({"id": static["id"].to_numpy(), "name": static["name"].to_numpy(), "capacity_mw": cap,
                             "load_mw": v["load_mw"], "renewable_mw": v["renewable_mw"], "ts": v["ts"],
                             "share": share, "age_s": age, "stale": stale})

    def values(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return the load share per district and hover values."""
        s = self._state(static, frame, params.now)
        tz = params.extra.get("tz")
        # a stale share is left uncoloured (as no data): its hover says how old it is
        z = [None if not np.isfinite(v) or old else round(float(v), 1) for v, old in zip(s["share"], s["stale"])]
        custom = [[None if not np.isfinite(r.load_mw) else round(float(r.load_mw)),
                   None if not np.isfinite(r.capacity_mw) else round(float(r.capacity_mw)),
                   hhmm(r.ts, tz) + (f" · STALE, {age_text(r.age_s)} old" if r.stale else "")]
                  for r in s.itertuples()]
        return [{"z": z, "customdata": custom}]

    def traces(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> list[dict]:
        """Return one choropleth of the districts."""
        v = self.values(static, frame, params)[0]
        return [{
            "type": "choroplethmap", "name": "Energy load", "uid": "energy", "meta": {"layer": self.id},
            "geojson": district_geometry(static, params), "locations": static["id"].tolist(), "featureidkey": "id",
            "text": static["name"].tolist(), "colorscale": status_scale(*_thresholds(params), 0, 100),
            "zmin": 0, "zmax": 100,
            "marker": {"opacity": 0.55, "line": {"width": 0}}, "showscale": False, "showlegend": False,
            "hovertemplate": "<b>%{text}</b><br>load %{customdata[0]} MW of %{customdata[1]} MW"
                             "<br>%{z:.1f}% of capacity<br>reading %{customdata[2]}<extra>Energy</extra>",
            **v,
        }]

    def legend(self, params: LayerParams) -> list[tuple[str, str]]:
        """Return the load share's statuses (the "Of capacity" KPI's thresholds) and their colours."""
        return status_legend(*_thresholds(params), " % of capacity")

    def district_hover(self, static: pd.DataFrame, frame: pd.DataFrame, params: LayerParams) -> tuple[str, dict]:
        """Return the districts' hover line of this layer: load as % of capacity (or stale)."""
        s = self._state(static, frame, params.now)
        return "energy load", {r.id: "stale" if r.stale else f"{r.share:.0f}% of capacity ({r.load_mw:,.0f} MW)"
                               for r in s.itertuples() if np.isfinite(r.share)}

    def worst(self, static: pd.DataFrame, frame: pd.DataFrame, n: int = 10, now: float | None = None,
              params: LayerParams | None = None) -> pd.DataFrame:
        """Return the districts closest to their capacity (stale ones, at ``now``, after every current one)."""
        s = self._state(static, frame, now)
        df = pd.DataFrame({"place": s["name"], "district": s["id"], "value": s["load_mw"].round(0), "unit": "MW",
                           "% of capacity": s["share"].round(1), "band": np.where(s["stale"], "stale", "")})
        df = with_age(df, s["ts"], s["age_s"], s["stale"])
        return fresh_first(df[np.isfinite(df["% of capacity"])], "% of capacity", False, n)
