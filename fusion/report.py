"""Forensic report of one incident, as a self-contained HTML page or a PDF.

The report holds what an analyst or a court needs to check a location: a map of the sensors
and the shots with their 95% error ellipses, the shots in discharge order (UTC and the site's
local time), each sensor's waveform (where an audio clip was collected, also from sensors near
it that did not trigger) with the picked arrivals and a close-up of 20 ms either side of each
pick, every pulse with its timing source and uncertainty and the node's reported timing state,
the fit's residuals per sensor, the sensors' positions and where they came from, the cameras to
pull and where to search for casings, the registry's SHA-256 and a check of every signature,
the temperature and speed of sound, the software version, SHA-256 digests of every stored
message, clip and revision, and, apart, what the machine computed (each revision) and what
people changed (reviews, reclassifications, dispositions: who, when, why) from the audit log.

Everything comes from the store (:mod:`fusion.server.store`) and its audit log
(:mod:`fusion.server.audit`); the map and sensor positions from the revision's
``meta["sensors"]``, and for sensors that did not trigger from the registry entered in the
audit log.  Plots are drawn with matplotlib; the PDF is written by matplotlib's PdfPages.

Example::

    with Store("fusion.db") as store:
        write_report(store, "pgh-000123", "incident.pdf", zone="America/New_York")
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import pathlib
import textwrap

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

import earwitness
from fusion import report_content as rc
from fusion.report_checks import RegistrySnapshot, SignatureCheck, check_signatures, registry_snapshot
from fusion.report_figures import FIG_DPI, PAGE_SIZE_IN, map_figure, pick_figures, waveform_figure
from fusion.report_fit import RESIDUAL_HEADER, residuals
from fusion.report_history import HUMAN_HEADER, MACHINE_HEADER, History, incident_history
from fusion.server.audit import AuditLog

# Embed TrueType fonts in PDFs so the text stays searchable and extractable.
matplotlib.rcParams["pdf.fonttype"] = 42
ROWS_PER_PDF_PAGE = 80
LINES_PER_TEXT_PAGE = 70
PDF_LINE_CHARS = 105
PDF_TABLE_CHARS = 150         # monospaced TABLE_FONT_PT across an A4 page
TABLE_FONT_PT = 6.0
TEXT_FONT_PT = 8.0
MIN_LAST_COLUMN_CHARS = 30    # narrower than this, a table's last column goes on lines of its own
CONTINUED = "    ... "
FIGURES_BEFORE = "residuals"   # HTML: the figures after the tables an officer needs, before the analyst's


@dataclasses.dataclass
class ReportData:
    """Everything the report shows, gathered from the store and its audit log."""

    incident: dict
    revisions: list[dict]
    pulses: list[dict]
    clips: list[dict]
    sensors: dict
    meta: dict
    clock: rc.Clock = dataclasses.field(default_factory=rc.Clock)
    snapshot: RegistrySnapshot = dataclasses.field(default_factory=RegistrySnapshot)
    signatures: SignatureCheck = dataclasses.field(default_factory=SignatureCheck)
    history: History = dataclasses.field(default_factory=lambda: History([], [], []))
    residuals: list[dict] = dataclasses.field(default_factory=list)
    health: dict = dataclasses.field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"Earwitness forensic report: incident {self.incident['incident']}"


def gather(store, incident_id: str, zone: str | None = None) -> ReportData:
    """Collect an incident's latest revision, its history, pulses, clips, audit entries and checks.

    ``zone``: the site's time zone (IANA name, e.g. ``America/New_York``) for local times.
    """
    incident = store.incident(incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id!r} in the store")
    revs = store.revisions(incident_id)
    meta = revs[-1]["meta"] if revs else {}
    pulses, clips = store.incident_pulses(incident_id), store.clips(incident_id)
    data = ReportData(incident=incident, revisions=revs, pulses=pulses, clips=clips,
                      sensors=dict(meta.get("sensors", {})), meta=meta, clock=rc.Clock(zone))
    log = AuditLog(store)
    data.history = incident_history(log, incident_id, revs, data.clock.when, rc.position_text)
    data.snapshot = registry_snapshot(log, data.history.entries)
    data.signatures = check_signatures(store, data.snapshot, pulses, clips, data.history.entries)
    if data.snapshot.registry is not None:   # sensors that sent a clip but heard nothing: placed from the registry
        for clip in clips:
            data.sensors.setdefault(clip["node"], data.snapshot.registry.positions.get(clip["node"]))
        data.sensors = {n: p for n, p in data.sensors.items() if p is not None}
    data.residuals = residuals(incident, pulses, meta)
    data.health = {n: store.health(n) for n in rc.triggered(data)}
    return data


def write_report(store, incident_id: str, out: str | pathlib.Path, zone: str | None = None) -> pathlib.Path:
    """Write the report of ``incident_id`` to ``out``: ``.html`` or ``.pdf`` by its suffix."""
    out = pathlib.Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".pdf"):
        raise ValueError(f"report file must end in .html or .pdf, not {out.name!r}")
    data = gather(store, incident_id, zone)
    (render_pdf if suffix == ".pdf" else render_html)(data, out)
    return out


def sections(data: ReportData) -> list[tuple[str, str, list[str], list[list[str]], str]]:
    """The report's tables, in order: (title, class, header, rows, note above it)."""
    return [
        ("Shots in discharge order", "shots", rc.SHOT_HEADER, rc.shot_rows(data),
         "Radius and ellipse: the regions that hold the true position with 95% probability."),
        ("Cameras to pull", "cameras", rc.CAMERA_HEADER, rc.camera_rows(data), rc.camera_note(data)),
        ("Casing search area", "casings", rc.CASING_HEADER, rc.casing_rows(data), rc.casing_note(data)),
        ("Sensors", "sensors", rc.SENSOR_HEADER, rc.sensor_rows(data),
         "Positions as in the registry the server ran with; where each came from as the registry states it."),
        ("Fit residuals per sensor", "residuals", RESIDUAL_HEADER, rc.residual_rows(data),
         "Arrival minus the shot's discharge time plus the straight path at the speed of sound used; positive: late."),
        ("What the machine computed", "machine", MACHINE_HEADER, data.history.machine, rc.HISTORY_NOTE),
        ("What people changed", "human", HUMAN_HEADER, data.history.human,
         "" if data.history.human else "Nobody has reviewed, reclassified or recorded a disposition of this incident."),
        ("Pulses used and rejected", "pulses", rc.PULSE_HEADER, rc.pulse_rows(data),
         "Timing source and one-sigma uncertainty as each pulse carried them; the node's timing state from its "
         "health report nearest the pulse (seconds from the pulse)."),
        ("Revisions", "revisions", rc.REVISION_HEADER, rc.revision_rows(data), ""),
    ]


# -- HTML ---------------------------------------------------------------------------------
def _png_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _html_table(header: list[str], rows: list[list[str]], cls: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _html_figures(data: ReportData) -> list[str]:
    parts = ["<h2>Map</h2>", f"<img class='map' alt='map of sensors and shots' src='{_png_data_uri(map_figure(data))}'>"]
    wave = waveform_figure(data)
    parts.append("<h2>Waveforms</h2>")
    if wave is None:
        return parts + ["<p>No audio clips were collected for this incident.</p>"]
    parts.append(f"<img class='waveforms' alt='waveforms' src='{_png_data_uri(wave)}'>")
    parts.append("<h2>Picks close up</h2>")
    parts += [f"<img class='picks' alt='picks close up' src='{_png_data_uri(fig)}'>" for fig in pick_figures(data)]
    return parts


def render_html(data: ReportData, out: pathlib.Path) -> None:
    """Write the report as one self-contained HTML file (figures embedded as PNG)."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:2px 6px;font-size:90%}section.machine{border-left:4px solid #36c;"
             "padding-left:8px}section.human{border-left:4px solid #c63;padding-left:8px}</style></head><body>",
             f"<h1>{html.escape(data.title)}</h1><ul class='summary'>",
             *(f"<li>{html.escape(line)}</li>" for line in rc.summary_lines(data)), "</ul>"]
    for title, cls, header, rows, note in sections(data):
        if cls == FIGURES_BEFORE:
            parts += _html_figures(data)
        parts.append(f"<section class='{cls}'><h2>{html.escape(title)}</h2>")
        parts.append(f"<p class='note'>{html.escape(note)}</p>" if note else "")
        parts.append((_html_table(header, rows, cls) if rows else "") + "</section>")
    parts += ["<h2>Data hashes (SHA-256)</h2><ul class='hashes'>",
              *(f"<li><code>{html.escape(line)}</code></li>" for line in rc.hash_lines(data)), "</ul></body></html>"]
    out.write_text("".join(parts), encoding="utf-8")


# -- PDF ----------------------------------------------------------------------------------
def _text_pages(title: str, lines: list[str], wrap: bool = True) -> list[Figure]:
    """Lines as pages of monospaced text (wrapped to the page unless a table), continued as needed."""
    if wrap:
        lines = [part for line in lines for part in (textwrap.wrap(line, PDF_LINE_CHARS, subsequent_indent="    ") or [""])]
    per_page = LINES_PER_TEXT_PAGE if wrap else ROWS_PER_PDF_PAGE
    pages = []
    for start in range(0, max(len(lines), 1), per_page):
        fig = Figure(figsize=PAGE_SIZE_IN, dpi=FIG_DPI)
        fig.text(0.06, 0.95, title if start == 0 else f"{title} (continued)", fontsize=13, weight="bold", va="top")
        fig.text(0.06 if wrap else 0.04, 0.91, "\n".join(lines[start:start + per_page]),
                 fontsize=TEXT_FONT_PT if wrap else TABLE_FONT_PT, va="top", family="monospace")
        pages.append(fig)
    return pages


def _table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """A table as aligned monospaced lines (matplotlib's table artist is slow to lay out at this size);
    a last column too wide for the page (a reviewer's reason, a link) wraps, on lines of its own if
    the others leave it too little room."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    indent = sum(w + 2 for w in widths[:-1])
    below = PDF_TABLE_CHARS - indent < min(widths[-1], MIN_LAST_COLUMN_CHARS)
    if below:
        indent = len(CONTINUED)
    room = max(PDF_TABLE_CHARS - indent, MIN_LAST_COLUMN_CHARS)

    def lines(cells, rule=False):
        first = "  ".join(str(c).ljust(w) for c, w in zip(cells[:-1], widths))
        last = [str(cells[-1])[:room]] if rule else (textwrap.wrap(str(cells[-1]), room) or [""])
        if below:
            return [first.rstrip(), *(CONTINUED + more for more in last)]
        return [(first + "  " + last[0]).rstrip(), *(" " * indent + more for more in last[1:])]

    out = lines(header) + lines(["-" * w for w in widths], rule=True)
    for row in rows:
        out += lines(row)
    return out


def _section_lines(data: ReportData, wanted: tuple[str, ...]) -> list[str]:
    lines: list[str] = []
    for title, cls, header, rows, note in sections(data):
        if cls in wanted:
            lines += ["", f"{title}:", *textwrap.wrap(note, PDF_TABLE_CHARS)] + (_table_lines(header, rows) if rows else [])
    return lines


def render_pdf(data: ReportData, out: pathlib.Path) -> None:
    """Write the report as a PDF: summary; shots, cameras and casings; map, waveforms, picks; sensors and
    residuals; machine and people; pulses; revisions and hashes."""
    pages = _text_pages(data.title, rc.summary_lines(data))
    pages += _text_pages("Shots in discharge order, cameras to pull, casing search area",
                         _section_lines(data, ("shots", "cameras", "casings")), wrap=False)
    pages.append(map_figure(data))
    wave = waveform_figure(data)
    if wave is not None:
        pages += [wave, *pick_figures(data)]
    pages += _text_pages("Sensors and the fit's residuals", _section_lines(data, ("sensors", "residuals")), wrap=False)
    pages += _text_pages("What the machine computed, and what people changed",
                         _section_lines(data, ("machine", "human")), wrap=False)
    pages += _text_pages("Pulses used and rejected", _section_lines(data, ("pulses",)), wrap=False)
    pages += _text_pages("Revisions and data hashes (SHA-256)",
                         _section_lines(data, ("revisions",)) + ["", "Data hashes (SHA-256):"] + rc.hash_lines(data),
                         wrap=False)
    with PdfPages(out, metadata={"Title": data.title, "Creator": f"earwitness {earwitness.__version__}"}) as pdf:
        for page in pages:
            pdf.savefig(page)
