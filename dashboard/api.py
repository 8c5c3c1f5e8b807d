"""JSON API over the same numbers as the screens: ``/api/kpis`` and ``/health``."""
from __future__ import annotations

import time

from flask import Flask, jsonify, request

from dashboard.live import LiveData, StoreUnavailable
from dashboard.params import BadParameter, check_district, check_window


def _error(status: int, message: str):
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


def init_app(server: Flask, live: LiveData) -> None:
    """Register the API routes on ``server``."""

    @server.get("/api/kpis")
    def api_kpis():
        """Return every KPI for ?district=<id>&window=<1h|24h|7d>."""
        try:
            window = check_window(request.args.get("window"))
            district = check_district(request.args.get("district"), live.district_ids())
            values = live.kpis(window, district)
        except BadParameter as exc:
            return _error(400, str(exc))
        except StoreUnavailable as exc:
            return _error(503, f"store unavailable: {exc}")
        now = time.time()
        out = []
        for k in values:
            j = k.as_json()
            j["data_age_s"] = None if k.as_of is None else round(max(0.0, now - k.as_of), 1)
            out.append(j)
        return jsonify({"window": window, "district": district, "city": live.meta().get("city"),
                        "aqi_standard": live.settings.aqi_standard, "kpis": out})

    @server.get("/health")
    def health():
        """Return the store's reachability and the newest data age per domain."""
        h = live.health()
        return jsonify(h), 200 if h["store"] == "ok" else 503
