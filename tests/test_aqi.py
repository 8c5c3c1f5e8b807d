"""Tests of layers.air_quality.aqi against published worked examples and the breakpoint tables."""
from __future__ import annotations

import ast
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from layers.air_quality import aqi as A

MW = A.MOLECULAR_WEIGHT


def to_ugm3(pollutant: str, value: float, standard: str) -> float:
    """Convert a concentration in the table unit of ``standard`` back to µg/m³."""
    unit = A.UNITS[standard][pollutant]
    if unit == "µg/m³":
        return value
    if unit == "mg/m³":
        return value * 1000.0
    gas = pollutant.split("_")[0]
    ppb = value * 1000.0 if unit == "ppm" else value
    return ppb * MW[gas] / A.MOLAR_VOLUME


# --------------------------------------------------------------------------- worked examples


def test_epa_pm25_example_2024_table():
    """EPA TAD example, 2024 table: PM2.5 35.9 µg/m³ -> (150-101)/(55.4-35.5)*(35.9-35.5)+101 = 101.98 -> 102."""
    assert A.iaqi("pm25", 35.9, "us") == 102


def test_epa_ozone_8h_example():
    """EPA TAD example: O3 0.078 ppm -> (150-101)/(0.085-0.071)*(0.078-0.071)+101 = 125.5 -> 126.

    Input is 0.078 ppm in µg/m³: 0.078*1000*48/24.45 ≈ 153.13; the round trip must truncate
    back to 0.078 ppm, not 0.077.
    """
    ugm3 = 0.078 * 1000 * 48.00 / 24.45
    assert ugm3 == pytest.approx(153.128, abs=1e-3)
    assert float(A.standard_concentration("o3", ugm3, "us")) == pytest.approx(0.078, abs=1e-12)
    assert A.iaqi("o3", ugm3, "us") == 126


def test_epa_truncation_not_rounding():
    """Values just under a step truncate down: 0.0779 ppm -> 0.077 -> 3500*0.006+101 = 122."""
    ugm3 = 0.0779 * 1000 * 48.00 / 24.45
    assert float(A.standard_concentration("o3", ugm3, "us")) == pytest.approx(0.077, abs=1e-12)
    assert A.iaqi("o3", ugm3, "us") == 122
    # PM2.5 35.49 truncates to 35.4 (top of Moderate, 100), not 35.5 (101)
    assert A.iaqi("pm25", 35.49, "us") == 100
    assert A.iaqi("pm25", 35.5, "us") == 101
    # PM10 154.9 truncates to 154 -> 100
    assert A.iaqi("pm10", 154.9, "us") == 100


def test_epa_float_roundtrip_needs_epsilon():
    """Every integral ppb value converted to µg/m³ and back truncates to itself."""
    for gas in ("o3", "no2", "so2"):
        ppb = np.arange(0, 2050, dtype=float)
        ugm3 = ppb * MW[gas] / 24.45
        got = A.standard_concentration(gas, ugm3, "us")
        expected = ppb / 1000 if gas == "o3" else ppb
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_hj633_pm25_rounds_up():
    """HJ 633: PM2.5 80 µg/m³ -> (150-100)/(115-75)*(80-75)+100 = 106.25 -> ceil -> 107."""
    assert A.iaqi("pm25", 80, "cn") == 107


def test_hj633_exact_integer_not_bumped():
    """HJ 633: PM2.5 115 µg/m³ is exactly 150 and must not ceil to 151 through float noise."""
    assert A.iaqi("pm25", 115, "cn") == 150
    # NO2 1-h 150: (100-50)/(200-100)*(150-100)+50 = 75 exactly
    assert A.iaqi("no2", 150, "cn") == 75


def test_hj633_co_unit_conversion():
    """CO 3000 µg/m³ = 3 mg/m³ -> 1-h table (50-0)/(5-0)*(3-0) = 30."""
    assert A.iaqi("co", 3000, "cn") == 30
    assert A.UNITS["cn"]["co"] == "mg/m³"


def test_epa_co_unit_conversion():
    """CO 10 ppm = 10*28.01/24.45 mg/m³ ≈ 11456 µg/m³ -> (150-101)/(12.4-9.5)*(10-9.5)+101 = 109.4 -> 109."""
    ugm3 = 10 * 1000 * 28.01 / 24.45
    assert float(A.standard_concentration("co", ugm3, "us")) == pytest.approx(10.0)
    assert A.iaqi("co", ugm3, "us") == 109


def test_hj633_so2_above_800_uses_24h_table():
    """SO2 1-h 1000 µg/m³ is indexed on the 24-h table: (300-200)/(1600-800)*(1000-800)+200 = 225."""
    assert A.iaqi("so2", 800, "cn") == 200  # last row of the 1-h table
    assert A.iaqi("so2", 1000, "cn") == 225
    assert A.iaqi("so2", 801, "cn") == 201  # 200.125 rounded up


def test_hj633_o3_1h_to_1200():
    """O3 1-h 1100 µg/m³ -> (500-400)/(1200-1000)*(1100-1000)+400 = 450; above 1200 -> 500."""
    assert A.iaqi("o3", 1100, "cn") == 450
    assert A.iaqi("o3", 1200, "cn") == 500
    assert A.iaqi("o3", 5000, "cn") == 500


def test_us_ozone_uses_higher_of_8h_and_1h_tables():
    """Hourly O3: 8-h table below 0.125 ppm, the higher of both from there, never decreasing."""
    ppm = lambda v: v * 1000 * 48.00 / 24.45  # noqa: E731
    # 0.124: 8-h only: (300-201)/(0.200-0.106)*(0.124-0.106)+201 = 219.96 -> 220
    assert A.iaqi("o3", ppm(0.124), "us") == 220
    # 0.125: 8-h gives 221.05, 1-h gives 101 -> 221
    assert A.iaqi("o3", ppm(0.125), "us") == 221
    # 0.201: 8-h table ended (held at 300), 1-h gives 197 -> 300
    assert A.iaqi("o3", ppm(0.201), "us") == 300
    # 0.405: 1-h 301
    assert A.iaqi("o3", ppm(0.405), "us") == 301
    # 0.504: 1-h (500-301)/(0.604-0.405)*(0.504-0.405)+301 = 400
    assert A.iaqi("o3", ppm(0.504), "us") == 400
    assert A.iaqi("o3", ppm(0.700), "us") == 500


def test_cap_at_500():
    for std in A.STANDARDS:
        for p in A.POLLUTANTS:
            assert A.iaqi(p, 1e7, std) == 500


# --------------------------------------------------------------------------- tables


def _input_tables(standard):
    """Yield (pollutant, segments) whose boundaries the pollutant's index must hit exactly."""
    tables = A.BREAKPOINTS[standard]
    for p in A.POLLUTANTS:
        yield p, tables[p]
    if standard == "cn":
        # SO2 above 800 µg/m³ is indexed on the 24-h table
        yield "so2", [s for s in tables["so2_24h"] if s[0] >= 800]
    else:
        # Below 0.405 ppm the 1-h rows are dominated by the 8-h table (held at 300 above 0.200)
        yield "o3", [s for s in tables["o3_1h"] if s[0] >= 0.405]


@pytest.mark.parametrize("standard", A.STANDARDS)
def test_every_breakpoint_maps_to_its_index(standard):
    for p, segments in _input_tables(standard):
        for c_lo, c_hi, i_lo, i_hi in segments:
            assert A.iaqi(p, to_ugm3(p, c_lo, standard), standard) == i_lo, (standard, p, c_lo)
            assert A.iaqi(p, to_ugm3(p, c_hi, standard), standard) == i_hi, (standard, p, c_hi)


@pytest.mark.parametrize("standard", A.STANDARDS)
def test_tables_are_well_formed(standard):
    for key, segments in A.BREAKPOINTS[standard].items():
        assert key in A.UNITS[standard]
        for (c_lo, c_hi, i_lo, i_hi) in segments:
            assert c_lo < c_hi and i_lo < i_hi
        for a, b in zip(segments, segments[1:]):
            assert b[0] >= a[1] and b[2] >= a[3]
            if standard == "cn":  # HJ 633 rows are contiguous
                assert (b[0], b[2]) == (a[1], a[3])
            else:  # EPA rows start one step / one index above the previous row
                assert b[2] == a[3] + 1
        assert segments[-1][3] <= 500


def test_2024_pm25_table():
    assert A.BREAKPOINTS["us"]["pm25"] == [
        (0.0, 9.0, 0, 50), (9.1, 35.4, 51, 100), (35.5, 55.4, 101, 150),
        (55.5, 125.4, 151, 200), (125.5, 225.4, 201, 300), (225.5, 325.4, 301, 500)]


@pytest.mark.parametrize("standard", A.STANDARDS)
@pytest.mark.parametrize("pollutant", A.POLLUTANTS)
def test_monotonic_sweep(standard, pollutant):
    top = max(to_ugm3(k, seg[-1][1], standard)
              for k, seg in A.BREAKPOINTS[standard].items() if k.split("_")[0] == pollutant)
    conc = np.linspace(0, top * 1.2, 200_001)
    values = A.iaqi_array(pollutant, conc, standard)
    assert not np.isnan(values).any()
    assert values[0] == 0 and values[-1] == 500
    assert (np.diff(values) >= 0).all()


@pytest.mark.parametrize("standard", A.STANDARDS)
@pytest.mark.parametrize("pollutant", A.POLLUTANTS)
def test_vectorised_equals_scalar(standard, pollutant):
    rng = np.random.default_rng(zlib.crc32(f"{standard}/{pollutant}".encode()))
    conc = rng.uniform(-50, 4000 if pollutant != "co" else 60_000, 400)
    conc[rng.random(400) < 0.1] = np.nan
    vec = A.iaqi_array(pollutant, conc, standard)
    for c, v in zip(conc, vec):
        s = A.iaqi(pollutant, c, standard)
        assert (s is None and math.isnan(v)) or s == v, (c, s, v)


def test_iaqi_array_keeps_shape():
    out = A.iaqi_array("pm25", np.array([[10.0, np.nan], [-1.0, 80.0]]), "cn")
    assert out.shape == (2, 2)
    assert np.isnan(out[0, 1]) and np.isnan(out[1, 0]) and out[1, 1] == 107


# --------------------------------------------------------------------------- missing & errors


@pytest.mark.parametrize("standard", A.STANDARDS)
@pytest.mark.parametrize("value", [None, float("nan"), -0.1, -100])
def test_missing_values(standard, value):
    assert A.iaqi("pm25", value, standard) is None
    assert A.aqi({"pm25": value}, standard) == (None, None)


def test_aqi_without_pollutants():
    assert A.aqi({}) == (None, None)
    assert A.aqi({"temp_c": 20.0}, "us") == (None, None)
    assert A.aqi({"pm25": None, "o3": 100}) == (32, "o3")  # (50/160)*100 = 31.25 -> 32


def test_zero_is_known():
    assert A.iaqi("pm25", 0, "cn") == 0
    assert A.aqi({"so2": 0.0}, "us") == (0, "so2")


@pytest.mark.parametrize("call", [
    lambda: A.iaqi("pm25", 10, "eu"),
    lambda: A.iaqi_array("pm25", np.array([10.0]), "xx"),
    lambda: A.aqi({"pm25": 10}, "CN"),
    lambda: A.aqi_frame(pd.DataFrame({"pm25": [1.0]}), "xx"),
    lambda: A.band(50, "xx"),
    lambda: A.limit("xx"),
    lambda: A.standard_concentration("pm25", 1.0, "xx"),
])
def test_unknown_standard(call):
    with pytest.raises(ValueError, match=r"unknown AQI standard '.*' \(choose cn or us\)"):
        call()


def test_unknown_standard_message():
    with pytest.raises(ValueError) as err:
        A.limit("xx")
    assert str(err.value) == "unknown AQI standard 'xx' (choose cn or us)"


def test_unknown_pollutant():
    with pytest.raises(ValueError, match="unknown pollutant"):
        A.iaqi("pm2.5", 10)


# --------------------------------------------------------------------------- aqi / aqi_frame


def test_aqi_picks_max_and_its_pollutant():
    """cn: PM2.5 80 -> 107, PM10 100 -> 75, O3 100 -> 32, NO2 300 -> 110; AQI 110 by NO2."""
    conc = {"pm25": 80, "pm10": 100, "o3": 100, "no2": 300}
    # NO2 1-h 300: (150-100)/(700-200)*(300-200)+100 = 110
    assert A.aqi(conc, "cn") == (110, "no2")
    conc["no2"] = 10
    assert A.aqi(conc, "cn") == (107, "pm25")
    value, pollutant = A.aqi(conc, "cn")
    assert isinstance(value, int) and pollutant == "pm25"


def test_aqi_tie_goes_to_first_pollutant():
    # PM2.5 35 -> 50 and PM10 50 -> 50 (cn): tie, pm25 comes first
    assert A.aqi({"pm10": 50, "pm25": 35}, "cn") == (50, "pm25")


def test_aqi_frame_matches_aqi():
    rng = np.random.default_rng(7)
    n = 300
    df = pd.DataFrame({
        "pm25": rng.uniform(0, 400, n), "pm10": rng.uniform(0, 600, n),
        "no2": rng.uniform(0, 300, n), "co": rng.uniform(100, 9000, n),
        "o3": rng.uniform(0, 400, n), "station": "Dongsi",
    }, index=pd.RangeIndex(100, 100 + n))
    df.loc[df.sample(frac=0.3, random_state=1).index, "pm25"] = np.nan
    df.loc[df.index[:5], ["pm25", "pm10", "no2", "co", "o3"]] = np.nan  # no so2 column at all
    for std in A.STANDARDS:
        values, dominant = A.aqi_frame(df, std)
        assert list(values.index) == list(df.index) and list(dominant.index) == list(df.index)
        for i, row in df.iterrows():
            v, p = A.aqi(row.to_dict(), std)
            if v is None:
                assert math.isnan(values[i]) and dominant[i] is None
            else:
                assert values[i] == v and dominant[i] == p


def test_aqi_frame_without_pollutant_columns():
    values, dominant = A.aqi_frame(pd.DataFrame({"temp_c": [1.0, 2.0]}), "cn")
    assert values.isna().all() and dominant.isna().all() and len(values) == 2


# --------------------------------------------------------------------------- bands & limit


@pytest.mark.parametrize("standard", A.STANDARDS)
def test_bands(standard):
    bands = A.BANDS[standard]
    assert [b.key for b in bands] == ["good", "moderate", "usg", "unhealthy", "very_unhealthy", "hazardous"]
    assert bands[0].lo == 0 and bands[-1].hi == 500
    for a, b in zip(bands, bands[1:]):
        assert b.lo == a.hi + 1
    for b in bands:
        assert A.band(b.lo, standard) == b and A.band(b.hi, standard) == b
    assert A.band(50.5, standard).key == "moderate"
    assert A.band(999, standard).key == "hazardous"
    assert A.band(None, standard) is None and A.band(float("nan"), standard) is None
    assert A.band(-1, standard) is None


def test_band_labels():
    assert A.band(120, "cn").label == "Lightly polluted (轻度污染)"
    assert A.band(40, "cn").label == "Excellent (优)"
    assert A.band(120, "us").label == "Unhealthy for Sensitive Groups"
    assert A.band(301, "us").label == "Hazardous"


@pytest.mark.parametrize("standard", A.STANDARDS)
def test_limit(standard):
    assert A.limit(standard) == 100
    assert A.band(A.limit(standard), standard).key == "moderate"
    assert A.band(A.limit(standard) + 1, standard).key == "usg"


def test_module_has_no_dash_or_flask_imports():
    tree = ast.parse(Path(A.__file__).read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"dash", "flask", "plotly"}
