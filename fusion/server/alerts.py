"""Alerts out of the fusion server: JSON, OASIS CAP 1.2 XML, and webhook delivery with retries.

An alert is an incident (the Incidents contract of DESIGN.md) plus ``revision`` (1, 2, ...)
and ``status`` (``preliminary``: first location; ``revised``: more sensors reported;
``final``: the propagation window closed; ``withdrawn``: its shots are another incident's,
named in ``merged_into``).  Dispatch systems that speak the Common Alerting
Protocol get the same content as CAP 1.2 (http://docs.oasis-open.org/emergency/cap/v1.2/):
one ``alert`` with one ``info`` and one ``area``; where the incident is in WGS84 the area is a
``circle`` "lat,lon radius" (CAP 1.2 §3.2.4: WGS 84 point, radius in kilometres) of the 95 %
radius ``err_m``, else the local coordinates are given as ``parameter``s. The 95 % ellipse
(``ellipse``: semi-axes in metres, the major axis' bearing in degrees clockwise from north) rides
in the JSON alert as the incident carries it and in CAP as parameters.

Classes: ``gunfire`` alerts as gunfire; ``unknown`` (no classification cue spoke: see
:mod:`fusion.locator.classify`) alerts too, as possible gunfire for an operator to decide
(urgency Immediate, certainty Possible): a located impulse nothing speaks against is not
dropped; ``fireworks`` and ``other`` go out as minor, past events, as before.

Example::

    body = alert_json(incident, revision=1, status="preliminary")
    xml = alert_cap(incident, revision=1, status="preliminary", sender="ew@city.example", site="pgh")
    post_webhook("https://dispatch.example/hook", body.encode(), "application/json")
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

from fusion.server.store import STATUSES

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_CONTENT_TYPE = "application/cap+xml"
JSON_CONTENT_TYPE = "application/json"
# CAP 1.2 §3.3.2: the radius of a circle is in kilometres.
M_PER_KM = 1000.0
# Below this the circle would claim more precision than any acoustic fix has.
MIN_RADIUS_M = 1.0
# Confidence at or above which CAP certainty is "Observed" rather than "Likely".
OBSERVED_CONFIDENCE = 0.8
# CAP event, severity and urgency by the incident's class (fusion.locator.classify.CLASSES).
CAP_BY_CLASS = {"gunfire": ("Gunfire", "Severe", "Immediate"),
                "unknown": ("Possible gunfire", "Unknown", "Immediate"),
                "fireworks": ("Fireworks", "Minor", "Past"),
                "other": ("Impulsive noise", "Minor", "Past")}
# Classes an operator must look at now (headline as gunfire); the certainty of "unknown" is Possible.
URGENT_CLASSES = ("gunfire", "unknown")
UNKNOWN_CERTAINTY = "Possible"
CONFIDENCE_LEVEL = "95%"
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_RETRIES = 4
WEBHOOK_BACKOFF_S = 0.5
HTTP_OK_MIN, HTTP_OK_MAX = 200, 299

log = logging.getLogger(__name__)


def make_alert(incident: dict, revision: int, status: str) -> dict:
    """The alert: the incident dict plus ``revision`` and ``status``."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    if revision < 1:
        raise ValueError(f"revision starts at 1, not {revision}")
    return dict(incident, revision=int(revision), status=status)


def alert_json(incident: dict, revision: int, status: str) -> str:
    """The alert as compact JSON text (one line, sorted keys)."""
    return json.dumps(make_alert(incident, revision, status), sort_keys=True, separators=(",", ":"))


def alert_line(incident: dict, revision: int, status: str) -> str:
    """An alert in one line for the server's log: id, revision, status, class, rounds, place, sensors."""
    return (f"{incident['incident']} r{revision} {status}: {incident.get('class', 'unclassified')}, "
            f"{incident.get('rounds', len(incident.get('shots', [])))} round(s) at {_where(incident)} "
            f"+/- {float(incident.get('err_m', 0.0)):.0f} m, {len(incident.get('sensors', []))} sensors"
            + (f", merged into {incident['merged_into']}" if "merged_into" in incident else ""))


def cap_time(t_ns: int) -> str:
    """CAP 1.2 dateTime: seconds precision, explicit offset, UTC written ``-00:00`` (CAP §3.3.2)."""
    stamp = dt.datetime.fromtimestamp(t_ns // 1_000_000_000, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def cap_identifier(site: str, incident_id: str, revision: int) -> str:
    return f"{site}-{incident_id}-r{revision}"


def alert_cap(incident: dict, revision: int, status: str, *, sender: str, site: str,
              sent_ns: int | None = None, previous_sent_ns: int | None = None,
              cap_status: str = "Actual") -> str:
    """The alert as a CAP 1.2 XML document (UTF-8 text).

    Parameters
    ----------
    incident : dict
        Per the Incidents contract, in WGS84 (``lat``/``lon``) or local (``x``/``y``) metres.
    revision, status :
        As in :func:`make_alert`.  Revision 1 is msgType ``Alert``; later ones are ``Update``
        (``Cancel`` when withdrawn) and reference the previous revision's identifier.
    sender : str
        CAP sender, globally unique (e.g. an e-mail-like address of the fusion server).
    site : str
        Site name; part of the identifier.
    sent_ns : int, optional
        When this alert is sent (default: now).
    previous_sent_ns : int, optional
        When the previous revision was sent (for ``references``; default: the same as sent).
    cap_status : str
        CAP status: ``Actual``, ``Exercise``, ``System``, ``Test`` or ``Draft``.
    """
    alert = make_alert(incident, revision, status)
    sent_ns = time.time_ns() if sent_ns is None else sent_ns
    ET.register_namespace("", CAP_NS)
    root = ET.Element(_q("alert"))
    _sub(root, "identifier", cap_identifier(site, alert["incident"], revision))
    _sub(root, "sender", sender)
    _sub(root, "sent", cap_time(sent_ns))
    _sub(root, "status", cap_status)
    _sub(root, "msgType", "Alert" if revision == 1 else ("Cancel" if status == "withdrawn" else "Update"))
    _sub(root, "scope", "Restricted")
    _sub(root, "restriction", "public safety dispatch")
    if revision > 1:
        prev = previous_sent_ns if previous_sent_ns is not None else sent_ns
        _sub(root, "references", f"{sender},{cap_identifier(site, alert['incident'], revision - 1)},{cap_time(prev)}")
    _sub(root, "incidents", str(alert["incident"]))

    info = ET.SubElement(root, _q("info"))
    _sub(info, "category", "Security")
    event, severity, urgency = CAP_BY_CLASS.get(alert.get("class"), CAP_BY_CLASS["gunfire"])
    _sub(info, "event", event)
    _sub(info, "urgency", urgency)
    _sub(info, "severity", severity)
    _sub(info, "certainty", _certainty(alert))
    _sub(info, "senderName", f"Earwitness fusion server, site {site}")
    rounds = alert.get("rounds", len(alert.get("shots", [])))
    if alert.get("class", "gunfire") in URGENT_CLASSES:
        headline = f"{event}: {rounds} round(s), {alert.get('shooters', 1)} shooter(s) ({status})"
    else:
        headline = f"{event}, not gunfire ({alert.get('confidence', '')}): {rounds} impulse(s) ({status})"
    _sub(info, "headline", headline)
    _sub(info, "description", _describe(alert))
    params = {
        "incident": alert["incident"], "revision": revision, "ewStatus": status, "t_ns": alert["t_ns"],
        "discharge": cap_time(alert["t_ns"]), "rounds": rounds, "shooters": alert.get("shooters", 1),
        "class": alert.get("class", ""), "confidence": alert.get("confidence", ""), "err_m": alert.get("err_m", ""),
        "sensors": " ".join(alert.get("sensors", [])),
    }
    ellipse = alert.get("ellipse") or {}
    params.update({f"ellipse_{k}": ellipse[k] for k in ("semi_major_m", "semi_minor_m", "orientation_deg") if k in ellipse})
    params.update(casework_parameters(alert))
    if "lat" not in alert:
        params.update(frame="local", x_m=alert.get("x"), y_m=alert.get("y"), z_m=alert.get("z", ""))
    else:
        params["frame"] = "WGS84"
    for name, value in params.items():
        p = ET.SubElement(info, _q("parameter"))
        _sub(p, "valueName", name)
        _sub(p, "value", "" if value is None else str(value))
    area = ET.SubElement(info, _q("area"))
    _sub(area, "areaDesc", _area_desc(alert))
    if "lat" in alert:
        radius_km = max(float(alert.get("err_m", MIN_RADIUS_M)), MIN_RADIUS_M) / M_PER_KM
        _sub(area, "circle", f"{float(alert['lat']):.6f},{float(alert['lon']):.6f} {radius_km:.4f}")
    return ET.tostring(root, encoding="unicode", xml_declaration=False)


def casework_parameters(alert: dict) -> dict:
    """CAP parameters of what :mod:`fusion.server.casework` added: cameras, casing search radius, 911 calls."""
    params: dict = {}
    if "cameras" in alert:
        params["cameras"] = " ".join(f"{c['camera']}:{float(c['distance_m']):.0f}m@{float(c['bearing_deg']):.0f}deg"
                                     for c in alert["cameras"])
    radii = [float(s["casings"]["radius_m"]) for s in alert.get("shots", []) if "casings" in s]
    if radii:
        params["casings_radius_m"] = max(radii)
    if "called" in alert:
        params["called"] = "true" if alert["called"] else "false"
    return params


def _certainty(alert: dict) -> str:
    """CAP certainty: Possible for an unclassified incident, else by the classifier's confidence."""
    if alert.get("class") == "unknown":
        return UNKNOWN_CERTAINTY
    return "Observed" if alert.get("confidence", 0.0) >= OBSERVED_CONFIDENCE else "Likely"


def _q(tag: str) -> str:
    return f"{{{CAP_NS}}}{tag}"


def _sub(parent, tag: str, text: str):
    el = ET.SubElement(parent, _q(tag))
    el.text = text
    return el


def _where(d: dict) -> str:
    if "lat" in d:
        return f"{float(d['lat']):.6f},{float(d['lon']):.6f}"
    return f"x={float(d['x']):.1f} m, y={float(d['y']):.1f} m (local frame)"


def _area_desc(alert: dict) -> str:
    return f"within {float(alert.get('err_m', 0.0)):.0f} m ({CONFIDENCE_LEVEL}) of {_where(alert)}"


def _describe(alert: dict) -> str:
    lines = [f"Incident {alert['incident']} revision {alert['revision']} ({alert['status']}), "
             f"located by {len(alert.get('sensors', []))} sensors, "
             f"classed {alert.get('class', 'unclassified')} (confidence {alert.get('confidence', '-')})."]
    for i, shot in enumerate(alert.get("shots", []), 1):
        lines.append(f"Shot {i}: {cap_time(shot['t_ns'])} at {_where(shot)} "
                     f"+/- {float(shot.get('err_m', 0.0)):.0f} m ({CONFIDENCE_LEVEL}){_ellipse_text(shot)}, "
                     f"shooter {shot.get('shooter', 0)}.")
    return "\n".join(lines)


def _ellipse_text(d: dict) -> str:
    e = d.get("ellipse")
    if not e:
        return ""
    return (f", ellipse {float(e['semi_major_m']):.0f} x {float(e['semi_minor_m']):.0f} m "
            f"at {float(e['orientation_deg']):.0f} deg from north")


def post_webhook(url: str, body: bytes, content_type: str, *, retries: int = WEBHOOK_RETRIES,
                 backoff_s: float = WEBHOOK_BACKOFF_S, timeout_s: float = WEBHOOK_TIMEOUT_S) -> bool:
    """POST ``body`` to ``url``; retry on network errors and non-2xx replies with exponential backoff.

    Returns True once a 2xx reply arrives, False when every attempt (1 + ``retries``) failed.
    Never raises for delivery problems: an unreachable dispatch system must not stop the server.
    """
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                if HTTP_OK_MIN <= reply.status <= HTTP_OK_MAX:
                    return True
                problem = f"HTTP {reply.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        log.warning("webhook %s attempt %d/%d failed: %s", url, attempt + 1, retries + 1, problem)
        if attempt < retries:
            time.sleep(backoff_s * (2 ** attempt))
    return False
