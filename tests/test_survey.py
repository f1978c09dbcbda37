"""Survey-in against a known position: hours of fixes with correlated GPS error, multipath
bursts and a restart half way."""
import json
import math

import numpy as np
import pymap3d
import pytest

from edge.nmea import Fix
from edge.survey import Survey

TRUE = (40.4406250, -79.9958640, 250.0)      # a rooftop in Pittsburgh
T0_NS = 1_790_000_000 * 1_000_000_000
SIGMA_H_M, SIGMA_V_M = 2.5, 4.0
CORRELATION_S = 300.0


def fixes(hours, seed, start_s=0):
    """1 fix / 2 s; per-axis AR(1) error, 1 % fixes with multipath jumps, a 20-minute
    bias episode, some 2D and high-HDOP fixes."""
    rng = np.random.default_rng(seed)
    dt_s = 2.0
    n = int(hours * 3600 / dt_s)
    a = math.exp(-dt_s / CORRELATION_S)
    sig = np.array([SIGMA_H_M, SIGMA_H_M, SIGMA_V_M])
    e = np.zeros(3)
    offs = np.zeros((n, 3))
    for i in range(n):
        e = a * e + math.sqrt(1 - a * a) * sig * rng.standard_normal(3)
        offs[i] = e
    offs += rng.normal(0, 0.3, (n, 3))
    t_s = start_s + np.arange(n) * dt_s
    jump = rng.random(n) < 0.01
    offs[jump] += rng.uniform(30, 250, (jump.sum(), 1)) * rng.choice([-1, 1], (jump.sum(), 3))
    bad_sat = (t_s % 14_400 >= 3600) & (t_s % 14_400 < 4_800)   # a bad satellite, 20 minutes
    offs[bad_sat] += np.array([25.0, -30.0, 40.0])
    lat, lon, alt = pymap3d.enu2geodetic(offs[:, 0], offs[:, 1], offs[:, 2], *TRUE)
    mode = np.where(rng.random(n) < 0.02, 2, 3)
    hdop = np.where(rng.random(n) < 0.02, 9.0, 1.1)
    out = [Fix(T0_NS + int(t * 1e9), float(la), float(lo), float(al), int(m), 8, float(h))
           for t, la, lo, al, m, h in zip(t_s, lat, lon, alt, mode, hdop)]
    return out


def horizontal_error(pos):
    e, n, u = pymap3d.geodetic2enu(pos.lat, pos.lon, pos.alt, *TRUE)
    return math.hypot(e, n), abs(u)


@pytest.mark.slow
def test_survey_in_reaches_well_under_a_metre_and_survives_restart(tmp_path):
    path = tmp_path / "survey.json"
    stream = fixes(12, seed=1)
    half = len(stream) // 2
    s = Survey(path)
    for f in stream[:half]:
        s.add(f)
    s.close()
    mid = s.position()

    s2 = Survey(path)                       # the node restarts
    assert s2.position() == mid
    for f in stream[half:]:
        s2.add(f)
    s2.close()
    pos = s2.position()
    err_h, err_v = horizontal_error(pos)
    print(f"\nsurvey 12 h: horizontal error {err_h:.2f} m (reported 1-sigma {pos.err_h_m:.2f}), "
          f"vertical {err_v:.2f} m; {pos.rejected_buckets} buckets rejected")
    assert err_h < 0.6 and err_v < 1.5
    assert err_h <= 3 * pos.err_h_m
    assert pos.rejected_buckets >= 20 and pos.span_s >= 11 * 3600
    assert s2.counts["not_3d"] > 0 and s2.counts["high_hdop"] > 0

    # one run without the restart gives the same answer
    s3 = Survey(None)
    for f in stream:
        s3.add(f)
    s3.close()
    # (only the minute cut in two by the restart differs)
    assert abs(horizontal_error(s3.position())[0] - err_h) < 0.05


def test_a_few_minutes_are_much_worse_than_hours():
    s = Survey(None)
    for f in fixes(0.25, seed=2):
        s.add(f)
    s.close()
    pos = s.position()
    assert pos.err_h_m > 0.8


def test_corrupt_state_file_is_moved_aside(tmp_path):
    path = tmp_path / "survey.json"
    path.write_text('{"version": 1, "buckets": [[1, 2')
    s = Survey(path)
    assert s.position() is None and "unreadable" in s.warning
    assert (tmp_path / "survey.json.corrupt").exists()
    for f in fixes(0.1, seed=3):
        s.add(f)
    s.close()
    state = json.loads(path.read_text())
    assert state["version"] == 1 and len(state["buckets"]) >= 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".survey-")]
