"""Replay of real hourly air-quality measurements (UCI Beijing Multi-Site) on today's calendar.

An hour today maps to the same month, day and hour of the data year (March–December of
2016, January–February of 2017; 29 February maps to 28 February). Gaps in the source stay
gaps: a missing value produces no reading.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.feeds import local_hours, local_time, utc_offset_s

#: The metrics replayed, in the order of the value cube's last axis.
AQ_METRICS = ("pm25", "pm10", "so2", "no2", "co", "o3", "temp_c")

#: The data year starts on 1 March of this year and ends on 28 February of the next.
DATA_YEAR_START = 2016

_HOURS = 365 * 24


def _day_of_data_year() -> np.ndarray:
    """Return a (13, 32) table: (month, day) -> day index in the March-to-February data year."""
    table = np.full((13, 32), -1, dtype=np.int64)
    days = pd.date_range(f"{DATA_YEAR_START}-03-01", f"{DATA_YEAR_START + 1}-02-28", freq="D")
    table[days.month, days.day] = np.arange(len(days))
    table[2, 29] = table[2, 28]
    return table


_DOY = _day_of_data_year()


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime: float, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (station ids, cube[hour of data year, station, metric]) from the CSV (cached)."""
    df = pd.read_csv(path, usecols=["station", "ts", *AQ_METRICS])
    local = pd.to_datetime(df["ts"], format="%Y-%m-%d %H:%M")
    start = pd.Timestamp(f"{DATA_YEAR_START}-03-01")
    hour = ((local - start) // pd.Timedelta(hours=1)).to_numpy()
    keep = (hour >= 0) & (hour < _HOURS)
    stations = np.array(sorted(df["station"].astype(str).unique()), dtype=object)
    st = pd.Index(stations).get_indexer(df["station"].astype(str))
    cube = np.full((_HOURS, len(stations), len(AQ_METRICS)), np.nan)
    vals = df[list(AQ_METRICS)].to_numpy(dtype=float)
    cube[hour[keep], st[keep]] = vals[keep]
    return stations, cube


class AirQualityReplay:
    """Replay the city's hourly station measurements; see the module docstring for the calendar."""

    def __init__(self, city, path: Path | None = None):
        self.timezone = city.timezone
        p = Path(path) if path else (city.path("air_quality") if "air_quality" in city.files
                                     else Path(city.folder) / "air_quality.csv.gz")
        self.path = p
        self.stations, self.cube = _load(str(p.resolve()), p.stat().st_mtime, self.timezone)
        self.assets = np.array([f"aq-{s}" for s in self.stations], dtype=object)
        # the mean over the stations that report; NaN for an hour with none (np.nanmean would warn,
        # and warnings.catch_warnings is not thread-safe: the feeds run in threads)
        t = self.cube[:, :, AQ_METRICS.index("temp_c")]
        have = np.isfinite(t).sum(axis=1)
        temp = np.where(have > 0, np.nansum(t, axis=1) / np.maximum(have, 1), np.nan)
        ok = np.isfinite(temp)
        x = np.arange(_HOURS)
        # gaps filled linearly (circularly across the year's ends)
        self._temp = np.interp(x, x[ok], temp[ok], period=_HOURS) if ok.any() else temp

    def data_hour(self, ts) -> np.ndarray:
        """Return the hour index in the data year that each epoch second replays (floored to the hour)."""
        lt = local_time(ts, self.timezone)
        day = _DOY[lt["month"], lt["day"]]
        return day * 24 + lt["hour_int"]

    def values(self, hours) -> np.ndarray:
        """Return the cube slice (len(hours), station, metric) replayed at the given epoch hours."""
        return self.cube[self.data_hour(hours)]

    def frame(self, t0: float, t1: float) -> pd.DataFrame:
        """Return readings (asset, metric, ts, value) for every whole local hour ``h``, t0 < h <= t1."""
        hours = local_hours(t0, t1, self.timezone)
        if len(hours) == 0:
            return pd.DataFrame({"asset": pd.Series([], dtype=object), "metric": pd.Series([], dtype=object),
                                 "ts": np.zeros(0, np.int64), "value": np.zeros(0)})
        v = self.values(hours)
        h, s, m = np.nonzero(np.isfinite(v))
        return pd.DataFrame({
            "asset": self.assets[s],
            "metric": np.array(AQ_METRICS, dtype=object)[m],
            "ts": hours[h],
            "value": v[h, s, m],
        })

    def city_temperature(self, ts) -> np.ndarray:
        """Return the mean replayed temperature (°C) of all stations, linear between hours, gaps skipped."""
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        h0 = ts - (ts - self._hour_offset(ts)) % 3600
        f = (ts - h0) / 3600.0
        a = self._temp[self.data_hour(h0)]
        b = self._temp[self.data_hour(h0 + 3600)]
        return a + (b - a) * f

    def _hour_offset(self, ts: np.ndarray) -> int:
        return utc_offset_s(int(ts[0]), self.timezone) % 3600 if len(ts) else 0

    def readings(self, ticks, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> pd.DataFrame:
        """Return the readings of the whole hours in (t0, t1] (the feed protocol, see :mod:`dashboard.feeds`)."""
        return self.frame(t0, t1)


def feed(ctx) -> AirQualityReplay:
    """Return the demo city's air-quality replay (its ``air_quality`` file; FileNotFoundError without
    one), and offer its city temperature to the feeds built after it (energy's heating and cooling)."""
    replay = AirQualityReplay(ctx.city)
    ctx.provide("city_temperature", replay.city_temperature)
    return replay
