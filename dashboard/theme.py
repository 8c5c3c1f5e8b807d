"""Colours and map style, in one place, shared by the map, the panels and the exports.

The CSS side of the theme lives in ``assets/theme.css`` as CSS variables with the same names.
Scales avoid red-against-green so they read for colour-blind operators; every status also
carries a word, not only a colour.
"""
from __future__ import annotations

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

#: KPI status colours (Okabe–Ito based) and the word shown beside them.
STATUS = {
    "good": ("#56b4e9", "OK"),
    "warn": ("#f0e442", "WATCH"),
    "bad": ("#ff7043", "ALERT"),
    "unknown": ("#7f8c9d", "NO DATA"),
}

#: Traffic congestion bands by speed ÷ free-flow speed: (upper bound of ratio, key, label, colour).
CONGESTION_BANDS = [
    (0.25, "jammed", "Jammed (< 25 %)", "#d03c8f"),
    (0.50, "heavy", "Heavy (25–50 %)", "#e8590c"),
    (0.75, "slow", "Slow (50–75 %)", "#f0c419"),
    (1.01, "free", "Free flow (> 75 %)", "#4cb5f5"),
]

#: AQI band colours: the standards' own palette (known to operators), brightened for a dark map.
AQI_COLOURS = {
    "good": "#00c853",
    "moderate": "#ffeb3b",
    "usg": "#ff9800",
    "unhealthy": "#f44336",
    "very_unhealthy": "#ab47bc",
    "hazardous": "#b0375a",
}

#: Sequential, colour-blind-safe scales (cividis-like / blue–orange) for the choropleths.
LOAD_SCALE = [[0.0, "#1d3b6e"], [0.5, "#5b7a99"], [0.75, "#c9b25a"], [0.9, "#f3a712"], [1.0, "#ff5a1f"]]
SATISFACTION_SCALE = [[0.0, "#e8590c"], [0.5, "#b9a27a"], [1.0, "#2f7fd1"]]


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
