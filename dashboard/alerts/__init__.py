"""Alerting: rules declared in the city file (:mod:`.rules`), a pure engine that steps their alerts
from one evaluation to the next (:mod:`.engine`), and the observations it reads, taken from the
screens' snapshots (:mod:`.observe`). No store, HTTP or screens here: those build on top."""
from dashboard.alerts.engine import (AssetObs, KpiObs, Observations, Plan, Silence, Transition, empty_state,
                                     evaluate)
from dashboard.alerts.rules import Rule, RuleError, parse_duration, parse_rules

__all__ = ["AssetObs", "KpiObs", "Observations", "Plan", "Rule", "RuleError", "Silence", "Transition", "empty_state",
           "evaluate", "parse_duration", "parse_rules"]
