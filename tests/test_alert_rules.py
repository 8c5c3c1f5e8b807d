"""Alert rules in city.toml: the shapes they may take, and one clear line for every mistake."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

import pytest

from dashboard.alerts.rules import EACH, RuleError, format_duration, parse_duration, parse_rules
from dashboard.city import load_city
from dashboard.settings import PROJECT_ROOT

BEIJING = PROJECT_ROOT / "data" / "beijing"


def rules_of(text: str, districts=None):
    return parse_rules(tomllib.loads(text).get("alert"), "city.toml", districts)


def test_a_condition_as_expression_or_as_fields_is_the_same_rule():
    a = rules_of('[[alert]]\nid = "x"\nwhen = "traffic.tti > 1.6"\nfor = "10m"\n')[0]
    b = rules_of('[[alert]]\nid = "x"\nkpi = "traffic.tti"\nop = ">"\nthreshold = 1.6\nfor = 600\n')[0]
    assert a == b
    assert (a.type, a.domain, a.scope, a.for_, a.severity) == ("kpi", "traffic", "city", 600.0, "warning")
    assert a.holds(1.61) and not a.holds(1.6)


def test_the_three_kinds_of_rule():
    asset, per_district, nodata = rules_of(
        '[[alert]]\nid = "aqi"\nwhen = "any aq_station aqi > 200"\nseverity = "critical"\n'
        '[[alert]]\nid = "aqi-d"\nwhen = "any aq_station pm25 >= 150"\nper = "district"\nscope = "haidian"\n'
        '[[alert]]\nid = "nd"\nwhen = "no traffic readings for 10m"\nscope = "each district"\nkeep_firing_for = "90s"\n',
        districts={"haidian", "chaoyang"})
    assert (asset.type, asset.domain, asset.kind, asset.target, asset.per, asset.severity) == \
        ("asset", "air_quality", "aq_station", "aqi", "asset", "critical")
    assert (per_district.per, per_district.scope, per_district.op) == ("district", "haidian", ">=")
    assert (nodata.type, nodata.domain, nodata.after, nodata.scope, nodata.keep_firing_for) == \
        ("nodata", "traffic", 600.0, EACH, 90.0)
    assert nodata.describe() == "no traffic data for 10m"
    assert asset.describe() == "any aq_station aqi > 200"


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h30m", 5400), ("1d", 86_400),
                                           ("2.5m", 150), (45, 45), (0, 0)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


def test_format_duration_round_trips():
    for s in (90, 600, 5400, 86_400 + 61):
        assert parse_duration(format_duration(s), "x") == s


@pytest.mark.parametrize("body, message", [
    ('when = "traffic.tti > 1.6"', "[[alert]] #1: id: missing"),
    ('id = "a b"\nwhen = "traffic.tti > 1.6"', "[[alert]] #1: id: 'a b' is not a rule id"),
    ('id = "r"\nwhen = "traffic.tt > 1.6"', "[[alert]] 'r': kpi: unknown KPI 'traffic.tt'"),
    ('id = "r"\nwhen = "traffic.tti >> 1.6"', "[[alert]] 'r': when: 'traffic.tti >> 1.6' is not a condition"),
    ('id = "r"\nwhen = "any aq_station aqi_max > 200"', "[[alert]] 'r': metric: unknown metric 'aqi_max'"),
    ('id = "r"\nwhen = "any road_segment aqi > 200"', "[[alert]] 'r': kind: 'aqi' is measured by aq_station, not road_segment"),
    ('id = "r"\nwhen = "any station aqi > 200"', "[[alert]] 'r': kind: unknown asset kind 'station'"),
    ('id = "r"\nwhen = "no trafic data for 10m"', "[[alert]] 'r': nodata: unknown domain 'trafic'"),
    ('id = "r"\nwhen = "no traffic data for ten minutes"', "[[alert]] 'r': when: 'no traffic data for ten minutes' is not"),
    ('id = "r"\nwhen = "no traffic data for 10x"', "[[alert]] 'r': after: '10x' is not a duration"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nfor = "soon"', "[[alert]] 'r': for: 'soon' is not a duration"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nkeep_firing_for = -5', "[[alert]] 'r': keep_firing_for: -5 is not a duration"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nseverity = "page"', "[[alert]] 'r': severity: 'page' is not one of info"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nscope = "atlantis"', "[[alert]] 'r': scope: no district 'atlantis'"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nfour = "10m"', "[[alert]] 'r': unknown field(s) four"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nkpi = "traffic.tti"', "[[alert]] 'r': when: give the condition either"),
    ('id = "r"\nkpi = "traffic.tti"\nthreshold = 1.6', "[[alert]] 'r': op: missing"),
    ('id = "r"\nkpi = "traffic.tti"\nop = ">"\nthreshold = "high"', "[[alert]] 'r': threshold: 'high' is not a finite"),
    ('id = "r"\nkpi = "traffic.tti"\nop = "="\nthreshold = 1', "[[alert]] 'r': op: '=' is not a comparison"),
    ('id = "r"\nwhen = "air.dominant > 1"', "[[alert]] 'r': kpi: 'air.dominant' is a category"),
    ('id = "r"\nwhen = "any aq_station aqi > 200"\nper = "street"', "[[alert]] 'r': per: 'street' is not"),
    ('id = "r"\nwhen = "any aq_station aqi > 200"\nscope = "each district"', "[[alert]] 'r': scope: an asset rule"),
    ('id = "r"\nwhen = "traffic.tti > 1.6"\nper = "district"', "[[alert]] 'r': per: does not apply to a kpi rule"),
    ('id = "r"\nnodata = "traffic"', "[[alert]] 'r': after: a no-data rule needs"),
    ('id = "r"\nnodata = "traffic"\nafter = "0s"', "[[alert]] 'r': after: must be more than 0"),
    ('id = "r"\nsummary = "nothing to test"', "[[alert]] 'r': when: missing"),
])
def test_a_bad_rule_is_one_line_naming_the_rule_and_the_field(body, message):
    with pytest.raises(RuleError) as e:
        rules_of(f"[[alert]]\n{body}\n", districts={"haidian"})
    text = str(e.value)
    assert "\n" not in text and text.startswith("city.toml: ")
    assert message in text


def test_rule_ids_are_unique_and_tables_required():
    with pytest.raises(RuleError, match="'r': id: used by an earlier rule"):
        rules_of('[[alert]]\nid = "r"\nwhen = "traffic.tti > 1"\n[[alert]]\nid = "r"\nwhen = "traffic.tti > 2"\n')
    with pytest.raises(RuleError, match=r"alert rules are \[\[alert\]\] tables"):
        rules_of('[alert]\nid = "r"\n')


def test_the_demo_city_ships_rules_for_every_feed():
    rules = load_city(BEIJING).alert_rules
    by_type = {t: [r for r in rules if r.type == t] for t in ("kpi", "asset", "nodata")}
    assert {r.target for r in by_type["kpi"]} >= {"traffic.tti", "parking.full", "transit.on_time"}
    assert {r.scope for r in by_type["kpi"] if r.target == "traffic.tti"} == {"city", EACH}
    assert [(r.kind, r.target, r.op, r.threshold) for r in by_type["asset"]] == [("aq_station", "aqi", ">", 200)]
    assert {r.domain for r in by_type["nodata"]} == {"traffic", "air_quality", "energy", "parking", "transit"}
    assert all(r.after >= 600 for r in by_type["nodata"])


def test_a_city_checks_named_districts_against_its_boundaries(tmp_path):
    shutil.copy(BEIJING / "districts.geojson", tmp_path / "districts.geojson")
    base = 'name = "T"\ntimezone = "UTC"\n[files]\ndistricts = "districts.geojson"\n'
    (tmp_path / "city.toml").write_text(base + '[[alert]]\nid = "hd"\nwhen = "traffic.tti > 2"\nscope = "haidian"\n')
    assert load_city(tmp_path).alert_rules[0].scope == "haidian"
    (tmp_path / "city.toml").write_text(base + '[[alert]]\nid = "hd"\nwhen = "traffic.tti > 2"\nscope = "haidain"\n')
    with pytest.raises(RuleError, match="city.toml: \\[\\[alert\\]\\] 'hd': scope: no district 'haidain' in this city"):
        load_city(tmp_path).alert_rules  # noqa: B018
    (tmp_path / "city.toml").write_text(base)
    assert load_city(tmp_path).alert_rules == []


def test_rules_of_a_left_out_domain_are_skipped_not_errors():
    """One city file serves the city with and without a domain (PANORAMA_WITHOUT)."""
    code = ("from dashboard.city import load_city; from dashboard.settings import PROJECT_ROOT; "
            "print(sorted({r.domain for r in load_city(PROJECT_ROOT / 'data' / 'beijing').alert_rules}))")
    env = {**os.environ, "PANORAMA_WITHOUT": "parking,transit"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "['air_quality', 'energy', 'traffic']"
    # a truly unknown id is still an error with the domain left out
    code2 = ("from dashboard.alerts.rules import parse_rules; "
             "parse_rules([{'id': 'r', 'when': 'parking.fulll > 1'}])")
    p = subprocess.run([sys.executable, "-c", code2], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "kpi: unknown KPI 'parking.fulll'" in p.stderr
