"""Alert rules as a city declares them: ``[[alert]]`` tables of ``city.toml``, checked against the registry.

Three kinds of rule, one table shape (see README, *Alert rules*):

- a KPI rule — ``when = "<kpi id> > 1.6"`` — on the KPI of the whole city, of each district or of one;
- an asset rule — ``when = "any <asset kind> <metric> > 200"`` — on every asset of that kind (in the
  city or one district), one alert per asset (``per = "asset"``) or per district (``per = "district"``);
- a no-data rule — ``when = "no <domain> data for 10m"`` — on a domain's newest reading, in the city,
  each district or one.

Every mistake is one line naming the rule and the field (:class:`RuleError`), never a traceback: a
city file is written by hand. Ids of KPIs, metrics, kinds and domains are checked against the
registry; a rule naming a domain that ``PANORAMA_WITHOUT`` leaves out is skipped, so one city file
serves the city with and without it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from layers import DOMAINS, left_out

SEVERITIES = ("info", "warning", "critical")
#: Comparisons a rule may make; ``>`` and ``>=`` alert on high values, ``<`` and ``<=`` on low ones.
OPS = (">=", "<=", ">", "<")
#: Where a KPI or no-data rule looks: the whole city, each district on its own, or one district (its id).
CITY, EACH = "city", "each district"

_KEYS = {"id", "when", "kpi", "kind", "metric", "op", "threshold", "nodata", "after", "scope", "per",
         "severity", "for", "keep_firing_for", "summary"}
_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_OP = r">=|<=|>|<"
_KPI_EXPR = re.compile(rf"^\s*(?P<kpi>[\w.]+)\s*(?P<op>{_OP})\s*(?P<threshold>{_NUM})\s*$")
_ASSET_EXPR = re.compile(rf"^\s*any\s+(?P<kind>\w+)\s+(?P<metric>\w+)\s*(?P<op>{_OP})\s*(?P<threshold>{_NUM})\s*$",
                         re.I)
_NODATA_EXPR = re.compile(r"^\s*no\s+(?P<nodata>\w+)\s+(?:data|readings)\s+for\s+(?P<after>\S+)\s*$", re.I)
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


class RuleError(ValueError):
    """A rule of the city file that cannot be used, in one line: which rule, which field, why."""


@dataclass(frozen=True)
class Rule:
    """One alert rule, checked. ``type`` is ``kpi``, ``asset`` or ``nodata``; ``domain`` the domain it
    watches (inhibition and silences match on it); durations are seconds.

    ``scope``: ``city``, ``each district`` or a district id. ``target``: the KPI id, or the metric of an
    asset rule (``kind`` its asset kind, ``per`` ``asset`` or ``district``); ``after``: a no-data
    rule's age limit.
    """

    id: str
    type: str
    domain: str
    scope: str = CITY
    target: str = ""
    kind: str = ""
    op: str = ">"
    threshold: float = math.nan
    per: str = ""
    after: float = 0.0
    severity: str = "warning"
    for_: float = 0.0
    keep_firing_for: float = 0.0
    summary: str = ""

    def describe(self) -> str:
        """Return the condition as one would write it in ``when``."""
        if self.type == "kpi":
            return f"{self.target} {self.op} {self.threshold:g}"
        if self.type == "asset":
            return f"any {self.kind} {self.target} {self.op} {self.threshold:g}"
        return f"no {self.domain} data for {format_duration(self.after)}"

    def holds(self, value: float) -> bool:
        """Return whether ``value`` meets the condition (a KPI or asset rule)."""
        return compare(self.op, value, self.threshold)


def compare(op: str, a, b):
    """Return ``a op b`` (numbers or numpy arrays)."""
    if op == ">":
        return a > b
    if op == ">=":
        return a >= b
    if op == "<":
        return a < b
    return a <= b


def parse_duration(value, where: str) -> float:
    """Return seconds of ``10m``, ``90s``, ``1h30m``, ``1d`` or a number of seconds."""
    if isinstance(value, bool):
        raise RuleError(f"{where}: {value!r} is not a duration (e.g. 90s, 10m, 1h30m)")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise RuleError(f"{where}: {value!r} is not a duration (seconds ≥ 0)")
        return float(value)
    m = _DURATION.match(str(value).strip().lower()) if isinstance(value, str) and value.strip() else None
    if m is None or not any(m.groups()):
        raise RuleError(f"{where}: {value!r} is not a duration (e.g. 90s, 10m, 1h30m)")
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return d * 86_400 + h * 3600 + mi * 60 + s


def format_duration(seconds: float) -> str:
    """Return ``seconds`` as the shortest of ``1h30m``, ``10m``, ``90s``."""
    s = int(round(seconds))
    if s == 0:
        return "0s"
    out = ""
    for unit, n in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= n:
            out += f"{s // n}{unit}"
            s %= n
    return out


class _Registry:
    """What rules may name: KPIs, asset kinds, asset values (metrics and computed ones), domains."""

    def __init__(self, domains):
        self.kpis = {k.id: k for d in domains for k in d.kpis}
        self.kinds = {k.id: d.id for d in domains for k in d.kinds}
        self.values = {m.id: m for d in domains for m in (*d.metrics, *d.asset_values)}
        self.domains = {d.id: d for d in domains}
        self.value_domain = {m.id: d.id for d in domains for m in (*d.metrics, *d.asset_values)}

    def names(self, ids) -> str:
        return ", ".join(sorted(ids))


def parse_rules(tables, where: str = "city.toml", districts: set[str] | None = None) -> list[Rule]:
    """Return the rules of ``[[alert]]`` ``tables`` (a list of dicts), checked; raise :class:`RuleError`.

    ``districts``: the city's district ids, when known, to check rules naming one.
    """
    if tables is None:
        return []
    reg, gone = _Registry(DOMAINS), None
    rules: list[Rule] = []
    for t, here in declared(tables, where, "alert", "alert rules", "rule"):
        try:
            rules.append(_parse_one(t, here, reg, districts))
        except _Unknown as exc:
            gone = gone or _Registry(left_out())
            if not exc.in_(gone):
                raise RuleError(str(exc)) from None
    return rules


def declared(tables, where: str, table: str, plural: str, noun: str):
    """Yield (table, where it is) for each ``[[table]]`` of ``tables``, each with an id of its own;
    raise :class:`RuleError` in one line for a missing, malformed or repeated id."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise RuleError(f"{where}: {plural} are [[{table}]] tables")
    seen: set[str] = set()
    for n, t in enumerate(tables, 1):
        tid = t.get("id")
        if not isinstance(tid, str) or not _ID.match(tid):
            raise RuleError(f"{where}: [[{table}]] #{n}: id: {'missing' if tid is None else repr(tid) + ' is not'} "
                            f"a {noun} id (letters, digits, _ . : -)")
        here = f"{where}: [[{table}]] {tid!r}"
        if tid in seen:
            raise RuleError(f"{here}: id: used by an earlier {noun} too")
        seen.add(tid)
        yield t, here


class _Unknown(RuleError):
    """An id the registry does not know; fine if it belongs to a domain left out."""

    def __init__(self, msg: str, what: str, value: str):
        super().__init__(msg)
        self.what, self.value = what, value

    def in_(self, reg: _Registry) -> bool:
        return self.value in getattr(reg, self.what)


def _parse_one(t: dict, here: str, reg: _Registry, districts: set[str] | None) -> Rule:
    unknown = sorted(set(t) - _KEYS)
    if unknown:
        raise RuleError(f"{here}: unknown field(s) {', '.join(unknown)} (use {', '.join(sorted(_KEYS))})")
    f = dict(t)
    if "when" in f:
        clash = sorted({"kpi", "kind", "metric", "op", "threshold", "nodata", "after"} & set(f))
        if clash:
            raise RuleError(f"{here}: when: give the condition either as when or as fields, not both ({', '.join(clash)})")
        when = f.pop("when")
        if not isinstance(when, str):
            raise RuleError(f"{here}: when: must be text such as \"traffic.tti > 1.6\"")
        m = _NODATA_EXPR.match(when) or _ASSET_EXPR.match(when) or _KPI_EXPR.match(when)
        if m is None:
            raise RuleError(f"{here}: when: {when!r} is not a condition (\"<kpi> > 1.6\", "
                            "\"any <asset kind> <metric> > 200\" or \"no <domain> data for 10m\")")
        f.update({k: v for k, v in m.groupdict().items()})
        if "threshold" in m.groupdict():
            f["threshold"] = float(m["threshold"])
    sev = f.get("severity", "warning")
    if sev not in SEVERITIES:
        raise RuleError(f"{here}: severity: {sev!r} is not one of {', '.join(SEVERITIES)}")
    common = dict(id=t["id"], severity=sev,
                  for_=parse_duration(f.get("for", 0), f"{here}: for"),
                  keep_firing_for=parse_duration(f.get("keep_firing_for", 0), f"{here}: keep_firing_for"),
                  summary=_text(f, "summary", here))
    scope = f.get("scope", CITY)
    if not isinstance(scope, str) or not scope:
        raise RuleError(f"{here}: scope: must be \"city\", \"each district\" or a district id")
    if scope not in (CITY, EACH) and districts is not None and scope not in districts:
        raise RuleError(f"{here}: scope: no district {scope!r} in this city")

    if "nodata" in f:
        _only(f, here, "nodata", {"kpi", "kind", "metric", "op", "threshold", "per"})
        dom = f["nodata"]
        if dom not in reg.domains:
            raise _Unknown(f"{here}: nodata: unknown domain {dom!r} (one of {reg.names(reg.domains)})", "domains", dom)
        if "after" not in f:
            raise RuleError(f"{here}: after: a no-data rule needs how old the newest reading may be (e.g. \"10m\")")
        after = parse_duration(f["after"], f"{here}: after")
        if after <= 0:
            raise RuleError(f"{here}: after: must be more than 0")
        return Rule(type="nodata", domain=dom, scope=scope, after=after, **common)

    if "kpi" not in f and "metric" not in f:
        raise RuleError(f"{here}: when: missing (or give kpi, metric or nodata with op and threshold)")
    op, threshold = _comparison(f, here)
    if "kpi" in f:
        _only(f, here, "kpi", {"kind", "metric", "after", "per"})
        kid = f["kpi"]
        k = reg.kpis.get(kid)
        if k is None:
            raise _Unknown(f"{here}: kpi: unknown KPI {kid!r} (one of {reg.names(reg.kpis)})", "kpis", kid)
        if k.report and k.report[0] == "category":
            raise RuleError(f"{here}: kpi: {kid!r} is a category, not a number")
        return Rule(type="kpi", domain=k.domain, scope=scope, target=kid, op=op, threshold=threshold, **common)

    _only(f, here, "metric", {"after"})
    metric = str(f["metric"])
    m = reg.values.get(metric) or reg.values.get(metric.lower())
    if m is None:
        raise _Unknown(f"{here}: metric: unknown metric {metric!r} (one of {reg.names(reg.values)})", "values", metric)
    kind = f.get("kind", m.kind)
    if kind not in reg.kinds:
        raise _Unknown(f"{here}: kind: unknown asset kind {kind!r} (one of {reg.names(reg.kinds)})", "kinds", kind)
    if kind != m.kind:
        raise RuleError(f"{here}: kind: {m.id!r} is measured by {m.kind}, not {kind}")
    per = f.get("per", "asset")
    if per not in ("asset", "district"):
        raise RuleError(f"{here}: per: {per!r} is not \"asset\" or \"district\"")
    if scope == EACH:
        raise RuleError(f"{here}: scope: an asset rule covers the city or one district; "
                        "per = \"district\" gives one alert per district")
    return Rule(type="asset", domain=reg.value_domain[m.id], scope=scope, target=m.id, kind=kind, op=op,
                threshold=threshold, per=per, **common)


def _text(f: dict, key: str, here: str) -> str:
    v = f.get(key, "")
    if not isinstance(v, str):
        raise RuleError(f"{here}: {key}: must be text")
    return v


def _only(f: dict, here: str, kind: str, forbidden: set[str]) -> None:
    bad = sorted(forbidden & set(f))
    if bad:
        raise RuleError(f"{here}: {bad[0]}: does not apply to a {kind} rule")


def _comparison(f: dict, here: str) -> tuple[str, float]:
    op = f.get("op")
    if op not in OPS:
        raise RuleError(f"{here}: op: {'missing' if op is None else repr(op) + ' is not'} a comparison "
                        f"({', '.join(OPS)})")
    th = f.get("threshold")
    if isinstance(th, bool) or not isinstance(th, (int, float)) or not math.isfinite(th):
        raise RuleError(f"{here}: threshold: {'missing' if th is None else repr(th) + ' is not'} a finite number")
    return op, float(th)
