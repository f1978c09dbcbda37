"""Render a scenario to the audio each sensor would record: WAV clips, sensors CSV, truth.

Each sensor gets WAV files in the node's recording format: 48 kHz (nominal; the true rate is
off by the sensor's ppm), channel 1 the microphone, channel 2 the PPS through the AC-coupled
input. Only the windows around what a sensor can hear are rendered (plus PPS edges either
side), unless ``continuous``; a window is noise plus, per event, the source convolved with
the sensor's impulse response (:func:`simulator.propagation.impulse_response`) by FFT.

Output folder::

    sensors.csv       the sensors as their GPS reports them (DESIGN.md Sensors CSV)
    sensors_true.csv  where they really are
    truth.jsonl       one line per emission: true time, place, kind, shooter, round
    arrivals.jsonl    true first arrival of each emission at each rendered sensor
    clips.csv         sensor,file,t0_ns,start_utc,samples,rate_hz: feed to `earwitness detect`
    audio/SENSOR-NNN.wav
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import math
import pathlib
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from earwitness.units import NS_PER_S
from simulator import propagation, sources
from simulator.propagation import Arrivals
from simulator.scenario import STREAM_ECHOES, STREAM_GLITCH, STREAM_NLOS, STREAM_NOISE, Event, Scenario
from simulator.sensors import SELF_NOISE_DB, SensorModel, apply_glitches, glitches

PRE_S = 1.2              # window starts this long before the first arrival: a PPS edge before it
POST_S = 1.0             # and ends this long after the echo tail
AUDIBLE_MARGIN_DB = -6.0  # render where the estimated peak is within this of the background Leq
REFERENCE_FREQ_HZ = 1000.0  # absorption at this frequency for the audibility estimate
SOURCE_PAD = 16          # samples either side of an emission's support, for the decimation filter
SUBTYPES = {"int16": "PCM_16", "float": "FLOAT"}


@dataclass
class Group:
    """Emissions of one event from one point (a burst; a shell's burst is its own group)."""

    event: Event
    emissions: list[sources.Emission]
    pos: np.ndarray
    t_s: float            # onset of the first emission, seconds after the scenario start
    duration_s: float     # until the end of the last emission's waveform
    key: int              # index within the event, for the random streams


def groups(scn: Scenario) -> list[Group]:
    """Every event's emissions grouped by source point, in time order."""
    out = []
    for ev in scn.events:
        by_dz: dict[float, list] = {}
        for em in scn.emissions(ev):
            by_dz.setdefault(em.dz_m, []).append(em)
        for key, (dz, ems) in enumerate(sorted(by_dz.items(), key=lambda kv: kv[1][0].t_s)):
            t0 = ems[0].t_s
            dur = max(e.t_s + e.duration_s for e in ems) - t0
            out.append(Group(ev, ems, ev.pos + np.array([0.0, 0.0, dz]), ev.t_s + t0, dur, key))
    return sorted(out, key=lambda g: g.t_s)


@dataclass
class Plan:
    """What to render: per sensor index, merged windows (t0_s, t1_s, [group indices])."""

    groups: list[Group]
    arrivals: list[Arrivals]                 # discrete arrivals of each group at every sensor
    windows: dict[int, list[tuple[float, float, list[int]]]] = field(default_factory=dict)


def group_arrivals(scn: Scenario, g: Group) -> Arrivals:
    """Discrete arrivals (direct/NLOS, ground, walls) of a group at every sensor's true position."""
    draws = propagation.nlos_draws(scn.rng(STREAM_NLOS, g.event.index, g.key), len(scn.array))
    return propagation.discrete_arrivals(g.pos, scn.array.xyz, scn.atmosphere, scn.environment_for(g.event),
                                         draws, g.event.azimuth_deg)


def first_arrivals(arr: Arrivals, n: int):
    """Index (into ``arr``) of each sensor's first arrival: the direct or NLOS path (kind 0/1), one per sensor."""
    rows = np.nonzero(arr.kind <= propagation.NLOS)[0]
    order = np.empty(n, dtype=np.int64)
    order[arr.rcv[rows]] = rows
    return order


def estimated_peak_db(scn: Scenario, g: Group, arr: Arrivals) -> np.ndarray:
    """Rough peak level (dB SPL) of the group's loudest emission at each sensor, to decide what is audible."""
    first = arr.select(first_arrivals(arr, len(scn.array)))
    loudest = max(e.peak_db for e in g.emissions)
    return loudest + propagation.level_change_db(first, scn.atmosphere, REFERENCE_FREQ_HZ)


def plan(scn: Scenario, sensor_indices=None, continuous: bool = False, t_range=None) -> Plan:
    """Decide which windows of which sensors to render.

    A sensor renders a window around every group whose estimated peak reaches it above its
    background minus a margin; windows that overlap are merged. ``t_range`` (t0_s, t1_s)
    keeps only groups starting inside it.
    """
    gs = groups(scn)
    if t_range is not None:
        gs = [g for g in gs if t_range[0] <= g.t_s <= t_range[1]]
    arrs = [group_arrivals(scn, g) for g in gs]
    models = scn.sensor_models()
    idx = range(len(scn.array)) if sensor_indices is None else sensor_indices
    p = Plan(gs, arrs)
    tail_s = scn.environment.echo_decay_s + POST_S
    for i in idx:
        if continuous:
            p.windows[i] = [(0.0, scn.duration_s, list(range(len(gs))))]
            continue
        floor_db = scn.noise_level_db(models[i]) + AUDIBLE_MARGIN_DB
        spans = []
        for k, (g, arr) in enumerate(zip(gs, arrs)):
            rows = np.nonzero(arr.rcv == i)[0]
            if estimated_peak_db(scn, g, arr)[i] < floor_db:
                continue
            t_first = g.t_s + float(arr.delay_s[rows].min())
            t_last = g.t_s + g.duration_s + float(arr.delay_s[rows].max())
            spans.append([max(0.0, math.floor(t_first - PRE_S)), min(scn.duration_s, math.ceil(t_last + tail_s)), [k]])
        spans.sort()
        merged: list = []
        for s in spans:
            if merged and s[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], s[1])
                merged[-1][2] += s[2]
            else:
                merged.append(s)
        p.windows[i] = [tuple(m) for m in merged]
    return p


def _source_buffer(g: Group, model: SensorModel, onset_pos: float, base: int):
    """The group's emissions sampled at the sensor's own rate from absolute sample ``base``
    (at least SOURCE_PAD samples before the onset at fractional index ``onset_pos``)."""
    rate = model.rate_at(g.t_s)
    n = int(math.ceil(g.duration_s * rate)) + 2 * SOURCE_PAD
    buf = np.zeros(n)
    g_t0 = g.emissions[0].t_s
    for em in g.emissions:
        off = onset_pos - base + (em.t_s - g_t0) * rate     # fractional index of this onset in buf
        k0 = max(0, int(math.floor(off)) - SOURCE_PAD)
        m = min(n - k0, int(math.ceil(em.duration_s * rate)) + 2 * SOURCE_PAD)
        buf[k0:k0 + m] += sources.sample(em, rate, (k0 - off) / rate, m)
    return buf


def _crack(scn: Scenario, g: Group, i: int, model: SensorModel, n0: int, n: int) -> np.ndarray:
    """Bullet cracks (N-waves, Whitham) of a supersonic group at sensor ``i``, sampled into a window."""
    out = np.zeros(n)
    ck = g.event.crack
    delay, miss = propagation.bullet_crack(g.pos, ck.azimuth_deg, ck.elevation_deg, ck.bullet_mps, ck.range_m,
                                           scn.array.xyz[i], scn.atmosphere)
    if not np.isfinite(delay[0]):
        return out
    peak, dur = sources.whitham_n_wave(miss[0], ck.bullet_mps / scn.atmosphere.c_mps, ck.diameter_m, ck.length_m)
    wave = sources.Emission(0.0, lambda t: sources.n_wave(t, float(peak), float(dur)), float(dur) + 1e-4, 0.0, "crack")
    g_t0 = g.emissions[0].t_s
    for em in g.emissions:
        t_arr = g.t_s + (em.t_s - g_t0) + float(delay[0])
        pos = float(model.sample_index(t_arr)) - n0
        k0 = int(math.floor(pos)) - SOURCE_PAD
        m = int(math.ceil(wave.duration_s * model.rate_hz)) + 2 * SOURCE_PAD
        lo, hi = max(k0, 0), min(k0 + m, n)
        if hi > lo:
            rate = model.rate_at(t_arr)
            seg = sources.sample(wave, rate, (k0 - pos) / rate, m)
            out[lo:hi] += seg[lo - k0:hi - k0]
    return out


def render_window(scn: Scenario, p: Plan, i: int, t0_s: float, t1_s: float, group_ids) -> tuple[int, np.ndarray, dict]:
    """Sensor ``i``'s recording from true time ``t0_s`` to ``t1_s``: (UTC ns of sample 0, float32 (N, 2), info).

    Channel 0 is the microphone in full-scale units (clipped), channel 1 the PPS. ``info``
    holds the sample index of the first sample on the sensor's clock and the glitches.
    """
    model = scn.sensor_models()[i]
    n0 = int(math.ceil(model.sample_index(t0_s)))
    n = int(math.floor(model.sample_index(t1_s))) - n0
    t_first = float(model.sample_times(n0, 1)[0])
    rng = scn.rng(STREAM_NOISE, i, int(t0_s * 1000))
    rate = model.rate_at(t0_s)
    pa = propagation.urban_noise(n, rate, scn.noise_level_db(model), rng, floor_db=SELF_NOISE_DB)
    for k in group_ids:
        g, arr = p.groups[k], p.arrivals[k]
        mine = arr.select(arr.rcv == i)
        first = mine.select(mine.kind <= propagation.NLOS)
        tail = propagation.diffuse_arrivals(scn.rng(STREAM_ECHOES, g.event.index, g.key, i), first, scn.atmosphere,
                                            scn.environment)
        allarr = Arrivals.concat([mine, tail])
        onset = float(model.sample_index(g.t_s))
        base = int(math.floor(onset)) - SOURCE_PAD
        pos = model.sample_index(g.t_s + allarr.delay_s) - onset
        h, origin = propagation.impulse_response(allarr, scn.atmosphere, model.rate_at(g.t_s), pos=pos)
        y = fftconvolve(_source_buffer(g, model, onset, base), h)
        at = base + origin - n0
        lo, hi = max(at, 0), min(at + len(y), n)
        if hi > lo:
            pa[lo:hi] += y[lo - at:hi - at]
        if g.event.crack is not None:
            pa += _crack(scn, g, i, model, n0, n)
    mic = model.to_full_scale(pa)
    pps = model.pps(t_first, n, (scn.start_ns % NS_PER_S) / NS_PER_S, seed=i)
    audio = np.column_stack([mic, pps]).astype(np.float32)
    drops, overruns = glitches(scn.rng(STREAM_GLITCH, i, int(t0_s * 1000)), model, n)
    audio = apply_glitches(audio, drops, overruns)
    t0_ns = scn.start_ns + int(round(t_first * NS_PER_S))
    return t0_ns, audio, {"n0": n0, "dropouts": drops, "overruns": overruns}


def utc_iso(t_ns: int) -> str:
    """UTC ISO 8601 with microseconds and a Z, as ``earwitness detect --start-utc`` takes it."""
    t = dt.datetime.fromtimestamp(t_ns // NS_PER_S, dt.timezone.utc).replace(microsecond=(t_ns % NS_PER_S) // 1000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Progress:
    """One status line on stderr, rewritten in place on a terminal, a line at most every few seconds otherwise."""

    def __init__(self, label: str, total: int, stream=None, every_s: float = 2.0):
        self.label, self.total, self.stream, self.every_s = label, total, stream or sys.stderr, every_s
        self.t0 = self.last = time.monotonic()
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def update(self, done: int, extra: str = "", final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < (0.2 if self.tty else self.every_s):
            return
        self.last = now
        line = f"{self.label}: {done}/{self.total} {extra} ({now - self.t0:.1f} s)"
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.stream.flush()


def render(scn: Scenario, outdir, sensor_ids=None, continuous: bool = False, t_range=None,
           dtype: str = "int16", progress: bool = True) -> dict:
    """Render ``scn`` into ``outdir`` (see the module docstring); returns a summary.

    Parameters
    ----------
    sensor_ids : list of str, optional
        Render only these sensors (the audio of each is the same as in a full render).
    continuous : bool
        One file per sensor covering the whole scenario instead of windows around events.
    t_range : (float, float), optional
        Only events starting within these seconds after the scenario start.
    dtype : {"int16", "float"}
        Sample format of the WAV files.
    progress : bool
        Report progress on stderr.

    Returns
    -------
    dict with ``sensors``, ``clips``, ``sensor_seconds`` (audio rendered, per sensor summed),
    ``wall_s`` and ``outdir``.
    """
    if dtype not in SUBTYPES:
        raise ValueError(f"unknown sample format {dtype!r} (int16 or float)")
    t_start = time.monotonic()
    out = pathlib.Path(outdir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    ids = list(scn.array.ids) if sensor_ids is None else list(sensor_ids)
    index = {s: i for i, s in enumerate(scn.array.ids)}
    unknown = [s for s in ids if s not in index]
    if unknown:
        raise ValueError(f"unknown sensor {unknown[0]!r}")
    p = plan(scn, [index[s] for s in ids], continuous, t_range)
    models = scn.sensor_models()
    sub = scn.array.subset(ids)
    sub.write_csv(out / "sensors.csv", sub.xyz + np.array([models[index[s]].gps_offset_m for s in ids]))
    sub.write_csv(out / "sensors_true.csv")
    kept = {g.event.index for g in p.groups}
    write_jsonl(out / "truth.jsonl", [r for r in scn.truth() if r["event"] in kept])
    clips, arrivals, seconds = [], [], 0.0
    bar = Progress("render", len(ids)) if progress else None
    for done, sid in enumerate(ids, 1):
        i = index[sid]
        for w, (t0_s, t1_s, gids) in enumerate(p.windows[i]):
            t0_ns, audio, info = render_window(scn, p, i, t0_s, t1_s, gids)
            name = f"audio/{sid}-{w:03d}.wav"
            sf.write(out / name, audio, models[i].rate_hz, subtype=SUBTYPES[dtype])
            seconds += len(audio) / models[i].rate_hz
            clips.append({"sensor": sid, "file": name, "t0_ns": t0_ns, "start_utc": utc_iso(t0_ns),
                          "samples": len(audio), "rate_hz": models[i].rate_hz,
                          "overruns": len(info["overruns"]), "dropouts": len(info["dropouts"])})
            arrivals += _arrival_rows(scn, p, i, gids)
        if bar:
            bar.update(done, f"sensors, {seconds:.0f} sensor-s of audio")
    if bar:
        bar.update(len(ids), f"sensors, {seconds:.0f} sensor-s of audio", final=True)
    with open(out / "clips.csv", "w", newline="") as fh:
        fields = list(clips[0]) if clips else ["sensor", "file", "t0_ns", "start_utc", "samples", "rate_hz"]
        wr = csv.DictWriter(fh, fieldnames=fields)
        wr.writeheader()
        wr.writerows(clips)
    write_jsonl(out / "arrivals.jsonl", sorted(arrivals, key=lambda r: r["t_ns"]))
    return {"sensors": ids, "clips": clips, "sensor_seconds": seconds, "wall_s": time.monotonic() - t_start,
            "outdir": str(out)}


def _arrival_rows(scn: Scenario, p: Plan, i: int, gids) -> list[dict]:
    rows = []
    sid = scn.array.ids[i]
    for k in gids:
        g, arr = p.groups[k], p.arrivals[k]
        first = arr.select(first_arrivals(arr, len(scn.array))[[i]])
        peak = estimated_peak_db(scn, g, arr)[i]
        g_t0 = g.emissions[0].t_s
        for em in g.emissions:
            t = g.t_s + (em.t_s - g_t0) + float(first.delay_s[0])
            rows.append({"sensor": sid, "t_ns": scn.start_ns + int(round(t * NS_PER_S)), "event": g.event.index,
                         "path": propagation.KIND_NAMES[int(first.kind[0])],
                         "spl_db": round(float(peak + em.peak_db - max(e.peak_db for e in g.emissions)), 1)})
    return rows


def write_jsonl(path, rows) -> None:
    with open(path, "w") as fh:
        for r in rows:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")
