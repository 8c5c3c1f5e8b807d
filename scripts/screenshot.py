"""Take a screenshot of a page in headless Chromium: python scripts/screenshot.py URL OUT.png [WxH] [--wait S].

``--sign-in NAME`` signs in first through the page's /login form (the password from stdin's first line);
``--ready SELECTOR`` is what to wait for (default: a map, a KPI card or the admin page).
``--cookie NAME=VALUE`` (repeatable) sets a cookie on the URL's origin first: a signed-in session
(``panorama_session=…``) or a wall's device token (``panorama_device=…``) for pages that need one.
"""
from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.webdriver.common.by import By

CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
               "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
               "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"]


def driver(width: int, height: int) -> webdriver.Chrome:
    """Return a headless Chromium of the given window size."""
    opts = webdriver.ChromeOptions()
    for a in CHROME_ARGS:
        opts.add_argument(a)
    opts.add_argument(f"--window-size={width},{height}")
    opts.binary_location = "/usr/bin/chromium"
    d = webdriver.Chrome(options=opts)
    d.set_window_size(width, height)
    # make the viewport exactly width × height
    inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
    d.set_window_size(width + (width - inner[0]), height + (height - inner[1]))
    return d


def sign_in(d: webdriver.Chrome, url: str, name: str, password: str) -> None:
    """Sign in through the sign-in form of the server of ``url``."""
    u = urlsplit(url)
    d.get(f"{u.scheme}://{u.netloc}/login")
    d.find_element(By.ID, "login-name").send_keys(name)
    d.find_element(By.ID, "login-password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, ".login-form button").click()
    deadline = time.time() + 10
    while time.time() < deadline and urlsplit(d.current_url).path == "/login":
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("out")
    ap.add_argument("size", nargs="?", default="1920x1080")
    ap.add_argument("--wait", type=float, default=4.0)
    ap.add_argument("--click", help="CSS selector to click before the shot")
    ap.add_argument("--sign-in", metavar="NAME", help="sign in as NAME first (password: stdin's first line)")
    ap.add_argument("--ready", default=".maplibregl-canvas, .kpi, .admin-main", help="CSS selector to wait for")
    ap.add_argument("--cookie", action="append", default=[], metavar="NAME=VALUE",
                    help="a cookie for the URL's origin (repeatable), e.g. panorama_session=<token>")
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.split("x"))
    d = driver(w, h)
    try:
        if a.sign_in:
            sign_in(d, a.url, a.sign_in, sys.stdin.readline().rstrip("\r\n"))
        if a.cookie:
            from urllib.parse import urlsplit

            u = urlsplit(a.url)
            d.get(f"{u.scheme}://{u.netloc}/health")  # a cookie is set on a page of its origin
            for c in a.cookie:
                name, _, value = c.partition("=")
                d.add_cookie({"name": name, "value": value, "path": "/"})
        d.get(a.url)
        deadline = time.time() + 30
        while time.time() < deadline and not d.find_elements(By.CSS_SELECTOR, a.ready):
            time.sleep(0.2)
        time.sleep(a.wait)
        if a.click:
            d.find_element(By.CSS_SELECTOR, a.click).click()
            time.sleep(a.wait)
            d.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            time.sleep(0.5)
        d.save_screenshot(a.out)
    finally:
        d.quit()


if __name__ == "__main__":
    main()
