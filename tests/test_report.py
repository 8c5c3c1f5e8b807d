"""`panorama report`: one self-contained HTML file that opens with networking disabled; PDF printing."""
from __future__ import annotations

import re
import subprocess
from datetime import date, timedelta

import pytest
from _demo import build_demo_store
from typer.testing import CliRunner

from dashboard.cli import app
from dashboard.export import CLOSED_NETWORK_FLAGS, SOFTWARE_GL_FLAGS, browser_path
from dashboard.kpis import KPIS


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    url = build_demo_store(folder, hours=4)
    out = folder / "week.html"
    today = date.today()
    mp = pytest.MonkeyPatch()
    mp.setenv("PANORAMA_DATABASE_URL", url)
    r = CliRunner().invoke(app, ["report", "--from", (today - timedelta(days=6)).isoformat(),
                                 "--to", (today + timedelta(days=1)).isoformat(), "--out", str(out)])
    mp.undo()
    assert r.exit_code == 0, r.output
    return out, url


def test_report001_self_contained(report_file):
    html = report_file[0].read_text()
    assert html.count("Plotly=") + html.count("window.Plotly") >= 1
    assert html.count("<script src=") == 0
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']https?://""", html), "loads something from the net"
    assert len(re.findall(r"class='kpi-row'", html)) == len(KPIS)
    assert "MANIFEST" in html or "Data manifest" in html


def test_report002_opens_offline_with_every_kpi_and_chart(report_file, tmp_path):
    out = report_file[0]
    cmd = [browser_path() or "chromium", "--headless=new", "--no-sandbox", *CLOSED_NETWORK_FLAGS,
           "--host-resolver-rules=MAP * ~NOTFOUND", *SOFTWARE_GL_FLAGS, f"--user-data-dir={tmp_path / 'p'}",
           "--virtual-time-budget=10000", "--dump-dom", out.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    drawn = len(re.findall(r'class="[^"]*js-plotly-plot', dom))
    assert drawn == len(KPIS) + 1, f"{drawn} charts drawn"  # a trend per KPI + the map
    assert dom.count('class="main-svg"') >= len(KPIS)
    for k in KPIS:
        assert f'data-kpi="{k.id}"' in dom


def test_report003_pdf_and_bad_input(report_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PANORAMA_DATABASE_URL", report_file[1])
    pdf = tmp_path / "week.pdf"
    today = date.today().isoformat()
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", today, "--out", str(pdf), "--format", "pdf"])
    assert r.exit_code == 0, r.output
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", "2000-01-01", "--out", str(pdf)])
    assert r.exit_code == 1 and "before" in r.output
    r = CliRunner().invoke(app, ["report", "--from", today, "--to", today, "--district", "<script>'; DROP",
                                 "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 1 and "unknown district" in r.output


@pytest.mark.parametrize("frm,to", [("1900-01-01", None), ("0001-01-01", "0001-01-02"), ("9999-01-01", "9999-12-31")])
def test_report004_far_periods_are_clipped_to_the_data_and_say_so(report_file, tmp_path, monkeypatch, frm, to):
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
