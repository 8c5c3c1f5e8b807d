"""Air Quality Index (AQI) from pollutant concentrations, for two standards.

Standards
---------
``"cn"``
    China, HJ 633-2012 *Technical Regulation on Ambient Air Quality Index (on trial)*,
    hourly ("real-time", 实时报) convention: SO2, NO2, CO and O3 use their 1-hour
    breakpoints. HJ 633 defines no 1-hour breakpoints for PM10 and PM2.5; like the national
    real-time publication platform, the 24-hour PM tables are applied to the hourly values.
    Two special rules of the regulation are implemented:

    * SO2 1-hour concentrations above 800 µg/m³ are not indexed with the 1-hour table; the
      24-hour SO2 table is used instead (here: applied to the same hourly value).
    * The O3 1-hour table runs to 1200 µg/m³ (the 8-hour O3 table is not used).

    Sub-indices are rounded **up** to the next integer (进位取整), as the national
    publication does. Concentrations are not rounded before lookup.
``"us"``
    United States EPA AQI, *Technical Assistance Document for the Reporting of Daily Air
    Quality* with the 2024 PM2.5 revision (9.0 / 35.4 / 55.4 / 125.4 / 225.4 / 325.4 µg/m³;
    the 301-400 and 401-500 segments of every pollutant merged into one 301-500 segment).
    Gases are converted from µg/m³ to ppb at 25 °C and 1 atm
    (``ppb = µg/m³ × 24.45 / MW``; O3 and CO then in ppm = ppb / 1000), truncated as the
    TAD prescribes (PM2.5 to 0.1 µg/m³, PM10 to 1 µg/m³, O3 to 0.001 ppm, CO to 0.1 ppm,
    SO2 and NO2 to 1 ppb) and the index is rounded to the nearest integer (halves up).

    Simplifications, because the dashboard only has hourly values: the 24-hour PM tables,
    the 8-hour CO table and the 1-hour SO2 table (whose AQI >= 200 rows are defined on
    24-hour SO2) are applied to the hourly value. O3 is indexed with the 8-hour table
    applied to the hourly value and, from 0.125 ppm up, also with the 1-hour table; the
    higher of the two is reported (the TAD's rule when both apply). Above 0.200 ppm, where
    the 8-hour table ends, its contribution stays at its top (300), so the index never falls
    as the concentration rises; from 0.405 ppm the 1-hour table (301-500) takes over.

Inputs are µg/m³ for **all** pollutants, CO included (as in the UCI Beijing data); the CN
CO table is in mg/m³, so CO is divided by 1000. Concentrations above the top of a table
give the top index, 500: the index is capped at 500 rather than extrapolated. Missing
(``None``/NaN) or negative concentrations have no index.

Colours are owned by the theme; this module exposes only band keys (:data:`BANDS`).
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple

import numpy as np

#: Pollutant keys accepted as input, in the order used to break ties between equal
#: sub-indices.
POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co", "o3")

#: Supported standards.
STANDARDS: tuple[str, ...] = ("cn", "us")

#: Molecular weights (g/mol) used to convert gases from µg/m³ to ppb (EPA only).
MOLECULAR_WEIGHT: dict[str, float] = {"o3": 48.00, "no2": 46.0055, "so2": 64.066, "co": 28.01}

#: Molar volume (L/mol) of an ideal gas at 25 °C and 1 atm.
MOLAR_VOLUME = 24.45

_CN_IAQI = (0, 50, 100, 150, 200, 300, 400, 500)


def _chain(concs: tuple[float, ...], iaqis: tuple[int, ...] = _CN_IAQI) -> list[tuple[float, float, int, int]]:
    """Turn one row of HJ 633 Table 1 into contiguous ``(c_lo, c_hi, i_lo, i_hi)`` segments."""
    return [(float(concs[k]), float(concs[k + 1]), iaqis[k], iaqis[k + 1]) for k in range(len(concs) - 1)]


#: Breakpoint tables: standard -> table key -> [(c_lo, c_hi, i_lo, i_hi), ...], in the unit
#: given by :data:`UNITS`. Table keys are the pollutant keys plus two auxiliary tables that are
#: not inputs: ``cn/so2_24h`` (used for SO2 1-h values above 800 µg/m³) and ``us/o3_1h``
#: (1-hour ozone, used from 0.125 ppm); ``us/o3`` is the 8-hour ozone table.
BREAKPOINTS: dict[str, dict[str, list[tuple[float, float, int, int]]]] = {
    # HJ 633-2012 Table 1; IAQI columns 0, 50, 100, 150, 200, 300, 400, 500.
    "cn": {
        "pm25": _chain((0, 35, 75, 115, 150, 250, 350, 500)),  # 24-h table
        "pm10": _chain((0, 50, 150, 250, 350, 420, 500, 600)),  # 24-h table
        "so2": _chain((0, 150, 500, 650, 800), _CN_IAQI[:5]),  # 1-h; > 800 -> so2_24h
        "so2_24h": _chain((0, 50, 150, 475, 800, 1600, 2100, 2620)),
        "no2": _chain((0, 100, 200, 700, 1200, 2340, 3090, 3840)),  # 1-h
        "co": _chain((0, 5, 10, 35, 60, 90, 120, 150)),  # 1-h, mg/m³
        "o3": _chain((0, 160, 200, 300, 400, 800, 1000, 1200)),  # 1-h
    },
    # EPA AQI Technical Assistance Document (2024 PM2.5 revision).
    "us": {
        "pm25": [(0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
                 (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500)],
        "pm10": [(0, 54, 0, 50), (55, 154, 51, 100), (155, 254, 101, 150),
                 (255, 354, 151, 200), (355, 424, 201, 300), (425, 604, 301, 500)],
        "o3": [(0.000, 0.054, 0, 50), (0.055, 0.070, 51, 100), (0.071, 0.085, 101, 150),
               (0.086, 0.105, 151, 200), (0.106, 0.200, 201, 300)],  # 8-h
        "o3_1h": [(0.125, 0.164, 101, 150), (0.165, 0.204, 151, 200),
                  (0.205, 0.404, 201, 300), (0.405, 0.604, 301, 500)],
        "co": [(0.0, 4.4, 0, 50), (4.5, 9.4, 51, 100), (9.5, 12.4, 101, 150),
               (12.5, 15.4, 151, 200), (15.5, 30.4, 201, 300), (30.5, 50.4, 301, 500)],  # 8-h
        "so2": [(0, 35, 0, 50), (36, 75, 51, 100), (76, 185, 101, 150),
                (186, 304, 151, 200), (305, 604, 201, 300), (605, 1004, 301, 500)],  # 1-h
        "no2": [(0, 53, 0, 50), (54, 100, 51, 100), (101, 360, 101, 150),
                (361, 649, 151, 200), (650, 1249, 201, 300), (1250, 2049, 301, 500)],  # 1-h
    },
}

#: Unit of each breakpoint table: standard -> table key -> unit.
UNITS: dict[str, dict[str, str]] = {
    "cn": {"pm25": "µg/m³", "pm10": "µg/m³", "so2": "µg/m³", "so2_24h": "µg/m³",
           "no2": "µg/m³", "co": "mg/m³", "o3": "µg/m³"},
    "us": {"pm25": "µg/m³", "pm10": "µg/m³", "o3": "ppm", "o3_1h": "ppm", "co": "ppm",
           "so2": "ppb", "no2": "ppb"},
}

#: EPA truncation step per table, in the table's unit.
_US_STEP = {"pm25": 0.1, "pm10": 1.0, "o3": 0.001, "o3_1h": 0.001, "co": 0.1, "so2": 1.0, "no2": 1.0}

#: Slack, in truncation steps, against binary floating point landing just below a step
#: (e.g. 0.078 ppm converted to µg/m³ and back giving 77.99999999 ppb).
_TRUNC_EPS = 1e-6
#: Slack on the index before rounding (e.g. 100.00000000001 must not ceil to 101).
_ROUND_EPS = 1e-9

#: SO2 1-h concentration (µg/m³) above which HJ 633 switches to the 24-h SO2 table.
_CN_SO2_1H_MAX = 800.0
#: O3 concentration (ppm) from which the EPA 1-hour ozone table applies.
_US_O3_1H_MIN = 0.125
#: Highest index value.
AQI_MAX = 500


class Band(NamedTuple):
    """One AQI category: index range ``[lo, hi]``, theme key and label."""

    lo: int
    hi: int
    key: str
    label: str


#: Categories per standard. Keys are identical across standards; the theme maps them to colours.
BANDS: dict[str, list[Band]] = {
    "cn": [
        Band(0, 50, "good", "Excellent (优)"),
        Band(51, 100, "moderate", "Good (良)"),
        Band(101, 150, "usg", "Lightly polluted (轻度污染)"),
        Band(151, 200, "unhealthy", "Moderately polluted (中度污染)"),
        Band(201, 300, "very_unhealthy", "Heavily polluted (重度污染)"),
        Band(301, 500, "hazardous", "Severely polluted (严重污染)"),
    ],
    "us": [
        Band(0, 50, "good", "Good"),
        Band(51, 100, "moderate", "Moderate"),
        Band(101, 150, "usg", "Unhealthy for Sensitive Groups"),
        Band(151, 200, "unhealthy", "Unhealthy"),
        Band(201, 300, "very_unhealthy", "Very Unhealthy"),
        Band(301, 500, "hazardous", "Hazardous"),
    ],
}

#: AQI above which a station counts as over the limit.
_LIMIT = {"cn": 100, "us": 100}


class _Table(NamedTuple):
    lo: np.ndarray
    hi: np.ndarray
    ilo: np.ndarray
    ihi: np.ndarray


def _compile(segments: list[tuple[float, float, int, int]], step: float | None) -> _Table:
    """Return a table as arrays, in truncation steps when ``step`` is given (exact integers)."""
    arr = np.asarray(segments, dtype=float)
    lo, hi = arr[:, 0], arr[:, 1]
    if step is not None:
        lo, hi = np.round(lo / step), np.round(hi / step)
    return _Table(lo, hi, arr[:, 2], arr[:, 3])


_TABLES: dict[str, dict[str, _Table]] = {
    std: {key: _compile(seg, _US_STEP[key] if std == "us" else None) for key, seg in tables.items()}
    for std, tables in BREAKPOINTS.items()
}


def _check_standard(standard: str) -> None:
    """Raise ValueError when ``standard`` is not a supported standard."""
    if standard not in STANDARDS:
        raise ValueError(f"unknown AQI standard {standard!r} (choose cn or us)")


def _check_pollutant(pollutant: str) -> None:
    """Raise ValueError when ``pollutant`` is not one of :data:`POLLUTANTS`."""
    if pollutant not in POLLUTANTS:
        raise ValueError(f"unknown pollutant {pollutant!r} (choose one of {', '.join(POLLUTANTS)})")


def _lookup(table: _Table, x: np.ndarray) -> np.ndarray:
    """Interpolate ``x`` (table units, NaN allowed) in a table; cap above the top, NaN below."""
    idx = np.clip(np.searchsorted(table.lo, x, side="right") - 1, 0, len(table.lo) - 1)
    lo, hi, ilo, ihi = table.lo[idx], table.hi[idx], table.ilo[idx], table.ihi[idx]
    # a value in a gap between EPA segments (only possible without truncation) sits at c_hi
    val = ilo + (ihi - ilo) / (hi - lo) * (np.minimum(x, hi) - lo)
    val = np.where(x > table.hi[-1], table.ihi[-1], val)
    return np.where(x < table.lo[0], np.nan, val)


def _native(pollutant: str, conc: np.ndarray, standard: str) -> np.ndarray:
    """Return µg/m³ in the unit of the standard's table, truncated for EPA; NaN where unknown."""
    c = np.where(conc >= 0, conc, np.nan)  # negative and NaN -> NaN
    if standard == "cn":
        return c / 1000.0 if pollutant == "co" else c
    if pollutant in MOLECULAR_WEIGHT:
        c = c * MOLAR_VOLUME / MOLECULAR_WEIGHT[pollutant]  # ppb
        if pollutant in ("o3", "co"):
            c = c / 1000.0  # ppm
    step = _US_STEP[pollutant]
    return np.floor(c / step + _TRUNC_EPS) * step


def standard_concentration(pollutant: str, conc_ugm3, standard: str = "cn") -> np.ndarray:
    """Convert µg/m³ to the unit of a standard's table, truncated as that standard prescribes.

    Parameters
    ----------
    pollutant : str
        One of :data:`POLLUTANTS`.
    conc_ugm3 : float or array_like
        Concentrations in µg/m³ (CO included).
    standard : {"cn", "us"}
        AQI standard; its unit per pollutant is in :data:`UNITS`.

    Returns
    -------
    numpy.ndarray
        Concentrations in the table's unit (EPA: truncated to the prescribed step), NaN
        where missing or negative.
    """
    _check_standard(standard)
    _check_pollutant(pollutant)
    return _native(pollutant, np.asarray(conc_ugm3, dtype=float), standard)


def _raw_iaqi(pollutant: str, conc: np.ndarray, standard: str) -> np.ndarray:
    """Return the unrounded sub-index of µg/m³ concentrations; NaN where unknown."""
    x = _native(pollutant, conc, standard)
    tables = _TABLES[standard]
    if standard == "cn":
        val = _lookup(tables[pollutant], x)
        if pollutant == "so2":
            val = np.where(x > _CN_SO2_1H_MAX, _lookup(tables["so2_24h"], x), val)
        return val
    n = np.round(x / _US_STEP[pollutant])  # integral number of truncation steps
    val = _lookup(tables[pollutant], n)
    if pollutant == "o3":
        one_hour = _lookup(tables["o3_1h"], n)  # NaN below 0.125 ppm
        val = np.fmax(val, one_hour)
    return val


def _round(val: np.ndarray, standard: str) -> np.ndarray:
    """Round sub-indices as the standard prescribes (cn: up, us: nearest) and cap at 500."""
    if standard == "cn":
        out = np.ceil(val - _ROUND_EPS)
    else:
        out = np.floor(val + 0.5 + _ROUND_EPS)
    return np.minimum(out, AQI_MAX)


def iaqi_array(pollutant: str, conc, standard: str = "cn") -> np.ndarray:
    """Compute the sub-index (IAQI) of many concentrations of one pollutant at once.

    Parameters
    ----------
    pollutant : str
        One of :data:`POLLUTANTS`.
    conc : array_like
        Concentrations in µg/m³ (CO included); NaN or negative means unknown.
    standard : {"cn", "us"}
        AQI standard.

    Returns
    -------
    numpy.ndarray
        Float array of the same shape holding integral sub-indices in ``[0, 500]``, NaN
        where the concentration is unknown.

    Raises
    ------
    ValueError
        If ``standard`` or ``pollutant`` is unknown.
    """
    _check_standard(standard)
    _check_pollutant(pollutant)
    c = np.asarray(conc, dtype=float)
    return _round(_raw_iaqi(pollutant, c, standard), standard)


def iaqi(pollutant: str, conc_ugm3: float | None, standard: str = "cn") -> float | None:
    """Compute the sub-index (IAQI) of one pollutant concentration.

    Parameters
    ----------
    pollutant : str
        One of :data:`POLLUTANTS`.
    conc_ugm3 : float or None
        Concentration in µg/m³ (CO included).
    standard : {"cn", "us"}
        AQI standard.

    Returns
    -------
    float or None
        The integral sub-index as a float, capped at 500 above the top of the table;
        None when the concentration is None, NaN or negative.

    Raises
    ------
    ValueError
        If ``standard`` or ``pollutant`` is unknown.
    """
    _check_standard(standard)
    _check_pollutant(pollutant)
    if conc_ugm3 is None:
        return None
    val = float(iaqi_array(pollutant, np.array([float(conc_ugm3)]), standard)[0])
    return None if math.isnan(val) else val


def aqi(concentrations: Mapping[str, float | None], standard: str = "cn") -> tuple[int | None, str | None]:
    """Compute the AQI of one set of concentrations and the pollutant that sets it.

    The AQI is the largest sub-index. The returned pollutant is the one with that sub-index
    (on a tie, the first in :data:`POLLUTANTS` order). HJ 633 reports a primary pollutant
    only when the AQI exceeds 50 (and lists every pollutant on a tie); this function still
    returns the max-sub-index pollutant, so callers showing the CN "primary pollutant"
    should hide it when the AQI is 50 or less.

    Parameters
    ----------
    concentrations : mapping of str to float or None
        Concentrations in µg/m³ by pollutant key; keys other than :data:`POLLUTANTS`
        are ignored, None/NaN/negative values count as missing.
    standard : {"cn", "us"}
        AQI standard.

    Returns
    -------
    tuple of (int or None, str or None)
        ``(aqi, pollutant)``, or ``(None, None)`` when no pollutant is known.

    Raises
    ------
    ValueError
        If ``standard`` is unknown.
    """
    _check_standard(standard)
    best: float | None = None
    dominant: str | None = None
    for p in POLLUTANTS:
        if p not in concentrations:
            continue
        val = iaqi(p, concentrations[p], standard)
        if val is not None and (best is None or val > best):
            best, dominant = val, p
    return (None, None) if best is None else (int(best), dominant)


def aqi_frame(df, standard: str = "cn"):
    """Compute the AQI and its pollutant for every row of a DataFrame.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per observation, pollutant columns named as in :data:`POLLUTANTS`
        (µg/m³); missing columns and NaN cells count as missing, other columns are ignored.
    standard : {"cn", "us"}
        AQI standard.

    Returns
    -------
    aqi : pandas.Series
        Float AQI per row (integral values, NaN when no pollutant is known), named ``aqi``.
    dominant : pandas.Series
        Object Series of the pollutant key with the largest sub-index (first in
        :data:`POLLUTANTS` order on a tie), None where the AQI is unknown; named ``dominant``.

    Raises
    ------
    ValueError
        If ``standard`` is unknown.
    """
    import pandas as pd  # local: keep the module importable with numpy only

    _check_standard(standard)
    cols = [p for p in POLLUTANTS if p in df.columns]
    n = len(df)
    if not cols:
        values = np.full(n, np.nan)
        names = np.full(n, None, dtype=object)
    else:
        sub = np.column_stack([
            iaqi_array(p, df[p].to_numpy(dtype=float) if df[p].dtype.kind == "f"
                       else pd.to_numeric(df[p], errors="coerce").to_numpy(dtype=float), standard)
            for p in cols
        ])
        known = ~np.isnan(sub).all(axis=1)
        first_max = np.argmax(np.where(np.isnan(sub), -1.0, sub), axis=1)  # first max wins
        values = np.where(known, sub[np.arange(n), first_max], np.nan)
        names = np.where(known, np.asarray(cols, dtype=object)[first_max], None)
    return (pd.Series(values, index=df.index, name="aqi", dtype=float),
            pd.Series(names, index=df.index, name="dominant", dtype=object))


def band(aqi_value: float | None, standard: str = "cn") -> Band | None:
    """Return the category an AQI value falls in.

    Parameters
    ----------
    aqi_value : float or None
        AQI value; values between two bands' integer ranges (e.g. 50.5) go to the upper band,
        values above 500 to the top band.
    standard : {"cn", "us"}
        AQI standard.

    Returns
    -------
    Band or None
        The band, or None for None, NaN or negative values.

    Raises
    ------
    ValueError
        If ``standard`` is unknown.
    """
    _check_standard(standard)
    if aqi_value is None:
        return None
    v = float(aqi_value)
    if math.isnan(v) or v < 0:
        return None
    for b in BANDS[standard]:
        if v <= b.hi:
            return b
    return BANDS[standard][-1]


def limit(standard: str = "cn") -> int:
    """Return the AQI above which a station counts as over the limit.

    Parameters
    ----------
    standard : {"cn", "us"}
        AQI standard.

    Returns
    -------
    int
        100 for both standards: above it the CN category is "lightly polluted" (轻度污染)
        and the US category "Unhealthy for Sensitive Groups".

    Raises
    ------
    ValueError
        If ``standard`` is unknown.
    """
    _check_standard(standard)
    return _LIMIT[standard]
