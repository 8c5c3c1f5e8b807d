"""The promise of issue 17: a domain is one folder and one registry line.

Nothing outside ``layers/<domain>/`` names a domain, one of its KPIs or one of its asset kinds;
leaving a domain out (``PANORAMA_WITHOUT``, as if its registry line were removed) leaves every
page, API, export and report working without it.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from layers import DOMAINS

ROOT = Path(__file__).resolve().parent.parent
#: Files that may name a domain's words for another reason, each with it.
EXEMPT = {
    # the store's tables: a service request's "satisfaction" is its 1–5 rating, a column
    "dashboard/store/schema.py": "table columns",
    "dashboard/store/services.py": "a service request's rating field",
    "dashboard/store/service_rollup.py": "a service request's rating field",
    "dashboard/store/service_reads.py": "a service request's rating field",
    "dashboard/importers/requests.py": "a service request's rating field",
}


def _tokens() -> set[str]:
    out = set()
    for d in DOMAINS:
        out.add(d.id)
        out |= {k.id for k in d.kpis}
        out |= {k.id for k in d.kinds}
    return out


def _product_files() -> list[Path]:
    files = [ROOT / "app.py"]
    files += sorted((ROOT / "dashboard").rglob("*.py"))
    # the shared helpers of the layers (not layers/__init__.py: the registry names each package once)
    files += sorted(p for p in (ROOT / "layers").glob("*.py") if p.name != "__init__.py")
    files += sorted((ROOT / "assets").glob("*.css")) + sorted((ROOT / "assets").glob("*.js"))
    return [f for f in files if "migrations" not in f.parts and str(f.relative_to(ROOT)) not in EXEMPT]


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def names_of(path: Path, tokens: set[str]) -> list[str]:
    """Return what ``path`` says that names a domain: string literals equal to a domain id, a KPI id
    or an asset kind, imports of a domain package; in CSS/JS, those words outside comments."""
    text = path.read_text(encoding="utf-8")
    found = []
    if path.suffix == ".py":
        tree = ast.parse(text)
        skip = _docstrings(tree)
        packages = {f"layers.{d.id}" for d in DOMAINS}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                if node.value in tokens:
                    found.append(f"{path.name}:{node.lineno} {node.value!r}")
            elif isinstance(node, ast.ImportFrom) and node.module and (
                    node.module in packages or any(node.module.startswith(p + ".") for p in packages)):
                found.append(f"{path.name}:{node.lineno} import {node.module}")
    else:
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        code = re.sub(r"^\s*//.*$", "", code, flags=re.M)
        for t in tokens:
            if re.search(rf"(?<![\w]){re.escape(t)}(?![\w])", code):
                found.append(f"{path.name}: {t}")
    return found


def test_no_file_outside_a_domain_folder_names_a_domain():
    tokens = _tokens()
    offenders = [x for f in _product_files() for x in names_of(f, tokens)]
    assert offenders == []


def test_the_scan_finds_a_domain_named_outside_its_folder(tmp_path):
    """The scan above can fail: a literal domain id, a KPI id, an import and a CSS class are found."""
    d = DOMAINS[0]
    py = tmp_path / "x.py"
    py.write_text(f'"""docstring naming {d.id} is fine"""\nfrom layers.{d.id} import DOMAIN\n'
                  f'A = {{"{d.id}": 1}}\nB = "{d.kpis[0].id}"\n', encoding="utf-8")
    css = tmp_path / "x.css"
    css.write_text(f"/* {d.id} in a comment is fine */ .tile-{d.id} {{ color: red; }}", encoding="utf-8")
    assert len(names_of(py, _tokens())) == 3
    assert len(names_of(css, _tokens())) == 1


def test_every_domain_is_one_package_with_its_parts():
    for d in DOMAINS:
        assert (ROOT / "layers" / d.id / "__init__.py").is_file(), d.id
        assert d.kpis, d.id
        assert all(k.domain == d.id and k.definition for k in d.kpis), d.id
        assert d.wall is not None and all(k in {x.id for x in d.kpis} for k in d.wall.headline), d.id
        if d.layer is not None:
            assert d.layer.domain == d.id


@pytest.fixture(scope="module")
def beijing_store_url(tmp_path_factory):
    from _demo import build_demo_store

    return build_demo_store(tmp_path_factory.mktemp("without"), hours=2)


WITHOUT_SCRIPT = r"""
import json, sys, time
from datetime import date, datetime
from dashboard.settings import Settings
from dashboard.app import create_app
from dashboard.export import panel_bytes, parse_request
from dashboard.kpis import KPIS
from dashboard.pages import embed, manager, wall
from dashboard.report import build_report
from layers import DOMAINS, LAYERS
app = create_app(Settings(database_url=sys.argv[1], cache_url="simple://", background_refresh=False))
live = app.server.extensions["panorama"]
c = app.server.test_client()
out = {"domains": [d.id for d in DOMAINS]}
for url in ["/", "/wall", "/embed/map", "/api/kpis", "/health", "/api/panels/map.json", "/api/panels/map.csv"]:
    r = c.get(url)
    out[url] = [r.status_code, r.get_data(as_text=True)]
district = sorted(live.district_ids())[0]
for d in (None, district):  # the pages as the router renders them, and a refresh of every layer and KPI
    q = "" if d is None else f"?district={d}"
    out[f"manager{q}"] = [200, str(manager.layout(live, "/", q))]
    out[f"wall{q}"] = [200, str(wall.layout(live, "/wall", q))]
    out[f"embed{q}"] = [200, str(embed.layout(live, "/embed/map", q))]
    out[f"refresh{q}"] = [200, str(manager._render(live, "24h", d, [layer.id for layer in LAYERS], [k.id for k in KPIS]))]
for pid in ["map"] + [k.id for k in KPIS[:3]]:  # exports: image and data
    for fmt in ("svg", "csv", "json"):
        body, _ = panel_bytes(live, parse_request(live, pid, {}), fmt)
        out[f"export {pid}.{fmt}"] = [200, body[:200].decode("utf-8", "replace")]
today = datetime.now().date()
html = build_report(live.engine, today, today, None, live.settings.aqi_standard, thresholds=live.thresholds)
out["report"] = [200, html[-200:]]
print(json.dumps(out))
"""


@pytest.mark.parametrize("left_out", [d.id for d in DOMAINS])
def test_leaving_a_domain_out_leaves_pages_api_and_exports_working(left_out, beijing_store_url):
    env = {**os.environ, "PANORAMA_WITHOUT": left_out, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", WITHOUT_SCRIPT, beijing_store_url], env=env, capture_output=True,
                       text=True, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert left_out not in out["domains"] and len(out["domains"]) == len(DOMAINS) - 1
    for url, answer in out.items():
        if url != "domains":
            assert answer[0] == 200, (url, answer[1][-500:])
    kpis = json.loads(out["/api/kpis"][1])["kpis"]
    assert kpis and not any(k["domain"] == left_out for k in kpis)
    assert {k["domain"] for k in kpis} == set(out["domains"])
    assert "KeyError" not in p.stderr
