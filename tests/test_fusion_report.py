"""earwitness report: a forensic report of a real Pittsburgh test, located by fusion.locator.locate, opened and read back."""
from __future__ import annotations

import html.parser
import math

import pypdf
import pytest

from earwitness.cli import main
from fusion.server.store import Store
from fusion_replay import store_and_locate
from fusion_site import build_site

SURVEY_TOLERANCE_M = 25.0
MIN_EVIDENCE_SHARE = 0.95


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self.text: list[str] = []
        self._table = self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("class", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag == "img":
            self.images.append(attrs)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._table is not None and data.strip():
            self._row.append(data.strip())


@pytest.fixture(scope="module")
def reported(pittsburgh, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    site = build_site(pittsburgh[0], tmp / "site")
    db = tmp / "fusion.db"
    with Store(db) as store:
        final, = store_and_locate(site, store)
        for node, wav, t0_ns in site.wavs:
            store.add_clip(final.incident["incident"], node, t0_ns, wav.read_bytes(), {"file": wav.name})
        clips = store.clips(final.incident["incident"])
    return site, db, final, clips, tmp


def test_html_report_of_a_pittsburgh_test(reported):
    site, db, final, clips, tmp = reported
    out = tmp / "report.html"
    assert main(["report", final.incident["incident"], "--db", str(db), "--out", str(out)]) == 0
    page = _Collect()
    page.feed(out.read_text())
    text = " ".join(page.text)
    assert final.incident["incident"] in text and "(final)" in text
    shots = page.tables["shots"][1:]
    assert len(shots) == final.incident["rounds"] == site.rounds
    for row in shots:
        x, y = (float(v) for v in row[2].split(","))
        assert math.hypot(x - site.survey_xyz[0], y - site.survey_xyz[1]) <= SURVEY_TOLERANCE_M
    assert [r[1] for r in shots] == sorted(r[1] for r in shots)      # discharge order
    pulses = page.tables["pulses"][1:]
    # Every pulse of the incident's evidence, each once: its window's and its shots' arrivals and
    # echoes farther out (a stray noise pulse seconds away from every shot is not evidence of it).
    assert len(pulses) == len(final.used) + len(final.rejected) >= MIN_EVIDENCE_SHARE * len(site.pulses)
    used = [r for r in pulses if r[3] == "yes"]
    assert len(used) >= 4 * site.rounds and any(r[3] == "no" and ("echo" in r[4] or "noise" in r[4]) for r in pulses)
    assert f"temperature {site.temperature_c:.1f} C" in text
    assert "earwitness 0.1.0" in text
    for clip in clips:
        assert clip["sha256"] in text
    assert {img["class"] for img in page.images} == {"map", "waveforms"}
    assert all(img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 10_000 for img in page.images)


@pytest.mark.slow
def test_pdf_report_of_a_pittsburgh_test(reported):
    site, db, final, clips, tmp = reported
    out = tmp / "report.pdf"
    assert main(["report", final.incident["incident"], "--db", str(db), "--out", str(out)]) == 0
    reader = pypdf.PdfReader(out)
    assert len(reader.pages) >= 4
    first = reader.pages[0].extract_text()
    assert final.incident["incident"] in first and "Shots in discharge order" in first
    assert all(c["sha256"] in first for c in clips)
    assert "Shots (numbered in discharge order)" in reader.pages[1].extract_text()
    assert "Waveforms" in reader.pages[2].extract_text()
    assert "Pulses used and rejected" in reader.pages[3].extract_text()


def test_report_errors_are_one_line(reported, capsys):
    _, db, final, _, tmp = reported
    assert main(["report", "no-such", "--db", str(db), "--out", str(tmp / "x.pdf")]) == 2
    assert main(["report", final.incident["incident"], "--db", str(db), "--out", str(tmp / "x.txt")]) == 2
    assert main(["report", "x", "--db", str(tmp / "absent.db"), "--out", str(tmp / "x.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("earwitness report: error: ") for line in err)
