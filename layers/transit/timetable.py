"""A bus line's daily timetable, from a few numbers: what the demo feed runs and the attention rule expects.

A line runs ``vehicles`` buses round a cycle: out (``run_s``), a layover, back, a layover, so one
cycle lasts ``2 (run_s + layover_s)`` and the peak headway is the cycle ÷ ``vehicles``. Departure
slot ``j`` leaves terminus A at ``j × headway`` seconds after local midnight, is run by bus
``j mod vehicles``, and leaves terminus B after its run and layover. Off-peak, only every 2nd or
3rd slot is run (:data:`PERIODS`), so the headway doubles or triples without buses changing
places; a trip runs only when it departs and arrives within the service hours. Every day has
the same timetable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86_400
#: (from local second of the day, run every n-th slot): early, morning peak, day, evening peak, evening.
PERIODS = ((0, 3), (6.5 * 3600, 1), (9.5 * 3600, 2), (17 * 3600, 1), (19.5 * 3600, 3))
_P_START = np.array([p[0] for p in PERIODS], dtype=float)
_P_EVERY = np.array([p[1] for p in PERIODS], dtype=np.int64)
#: Service hours unless a line says otherwise (local hours): no bus runs from 23:00 to 05:00.
FIRST_H, LAST_H = 5.0, 23.0


def every_nth(sod) -> np.ndarray:
    """Return which slots run at local second of the day ``sod``: every 1st (peak), 2nd or 3rd."""
    i = np.searchsorted(_P_START, np.asarray(sod, dtype=float) % DAY_S, side="right") - 1
    return _P_EVERY[np.maximum(i, 0)]


@dataclass(frozen=True)
class Plan:
    """One line's timetable numbers (seconds, metres)."""

    length_m: float
    speed_kmh: float
    layover_s: float
    vehicles: int
    first_s: float = FIRST_H * 3600
    last_s: float = LAST_H * 3600

    def __post_init__(self):
        if not (self.length_m > 0 and self.speed_kmh > 0 and self.layover_s >= 0 and self.vehicles >= 1):
            raise ValueError(f"a line needs length_m > 0, speed_kmh > 0, layover_s >= 0 and vehicles >= 1, got {self}")
        if not 0 <= self.first_s < self.last_s <= DAY_S:
            raise ValueError(f"service hours must lie within one day, first before last, got {self}")

    @classmethod
    def of(cls, attrs: dict) -> "Plan":
        """Return the plan of a line from its attributes (``first_h``/``last_h`` default 5 and 23)."""
        first, last = attrs.get("first_h"), attrs.get("last_h")
        try:
            return cls(float(attrs["length_m"]), float(attrs["speed_kmh"]), float(attrs["layover_s"]),
                       int(attrs["vehicles"]), 3600 * (float(first) if _known(first) else FIRST_H),
                       3600 * (float(last) if _known(last) else LAST_H))
        except KeyError as exc:
            raise KeyError(f"a bus line needs the attribute {exc.args[0]!r}") from None

    @property
    def run_s(self) -> float:
        return self.length_m / (self.speed_kmh / 3.6)

    @property
    def cycle_s(self) -> float:
        return 2 * (self.run_s + self.layover_s)

    @property
    def headway_s(self) -> float:
        """The peak headway: the cycle shared by every bus."""
        return self.cycle_s / self.vehicles

    def runs(self, j, direction: int) -> np.ndarray:
        """Return whether slot ``j``'s trip in ``direction`` (0: A→B, 1: B→A) runs."""
        j = np.asarray(j, dtype=np.int64)
        dep = self.departure(j, direction)
        return (dep >= self.first_s) & (dep + self.run_s <= self.last_s) & (j % every_nth(dep) == 0) & (j >= 0)

    def departure(self, j, direction: int) -> np.ndarray:
        """Return slot ``j``'s departure (local second of the day) in ``direction``."""
        return np.asarray(j, dtype=float) * self.headway_s + direction * (self.run_s + self.layover_s)

    def slots(self) -> np.ndarray:
        """Return every slot of a day."""
        return np.arange(0, int(DAY_S // self.headway_s) + 1, dtype=np.int64)

    def stop_window(self, offset_s: float, direction: int) -> tuple[float, float]:
        """Return the first and last scheduled arrival (local second of the day) at a stop ``offset_s``
        of running time from its direction's first terminus (NaN, NaN when no trip runs)."""
        j = self.slots()
        on = self.runs(j, direction)
        if not on.any():
            return float("nan"), float("nan")
        dep = self.departure(j[on], direction)
        return float(dep.min() + offset_s), float(dep.max() + offset_s)

    def service_window(self) -> tuple[float, float]:
        """Return the line's first departure and last arrival (local seconds of the day)."""
        a, b = self.stop_window(0.0, 0), self.stop_window(0.0, 1)
        return float(np.nanmin([a[0], b[0]])), float(np.nanmax([a[1], b[1]]) + self.run_s)

    def scheduled_headway(self, sod) -> np.ndarray:
        """Return the scheduled headway (s) at local second of the day ``sod``."""
        return every_nth(sod) * self.headway_s


def _known(v) -> bool:
    try:
        return v is not None and np.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def plan_vehicles(length_m: float, speed_kmh: float, layover_s: float, max_headway_s: float = 390) -> int:
    """Return how many buses a line needs for a peak headway of at most ``max_headway_s``: a multiple
    of 6, so that every 2nd and every 3rd slot are evenly spaced buses (the off-peak headways stay
    regular and three of them stay under 20 min)."""
    cycle = 2 * (length_m / (speed_kmh / 3.6) + layover_s)
    return int(6 * np.ceil(cycle / (6 * max_headway_s)))
