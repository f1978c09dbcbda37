"""Pittsburgh-like synthetic scenes with known truth, written apart from the simulator.

Nothing here imports ``simulator/`` or the locator: the physics is written out below so that
the yardstick does not share the assumptions of what it measures. Each scene is one burst
(1-5 rounds) from one place, heard by the real array of one development firing position
(FP1-FP3 of the TN098 supplement, ShotSpotter Inc., CC BY 4.0: sensor positions from the
tests' allpulses.json and audio .json, recentred on that position's surveyed firing point;
each position has its own arbitrary frame, so the three layouts stay apart).

Modelling choices and their sources (each a field of :class:`Conditions`; TN098 = Calhoun et
al. 2020, ShotSpotter Tech Note 098, in ../shared/data/pittsburgh-2018/TN098.pdf):

- Propagation: straight lines at c = 20.03 sqrt(T + 273.15) m/s (TN098 eq. 8) in 3D from the
  source to each sensor (the locator fits 2D, so the hilly array's height differences stay a
  model error, as on the real data: TN098 §V.B), plus a homogeneous wind (TN098 §II.E: a
  moving medium adds its component along the path; the airports reported 0-5 m/s, §III.D).
- Speed-of-sound error: the locator is told the temperature with an error of
  ``temperature_error_c`` (TN098 §III.D: METAR readings at +-1 degC, from an airport, not the
  site).
- Sensor survey error: each sensor's reported position is off by a 2D Gaussian whose RMS
  radius is drawn from ``survey_rms_m`` = 1-3 m per sensor (TN098 §III.B: a u-blox MAX-7, 2.5 m
  CEP, averaged over up to 180 days; Fig. 8).
- Picking error: Gaussian, ``pick_sigma_s`` = 100 us (TN098 Table I, §III.B: sigma 99.6 us; its
  mean offset is common to all sensors and cancels in time differences). Reported times are
  then rounded to the millisecond (TN098 §III.B: "to millisecond precision").
- Which sensors hear: the count per scene is Gaussian about ``hear_mean`` = 14 (TN098 Table II:
  17.8, 14.3, 9.9 sensors per shot at FP1-FP3; the supplement's tuples average 14.0), sd
  ``hear_sd``, clipped to 3-25; the ones that hear are the nearest by distance times a lognormal
  factor (TN098 Fig. 2: range alone is not a good predictor of level). Each hearing sensor
  misses a given round with ``dropout`` (masking, threshold), keeping at least 3 per round.
- Temperature: uniform -10 to 30 degC (a year's range; the test itself was at -1 degC).
- Non-line-of-sight first arrivals (TN098 §II.C: near line-of-sight paths after one
  diffraction are usable; specular paths are late): a share ``nlos_share`` of the hearing sensors
  (fixed per scene: the path belongs to the place) receive their first arrival late, half of
  them by 1 ms + an exponential of mean ``nlos_late_mean_s`` capped at 30 ms (a reflection only),
  half by the detour over a barrier (height 3-15 m above the line, 5-50 m from the source).
  NLOS arrivals are also weaker (``nlos_db_loss``).
- Echoes: each hearing sensor has its own echo delays (Poisson ``echoes_mean``, log-uniform 20 ms
  to 2 s after the first arrival; fixed per scene as the buildings are), each heard on a
  round with ``echo_heard``; TN098 §II.B: reflections arrive "over a period of time that may extend
  to several seconds"; §IV: "loud, sharp echoes", so an echo can be as loud as the direct.
- Unrelated pulses at every sensor of the layout, Poisson ``noise_rate_hz`` = 0.1/s over the
  scene. With ``echoes_mean`` = 1.2 heard at 0.8 this puts a 3-round scene near 100 pulses, as
  the supplement's tests (70-160 pulses; 0.19 per sensor-second outside the commercial tuples).
- ``nlos_share`` = 0.15 is a choice, not a measurement (the supplement does not label NLOS
  arrivals); the benchmark's one-condition-at-a-time rows show what it costs.
- Levels: first-arrival SNR ~ N(19, 6) dB, clipped at 6 (the supplement's tuple pulses:
  median 19.5, 10-90 % 10-27 dB); unrelated pulses 2 dB + an exponential of mean 5 dB (theirs:
  median 6.3, 10-90 % 2.6-16.8 dB). Sound levels (spl_db, as the reports carry them) only where
  ``spl_sd_db`` is set (see :func:`_levels`), drawn after everything else: a scene is the same
  pulses with or without them.
- Bursts: 1-5 rounds, 0.2-1.5 s apart (issue 14), at a place uniform within ``shot_radius_m`` of
  the real firing point (400 m: inside the area FP1-FP3's sensors surround, TN098 Fig. 13), on the ground
  ``roof_m`` below the median height of its three nearest sensors (rooftop sensors, §III.A).
  Sensors farther than ``hear_max_m`` = 1 km never hear it (TN098 §IV: analysis within 800 m;
  Fig. 13: the detection limits lie within about 1 km).
"""
from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass, field, replace

import numpy as np

import locator_oracle as oracle
import pittsburgh_pulses as pp
from earwitness.units import NS_PER_S
from locator_scoring import Case, locate_case

EPOCH_NS = 1_545_180_000 * NS_PER_S  # December 2018, as the live-fire test
MS_NS = 1_000_000
NLOS_MIN_S = 1e-3  # a reflection-only first arrival is at least this late (issue 14: 1-30 ms)
MIN_SNR_DB = 0.5  # an echo's level floor: a detector reports nothing weaker
REPORTS_SPL_SD_DB = 0.68  # a reported level's scatter about its round's (see _levels)
DENSE_ECHOES = 5.0  # echoes per sensor and round, about what `earwitness detect` finds in the recordings
AUDIO_HEARING = (4.5, 0.6)  # mean, sd of the sensors hearing a shot: the Pittsburgh tests' 4-5 WAVs


def speed_of_sound(temperature_c: float) -> float:
    """TN098 eq. 8, written out here (not the locator's)."""
    return 20.03 * math.sqrt(temperature_c + 273.15)


@dataclass(frozen=True)
class Conditions:
    """The knobs of a scene; :meth:`clean` switches off everything but geometry and timing."""

    rounds: tuple[int, int] = (1, 5)
    gap_s: tuple[float, float] = (0.2, 1.5)
    temperature_c: tuple[float, float] = (-10.0, 30.0)
    temperature_error_c: float = 1.0
    wind_m_s: tuple[float, float] = (0.0, 3.0)
    survey_rms_m: tuple[float, float] = (1.0, 3.0)
    pick_sigma_s: float = 1e-4
    round_to_ms: bool = True
    hear_mean: float = 14.0
    hear_sd: float = 5.0
    hear_range: tuple[int, int] = (3, 25)
    hear_lognormal_sd: float = 0.5
    dropout: float = 0.08
    nlos_share: float = 0.15
    nlos_late_mean_s: float = 6e-3
    nlos_max_s: float = 0.03
    nlos_db_loss: tuple[float, float] = (3.0, 12.0)
    nlos_detour_share: float = 0.5
    barrier_distance_m: tuple[float, float] = (5.0, 50.0)
    barrier_height_m: tuple[float, float] = (3.0, 15.0)
    snr_db: tuple[float, float] = (19.0, 6.0)  # mean, sd of a first arrival's SNR
    snr_min_db: float = 6.0
    noise_snr_db: tuple[float, float] = (2.0, 5.0)  # floor, mean of the exponential above it
    echoes_mean: float = 1.2
    echo_delay_s: tuple[float, float] = (0.02, 2.0)
    echo_heard: float = 0.8
    echo_db_drop: tuple[float, float] = (-3.0, 15.0)
    noise_rate_hz: float = 0.1
    shot_radius_m: float = 400.0
    hear_max_m: float = 1000.0
    roof_m: tuple[float, float] = (3.0, 10.0)
    lead_s: float = 2.0
    tail_s: float = 4.0
    flat: bool = False  # all heights 0: the 2D model then holds exactly
    # Each pulse's sound level (spl_db), as the supplement's reports carry it, or None: none reported.
    spl_sd_db: float | None = None
    spl_floor_db: tuple[float, float] = (59.0, 75.0)

    def clean(self) -> Conditions:
        """No NLOS, echoes, unrelated pulses or dropouts: what remains is geometry and timing."""
        return replace(self, nlos_share=0.0, echoes_mean=0.0, noise_rate_hz=0.0, dropout=0.0)

    def audio_like(self) -> Conditions:
        """As `earwitness detect` then `locate` on a Pittsburgh test's 4-5 recordings: about that many sensors
        hear, only they report (no unrelated pulses: those are drawn at every sensor of the layout), each with
        dense echoes (what detect finds in the recordings: 8-25 pulses per sensor for 3 rounds)."""
        return replace(self, hear_mean=AUDIO_HEARING[0], hear_sd=AUDIO_HEARING[1], echoes_mean=DENSE_ECHOES,
                       noise_rate_hz=0.0)

    def exact(self) -> Conditions:
        """:meth:`clean`, flat, and no survey, picking, rounding, wind or temperature error."""
        return replace(self.clean(), survey_rms_m=(0.0, 0.0), pick_sigma_s=0.0, round_to_ms=False,
                       temperature_error_c=0.0, wind_m_s=(0.0, 0.0), flat=True)


@dataclass
class Scene:
    name: str
    layout: str
    sensors: dict[str, tuple[float, float, float]]  # as surveyed (what the locator is given)
    source_m: tuple[float, float, float]
    t0_s: list[float]  # discharge times after EPOCH_NS
    temperature_told_c: float
    pulses: list[dict] = field(default_factory=list)
    first_arrivals: list[list[tuple[str, float]]] = field(default_factory=list)  # per round: (sensor, reported s)
    tags: dict = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return len(self.t0_s)


def layouts(tests: list[pathlib.Path]) -> dict[str, np.ndarray]:
    """Per firing position: its sensors' (x, y, z) relative to its surveyed firing point."""
    by_fp: dict[str, dict[str, tuple]] = {}
    origin: dict[str, np.ndarray] = {}
    for test in tests:
        fp = test.parent.name
        positions, _ = pp.all_pulses(test)
        for wav in test.glob("*.json"):
            meta = json.loads(wav.read_text())
            if "serial_number" in meta and "location" in meta:
                loc = meta["location"]
                positions.setdefault(meta["serial_number"], (loc["x"], loc["y"], loc["z"]))
        by_fp.setdefault(fp, {}).update(positions)
        origin.setdefault(fp, np.array(pp.survey(test)[0]))
    return {fp: np.array(sorted(pos.values())) - origin[fp] for fp, pos in by_fp.items()}


def _hearing(rng, dist_m: np.ndarray, cond: Conditions) -> np.ndarray:
    lo, hi = cond.hear_range
    n = int(np.clip(round(rng.normal(cond.hear_mean, cond.hear_sd)), lo, min(hi, len(dist_m))))
    rank = dist_m * rng.lognormal(0.0, cond.hear_lognormal_sd, len(dist_m))
    rank[dist_m > cond.hear_max_m] = np.inf
    return np.argsort(rank)[: min(n, int(np.isfinite(rank).sum()))]


def _nlos_delay_s(rng, src: np.ndarray, sensor: np.ndarray, c_m_s: float, cond: Conditions) -> float:
    """Extra first-arrival delay of one non-line-of-sight path: a reflection only, or a detour."""
    if rng.random() >= cond.nlos_detour_share:
        return min(NLOS_MIN_S + rng.exponential(cond.nlos_late_mean_s), cond.nlos_max_s)
    d = float(np.linalg.norm(sensor - src))
    d1 = min(rng.uniform(*cond.barrier_distance_m), d / 2)
    h = rng.uniform(*cond.barrier_height_m)
    detour_m = math.hypot(d1, h) + math.hypot(d - d1, h) - d
    return min(detour_m / c_m_s, cond.nlos_max_s)


def scene(rng: np.random.Generator, layout_name: str, layout: np.ndarray, cond: Conditions, name: str) -> Scene:
    """One burst from a random place near ``layout``'s firing point (see the module docstring)."""
    ids = [f"P{i:02d}" for i in range(len(layout))]
    if cond.flat:
        layout = layout * np.array([1.0, 1.0, 0.0])
    r, a = cond.shot_radius_m * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
    xy = np.array([r * math.cos(a), r * math.sin(a)])
    near = np.argsort(np.hypot(*(layout[:, :2] - xy).T))[:3]
    roof_m = rng.uniform(*cond.roof_m)  # drawn even when flat: the scenes stay paired across conditions
    src = np.array([*xy, 0.0 if cond.flat else np.median(layout[near, 2]) - roof_m])
    t_true = rng.uniform(*cond.temperature_c)
    c = speed_of_sound(t_true)
    wind = rng.uniform(*cond.wind_m_s) * np.array([math.cos(b := rng.uniform(0, 2 * math.pi)), math.sin(b), 0.0])
    rms = rng.uniform(*cond.survey_rms_m, len(layout)) / math.sqrt(2.0)  # per axis, so the radius is 1-3 m RMS
    surveyed = layout + rng.normal(0.0, 1.0, layout.shape) * np.column_stack([rms, rms, 1.5 * rms])
    n_rounds = int(rng.integers(cond.rounds[0], cond.rounds[1] + 1))
    gaps = rng.uniform(*cond.gap_s, n_rounds - 1)
    t0 = cond.lead_s + np.concatenate([[0.0], np.cumsum(gaps)])
    out = Scene(name, layout_name, {i: tuple(map(float, p)) for i, p in zip(ids, surveyed)}, tuple(src),
                [float(t) for t in t0], t_true + rng.normal(0.0, cond.temperature_error_c))
    vec = layout - src
    dist = np.linalg.norm(vec, axis=1)
    travel_s = dist / (c + vec @ wind / dist)  # the wind's component along each straight path
    hear = _hearing(rng, np.hypot(vec[:, 0], vec[:, 1]), cond)
    nlos = {int(k): _nlos_delay_s(rng, src, layout[k], c, cond) for k in hear if rng.random() < cond.nlos_share}
    snr = {int(k): max(cond.snr_min_db, rng.normal(*cond.snr_db)) - (rng.uniform(*cond.nlos_db_loss) if k in nlos else 0.0)
           for k in hear}
    echoes = {int(k): np.exp(rng.uniform(*np.log(cond.echo_delay_s), rng.poisson(cond.echoes_mean))) for k in hear}
    for t_fire in t0:
        heard = [int(k) for k in hear if rng.random() >= cond.dropout]
        if len(heard) < cond.hear_range[0]:
            heard = [int(k) for k in hear[: cond.hear_range[0]]]
        firsts = []
        for k in heard:
            t = t_fire + travel_s[k] + nlos.get(k, 0.0) + rng.normal(0.0, cond.pick_sigma_s)
            firsts.append((ids[k], _report(out, ids[k], t, snr[k], cond)))
            for delay in echoes[k]:
                if rng.random() < cond.echo_heard:
                    _report(out, ids[k], t + delay, snr[k] - rng.uniform(*cond.echo_db_drop), cond)
        out.first_arrivals.append(firsts)
    span_s = t0[-1] + cond.tail_s
    for k in range(len(layout)):
        for t in rng.uniform(0.0, span_s, rng.poisson(cond.noise_rate_hz * span_s)):
            _report(out, ids[k], t, cond.noise_snr_db[0] + rng.exponential(cond.noise_snr_db[1]), cond)
    out.pulses.sort(key=lambda p: (p["t_ns"], p["sensor"]))
    if cond.spl_sd_db is not None:  # drawn last: the scene's pulses are the same with or without levels
        _levels(out, rng, cond)
    out.tags = {"rounds": n_rounds, "hearing": len(hear), "nlos": len(nlos),
                "min_gap_s": float(gaps.min()) if len(gaps) else math.inf,
                # Round k+1 reaches some sensor before round k has reached them all.
                "interleaved": bool(len(gaps) and np.ptp(travel_s[hear]) > gaps.min()),
                "spread_s": float(np.ptp(travel_s[hear])), "range_m": float(np.hypot(*xy))}
    return out


def _levels(out: Scene, rng: np.random.Generator, cond: Conditions) -> None:
    """Give every pulse a level, spl_db: its sensor's noise floor (one per sensor, uniform over
    ``spl_floor_db``: the supplement's spl_db - snr_db, 10-90 %) plus its SNR, plus a Gaussian scatter of
    ``spl_sd_db`` (the supplement's rounds differ at a sensor by 0.96 dB sd, round to round: 0.68 a pulse).
    A round's level at a sensor is so the same every round, up to the scatter, and an echo's is lower by its
    drop, as in the reports; their SNR also moves with the noise that earlier rounds leave (3.6 dB sd round
    to round), which the generator's SNR does not."""
    floor = {sid: rng.uniform(*cond.spl_floor_db) for sid in sorted(out.sensors)}
    for pulse in out.pulses:
        pulse["spl_db"] = round(float(floor[pulse["sensor"]] + pulse["snr_db"] + rng.normal(0.0, cond.spl_sd_db)), 2)


def _report(out: Scene, sid: str, t_s: float, snr_db: float, cond: Conditions) -> float:
    """Append one reported pulse; return its reported time (s after EPOCH_NS)."""
    t_ns = round(t_s * NS_PER_S)
    if cond.round_to_ms:
        t_ns = round(t_ns / MS_NS) * MS_NS
    out.pulses.append({"sensor": sid, "t_ns": EPOCH_NS + t_ns, "snr_db": round(float(max(snr_db, MIN_SNR_DB)), 2)})
    return t_ns / NS_PER_S


def scenes(tests: list[pathlib.Path], n: int, seed: int = 2018, cond: Conditions | None = None) -> list[Scene]:
    """``n`` scenes, cycling over the development layouts, from a fixed seed."""
    lays = layouts(tests)
    return [scene_at(lays, seed, i, cond) for i in range(n)]


def scene_at(lays: dict[str, np.ndarray], seed: int, i: int, cond: Conditions | None = None) -> Scene:
    """Scene ``i`` of :func:`scenes` (``lays``: :func:`layouts`), alone."""
    names = sorted(lays)
    # A generator per scene: scene i has the same place, burst and hearing sensors whatever the
    # conditions, so that rows with one difficulty switched on compare the same scenes.
    return scene(np.random.default_rng((seed, i)), names[i % len(names)], lays[names[i % len(names)]],
                 cond or Conditions(), f"scene_{i:04d}")


def write(sc: Scene, folder: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Sensors CSV (as surveyed) and pulses JSONL of a scene, for `earwitness locate`."""
    folder.mkdir(parents=True, exist_ok=True)
    sensors = pp.write_sensors_csv(sc.sensors, folder / "sensors.csv")
    pulses = folder / "pulses.jsonl"
    pulses.write_text("".join(json.dumps(p) + "\n" for p in sc.pulses))
    return sensors, pulses


def oracle_groups(sc: Scene) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per round the true first arrivals as reported, with the surveyed sensor positions."""
    return [(np.array([sc.sensors[s] for s, _ in firsts]), np.array([t for _, t in firsts]), [s for s, _ in firsts])
            for firsts in sc.first_arrivals]


def scene_shots(tests: list[pathlib.Path], seed: int, index: int, folder: pathlib.Path,
                cond: Conditions | None = None) -> tuple[Scene, list[dict]]:
    """Scene ``index`` of seed ``seed`` (:func:`scene_at`) through `earwitness locate`, told its temperature:
    the scene and every shot put out."""
    sc = scene_at(layouts(tests), seed, index, cond)
    case = locate_case(sc.name, *write(sc, folder), sc.source_m, sc.rounds,
                       ["--temperature-c", f"{sc.temperature_told_c:.2f}"])
    return sc, [s for inc in case.incidents for s in inc["shots"]]


def cases(scenes_: list[Scene], workdir: pathlib.Path, args=()) -> tuple[list[Case], list[Case]]:
    """`earwitness locate` on each scene (told the temperature with its error; ``args``: further CLI
    arguments) and the oracle on its true first arrivals, as scored cases tagged with the scene's conditions."""
    ours, best = [], []
    for sc in scenes_:
        sensors, pulses = write(sc, workdir / sc.name)
        extra = ["--temperature-c", f"{sc.temperature_told_c:.2f}", *args]
        ours.append(locate_case(sc.name, sensors, pulses, sc.source_m, sc.rounds, extra, sc.tags))
        c = speed_of_sound(sc.temperature_told_c)
        best.append(Case(sc.name, sc.source_m[:2], sc.rounds, oracle.incident(oracle_groups(sc), c), tags=sc.tags))
    return ours, best
