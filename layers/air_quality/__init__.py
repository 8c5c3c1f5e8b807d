"""Air quality: stations' pollutant concentrations, indexed by the city's AQI standard (China HJ
633-2012 or US EPA, option ``aqi_standard``), the worst and the population-weighted AQI now."""
from __future__ import annotations

from layers._common import age_text
from layers._domain import AssetKind, Domain, Frames, Metric, WallText, scope
from layers._kpi import LEVEL_RANK, Kpi, excess, item
from layers.air_quality import kpis as k
from layers.air_quality import rollup
from layers.air_quality.feed import feed
from layers.air_quality.layer import AirQualityLayer

ID = "air_quality"


def city_assets(city, districts, assign) -> list[dict]:
    """Stations of the city file ``stations`` (CSV: id, name, category, lon, lat), placed in the
    district they stand in; their ids get the prefix ``aq-`` (the replay's asset ids)."""
    import json

    import geopandas as gpd
    import pandas as pd
    from shapely.geometry import mapping

    if "stations" not in city.files:
        return []
    st = pd.read_csv(city.path("stations"))
    g = gpd.GeoDataFrame(st, geometry=gpd.points_from_xy(st.lon, st.lat), crs=4326)
    g["district"] = assign(g, districts)
    return [dict(id=f"aq-{r.id}", kind=k.KIND, district_id=r.district, name=r.name,
                 lon=float(r.lon), lat=float(r.lat), geometry=json.dumps(mapping(r.geometry)),
                 attributes={"category": r.category, "station": r.id})
            for r in g.itertuples()]


def attention(f: Frames) -> list[dict]:
    """Stations whose AQI is a watch or an alert by the "AQI worst" KPI's thresholds (as the tile and
    the map); how far past: across the watch band for a watch, up to 300 (hazardous) for an alert.
    A station whose reading is stale says so instead."""
    layer = DOMAIN.layer
    static = scope(f.static, f.q.district)
    w = layer.worst(static, f["readings"], n=len(static), std=k.standard(f.q), now=f.q.now)
    warn, bad = f.q.threshold("air.aqi_worst", k.AQI_THRESHOLDS)
    out = []
    for r in w.itertuples(index=False):
        if r.stale:
            out.append(item("stale", ID, r.place, r.district, r.age_s, 0, f"last value {age_text(r.age_s)} old"))
            continue
        level = k.aqi_status(r.value, (warn, bad))
        if level in LEVEL_RANK:
            thr = warn if level == "warn" else bad
            score = excess(r.value, thr, (bad - warn) if level == "warn" else max(300 - bad, 1))
            out.append(item(level, ID, r.place, r.district, score, r.value,
                            f"AQI {r.value:.0f} ≥ {thr:g} · {r.band} · {r.dominant}"))
    return out


DOMAIN = Domain(
    id=ID, label="Air quality", period_s=3600,
    kinds=(AssetKind(k.KIND, "Air-quality station", "stations"),),
    metrics=(Metric("pm25", "PM2.5", "µg/m³", k.KIND, 0, 2_000),
             Metric("pm10", "PM10", "µg/m³", k.KIND, 0, 3_000),
             Metric("so2", "SO₂", "µg/m³", k.KIND, 0, 3_000),
             Metric("no2", "NO₂", "µg/m³", k.KIND, 0, 2_000),
             Metric("co", "CO", "µg/m³", k.KIND, 0, 60_000),
             Metric("o3", "O₃", "µg/m³", k.KIND, 0, 1_500),
             Metric("temp_c", "Temperature", "°C", k.KIND, -50, 60)),
    latest=k.latest, history=k.history,
    kpis=(
        Kpi("air.aqi_worst", ID, "AQI worst", "AQI", k.aqi_worst, *k.AQI_THRESHOLDS,
            definition="Highest air quality index of any station now, with its station and main pollutant"),
        Kpi("air.aqi_weighted", ID, "AQI weighted", "AQI", k.aqi_weighted, *k.AQI_THRESHOLDS,
            definition="Air quality index averaged over stations, weighted by the population they cover"),
        Kpi("air.dominant", ID, "Main pollutant", "", k.dominant, delta_label="", report=("category", k.dominant_over),
            definition="The pollutant that sets the AQI at most stations (weighted by population); "
                       "a category, no status"),
        Kpi("air.over_limit", ID, "Over limit", "", k.over_limit, warn=1, bad=4,
            definition="Stations whose AQI is above the standard's limit now"),
        Kpi("air.pm25_24h", ID, "PM2.5 24 h", "µg/m³", k.pm25_24h, warn=35, bad=75,
            delta_label="vs previous 24 h", reach=k.pm25_reach,
            definition="Mean PM2.5 of the hourly station values over the last 24 hours"),
    ),
    layer=AirQualityLayer(), default_on=True,
    wall=WallText(("air.aqi_worst", "air.over_limit"), "Air quality", "Air", "AQI by station"),
    attention=attention,
    feed=feed,
    ngsi=(("AirQualityObserved", (k.KIND, {"pm25": "pm25", "pm2_5": "pm25", "pm10": "pm10", "so2": "so2",
                                           "no2": "no2", "co": "co", "o3": "o3", "temperature": "temp_c"},
                                  ("refDevice", "refPointOfInterest"))),),
    city_assets=city_assets,
    ingest_hooks=((tuple(k.POLLUTANTS), rollup.update),),
    options=(("aqi_standard", "cn"),),
    asset_values=(Metric("aqi", "AQI", "AQI", k.KIND, 0, 500),),
)
