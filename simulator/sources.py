"""Acoustic sources: muzzle blasts, supersonic bullet cracks and the confounders that fool a detector.

Every source is described at the reference distance of 1 m as sound pressure in pascals, as
an analytic function of time since its onset. An event (one shooter's burst, one firecracker
string) is a list of :class:`Emission`, each with its own onset time and height above the
event's position (a fireworks shell bursts 100 m up). Analytic waveforms let the renderer
sample each sensor at its own, slightly wrong, ADC rate without resampling artefacts.

Levels are peak sound pressure levels (dB re 20 µPa) at 1 m, as the gunshot literature quotes
them: handguns and rifles 140-165 dB (Maher, "Acoustical characterization of gunshots", IEEE
SAFE 2007; Beck, Nakasone & Marr, "Variations in recorded acoustic gunshot waveforms",
J. Forensic Sci. 2011).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

P_REF_PA = 20e-6                 # reference pressure of dB SPL
OVERSAMPLE = 8                   # points per sample period averaged by area sampling
ATMOSPHERIC_PRESSURE_PA = 101325.0

Waveform = Callable[[np.ndarray], np.ndarray]

# Gunfire classes; everything else is a confounder.
GUNFIRE = ("handgun", "rifle")


@dataclass
class Emission:
    """One impulse of an event: onset ``t_s`` after the event time, ``dz_m`` above its position.

    ``wave(t_s)`` is the pressure in Pa at 1 m for times since the onset (0 before it);
    it is nonzero on ``[0, duration_s]``.
    """

    t_s: float
    wave: Waveform
    duration_s: float
    peak_db: float
    kind: str
    dz_m: float = 0.0
    extra: dict = field(default_factory=dict)


def db_to_pa(level_db):
    """Peak sound pressure level (dB re 20 µPa) to pascals."""
    return P_REF_PA * 10.0 ** (np.asarray(level_db, dtype=float) / 20.0)


def pa_to_db(pressure_pa):
    """Pascals to sound pressure level (dB re 20 µPa); 0 Pa gives -inf."""
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.abs(np.asarray(pressure_pa, dtype=float)) / P_REF_PA)


def friedlander(t_s, peak_pa, positive_s, decay=1.0):
    """The Friedlander blast waveform p(t) = P (1 - t/T+) exp(-b t/T+) for t >= 0, else 0.

    The classic free-field blast-wave shape (Friedlander 1946; Kinney & Graham, "Explosive
    Shocks in Air", 1985, ch. 6): an instantaneous rise to ``peak_pa``, a positive phase of
    ``positive_s`` and a longer, shallower negative phase whose depth the decay constant
    ``decay`` (b) sets. Muzzle blasts follow it closely at short range.
    """
    t = np.asarray(t_s, dtype=float)
    x = t / positive_s
    out = peak_pa * (1.0 - x) * np.exp(-decay * x)
    return np.where(t >= 0.0, out, 0.0)


def n_wave(t_s, peak_pa, duration_s, rise_s=20e-6):
    """The N-wave of a supersonic projectile: a jump to +P, a linear fall to -P, a jump back.

    Whitham's far-field shape ("The flow pattern of a supersonic projectile", Comm. Pure
    Appl. Math. 5, 1952). The shocks get a finite rise time ``rise_s`` (tens of µs in air,
    from molecular relaxation) as a raised-cosine ramp so that sampling stays band-limited.
    """
    t = np.asarray(t_s, dtype=float)
    ramp_in = 0.5 - 0.5 * np.cos(np.pi * np.clip(t / rise_s, 0.0, 1.0))
    ramp_out = 0.5 + 0.5 * np.cos(np.pi * np.clip((t - duration_s) / rise_s, 0.0, 1.0))
    body = peak_pa * (1.0 - 2.0 * np.clip(t, 0.0, duration_s) / duration_s)
    return np.where((t >= 0.0) & (t <= duration_s + rise_s), body * ramp_in * ramp_out, 0.0)


def whitham_n_wave(miss_m, mach, diameter_m, length_m):
    """Peak overpressure (Pa) and duration (s) of a bullet's N-wave at perpendicular distance ``miss_m``.

    Whitham (1952), as used for sniper location (Stoughton, "Measurements of small-caliber
    ballistic shock waves in air", JASA 102, 1997):
    P = 0.53 p0 (M²-1)^(1/8) d / (b^(3/4) l^(1/4)),
    T = 1.82 M b^(1/4) d / (c (M²-1)^(3/8) l^(1/4)), with b the miss distance.
    ``c`` here is taken as 343 m/s; the caller scales for temperature if it matters.
    """
    m2 = mach * mach - 1.0
    b = np.maximum(np.asarray(miss_m, dtype=float), 0.1)
    peak_pa = 0.53 * ATMOSPHERIC_PRESSURE_PA * m2 ** 0.125 * diameter_m / (b ** 0.75 * length_m ** 0.25)
    duration_s = 1.82 * mach * b ** 0.25 * diameter_m / (343.0 * m2 ** 0.375 * length_m ** 0.25)
    return peak_pa, duration_s


def damped_modes(t_s, amps_pa, freqs_hz, taus_s, click_pa=0.0, click_s=2e-4):
    """Sum of exponentially damped sinusoids plus an onset click: impacts on plates and lids.

    The modal model of struck structures (e.g. Cook, "Real Sound Synthesis for Interactive
    Applications", 2002, ch. 12): each mode a sin(2πft) exp(-t/τ); the click is a short
    Friedlander pulse for the contact.
    """
    t = np.asarray(t_s, dtype=float)[..., None]
    modes = np.asarray(amps_pa) * np.sin(2 * np.pi * np.asarray(freqs_hz) * t) * np.exp(-t / np.asarray(taus_s))
    out = np.where(t[..., 0] >= 0.0, modes.sum(axis=-1), 0.0)
    if click_pa:
        out = out + friedlander(t[..., 0], click_pa, click_s)
    return out


def sample(emission: Emission, rate_hz: float, start_s: float, n: int) -> np.ndarray:
    """Sample an emission at ``rate_hz`` from ``start_s`` (relative to its onset), ``n`` samples.

    Area sampling: each sample is the waveform's mean over its own sample period (a box
    prefilter, evaluated at ``OVERSAMPLE`` points), so a step that falls between samples
    lands as a fraction of one sample, with no ringing before it (a long linear-phase
    anti-alias filter would put a pre-echo ahead of every onset).
    """
    offsets = (np.arange(OVERSAMPLE) + 0.5) / OVERSAMPLE - 0.5
    t = start_s + (np.arange(n)[:, None] + offsets[None, :]) / rate_hz
    return emission.wave(t.ravel()).reshape(n, OVERSAMPLE).mean(axis=1)


def _level(rng, level_db, lo, hi):
    return float(level_db) if level_db is not None else float(rng.uniform(lo, hi))


# Positive-phase durations and peak levels at 1 m (Maher 2007; Beck et al. 2011).
HANDGUN_LEVEL_DB = (150.0, 160.0)
HANDGUN_POSITIVE_S = (0.4e-3, 0.8e-3)
RIFLE_LEVEL_DB = (156.0, 165.0)
RIFLE_POSITIVE_S = (0.8e-3, 1.4e-3)
FRIEDLANDER_DECAY = 1.6           # gives a negative phase a few ms long
ROUND_LEVEL_SPREAD_DB = 1.0       # round-to-round variation of one firearm
ROUND_JITTER_S = 0.01             # trigger-pull irregularity


def _muzzle(level_db, positive_s):
    peak = float(db_to_pa(level_db))
    return lambda t: friedlander(t, peak, positive_s, FRIEDLANDER_DECAY)


def gunfire(weapon: str, rng: np.random.Generator, rounds: int = 1, interval_s: float = 0.3,
            level_db: float | None = None, times_s=None) -> list[Emission]:
    """Muzzle blasts of ``rounds`` shots of a ``"handgun"`` or ``"rifle"``.

    Each blast is a Friedlander waveform (:func:`friedlander`) with a peak level at 1 m of
    150-160 dB (handgun) or 156-165 dB (rifle) unless ``level_db`` is given, and a positive
    phase of 0.4-0.8 ms or 0.8-1.4 ms: the whole blast lasts a few ms. Shots are
    ``interval_s`` apart with a few ms of jitter, or at the explicit ``times_s``.
    """
    if weapon not in GUNFIRE:
        raise ValueError(f"unknown firearm {weapon!r} (expected one of {', '.join(GUNFIRE)})")
    lo, hi = HANDGUN_LEVEL_DB if weapon == "handgun" else RIFLE_LEVEL_DB
    plo, phi = HANDGUN_POSITIVE_S if weapon == "handgun" else RIFLE_POSITIVE_S
    base_db = _level(rng, level_db, lo, hi)
    positive_s = float(rng.uniform(plo, phi))
    if times_s is None:
        jitter = rng.uniform(0.0, ROUND_JITTER_S, rounds) if rounds > 1 else np.zeros(1)
        times_s = np.arange(rounds) * interval_s + jitter
        times_s[0] = 0.0
    out = []
    for t in times_s:
        db = base_db + float(rng.normal(0.0, ROUND_LEVEL_SPREAD_DB))
        out.append(Emission(float(t), _muzzle(db, positive_s), 10 * positive_s, db, weapon))
    return out


FIRECRACKER_LEVEL_DB = (135.0, 150.0)
FIRECRACKER_POSITIVE_S = (0.15e-3, 0.35e-3)
FIRECRACKER_MEAN_GAP_S = 0.06


def firecrackers(rng: np.random.Generator, count: int = 50, level_db: float | None = None) -> list[Emission]:
    """A string of firecrackers: ``count`` short Friedlander bangs at Poisson-like intervals.

    Individual crackers are 135-150 dB at 1 m with a positive phase of 0.15-0.35 ms (shorter
    than a muzzle blast); gaps are exponential with a mean of 60 ms, as a fuse burns along the
    string, and each cracker's level varies by several dB.
    """
    gaps = rng.exponential(FIRECRACKER_MEAN_GAP_S, count) + 0.01
    times = np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    base = _level(rng, level_db, *FIRECRACKER_LEVEL_DB)
    out = []
    for t in times:
        db = base + float(rng.normal(0.0, 3.0))
        positive_s = float(rng.uniform(*FIRECRACKER_POSITIVE_S))
        out.append(Emission(float(t), _muzzle(db, positive_s), 10 * positive_s, db, "firecrackers"))
    return out


MORTAR_LAUNCH_DB = (125.0, 135.0)
MORTAR_BURST_DB = (150.0, 165.0)
MORTAR_FLIGHT_S = (2.0, 4.0)
MORTAR_BURST_ALT_M = (80.0, 200.0)


def fireworks_mortar(rng: np.random.Generator, level_db: float | None = None) -> list[Emission]:
    """A fireworks mortar: a dull launch thump on the ground, then the shell bursting aloft.

    Both are Friedlander blasts (:func:`friedlander`): the launch 125-135 dB at 1 m with a
    3 ms positive phase; the burst 150-165 dB with 2-5 ms (a bigger charge gives a longer
    positive phase, by Hopkinson-Cranz scaling), 2-4 s later and 80-200 m up. Its height is
    what tells it from gunfire when 3D location is possible.
    """
    launch_db = float(rng.uniform(*MORTAR_LAUNCH_DB))
    burst_db = _level(rng, level_db, *MORTAR_BURST_DB)
    burst_pos_s = float(rng.uniform(2e-3, 5e-3))
    launch = Emission(0.0, _muzzle(launch_db, 3e-3), 0.03, launch_db, "fireworks")
    burst = Emission(float(rng.uniform(*MORTAR_FLIGHT_S)), _muzzle(burst_db, burst_pos_s), 10 * burst_pos_s,
                     burst_db, "fireworks", dz_m=float(rng.uniform(*MORTAR_BURST_ALT_M)))
    return [launch, burst]


BACKFIRE_LEVEL_DB = (132.0, 145.0)


def car_backfire(rng: np.random.Generator, count: int | None = None, level_db: float | None = None) -> list[Emission]:
    """A car backfiring: one to three blasts of unburnt fuel in the exhaust.

    Friedlander blasts (:func:`friedlander`) with a long positive phase (2-4 ms, a large
    volume of gas), 132-145 dB at 1 m, 0.1-0.5 s apart, 0.3 m above the road.
    """
    count = int(count or rng.integers(1, 4))
    base = _level(rng, level_db, *BACKFIRE_LEVEL_DB)
    out, t = [], 0.0
    for _ in range(count):
        positive_s = float(rng.uniform(2e-3, 4e-3))
        db = base + float(rng.normal(0.0, 2.0))
        out.append(Emission(t, _muzzle(db, positive_s), 10 * positive_s, db, "backfire", dz_m=-1.2))
        t += float(rng.uniform(0.1, 0.5))
    return out


SLAM_LEVEL_DB = (110.0, 128.0)


def slam(rng: np.random.Generator, level_db: float | None = None, kind: str = "slam") -> list[Emission]:
    """A door or dumpster lid slamming: low modes (40-250 Hz) ringing for tens of ms.

    :func:`damped_modes` with three modes, decay times 30-80 ms and a contact click;
    110-128 dB peak at 1 m.
    """
    db = _level(rng, level_db, *SLAM_LEVEL_DB)
    peak = float(db_to_pa(db))
    freqs = rng.uniform(40.0, 250.0, 3)
    taus = rng.uniform(0.03, 0.08, 3)
    amps = peak * np.array([0.6, 0.3, 0.2])
    wave = lambda t: damped_modes(t, amps, freqs, taus, click_pa=0.5 * peak)  # noqa: E731
    return [Emission(0.0, wave, 0.4, db, kind)]


NAILGUN_LEVEL_DB = (118.0, 130.0)
HAMMER_LEVEL_DB = (112.0, 124.0)


def nail_gun(rng: np.random.Generator, count: int = 8, level_db: float | None = None,
             hammer: bool = False) -> list[Emission]:
    """A nail gun (or hammering when ``hammer``): repeated ringing impacts on a roof.

    Each hit is :func:`damped_modes` with modes at 1-4 kHz (nail gun, 5 ms decay, 118-130 dB
    at 1 m, 0.3-1.5 s apart) or 0.8-3 kHz (hammer, 20 ms decay, 112-124 dB, about 2 per
    second), plus the contact click.
    """
    lo, hi = HAMMER_LEVEL_DB if hammer else NAILGUN_LEVEL_DB
    base = _level(rng, level_db, lo, hi)
    gap = (0.4, 0.6) if hammer else (0.3, 1.5)
    band = (800.0, 3000.0) if hammer else (1000.0, 4000.0)
    tau = 0.02 if hammer else 0.005
    kind = "hammering" if hammer else "nail_gun"
    out, t = [], 0.0
    for _ in range(count):
        db = base + float(rng.normal(0.0, 1.5))
        peak = float(db_to_pa(db))
        freqs = rng.uniform(*band, 2)
        wave = (lambda p, f: lambda t: damped_modes(t, [0.6 * p, 0.4 * p], f, [tau, tau / 2], click_pa=0.5 * p))(peak, freqs)
        out.append(Emission(t, wave, 8 * tau, db, kind))
        t += float(rng.uniform(*gap))
    return out


BAG_POP_LEVEL_DB = (125.0, 138.0)


def bag_pop(rng: np.random.Generator, level_db: float | None = None) -> list[Emission]:
    """A paper bag or balloon popping: a very short Friedlander pulse (0.1-0.25 ms), 125-138 dB at 1 m."""
    db = _level(rng, level_db, *BAG_POP_LEVEL_DB)
    positive_s = float(rng.uniform(0.1e-3, 0.25e-3))
    return [Emission(0.0, _muzzle(db, positive_s), 10 * positive_s, db, "bag_pop")]


def make_emissions(kind: str, rng: np.random.Generator, **params) -> list[Emission]:
    """The emissions of one event of ``kind`` (a key of :data:`KINDS`), with its parameters."""
    try:
        factory = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown source kind {kind!r} (expected one of {', '.join(KINDS)})") from None
    return factory(rng, **params)


KINDS: dict[str, Callable[..., list[Emission]]] = {
    "handgun": lambda rng, **p: gunfire("handgun", rng, **p),
    "rifle": lambda rng, **p: gunfire("rifle", rng, **p),
    "firecrackers": firecrackers,
    "fireworks": fireworks_mortar,
    "backfire": car_backfire,
    "door_slam": lambda rng, **p: slam(rng, kind="door_slam", **p),
    "dumpster": lambda rng, **p: slam(rng, kind="dumpster", **p),
    "nail_gun": nail_gun,
    "hammering": lambda rng, **p: nail_gun(rng, hammer=True, **p),
    "bag_pop": bag_pop,
}
