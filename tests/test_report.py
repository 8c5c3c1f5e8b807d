"""`panorama report`: one self-contained HTML file that opens with networking disabled; PDF printing."""
from __future__ import annotations

import re
import subprocess
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from _demo import build_demo_store
from typer.testing import CliRunner

from dashboard.cli import app
from dashboard.export import CLOSED_NETWORK_FLAGS, SOFTWARE_GL_FLAGS, browser_path
from dashboard.kpis import KPIS
from layers.air_quality.kpis import LABEL as POLLUTANT_LABEL

CATEGORY_KPIS = {"air.dominant"}  # a category: its most frequent value, no chart
TOTAL_KPIS = {"energy.consumption_today"}  # a running total of today: the period's total, no chart
CHARTED = [k for k in KPIS if k.id not in CATEGORY_KPIS | TOTAL_KPIS]
TZ = ZoneInfo("Asia/Shanghai")
#: the fixed store: Beijing data from Fri 2026-11-27 16:00 to Mon 2026-11-30 04:00 (city time)
STORE_END = datetime(2026, 11, 30, 4, 0, tzinfo=TZ).timestamp()


def _report(url, tmp_path, *args, name="r.html"):
    out = tmp_path / name
    mp = pytest.MonkeyPatch()
    mp.setenv("PANORAMA_DATABASE_URL", url)
    try:
        r = CliRunner().invoke(app, ["report", *args, "--out", str(out)])
    finally:
        mp.undo()
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    url = build_demo_store(folder, hours=4)
    today = date.today()
    out = _report(url, folder, "--from", (today - timedelta(days=6)).isoformat(),
                  "--to", (today + timedelta(days=1)).isoformat(), name="week.html")
    return out, url


@pytest.fixture(scope="module")
def weekend_store(tmp_path_factory):
    return build_demo_store(tmp_path_factory.mktemp("weekend"), hours=60, end=STORE_END)


def test_report001_self_contained(report_file):
    html = report_file[0].read_text()
    assert "<script" not in html  # static SVG charts: nothing to load, nothing to run
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']https?://""", html), "loads something from the net"
    assert len(re.findall(r"class='kpi-row'", html)) == len(KPIS)
    assert "MANIFEST" in html or "Data manifest" in html


def test_report004_html_under_4_mb(report_file):
    assert report_file[0].stat().st_size < 4_000_000  # it was 5.5 MB with plotly.js inlined


def test_report002_opens_offline_with_every_kpi_and_chart(report_file, tmp_path):
    out = report_file[0]
    cmd = [browser_path() or "chromium", "--headless=new", "--no-sandbox", *CLOSED_NETWORK_FLAGS,
           "--host-resolver-rules=MAP * ~NOTFOUND", *SOFTWARE_GL_FLAGS, f"--user-data-dir={tmp_path / 'p'}",
           "--virtual-time-budget=10000", "--dump-dom", out.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    charts = re.findall(r'<figure class="chart" id="trend-([^"]+)">.*?<svg', dom, re.DOTALL)
    assert sorted(charts) == sorted(k.id.replace(".", "-") for k in CHARTED)
    assert re.search(r'id="period-map"><svg', dom)
    for k in KPIS:
        assert f'data-kpi="{k.id}"' in dom


def test_report003_pdf_and_bad_input(report_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PANORAMA_DATABASE_URL", report_file[1])
    pdf = tmp_path / "week.pdf"
    today = date.today().isoformat()
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", today, "--out", str(pdf), "--format", "pdf"])
    assert r.exit_code == 0, r.output
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    assert _media_boxes(pdf.read_bytes()) == {(595, 842)}  # A4 (a city without a paper or locale); was Letter
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", "2000-01-01", "--out", str(pdf)])
    assert r.exit_code == 1 and "before" in r.output
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", today, "--district", "<script>'; DROP",
                                 "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 1 and "unknown district" in r.output
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", today, "--paper", "A3",
                                 "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 1 and "--paper must be a4 or letter" in r.output


def _media_boxes(pdf: bytes) -> set[tuple[int, int]]:
    return {(round(float(w)), round(float(h))) for w, h in
            re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)}


def test_report005_paper_letter_on_request(report_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PANORAMA_DATABASE_URL", report_file[1])
    today = date.today().isoformat()
    pdf = tmp_path / "letter.pdf"
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", today, "--out", str(pdf), "--format", "pdf",
                                 "--paper", "letter"])
    assert r.exit_code == 0, r.output
    assert _media_boxes(pdf.read_bytes()) == {(612, 792)}


@pytest.mark.parametrize("config, paper", [
    ({}, "a4"), ({"locale": "en_US"}, "letter"), ({"locale": "fr_CA.UTF-8"}, "letter"), ({"lang": "en-GB"}, "a4"),
    ({"locale": "zh_CN"}, "a4"), ({"paper": "Letter", "locale": "de_DE"}, "letter"), ({"paper": "A3"}, "a4"),
    ({"lang": "en"}, "a4"),
])
def test_report006_default_paper_from_the_city(config, paper):
    from dashboard.report import default_paper

    assert default_paper(config) == paper


def test_report007_states_the_exact_period_and_flags_partial_days(weekend_store, tmp_path):
    html = _report(weekend_store, tmp_path, "--from", "2026-11-29", "--to", "2026-11-30").read_text()
    m = re.search(r'id="period" data-start="([^"]+)" data-end="([^"]+)"\s+data-tz="([^"]+)" data-partial="(\w+)"', html)
    assert m.groups() == ("2026-11-29T00:00:00+08:00", "2026-12-01T00:00:00+08:00", "Asia/Shanghai", "yes")
    period = re.search(r'id="period".*?</div>', html, re.DOTALL).group(0)
    assert "Sun 2026-11-29 00:00" in period and "Tue 2026-12-01 00:00" in period and "end exclusive" in period
    assert "Asia/Shanghai (UTC+08:00)" in period
    partial = re.search(r"id='partial-warning'>(.*?)</p>", html, re.DOTALL).group(1)
    assert "Mon 2026-11-30 (17 % covered)" in partial and "2026-11-29" not in partial.split("so ")[1]
    whole = _report(weekend_store, tmp_path, "--from", "2026-11-28", "--to", "2026-11-29", name="w.html").read_text()
    assert 'data-partial="no"' in whole and "partial-warning" not in whole


def test_report008_warns_when_the_day_mix_differs(weekend_store, tmp_path):
    sat = _report(weekend_store, tmp_path, "--from", "2026-11-28", "--to", "2026-11-28", name="sat.html").read_text()
    warning = re.search(r"id='day-mix-warning'>(.*?)</p>", sat, re.DOTALL).group(1)
    assert "0 weekdays and 1 weekend day" in warning and "1 weekday and 0 weekend days" in warning
    sun_mon = _report(weekend_store, tmp_path, "--from", "2026-11-29", "--to", "2026-11-30",
                      name="sm.html").read_text()  # Sun+Mon against Fri+Sat: one of each in both
    assert "day-mix-warning" not in sun_mon


def _rows(html: str) -> dict[str, str]:
    return dict(re.findall(r"<tr class='kpi-row' data-kpi='([^']+)'(.*?)</tr>", html, re.DOTALL))


def test_report009_units_categories_totals_and_status(weekend_store, tmp_path):
    html = _report(weekend_store, tmp_path, "--from", "2026-11-28", "--to", "2026-11-29", name="u.html").read_text()
    assert "()" not in html  # "Incidents ()" was a unit-less KPI's empty brackets
    rows = _rows(html)
    dominant = re.search(r"data-value='([^']*)'", rows["air.dominant"]).group(1)
    assert dominant in POLLUTANT_LABEL.values()  # a category: the pollutant that led most hours, not a mean
    assert re.search(r"\(\d+ of \d+ h\)", rows["air.dominant"])
    used = rows["energy.consumption_today"]
    assert "Energy used in period" in used and re.search(r"[\d,]+\.\d\u00a0MWh", used)
    assert "trend-energy-consumption_today" not in html and "trend-air-dominant" not in html
    statuses = {kid: re.search(r"data-status='(\w+)'", row).group(1) for kid, row in rows.items()
                if kid not in CATEGORY_KPIS}
    assert statuses["traffic.tti"] in {"good", "warn", "bad"}
    for kid, st in statuses.items():
        if st != "unknown":
            assert f"class='chip st-{st}'" in rows[kid]


def test_report010_what_changed_and_the_map_of_the_period(weekend_store, tmp_path):
    from dashboard.store import readmodel as rm
    from dashboard.store.schema import make_engine

    html = _report(weekend_store, tmp_path, "--from", "2026-11-29", "--to", "2026-11-29", name="c.html").read_text()
    with make_engine(weekend_store).connect() as conn:
        names = set(rm.districts_frame(conn)["name"])
    changed = re.search(r"<p id=\"what-changed\">(.*?)</p>", html, re.DOTALL).group(1)
    assert re.search(r"(rose|fell) \d+\u00a0%", changed)
    assert any(f"in <b>{n}</b>" for n in names if f"in <b>{n}</b>" in changed)  # a place, not only a number
    svg = re.search(r"id=\"period-map\"><svg.*?</svg>", html, re.DOTALL).group(0)
    assert svg.count("<path ") == len(names)
    table = re.search(r"id='district-table'.*?</table>", html, re.DOTALL).group(0)
    assert table.count("<tr>") >= 2


@pytest.mark.browser
def test_report011_layout_fits_charts_in_cards_and_numbers_on_one_line(dash_duo, weekend_store, tmp_path):
    out = _report(weekend_store, tmp_path, "--from", "2026-11-28", "--to", "2026-11-29", name="l.html")
    d = dash_duo.driver
    for width in (794, 1280):  # an A4 page's width at 96 dpi, and a laptop
        d.set_window_size(width, 900)
        d.get(out.as_uri())
        bad = d.execute_script("""
            const out = [];
            for (const f of document.querySelectorAll('figure.chart, #period-map')) {
              const r = f.getBoundingClientRect(), s = f.querySelector('svg').getBoundingClientRect();
              if (s.left < r.left - 0.5 || s.right > r.right + 0.5 || s.width < 50) out.push('spills: ' + f.id);
            }
            for (const c of document.querySelectorAll('#kpi-summary td.num, #kpi-summary td.nowrap')) {
              const r = document.createRange();  // the text's line boxes: one top per line
              r.selectNodeContents(c);
              const tops = new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.bottom)));
              if (tops.size > 1) out.push('wraps: ' + c.textContent);
            }
            for (const tr of document.querySelectorAll('#kpi-summary tr')) {
              if (getComputedStyle(tr).breakInside !== 'avoid') { out.push('row may split'); break; }
            }
            return out;""")
        assert bad == [], (width, bad)


@pytest.mark.parametrize("frm,to", [("1900-01-01", None), ("0001-01-01", "0001-01-02"), ("9999-01-01", "9999-12-31")])
def test_report012_far_periods_are_clipped_to_the_data_and_say_so(report_file, tmp_path, monkeypatch, frm, to):
    import dashboard.report as rep

    monkeypatch.setenv("PANORAMA_DATABASE_URL", report_file[1])
    real, calls = rep.compute_all, []

    def counted(*args, **kw):
        calls.append(args[1])
        assert len(calls) <= 12, "the report reads weeks where no data is stored"
        return real(*args, **kw)

    monkeypatch.setattr(rep, "compute_all", counted)
    out = tmp_path / "far.html"
    r = CliRunner().invoke(app, ["report", "--from", frm, "--to", to or date.today().isoformat(), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "note: data is stored from" in r.stderr and "Traceback" not in r.output
    html = out.read_text()
    assert "id='clipped'" in html and len(re.findall(r"class='kpi-row'", html)) == len(KPIS)
