"""The console's views without a browser: waveform geometry of a real FLAC clip, the revision history's
changes, the calls and unreported pages over a real SQLite store (the browser tests are in
tests/test_console_incident.py)."""
from __future__ import annotations

import io

import matplotlib
import matplotlib.colors
import numpy as np
import pytest
import soundfile
from shapely.geometry import box

from fusion.console.history import revision_changes
from fusion.console.unreported_view import calls_page, choropleth, unreported_page
from fusion.console.waveforms import INSET_HALF_MS, MAX_INSETS, clip_wav, first_discharge_ns, waveform_panels
from fusion.forensics.calls import MatchRule
from fusion.forensics.frame import Plane
from fusion.forensics.geojson import Area
from fusion.server.calls import CallLog
from fusion.server.store import Store

RATE_HZ = 12_000
T0_NS = 1_700_000_000 * 10**9
CLIP_S = 2.0
# Arrivals at the node, seconds after the clip's first sample; the shot was 100 ms before the clip.
ARRIVALS_S = [0.5, 0.8, 1.2]
SHOT_BEFORE_CLIP_MS = 100.0
SPIKE = 20_000


def _flac_clip(node: str = "n1") -> tuple[dict, np.ndarray]:
    samples = np.zeros(int(CLIP_S * RATE_HZ), dtype=np.int16)
    for t in ARRIVALS_S:
        samples[int(t * RATE_HZ)] = SPIKE
    buf = io.BytesIO()
    soundfile.write(buf, samples, RATE_HZ, format="FLAC", subtype="PCM_16")
    return {"node": node, "t0_ns": T0_NS, "data": buf.getvalue(), "sha256": "ab" * 32}, samples


def test_waveform_marks_each_pick_at_its_time_and_zooms_on_it():
    clip, _ = _flac_clip()
    first_ns = T0_NS - int(SHOT_BEFORE_CLIP_MS * 1e6)
    pulses = [{"node": "n1", "t_ns": T0_NS + int(t * 1e9), "used": i != 1} for i, t in enumerate(ARRIVALS_S)]
    pulses.append({"node": "n1", "t_ns": T0_NS + int((CLIP_S + 1) * 1e9), "used": False})   # after the clip
    pulses.append({"node": "other", "t_ns": T0_NS + int(0.6e9), "used": True})
    panel, = waveform_panels([clip], pulses, first_ns)
    assert panel.start_ms == pytest.approx(SHOT_BEFORE_CLIP_MS)
    assert panel.duration_ms == pytest.approx(CLIP_S * 1000)
    assert panel.picks_outside == 1
    axis = panel.full.axis
    want_ms = [SHOT_BEFORE_CLIP_MS + t * 1000 for t in ARRIVALS_S]
    assert [p["x"] for p in panel.full.picks] == pytest.approx([axis.x(t) for t in want_ms])
    assert [p["used"] for p in panel.full.picks] == [True, False, True]
    assert axis.amp_fs == pytest.approx(1.0)   # 20000 of 32768: the axis ends at 1 FS
    assert len(panel.insets) == min(len(ARRIVALS_S), MAX_INSETS)
    for inset, at_ms in zip(panel.insets, want_ms):
        assert (inset.axis.lo_ms, inset.axis.hi_ms) == pytest.approx((at_ms - INSET_HALF_MS, at_ms + INSET_HALF_MS))
        # The spike is the trace's highest point, drawn at the pick.
        points = [tuple(map(float, xy.split(","))) for xy in inset.points.split()]
        peak_x = min(points, key=lambda xy: xy[1])[0]
        assert peak_x == pytest.approx(inset.picks[0]["x"], abs=inset.axis.width / (2 * INSET_HALF_MS * RATE_HZ / 1000) + 0.1)


def test_clip_wav_has_the_flac_samples():
    clip, samples = _flac_clip()
    served, rate_hz = soundfile.read(io.BytesIO(clip_wav(clip["data"])), dtype="int16")
    info = soundfile.info(io.BytesIO(clip_wav(clip["data"])))
    assert (info.format, info.subtype, rate_hz) == ("WAV", "PCM_16", RATE_HZ)
    assert np.array_equal(served, samples)


def test_first_discharge_is_the_earliest_shot():
    assert first_discharge_ns({"t_ns": 9, "shots": [{"t_ns": 7}, {"t_ns": 5}]}) == 5
    assert first_discharge_ns({"t_ns": 9}) == 9


def test_revision_changes_name_rounds_position_class_and_status():
    base = {"x": 0.0, "y": 0.0, "rounds": 3, "class": "unknown", "status": "preliminary", "err_m": 7.0,
            "sensors": ["a", "b"], "shooters": 1}
    revs = [dict(base, revision=1), dict(base, revision=2, rounds=4, x=3.0, y=4.0),
            dict(base, revision=3, rounds=4, x=3.0, y=4.0, status="final", **{"class": "gunfire"}),
            dict(base, revision=4, rounds=4, x=3.0, y=4.0, status="final", **{"class": "gunfire"})]
    assert [r["changes"] for r in revision_changes(revs)] == [
        ["first revision"], ["rounds 3 → 4", "position moved 5.0 m"],
        ["status preliminary → final", "class unknown → gunfire"],
        ["no change of rounds, position, class or status"]]


def _store_with_calls(tmp_path) -> Store:
    store = Store(tmp_path / "fusion.db")
    for name, x, cls in (("inc-a", 0.0, "gunfire"), ("inc-b", 50.0, "gunfire"), ("inc-c", 5000.0, "gunfire"),
                         ("inc-d", 60.0, "fireworks")):
        store.save_incident({"incident": name, "t_ns": T0_NS, "x": x, "y": 0.0, "class": cls, "rounds": 2}, "final")
    log = CallLog(store)
    log.add_calls([{"call_id": "C1", "t_ns": T0_NS + 120 * 10**9, "x": 0.0, "y": 300.0},
                   {"call_id": "C2", "t_ns": T0_NS + 60 * 10**9, "x": 9000.0, "y": 0.0}])
    log.match_stored_incidents(MatchRule())
    return store


def test_calls_page_lists_every_call_with_its_matches_and_rule(tmp_path):
    with _store_with_calls(tmp_path) as store:
        page = calls_page(store)
    by_id = {c["call_id"]: c for c in page["calls"]}
    assert sorted(m["incident"] for m in by_id["C1"]["matches"]) == ["inc-a", "inc-b", "inc-d"]
    assert by_id["C2"]["matches"] == [] and page["matched"] == 1
    assert by_id["C1"]["matches"][0]["rule"] == MatchRule().as_dict()


def test_unreported_page_counts_per_area_and_shades_by_share(tmp_path):
    areas = tmp_path / "areas.geojson"
    areas.write_text('{"type": "FeatureCollection", "features": ['
                     '{"type": "Feature", "properties": {"name": "west"}, "geometry": {"type": "Polygon",'
                     ' "coordinates": [[[-500, -500], [500, -500], [500, 500], [-500, 500], [-500, -500]]]}},'
                     '{"type": "Feature", "properties": {"name": "east"}, "geometry": {"type": "Polygon",'
                     ' "coordinates": [[[4500, -500], [5500, -500], [5500, 500], [4500, 500], [4500, -500]]]}}]}')
    with _store_with_calls(tmp_path) as store:
        page = unreported_page(store, areas)
        everywhere = unreported_page(store, None)
    rows = {r["area"]: r for r in page["rows"]}
    assert (rows["west"]["incidents"], rows["west"]["called"], rows["west"]["unreported"]) == (2, 2, 0)
    assert (rows["east"]["incidents"], rows["east"]["called"], rows["east"]["unreported"]) == (1, 0, 1)
    assert rows["east"]["unreported_share"] == 1.0 and rows["east"]["ci_high"] == 1.0
    assert [(r["area"], r["incidents"], r["called"]) for r in everywhere["rows"]] == [("all", 3, 2)]
    cmap = matplotlib.colormaps["RdYlGn_r"]
    fills = {a["name"]: a["fill"] for a in page["map"].areas}
    assert fills == {"west": matplotlib.colors.to_hex(cmap(0.0)), "east": matplotlib.colors.to_hex(cmap(1.0))}
    assert sorted((d["incident"], d["called"]) for d in page["map"].dots) == [
        ("inc-a", True), ("inc-b", True), ("inc-c", False)]


def test_choropleth_of_an_area_without_gunfire_is_hatched():
    plane = Plane("local")
    drawn = choropleth([Area("quiet", box(0, 0, 100, 200))], {"quiet": {"unreported_share": None}}, [], set(), plane)
    assert drawn.areas[0]["fill"] == "url(#no-data)"
    assert drawn.areas[0]["d"].startswith("M ") and drawn.areas[0]["d"].endswith(" Z")
    x0, y0, width, height = map(float, drawn.view_box.split())
    assert width < height and y0 < -200 < 0 < y0 + height   # north up: y flipped


def test_console_areas_in_the_fusion_config(tmp_path):
    from earwitness.cli import UserError
    from fusion.cli_fusion import load_config

    base = 'site = "s"\nbroker = "mqtt://127.0.0.1:1"\nregistry = "nodes.toml"\n[console]\nlisten = "127.0.0.1:8080"\n'
    path = tmp_path / "fusion.toml"
    path.write_text(base + 'areas = "areas.geojson"\n')
    assert load_config(path).console.areas == tmp_path / "areas.geojson"
    path.write_text(base)
    assert load_config(path).console.areas is None
    path.write_text(base + 'area = "typo.geojson"\n')
    with pytest.raises(UserError, match=r"\[console\] unknown setting\(s\) area; it takes listen, .*areas"):
        load_config(path)


def test_unreported_page_names_a_bad_areas_file(tmp_path):
    from fusion.forensics.geojson import GeoJSONError

    bad = tmp_path / "areas.geojson"
    bad.write_text('{"type": "Feature"}')
    with _store_with_calls(tmp_path) as store, pytest.raises(GeoJSONError, match="not a GeoJSON FeatureCollection"):
        unreported_page(store, bad)
