"""The forensic report, complete: from a real `earwitness fusion` run on a real Pittsburgh test.

The real server process (real mosquitto) takes the test's pulses signed by stand-in nodes that
report different timing (PPS in the audio, kernel PPS, the system clock) and say so in their
health reports; the registry states where each position came from; a camera registry and the
site's time zone are configured; the nodes answer the server's clip requests with the test's
real audio, and a nearby node that heard nothing sends its clip too.  After the run a reviewer's
reclassification and an officer's disposition are appended to the audit log (as the console
does, :class:`fusion.console.reviews.Reviews` on :meth:`fusion.server.audit.AuditLog.append`).
The report, HTML and PDF, must then hold each item with the values the run produced, and keep
the machine's revisions apart from the people's changes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import math
import re
import sqlite3
import zoneinfo

import nacl.signing
import numpy as np
import pypdf
import pytest
import soundfile

from earwitness import keys, wire
from earwitness.cli import main
from earwitness.clip import clip_message
from fusion.console.reviews import Reviews
from fusion.server.audit import AuditLog
from fusion.server.store import Store
from fusion_site import build_site, final_with_clips, fusion_run
from report_html import ReportPage
from simulator.broker import publish_all, wait_until

SITE = "pgh"
ZONE = "America/New_York"
WAIT_S = 120.0
pytestmark = pytest.mark.integration
# Each sensor's timing, by its index in the sorted ids: (label on the wire, t_unc_ns, state its health reports).
TIMINGS = [("pps-audio", 1_000_000, "locked"), ("pps-kernel", 1_100_000, "holdover"), ("system", 1_500_000, "system clock")]
UNC_TEXT = {1_000_000: "1 ms", 1_100_000: "1.1 ms", 1_500_000: "1.5 ms"}
TIMING_TEXT = {"pps-audio": "PPS (in the audio)", "pps-kernel": "PPS (kernel)", "system": "system clock"}
SURVEYS = ("RTK GNSS survey, 2018-11-30", "smartphone GPS, about 2.5 m (TN098)")
QUIET = "quiet-east"                 # a registered node near the shots that heard nothing
QUIET_OFFSET_M = (150.0, 40.0)
QUIET_SURVEY = "taped from city benchmark 17"
QUIET_RATE_HZ = 24000
QUIET_NOISE_FS = 0.003
HEALTH_BEFORE_NS = 2_000_000_000     # the nodes' health reports: 2 s before their first pulse
CAMERA_OFFSET_M = (60.0, 0.0)
RECLASSIFY_REASON = "Reviewer heard three clear reports & an echo <not fireworks>"
DISPOSITION_NOTE = "6 casings, 9 mm, found at the kerb"
RESIDUAL_TOLERANCE_MS = 0.02
MAX_RESIDUAL_MS = 25.0
REPEAT_MS = 8.0


def _registry_text(site, keys_hex: dict[str, str], quiet_xyz) -> str:
    lines = []
    for i, name in enumerate(sorted(site.positions)):
        x, y, z = site.positions[name]
        lines += ["[[node]]", f'id = "{name}"', f'public_key = "{keys_hex[name]}"', f"x = {x!r}", f"y = {y!r}", f"z = {z!r}",
                  f'survey = "{SURVEYS[i % 2]}"', ""]
    lines += ["[[node]]", f'id = "{QUIET}"', f'public_key = "{keys_hex[QUIET]}"', f"x = {quiet_xyz[0]!r}",
              f"y = {quiet_xyz[1]!r}", f"z = {quiet_xyz[2]!r}", f'survey = "{QUIET_SURVEY}"', ""]
    return "\n".join(lines)


def _timed_messages(site) -> tuple[list[tuple[str, bytes]], dict[str, tuple[str, int, str]]]:
    """The site's pulses signed again with each sensor's timing label and uncertainty."""
    timing = {n: TIMINGS[i % len(TIMINGS)] for i, n in enumerate(sorted(site.positions))}
    out = []
    for (node, _), p in zip(site.messages, site.pulses):
        label, unc_ns, _ = timing[node]
        again = wire.PulseMessage(node_id=wire.node_id(node), seq=p["seq"], t_ns=p["t_ns"], t_unc_ns=unc_ns, timing=label,
                                  features={"snr_db": p["snr_db"]})
        out.append((site.topic(SITE, node), wire.encode(again, site.keys[node])))
    return out, timing


def _quiet_clip(incident: dict, key: nacl.signing.SigningKey) -> dict:
    """The quiet node's answer: 3 s of its (quiet) audio around the incident, signed."""
    rng = np.random.default_rng(7)
    samples = (rng.normal(0.0, QUIET_NOISE_FS, 3 * QUIET_RATE_HZ) * 32767).astype(np.int16)
    buf = io.BytesIO()
    soundfile.write(buf, samples, QUIET_RATE_HZ, format="FLAC", subtype="PCM_16")
    flac = buf.getvalue()
    t0_ns = incident["t_ns"] - 500_000_000
    clip = {"t0_ns": t0_ns, "t1_ns": t0_ns + (len(samples) - 1) * 10**9 // QUIET_RATE_HZ, "rate_hz": QUIET_RATE_HZ,
            "frames": len(samples), "t_unc_ns": 10**6, "timing": "pps-audio", "sha256": hashlib.sha256(flac).hexdigest(),
            "flac": flac}
    return clip_message(clip, f"{incident['incident']}|{QUIET}", QUIET, key)


@pytest.fixture(scope="module")
def run(pittsburgh, tmp_path_factory):
    """A real server run to a final incident with its clips, then a review and a disposition."""
    work = tmp_path_factory.mktemp("report-complete")
    site = build_site(pittsburgh[0], work / "site")
    quiet_key = nacl.signing.SigningKey(bytes(range(32)))
    site.keys[QUIET] = quiet_key
    quiet_xyz = (site.survey_xyz[0] + QUIET_OFFSET_M[0], site.survey_xyz[1] + QUIET_OFFSET_M[1], site.survey_xyz[2])
    keys_hex = {n: keys.public_hex(k.verify_key) for n, k in site.keys.items()}
    site.registry_path.write_text(_registry_text(site, keys_hex, quiet_xyz))
    cameras = work / "cameras.csv"
    cameras.write_text("camera,x,y,range_m,url\n"
                       f"cam-kerb,{site.survey_xyz[0] + CAMERA_OFFSET_M[0]},{site.survey_xyz[1] + CAMERA_OFFSET_M[1]},"
                       "300,rtsp://cams.example/kerb\n")
    messages, timing = _timed_messages(site)
    first_ns = {}
    for p in site.pulses:
        first_ns.setdefault(p["sensor"], p["t_ns"])
    health = [(f"ew/v1/{SITE}/node/{n}/health",
               json.dumps({"t_ns": first_ns[n] - HEALTH_BEFORE_NS, "node": n, "timing": timing[n][0],
                           "timing_state": timing[n][2]}).encode()) for n in sorted(first_ns)]
    extra = f'timezone = "{ZONE}"\ncameras = "{cameras}"\n'
    with fusion_run(work, site, SITE, "fusion-report", extra, WAIT_S) as (url, log, db, config):
        publish_all(url, health + messages)
        with Store(db) as store:
            assert wait_until(lambda: final_with_clips(store, len(site.wavs)), WAIT_S), log.read_text()
            incident = final_with_clips(store, len(site.wavs))
            publish_all(url, [(f"ew/v1/{SITE}/node/{QUIET}/clip", json.dumps(_quiet_clip(incident, quiet_key)).encode())],
                        client_id="quiet-node")
            assert wait_until(lambda: any(c["node"] == QUIET for c in store.clips(incident["incident"])), WAIT_S)
    with Store(db) as store:
        incident = store.incident(incident["incident"])
        audit_log = AuditLog(store, keys.load_signing_key(work / "fusion.key"))
        reviews = Reviews(store, audit_log.append)   # as `earwitness fusion` connects the console
        reviews.review("ann", "reviewer", incident["incident"], incident["revision"], "reclassify", RECLASSIFY_REASON,
                       new_class="gunfire")
        reviews.disposition("bob", "dispatcher", incident["incident"], "casings found", DISPOSITION_NOTE)
    return {"work": work, "db": db, "config": config, "site": site, "incident": incident, "timing": timing,
            "quiet_xyz": quiet_xyz, "registry_sha": hashlib.sha256(site.registry_path.read_bytes()).hexdigest()}


def _local(t_ns: int, offset: bool = True) -> str:
    stamp = dt.datetime.fromtimestamp(t_ns // 10**9, tz=zoneinfo.ZoneInfo(ZONE))
    zone = stamp.strftime("%Z (UTC%z)" if offset else "%Z")
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + f".{t_ns % 10**9 // 10**6:03d} {zone}"


@pytest.fixture(scope="module")
def expected(run):
    """What the store and the audit log hold, read directly, for the report to be checked against."""
    with Store(run["db"]) as store:
        inc = run["incident"]
        entries = AuditLog(store).entries()
        return {"pulses": store.incident_pulses(inc["incident"]), "clips": store.clips(inc["incident"]),
                "revisions": store.revisions(inc["incident"]), "entries": entries,
                "machine": [e for e in entries if e["subject"] == inc["incident"]],
                "human": [e for e in entries if e["subject"] == f"incident/{inc['incident']}"]}


@pytest.fixture(scope="module")
def html_page(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "report.html"
    assert main(["report", run["incident"]["incident"], "--config", str(run["config"]), "--out", str(out)]) == 0
    page = ReportPage()
    page.feed(out.read_text())
    return page


def _shots(inc: dict) -> list[dict]:
    return sorted(inc["shots"], key=lambda s: s["t_ns"])


def test_times_radius_registry_and_signatures(run, expected, html_page):
    inc, text = run["incident"], html_page.joined()
    assert f"First discharge, local time: {_local(inc['t_ns'])}" in text and f"time zone {ZONE}" in text
    assert f"radius {inc['err_m']:.1f} m (95%)" in text
    shots = html_page.tables["shots"][1:]
    assert len(shots) == inc["rounds"] >= 1
    for row, shot in zip(shots, _shots(inc)):
        assert row[2] == _local(shot["t_ns"], offset=False)
        assert row[4] == f"{shot['err_m']:.1f} m (95%)" and row[5].endswith("(95%)")
        assert row[5].startswith(f"{shot['ellipse']['semi_major_m']:.1f} x {shot['ellipse']['semi_minor_m']:.1f} m")
    assert f"SHA-256 {run['registry_sha']}" in text
    n_pulses, n_clips = len(expected["pulses"]), len(expected["clips"])
    n_entries = len(expected["machine"]) + len(expected["human"])
    assert (f"pulse messages {n_pulses} verified, 0 refused; audio clips {n_clips} verified, 0 refused; "
            f"audit entries {n_entries} verified, 0 refused") in text
    assert "REFUSED" not in text


def test_each_pulse_carries_its_timing_source_and_uncertainty(run, expected, html_page):
    rows = html_page.tables["pulses"]
    assert rows[0][:5] == ["sensor", "arrival (UTC)", "timing source", "uncertainty", "node's timing state"]
    assert len(rows) - 1 == len(expected["pulses"])
    for row in rows[1:]:
        label, unc_ns, state = run["timing"][row[0]]
        assert row[2] == TIMING_TEXT[label] and row[3] == UNC_TEXT[unc_ns]
        assert row[4].startswith(f"{state} (")


def test_residuals_per_sensor_are_the_fits(run, expected, html_page):
    inc = run["incident"]
    c = expected["revisions"][-1]["meta"]["speed_of_sound_m_s"]
    used = {}
    for p in expected["pulses"]:
        if p["used"]:
            used.setdefault(p["sensor"], []).append(p["t_ns"])
    rows = html_page.tables["residuals"][1:]
    want = [(k, n) for k, shot in enumerate(_shots(inc), 1) for n in shot["sensors"]]
    assert [(int(r[0]), r[1]) for r in rows] == want
    for row in rows:
        shot = _shots(inc)[int(row[0]) - 1]
        x, y, _ = run["site"].positions[row[1]]
        predicted_ns = shot["t_ns"] + math.hypot(x - shot["x"], y - shot["y"]) / c * 1e9
        arrival = min(used[row[1]], key=lambda t: abs(t - predicted_ns))
        assert float(row[5]) == pytest.approx((arrival - predicted_ns) / 1e6, abs=RESIDUAL_TOLERANCE_MS)
    # Pittsburgh's residuals are the sensors' own (survey, diffraction): each repeats from shot to shot
    # within a few ms, all within the locator's association tolerance.
    assert max(abs(float(r[5])) for r in rows) < MAX_RESIDUAL_MS
    by_sensor = {}
    for r in rows:
        by_sensor.setdefault(r[1], []).append(float(r[5]))
    assert all(max(v) - min(v) < REPEAT_MS for v in by_sensor.values() if len(v) > 1)


def test_sensors_positions_and_where_they_came_from(run, expected, html_page):
    rows = {r[0]: r for r in html_page.tables["sensors"][1:]}
    heard = {p["sensor"] for p in expected["pulses"]}
    assert set(rows) == heard | {QUIET}
    for i, name in enumerate(sorted(run["site"].positions)):
        if name in rows:
            x, y, z = run["site"].positions[name]
            assert rows[name][1] == f"x {x:.1f}, y {y:.1f}, z {z:.1f} m" and rows[name][2] == SURVEYS[i % 2]
            assert rows[name][3] != "did not trigger"
    qx, qy, qz = run["quiet_xyz"]
    assert rows[QUIET][1:4] == [f"x {qx:.1f}, y {qy:.1f}, z {qz:.1f} m", QUIET_SURVEY, "did not trigger"]


def test_cameras_and_casings(run, html_page):
    inc = run["incident"]
    (cam,) = html_page.tables["cameras"][1:]
    assert cam[0] == "cam-kerb" and cam[5] == "rtsp://cams.example/kerb"
    (seen,) = inc["cameras"]
    assert cam[1] == f"{seen['distance_m']:.0f}" and cam[3] == _when(seen["pull_from_ns"]) and cam[4] == _when(seen["pull_to_ns"])
    rows = html_page.tables["casings"][1:]
    assert [int(r[0]) for r in rows] == list(range(1, inc["rounds"] + 1))
    for row, shot in zip(rows, _shots(inc)):
        assert row[2] == f"{shot['casings']['radius_m']:.0f}" and row[4] == f"{shot['casings']['area_m2']:.0f}"


def test_machine_and_people_are_apart_with_who_when_why(run, expected, html_page):
    machine = html_page.tables["machine"][1:]
    assert [int(r[0]) for r in machine] == [e["seq"] for e in expected["machine"]]
    assert [int(r[3]) for r in machine] == [r["revision"] for r in expected["revisions"]]
    assert {r[2] for r in machine} == {"fusion"}
    assert [r[4] for r in machine] == [r["status"] for r in expected["revisions"]]
    human = html_page.tables["human"][1:]
    review, disposition = expected["human"]
    assert human == [
        [str(review["seq"]), _when(review["t_ns"]), "ann", "reviewer", "reclassify", "gunfire",
         str(run["incident"]["revision"]), RECLASSIFY_REASON],
        [str(disposition["seq"]), _when(disposition["t_ns"]), "bob", "dispatcher", "disposition", "casings found", "-",
         DISPOSITION_NOTE]]
    assert {"map", "waveforms", "picks"} <= {img["class"] for img in html_page.images}


def _when(t_ns: int) -> str:
    """UTC to the ms, the local time beside it (its date too when not the UTC date)."""
    utc = dt.datetime.fromtimestamp(t_ns // 10**9, tz=dt.timezone.utc)
    local = dt.datetime.fromtimestamp(t_ns // 10**9, tz=zoneinfo.ZoneInfo(ZONE))
    day = "" if local.date() == utc.date() else local.strftime("%Y-%m-%d ")
    return f"{utc:%Y-%m-%d %H:%M:%S}.{t_ns % 10**9 // 10**6:03d} UTC ({day}{local:%H:%M:%S %Z})"


@pytest.mark.slow
def test_pdf_holds_the_same(run, expected, tmp_path_factory):
    out = tmp_path_factory.mktemp("pdf") / "report.pdf"
    inc = run["incident"]
    assert main(["report", inc["incident"], "--config", str(run["config"]), "--out", str(out)]) == 0
    texts = [page.extract_text() for page in pypdf.PdfReader(out).pages]
    text = "\n".join(texts)
    flat = " ".join(text.split())
    assert f"First discharge, local time: {_local(inc['t_ns'])}" in flat and run["registry_sha"] in flat
    assert f"pulse messages {len(expected['pulses'])} verified, 0 refused" in flat
    assert f"{QUIET} (did not trigger)" in text                            # its waveform panel
    assert "amplitude (FS)" in text and "time (ms after the first discharge)" in text and "ms from the pick" in text
    # A close-up of every pick a clip holds audio of, titled with its sensor and time.
    covered = [p for p in expected["pulses"] for c in expected["clips"]
               if c["node"] == p["sensor"] and c["meta"]["t0_ns"] <= p["t_ns"] <= c["meta"]["t1_ns"]]
    titles = [m for t in texts if "Picks close up" in t for m in re.findall(r"SCP-\S+ -?\d+\.\d ms", t)]
    assert len(titles) == len(covered) > 0
    people = next(t for t in texts if "What people changed" in t)
    machine_part, human_part = people.split("What people changed", 1)
    assert "ann" in human_part and "bob" in human_part and "ann" not in machine_part.split("What the machine computed")[-1]
    assert machine_part.count("fusion ") >= len(expected["revisions"])
    for name in sorted(run["site"].positions)[:2]:
        assert name in text


def test_a_pulse_changed_in_the_database_is_refused(run, expected, tmp_path, capsys):
    db = tmp_path / "fusion.db"
    with sqlite3.connect(run["db"]) as src, sqlite3.connect(db) as dst:
        src.backup(dst)
    victim = expected["pulses"][0]
    with sqlite3.connect(db) as conn:
        raw = bytearray(conn.execute("SELECT raw FROM pulses WHERE id = ?", (victim["id"],)).fetchone()[0])
        raw[20] ^= 1     # inside t_ns: the signature no longer covers it
        conn.execute("UPDATE pulses SET raw = ? WHERE id = ?", (bytes(raw), victim["id"]))
    out = tmp_path / "report.html"
    assert main(["report", run["incident"]["incident"], "--db", str(db), "--tz", ZONE, "--out", str(out)]) == 0
    page = ReportPage()
    page.feed(out.read_text())
    text = page.joined()
    assert f"pulse messages {len(expected['pulses']) - 1} verified, 1 refused" in text
    assert f"REFUSED: pulse of {victim['node']} seq {victim['seq']}: signature" in text


def test_an_unknown_time_zone_is_one_line(run, tmp_path, capsys):
    assert main(["report", run["incident"]["incident"], "--db", str(run["db"]), "--tz", "Mars/Olympus",
                 "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["earwitness report: error: timezone 'Mars/Olympus' is not a known IANA time zone name (e.g. America/New_York)"]
