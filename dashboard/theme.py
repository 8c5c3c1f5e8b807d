"""Colours and map style, in one place, shared by the map, the panels and the exports.

The CSS side of the theme lives in ``assets/theme.css`` as CSS variables with the same names.
Scales avoid red-against-green so they read for colour-blind operators; every status also
carries a word, not only a colour.
"""
from __future__ import annotations

import math

DARK = {
    "bg": "#0b1017",
    "panel": "#131b26",
    "panel_2": "#1b2533",
    "grid": "#2a3647",
    "text": "#e8eef6",
    "muted": "#9fb0c3",
    "accent": "#4cc3ff",
    "district_line": "#8da2bb",
    "highlight": "#ffffff",
}
LIGHT = {
    "bg": "#f4f6f9",
    "panel": "#ffffff",
    "panel_2": "#eef1f5",
    "grid": "#d5dbe3",
    "text": "#111820",
    "muted": "#4a5868",
    "accent": "#0072b2",
    "district_line": "#5a6b80",
    "highlight": "#000000",
}
THEMES = {"dark": DARK, "light": LIGHT}

#: The status colours: ONE table that every screen, embed, export and report reads (the CSS
#: variables --good/--warn/--bad/--unknown in assets/theme.css carry the same values; a test checks).
#:
#: Scheme: Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008), the one most
#: plotting tools ship for deuteranopia/protanopia: good = bluish green, watch = orange, alert =
#: vermillion. Orange against vermillion differ in lightness as well as hue, and bluish green is
#: far from both for every common colour-vision deficiency; grey means "no data" or "too old to
#: count" (stale, lighter). Every status also carries a word (OK / WATCH / ALERT / NO DATA).
#: ``dark`` is drawn on the dark screens; ``light`` is the same hue darkened to stay legible as
#: text and thin lines on white (the light theme and the printed report's lines).
STATUS_COLOURS = {
    "dark": {"good": "#009e73", "warn": "#e69f00", "bad": "#d55e00", "unknown": "#7f8c9d", "stale": "#a3adb9"},
    "light": {"good": "#00795a", "warn": "#9a6700", "bad": "#b34f00", "unknown": "#6b7785", "stale": "#8a94a3"},
}
STATUS_WORDS = {"good": "OK", "warn": "WATCH", "bad": "ALERT", "unknown": "NO DATA", "stale": "STALE"}
#: KPI status colour (dark screens) and the word shown beside it.
STATUS = {k: (STATUS_COLOURS["dark"][k], STATUS_WORDS[k]) for k in ("good", "warn", "bad", "unknown")}


def status_colour(status: str, theme: str = "dark") -> str:
    """Return the colour of ``status`` (good | warn | bad | unknown | stale) in ``theme``."""
    return STATUS_COLOURS.get(theme, STATUS_COLOURS["dark"])[status]


def threshold_status(value, warn: float, bad: float, higher_is_worse: bool = True) -> str:
    """Return good/warn/bad for ``value`` against ``warn``/``bad`` as the KPI cards decide (unknown if NaN)."""
    if value is None or math.isnan(value):
        return "unknown"
    sign = 1 if higher_is_worse else -1
    return "bad" if sign * value >= sign * bad else "warn" if sign * value >= sign * warn else "good"



def status_scale(warn: float, bad: float, lo: float, hi: float, higher_is_worse: bool = True) -> list:
    """Return a stepped plotly colour scale over ``lo``..``hi``: each value in the colour of the
    status its KPI's ``warn``/``bad`` thresholds give it (the district's colour = the tile's)."""
    def pos(v):
        return min(1.0, max(0.0, (float(v) - lo) / (hi - lo)))

    g, w, b = (STATUS_COLOURS["dark"][k] for k in ("good", "warn", "bad"))
    e = 1e-6  # a threshold itself takes the worse status, as on the tile
    if higher_is_worse:
        pw, pb = pos(warn), pos(bad)
        return [[0.0, g], [max(0.0, pw - e), g], [pw, w], [max(pw, pb - e), w], [pb, b], [1.0, b]]
    pb, pw = pos(bad), pos(warn)
    return [[0.0, b], [pb, b], [min(1.0, pb + e), w], [pw, w], [min(1.0, max(pw + e, pb + e)), g], [1.0, g]]


def status_legend(warn: float, bad: float, unit: str, higher_is_worse: bool = True) -> list[tuple[str, str]]:
    """Return the legend of a :func:`status_scale`: each status's range and its colour."""
    c = STATUS_COLOURS["dark"]
    if higher_is_worse:
        return [(f"< {warn:g}{unit} {STATUS_WORDS['good']}", c["good"]),
                (f"{warn:g}–{bad:g}{unit} {STATUS_WORDS['warn']}", c["warn"]),
                (f"≥ {bad:g}{unit} {STATUS_WORDS['bad']}", c["bad"])]
    return [(f"> {warn:g}{unit} {STATUS_WORDS['good']}", c["good"]),
            (f"{bad:g}–{warn:g}{unit} {STATUS_WORDS['warn']}", c["warn"]),
            (f"≤ {bad:g}{unit} {STATUS_WORDS['bad']}", c["bad"])]


def map_style(theme: str = "dark") -> dict:
    """Return a MapLibre style that draws with no network: a plain background, no tiles, no glyphs.

    ``sources`` holds one empty GeoJSON source: plotly prunes an empty ``{}`` when it diffs
    the style on an update, and MapLibre then rejects the style ("missing required property
    sources").
    """
    t = THEMES.get(theme, DARK)
    return {
        "version": 8,
        "name": f"panorama-{theme}",
        "sources": {"none": {"type": "geojson", "data": {"type": "FeatureCollection", "features": []}}},
        "layers": [{"id": "background", "type": "background", "paint": {"background-color": t["bg"]}}],
    }


def figure_layout(theme: str = "dark", **kw) -> dict:
    """Return the common layout of small SVG charts (sparklines, trends) in the theme."""
    t = THEMES.get(theme, DARK)
    base = dict(
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
        font=dict(color=t["text"], family="Inter, 'DejaVu Sans', Arial, sans-serif"),
        margin=dict(l=0, r=0, t=0, b=0), showlegend=False,
        xaxis=dict(visible=False, fixedrange=True), yaxis=dict(visible=False, fixedrange=True),
    )
    base.update(kw)
    return base
