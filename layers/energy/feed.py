"""Energy simulator: load and renewable supply of every substation.

load / capacity = base (0.35–0.45) + daily profile + heating below 10 °C + cooling above
24 °C + small smooth noise, kept within [0.1, 1.05]; the temperature is the replayed real
one when a temperature function is given. Renewable supply = solar (a daylight bell by local
hour and season, dimmed by clouds) + wind, never above the renewable capacity nor the load.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from dashboard.feeds import keys_of, local_time, uniform, value_noise

#: Daily load profile (share of capacity added to the base) at local hours 0..24.
_PROFILE_H = np.array([0, 3, 5, 7, 9, 12, 14, 17, 18, 19.5, 21, 23, 24], dtype=float)
_PROFILE_V = np.array([-0.06, -0.12, -0.12, -0.02, 0.08, 0.10, 0.08, 0.12, 0.20, 0.23, 0.20, 0.04, -0.06])
HEATING_BELOW_C = 10.0
COOLING_ABOVE_C = 24.0
HEATING_PER_C = 0.013
COOLING_PER_C = 0.030
LOAD_RANGE = (0.10, 1.05)


def climatology_temperature(ts, timezone: str = "Asia/Shanghai") -> np.ndarray:
    """Return a typical temperature (°C) for a northern mid-latitude city: a seasonal and a daily wave."""
    lt = local_time(ts, timezone)
    season = 12.5 - 15.5 * np.cos(2 * np.pi * (lt["doy"] - 18) / 365.25)
    daily = -4.0 * np.cos(2 * np.pi * (lt["hour"] - 3.0) / 24.0)
    return season + daily


class EnergySim:
    """Simulate load_mw and renewable_mw of every substation.

    Parameters
    ----------
    substations_frame : DataFrame with id, district, capacity_mw, renewable_capacity_mw
    districts_frame : DataFrame with id, population and area_km2 (denser districts run a higher base)
    temperature_fn : epoch seconds array -> °C (e.g. ``AirQualityReplay.city_temperature``);
        None or NaN results fall back to a climatology
    seed : the seed every random draw derives from
    """

    def __init__(self, substations_frame: pd.DataFrame, districts_frame: pd.DataFrame | None = None,
                 temperature_fn: Callable | None = None, seed: int = 42, timezone: str = "Asia/Shanghai"):
        ss = substations_frame.reset_index(drop=True)
        self.seed = int(seed)
        self.timezone = timezone
        self.temperature_fn = temperature_fn
        self.ids = ss["id"].astype(str).to_numpy(dtype=object)
        self.n = len(ss)
        self.capacity = ss["capacity_mw"].to_numpy(dtype=float)
        self.renewable = ss["renewable_capacity_mw"].fillna(0).to_numpy(dtype=float) \
            if "renewable_capacity_mw" in ss else np.zeros(self.n)
        self.key = keys_of(self.ids)
        u = uniform(self.seed, 0xE1, self.key)
        base = 0.35 + 0.10 * u
        if districts_frame is not None and len(districts_frame) and "district" in ss:
            d = districts_frame.set_index(districts_frame["id"].astype(str))
            if {"population", "area_km2"} <= set(d.columns):
                dens = (d["population"].astype(float) / d["area_km2"].astype(float).clip(lower=1)).reindex(
                    ss["district"].astype(str)).to_numpy()
                if np.isfinite(dens).any():
                    rank = pd.Series(dens).rank(pct=True).fillna(0.5).to_numpy()
                    base = 0.35 + 0.05 * u + 0.05 * rank  # dense, commercial districts a little higher
        self.base = base
        self.heat_sens = 0.8 + 0.4 * uniform(self.seed, 0xE2, self.key)
        self.solar_share = np.clip(0.45 + 0.4 * uniform(self.seed, 0xE3, self.key), 0, 1)

    def temperature(self, ts: np.ndarray) -> np.ndarray:
        """Return the city temperature (°C) at ``ts``: the replay where it has data, else a climatology."""
        clim = climatology_temperature(ts, self.timezone)
        if self.temperature_fn is None:
            return clim
        t = np.asarray(self.temperature_fn(ts), dtype=float)
        return np.where(np.isfinite(t), t, clim)

    def state(self, ts) -> dict[str, np.ndarray]:
        """Return load (T, N), renewable (T, N) in MW and the temperature (T,) at epoch seconds ``ts``."""
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        lt = local_time(ts, self.timezone)
        hour, weekend = lt["hour"], lt["weekday"] >= 5
        temp = self.temperature(ts)
        prof = np.interp(hour, _PROFILE_H, _PROFILE_V) - 0.03 * weekend
        # heating/cooling respond more in the day and evening, when people are up
        awake = 0.75 + 0.25 * np.clip(np.interp(hour, _PROFILE_H, _PROFILE_V) / 0.2 + 0.5, 0, 1)
        hvac = (HEATING_PER_C * np.maximum(HEATING_BELOW_C - temp, 0)
                + COOLING_PER_C * np.maximum(temp - COOLING_ABOVE_C, 0)) * awake
        t = ts[:, None].astype(float)
        noise = (0.6 * value_noise(self.seed, 2, t, 3600, salt=0xE4)
                 + 0.8 * value_noise(self.seed, self.key[None, :], t, 900, salt=0xE5))
        ratio = self.base[None, :] + prof[:, None] + hvac[:, None] * self.heat_sens[None, :] + 0.015 * noise
        ratio = np.clip(ratio, *LOAD_RANGE)
        load = np.round(ratio * self.capacity[None, :], 2)

        # solar: a bell between sunrise and sunset, longer and higher in summer; clouds dim it
        doy = lt["doy"].astype(float)
        season = np.sin(2 * np.pi * (doy - 80) / 365.25)
        day_len = 12.0 + 2.7 * season
        sunrise = 12.2 - day_len / 2
        x = np.clip((hour - sunrise) / day_len, 0, 1)
        bell = np.sin(np.pi * x) ** 1.5 * (0.8 + 0.2 * season)
        cloud = 1.0 / (1.0 + np.exp(-1.5 * value_noise(self.seed, 3, ts.astype(float), 3 * 3600, salt=0xE6)))
        solar = (bell * (0.35 + 0.65 * cloud))[:, None] * self.solar_share[None, :]
        wind_n = value_noise(self.seed, 4, t, 2 * 3600, salt=0xE7) + 0.5 * value_noise(
            self.seed, self.key[None, :], t, 3600, salt=0xE8)
        wind = np.clip(0.3 + 0.22 * wind_n, 0, 1) ** 2 * (1 - self.solar_share[None, :])
        ren = np.minimum((solar + wind) * self.renewable[None, :], self.renewable[None, :])
        ren = np.round(np.minimum(ren, load), 2)
        return {"load": load, "renewable": np.maximum(ren, 0.0), "temperature": temp}

    def frames(self, ts) -> pd.DataFrame:
        """Return readings (asset, metric, ts, value) of load_mw and renewable_mw at ticks ``ts``."""
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        st = self.state(ts)
        T, N = len(ts), self.n
        ids = np.tile(self.ids, T)
        tt = np.repeat(ts, N)
        return pd.DataFrame({
            "asset": np.concatenate([ids, ids]),
            "metric": np.concatenate([np.full(T * N, "load_mw", dtype=object),
                                      np.full(T * N, "renewable_mw", dtype=object)]),
            "ts": np.concatenate([tt, tt]),
            "value": np.concatenate([st["load"].ravel(), st["renewable"].ravel()]),
        })

    def frame(self, ts: float) -> pd.DataFrame:
        """Return readings for every substation at one tick ``ts``."""
        return self.frames([int(ts)])

    def readings(self, ticks, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> pd.DataFrame | None:
        """Return the readings at ``ticks`` (the simulator's feed protocol, see :mod:`dashboard.feeds`)."""
        return self.frames(ticks) if len(ticks) else None


def feed(ctx) -> EnergySim | None:
    """Return the demo city's energy feed (None without substations); it warms and cools with the
    city temperature another feed provides, else a climatology."""
    sub = ctx.assets("substation")
    if not len(sub):
        return None
    return EnergySim(sub, ctx.districts, ctx.provided.get("city_temperature"), seed=ctx.seed, timezone=ctx.tz)
