"""Incident types, their standard operating procedures, grouping rules and teams, as ``city.toml`` declares them.

```toml
[[incident_type]]
id = "air-pollution"
label = "Air-pollution episode"
[[incident_type.step]]
text = "Confirm the readings at two stations"
role = "operator"                      # operator, admin, or a team of [alerting] teams
fields = [{ name = "peak_aqi", kind = "number" },
          { name = "level", kind = "choice", choices = ["orange", "red"] }]

[[incident_rule]]                      # alerts of one district and domain open or join an incident
id = "air-episode"
type = "air-pollution"
domain = "air_quality"
severities = ["critical"]              # default: every severity
window = "2h"                          # alerts this close together are one event
min_alerts = 1                         # how many it takes to open one (default 1)

[teams]                                # who is in each team of [alerting] teams (a team's steps)
environment = ["li.wei"]
```

A step's role says who may tick it off: ``operator`` any operator or admin, ``admin`` an admin,
a team name the members listed under ``[teams]``. Mistakes are one line naming the table and the
field (:class:`~dashboard.alerts.rules.RuleError`), as for alert rules. A type ``general`` (no
checklist) is always there, so an incident can be opened by hand in any city.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dashboard.alerts.config import Alerting
from dashboard.alerts.rules import SEVERITIES, RuleError, declared, parse_duration

KINDS = ("text", "number", "choice")
ROLES = ("operator", "admin")
MAX_TEXT = 2000
GENERAL = "general"
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Field:
    """A value recorded when a step is done: ``text``, ``number`` or one of ``choices``."""

    name: str
    kind: str = "text"
    choices: tuple[str, ...] = ()

    def check(self, value, where: str):
        """Return ``value`` as stored, or raise ValueError in one line."""
        if self.kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{where}: {self.name}: a number")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{where}: {self.name}: one of {', '.join(self.choices)}")
            return value
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise ValueError(f"{where}: {self.name}: text of 1 to {MAX_TEXT} characters")
        return value.strip()


@dataclass(frozen=True)
class Step:
    """One step of a procedure (``n`` from 1): what to do, who does it, what is recorded."""

    n: int
    text: str
    role: str = "operator"
    fields: tuple[Field, ...] = ()

    def check(self, values) -> dict:
        """Return the step's field values, checked (every field is required, no other); ValueError."""
        where = f"step {self.n}"
        if not isinstance(values, dict):
            raise ValueError(f"{where}: fields must be an object")
        unknown = sorted(set(values) - {f.name for f in self.fields})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(str(x)[:40] for x in unknown)}")
        out = {}
        for f in self.fields:
            if f.name not in values:
                raise ValueError(f"{where}: {f.name}: missing ({f.kind})")
            out[f.name] = f.check(values[f.name], where)
        return out

    def as_dict(self) -> dict:
        return {"n": self.n, "text": self.text, "role": self.role,
                "fields": [{"name": f.name, "kind": f.kind, **({"choices": list(f.choices)} if f.choices else {})}
                           for f in self.fields]}


@dataclass(frozen=True)
class IncidentType:
    id: str
    label: str
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class IncidentRule:
    """Alerts of one district and ``domain`` (city-wide ones together), of ``severities``, opened within
    ``window`` seconds of each other: ``min_alerts`` of them open an incident of ``type``; a later one
    joins the open incident of that type, district and domain."""

    id: str
    type: str
    domain: str
    severities: tuple[str, ...] = SEVERITIES
    window: float = 3600.0
    min_alerts: int = 1


@dataclass(frozen=True)
class Incidents:
    """The city's incident configuration, checked."""

    types: dict
    rules: tuple[IncidentRule, ...] = ()
    members: dict | None = None  # team -> user names

    def type(self, type_id: str) -> IncidentType | None:
        return self.types.get(type_id)

    def may_do(self, step: Step, name: str, role: str) -> str | None:
        """Return why user ``name`` with ``role`` may not do ``step`` (None: they may)."""
        from dashboard.access import RANK

        if step.role in ROLES:
            if RANK.get(role, -1) >= RANK[step.role]:
                return None
            return f"step {step.n} is done by {'an admin' if step.role == 'admin' else 'an operator'}, not a {role}"
        members = (self.members or {}).get(step.role, ())
        if name.lower() in (m.lower() for m in members):
            return None
        return f"step {step.n} is done by the team {step.role} ([teams] in city.toml); {name} is not in it"


def default() -> Incidents:
    """Return the configuration of a city that declares nothing: the ``general`` type alone."""
    return Incidents(types={GENERAL: IncidentType(GENERAL, "Incident")})


def parse_incidents(config: dict, where: str = "city.toml", alerting: Alerting | None = None) -> Incidents:
    """Return the checked ``[[incident_type]]``, ``[[incident_rule]]`` and ``[teams]`` of a city's
    ``config`` (the parsed TOML); raise :class:`RuleError` in one line."""
    alerting = alerting or Alerting()
    teams = _teams(config.get("teams"), where, alerting)
    types = dict(default().types)
    for t, here in declared(config.get("incident_type", []), where, "incident_type", "incident types", "type"):
        tid = t["id"]
        unknown = sorted(set(t) - {"id", "label", "step"})
        if unknown:
            raise RuleError(f"{here}: unknown field(s) {', '.join(unknown)} (use id, label, step)")
        label = t.get("label", tid)
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            raise RuleError(f"{here}: label: text of 1 to 200 characters")
        steps = t.get("step", [])
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise RuleError(f"{here}: step: the procedure's steps are [[incident_type.step]] tables")
        types[tid] = IncidentType(tid, label.strip(), tuple(_step(s, i, here, alerting) for i, s in enumerate(steps, 1)))
    return Incidents(types=types, rules=_rules(config.get("incident_rule"), where, types), members=teams)


def _teams(table, where: str, alerting: Alerting) -> dict:
    if table is None:
        return {}
    here = f"{where}: [teams]"
    if not isinstance(table, dict):
        raise RuleError(f"{here} must be a table of team = [user names]")
    out = {}
    for team, names in table.items():
        if team not in alerting.teams:
            raise RuleError(f"{here} {team}: not a team of [alerting] teams"
                            + (f" ({', '.join(alerting.teams)})" if alerting.teams else " (none declared)"))
        if not isinstance(names, list) or not all(isinstance(x, str) and x.strip() and len(x) <= 64 for x in names):
            raise RuleError(f"{here} {team}: must be a list of user names")
        out[team] = tuple(names)
    return out


def _step(s: dict, n: int, here: str, alerting: Alerting) -> Step:
    where = f"{here} step {n}"
    unknown = sorted(set(s) - {"text", "role", "fields"})
    if unknown:
        raise RuleError(f"{where}: unknown field(s) {', '.join(unknown)} (use text, role, fields)")
    text = s.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > 500:
        raise RuleError(f"{where}: text: what to do, 1 to 500 characters")
    role = s.get("role", "operator")
    if role not in ROLES and role not in alerting.teams:
        raise RuleError(f"{where}: role: {role!r} is not operator, admin or a team of [alerting] teams"
                        + (f" ({', '.join(alerting.teams)})" if alerting.teams else ""))
    fields, names = [], set()
    raw = s.get("fields", [])
    if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
        raise RuleError(f"{where}: fields: a list of {{ name = …, kind = … }}")
    for f in raw:
        name, kind = f.get("name"), f.get("kind", "text")
        if not isinstance(name, str) or not _FIELD.match(name):
            raise RuleError(f"{where}: fields: name {name!r} is not a field name (letters, digits, _)")
        if name in names:
            raise RuleError(f"{where}: fields: {name} is listed twice")
        names.add(name)
        bad = sorted(set(f) - {"name", "kind", "choices"})
        if bad:
            raise RuleError(f"{where}: fields: {name}: unknown key(s) {', '.join(bad)} (use name, kind, choices)")
        if kind not in KINDS:
            raise RuleError(f"{where}: fields: {name}: kind {kind!r} is not one of {', '.join(KINDS)}")
        choices = f.get("choices", [])
        if kind == "choice":
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
                raise RuleError(f"{where}: fields: {name}: a choice needs choices = [two or more texts]")
        elif "choices" in f:
            raise RuleError(f"{where}: fields: {name}: choices only for kind = \"choice\"")
        fields.append(Field(name, kind, tuple(choices) if kind == "choice" else ()))
    return Step(n, text.strip(), role, tuple(fields))


def _rules(raw, where: str, types: dict) -> tuple[IncidentRule, ...]:
    from layers import DOMAINS, left_out

    if raw is None:
        return ()
    domains = {d.id for d in DOMAINS} | {d.id for d in left_out()}
    keys = {"id", "type", "domain", "severities", "window", "min_alerts"}
    out = []
    for t, here in declared(raw, where, "incident_rule", "incident rules", "rule"):
        unknown = sorted(set(t) - keys)
        if unknown:
            raise RuleError(f"{here}: unknown field(s) {', '.join(unknown)} (use {', '.join(sorted(keys))})")
        if t.get("type") not in types:
            raise RuleError(f"{here}: type: {t.get('type')!r} is not an incident type ({', '.join(types)})")
        if t.get("domain") not in domains:
            raise RuleError(f"{here}: domain: {t.get('domain')!r} is not one of {', '.join(sorted(domains))}")
        sev = t.get("severities", list(SEVERITIES))
        if not isinstance(sev, list) or not sev or not all(s in SEVERITIES for s in sev):
            raise RuleError(f"{here}: severities: a list of {', '.join(SEVERITIES)}")
        window = parse_duration(t.get("window", "1h"), f"{here}: window")
        if window <= 0:
            raise RuleError(f"{here}: window: must be more than 0")
        k = t.get("min_alerts", 1)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
            raise RuleError(f"{here}: min_alerts: a whole number from 1 to 1000")
        out.append(IncidentRule(t["id"], t["type"], t["domain"], tuple(sev), window, k))
    return tuple(out)
