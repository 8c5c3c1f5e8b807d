"""KPIs: declared by their domain, computed from its :class:`~layers._domain.Frames`, no database.

A KPI's ``id`` is permanent (it appears in URLs, exports and the API); ``label`` is display only.
``compute(frames)`` returns (value, delta, spark_x, spark_y, as_of, note); :meth:`Kpi.evaluate`
turns that into a :class:`KpiValue`: status from thresholds, the age of its newest data, stale or
not. Unknown is ``None``, never 0. Testable like Superset's ``transformProps``: hand-written
frames in, values out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd

from layers._domain import STALE_PERIODS, Frames, Query


@dataclass
class KpiValue:
    """One KPI, computed."""

    id: str
    domain: str
    label: str
    unit: str
    value: float | str | None
    delta: float | None
    delta_label: str
    status: str  # good | warn | bad | unknown
    as_of: int | None
    age_s: float | None
    stale: bool
    spark_x: list[int] = field(default_factory=list)
    spark_y: list[float] = field(default_factory=list)
    note: str = ""
    decimals: int = 0
    no_assets: str = ""  # e.g. "no stations in this city": the domain has nothing to measure (not "no data yet")
    loading: str = ""  # "history loading (40 %)": its window reaches into days a background fill has not written yet
    #: e.g. "no bus service now": nothing to measure at this hour (out of service),
    #: not silent sensors; no value, and no "no data" alert (see :class:`Quiet`)
    quiet: str = ""

    def as_json(self) -> dict:
        """Return the API form of this KPI (no sparkline)."""
        v = self.value
        if isinstance(v, float):
            v = round(v, self.decimals + 2)
        return {"id": self.id, "domain": self.domain, "label": self.label, "value": v, "unit": self.unit,
                "delta": None if self.delta is None else round(self.delta, self.decimals + 2),
                "delta_label": self.delta_label, "status": self.status, "stale": self.stale,
                "quiet": self.quiet or None,
                "data_age_s": None if self.age_s is None else round(self.age_s, 1),
                "as_of": None if self.as_of is None else datetime.fromtimestamp(self.as_of, timezone.utc).isoformat().replace("+00:00", "Z"),
                "note": " · ".join(x for x in (self.loading, self.note or self.no_assets) if x)}

    def formatted(self) -> str:
        """Return the value as shown on screen ('—' when unknown)."""
        if self.value is None:
            return "—"
        if isinstance(self.value, str):
            return self.value
        return f"{self.value:,.{self.decimals}f}"


class Quiet(str):
    """A KPI's note when it has no value because nothing is scheduled to be measured at this hour (no
    bus runs at night): a compute function returns it as its note, and the value is then "quiet", not
    "no data" (its sensors are not silent; an alert rule waits for the service instead of firing)."""

    __slots__ = ()


@dataclass(frozen=True)
class Kpi:
    """A KPI declaration.

    ``compute(frames)`` returns (value, delta, spark_x, spark_y, as_of, note). Thresholds: status is
    ``bad`` beyond ``bad``, ``warn`` beyond ``warn`` (in the worse direction), else ``good``; the
    city's thresholds (``frames.q.thresholds``) override these. ``definition``: one line saying what
    it measures (the cards' hover text and accessible description).
    """

    id: str  # permanent: saved in URLs and exports, never changes
    domain: str
    label: str  # display only
    unit: str
    compute: Callable[[Frames], tuple]
    warn: float | None = None
    bad: float | None = None
    higher_is_worse: bool = True
    decimals: int = 0
    delta_label: str = "vs {window} ago"
    status_from: Callable[[Frames, object], float | None] | None = None  # value used for status, if not the value
    #: the oldest time its value, change and trend read (default: the window's start)
    reach: Callable[[Query], int] | None = None
    definition: str = ""
    #: over a report's period: "mean" of its hourly values, or "total" (``total_of``: a KPI whose
    #: trend is summed instead, with its label and unit)
    report: tuple | None = None
    #: the asset kinds it measures, when only some of its domain's (default: every one): a place with
    #: none of them has nothing for it to measure (see :func:`dashboard.snapshot.no_assets`)
    kinds: tuple[str, ...] = ()

    def reaches(self, q: Query) -> int:
        """Return the oldest time this KPI reads for ``q``."""
        return int(self.reach(q)) if self.reach else q.start

    def thresholds(self, q: Query) -> tuple | None:
        """Return (warn, bad) for ``q`` (the city's, else the registry's), or None."""
        t = q.threshold(self.id, None)
        if t is not None:
            return tuple(t)
        return None if self.warn is None else (self.warn, self.bad)

    def status(self, frames: Frames, value) -> str:
        """Return good/warn/bad/unknown for ``value``."""
        v = self.status_from(frames, value) if self.status_from else value
        t = self.thresholds(frames.q)
        if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)) or t is None:
            return "unknown" if v is None or (isinstance(v, float) and math.isnan(v)) else "good"
        warn, bad = t
        sign = 1 if self.higher_is_worse else -1
        if sign * v >= sign * bad:
            return "bad"
        if sign * v >= sign * warn:
            return "warn"
        return "good"

    def evaluate(self, frames: Frames, period_s: float) -> KpiValue:
        """Compute this KPI from ``frames`` (``period_s``: its feed's period, for staleness)."""
        q = frames.q
        value, delta, sx, sy, as_of, note = self.compute(frames)
        if isinstance(value, (float, np.floating)):
            value = float(value) if math.isfinite(value) else None
        if delta is not None and not math.isfinite(delta):
            delta = None
        age = None if as_of is None else max(0.0, q.now - as_of)
        stale = age is None or age > STALE_PERIODS * period_s
        return KpiValue(
            id=self.id, domain=self.domain, label=self.label, unit=self.unit, value=value,
            delta=None if delta is None else float(delta),
            delta_label=self.delta_label.format(window=q.window), status=self.status(frames, value),
            as_of=None if as_of is None else int(as_of), age_s=age, stale=bool(stale and value is not None),
            spark_x=np.asarray(sx).astype(np.int64).tolist(), spark_y=finite_or_none(sy),
            note=str(note), decimals=self.decimals,
            quiet=str(note) if value is None and isinstance(note, Quiet) else "")


# ---------------------------------------------------------------------------- helpers for KPIs
def finite_or_none(ys) -> list:
    """Return ``ys`` as a list of floats, None where not finite."""
    arr = np.asarray(ys, dtype=float)
    out = arr.tolist()
    for i in np.flatnonzero(~np.isfinite(arr)).tolist():
        out[i] = None
    return out


def nan_none(v):
    """Return ``v`` as a float, None when unknown."""
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def change(now_value, previous):
    """Return the change from ``previous`` to ``now_value``, or None when either is unknown."""
    return None if now_value is None or previous is None else now_value - previous


def delta_vs_start(now_value, xs, ys):
    """Return now_value minus the first point of the window's trend (≈ one window ago)."""
    if now_value is None or len(ys) == 0 or isinstance(now_value, str):
        return None
    first = ys[0]
    return None if first is None or not np.isfinite(first) else float(now_value) - float(first)


def plural(n: int, word: str, many: str | None = None) -> str:
    """Return "1 station", "2 stations" (``many`` for an irregular plural)."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def newest(df: pd.DataFrame) -> int | None:
    """Return the newest ``ts`` of ``df``, None when it has none."""
    return None if df is None or df.empty or df["ts"].isna().all() else int(df["ts"].max())


# ---------------------------------------------------------------------------- attention items
#: Levels of a "needs attention" item, most urgent first.
LEVEL_RANK = {"bad": 2, "warn": 1}


def excess(value: float, threshold: float, full: float, sign: int = 1) -> float:
    """Return how far ``value`` is past ``threshold``, 0 (just past) – 1 (``full`` past or more):
    what makes attention items of different domains comparable. ``sign`` +1: higher is worse."""
    return float(min(1.0, max(0.0, sign * (float(value) - threshold) / full)))


def item(level: str, domain: str, place, district, score: float, magnitude: float, detail: str) -> dict:
    """Return a "needs attention" item: ``level`` bad | warn | stale, ``score`` 0–1 how far past its
    threshold (see :func:`excess`; a stale item's is its age), ``magnitude`` the raw amount (ties)."""
    return {"level": level, "domain": domain, "place": str(place), "district": district,
            "score": float(score), "magnitude": float(magnitude), "detail": detail}
