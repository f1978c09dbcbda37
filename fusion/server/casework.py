"""What an alert carries for the investigation: cameras that saw it, where casings lie, matched 911 calls.

:meth:`Casework.annotate` adds to an incident, before it is stored and sent:

* ``cameras``: the registry's cameras that can see a located shot
  (:func:`fusion.forensics.cameras.cameras_seeing`), each with its distance and bearing to the
  nearest shot it sees and the window of video to pull;
* per shot ``casings`` (radius, ejection distance, area) and the incident's ``casings_area``, a
  GeoJSON geometry in the incident's frame (:mod:`fusion.forensics.casings`);
* ``calls``: the stored 911 calls that match it so far, and ``called`` (whether any does).

:meth:`Casework.cues` gives the cue messages for ``ew/v1/{site}/camera/{camera}/cue``.
A problem here (a camera in another frame, a database hiccup) is logged and leaves the alert
without these fields: it never holds an alert back.
"""
from __future__ import annotations

import json
import logging
import pathlib
from dataclasses import dataclass, field

from earwitness import topics
from fusion.forensics import casings
from fusion.forensics.calls import MatchRule, incident_span_ns
from fusion.forensics.cameras import Buildings, Camera, cameras_seeing, cue, read_cameras
from fusion.forensics.frame import FRAME_LOCAL, FRAME_WGS84, Plane
from fusion.forensics.geojson import geometry_in_frame, read_polygons
from fusion.server.alerts import URGENT_CLASSES
from fusion.server.calls import WITHDRAWN, CallLog

log = logging.getLogger(__name__)


@dataclass
class Casework:
    """Cameras (and buildings), the calls of the store and the matching rule of one site."""

    plane: Plane
    cameras: list[Camera] = field(default_factory=list)
    buildings: Buildings | None = None
    calls: CallLog | None = None
    rule: MatchRule = field(default_factory=MatchRule)

    @classmethod
    def for_site(cls, sensors, store=None, cameras: str | pathlib.Path | None = None,
                 buildings: str | pathlib.Path | None = None, rule: MatchRule | None = None) -> "Casework":
        """The casework of a site whose nodes are ``sensors`` (:class:`fusion.locator.sensors.Sensors`).

        Raises the readers' errors (CamerasError, GeoJSONError: one line) for bad files.
        """
        plane = Plane(FRAME_WGS84, sensors.origin[:2]) if sensors.frame == "wgs84" else Plane(FRAME_LOCAL)
        cams = read_cameras(cameras, plane) if cameras else []
        blocks = Buildings([a.polygon for a in read_polygons(buildings, plane)]) if buildings else None
        return cls(plane, cams, blocks, CallLog(store) if store is not None else None, rule or MatchRule())

    def annotate(self, incident: dict) -> dict:
        """The incident with ``cameras``, shots' ``casings``, ``casings_area``, ``calls`` and ``called``."""
        try:
            return self._annotate(incident)
        except Exception:  # noqa: BLE001 - casework must never hold an alert back (module docstring)
            log.exception("casework for incident %s failed; sent without it", incident.get("incident"))
            return incident

    def _annotate(self, incident: dict) -> dict:
        out = dict(incident)
        shots = [dict(s) for s in incident.get("shots") or []]
        for shot in shots:
            shot["casings"] = casings.shot_casings(shot, self.plane)
        if shots:
            out["shots"] = shots
        area = casings.incident_search_area(incident, self.plane)
        out["casings_area"] = geometry_in_frame(area, self.plane)
        out["cameras"] = self.cameras_for(incident)
        if self.calls is not None:
            found = self.calls.match_incident(incident, self.rule)
            out["calls"] = [{k: m[k] for k in ("call_id", "dt_s", "dist_m")} for m in found]
            out["called"] = bool(found)
        return out

    def cameras_for(self, incident: dict) -> list[dict]:
        """Cameras seeing any shot of the incident, each once, with the nearest shot it sees."""
        if not self.cameras:
            return []
        first, last = incident_span_ns(incident)
        best: dict[str, dict] = {}
        for shot in incident.get("shots") or [incident]:
            for seen in cameras_seeing(self.cameras, self.plane.xy(shot), first, last, self.buildings):
                if seen["camera"] not in best or seen["distance_m"] < best[seen["camera"]]["distance_m"]:
                    best[seen["camera"]] = seen
        return sorted(best.values(), key=lambda c: (c["distance_m"], c["camera"]))

    def cues(self, site: str, alert: dict) -> list[tuple[str, bytes]]:
        """(topic, JSON payload) of the cue for every camera the alert lists (none for a withdrawn or non-gunfire one)."""
        if alert.get("status") == WITHDRAWN or alert.get("class", "gunfire") not in URGENT_CLASSES:
            return []
        return [(topics.camera_cue(site, seen["camera"]), json.dumps(cue(seen, alert), sort_keys=True).encode())
                for seen in alert.get("cameras", [])]
