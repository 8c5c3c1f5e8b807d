"""Benchmark helpers: a headless Chromium that records network traffic, and a served app.

``capture_refresh`` opens a page and returns the exact ``/_dash-update-component`` request the
browser sends for the live refresh, so load generators can replay what real screens send.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from selenium import webdriver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from screenshot import CHROME_ARGS  # noqa: E402


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(width: int = 1920, height: int = 1080) -> webdriver.Chrome:
    """Return a headless Chromium that keeps performance (network) logs."""
    opts = webdriver.ChromeOptions()
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--window-size={width},{height}")
    opts.binary_location = "/usr/bin/chromium"
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=opts)


def serve(env: dict, port: int, log: Path) -> subprocess.Popen:
    """Start ``panorama serve`` on ``port`` with ``env`` added; return once it answers."""
    proc = subprocess.Popen([str(ROOT / ".venv/bin/panorama"), "serve", "--port", str(port)],
                            env={**os.environ, **env}, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start; see {log}")


def dash_requests(driver) -> list[dict]:
    """Return the POSTs to /_dash-update-component seen so far: url, body, request id."""
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            req = msg["params"]["request"]
            if "/_dash-update-component" in req["url"] and req.get("postData"):
                out.append({"url": req["url"], "body": req["postData"], "id": msg["params"]["requestId"]})
    return out


def capture_refresh(driver, url: str, timeout: float = 30, tick: str = "tick") -> dict:
    """Open ``url`` and return the body of the first live-refresh request (triggered by ``tick``).

    ``tick``: the id of the page's refresh interval ("tick" on the manager view, "wall-tick" on the wall).
    """
    driver.get(url)
    deadline = time.time() + timeout
    while time.time() < deadline:
        for r in dash_requests(driver):
            body = json.loads(r["body"])
            if any(i.get("id") == tick for i in body.get("inputs", [])) and "map.figure" in body.get("output", ""):
                return body
        time.sleep(0.3)
    raise RuntimeError("no refresh request seen")
