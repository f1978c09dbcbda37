"""Outdoor sound propagation from a source to many sensors, as a set of arrivals per sensor.

Each path from a source to a sensor is one arrival: a delay, a broadband gain (spherical
spreading, reflection losses, directivity), a path length (for air absorption, ISO 9613-1)
and, for non-line-of-sight paths, a diffraction path difference (Maekawa's barrier loss).
:func:`transfer_kernels` turns arrivals into short causal filters with exact fractional
delays; :func:`impulse_response` assembles them into one sensor's impulse response. The
paths are:

* the direct path, or when the line of sight is blocked (in a city, more often the farther
  the sensor) a diffracted first arrival 1-30 ms late and duller;
* the ground reflection (image source below the ground plane);
* building echoes: image sources of vertical wall segments near the source;
* a diffuse tail of later echoes for a second or two (the "urban reverberation").

Wind and temperature enter through the effective sound speed along each path. Background
noise (:func:`urban_noise`) is set by the place and the hour.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.fft import next_fast_len
from scipy.signal import fftconvolve

from earwitness.units import KELVIN_OFFSET, speed_of_sound
from simulator.sources import P_REF_PA

T0_K = 293.15                  # ISO 9613-1 reference temperature
T01_K = 273.16                 # triple point of water
P_REF_KPA = 101.325            # ISO 9613-1 reference pressure
NEPER_DB = 8.686               # 20 log10(e): the ISO formula's nepers-to-dB factor
ABSORPTION_FLOOR_DB = 150.0    # attenuations beyond this are numerically zero; keeps the cepstrum finite
MIC_FLAT_HZ = 12000.0          # the microphone and ADC are flat to here, then roll off smoothly
MIC_NYQUIST_DB = 80.0          # to this much down at the Nyquist frequency
KERNEL_LEAD = 8                # samples of a kernel before its arrival: room for the band-limited step
MIN_PATH_M = 0.5               # spreading is referred to 1 m; closer than this is the source itself


def air_absorption_db_per_m(freq_hz, temp_c=20.0, humidity_pct=70.0, pressure_kpa=P_REF_KPA):
    """Atmospheric absorption coefficient α in dB/m, ISO 9613-1:1993 equations (3)-(5), (B.1)-(B.3).

    Relaxation frequencies of oxygen and nitrogen from the molar concentration of water
    vapour h (from relative humidity through the saturation pressure, Annex B), then
    α = 8.686 f² [1.84e-11 (pa/pr)^-1 (T/T0)^½ + (T/T0)^-5/2 (0.01275 e^(-2239.1/T)/(frO + f²/frO)
    + 0.1068 e^(-3352/T)/(frN + f²/frN))]. E.g. 1 kHz, 20 °C, 70 % RH: 4.99 dB/km.
    """
    f = np.asarray(freq_hz, dtype=float)
    t_k = float(temp_c) + KELVIN_OFFSET
    pa = float(pressure_kpa) / P_REF_KPA
    c_sat = -6.8346 * (T01_K / t_k) ** 1.261 + 4.6151
    h = float(humidity_pct) * 10.0 ** c_sat / pa
    fr_o = pa * (24.0 + 4.04e4 * h * (0.02 + h) / (0.391 + h))
    fr_n = pa * (t_k / T0_K) ** -0.5 * (9.0 + 280.0 * h * np.exp(-4.170 * ((t_k / T0_K) ** (-1.0 / 3.0) - 1.0)))
    return NEPER_DB * f * f * (
        1.84e-11 / pa * (t_k / T0_K) ** 0.5
        + (t_k / T0_K) ** -2.5 * (0.01275 * np.exp(-2239.1 / t_k) / (fr_o + f * f / fr_o)
                                  + 0.1068 * np.exp(-3352.0 / t_k) / (fr_n + f * f / fr_n)))


def maekawa_loss_db(freq_hz, path_difference_m, c_mps=343.0):
    """Diffraction loss behind a barrier, 10 log10(3 + 20 N) dB with Fresnel number N = 2δf/c.

    Maekawa, "Noise reduction by screens", Applied Acoustics 1, 1968 (the chart's usual
    fit); ``path_difference_m`` is δ, the detour over or around the obstacle.
    """
    n = 2.0 * np.asarray(path_difference_m, dtype=float) * np.asarray(freq_hz, dtype=float) / c_mps
    return 10.0 * np.log10(3.0 + 20.0 * np.maximum(n, 0.0))


@dataclass
class Atmosphere:
    """Weather along the paths: temperature, humidity, pressure, wind (speed, direction it blows FROM)."""

    temperature_c: float = 20.0
    humidity_pct: float = 70.0
    pressure_kpa: float = P_REF_KPA
    wind_mps: float = 0.0
    wind_from_deg: float = 270.0

    @property
    def c_mps(self) -> float:
        return float(speed_of_sound(self.temperature_c))

    def wind_vector(self) -> np.ndarray:
        """Wind velocity (east, north) in m/s; ``wind_from_deg`` is a compass bearing."""
        to = np.deg2rad(self.wind_from_deg + 180.0)
        return self.wind_mps * np.array([np.sin(to), np.cos(to)])

    def travel_time_s(self, src, rcv):
        """Straight-path travel times from ``src`` (3,) to ``rcv`` (N, 3), in s, and the path lengths.

        The effective sound speed c + w·u along the horizontal path direction u (the
        effective-sound-speed approximation, e.g. Salomons, "Computational Atmospheric
        Acoustics", 2001, §2.3).
        """
        d = np.atleast_2d(rcv) - np.asarray(src, dtype=float)
        dist_m = np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        along = d[:, :2] @ self.wind_vector() / dist_m
        return dist_m / (self.c_mps + along), dist_m

    def absorption_db_per_m(self, freq_hz):
        return air_absorption_db_per_m(freq_hz, self.temperature_c, self.humidity_pct, self.pressure_kpa)


@dataclass
class Wall:
    """A vertical reflecting wall: a segment from (x0, y0) to (x1, y1), ``height_m`` tall."""

    x0: float
    y0: float
    x1: float
    y1: float
    height_m: float = 15.0
    reflection: float = 0.8


@dataclass
class Environment:
    """Where the sound travels: ground, walls, how often and how badly the line of sight is blocked.

    ``nlos_probability`` is the chance that a sensor far from the source (≫ ``nlos_scale_m``)
    hears only a diffracted first arrival; nearer sensors are blocked less often,
    p(d) = p (1 - exp(-d / scale)). Blocked paths are ``nlos_delay_ms`` late (log-uniform).
    ``excess_db_per_km`` (up to ``excess_max_db``) is the urban excess attenuation over
    spreading and absorption: screening by rows of buildings, the "housing" term of ISO
    9613-2 Annex A.3 (0.1 B dB/m for a built-up fraction B). 12 dB/km matches the first-pulse
    levels against distance in the Pittsburgh 2018 data (FP1-FP3), whose sensors hear
    handguns out to about 1 km.
    ``echo_density_per_s`` and ``echo_decay_s`` (time to fall 60 dB) shape the diffuse tail.
    """

    ground_reflection: float = 0.9
    walls: list[Wall] = field(default_factory=list)
    excess_db_per_km: float = 12.0
    excess_max_db: float = 25.0
    nlos_probability: float = 0.3
    nlos_scale_m: float = 300.0
    nlos_delay_ms: tuple[float, float] = (1.0, 30.0)
    echo_density_per_s: float = 400.0
    echo_decay_s: float = 1.5
    echo_reflection: float = 0.1
    echo_min_delay_s: float = 0.01


# Arrival kinds
DIRECT, NLOS, GROUND, WALL, DIFFUSE = 0, 1, 2, 3, 4
KIND_NAMES = ("direct", "nlos", "ground", "wall", "diffuse")
# Muzzle-blast directivity: front-to-back difference (Maher 2007 measured 10-20 dB).
FRONT_TO_BACK_DB = 12.0


@dataclass
class Arrivals:
    """Arrivals of one emission at N sensors, flat: row i is path ``kind[i]`` to sensor ``rcv[i]``."""

    rcv: np.ndarray
    delay_s: np.ndarray
    gain: np.ndarray
    path_m: np.ndarray
    detour_m: np.ndarray
    kind: np.ndarray

    def select(self, mask) -> "Arrivals":
        return Arrivals(*(a[mask] for a in (self.rcv, self.delay_s, self.gain, self.path_m, self.detour_m, self.kind)))

    @staticmethod
    def concat(parts) -> "Arrivals":
        columns = zip(*((p.rcv, p.delay_s, p.gain, p.path_m, p.detour_m, p.kind) for p in parts))
        return Arrivals(*(np.concatenate(cols) for cols in columns))


def level_change_db(arr: Arrivals, atm: Atmosphere, freq_hz: float = 1000.0) -> np.ndarray:
    """Each arrival's level relative to the source at 1 m, in dB, at one frequency.

    Spreading and reflection losses (the arrival's gain), air absorption over its path
    (ISO 9613-1) and Maekawa's loss for diffracted paths: what a peak level at 1 m becomes,
    for a pulse whose energy lies near ``freq_hz``.
    """
    out = 20.0 * np.log10(np.maximum(np.abs(arr.gain), 1e-30)) - atm.absorption_db_per_m(freq_hz) * arr.path_m
    return out - np.where(arr.detour_m > 0, maekawa_loss_db(freq_hz, arr.detour_m, atm.c_mps), 0.0)


def directivity_gain(src, rcv, azimuth_deg):
    """Muzzle-blast directivity, a cardioid-like ΔL = -FRONT_TO_BACK_DB (1 - cos θ)/2 (θ off the barrel)."""
    if azimuth_deg is None:
        return np.ones(len(np.atleast_2d(rcv)))
    d = np.atleast_2d(rcv)[:, :2] - np.asarray(src)[:2]
    az = np.deg2rad(azimuth_deg)
    cos_t = d @ np.array([np.sin(az), np.cos(az)]) / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
    return 10.0 ** (-FRONT_TO_BACK_DB * (1.0 - cos_t) / 2.0 / 20.0)


def nlos_draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform draws (n, 2) that decide blocking and delay per sensor: drawn for a whole array
    at once so that a sensor's fate does not depend on which other sensors are rendered."""
    return rng.random((n, 2))


def discrete_arrivals(src, rcv, atm: Atmosphere, env: Environment, draws, azimuth_deg=None) -> Arrivals:
    """Direct (or NLOS), ground-reflected and wall-reflected arrivals of a source at sensors ``rcv`` (N, 3).

    Image-source method for the ground plane z = 0 and for each wall segment (Allen & Berkley,
    JASA 65, 1979, in its outdoor form); a wall reflection counts only where the specular
    point lies on the segment and below its top. ``draws`` (N, 2) from :func:`nlos_draws`.
    """
    src = np.asarray(src, dtype=float)
    rcv = np.atleast_2d(np.asarray(rcv, dtype=float))
    idx = np.arange(len(rcv))
    c = atm.c_mps
    direct_t, direct_m = atm.travel_time_s(src, rcv)
    gain = directivity_gain(src, rcv, azimuth_deg) / np.maximum(direct_m, MIN_PATH_M)
    p_block = env.nlos_probability * (1.0 - np.exp(-direct_m / env.nlos_scale_m))
    blocked = draws[:, 0] < p_block
    lo, hi = np.log(env.nlos_delay_ms[0]), np.log(env.nlos_delay_ms[1])
    extra_s = np.exp(lo + (hi - lo) * draws[:, 1]) * 1e-3
    detour = np.where(blocked, extra_s * c, 0.0)
    first = Arrivals(idx, direct_t + np.where(blocked, extra_s, 0.0),
                     gain * direct_m / (direct_m + detour), direct_m + detour, detour,
                     np.where(blocked, NLOS, DIRECT))
    parts = [first]
    if env.ground_reflection > 0:
        image = src * np.array([1.0, 1.0, -1.0])
        t, m = atm.travel_time_s(image, rcv)
        g = env.ground_reflection * directivity_gain(src, rcv, azimuth_deg) / np.maximum(m, MIN_PATH_M)
        # A blocked direct path blocks its ground reflection as well (same detour, same loss).
        parts.append(Arrivals(idx, t + np.where(blocked, extra_s, 0.0), g * m / (m + detour), m + detour, detour,
                              np.full(len(rcv), GROUND)))
    for wall in env.walls:
        parts.append(_wall_arrivals(src, rcv, atm, wall, azimuth_deg))
    out = Arrivals.concat(parts)
    excess_db = np.minimum(env.excess_db_per_km * out.path_m / 1000.0, env.excess_max_db)
    out.gain = out.gain * 10.0 ** (-excess_db / 20.0)
    return out


def _wall_arrivals(src, rcv, atm: Atmosphere, wall: Wall, azimuth_deg=None) -> Arrivals:
    """One wall's specular reflections at sensors ``rcv`` (N, 3), from the source's image in the wall.

    The sound leaves the muzzle towards the reflection point (the receiver's image), so the
    muzzle directivity is taken in that direction: a wall behind the shooter returns the back blast.
    """
    a = np.array([wall.x0, wall.y0])
    b = np.array([wall.x1, wall.y1])
    length = np.linalg.norm(b - a)
    u = (b - a) / length
    n = np.array([-u[1], u[0]])
    centre = (a + b) / 2
    s_side = (src[:2] - centre) @ n
    image = src.copy()
    image[:2] = src[:2] - 2.0 * s_side * n
    r_side = (rcv[:, :2] - centre) @ n
    i_side = -s_side
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = i_side / (i_side - r_side)            # where image→sensor crosses the wall's line
    hit = image[None, :] + lam[:, None] * (rcv - image[None, :])
    along = (hit[:, :2] - centre) @ u
    ok = (np.sign(r_side) == np.sign(s_side)) & (np.abs(along) <= length / 2) & (hit[:, 2] <= wall.height_m) & (hit[:, 2] >= 0)
    ok &= np.isfinite(lam)
    t, m = atm.travel_time_s(image, rcv)
    rows = np.nonzero(ok)[0]
    leave = directivity_gain(src, hit[rows], azimuth_deg)
    return Arrivals(rows, t[rows], wall.reflection * leave / np.maximum(m[rows], MIN_PATH_M), m[rows],
                    np.zeros(len(rows)), np.full(len(rows), WALL))


def diffuse_arrivals(rng: np.random.Generator, first: Arrivals, atm: Atmosphere, env: Environment) -> Arrivals:
    """The diffuse echo tail after each sensor's first arrival, a Poisson train of random-sign taps.

    A stochastic late-reverberation model (as in Schroeder's statistical reverberation, with
    Polack's exponentially decaying Gaussian tail): taps at density ``echo_density_per_s``,
    each with the spreading loss of its longer path, ``echo_reflection`` and an envelope
    falling 60 dB in ``echo_decay_s``. ``first`` holds one arrival per sensor.
    """
    counts = rng.poisson(env.echo_density_per_s * env.echo_decay_s, len(first.rcv))
    rcv = np.repeat(first.rcv, counts)
    t0 = np.repeat(first.delay_s, counts)
    m0 = np.repeat(first.path_m, counts)
    g0 = np.repeat(first.gain * first.path_m, counts)     # directivity and blocking, spreading removed
    lag = env.echo_min_delay_s + rng.random(len(rcv)) * env.echo_decay_s
    path = m0 + lag * atm.c_mps
    env_db = -60.0 * lag / env.echo_decay_s
    gain = g0 * env.echo_reflection * rng.standard_normal(len(rcv)) * 10.0 ** (env_db / 20.0) / path
    return Arrivals(rcv, t0 + lag, gain, path, np.zeros(len(rcv)), np.full(len(rcv), DIFFUSE))


def _minimum_phase(log_mag: np.ndarray) -> np.ndarray:
    """Minimum-phase spectra from log magnitudes (K, n/2+1) by folding the real cepstrum.

    Oppenheim & Schafer, "Discrete-Time Signal Processing", §12.6 (homomorphic method).
    """
    n = 2 * (log_mag.shape[-1] - 1)
    cep = np.fft.irfft(log_mag, n)
    fold = np.zeros(n)
    fold[0] = 1.0
    fold[1:n // 2] = 2.0
    fold[n // 2] = 1.0
    return np.exp(np.fft.rfft(cep * fold, n))


def receiver_rolloff_db(freq_hz, rate_hz: float) -> np.ndarray:
    """Attenuation (dB) of the microphone capsule and the ADC's anti-alias filter together.

    Flat to MIC_FLAT_HZ, then a quadratic fall in dB to MIC_NYQUIST_DB at Nyquist: smooth,
    so that with the path filters it makes a short minimum-phase (causal) response and a
    fractional delay (band-limited interpolation) leaves no visible pre-echo; a brick-wall
    band edge would ring before each onset and bias every picked arrival early.
    """
    f = np.asarray(freq_hz, dtype=float)
    nyq = rate_hz / 2.0
    x = np.clip((f - MIC_FLAT_HZ) / max(nyq - MIC_FLAT_HZ, 1.0), 0.0, None)
    return MIC_NYQUIST_DB * x * x


def transfer_kernels(arr: Arrivals, atm: Atmosphere, rate_hz: float, n: int = 1024, pos=None):
    """Causal FIR kernels (K, n) for arrivals, and each kernel's start in whole samples.

    Each kernel is the arrival's gain × the minimum-phase filter whose magnitude is the air
    absorption over its path (ISO 9613-1, :func:`air_absorption_db_per_m`), for
    diffracted paths Maekawa's loss (:func:`maekawa_loss_db`), and the receiver's roll-off
    (:func:`receiver_rolloff_db`); its fractional delay is a
    linear phase, so onsets land between samples exactly. Kernel k starts at sample
    ``start[k]`` (= floor(delay·rate) - KERNEL_LEAD). ``pos`` overrides delay·rate with the
    arrivals' fractional sample positions (a sensor whose clock runs off by some ppm).
    """
    f = np.fft.rfftfreq(n, 1.0 / rate_hz)
    att_db = np.outer(arr.path_m, atm.absorption_db_per_m(f)) + receiver_rolloff_db(f, rate_hz)
    if np.any(arr.detour_m > 0):
        att_db = att_db + np.where(arr.detour_m[:, None] > 0, maekawa_loss_db(f[None, :], arr.detour_m[:, None], atm.c_mps), 0.0)
    att_db = np.minimum(att_db, ABSORPTION_FLOOR_DB)
    spec = _minimum_phase(-att_db / NEPER_DB)
    pos = arr.delay_s * rate_hz if pos is None else np.asarray(pos, dtype=float)
    start = np.floor(pos).astype(np.int64) - KERNEL_LEAD
    frac = pos - start
    spec = spec * np.exp(-2j * np.pi * np.outer(frac, f / rate_hz)) * arr.gain[:, None]
    return np.fft.irfft(spec, n), start


def impulse_response(arr: Arrivals, atm: Atmosphere, rate_hz: float, n_kernel: int = 1024, pos=None):
    """One sensor's impulse response (Pa per Pa at 1 m) from its arrivals, and its first sample's index.

    Discrete arrivals get their own exact kernel (:func:`transfer_kernels`); diffuse taps are
    summed at whole samples and share the kernel of their median path, because an echo's
    arrival time is random anyway while its count can be thousands. ``pos``: as for
    :func:`transfer_kernels`.
    """
    pos = arr.delay_s * rate_hz if pos is None else np.asarray(pos, dtype=float)
    exact = arr.kind != DIFFUSE
    k_exact, s_exact = transfer_kernels(arr.select(exact), atm, rate_hz, n_kernel, pos[exact])
    diff = arr.select(~exact)
    starts = [s_exact.min()] if len(s_exact) else []
    if len(diff.rcv):
        tap_at = np.round(pos[~exact]).astype(np.int64)
        starts.append(tap_at.min() - KERNEL_LEAD)
    origin = int(min(starts))
    end = int(max(list(s_exact + n_kernel) + ([tap_at.max() + n_kernel] if len(diff.rcv) else [])))
    h = np.zeros(end - origin)
    for kern, s in zip(k_exact, s_exact):
        h[s - origin:s - origin + n_kernel] += kern
    if len(diff.rcv):
        taps = np.zeros(end - origin)
        np.add.at(taps, tap_at - origin, diff.gain)
        mid = Arrivals(np.zeros(1, int), np.array([KERNEL_LEAD / rate_hz]), np.ones(1),
                       np.array([np.median(diff.path_m)]), np.zeros(1), np.array([DIFFUSE]))
        kern, _ = transfer_kernels(mid, atm, rate_hz, n_kernel)
        h += fftconvolve(taps, kern[0])[KERNEL_LEAD:KERNEL_LEAD + len(h)]
    return h, origin


def bullet_crack(shooter, azimuth_deg, elevation_deg, bullet_mps, range_m, rcv, atm: Atmosphere):
    """Arrival delay (s after discharge) and miss distance (m) of a supersonic bullet's shock at sensors.

    The Mach-cone geometry (e.g. Sallai et al., "Acoustic shockwave-based bearing estimation",
    IPSN 2013): the shock heard at a point at perpendicular distance b from the trajectory
    leaves the bullet at the point s along the path (x the sensor's own coordinate along it)
    where the ray to the sensor makes the angle acos(c/v) with the path, the stationary point
    of s/v + sqrt((x-s)² + b²)/c, which is its arrival time. Sensors with s outside
    [0, range_m] hear no crack (NaN).
    """
    rcv = np.atleast_2d(rcv)
    az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
    u = np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)])
    d = rcv - np.asarray(shooter, dtype=float)
    x = d @ u
    b = np.linalg.norm(d - np.outer(x, u), axis=1)
    c = atm.c_mps
    if bullet_mps <= c:
        return np.full(len(rcv), np.nan), b
    cos_t = c / bullet_mps
    s = x - b * cos_t / np.sqrt(1.0 - cos_t ** 2)
    t = s / bullet_mps + np.sqrt((x - s) ** 2 + b ** 2) / c
    return np.where((s >= 0) & (s <= range_m), t, np.nan), b


# Urban background: unweighted Leq by kind of place at the busiest hour, and the night dip.
ZONE_LEVEL_DB = {"quiet": 45.0, "park": 48.0, "residential": 55.0, "commercial": 62.0, "arterial": 70.0}
NIGHT_DIP_DB = 9.0            # typical day-night difference of urban Leq
QUIETEST_HOUR = 3.5
TRAFFIC_CORNER_HZ = 300.0     # road-traffic spectra fall about 6 dB/octave above this
TRAFFIC_WHITE = 0.05          # and level off this far (amplitude) below their low-frequency level


def background_level_db(zone: str, hour: float) -> float:
    """Background Leq (dB SPL, unweighted) of a kind of place at an hour of the day (0-24, local).

    A cosine day-night cycle with its minimum at 03:30 and a 9 dB dip, the shape and range of
    long-term urban measurements (e.g. Brown & Lam, "Urban noise surveys", Applied
    Acoustics 20, 1987; the 10 dB night penalty of Ldn reflects the same cycle).
    """
    try:
        day_db = ZONE_LEVEL_DB[zone]
    except KeyError:
        raise ValueError(f"unknown noise zone {zone!r} (expected one of {', '.join(ZONE_LEVEL_DB)})") from None
    return day_db - NIGHT_DIP_DB / 2.0 * (1.0 + np.cos(2.0 * np.pi * (hour - QUIETEST_HOUR) / 24.0))


def urban_noise(n: int, rate_hz: float, level_db: float, rng: np.random.Generator,
                floor_db: float | None = None) -> np.ndarray:
    """``n`` samples of road-traffic-like background noise in Pa with an Leq of ``level_db``.

    Gaussian noise with the power spectrum of a one-pole low-pass at 300 Hz plus a small
    white part: the -6 dB/octave slope of traffic spectra above a few hundred Hz (e.g. the
    EN 1793-3 normalised traffic spectrum). ``floor_db`` adds a white floor of that level
    (the microphone's self-noise). Synthesised in the frequency domain (random-phase
    spectrum, one inverse FFT), which draws a third of the random numbers a filtered-noise
    generator would.
    """
    m = next_fast_len(max(n, 2), real=True)
    f = np.fft.rfftfreq(m, 1.0 / rate_hz)
    traffic = 1.0 / (1.0 + (f / TRAFFIC_CORNER_HZ) ** 2) + TRAFFIC_WHITE ** 2
    traffic_pa = P_REF_PA * 10.0 ** (level_db / 20.0)
    floor_pa = P_REF_PA * 10.0 ** (floor_db / 20.0) if floor_db is not None else 0.0
    power = traffic_pa ** 2 * traffic / traffic.mean() + floor_pa ** 2
    z = rng.standard_normal((2, len(f)), dtype=np.float32)
    x = np.fft.irfft((z[0] + 1j * z[1]) * np.sqrt(power), m)[:n]
    rms = float(np.sqrt(np.mean(x * x))) or 1.0
    return x * (np.sqrt(traffic_pa ** 2 + floor_pa ** 2) / rms)
