"""Incidents: alerts grouped into one event to handle, with an owner, a timeline, a handover note and the
checklist of the type's standard operating procedure (:mod:`.config`), kept in the store as an
append-only event log (:mod:`.store`), served by ``/api/incidents`` (:mod:`.web`) and written up
after the event by ``panorama report --incident`` (:mod:`.report`)."""
from dashboard.incidents.config import Incidents, IncidentRule, IncidentType, Step, default, parse_incidents
from dashboard.incidents.store import (IncidentError, checklist, current_step, get, history, list_incidents,
                                       open_incident, replay, timeline)

__all__ = ["IncidentError", "IncidentRule", "IncidentType", "Incidents", "Step", "checklist", "current_step", "default",
           "get", "history", "list_incidents", "open_incident", "parse_incidents", "replay", "timeline"]
