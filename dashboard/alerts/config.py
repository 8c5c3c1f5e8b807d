"""The ``[alerting]`` table of ``city.toml``: what happens to an alert after it fires.

```toml
[alerting]
auto_resolve_after = "10m"   # condition clear this long: resolved by the system ("off": operators only)
escalate_after = "15m"       # not acknowledged this long: escalate, then again every escalate_after
escalate_from = "critical"   # the least severity that escalates (info | warning | critical)
targets = ["duty-officer", "shift-lead"]   # who each escalation notifies, in order
teams = ["traffic-ops", "environment"]     # teams an alert may be assigned to
takeover_max = "10m"         # a critical alert nobody acknowledged takes the wall over at most this long
```

Each escalation notifies the next target and raises the severity one step (a critical alert stays
critical, its escalation level says how far it went); after the last target it escalates no more.
Only the time an alert is open and neither muted nor shelved counts towards ``escalate_after``.
"""
from __future__ import annotations

from dataclasses import dataclass

from dashboard.alerts.rules import SEVERITIES, RuleError, parse_duration

_KEYS = {"auto_resolve_after", "escalate_after", "escalate_from", "targets", "teams", "takeover_max"}


@dataclass(frozen=True)
class Alerting:
    """``[alerting]``, checked; durations in seconds, None = never."""

    auto_resolve_after: float | None = 600.0
    escalate_after: float | None = 900.0
    escalate_from: str = "critical"
    targets: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    takeover_max: float = 600.0

    def escalates(self, severity: str) -> bool:
        """Return whether an alert of ``severity`` escalates when nobody acknowledges it."""
        return (self.escalate_after is not None and bool(self.targets) and severity in SEVERITIES
                and SEVERITIES.index(severity) >= SEVERITIES.index(self.escalate_from))


def raised(severity: str) -> str:
    """Return the severity one step above ``severity`` (critical stays critical)."""
    i = SEVERITIES.index(severity) if severity in SEVERITIES else 0
    return SEVERITIES[min(i + 1, len(SEVERITIES) - 1)]


def parse_alerting(table, where: str = "city.toml") -> Alerting:
    """Return the checked ``[alerting]`` table (None: the defaults); raise :class:`RuleError` in one line."""
    if table is None:
        return Alerting()
    here = f"{where}: [alerting]"
    if not isinstance(table, dict):
        raise RuleError(f"{here} must be a table")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise RuleError(f"{here}: unknown key(s) {', '.join(unknown)} (use {', '.join(sorted(_KEYS))})")

    def duration(key, default):
        v = table.get(key, default)
        if v in (None, "off"):
            return None
        return parse_duration(v, f"{here} {key}")

    def names(key):
        v = table.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() and len(x) <= 100 for x in v):
            raise RuleError(f"{here} {key}: must be a list of names")
        if len(set(v)) != len(v):
            raise RuleError(f"{here} {key}: a name is listed twice")
        return tuple(v)

    sev = table.get("escalate_from", "critical")
    if sev not in SEVERITIES:
        raise RuleError(f"{here} escalate_from: {sev!r} is not one of {', '.join(SEVERITIES)}")
    escalate = duration("escalate_after", 900)
    if escalate == 0:
        raise RuleError(f"{here} escalate_after: must be more than 0 (or \"off\")")
    takeover = duration("takeover_max", 600)
    if not takeover:
        raise RuleError(f"{here} takeover_max: must be more than 0 (\"off\" is not allowed: a takeover must end)")
    return Alerting(auto_resolve_after=duration("auto_resolve_after", 600), escalate_after=escalate,
                    escalate_from=sev, targets=names("targets"), teams=names("teams"), takeover_max=takeover)
