"""The read model: pure queries over `latest`, the rollups and the event tables.

Each function takes an open connection and parameters and returns a pandas frame (or a
number). None of them reads the raw ``readings`` table: screens never scan history.

This module only gathers the public reads (``from dashboard.store import readmodel as rm``);
they live by concern:

- :mod:`dashboard.store.latest`: current values, the asset directory
- :mod:`dashboard.store.rollups`: series from the rollups, the screens' windows
- :mod:`dashboard.store.reference`: districts, assets, the city's facts, history fill, counts
- :mod:`dashboard.store.service_reads`: service requests
- :mod:`dashboard.store.drivers`: driver-level fetches, SQL adapted per dialect
"""
from __future__ import annotations

from dashboard.store.latest import AssetDirectory, asset_directory, latest_wide, newest_ts
from dashboard.store.reference import (
    asset_count,
    asset_count_by_district,
    assets_frame,
    city_meta,
    district_populations,
    districts_frame,
    history_fill,
    record_history_fill,
)
from dashboard.store.rollups import (
    WINDOW_RES,
    WINDOWS,
    Rollup,
    asset_series,
    district_rollup,
    district_series,
    station_aqi_series,
)
from dashboard.store.service_reads import (
    service_by_district,
    service_newest_ts,
    service_open_at_many,
    service_open_list,
    service_overdue_by_district,
    service_window,
)

__all__ = [
    "WINDOWS", "WINDOW_RES", "AssetDirectory", "Rollup",
    "asset_count", "asset_count_by_district", "asset_directory", "asset_series", "assets_frame", "city_meta",
    "district_populations", "district_rollup", "district_series", "districts_frame", "history_fill",
    "latest_wide", "newest_ts", "record_history_fill", "service_by_district", "service_newest_ts",
    "service_open_at_many", "service_open_list", "service_overdue_by_district", "service_window", "station_aqi_series",
]
