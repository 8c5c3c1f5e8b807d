"""Settings at start-up: a bad PANORAMA_* variable is one line and a refusal; settings print as plain text."""
from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from dashboard.cli import app
from dashboard.settings import Settings

BAD = "javascript:alert(1)"


def test_bad_frame_ancestors_refused_when_settings_are_read():
    with pytest.raises(ValidationError, match="not an origin for frame-ancestors"):
        Settings(frame_ancestors=BAD)
    assert Settings(frame_ancestors="'self' https://intranet.example.org").frame_ancestors


@pytest.mark.parametrize("command", [["serve"], ["ingest", "x.csv"], ["db", "current"]])
def test_bad_frame_ancestors_is_one_line_at_start_up(tmp_path, command):
    r = CliRunner().invoke(app, command, env={"PANORAMA_FRAME_ANCESTORS": BAD, "PANORAMA_DATA_DIR": str(tmp_path),
                                              "PANORAMA_DATABASE_URL": "", "COLUMNS": "60"})
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr == f"error: bad setting PANORAMA_FRAME_ANCESTORS: not an origin for frame-ancestors: {BAD!r}\n"
    assert list(tmp_path.iterdir()) == []  # refused before anything started


def test_init_prints_a_store_path_with_brackets_as_plain_text(tmp_path):
    folder = tmp_path / "v[/]x"
    r = CliRunner().invoke(app, ["init", "--days", "0"], env={"PANORAMA_DATA_DIR": str(folder),
                                                              "PANORAMA_DATABASE_URL": "", "COLUMNS": "300"})
    assert r.exit_code == 0, r.output  # the store is made: the command must not fail while saying so
    assert f"store ready at sqlite:///{folder}/panorama.sqlite: 16 districts" in r.output
