"""The accuracy yardstick itself (issue 14, item 5) and the figures the locator reaches on it.

The scoring (tests/locator_scoring.py) is checked on hand-made cases; the Pittsburgh-like
generator (tests/pittsburgh_like.py) is checked to be sane (the oracle recovers exact
positions from exact arrivals, and positions within the survey error with only geometry and
timing errors left); the leave-one-position-out harness never fits on the fold it scores;
and `earwitness locate` on a few synthetic scenes must reach what it reaches today.
`make bench` (bench/bench_accuracy.py) prints the full figures on 300 scenes and FP1-FP3.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace

import numpy as np
import pytest

import locator_lopo as lopo
import locator_oracle as oracle
import pittsburgh_like as pl
from locator_scoring import Case, case_figures, score

SEED = 14
SCENES = 40
# Measured on these 40 scenes (seed 14) with the burst model and the error budget: rounds located
# 0.969, rounds exact 0.900, within 25 m 0.975, median 2.20 m, err_m coverage 0.976, sharpness 2.98
# (3.19 before the budget's wind and frame terms; before both: 0.961, 0.875, 0.975, 2.23 m, 0.49,
# 0.89). Bounds a little below guard against regressions; issue 14's targets (rounds located >= 0.98,
# rounds exact >= 0.95, sharpness <= 2.5) are not reached yet; coverage (0.93-0.98) is. With burst
# completion on by default (echo sets kept out by their levels, station terms) and a sensor's hearing
# marginalised once per burst: the same. With association's small-array rule counting the stretch's
# sensors (a chunk's leftover echoes made false shots): rounds located 0.961 (a round only that rule
# kept in a later chunk is now left to burst completion), rounds exact 0.925, within 25 m 0.975,
# median 2.23 m, coverage 0.992, sharpness 3.03. With burst completion on by default (echo sets
# also told by which sensors heard them): rounds located 0.976, exact 0.975, within 25 m 0.975,
# median 2.14 m, coverage 0.992, sharpness 3.16. With a few-sensor burst's hearing one unknown per
# burst (the one scene left, a burst only a few of many sensors hear, is now located; the budget
# propagated through the rounds' shared place): rounds located 1.000, exact 1.000, within 25 m 1.000,
# median 1.96 m, coverage 0.992, sharpness 3.46 (the few-sensor rounds come with wide radii; on the
# benchmark's 300 scenes sharpness is 2.48, was 2.50). With an exact-fit burst's true posterior area
# and shadowing for a few-sensor burst's hearing: the same (1.000, 1.000, 1.000, 1.96 m, 0.992, 3.47).
MIN_ROUNDS_LOCATED = 0.98
MIN_ROUNDS_EXACT = 0.975
MIN_WITHIN_25M = 0.975
MAX_MEDIAN_ERR_M = 2.6
MIN_ERR_COVERAGE = 0.95
MAX_SHARPNESS = 3.6
# Sensor survey error is 1-3 m RMS per sensor; the located position inherits about that.
SURVEY_MEDIAN_M = 3.0
SURVEY_MAX_M = 10.0


def shot(x, y, err_m=None):
    return {"x": x, "y": y, "err_m": err_m}


def incident(*shots):
    return {"rounds": len(shots), "x": float(np.mean([s["x"] for s in shots])),
            "y": float(np.mean([s["y"] for s in shots])), "sensors": ["a"], "shots": list(shots)}


def test_scoring_counts_rounds_located_capped_exact_and_coverage():
    cases = [
        # 3 fired, 4 found near: located capped at 3, not exact; one err_m covers.
        Case("a", (0.0, 0.0), 3, [incident(shot(1, 0, 2.0), shot(3, 0, 2.0), shot(0, 4, 2.0), shot(0, 1, 0.5))]),
        # 2 fired, 1 near + 1 far in another incident: located 1, exact (2 rounds), within 25 m.
        Case("b", (100.0, 0.0), 2, [incident(shot(102, 0, 5.0)), incident(shot(300, 0, 5.0))]),
        # 1 fired, nothing out.
        Case("c", (0.0, 0.0), 1, [], note="no shot located"),
    ]
    figures = score(cases)
    assert figures["rounds_located"] == pytest.approx((3 + 1 + 0) / 6)
    assert figures["rounds_exact"] == pytest.approx(1 / 3)
    assert figures["within_25m"] == pytest.approx(2 / 3)
    # Errors of the located shots (<= 25 m): 1, 3, 4, 1, 2.
    assert figures["median_err_m"] == pytest.approx(2.0)
    assert figures["rms_err_m"] == pytest.approx(np.sqrt(np.mean(np.square([1, 3, 4, 1, 2]))))
    # Coverage over every shot put out: covered 1 (1 <= 2) and 2 (2 <= 5) of 6 shots.
    assert figures["err_coverage"] == pytest.approx(2 / 6)
    assert case_figures(cases[1])["all_err_m"] == pytest.approx([2.0, 200.0])


@pytest.fixture(scope="module")
def layouts(pittsburgh):
    return pittsburgh


def run(tests, cond, n, tmp_path):
    logging.getLogger("fusion").setLevel(logging.ERROR)
    return pl.cases(pl.scenes(tests, n, seed=SEED, cond=cond), tmp_path)


def oracle_errors(cases) -> np.ndarray:
    return np.array([e for c in cases for e in case_figures(c)["all_err_m"]])


def test_generator_exact_arrivals_give_the_exact_position(layouts):
    """Flat, no error of any kind: the oracle lands on the source. Rounds heard by exactly 3
    sensors are left out: 3 arrivals for 3 unknowns can have two exact solutions."""
    errors = []
    for sc in pl.scenes(layouts, 20, seed=SEED, cond=pl.Conditions().exact()):
        for positions, t_s, _ids in pl.oracle_groups(sc):
            if len(t_s) > oracle.MIN_PULSES:
                xy, _t0, _r = oracle.fit(positions, t_s, pl.speed_of_sound(sc.temperature_told_c))
                errors.append(np.hypot(*(xy - np.array(sc.source_m[:2]))))
    assert len(errors) > 40
    assert max(errors) < 1e-3


@pytest.mark.slow
def test_generator_without_nlos_echoes_noise_locates_within_the_survey_error(layouts, tmp_path):
    _ours, oracle = run(layouts, pl.Conditions().clean(), 20, tmp_path)
    errors = oracle_errors(oracle)
    assert np.median(errors) <= SURVEY_MEDIAN_M
    assert errors.max() <= SURVEY_MAX_M


def test_generator_scenes_look_like_the_pittsburgh_reports(layouts):
    scenes = pl.scenes(layouts, SCENES, seed=SEED)
    assert {s.layout for s in scenes} == {"FP1", "FP2", "FP3"}
    for s in scenes:
        assert 1 <= s.rounds <= 5 and 3 <= s.tags["hearing"] <= 25
        assert all(0.2 <= b - a <= 1.5 for a, b in zip(s.t0_s, s.t0_s[1:]))
        assert all(len(firsts) >= 3 for firsts in s.first_arrivals)
        assert all(p["t_ns"] % pl.MS_NS == 0 for p in s.pulses)  # reported to the millisecond
    # The supplement holds about 70-160 pulses per test, most of them echoes and noise.
    per_scene = [len(s.pulses) for s in scenes]
    firsts = [sum(len(f) for f in s.first_arrivals) for s in scenes]
    assert 50 <= np.median(per_scene) <= 160
    assert np.median(np.array(firsts) / np.array(per_scene)) < 0.6
    # The same seed gives the same scenes.
    assert pl.scenes(layouts, 3, seed=SEED)[2].pulses == scenes[2].pulses


def test_generator_levels_repeat_by_round_as_the_reports_do_and_change_nothing_else(layouts):
    """With levels on, each pulse carries spl_db; a round's level at a sensor repeats within the scatter (the
    supplement's reports: 0.96 dB sd round to round), and the scene is otherwise the same pulses."""
    cond = replace(pl.Conditions(), spl_sd_db=pl.REPORTS_SPL_SD_DB)
    plain, levelled = pl.scenes(layouts, 6, seed=SEED), pl.scenes(layouts, 6, seed=SEED, cond=cond)
    diffs = []
    for a, b in zip(plain, levelled):
        assert [dict(p, spl_db=None) for p in a.pulses] == [dict(p, spl_db=None) for p in b.pulses]
        assert all(math.isfinite(p["spl_db"]) for p in b.pulses) and not any("spl_db" in p for p in a.pulses)
        level = {(p["sensor"], p["t_ns"]): p["spl_db"] for p in b.pulses}
        for first, later in zip(b.first_arrivals, b.first_arrivals[1:]):
            t_first = dict(first)
            diffs += [level[s, pl.EPOCH_NS + round(t * 1e9)] - level[s, pl.EPOCH_NS + round(t_first[s] * 1e9)]
                      for s, t in later if s in t_first]
    assert len(diffs) > 20 and 0.5 < float(np.std(diffs)) < 1.5


@pytest.mark.slow
def test_locator_on_pittsburgh_like_scenes(layouts, tmp_path, capsys):
    ours, oracle = run(layouts, pl.Conditions(), SCENES, tmp_path)
    figures, best = score(ours), score(oracle)
    with capsys.disabled():
        print(f"\nlocate on {SCENES} Pittsburgh-like scenes: {({k: round(v, 3) for k, v in figures.items()})}"
              f"\noracle on their true first arrivals: {({k: round(v, 3) for k, v in best.items()})}")
    assert best["rounds_located"] >= 0.98  # association solved, only NLOS and geometry left
    assert figures["rounds_located"] >= MIN_ROUNDS_LOCATED
    assert figures["rounds_exact"] >= MIN_ROUNDS_EXACT
    assert figures["within_25m"] >= MIN_WITHIN_25M
    assert figures["median_err_m"] <= MAX_MEDIAN_ERR_M
    assert figures["err_coverage"] >= MIN_ERR_COVERAGE
    assert figures["sharpness"] <= MAX_SHARPNESS


def test_leave_one_position_out_never_fits_on_the_held_out_position(pittsburgh):
    seen = {}

    def fit(train):
        return {"trained_on": sorted({lopo.position_of(t) for t in train})}

    def scorer(held, settings):
        positions = {lopo.position_of(t) for t in held}
        seen[positions.pop()] = settings["trained_on"]
        assert not positions
        return {}

    lopo.lopo(pittsburgh, scorer, fit)
    assert seen == {"FP1": ["FP2", "FP3"], "FP2": ["FP1", "FP3"], "FP3": ["FP1", "FP2"]}


# Scenes of the 300 (seed 2018) where a widely heard burst left, in the chunk after it, a few far
# sensors' echoes that association took for a shot 200-700 m off (a chunk's sensors were counted as
# a small array, where the best set short of one sensor is kept without a significance count).
LEFTOVER_ECHO_SCENES = (47, 125, 201, 236)
LEFTOVER_SEED = 2018


def scenes_of(layouts, seed: int, indices) -> list:
    """Scenes ``indices`` of :func:`pittsburgh_like.scenes` (seed ``seed``) without making the rest."""
    logging.getLogger("fusion").setLevel(logging.ERROR)
    lays = pl.layouts(layouts)
    names = sorted(lays)
    return [pl.scene(np.random.default_rng((seed, i)), names[i % len(names)], lays[names[i % len(names)]],
                     pl.Conditions(), f"scene_{i:04d}") for i in indices]


def test_leftover_echoes_of_a_widely_heard_burst_make_no_false_shot(layouts, tmp_path):
    scenes = scenes_of(layouts, LEFTOVER_SEED, LEFTOVER_ECHO_SCENES)
    for args in ([], ["--complete-bursts"]):
        ours, _ = pl.cases(scenes, tmp_path / "-".join(["run", *args]), args)
        for case in ours:
            figures = case_figures(case)
            assert figures["all_err_m"] and max(figures["all_err_m"]) <= 25.0, (case.name, args, figures["all_err_m"])
            if args:  # completion recovers the rounds association alone misses in these interleaved bursts
                assert figures["located"] == case.rounds and figures["exact"], case.name


# A burst of 4 rounds 3 sensors heard, beside 6 unrelated pulses association took for a lone shot
# 1.2 km off (seed 2018, scene 230: that shot only, before a lone shot was weighed against a burst).
CHANCE_SET_SCENES = (230,)
# Lone rounds 23-24 sensors heard, whose echoes also make bursts of a few sensors: the round must stay.
WIDELY_HEARD_LONE_SCENES = (76, 197)


def exactly_located(case) -> bool:
    figures = case_figures(case)
    return figures["located"] == case.rounds and figures["exact"] and max(figures["all_err_m"], default=99.0) <= 25.0


def test_a_few_sensor_burst_outweighs_a_lone_chance_set(layouts, tmp_path):
    ours, _ = pl.cases(scenes_of(layouts, LEFTOVER_SEED, CHANCE_SET_SCENES + WIDELY_HEARD_LONE_SCENES), tmp_path)
    assert [c.name for c in ours if not exactly_located(c)] == []


# A burst of 2 rounds, 6 of the 18 reporting sensors hearing each (seed 2018, scene 145): no set of
# one round passes the chance count, and the few-sensor burst, scored two refinement steps from its
# voted place, fell short of its Bayes factor at the settled place (burst.PLACE_SETTLED_M). Scene 280
# (4 rounds, 5 sensors) lost a round where the refinement ran on to the settled place alone instead of
# keeping the best configuration visited.
SETTLED_PLACE_SCENES = (145, 280)


def test_a_few_sensor_burst_is_scored_at_its_settled_place(layouts, tmp_path):
    ours, _ = pl.cases(scenes_of(layouts, LEFTOVER_SEED, SETTLED_PLACE_SCENES), tmp_path)
    assert [c.name for c in ours if not exactly_located(c)] == []


# Bursts few sensors heard among others' pulses (seed 2018): scene 8, 2 rounds 3 of 16 reporting sensors
# heard, scored below zero among all the stretch's pulses (nothing located); scene 206, 3 rounds 7 sensors
# heard, located with an extra round. Searched first among the pulses association searches (each sensor's
# pulses far below its loudest left out), both are located exactly.
LOUD_FEW_SENSOR_SCENES = (8, 206)


def test_a_few_sensor_burst_is_searched_among_the_loud_pulses(layouts, tmp_path):
    ours, _ = pl.cases(scenes_of(layouts, LEFTOVER_SEED, LOUD_FEW_SENSOR_SCENES), tmp_path)
    assert [c.name for c in ours if not exactly_located(c)] == []


# A burst of 5 rounds 3 sensors heard (seed 2018, scene 105) whose mirror place, 580 m off, explained it as
# well (15.9 against 16.0 nats: not located); the mirror lies 170-190 m from three sensors that reported
# nothing at all, which the true place is 300 m from: weighed with them, the mirror is no rival.
SILENT_SENSOR_SCENES = (105,)


def test_sensors_that_reported_nothing_tell_a_mirror_place(layouts, tmp_path):
    ours, _ = pl.cases(scenes_of(layouts, LEFTOVER_SEED, SILENT_SENSOR_SCENES), tmp_path)
    assert [c.name for c in ours if not exactly_located(c)] == []


# Few-sensor bursts of held-out seed 31 (looked at while fixing them; its totals are no longer held out for
# these two). Scene 108: 4 rounds 5 sensors heard; searched with each sensor's hearing charged per round,
# the stretch gave a burst 700 m off only (the true place found no rounds so), and it was kept unweighed
# against the search with hearing by range, which finds the true place at +30.8 nats against that place's
# lower score. Scene 115: 3 rounds 3 sensors heard, whose two mirror places explain them alike, beside a
# lone chance set of 6 sensors 770 m off that association found: the burst explains the stretch better than
# the lone set, so the lone set is no shot (nothing is located: the burst's place is ambiguous).
HEARING_BY_RANGE_SCENES = (108,)
AMBIGUOUS_BURST_SCENES = (115,)
HELD_OUT_SEED = 31


def test_a_burst_found_with_hearing_per_round_is_weighed_against_hearing_by_range(layouts, tmp_path):
    ours, _ = pl.cases(scenes_of(layouts, HELD_OUT_SEED, HEARING_BY_RANGE_SCENES), tmp_path)
    assert [c.name for c in ours if not exactly_located(c)] == []


def test_an_ambiguous_few_sensor_burst_still_outweighs_a_lone_chance_set(layouts, tmp_path):
    ours, _ = pl.cases(scenes_of(layouts, HELD_OUT_SEED, AMBIGUOUS_BURST_SCENES), tmp_path)
    assert [max(case_figures(c)["all_err_m"], default=0.0) for c in ours] == [0.0]
