"""The console's incident page and its casework views in a real headless Chromium (Debian's, Playwright).

A real mosquitto, the real `earwitness fusion` process with its console, a camera registry and an
areas file; stand-in nodes publishing every pulse of a real Pittsburgh test and answering the
server's clip requests with the test's real audio (tests/fusion_site.py). A reviewer opens the
incident: waveforms with the picks, a clip played, every revision, the cameras to pull; a 911
call imported with `earwitness calls import` then shows as matched, on the calls page too, and the
unreported page gives the figures `earwitness unreported` writes.
"""
from __future__ import annotations

import csv
import io
import json
import math
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from fusion.console.waveforms import MAX_INSETS
from fusion.server.calls import CallLog
from fusion.server.registry import write_registry
from fusion.server.store import Store
from fusion_site import EvidenceNodes, build_site, fusion_process, write_fusion_config
from simulator.broker import Collector, Mosquitto, free_port, publish_all, wait_until
from test_console import USERS, _adduser, _login, browser  # noqa: F401 - browser: its fixture, reused

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.slow]

SITE = "pgh"
INCIDENT_TOPIC = f"ew/v1/{SITE}/incident"
WAIT_S = 90.0
WAIT_MS = int(WAIT_S * 1000)
SCREENSHOTS = pathlib.Path("/tmp/earwitness-console-incident")
# Cameras about the surveyed firing position (metres east, north): one that sees it, one looking
# away from it (heading east, 60 degrees wide, the shots to its west), one out of its range.
CAMERAS = [("cam-near", 40.0, 0.0, "", "", ""), ("cam-away", 60.0, 10.0, "90", "60", ""),
           ("cam-far", 1000.0, 0.0, "", "", "200")]
SEEING = ["cam-near"]
PULL_BEFORE_S, PULL_AFTER_S = 60.0, 300.0   # fusion.forensics.cameras' defaults
# The case: a call 2 minutes after the shots and 300 m away matches; one 3 km away does not.
CALL_AFTER_S, CALL_DIST_M, FAR_CALL_DIST_M = 120.0, 300.0, 3000.0
AREA_HALF_M = 500.0
# This test's shots are classed unknown (possible gunfire): counted as the command's --classes says.
CLASSES = "gunfire,unknown"


def _write_cameras(path: pathlib.Path, x0: float, y0: float) -> None:
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["camera", "x", "y", "heading_deg", "fov_deg", "range_m"])
        for name, dx, dy, heading, fov, range_m in CAMERAS:
            out.writerow([name, x0 + dx, y0 + dy, heading, fov, range_m])


def _square(name: str, x: float, y: float, half: float) -> dict:
    ring = [[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half], [x - half, y - half]]
    return {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


class EvidenceSite:
    def __init__(self, site, base_url, db, tmp, alerts):
        self.site, self.base_url, self.db, self.tmp, self.alerts = site, base_url, db, tmp, alerts

    def final_incident(self) -> dict:
        """The incident's final alert, once its clips are stored."""
        def final():
            got = [a for a in self.alerts.json(INCIDENT_TOPIC) if a["status"] == "final"]
            return got[-1] if got else None

        assert wait_until(final, WAIT_S)
        incident = final()
        with Store(str(self.db)) as store:
            assert wait_until(lambda: len(store.clips(incident["incident"])) == len(self.site.wavs), WAIT_S)
        return incident


@pytest.fixture(scope="module")
def evidence_site(pittsburgh, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console-incident")
    site = build_site(pittsburgh[0], tmp / "site")
    write_registry(site.registry_path, {n: (bytes(k.verify_key).hex(), dict(zip("xyz", site.positions[n])))
                                        for n, k in site.keys.items()})
    x0, y0, _ = site.survey_xyz
    _write_cameras(tmp / "cameras.csv", x0, y0)
    (tmp / "areas.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        _square("range", x0, y0, AREA_HALF_M), _square("elsewhere", x0 + 4 * AREA_HALF_M, y0, AREA_HALF_M)]}))
    db = tmp / "fusion.db"
    _adduser(db, "ann", *USERS["ann"])
    broker = Mosquitto(tmp / "mosquitto").start()
    port = free_port()
    config = write_fusion_config(tmp / "fusion.toml", SITE, broker.url, site.registry_path, "fusion-console-incident",
                                 site.temperature_c, extra='cameras = "cameras.csv"\n[console]\n'
                                 f'listen = "127.0.0.1:{port}"\nareas = "areas.geojson"\n')
    log = tmp / "fusion.log"
    nodes = EvidenceNodes(broker.url, site, SITE)
    alerts = Collector(broker.url, INCIDENT_TOPIC).start()
    proc = fusion_process(config, log)
    try:
        assert wait_until(lambda: "console on" in log.read_text(), WAIT_S), log.read_text()
        publish_all(broker.url, [(site.topic(SITE, node), raw) for node, raw in site.messages])
        yield EvidenceSite(site, f"http://127.0.0.1:{port}", db, tmp, alerts)
    finally:
        alerts.close()
        nodes.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=WAIT_S)
        broker.stop()
    assert code == 0, log.read_text()


def _shot(name: str) -> str:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return str(SCREENSHOTS / name)


def test_reviewer_sees_waveforms_plays_a_clip_and_sees_revisions_and_cameras(evidence_site, browser):  # noqa: F811 - test_console's fixture
    incident = evidence_site.final_incident()
    inc_id = incident["incident"]
    with Store(str(evidence_site.db)) as store:
        clips, revisions = store.clips(inc_id), store.revisions(inc_id)
        pulses = store.incident_pulses(inc_id)
    assert len(clips) == len(evidence_site.site.wavs)
    page = _login(browser, evidence_site.base_url, "ann")
    page.goto(f"{evidence_site.base_url}/incident/{inc_id}")
    _check_shots(page, incident)
    _check_waveforms(page, clips, pulses)
    src = _check_playback(page, evidence_site.base_url, inc_id, clips)
    _check_revisions(page, revisions)
    _check_cameras(page, incident, evidence_site.site.survey_xyz)
    assert page.locator("#call-status").inner_text() == "No 911 call has matched yet."
    page.screenshot(path=_shot("1-incident.png"), full_page=True)
    # A clip's route needs a session, like every page.
    anonymous = browser.new_context().request.get(evidence_site.base_url + src, max_redirects=0)
    assert anonymous.status == 303 and anonymous.headers["location"].endswith("/login")
    page.context.close()


def _check_shots(page, incident: dict) -> None:
    """Shots in discharge order with their shooter, 95% radius and ellipse, and casing search area."""
    rows = page.locator("#shots tr.shot-row")
    assert rows.count() == len(incident["shots"])
    ordered = sorted(incident["shots"], key=lambda s: s["t_ns"])
    for i, shot in enumerate(ordered):
        cells = rows.nth(i).locator("td")
        assert cells.nth(2).inner_text() == f"{(shot['t_ns'] - ordered[0]['t_ns']) / 1e6:.0f}"
        assert cells.nth(3).inner_text() == "ABCDEFGH"[shot["shooter"]]
        e = shot["ellipse"]
        assert cells.nth(5).inner_text().split("\n") == [
            f"{shot['err_m']:.1f} m (95%)",
            f"ellipse {e['semi_major_m']:.1f} × {e['semi_minor_m']:.1f} m, major axis {e['orientation_deg']:.0f}°"]
        assert cells.nth(6).inner_text().startswith(f"within {shot['casings']['radius_m']:.1f} m")


def _check_waveforms(page, clips: list[dict], pulses: list[dict]) -> None:
    """One panel per clip, every pick of its node marked (used ones solid), a ±20 ms zoom per pick, axes labelled."""
    sections = page.locator("section.clip")
    assert sections.count() == len(clips)
    for i, clip in enumerate(clips):
        section = sections.nth(i)
        assert section.get_attribute("data-node") == clip["node"]
        picks = [p for p in pulses if p["node"] == clip["node"]]
        t1_ns = clip["t0_ns"] + (clip["meta"]["frames"] - 1) * 10**9 // clip["meta"]["rate_hz"]
        inside = [p for p in picks if clip["t0_ns"] <= p["t_ns"] <= t1_ns]
        # The server asks only the nodes whose pulses the location used, for the span of those.
        assert [p for p in inside if p["used"]] == [p for p in picks if p["used"]] != [], clip["node"]
        full = section.locator("svg.wave").first
        assert full.locator("line.pick").count() == len(inside)
        assert full.locator("line.pick-used").count() == sum(p["used"] for p in picks)
        assert section.locator(".insets svg.wave").count() == min(len(inside), MAX_INSETS)
        outside = section.locator(".picks-outside")
        assert (outside.inner_text() if outside.count() else "") == (
            f"{len(picks) - len(inside)} pick(s) of this sensor outside the clip" if len(picks) > len(inside) else "")
        text = full.text_content()
        assert "ms after the first discharge" in text and "amplitude (FS)" in text


def _check_playback(page, base_url: str, inc_id: str, clips: list[dict]) -> str:
    """The WAV routes give the stored clips' samples; the page's audio element plays; returns the first's route."""
    for i, clip in enumerate(clips):
        wav = page.request.get(f"{base_url}/incident/{inc_id}/clip/{i}.wav")
        assert wav.status == 200 and wav.headers["content-type"] == "audio/wav"
        served, rate_hz = soundfile.read(io.BytesIO(wav.body()), dtype="int16")
        stored, stored_rate = soundfile.read(io.BytesIO(clip["data"]), dtype="int16")
        assert rate_hz == stored_rate and np.array_equal(served, stored), clip["node"]
    assert page.request.get(f"{base_url}/incident/{inc_id}/clip/{len(clips)}.wav").status == 404
    audio = page.locator("section.clip audio").first
    audio.evaluate("a => a.play()")
    page.wait_for_function("a => a.currentTime > 0 || a.ended", arg=audio.element_handle(), timeout=WAIT_MS)
    return audio.get_attribute("src")


def _check_revisions(page, revisions: list[dict]) -> None:
    """Every stored revision, with what changed; the last is the final one."""
    history = page.locator("#revisions tr.revision-row")
    assert history.count() == len(revisions) >= 2
    assert history.nth(0).locator("td.changes").inner_text() == "first revision"
    last = history.nth(len(revisions) - 1).inner_text()
    assert last.split("\t")[:2] == [str(revisions[-1]["revision"]), "final"] and "→ final" in last


def _check_cameras(page, incident: dict, survey_xyz) -> None:
    """Only the camera that sees the shots, with its distance to the nearest shot and the window to pull."""
    cams = page.locator("#cameras tr.camera-row")
    assert [cams.nth(i).locator("td").first.inner_text() for i in range(cams.count())] == SEEING
    (_, dx, dy, *_), = [c for c in CAMERAS if c[0] in SEEING]
    x, y = survey_xyz[0] + dx, survey_xyz[1] + dy
    dist_m = min(math.hypot(s["x"] - x, s["y"] - y) for s in incident["shots"])
    cells = cams.nth(0).locator("td")
    assert cells.nth(1).inner_text() == f"{dist_m:.0f} m"
    first_ns = min(s["t_ns"] for s in incident["shots"])
    last_ns = max(s["t_ns"] for s in incident["shots"])
    assert cells.nth(3).inner_text().startswith(_utc_s(first_ns - int(PULL_BEFORE_S * 1e9)))
    assert cells.nth(4).inner_text().startswith(_utc_s(last_ns + int(PULL_AFTER_S * 1e9)))


def _utc_s(t_ns: int) -> str:
    """UTC to the second, as the console's ``utc`` filter starts."""
    import datetime as dt

    return dt.datetime.fromtimestamp(t_ns // 10**9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def test_imported_call_shows_as_matched_and_unreported_page_agrees_with_the_command(evidence_site, browser):  # noqa: F811 - test_console's fixture
    incident = evidence_site.final_incident()
    inc_id = incident["incident"]
    first_ns = min(s["t_ns"] for s in incident["shots"])
    x0, y0, _ = evidence_site.site.survey_xyz
    calls = evidence_site.tmp / "calls.csv"
    calls.write_text("call_id,t_utc,x,y,type\n"
                     f"C-near,{_utc_s(first_ns + int(CALL_AFTER_S * 1e9))}Z,{x0 + CALL_DIST_M},{y0},shots fired\n"
                     f"C-far,{_utc_s(first_ns + int(CALL_AFTER_S * 1e9))}Z,{x0 + FAR_CALL_DIST_M},{y0},shots fired\n")
    done = subprocess.run([sys.executable, "-m", "earwitness", "calls", "import", str(calls), "--db", str(evidence_site.db),
                           "--signing-key", str(evidence_site.tmp / "fusion.key")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    with Store(str(evidence_site.db)) as store:
        assert [m["call_id"] for m in CallLog(store).matches(inc_id)] == ["C-near"]

    page = _login(browser, evidence_site.base_url, "ann")
    page.goto(f"{evidence_site.base_url}/incident/{inc_id}")
    assert page.locator("#call-status").inner_text() == "A call has matched."
    match = page.locator("#call-matches tr.call-match")
    assert match.count() == 1
    assert match.first.inner_text().split("\t")[:4] == [
        "C-near", f"{CALL_AFTER_S:.0f} s", match.first.locator("td").nth(2).inner_text(),
        "120 s before to 900 s after, within 500 m"]
    assert abs(float(match.first.locator("td").nth(2).inner_text().split()[0]) - CALL_DIST_M) < 50

    page.goto(f"{evidence_site.base_url}/calls")
    rows = {r.get_attribute("data-call"): r.locator("td").nth(4).inner_text()
            for r in page.locator("#calls tr.call-row").all()}
    assert rows["C-far"] == "none" and rows["C-near"].startswith(inc_id)
    page.screenshot(path=_shot("2-calls.png"), full_page=True)

    out = evidence_site.tmp / "unreported"
    done = subprocess.run([sys.executable, "-m", "earwitness", "unreported", "--db", str(evidence_site.db), "--areas",
                           str(evidence_site.tmp / "areas.geojson"), "--classes", CLASSES, "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open(out / "unreported.csv", newline="") as fh:
        expected = list(csv.DictReader(fh))
    page.goto(f"{evidence_site.base_url}/unreported?classes={CLASSES}")
    shown = {r.get_attribute("data-area"): r.inner_text().split("\t") for r in page.locator("#unreported tr.area-row").all()}
    assert sorted(shown) == sorted(r["area"] for r in expected) == ["elsewhere", "range"]
    for row in expected:
        cells = shown[row["area"]]
        assert cells[1:4] == [row["incidents"], row["called"], row["unreported"]]
        if row["unreported_share"]:
            assert cells[5] == f"{float(row['ci_low']) * 100:.0f}-{float(row['ci_high']) * 100:.0f}%"
    assert shown["range"][1:4] == ["1", "1", "0"] and shown["elsewhere"][1] == "0"
    assert page.locator("svg.choropleth path.area").count() == 2
    assert page.locator("svg.choropleth circle.dot-called").count() == 1
    page.screenshot(path=_shot("3-unreported.png"), full_page=True)
    page.context.close()
