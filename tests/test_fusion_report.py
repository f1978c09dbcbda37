"""earwitness report: a forensic report of a real Pittsburgh test, located by fusion.locator.locate, opened and read back."""
from __future__ import annotations

import math

import pypdf
import pytest

from earwitness.cli import main
from fusion.server.store import Store
from fusion_replay import store_and_locate
from fusion_site import build_site
from report_html import ReportPage

SURVEY_TOLERANCE_M = 25.0
MIN_EVIDENCE_SHARE = 0.95


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
    page = ReportPage()
    page.feed(out.read_text())
    text = " ".join(page.text)
    assert final.incident["incident"] in text and "(final)" in text
    shots = page.tables["shots"][1:]
    assert len(shots) == final.incident["rounds"] == site.rounds
    for row in shots:
        x, y = (float(v) for v in row[3].split(","))
        assert math.hypot(x - site.survey_xyz[0], y - site.survey_xyz[1]) <= SURVEY_TOLERANCE_M
    assert [r[1] for r in shots] == sorted(r[1] for r in shots)      # discharge order
    pulses = page.tables["pulses"][1:]
    # Every pulse of the incident's evidence, each once: its window's and its shots' arrivals and
    # echoes farther out (a stray noise pulse seconds away from every shot is not evidence of it).
    assert len(pulses) == len(final.used) + len(final.rejected) >= MIN_EVIDENCE_SHARE * len(site.pulses)
    used = [r for r in pulses if r[6] == "yes"]
    assert len(used) >= 4 * site.rounds and any(r[6] == "no" and ("echo" in r[8] or "noise" in r[8]) for r in pulses)
    assert f"temperature {site.temperature_c:.1f} C" in text
    assert "earwitness 0.1.0" in text
    for clip in clips:
        assert clip["sha256"] in text
    assert {img["class"] for img in page.images} == {"map", "waveforms", "picks"}
    assert all(img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 10_000 for img in page.images)


@pytest.mark.slow
def test_pdf_report_of_a_pittsburgh_test(reported):
    site, db, final, clips, tmp = reported
    out = tmp / "report.pdf"
    assert main(["report", final.incident["incident"], "--db", str(db), "--out", str(out)]) == 0
    reader = pypdf.PdfReader(out)
    assert len(reader.pages) >= 4
    texts = [page.extract_text() for page in reader.pages]
    assert final.incident["incident"] in texts[0] and "Shots in discharge order" in texts[1]
    assert all(c["sha256"] in texts[-1] for c in clips)
    # In order: the map, the waveforms, the picks close up, ..., the pulses.
    order = [next(i for i, text in enumerate(texts) if title in text) for title in (
        "Shots (numbered in discharge order)", "Waveforms", "Picks close up", "Pulses used and rejected")]
    assert order == sorted(order)


def test_report_errors_are_one_line(reported, capsys):
    _, db, final, _, tmp = reported
    assert main(["report", "no-such", "--db", str(db), "--out", str(tmp / "x.pdf")]) == 2
    assert main(["report", final.incident["incident"], "--db", str(db), "--out", str(tmp / "x.txt")]) == 2
    assert main(["report", "x", "--db", str(tmp / "absent.db"), "--out", str(tmp / "x.pdf")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("earwitness report: error: ") for line in err)
