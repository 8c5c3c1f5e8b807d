"""Unit conversion to each metric's stored unit (see ``dashboard.metrics``)."""
from __future__ import annotations

from dashboard.importers import ImportProblem
from dashboard.metrics import METRICS

#: Spellings of units -> canonical symbol.
ALIASES = {
    "µg/m³": "µg/m³", "μg/m³": "µg/m³", "ug/m3": "µg/m³", "µg/m3": "µg/m³", "μg/m3": "µg/m³", "ugm3": "µg/m³",
    "gq": "µg/m³", "mg/m³": "mg/m³", "mg/m3": "mg/m³", "gp": "mg/m³", "ppb": "ppb", "61": "ppb",
    "ppm": "ppm", "59": "ppm", "km/h": "km/h", "kmh": "km/h", "kmh-1": "km/h", "kmt": "km/h", "mph": "mph",
    "hm": "mph", "m/s": "m/s", "mts": "m/s", "°c": "°C", "c": "°C", "degc": "°C", "cel": "°C", "k": "K",
    "kel": "K", "°f": "°F", "f": "°F", "fah": "°F", "mw": "MW", "kw": "kW", "gw": "GW", "veh/h": "veh/h",
    "vehicles/h": "veh/h", "": "",
}
#: Molar masses (g/mol) for ppb/ppm of gases, at 25 °C and 1 atm (24.45 L/mol).
MOLAR = {"co": 28.01, "no2": 46.01, "so2": 64.07, "o3": 48.00}

#: (from unit, to unit) -> factor or function.
_FACTORS = {
    ("mg/m³", "µg/m³"): 1000.0, ("mph", "km/h"): 1.609344, ("m/s", "km/h"): 3.6,
    ("kW", "MW"): 0.001, ("GW", "MW"): 1000.0,
}


def canonical(unit: str) -> str:
    """Return the canonical spelling of ``unit`` (raises ``KeyError`` when unknown)."""
    return ALIASES[str(unit).strip().lower().replace(" ", "")]


def converter(metric: str, unit: str, where: str):
    """Return a function that converts values of ``metric`` given in ``unit`` to the stored unit."""
    target = METRICS[metric].unit
    try:
        src = canonical(unit)
    except KeyError:
        raise ImportProblem(f"{where}: unknown unit {unit!r} for {metric}") from None
    if src in ("", target):
        return lambda v: v
    if (src, target) in _FACTORS:
        f = _FACTORS[(src, target)]
        return lambda v: v * f
    if target == "°C" and src == "K":
        return lambda v: v - 273.15
    if target == "°C" and src == "°F":
        return lambda v: (v - 32.0) * 5.0 / 9.0
    if target == "µg/m³" and src in ("ppb", "ppm") and metric in MOLAR:
        f = MOLAR[metric] / 24.45 * (1000.0 if src == "ppm" else 1.0)
        return lambda v: v * f
    raise ImportProblem(f"{where}: cannot convert {metric} from {src} to {target}")
