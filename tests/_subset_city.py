"""Cities with only some domains (tests/test_subset_cities.py, docs/requests-only-city.md): built from
the Montreal example's files (scripts/build_montreal.py) and imported with ``panorama city import``."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]

CITY_TOML = """name = "{name}"
timezone = "America/Montreal"

[files]
districts = "districts.geojson"
{extra}"""


def _build_module():
    spec = importlib.util.spec_from_file_location("build_montreal", REPO / "scripts" / "build_montreal.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_subset_city(root: Path, with_requests: bool, map_section: str = "") -> dict:
    """Write a city folder under ``root`` with boundaries (and, if asked, service requests) only and
    import it with the CLI into a fresh SQLite store; return its folder, store URL and environment."""
    from dashboard.cli import app

    folder = root / "city"
    _build_module().build(folder, hours=2)
    for name in ("stations.csv", "roads.geojson", "substations.csv", "air_quality.csv",
                 "traffic_speed_wide.csv", "energy.csv"):
        (folder / name).unlink()
    extra = ('service_categories = "service_categories.csv"\nservice_requests = "service_requests.csv"\n'
             if with_requests else "")
    if not with_requests:
        (folder / "service_categories.csv").unlink()
        (folder / "service_requests.csv").unlink()
    name = "Requests-only Montréal" if with_requests else "Boundaries-only Montréal"
    (folder / "city.toml").write_text(CITY_TOML.format(name=name, extra=extra) + map_section, encoding="utf-8")
    env = {"PANORAMA_CITY": str(folder), "PANORAMA_DATA_DIR": str(root / "var"), "PANORAMA_DATABASE_URL": ""}
    f = str(folder)
    steps = [["boundaries", f"{f}/districts.geojson", "--id-field", "id", "--name-field", "name"]]
    if with_requests:
        steps += [["categories", f"{f}/service_categories.csv"],
                  ["requests", f"{f}/service_requests.csv", "--id-field", "request_id",
                   "--timezone", "America/Montreal"]]
    runner = CliRunner()
    for s in steps:
        r = runner.invoke(app, ["city", "import", *s], env=env)
        assert r.exit_code == 0, (s, r.output)
    url = f"sqlite:///{(root / 'var' / 'panorama.sqlite').resolve()}"
    return {"folder": folder, "url": url, "env": env}
