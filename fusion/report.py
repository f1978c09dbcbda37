"""Forensic report of one incident, as a self-contained HTML page or a PDF.

The report holds what an analyst or a court needs to check a location: a map of the sensors
and the shots with their error ellipses, the shots in discharge order, each sensor's waveform
(where an audio clip was collected) with the picked arrivals, which pulses the locator used or
rejected and why, the temperature and speed of sound, the software version, and SHA-256
digests of every stored message, clip and incident revision.

Everything comes from the store (:mod:`fusion.server.store`); the map and sensor positions from the
revision's ``meta["sensors"]`` (``{id: {"x","y","z"}}`` or ``{id: {"lat","lon","alt"}}``).
Plots are drawn with matplotlib; the PDF is written by matplotlib's PdfPages.

Example::

    with Store("fusion.db") as store:
        write_report(store, "pgh-000123", "incident.pdf")
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import html
import io
import json
import pathlib
import platform
import textwrap

import matplotlib
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

import earwitness
from earwitness.units import NS_PER_S
from fusion.console.waveforms import min_max_envelope

# Embed TrueType fonts in PDFs so the text stays searchable and extractable.
matplotlib.rcParams["pdf.fonttype"] = 42
MS_PER_S = 1000.0
PAGE_SIZE_IN = (8.27, 11.69)          # A4 portrait
FIG_DPI = 110
# An error estimate err_m is drawn as a 95% circle when the locator gives no ellipse nor covariance.
CHI2_2D_95 = 5.991
# East of north, turned to matplotlib's angle (counter-clockwise from the x axis, east).
BEARING_TO_MPL_DEG = 90.0
WAVE_BEFORE_S, WAVE_AFTER_S = 0.2, 0.5
WAVE_BUCKETS = 2000   # min/max pairs drawn per waveform panel
ROWS_PER_PDF_PAGE = 80
HASH_SHOWN_CHARS = 16
MAP_MARGIN_M = 50.0
PDF_LINE_CHARS = 105


@dataclasses.dataclass
class ReportData:
    """Everything the report shows, gathered from the store."""

    incident: dict
    revisions: list[dict]
    pulses: list[dict]
    clips: list[dict]
    sensors: dict
    meta: dict

    @property
    def title(self) -> str:
        return f"Earwitness forensic report: incident {self.incident['incident']}"


def gather(store, incident_id: str) -> ReportData:
    """Collect an incident's latest revision, its history, pulses, clips and metadata."""
    incident = store.incident(incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id!r} in the store")
    revs = store.revisions(incident_id)
    meta = revs[-1]["meta"] if revs else {}
    return ReportData(incident=incident, revisions=revs, pulses=store.incident_pulses(incident_id),
                      clips=store.clips(incident_id), sensors=meta.get("sensors", {}), meta=meta)


def write_report(store, incident_id: str, out: str | pathlib.Path) -> pathlib.Path:
    """Write the report of ``incident_id`` to ``out``: ``.html`` or ``.pdf`` by its suffix."""
    out = pathlib.Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise ValueError(f"report file must end in .html or .pdf, not {out.name!r}")
    data = gather(store, incident_id)
    (render_pdf if suffix == ".pdf" else render_html)(data, out)
    return out


# -- content ------------------------------------------------------------------------------
def _utc(t_ns: int) -> str:
    stamp = dt.datetime.fromtimestamp(t_ns // NS_PER_S, tz=dt.timezone.utc)
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + f".{t_ns % NS_PER_S // 1000:06d} UTC"


def _is_wgs84(d: dict) -> bool:
    return "lat" in d and "lon" in d


def _local_xy(points: list[dict], origin: dict | None) -> np.ndarray:
    """Positions as metres east/north: local frames as is, WGS84 through pymap3d around ``origin``."""
    if not points:
        return np.zeros((0, 2))
    if not _is_wgs84(points[0]):
        return np.array([[float(p["x"]), float(p["y"])] for p in points])
    import pymap3d

    lat0, lon0 = float(origin["lat"]), float(origin["lon"])
    e, n, _ = pymap3d.geodetic2enu(np.array([p["lat"] for p in points], float), np.array([p["lon"] for p in points], float),
                                   0.0, lat0, lon0, 0.0)
    return np.column_stack([e, n])


def _position_text(d: dict) -> str:
    if _is_wgs84(d):
        return f"{float(d['lat']):.6f}, {float(d['lon']):.6f}"
    return f"{float(d['x']):.1f}, {float(d['y']):.1f}"


def shot_rows(data: ReportData) -> list[list[str]]:
    """Table of shots in discharge order: #, discharge time, position, error, shooter, sensors."""
    shots = sorted(data.incident.get("shots", []), key=lambda s: s["t_ns"])
    return [[str(i), _utc(s["t_ns"]), _position_text(s), f"{float(s.get('err_m', float('nan'))):.1f}",
             _ellipse_text(s), str(s.get("shooter", 0)), str(len(s.get("sensors", [])))] for i, s in enumerate(shots, 1)]


def _ellipse_text(d: dict) -> str:
    """The 95% ellipse as "semi-major x semi-minor @ bearing" (degrees clockwise from north), or "-"."""
    e = d.get("ellipse")
    if not e:
        return "-"
    return f"{float(e['semi_major_m']):.1f} x {float(e['semi_minor_m']):.1f} @ {float(e['orientation_deg']):.0f}"


SHOT_HEADER = ["#", "discharge time", "position", "err 95% m", "ellipse 95%", "shooter", "sensors"]
PULSE_HEADER = ["sensor", "arrival time", "SNR (dB)", "used", "reason", "SHA-256 (first 16)"]
REVISION_HEADER = ["revision", "status", "stored at", "error 95% (m)", "rounds", "sensors"]


def pulse_rows(data: ReportData) -> list[list[str]]:
    rows = []
    for p in data.pulses:
        snr = p.get("snr_db")
        # Time of day only: the date is in the summary, and the table must fit a page.
        rows.append([p.get("sensor", p["node"]), _utc(p["t_ns"])[len("YYYY-MM-DD "):], "" if snr is None else f"{float(snr):.1f}",
                     "yes" if p["used"] else "no", p["reason"], p["sha256"][:HASH_SHOWN_CHARS]])
    return rows


def revision_rows(data: ReportData) -> list[list[str]]:
    return [[str(r["revision"]), r["status"], _utc(r["created_ns"]), f"{float(r.get('err_m', float('nan'))):.1f}",
             str(r.get("rounds", "")), str(len(r.get("sensors", [])))] for r in data.revisions]


def summary_lines(data: ReportData) -> list[str]:
    inc, meta = data.incident, data.meta
    temp = meta.get("temperature_c")
    c = meta.get("speed_of_sound_m_s")
    return [
        f"Incident {inc['incident']}, revision {inc.get('revision')} ({inc.get('status')})",
        f"First discharge: {_utc(inc['t_ns'])}",
        f"Position: {_position_text(inc)} ({'WGS84 lat, lon' if _is_wgs84(inc) else 'local x, y metres'}), "
        f"error {float(inc.get('err_m', float('nan'))):.1f} m (95% radius; ellipse {_ellipse_text(inc)}: "
        "semi-axes m @ bearing deg from north)",
        f"Rounds: {inc.get('rounds')}, shooters: {inc.get('shooters')}, class: {inc.get('class')}, "
        f"confidence: {inc.get('confidence')}",
        f"Sensors used: {len(inc.get('sensors', []))} ({', '.join(inc.get('sensors', []))})",
        f"Weather: temperature {'not known' if temp is None else f'{float(temp):.1f} C'}"
        f"{'' if not meta.get('weather') else ', ' + str(meta['weather'])}; "
        f"speed of sound {'estimated by the locator' if c is None else f'{float(c):.1f} m/s'}",
        f"Software: earwitness {meta.get('software', earwitness.__version__)}, "
        f"locator {meta.get('locator', 'fusion.locator.locate')}, "
        f"report by earwitness {earwitness.__version__} on Python {platform.python_version()}",
        *casework_lines(inc),
    ]


def casework_lines(inc: dict) -> list[str]:
    """Cameras to pull video from, where to search for casings, and the 911 calls matched (fusion.server.casework)."""
    lines = [f"Camera {c['camera']}: {float(c['distance_m']):.0f} m away, the shot at bearing {float(c['bearing_deg']):.0f} deg "
             f"from it; pull video {_utc(c['pull_from_ns'])} to {_utc(c['pull_to_ns'])}"
             + (f" ({c['url']})" if c.get("url") else "")
             for c in inc.get("cameras", [])]
    if "cameras" in inc and not inc["cameras"]:
        lines.append("Cameras: none registered sees the located position")
    for i, shot in enumerate(sorted(inc.get("shots", []), key=lambda s: s["t_ns"]), 1):
        if "casings" in shot:
            k = shot["casings"]
            lines.append(f"Casings, shot {i}: search within {float(k['radius_m']):.0f} m of {_position_text(shot)} "
                         f"(its 95% region widened by {float(k['ejection_m']):.0f} m of ejection; {float(k['area_m2']):.0f} m2)")
    if "calls" in inc:
        called = ", ".join(f"{c['call_id']} ({float(c['dt_s']):+.0f} s, {float(c['dist_m']):.0f} m)" for c in inc["calls"])
        lines.append(f"911 calls matched: {called or 'none so far'}")
    return lines


def hash_lines(data: ReportData) -> list[str]:
    """SHA-256 of each incident revision (as stored), each clip, and of all pulse messages together."""
    lines = []
    for r in data.revisions:
        body = {k: v for k, v in r.items() if k not in ("meta", "created_ns")}
        text = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        lines.append(f"revision {r['revision']}: {hashlib.sha256(text).hexdigest()}")
    for c in data.clips:
        lines.append(f"clip {c['node']} @ {_utc(c['t0_ns'])}: {c['sha256']}")
    joined = "".join(p["sha256"] for p in data.pulses).encode()
    lines.append(f"all {len(data.pulses)} pulse messages (concatenated digests): {hashlib.sha256(joined).hexdigest()}")
    return lines


# -- figures ------------------------------------------------------------------------------
def map_figure(data: ReportData) -> Figure:
    """Left: every sensor (used / not used) and the shots; right: the shots close up with 95% error ellipses."""
    inc = data.incident
    fig = Figure(figsize=(PAGE_SIZE_IN[0], PAGE_SIZE_IN[0] * 0.55), dpi=FIG_DPI)
    overview, zoom = fig.subplots(1, 2)
    names = sorted(data.sensors)
    sensor_xy = _local_xy([data.sensors[n] for n in names], inc)
    shots = sorted(inc.get("shots", []), key=lambda s: s["t_ns"])
    shot_xy = _local_xy(shots, inc)
    used = set(inc.get("sensors", []))
    for ax in (overview, zoom):
        for (x, y), name in zip(sensor_xy, names):
            ax.plot(x, y, "^", color="tab:blue" if name in used else "0.6", markersize=7)
        # The close-up keeps its limits (box); the overview stretches its data limits.
        ax.set_aspect("equal", adjustable="box" if ax is zoom else "datalim")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    for (x, y), name in zip(sensor_xy, names):
        overview.annotate(name[-4:], (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    colors = matplotlib.colormaps["tab10"]
    reach_m = MAP_MARGIN_M
    for i, (shot, (x, y)) in enumerate(zip(shots, shot_xy), 1):
        color = colors(int(shot.get("shooter", 0)) % 10)
        width, height, angle = _ellipse(shot)
        reach_m = max(reach_m, width, height)
        zoom.add_patch(Ellipse((x, y), width, height, angle=angle, fill=False, color=color))
        zoom.annotate(str(i), (x, y), textcoords="offset points", xytext=(4, 4 + 8 * (i - 1)), fontsize=8, color=color)
        for ax in (overview, zoom):
            ax.plot(x, y, "x", color=color, markersize=8)
    _draw_casework(inc, overview, zoom)
    if len(shot_xy):
        centre = shot_xy.mean(axis=0)
        zoom.set_xlim(centre[0] - reach_m, centre[0] + reach_m)
        zoom.set_ylim(centre[1] - reach_m, centre[1] + reach_m)
    overview.plot([], [], "^", color="tab:blue", label="sensor used")
    overview.plot([], [], "^", color="0.6", label="sensor not used")
    overview.plot([], [], "x", color="k", label="shot")
    overview.legend(loc="best", fontsize=7)
    frame = "m east of the incident (WGS84 input)" if _is_wgs84(inc) else "x, local frame (m)"
    overview.set_xlabel(frame, fontsize=8)
    overview.set_ylabel("y (m)", fontsize=8)
    overview.set_title("Sensors (last 4 characters of their id) and shots", fontsize=9)
    zoom.set_xlabel(frame, fontsize=8)
    zoom.set_title("Shots (numbered in discharge order), 95% error ellipses", fontsize=9)
    fig.tight_layout()
    return fig


def _draw_casework(inc: dict, overview, zoom) -> None:
    """The casing search area (dashed, on the close-up) and the cameras that see the shots (squares, on the overview)."""
    area = inc.get("casings_area")
    if area:
        polygons = area["coordinates"] if area["type"] == "MultiPolygon" else [area["coordinates"]]
        for k, poly in enumerate(polygons):
            ring = poly[0]
            keys = ("lon", "lat") if _is_wgs84(inc) else ("x", "y")
            xy = _local_xy([dict(zip(keys, point)) for point in ring], inc)
            zoom.plot(xy[:, 0], xy[:, 1], "--", color="tab:orange", linewidth=1.2,
                      label="casing search area" if k == 0 else None)
        zoom.legend(loc="lower right", fontsize=7)
    cams = [c for c in inc.get("cameras", []) if "at" in c]
    if cams:
        xy = _local_xy([c["at"] for c in cams], inc)
        overview.plot(xy[:, 0], xy[:, 1], "s", color="tab:green", markersize=6, label="camera that sees it")
        for (x, y), cam in zip(xy, cams):
            overview.annotate(cam["camera"], (x, y), textcoords="offset points", xytext=(3, -8), fontsize=6, color="tab:green")


def _ellipse(shot: dict) -> tuple[float, float, float]:
    """Width, height (m) and angle (deg, counter-clockwise from east) of the 95% ellipse.

    From the locator's ``ellipse`` (semi-axes, bearing clockwise from north) if given, else from
    ``cov_m2``, else a circle of err_m.
    """
    e = shot.get("ellipse")
    if e:
        return (2 * float(e["semi_major_m"]), 2 * float(e["semi_minor_m"]),
                BEARING_TO_MPL_DEG - float(e["orientation_deg"]))
    cov = shot.get("cov_m2")
    if cov is not None:
        vals, vecs = np.linalg.eigh(np.asarray(cov, float)[:2, :2])
        vals = np.clip(vals, 0.0, None)
        width, height = 2 * np.sqrt(CHI2_2D_95 * vals[::-1])
        angle = float(np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1])))
        return float(width), float(height), angle
    diameter = 2 * float(shot.get("err_m", 0.0))
    return diameter, diameter, 0.0


def waveform_figure(data: ReportData) -> Figure | None:
    """One panel per sensor clip: the waveform and its pulses (used: solid, rejected: dashed)."""
    if not data.clips:
        return None
    import soundfile

    t0_ns = data.incident["t_ns"]
    lo_s, hi_s = _arrival_span_s(data)
    lo_s, hi_s = lo_s - WAVE_BEFORE_S, hi_s + WAVE_AFTER_S
    fig = Figure(figsize=(PAGE_SIZE_IN[0], max(2.0, 1.4 * len(data.clips))), dpi=FIG_DPI)
    axes = fig.subplots(len(data.clips), 1, sharex=True, squeeze=False)[:, 0]
    for ax, clip in zip(axes, data.clips):
        samples, rate_hz = soundfile.read(io.BytesIO(clip["data"]), dtype="float32", always_2d=True)
        mono = samples[:, 0]
        t_s = (clip["t0_ns"] - t0_ns) / NS_PER_S + np.arange(len(mono)) / rate_hz
        keep = (t_s >= lo_s) & (t_s <= hi_s)
        ax.plot(*min_max_envelope(t_s[keep] * MS_PER_S, mono[keep], WAVE_BUCKETS), lw=0.5, color="k")
        for p in data.pulses:
            if p.get("sensor", p["node"]) == clip["node"]:
                ax.axvline((p["t_ns"] - t0_ns) / NS_PER_S * MS_PER_S, color="tab:green" if p["used"] else "tab:red",
                           ls="-" if p["used"] else "--", lw=1.0)
        ax.set_ylabel(clip["node"], rotation=0, ha="right", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].set_title("Waveforms; picked arrivals: green used, red dashed rejected")
    axes[-1].set_xlabel("ms after the first discharge")
    fig.tight_layout()
    return fig


def _arrival_span_s(data: ReportData) -> tuple[float, float]:
    """First and last used arrival (all pulses if none was used), seconds after the first discharge."""
    times = [p["t_ns"] for p in data.pulses if p["used"]] or [p["t_ns"] for p in data.pulses] or [data.incident["t_ns"]]
    return (min(times) - data.incident["t_ns"]) / NS_PER_S, (max(times) - data.incident["t_ns"]) / NS_PER_S


# -- HTML ---------------------------------------------------------------------------------
def _png_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _html_table(header: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(data: ReportData, out: pathlib.Path) -> None:
    """Write the report as one self-contained HTML file (figures embedded as PNG)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:2px 6px;font-size:90%}</style></head><body>",
             f"<h1>{html.escape(data.title)}</h1><ul class='summary'>",
             *(f"<li>{html.escape(line)}</li>" for line in summary_lines(data)), "</ul>",
             "<h2>Shots in discharge order</h2>", _html_table(SHOT_HEADER, shot_rows(data), "shots"),
             "<h2>Map</h2>", f"<img class='map' alt='map of sensors and shots' src='{_png_data_uri(map_figure(data))}'>"]
    wave = waveform_figure(data)
    parts.append("<h2>Waveforms</h2>")
    parts.append(f"<img class='waveforms' alt='waveforms' src='{_png_data_uri(wave)}'>" if wave is not None
                 else "<p>No audio clips were collected for this incident.</p>")
    parts += ["<h2>Pulses used and rejected</h2>", _html_table(PULSE_HEADER, pulse_rows(data), "pulses"),
              "<h2>Revisions</h2>", _html_table(REVISION_HEADER, revision_rows(data), "revisions"),
              "<h2>Data hashes (SHA-256)</h2><ul class='hashes'>",
              *(f"<li><code>{html.escape(line)}</code></li>" for line in hash_lines(data)), "</ul></body></html>"]
    out.write_text("".join(parts), encoding="utf-8")


# -- PDF ----------------------------------------------------------------------------------
def _text_page(title: str, lines: list[str], wrap: bool = True) -> Figure:
    fig = Figure(figsize=PAGE_SIZE_IN, dpi=FIG_DPI)
    fig.text(0.06, 0.95, title, fontsize=13, weight="bold", va="top")
    if wrap:
        lines = [part for line in lines for part in (textwrap.wrap(line, PDF_LINE_CHARS, subsequent_indent="    ") or [""])]
    fig.text(0.04 if not wrap else 0.06, 0.91, "\n".join(lines), fontsize=8 if wrap else 6.5, va="top", family="monospace")
    return fig


def summary_page(data: ReportData) -> Figure:
    """The PDF's first page: summary, shots in discharge order, revisions, data hashes."""
    lines = summary_lines(data) + ["", "Shots in discharge order:"]
    widths = [2, 30, 18, 9, 16, 7, 7]
    lines.append("  ".join(h.ljust(w) for h, w in zip(SHOT_HEADER, widths)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in shot_rows(data)]
    lines += ["", "Revisions (" + ", ".join(REVISION_HEADER) + "):"] + ["  ".join(row) for row in revision_rows(data)]
    lines += ["", "Data hashes (SHA-256):"] + hash_lines(data)
    lines += ["", "Pulses: " + f"{sum(p['used'] for p in data.pulses)} used, "
              f"{sum(not p['used'] for p in data.pulses)} rejected (table on the last pages)."]
    return _text_page(data.title, lines)


def _table_pages(title: str, header: list[str], rows: list[list[str]]) -> list[Figure]:
    """A table as monospaced text pages (matplotlib's table artist is slow to lay out at this size)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))

    pages = []
    for start in range(0, max(len(rows), 1), ROWS_PER_PDF_PAGE):
        chunk = [line(r) for r in rows[start:start + ROWS_PER_PDF_PAGE]]
        pages.append(_text_page(title if start == 0 else f"{title} (continued)",
                                [line(header), line(["-" * w for w in widths]), *chunk], wrap=False))
    return pages


def render_pdf(data: ReportData, out: pathlib.Path) -> None:
    """Write the report as a PDF: summary, shots, map, waveforms, pulses, revisions, hashes."""
    with PdfPages(out, metadata={"Title": data.title, "Creator": f"earwitness {earwitness.__version__}"}) as pdf:
        pdf.savefig(summary_page(data))
        pdf.savefig(map_figure(data))
        wave = waveform_figure(data)
        if wave is not None:
            pdf.savefig(wave)
        for page in _table_pages("Pulses used and rejected", PULSE_HEADER, pulse_rows(data)):
            pdf.savefig(page)
