"""Parking simulator: free spaces of every car park and on-street zone.

occupancy = business × work profile + (1 − business) × home profile, by local hour and weekday
(offices fill from 8 to 18 on working days, homes at night; weekends: fewer at work, more at
home and in the shops), × the asset's own demand (0.85–1.1, so that some always fill up) + smooth
noise, kept within [0, 1]; free = round(spaces × (1 − occupancy)). ``business`` is an asset
attribute (0 residential … 1 office / commercial; 0.5 when absent). Every value is a pure function of
(seed, asset, time): see :mod:`dashboard.feeds`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dashboard.feeds import keys_of, local_time, uniform, value_noise
from layers.parking.kpis import CAR_PARK, FREE, ZONE

#: Seconds between readings (a guidance system's update); a coarser simulator step is used as is.
PERIOD_S = 60
_H = np.array([0, 5, 7, 8, 9, 11, 13, 15, 17, 18, 19, 21, 23, 24], dtype=float)
#: Occupancy by local hour of an office / commercial car park, working day and weekend.
WORK_DAY = np.array([.08, .08, .25, .62, .90, .98, .96, .98, .90, .62, .40, .22, .12, .08])
WORK_END = np.array([.06, .06, .10, .18, .30, .52, .62, .62, .55, .45, .38, .22, .10, .06])
#: Occupancy by local hour of a residential car park, working day and weekend.
HOME_DAY = np.array([.93, .94, .85, .62, .48, .42, .44, .45, .55, .70, .82, .90, .93, .93])
HOME_END = np.array([.94, .95, .92, .85, .76, .66, .62, .64, .70, .78, .85, .91, .94, .94])


class ParkingSim:
    """Simulate the free spaces of car parks and zones.

    Parameters
    ----------
    assets : {kind: DataFrame with id, spaces and optionally business} (the feed context's assets)
    seed : the seed every random draw derives from
    step : the simulator's step; readings come every ``max(PERIOD_S, step)`` seconds
    """

    def __init__(self, assets: dict[str, pd.DataFrame], seed: int = 42, timezone: str = "Asia/Shanghai",
                 step: int = PERIOD_S):
        ids, metric, spaces, business = [], [], [], []
        for kind in (CAR_PARK, ZONE):
            a = assets.get(kind)
            if a is None or not len(a):
                continue
            if "spaces" not in a:
                raise ValueError(f"{kind} assets have no 'spaces' attribute (their capacity)")
            ids.append(a["id"].astype(str).to_numpy(dtype=object))
            metric.append(np.full(len(a), FREE[kind], dtype=object))
            spaces.append(pd.to_numeric(a["spaces"], errors="coerce").to_numpy(dtype=float))
            b = pd.to_numeric(a["business"], errors="coerce") if "business" in a else pd.Series(np.nan, index=a.index)
            business.append(b.fillna(0.5).clip(0, 1).to_numpy(dtype=float))

        def cat(xs, dt):
            return np.concatenate(xs) if xs else np.array([], dtype=dt)

        self.ids, self.metric = cat(ids, object), cat(metric, object)
        self.spaces, self.business = cat(spaces, float), cat(business, float)
        self.n = len(self.ids)
        self.seed, self.timezone = int(seed), timezone
        self.every = max(PERIOD_S, int(step))
        self.key = keys_of(self.ids)
        self.demand = 0.85 + 0.25 * uniform(self.seed, 0xA1, self.key)

    def occupancy(self, ts) -> np.ndarray:
        """Return the occupancy (T, N), 0–1, at epoch seconds ``ts``."""
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        lt = local_time(ts, self.timezone)
        h, weekend = lt["hour"], lt["weekday"] >= 5
        work = np.where(weekend, np.interp(h, _H, WORK_END), np.interp(h, _H, WORK_DAY))
        home = np.where(weekend, np.interp(h, _H, HOME_END), np.interp(h, _H, HOME_DAY))
        b = self.business[None, :]
        t = ts[:, None].astype(float)
        noise = (0.5 * value_noise(self.seed, 7, t, 3600, salt=0xA2)
                 + value_noise(self.seed, self.key[None, :], t, 1200, salt=0xA3))
        occ = (b * work[:, None] + (1 - b) * home[:, None]) * self.demand[None, :] + 0.03 * noise
        return np.clip(occ, 0.0, 1.0)

    def frames(self, ts) -> pd.DataFrame:
        """Return readings (asset, metric, ts, value) of free spaces at ``ts``."""
        ts = np.atleast_1d(np.asarray(ts, dtype=np.int64))
        free = np.round(self.spaces[None, :] * (1.0 - self.occupancy(ts))) if len(ts) else np.zeros((0, self.n))
        ok = np.isfinite(free)  # an asset without a capacity reports nothing
        T = len(ts)
        return pd.DataFrame({"asset": np.tile(self.ids, T)[ok.ravel()],
                             "metric": np.tile(self.metric, T)[ok.ravel()],
                             "ts": np.repeat(ts, self.n)[ok.ravel()], "value": free.ravel()[ok.ravel()]})

    def times(self, t0: float, t1: float) -> np.ndarray:
        """Return the reading times in (t0, t1]: the multiples of the reading interval."""
        first = (int(t0) // self.every + 1) * self.every
        return np.arange(first, int(t1) + 1, self.every, dtype=np.int64)

    def readings(self, ticks, t0: float, t1: float, prev: float | None = None,
                 full_incidents: bool = False) -> pd.DataFrame | None:
        """Return the readings due in (t0, t1] (the simulator's feed protocol, see :mod:`dashboard.feeds`):
        every reading interval, whatever the simulator's ticks, so chunks never double or skip one."""
        ts = self.times(t0, t1)
        return self.frames(ts) if len(ts) and self.n else None


def feed(ctx) -> ParkingSim | None:
    """Return the demo city's parking feed (None without car parks or zones)."""
    assets = {k: ctx.assets(k) for k in (CAR_PARK, ZONE)}
    if not any(a is not None and len(a) for a in assets.values()):
        return None
    return ParkingSim(assets, seed=ctx.seed, timezone=ctx.tz, step=ctx.step)
