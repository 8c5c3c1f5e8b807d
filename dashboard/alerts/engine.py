"""The alert engine: one pure step from (rules, previous state, observations, silences) to (state, transitions).

No clock, no store, no I/O: the caller passes ``now`` in the observations and keeps the state (a
plain JSON-serialisable dict) wherever it likes; a restart that reloads it neither re-fires open
alerts nor loses pending timers, because every timer is an absolute time in the state.

Semantics (those of Prometheus / Grafana alerting):

- Each (rule, scope) is one alert — the scope being the city, a district or an asset — in one state:
  ``inactive`` (not kept), ``pending``, ``firing``, ``nodata`` or ``error``.
- The condition must hold at every evaluation for ``for`` seconds before the alert fires (pending
  meanwhile; a false evaluation drops it back to inactive and the timer starts again).
- A firing alert resolves only after its condition has been false for ``keep_firing_for`` seconds; if
  it comes back before, the alert stays the same one and its ``repeat`` count goes up. ``repeat``: 1
  when it fires, +1 each time the condition returns while it is still firing (the flaps absorbed);
  ``evaluations`` counts the evaluations it has been firing.
- ``nodata``: the value is unknown — a KPI with no data or stale by the same rule as the screens
  (older than three feed periods), an asset whose reading is missing or stale, or, for a no-data rule,
  never. ``error``: its domain's reads or the KPI failed. Both are entered at once (no pending
  period); when the data come back an alert that was firing goes on firing (``resumed``, not a new
  alert), one that was pending starts its pending period again. An asset that goes silent while
  no alert of it is open raises nothing: the no-data rules of its feed cover it.
- Silences and inhibition mute, they do not change states: every transition is computed and kept
  in the state, and carries ``muted`` (the silence or the inhibiting alert) for the notifier to
  drop. When the mute of a firing alert ends (a silence expires by itself at its ``end``), an
  ``unmuted`` transition says so, so a notifier can send what it held back.
- Inhibition: a no-data rule firing for a domain in a district mutes that domain's KPI and asset
  alerts in that district; firing city-wide, the domain's alerts everywhere.

Transitions are flat records (:meth:`Transition.as_row`), ready to append to an audit table.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from dashboard.alerts.rules import CITY, EACH, Rule, compare

INACTIVE, PENDING, FIRING, NODATA, ERROR = "inactive", "pending", "firing", "nodata", "error"
STATES = (INACTIVE, PENDING, FIRING, NODATA, ERROR)
STATE_VERSION = 1


# ---------------------------------------------------------------------------- inputs
@dataclass
class KpiObs:
    """One KPI's value in one scope. ``status``: ``ok``, ``nodata`` (no data or stale), ``error`` (it
    could not be computed) or ``absent`` (the domain has nothing to measure there: no alert)."""

    value: float | None
    status: str = "ok"
    reason: str = ""


class AssetObs:
    """Current values of one metric over every asset of its kind: aligned arrays of asset ids, their
    district ids (None outside every district) and values (NaN: unknown or stale). The metrics of
    one kind may share one ``districts`` array: it is then grouped once per evaluation."""

    def __init__(self, ids, districts, values):
        self.ids = np.asarray(ids, dtype=object)
        self.districts = np.asarray(districts, dtype=object)
        self.values = np.asarray(values, dtype=float)
        if not len(self.ids) == len(self.districts) == len(self.values):
            raise ValueError("asset ids, districts and values must have the same length")
        self._groups: tuple | None = None
        self._pos: dict | None = None

    def groups(self, shared: dict | None = None) -> tuple:
        """Return (district code of each asset, -1 outside; district ids by code; {district: positions})."""
        if self._groups is None:
            key = id(self.districts)
            if shared is not None and key in shared and shared[key][0] is self.districts:
                self._groups = shared[key][1]
            else:
                codes, uniq = pd.factorize(pd.Series(self.districts, dtype=object))
                order = np.argsort(codes, kind="stable")
                bounds = np.searchsorted(codes[order], np.arange(-1, len(uniq) + 1))
                self._groups = (codes, np.asarray(uniq, dtype=object),
                                {u: order[bounds[i + 1]:bounds[i + 2]] for i, u in enumerate(uniq)})
                if shared is not None:
                    shared[key] = (self.districts, self._groups)
        return self._groups

    def in_district(self, district: str) -> np.ndarray:
        """Return the positions of the assets in ``district``."""
        return self.groups()[2].get(district, np.empty(0, dtype=np.int64))

    def position(self, asset: str) -> int | None:
        """Return where ``asset`` is in the arrays, or None."""
        if self._pos is None:
            self._pos = {a: i for i, a in enumerate(self.ids.tolist())}
        return self._pos.get(asset)


@dataclass
class Observations:
    """What the engine sees at ``now``.

    - ``kpis``: (KPI id, district id or None for the city) → :class:`KpiObs`;
    - ``assets``: metric id → :class:`AssetObs`;
    - ``ages``: (domain id, district id or None) → age in seconds of its newest reading there (None:
      never); a pair absent = the domain has nothing to measure there;
    - ``failed``: domain id → why its numbers could not be read (``error``);
    - ``districts``: the city's district ids (a rule's ``each district``).
    """

    now: float
    districts: tuple[str, ...] = ()
    kpis: dict = field(default_factory=dict)
    assets: dict = field(default_factory=dict)
    ages: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Silence:
    """A maintenance window: alerts it matches are muted from ``start`` to ``end`` (epoch seconds, or
    ISO 8601 with an offset), then by themselves no more. It matches an alert when every matcher it
    gives agrees: ``rule`` id, ``domain``, ``district``, ``asset``; at least one is required."""

    id: str
    start: float
    end: float
    reason: str
    by: str
    rule: str | None = None
    domain: str | None = None
    district: str | None = None
    asset: str | None = None

    def __post_init__(self):
        for name in ("start", "end"):
            object.__setattr__(self, name, _epoch(getattr(self, name), f"silence {self.id!r}: {name}"))
        if not self.end > self.start:
            raise ValueError(f"silence {self.id!r}: end must be after start")
        if not (isinstance(self.reason, str) and self.reason.strip()):
            raise ValueError(f"silence {self.id!r}: reason: say why")
        if not (isinstance(self.by, str) and self.by.strip()):
            raise ValueError(f"silence {self.id!r}: by: say who")
        if not any((self.rule, self.domain, self.district, self.asset)):
            raise ValueError(f"silence {self.id!r}: give at least one of rule, domain, district, asset")

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def matches(self, rule: Rule, district: str | None, asset: str | None) -> bool:
        return ((self.rule is None or self.rule == rule.id) and (self.domain is None or self.domain == rule.domain)
                and (self.district is None or self.district == district)
                and (self.asset is None or self.asset == asset))

    def as_json(self) -> dict:
        return asdict(self)


def _epoch(v, where: str) -> float:
    if isinstance(v, str):
        try:
            t = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{where}: {v!r} is not an ISO 8601 time") from None
        if t.tzinfo is None:
            raise ValueError(f"{where}: {v!r} has no UTC offset")
        return t.timestamp()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where}: {v!r} is not a time")
    return float(v)


# ---------------------------------------------------------------------------- outputs
@dataclass(frozen=True)
class Transition:
    """One change of an alert: a row of the audit trail. ``event``: ``pending``, ``firing``,
    ``resolved`` (firing → inactive), ``inactive`` (pending, no data or error → inactive), ``nodata``,
    ``error``, ``resumed`` (back to firing after no data or an error: the same alert), ``unmuted`` (its
    mute ended while it fires) or ``removed`` (its rule or scope is gone)."""

    rule: str
    scope: str
    from_state: str
    to_state: str
    event: str
    at: float
    value: float | None
    severity: str
    repeat: int
    district: str | None = None
    asset: str | None = None
    muted: str | None = None
    reason: str = ""

    def as_row(self) -> dict:
        return asdict(self)


def empty_state() -> dict:
    """Return the state of an engine that has never run."""
    return {"version": STATE_VERSION, "at": None, "alerts": {}}


def key_of(rule_id: str, scope: str) -> str:
    """Return the state key of (rule, scope): one alert per pair (deduplication)."""
    return f"{rule_id}|{scope}"


# ---------------------------------------------------------------------------- the plan
class Plan:
    """Rules prepared for evaluation: asset rules grouped by (metric, direction, district) with their
    thresholds sorted, so one ``searchsorted`` over a group's assets finds every breach of all its
    rules (``>=`` is ``>`` the next float down, ``<=`` is ``<`` the next float up). Build it once per
    rule set: rules do not change between ticks."""

    def __init__(self, rules):
        self.rules = list(rules)
        self.by_id = {r.id: r for r in self.rules}
        self.nodata = [r for r in self.rules if r.type == "nodata"]
        self.kpi = [r for r in self.rules if r.type == "kpi"]
        self.asset = [r for r in self.rules if r.type == "asset"]
        self.per_district = np.array([r.per == "district" for r in self.asset], dtype=bool)
        self._scopes: dict = {}
        groups: dict = {}
        for i, r in enumerate(self.asset):
            up = r.op in (">", ">=")
            th = r.threshold if r.op in (">", "<") else float(np.nextafter(r.threshold, -np.inf if up else np.inf))
            groups.setdefault((r.target, up, None if r.scope == CITY else r.scope), []).append((th, i))
        self.groups = {}
        for g, pairs in groups.items():
            pairs.sort()
            self.groups[g] = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.int64))

    def scopes(self, r: Rule, districts: tuple) -> list:
        """Return [(scope key, state key, district)] of a KPI or no-data rule; district False: the city
        has no such district."""
        k = (r.id, districts)
        if k not in self._scopes:
            if r.scope == CITY:
                out = [(CITY, None)]
            elif r.scope == EACH:
                out = [(f"district:{d}", d) for d in districts]
            else:
                out = [(f"district:{r.scope}", r.scope if r.scope in districts else False)]
            self._scopes[k] = [(s, key_of(r.id, s), d) for s, d in out]
        return self._scopes[k]


def plan_of(rules) -> Plan:
    return rules if isinstance(rules, Plan) else Plan(rules)


# ---------------------------------------------------------------------------- evaluation
def evaluate(rules, state: dict | None, obs: Observations, silences=()) -> tuple[dict, list[Transition]]:
    """Return the new state and the transitions of one evaluation at ``obs.now``.

    ``rules``: a list of :class:`Rule` or a :class:`Plan`; ``state``: the previous return value (or
    None, or one reloaded from JSON); ``silences``: :class:`Silence` (expired ones are ignored).
    """
    plan = plan_of(rules)
    now = float(obs.now)
    old = (state or {}).get("alerts") or {}
    run = _Run(plan, old, now, [s for s in silences if s.active(now)])

    # no-data rules first: their firing alerts inhibit the others of this very evaluation
    for rules_of_type, value_of in ((plan.nodata, _nodata_value), (plan.kpi, _kpi_value)):
        for r in rules_of_type:
            for scope, key, district in plan.scopes(r, obs.districts):
                if district is False:
                    cond, value, reason, district = ERROR, None, f"no district {r.scope!r} in this city", r.scope
                elif r.domain in obs.failed:
                    cond, value, reason = ERROR, None, obs.failed[r.domain]
                else:
                    cond, value, reason = value_of(r, obs, district)
                    if cond is False and key not in old:
                        continue  # inactive and staying so: the common case, kept cheap
                run.advance(r, scope, district, None, cond, value, reason)
    _assets(run, plan, obs)

    for key, e in old.items():  # alerts whose rule or scope is gone
        if key not in run.seen:
            r = plan.by_id.get(e["rule"])
            run.out.append(Transition(e["rule"], e["scope"], e["state"], INACTIVE, "removed", now, e.get("value"),
                                      r.severity if r else e.get("severity", ""), e.get("repeat", 0),
                                      e.get("district"), e.get("asset"), e.get("muted"),
                                      "rule removed" if r is None else "scope no longer observed"))
    return {"version": STATE_VERSION, "at": now, "alerts": run.new}, run.out


class _Run:
    """One evaluation's bookkeeping: the new state, the transitions, what inhibits what."""

    def __init__(self, plan: Plan, old: dict, now: float, silences: list[Silence]):
        self.plan, self.old, self.now, self.silences = plan, old, now, silences
        self.new: dict = {}
        self.out: list[Transition] = []
        self.seen: set[str] = set()
        self.inhibitors: dict = {}  # (domain, district or None) -> key of a firing no-data alert
        self.by_rule: dict = {}  # rule id -> silences that may match its alerts

    def mute(self, r: Rule, district, asset) -> str | None:
        cands = self.by_rule.get(r.id)
        if cands is None:  # the silences that may match this rule's alerts, by district, found once per rule
            cands = self.by_rule[r.id] = {}
            for s in self.silences:
                if s.rule in (None, r.id) and s.domain in (None, r.domain):
                    cands.setdefault(s.district, []).append(s)
        if cands:
            for s in (*cands.get(None, ()), *cands.get(district, ())):
                if s.matches(r, district, asset):
                    return f"silence {s.id}"
        if r.type != "nodata" and self.inhibitors:
            k = self.inhibitors.get((r.domain, None)) or (district and self.inhibitors.get((r.domain, district)))
            if k:
                return f"inhibited by {k}"
        return None

    def advance(self, r: Rule, scope: str, district, asset, cond, value, reason: str = "") -> None:
        key = key_of(r.id, scope)
        self.seen.add(key)
        prev = self.old.get(key)
        if prev is None and cond is not True and cond not in (NODATA, ERROR):
            return  # inactive and staying so: nothing kept, nothing to say
        value = None if value is None or value != value else float(value)  # NaN: unknown
        e, changes = step(prev, cond, self.now, r)
        muted = self.mute(r, district, asset) if e["state"] != INACTIVE or changes else None
        for frm, to, event in changes:
            self.out.append(Transition(r.id, scope, frm, to, event, self.now, value, r.severity, e["repeat"],
                                       district, asset, muted, reason))
        if prev and prev.get("muted") and not muted and e["state"] == FIRING and not changes:
            self.out.append(Transition(r.id, scope, FIRING, FIRING, "unmuted", self.now, value, r.severity,
                                       e["repeat"], district, asset, None, f"was muted: {prev['muted']}"))
        if e["state"] == INACTIVE:
            return
        if prev is None:
            e.update(rule=r.id, scope=scope, district=district, asset=asset)
        e.update(value=value, reason=reason, muted=muted, last=self.now)
        self.new[key] = e
        if r.type == "nodata" and e["state"] == FIRING:
            self.inhibitors[(r.domain, district)] = key


def step(e: dict | None, cond, now: float, r: Rule) -> tuple[dict, list[tuple[str, str, str]]]:
    """Return one alert's next entry and its changes (from, to, event) for condition ``cond``: True,
    False, ``nodata`` or ``error``. The state machine of the module's docstring, for one alert."""
    start = e["state"] if e else INACTIVE
    e = dict(e) if e else {"state": INACTIVE, "since": now, "active_at": None, "fired_at": None,
                           "clear_since": None, "repeat": 0, "evaluations": 0, "prior": None}
    if cond in (NODATA, ERROR):
        if start != cond:
            e["prior"] = start if start in (PENDING, FIRING) else e["prior"] if start in (NODATA, ERROR) else None
            e.update(state=cond, since=now)
            return e, [(start, cond, cond)]
        return e, []
    s = start
    was_firing = start == FIRING
    if s in (NODATA, ERROR):  # the data are back: resume a firing alert, restart a pending one
        was_firing = e["prior"] == FIRING
        s, e["prior"] = (FIRING if was_firing else INACTIVE), None
    if s == INACTIVE and cond:
        s, e["active_at"] = PENDING, now
    elif s == PENDING and not cond:
        s = INACTIVE
    elif s == FIRING:
        if cond and e["clear_since"] is not None:
            e["repeat"] += 1  # it came back while still firing: the same alert, once more
            e["clear_since"] = None
        elif not cond and e["clear_since"] is None:
            e["clear_since"] = now
    if s == PENDING and now - e["active_at"] >= r.for_:
        s = FIRING
        e.update(fired_at=now, repeat=1, evaluations=0, clear_since=None)
    if s == FIRING:
        if e["clear_since"] is not None and now - e["clear_since"] >= r.keep_firing_for:
            s = INACTIVE
        else:
            e["evaluations"] += 1
    if s == start:
        return e, []
    e.update(state=s, since=now)
    if s == INACTIVE:
        event = "resolved" if was_firing else INACTIVE
    elif s == FIRING and start in (NODATA, ERROR) and was_firing:
        event = "resumed"
    else:
        event = s
    return e, [(start, s, event)]


def _kpi_value(r: Rule, obs: Observations, district):
    o = obs.kpis.get((r.target, district))
    if o is None:
        return NODATA, None, "not observed"
    if o.status == "absent":
        return False, None, o.reason
    if o.status in (NODATA, ERROR):
        return o.status, o.value, o.reason
    if isinstance(o.value, str) or o.value is None or not math.isfinite(o.value):
        return ERROR, None, f"not a number: {o.value!r}"
    return bool(r.holds(o.value)), o.value, ""


def _nodata_value(r: Rule, obs: Observations, district):
    k = (r.domain, district)
    if k not in obs.ages:
        return False, None, "nothing to measure"
    age = obs.ages[k]
    if age is None:
        return True, None, "no reading yet"
    return age > r.after, age, ""


def _assets(run: _Run, plan: Plan, obs: Observations) -> None:
    """Every asset rule: breaches found per group in numpy, then only the alerts that hold or are open
    go through the state machine (an asset below every threshold with no open alert costs nothing)."""
    breach: dict = {}  # key -> (rule, scope, district, asset, value, reason)
    shared: dict = {}  # one grouping by district per districts array (the metrics of one kind share it)
    for (metric, up, district), (thr, idx) in plan.groups.items():
        domain = plan.asset[idx[0]].domain
        why = obs.failed.get(domain) or (f"no district {district!r} in this city"
                                         if district is not None and district not in obs.districts else None)
        if why:  # one alert of the rule itself says so (its assets' open alerts turn to error below)
            for i in idx:
                run.advance(plan.asset[i], CITY, None, None, ERROR, None, why)
            continue
        a = obs.assets.get(metric)
        if a is None:  # nothing of this metric observed: open alerts turn to no data below
            continue
        codes, names, by_district = a.groups(shared)
        pos = None if district is None else by_district.get(district)
        if district is not None and pos is None:
            continue  # no asset of this metric in the district
        v = a.values if pos is None else a.values[pos]
        n = len(thr)
        # v > t for the first cnt thresholds (ascending), or v < t for the last cnt; NaN breaches nothing
        cnt = np.searchsorted(thr, v, "left") if up else n - np.searchsorted(thr, v, "right")
        if up:
            cnt[np.isnan(v)] = 0
        hit = np.flatnonzero(cnt)
        if not len(hit):
            continue
        c = cnt[hit]
        offs = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        rule_i = idx[offs] if up else idx[n - 1 - offs]
        at = np.repeat(hit if pos is None else pos[hit], c)
        per_d = plan.per_district[rule_i]
        if not per_d.all():
            one = ~per_d
            at1 = at[one]
            for ri, asset, code, x in zip(rule_i[one].tolist(), a.ids[at1].tolist(), codes[at1].tolist(),
                                          a.values[at1].tolist()):
                r = plan.asset[ri]
                scope = "asset:" + asset
                breach[key_of(r.id, scope)] = (r, scope, None if code < 0 else names[code], asset, x, "")
        in_d = per_d & (codes[at] >= 0)  # assets outside every district have no district alert
        if in_d.any():  # one alert per (rule, district): the worst value and how many assets
            ri_d, at_d = rule_i[in_d], at[in_d]
            cd = codes[at_d]
            k = ri_d * (len(names) + 1) + cd
            order = np.argsort(k, kind="stable")
            k, vals = k[order], a.values[at_d[order]]
            starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
            worst = (np.maximum if up else np.minimum).reduceat(vals, starts)
            counts = np.diff(np.r_[starts, len(k)])
            for ri, code, x, m in zip(ri_d[order][starts].tolist(), cd[order][starts].tolist(), worst.tolist(),
                                      counts.tolist()):
                r, d = plan.asset[ri], names[code]
                breach[key_of(r.id, f"district:{d}")] = (r, f"district:{d}", d, None, x, f"{m} of its {r.kind}")
    for key, (r, scope, d, asset, x, why) in breach.items():
        run.advance(r, scope, d, asset, True, x, why)
    for key, e in run.old.items():  # open alerts of assets that no longer breach: below again, or silent
        if key in breach or key in run.seen:
            continue
        r = plan.by_id.get(e["rule"])
        if r is None or r.type != "asset":
            continue
        a = obs.assets.get(r.target)
        if r.domain in obs.failed:
            run.advance(r, e["scope"], e["district"], e["asset"], ERROR, None, obs.failed[r.domain])
        elif e["asset"] is not None:
            p = None if a is None else a.position(e["asset"])
            x = math.nan if p is None else float(a.values[p])
            run.advance(r, e["scope"], e["district"], e["asset"], NODATA if math.isnan(x) else False, x,
                        "no current value" if math.isnan(x) else "")
        elif e["scope"].startswith("district:"):
            vals = np.empty(0) if a is None else a.values[a.in_district(e["district"])]
            vals = vals[~np.isnan(vals)]
            worst = math.nan if not len(vals) else float(vals.max() if r.op in (">", ">=") else vals.min())
            run.advance(r, e["scope"], e["district"], None, NODATA if math.isnan(worst) else False, worst,
                        "no current value" if math.isnan(worst) else "")
        else:  # a rule-level error entry, its cause gone
            run.advance(r, e["scope"], None, None, False, None, "")


__all__ = ["AssetObs", "KpiObs", "Observations", "Plan", "Silence", "Transition", "STATES", "compare", "empty_state",
           "evaluate", "key_of", "step"]
