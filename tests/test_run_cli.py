"""`panorama run` on a fresh data folder: one line with the URL, a production server, live feeds; the
embedded default (the anonymous viewer, a kept secret key, the first administrator's password once)."""
from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request

from dashboard.settings import PROJECT_ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ctrl_c_reaches_it() -> None:
    """In the child: take SIGINT as a command in a terminal does. A suite started in the background
    (``cmd &`` in a script) passes SIGINT on ignored, and Python then never turns it into Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_run001_prints_one_url_line_and_serves_quietly(tmp_path):
    port = _free_port()
    env = {**os.environ, "PANORAMA_DATA_DIR": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT),
           "PANORAMA_DATABASE_URL": "", "PANORAMA_CACHE_URL": "", "COLUMNS": "200"}
    for name in ("PANORAMA_SECRET_KEY", "PANORAMA_ANONYMOUS"):  # what `make run` gets: neither is set
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "dashboard.cli", "run", "--port", str(port), "--days", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            preexec_fn=_ctrl_c_reaches_it)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        url = None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = [m for line in list(lines) if (m := re.search(r"https?://\S+", line))]
            url = found[0].group(0) if found else None
            time.sleep(0.2)
        assert url == f"http://127.0.0.1:{port}/", "".join(lines)
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200 and b"<title>" in r.read()
            assert r.url == url  # read without signing in (no redirect to /login): the anonymous viewer
        while time.monotonic() < deadline and not any("simulator running" in line for line in lines):
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(timeout=10)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert len(re.findall(r"https?://", out)) == 1, out  # Dash's "running on" and Flask's banner are gone
    assert "development server" not in out.lower() and "WARNING" not in out, out
    assert "Traceback" not in out, out
    assert any("simulator running" in line for line in lines), out  # the live feed runs alongside
    # the embedded default: a private secret key kept in the data folder, the administrator's password once
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    key = (tmp_path / "secret_key").read_text().strip()
    assert len(key) >= 32 and key not in out
    shown = re.findall(r"^ {4}(\S+)$", out, re.M)
    assert len(shown) == 1 and out.count(shown[0]) == 1, out
    assert "`panorama user reset-password admin` makes a new one" in out
