"""The report's text: times (UTC beside the site's local time), positions, and every table and list it shows.

Each function takes the gathered :class:`fusion.report.ReportData` and returns lines or table
rows (lists of str) that the HTML and the PDF renderers lay out the same way.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform

import earwitness
from earwitness.units import NS_PER_S
from fusion.report_fit import rms_by_sensor

NS_PER_US = 1000
NS_PER_MS = 1_000_000
# A timing uncertainty at or above this is shown in ms, below it in us.
UNC_MS_FROM_NS = 1_000_000
HASH_SHOWN_CHARS = 16
DID_NOT_TRIGGER = "did not trigger"
# How each pulse's time was obtained (the node's label on the wire, DESIGN.md "Pulses JSONL").
TIMING_TEXT = {"pps-audio": "PPS (in the audio)", "pps-kernel": "PPS (kernel)", "system": "system clock",
               "file": "file start time"}

SHOT_HEADER = ["#", "discharge time (UTC)", "local time", "position", "radius 95% (m)", "ellipse 95%", "shooter", "sensors"]
PULSE_HEADER = ["sensor", "arrival (UTC)", "timing source", "uncertainty", "node's timing state", "SNR (dB)", "used",
                "SHA-256 (first 16)", "reason"]
REVISION_HEADER = ["revision", "status", "stored at (UTC)", "radius 95% (m)", "rounds", "sensors"]
SENSOR_HEADER = ["sensor", "position", "where the position came from", "heard", "residual RMS (ms)"]
CAMERA_HEADER = ["camera", "distance (m)", "bearing (deg)", "pull video from", "to", "link"]
CASING_HEADER = ["shot", "search centre", "radius (m)", "of which ejection (m)", "area (m2)"]


def check_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this machine knows (e.g. America/New_York), else ValueError (one line)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone {name!r} is not a known IANA time zone name (e.g. America/New_York)") from None
    return name


class Clock:
    """Formats times in UTC and, given the site's time zone (IANA name), in local time beside it."""

    def __init__(self, zone: str | None = None):
        self.zone = zone
        if zone is None:
            self._tz = None
        else:
            from zoneinfo import ZoneInfo

            self._tz = ZoneInfo(zone)

    @staticmethod
    def _stamp(t_ns: int, tz) -> dt.datetime:
        return dt.datetime.fromtimestamp(t_ns // NS_PER_S, tz=tz)

    def utc(self, t_ns: int) -> str:
        return self._stamp(t_ns, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{t_ns % NS_PER_S // 1000:06d} UTC"

    def local(self, t_ns: int, offset: bool = True) -> str:
        """Local date and time to the ms, with the zone's abbreviation (and UTC offset); "" without a zone."""
        if self._tz is None:
            return ""
        stamp = self._stamp(t_ns, self._tz)
        zone = stamp.strftime("%Z (UTC%z)" if offset else "%Z")
        return stamp.strftime("%Y-%m-%d %H:%M:%S") + f".{t_ns % NS_PER_S // NS_PER_MS:03d} {zone}"

    def when(self, t_ns: int) -> str:
        """UTC to the ms and, when the zone is known, the local time beside it to the second with its zone's
        abbreviation (and its date when that differs from the UTC date)."""
        utc = self.utc(t_ns)[:-len("000 UTC")] + " UTC"
        if self._tz is None:
            return utc
        local = self._stamp(t_ns, self._tz)
        same_day = local.date() == self._stamp(t_ns, dt.timezone.utc).date()
        return f"{utc} ({local.strftime('%H:%M:%S %Z' if same_day else '%Y-%m-%d %H:%M:%S %Z')})"

    def zone_line(self) -> str:
        if self._tz is None:
            return "Local time: no site time zone is configured (timezone in fusion.toml or --tz); times are UTC only"
        return f"Local times are in the site's time zone {self.zone} (from the fusion configuration)"


def is_wgs84(d: dict) -> bool:
    return "lat" in d and "lon" in d


def position_text(d: dict) -> str:
    if is_wgs84(d):
        return f"{float(d['lat']):.6f}, {float(d['lon']):.6f}"
    return f"{float(d['x']):.1f}, {float(d['y']):.1f}"


def _position_3d(d: dict) -> str:
    if is_wgs84(d):
        return f"lat {float(d['lat']):.6f}, lon {float(d['lon']):.6f}, alt {float(d.get('alt', 0.0)):.1f} m"
    return f"x {float(d['x']):.1f}, y {float(d['y']):.1f}, z {float(d.get('z', 0.0)):.1f} m"


def radius_text(d: dict) -> str:
    err = d.get("err_m")
    return "-" if err is None else f"{float(err):.1f} m (95%)"


def ellipse_text(d: dict) -> str:
    """The 95% ellipse as "semi-major x semi-minor m @ bearing deg (95%)" (bearing clockwise from north), or "-"."""
    e = d.get("ellipse")
    if not e:
        return "-"
    return (f"{float(e['semi_major_m']):.1f} x {float(e['semi_minor_m']):.1f} m @ {float(e['orientation_deg']):.0f} deg "
            "(95%)")


def shots_in_order(data) -> list[dict]:
    return sorted(data.incident.get("shots", []), key=lambda s: s["t_ns"])


def shot_rows(data) -> list[list[str]]:
    """Shots in discharge order: #, time (UTC, local), position, 95% radius and ellipse, shooter, sensors."""
    return [[str(i), data.clock.utc(s["t_ns"]), data.clock.local(s["t_ns"], offset=False) or "-", position_text(s),
             radius_text(s),
             ellipse_text(s), str(s.get("shooter", 0)), str(len(s.get("sensors", [])))]
            for i, s in enumerate(shots_in_order(data), 1)]


def unc_text(t_unc_ns) -> str:
    if t_unc_ns is None:
        return "not stated"
    t_unc_ns = int(t_unc_ns)
    return f"{t_unc_ns / NS_PER_MS:.3g} ms" if t_unc_ns >= UNC_MS_FROM_NS else f"{t_unc_ns / NS_PER_US:.3g} us"


def timing_state(data, node: str, t_ns: int) -> str:
    """The node's own report of its timing (locked to PPS, holdover, system clock) nearest the pulse, or why none."""
    reports = [h for h in data.health.get(node, []) if h.get("timing_state") or h.get("timing")]
    if not reports:
        return "no health report"
    near = min(reports, key=lambda h: abs(h["t_ns"] - t_ns))
    state = near.get("timing_state") or TIMING_TEXT.get(near.get("timing"), str(near.get("timing")))
    return f"{state} ({(near['t_ns'] - t_ns) / NS_PER_S:+.0f} s)"


def pulse_rows(data) -> list[list[str]]:
    rows = []
    for p in data.pulses:
        snr = p.get("snr_db")
        node = p.get("sensor", p["node"])
        # Time of day only: the date is in the summary, and the table must fit a page.
        rows.append([node, data.clock.utc(p["t_ns"])[len("YYYY-MM-DD "):], TIMING_TEXT.get(p.get("timing"), str(p.get("timing"))),
                     unc_text(p.get("t_unc_ns")), timing_state(data, node, p["t_ns"]),
                     "" if snr is None else f"{float(snr):.1f}", "yes" if p["used"] else "no",
                     p["sha256"][:HASH_SHOWN_CHARS], p["reason"]])
    return rows


def residual_rows(data) -> list[list[str]]:
    return [[str(r["shot"]), r["sensor"], data.clock.utc(r["arrival_ns"])[len("YYYY-MM-DD "):], f"{r['dist_m']:.1f}",
             f"{r['travel_ms']:.1f}", f"{r['residual_ms']:+.2f}"] for r in data.residuals]


def triggered(data) -> set[str]:
    return {p.get("sensor", p["node"]) for p in data.pulses}


def sensor_rows(data) -> list[list[str]]:
    """Every sensor near the incident: position, where it came from, whether it heard it, its residuals."""
    rms = rms_by_sensor(data.residuals)
    heard_by: dict[str, list[bool]] = {}
    for p in data.pulses:
        heard_by.setdefault(p.get("sensor", p["node"]), []).append(p["used"])
    names = sorted(set(data.sensors) | {c["node"] for c in data.clips})
    rows = []
    for n in names:
        pos = data.sensors.get(n) or (data.snapshot.registry.positions.get(n) if data.snapshot.registry else None)
        used = heard_by.get(n, [])
        heard = f"{sum(used)} used, {len(used) - sum(used)} not used" if used else DID_NOT_TRIGGER
        rows.append([n, _position_3d(pos) if pos else "unknown", data.snapshot.survey(n), heard,
                     f"{rms[n]:.2f}" if n in rms else "-"])
    return rows


def revision_rows(data) -> list[list[str]]:
    return [[str(r["revision"]), r["status"], data.clock.utc(r["created_ns"]), f"{float(r.get('err_m', float('nan'))):.1f}",
             str(r.get("rounds", "")), str(len(r.get("sensors", [])))] for r in data.revisions]


def camera_rows(data) -> list[list[str]]:
    return [[c["camera"], f"{float(c['distance_m']):.0f}", f"{float(c['bearing_deg']):.0f}", data.clock.when(c["pull_from_ns"]),
             data.clock.when(c["pull_to_ns"]), c.get("url") or "-"] for c in data.incident.get("cameras", [])]


def camera_note(data) -> str:
    """Above the cameras table.  The server lists no camera both without a camera registry and when none of
    its cameras sees the position: the incident does not tell the two apart, and neither does this."""
    if "cameras" not in data.incident:
        return "Cameras to pull: not computed for this incident (stored before the server listed cameras)."
    if not data.incident["cameras"]:
        return ("No camera to pull: no camera registry is configured (cameras in fusion.toml), or none of its cameras "
                "sees the located position.")
    return "Cameras to pull video from (those of the camera registry that see the located position):"


def casing_rows(data) -> list[list[str]]:
    return [[str(i), position_text(s), f"{float(s['casings']['radius_m']):.0f}", f"{float(s['casings']['ejection_m']):.0f}",
             f"{float(s['casings']['area_m2']):.0f}"] for i, s in enumerate(shots_in_order(data), 1) if "casings" in s]


def casing_note(data) -> str:
    if not casing_rows(data):
        return "Casing search area: not computed for this incident."
    return ("Where to search for casings, per shot: within the radius of the search centre (the shot's 95% region "
            "widened by how far a casing is ejected):")


def summary_lines(data) -> list[str]:
    inc, meta = data.incident, data.meta
    temp = meta.get("temperature_c")
    c = meta.get("speed_of_sound_m_s")
    frame = "WGS84 lat, lon" if is_wgs84(inc) else "local x, y metres"
    lines = [
        f"Incident {inc['incident']}, revision {inc.get('revision')} ({inc.get('status')})",
        f"First discharge: {data.clock.utc(inc['t_ns'])}",
        f"First discharge, local time: {data.clock.local(inc['t_ns']) or 'not known (no site time zone)'}",
        data.clock.zone_line(),
        f"Position: {position_text(inc)} ({frame}); radius {radius_text(inc)}, ellipse {ellipse_text(inc)} "
        "(the regions that hold the true position with 95% probability; ellipse bearing clockwise from north)",
        f"Rounds: {inc.get('rounds')}, shooters: {inc.get('shooters')}, class: {inc.get('class')}, "
        f"confidence: {inc.get('confidence')}",
        f"Sensors used: {len(inc.get('sensors', []))} ({', '.join(inc.get('sensors', []))})",
        f"Weather: temperature {'not known' if temp is None else f'{float(temp):.1f} C'}"
        f"{'' if not meta.get('weather') else ', ' + str(meta['weather'])}; "
        f"speed of sound {'estimated by the locator' if c is None else f'{float(c):.1f} m/s'}",
        f"Software: earwitness {meta.get('software', earwitness.__version__)}, "
        f"locator {meta.get('locator', 'fusion.locator.locate')}, "
        f"report by earwitness {earwitness.__version__} on Python {platform.python_version()}",
        registry_line(data),
        *data.signatures.lines(data.snapshot),
    ]
    if "calls" in inc:
        called = ", ".join(f"{c['call_id']} ({float(c['dt_s']):+.0f} s, {float(c['dist_m']):.0f} m)" for c in inc["calls"])
        lines.append(f"911 calls matched: {called or 'none so far'}")
    return lines


def registry_line(data) -> str:
    snap = data.snapshot
    if snap.sha256 is None:
        return f"Registry: not known ({snap.problem})"
    return (f"Registry (node keys and positions): SHA-256 {snap.sha256}, file {snap.path}, entered in the audit log "
            f"as entry {snap.seq} at {data.clock.utc(snap.entered_ns)}")


def hash_lines(data) -> list[str]:
    """SHA-256 of the registry, each incident revision (as stored), each clip, and of all pulse messages together."""
    lines = [f"registry: {data.snapshot.sha256 or 'not known'}"]
    for r in data.revisions:
        body = {k: v for k, v in r.items() if k not in ("meta", "created_ns")}
        text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        lines.append(f"revision {r['revision']}: {hashlib.sha256(text).hexdigest()}")
    for c in data.clips:
        lines.append(f"clip {c['node']} @ {data.clock.utc(c['t0_ns'])}: {c['sha256']}")
    joined = "".join(p["sha256"] for p in data.pulses).encode()
    lines.append(f"all {len(data.pulses)} pulse messages (concatenated digests): {hashlib.sha256(joined).hexdigest()}")
    return lines


HISTORY_NOTE = ("What the machine computed (each revision the fusion server stored, entered in the audit log by "
                "actor 'fusion') is listed apart from what people changed (reviews, reclassifications and dispositions "
                "entered by the console under the person's name), with who, when and why.")
