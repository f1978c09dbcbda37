"""The sensor node's pipeline: capture -> detect -> timestamp -> outbox -> MQTT.

Threads, so that nothing slow stands in the way of capture:

- the audio source (PortAudio callback, or a reader thread) only copies into a bounded
  :class:`edge.audio.Ring`;
- the worker reads the ring, feeds the PPS edge finder and the clock model, runs the C
  detector on the microphone channel, stamps each pulse, signs it and commits it to the
  :class:`edge.outbox.Outbox`, and keeps the evidence buffer;
- the :class:`edge.publisher.Publisher` drains the outbox to the broker;
- a health thread reports every ``mqtt.health_interval_s``; a command thread answers the
  cmd topic (clips, health on demand).

Memory is bounded: the ring (``audio.ring_s``), the pulses waiting for their next PPS edge,
paho's in-flight window, one evidence chunk.  Disk is bounded by the outbox and evidence
budgets.
"""
from __future__ import annotations

import collections
import errno
import logging
import os
import pathlib
import queue
import shutil
import threading
import time
from typing import cast

import numpy as np

from earwitness import wire
from earwitness.units import NS_PER_S
from edge import keys
from edge.audio import Chunk, Ring, open_source
from edge.config import Config
from edge.outbox import Outbox
from edge.publisher import Publisher
from edge.timing_watch import TimingWatch

log = logging.getLogger(__name__)

INT16_FULL_SCALE = 32768.0
READ_BLOCKS = 8  # the worker takes up to this many source blocks at once
# ... and wakes once this much audio waits: fewer wake-ups per second cost less CPU, and
# 0.1 s is nothing beside the wait for the next PPS edge.
READ_MIN_S = 0.1
READ_TIMEOUT_S = 0.2
# A pulse is stamped once a PPS edge after it is known (interpolation, not extrapolation),
# or after this long without one.
STAMP_WAIT_S = 1.5
# A pulse the clock cannot time yet waits this long for it (first host times, first labelled
# PPS edge); then it is timed by its capture on the host clock (CAPTURE_TIME_UNC_NS).
UNTIMED_WAIT_S = 10.0
CAPTURE_TIME_UNC_NS = 500_000_000
# Without any absolute time for a replayed file, its sample 0 is "now", known only this well.
SYSTEM_UNC_NS = 30_000_000
# Noise floor: a low percentile of short-block RMS levels over a window, so that impulses
# (a few ms each) and passing loud events do not raise it.
NOISE_BLOCK_S = 0.1
NOISE_WINDOW_S = 60
NOISE_PERCENTILE = 10
MIN_LEVEL_DBFS = -200.0
# Health's pulse rate and outbox_depth_max are over this long. The depth is the peak over the window,
# not since the last report: a report is QoS 0, and one lost (a subscriber still reconnecting after an
# outage) must not take the backlog with it.
PULSE_WINDOW_S = 60
PULSES_KEPT_MAX = 65536   # bounds the pulses kept should no report prune them (over 1000 a second)
COMMAND_QUEUE = 16
KERNEL_PPS_WAIT_S = 1.5
GPS_REOPEN_S = 2.0  # a GPS port that went away is tried again this often
THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"


class NodeError(ValueError):
    """The node cannot start as configured (one line, says why)."""


class NominalClock:
    """Sample index -> UTC at the nominal rate from a known time of sample 0.

    For a replayed file (``timing`` = ``file``: the file's start time is taken as exact,
    what is left is the onset's sample period) or a file with no start time
    (``system``: sample 0 is when the replay began).
    """

    def __init__(self, rate_hz: float, start_ns: int, timing: str, unc_ns: int):
        self.rate_hz, self.start_ns, self.timing, self.unc_ns = float(rate_hz), int(start_ns), timing, int(unc_ns)
        self.gaps = 0
        self._shift: list[tuple[float, int]] = []  # (delivered sample, samples lost before it, cumulative)

    def stamp(self, sample: float) -> tuple[int, int, str]:
        lost = sum(n for at, n in self._shift if at <= sample)
        return self.start_ns + round((sample + lost) * NS_PER_S / self.rate_hz), self.unc_ns, self.timing

    def report_gap(self, sample: float, n_samples: int | None) -> None:
        self.gaps += 1
        if n_samples:
            self._shift.append((sample, int(n_samples)))

    def status(self) -> dict:
        return {"timing": self.timing, "locked": False, "rate_error_ppm": None, "unc_ns": self.unc_ns,
                "system_offset_ns": None, "gaps": self.gaps}


class ModelClock:
    """The timing module's :class:`edge.clock.ClockModel` behind the node's clock face.

    The worker feeds it; the health and command threads read it: one lock for all.
    """

    def __init__(self, rate_hz: float, start_ns: int | None):
        from edge.clock import ClockModel

        self.model = ClockModel(rate_hz)
        self._lock = threading.Lock()
        if start_ns is not None:
            self.model.add_utc_hint(0, start_ns)

    def stamp(self, sample: float) -> tuple[int, int, str] | None:
        """(t_ns, t_unc_ns, timing), or None while nothing maps the sample to UTC yet."""
        from edge.clock import ClockUnavailable

        try:
            with self._lock:
                st = self.model.stamp(sample)
        except ClockUnavailable:
            return None
        return st.t_ns, st.t_unc_ns, st.timing

    def feed(self, method: str, *args) -> None:
        """Call ``ClockModel.<method>(*args)`` (add_edge, add_block, add_nmea_time, ...)."""
        with self._lock:
            getattr(self.model, method)(*args)

    def report_gap(self, sample: float, n_samples: int | None) -> None:
        self.feed("report_gap", sample, n_samples)

    def status(self) -> dict:
        with self._lock:
            return self.model.status()


def _level_dbfs(rms: float) -> float:
    return 20 * np.log10(rms) if rms > 0 else MIN_LEVEL_DBFS


def _load_key(path: pathlib.Path):
    try:
        return keys.load_signing_key(path)
    except FileNotFoundError:
        raise NodeError(f"no node key at {path}; make one with `earwitness node --keygen {path}`") from None
    except ValueError as exc:
        raise NodeError(str(exc)) from None


class Node:
    """One sensor node, as configured; ``run()`` until the stream ends or ``stop()``.

    Parameters
    ----------
    cfg : edge.config.Config
    stdin : binary file, optional
        For ``audio.source = "stdin"`` (default: the process's stdin).
    source : edge.audio.Source, optional
        Audio from this source instead of the one ``cfg.audio`` names (e.g. an
        :class:`edge.audio.ArraySource`: a virtual node of the simulator).
    """

    def __init__(self, cfg: Config, stdin=None, source=None):
        from edge.detector import Detector

        self.cfg = cfg
        self.key = _load_key(cfg.node.key)
        self.node_id = wire.node_id(cfg.node.name)
        self.source = source if source is not None else open_source(cfg.audio)
        if stdin is not None and hasattr(self.source, "stream"):
            self.source.stream = stdin
        rate = self.source.rate_hz
        self.rate_hz = rate
        self.ring = Ring(int(cfg.audio.ring_s * rate), self.source.channels, self.source.dtype)
        try:
            self.detector = Detector(rate, **cfg.detector)
        except ValueError as exc:
            raise NodeError(f"[detector] {exc}") from None
        self.clock, self.pps, self._host_marks = self._make_clock()
        data = cfg.node.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(data / "outbox.db", int(cfg.outbox.budget_mb * 1024 * 1024))
        self._commands: queue.Queue = queue.Queue(COMMAND_QUEUE)
        # Clip requests wait for audio not yet heard (EvidenceBuffer.wait_heard): on a queue and a
        # thread of their own, so a health request is not held up behind them.
        self._clip_commands: queue.Queue = queue.Queue(COMMAND_QUEUE)
        self.commands_dropped = 0
        self.publisher = Publisher(cfg.mqtt, cfg.node.site, cfg.node.name, self.outbox, on_command=self._queue_command)
        self.evidence = self._make_evidence(data, rate)
        # GPS and kernel PPS are read on their own threads and handed to the worker, which
        # alone feeds the clock model.
        self._time_events: queue.SimpleQueue = queue.SimpleQueue()
        self.fix = None
        self.gps_error: str | None = None
        self.gps, self.kernel_pps = self._open_time_sources()
        self._last_mark: tuple[int, int] | None = None  # (delivered sample, host ns) of the newest block
        self._stop = threading.Event()
        self._worker_done = threading.Event()
        self._pending: collections.deque = collections.deque()  # detector pulses not yet stamped
        self._last_edge = -1.0
        self._delivered = 0
        # (monotonic s, outbox depth) at each pulse committed, over the last PULSE_WINDOW_S (see _recent_pulses)
        self._pulses: collections.deque = collections.deque(maxlen=PULSES_KEPT_MAX)
        self._levels: collections.deque = collections.deque(maxlen=round(NOISE_WINDOW_S / NOISE_BLOCK_S))
        self._level_acc = [0.0, 0]
        self.pulses_total = 0
        self.untimed = 0  # pulses the clock never covered, timed by their capture (see _capture_time)
        self.timing_watch = TimingWatch()  # warns when timing degrades and when it recovers
        self._watch_due = 0
        self.error: BaseException | None = None
        self._started = time.monotonic()
        self._cpu0 = (time.process_time(), time.monotonic())

    # -- construction helpers ----------------------------------------------------------------

    def _make_clock(self):
        t, a = self.cfg.timing, self.cfg.audio
        rate = self.source.rate_hz
        if t.pps == "none" and self.source.finite and a.source == "wav":
            if self.source.start_ns is not None:
                return NominalClock(rate, self.source.start_ns, "file", round(NS_PER_S / rate)), None, False
            return NominalClock(rate, time.time_ns(), "system", SYSTEM_UNC_NS), None, False
        clock = ModelClock(rate, self.source.start_ns)
        pps = None
        if t.pps == "audio":
            from edge.pps import AudioPps

            pps = AudioPps(rate)
        # Host capture times mean something only for a live stream, not a replayed file.
        host = self.source.host_times
        return clock, pps, (a.source != "wav") if host is None else host

    def _make_evidence(self, data: pathlib.Path, rate: int):
        if not self.cfg.evidence.enabled:
            return None
        from edge.evidence import EvidenceBuffer

        e = self.cfg.evidence
        return EvidenceBuffer(data / "evidence", rate, self._stamp_for_evidence, rate_hz=e.rate_hz,
                              hours=e.hours, budget_bytes=e.budget_mb * 1024 * 1024, chunk_s=e.chunk_s)

    def _open_time_sources(self):
        """The GPS reader and the kernel PPS the configuration names (None where it names none)."""
        t = self.cfg.timing
        gps = kernel_pps = None
        if t.gps_port:
            from edge.nmea import GpsError, GpsReader

            try:
                gps = GpsReader(t.gps_port, t.gps_baud)
            except (GpsError, ValueError) as exc:
                raise NodeError(str(exc)) from None
        if t.pps == "kernel":
            from edge.pps import KernelPps, PpsError

            try:
                kernel_pps = KernelPps(cast(str, t.pps_device))  # config.load checked: kernel PPS has a device
            except (PpsError, OSError) as exc:
                raise NodeError(f"timing.pps_device {t.pps_device}: {exc}") from None
        return gps, kernel_pps

    def _stamp_for_evidence(self, sample: float) -> tuple[int, int, str]:
        return self.clock.stamp(sample) or self._capture_time(sample)

    def _queue_command(self, command: dict) -> None:
        try:
            (self._clip_commands if command.get("cmd") == "clip" else self._commands).put_nowait(command)
        except queue.Full:
            self.commands_dropped += 1

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            min_frames = round(READ_MIN_S * self.rate_hz)
            max_frames = max(self.cfg.audio.block * READ_BLOCKS, 2 * min_frames)
            while not self._stop.is_set():
                chunk = self.ring.read(max_frames, READ_TIMEOUT_S, min_frames)
                if chunk is None:
                    break
                if len(chunk.data):
                    self._process(chunk)
            self._pending.extend(self.detector.flush())
            self._stamp_ready(final=True)
            if self.evidence is not None:
                self.evidence.flush()
        except BaseException as exc:  # the node stops and reports it; the outbox keeps what it has
            self.error = exc
            log.exception("worker failed")
            self._stop.set()
        finally:
            self._worker_done.set()

    def _process(self, chunk: Chunk) -> None:
        a = self.cfg.audio
        if chunk.gap:
            self.clock.report_gap(chunk.start, chunk.lost_frames)
        if chunk.marks:
            self._last_mark = chunk.marks[-1]
        if self._host_marks:
            for end, host_ns in chunk.marks:
                self.clock.feed("add_block", end, host_ns)
        self._feed_time_events()
        if self.pps is not None:
            pps = chunk.data[:, a.pps_channel]
            if pps.dtype == np.int16:
                pps = pps.astype(np.float32) / INT16_FULL_SCALE
            for edge in self.pps.process(pps):
                self.clock.feed("add_edge", edge)
                self._last_edge = max(self._last_edge, float(edge))
        mic = np.ascontiguousarray(chunk.data[:, a.mic_channel])
        self._pending.extend(self.detector.process(mic))
        self._delivered = chunk.start + len(mic)
        self._stamp_ready()
        if isinstance(self.clock, ModelClock) and self._delivered >= self._watch_due:
            self._watch_due = self._delivered + self.rate_hz   # once a second of audio
            self.clock.feed("advance", self._delivered)
            self.timing_watch.update(self.clock.status())
        if self.evidence is not None:
            self.evidence.write(mic, chunk.start, gap=chunk.gap)
        self._measure_noise(mic)

    def _feed_time_events(self) -> None:
        while True:
            try:
                kind, value = self._time_events.get_nowait()
            except queue.Empty:
                return
            if kind == "pps":
                self.clock.feed("add_kernel_pps", value)
            elif kind == "fix" and value.t_ns is not None and value.received_ns is not None and self._last_mark:
                # Where the audio stream was when the sentence arrived, from the newest block's
                # capture time: good to a block, far inside the half second a label needs.
                end, host_ns = self._last_mark
                sample = end + (value.received_ns - host_ns) * self.rate_hz / NS_PER_S
                if isinstance(self.clock, ModelClock):
                    self.clock.feed("add_nmea_time", sample, value.t_ns // NS_PER_S)

    def _gps_loop(self) -> None:
        from edge.nmea import GpsError, GpsReader

        while not self._stop.is_set():
            try:
                fixes = self.gps.read()
            except GpsError as exc:  # unplugged: reported in health, pulses go on with the clock's holdover
                self.gps_error, self.fix = str(exc), None
                log.warning("%s; reopening it every %.0f s", exc, GPS_REOPEN_S)
                self.gps.close()
                while not self._stop.wait(GPS_REOPEN_S):
                    try:
                        self.gps = GpsReader(self.gps.port, self.cfg.timing.gps_baud)
                    except GpsError as again:
                        self.gps_error = str(again)
                        continue
                    log.warning("GPS port %s reopened", self.gps.port)
                    self.gps_error = None
                    break
                continue
            for fix in fixes:
                self.fix = fix
                self._time_events.put(("fix", fix))

    def _kernel_pps_loop(self) -> None:
        from edge.pps import PpsError

        while not self._stop.is_set():
            try:
                event = self.kernel_pps.fetch(timeout_s=KERNEL_PPS_WAIT_S)
            except (PpsError, OSError) as exc:
                if exc.errno == errno.ETIMEDOUT:
                    continue  # no pulse: the clock holds over and says so in its status
                log.warning("kernel PPS: %s", exc)
                self._stop.wait(1.0)
                continue
            self._time_events.put(("pps", event.assert_ns))

    def _stamp_ready(self, final: bool = False) -> None:
        wait = STAMP_WAIT_S * self.rate_hz
        give_up = UNTIMED_WAIT_S * self.rate_hz
        while self._pending:
            p = self._pending[0]
            age = self._delivered - p.sample
            if not (final or self.pps is None or self._last_edge > p.sample or age > wait):
                return
            stamp = self.clock.stamp(p.sample)
            if stamp is None:
                if not (final or age > give_up):
                    return  # the clock may cover it soon (first host times, first labelled edge)
                stamp = self._capture_time(p.sample)
                self.untimed += 1
            self._pending.popleft()
            self._commit(p, stamp)

    def _capture_time(self, sample: float) -> tuple[int, int, str]:
        """Last resort when the clock never covered a pulse: the host time its block was captured.

        Every delivered block has a mark, so a pulse is never dropped for want of a time; its
        uncertainty says how little this is worth.
        """
        end, host_ns = self._last_mark if self._last_mark else (self._delivered, time.time_ns())
        return host_ns - round((end - sample) * NS_PER_S / self.rate_hz), CAPTURE_TIME_UNC_NS, "system"

    def _commit(self, pulse, stamp: tuple[int, int, str]) -> None:
        t_ns, t_unc_ns, timing = stamp
        features = {"peak_dbfs": pulse.peak_dbfs, "snr_db": pulse.snr_db}
        names = {name for name, _, _ in wire.FEATURES}
        features.update({k: v for k, v in pulse.features.items() if k in names})
        nid, epoch = self.node_id, self.outbox.epoch

        def encode(seq: int) -> bytes:
            return wire.encode(wire.PulseMessage(nid, seq, t_ns, t_unc_ns, timing, features, epoch), self.key)

        self.outbox.append(encode)
        self.publisher.notify()
        self._pulses.append((time.monotonic(), self.outbox.depth()))
        self.pulses_total += 1

    def _measure_noise(self, mic: np.ndarray) -> None:
        x = mic.astype(np.float32)
        if mic.dtype == np.int16:
            x /= INT16_FULL_SCALE
        acc = self._level_acc
        acc[0] += float(np.dot(x, x))
        acc[1] += len(x)
        if acc[1] >= NOISE_BLOCK_S * self.rate_hz:
            self._levels.append(_level_dbfs(np.sqrt(acc[0] / acc[1])))
            acc[0], acc[1] = 0.0, 0

    # -- health and commands -------------------------------------------------------------------

    def health(self) -> dict:
        """The health report (also published on ``.../health``)."""
        now = time.monotonic()
        depths = self._recent_pulses(now)
        cpu_now = (time.process_time(), now)
        cpu_s, wall_s = cpu_now[0] - self._cpu0[0], cpu_now[1] - self._cpu0[1]
        self._cpu0 = cpu_now
        clock = self.clock.status()
        disk = shutil.disk_usage(self.cfg.node.data_dir)
        out = {
            "t_ns": time.time_ns(),
            "node": self.cfg.node.name,
            "uptime_s": round(now - self._started, 1),
            "gps": self._gps_health(),
            "pps_locked": bool(clock.get("locked")),
            "timing": clock.get("timing"),
            "timing_state": self.timing_watch.state,
            "timing_degradations": self.timing_watch.degradations,
            "clock_offset_ns": clock.get("system_offset_ns"),
            "clock_unc_ns": clock.get("unc_ns"),
            "adc_rate_error_ppm": clock.get("rate_error_ppm"),
            "noise_floor_dbfs": round(float(np.percentile(self._levels, NOISE_PERCENTILE)), 1) if self._levels else None,
            "pulses_per_min": len(depths) * 60 / PULSE_WINDOW_S,
            "pulses_total": self.pulses_total,
            "pulses_untimed": self.untimed,
            "outbox_depth": self.outbox.depth(),
            "outbox_depth_max": max(depths + [self.outbox.depth()]),   # over the last PULSE_WINDOW_S
            "outbox_evicted": self.outbox.evicted(),   # budget or low disk: the oldest made room
            "outbox_dropped": self.outbox.dropped,     # a full disk had no room at all
            "published": self.publisher.published,
            "audio": self.source.status(),
            "frames_delivered": self._delivered,
            "overruns": self.ring.overruns,
            "frames_lost": self.ring.frames_lost,
            "cpu_node_pct": round(100 * cpu_s / wall_s, 2) if wall_s > 0 else None,
            "cpu_load_1m": os.getloadavg()[0],
            "cpu_temp_c": _cpu_temperature_c(),
            "disk_free_bytes": disk.free,
            "evidence_bytes": self.evidence.disk_bytes() if self.evidence else 0,
        }
        return out

    def _gps_health(self) -> dict | None:
        if self.gps is None:
            return None
        fix = self.fix
        out = {"fix": fix.mode if fix else 1, "sats": fix.sats if fix else 0, "hdop": fix.hdop if fix else None,
               "error": self.gps_error}
        out.update(self.gps.stream.health())
        return out

    def _health_loop(self) -> None:
        while not self._stop.wait(self.cfg.mqtt.health_interval_s):
            self.publisher.publish_json(self.publisher.topics.health, self.health())

    def _recent_pulses(self, now: float) -> list[int]:
        """The outbox depth at each pulse of the last PULSE_WINDOW_S before ``now`` (monotonic s), older ones forgotten."""
        while self._pulses and self._pulses[0][0] < now - PULSE_WINDOW_S:
            self._pulses.popleft()
        return [depth for _, depth in list(self._pulses)]   # list(): one copy, while the worker appends

    def _command_loop(self, commands: queue.Queue) -> None:
        while not self._stop.is_set():
            try:
                command = commands.get(timeout=READ_TIMEOUT_S)
            except queue.Empty:
                continue
            try:
                self.handle_command(command)
            except Exception:  # one bad command must not stop the others
                log.exception("command %r failed", command)

    def handle_command(self, command: dict) -> None:
        """``{"cmd": "clip", "id", "t0_ns", "t1_ns"}`` or ``{"cmd": "health"}``."""
        from earwitness.clip import clip_message
        from edge.evidence import ClipError

        topics = self.publisher.topics
        kind = command.get("cmd")
        if kind == "health":
            self.publisher.publish_json(topics.health, self.health())
        elif kind == "clip":
            request = command.get("id")
            try:
                if self.evidence is None:
                    raise ClipError("this node keeps no evidence audio (evidence.enabled = false)")
                self.evidence.wait_heard(command.get("t1_ns"), self._stop)   # a node behind its input
                clip = self.evidence.clip(command.get("t0_ns"), command.get("t1_ns"))
                answer = clip_message(clip, request, self.cfg.node.name, self.key)
            except ClipError as exc:
                answer = {"id": request, "node": self.cfg.node.name, "error": str(exc)}
            self.publisher.publish_json(topics.clip, answer, qos=1)
        else:
            log.warning("unknown command %r", kind)

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until the source ends (then drain the outbox) or :meth:`stop`; returns pulses left."""
        self.publisher.start()
        threads = [threading.Thread(target=self._work, name="ew-worker", daemon=True),
                   threading.Thread(target=self._health_loop, name="ew-health", daemon=True),
                   threading.Thread(target=self._command_loop, args=(self._commands,), name="ew-commands",
                                    daemon=True),
                   threading.Thread(target=self._command_loop, args=(self._clip_commands,), name="ew-clips",
                                    daemon=True)]
        if self.gps is not None:
            threads.append(threading.Thread(target=self._gps_loop, name="ew-gps", daemon=True))
        if self.kernel_pps is not None:
            threads.append(threading.Thread(target=self._kernel_pps_loop, name="ew-pps", daemon=True))
        for t in threads:
            t.start()
        self.source.start(self.ring)
        try:
            while not self._worker_done.wait(0.2):
                pass
            if self.source.finite and not self._stop.is_set():
                deadline = time.monotonic() + self.cfg.outbox.drain_timeout_s
                while self.outbox.depth() and time.monotonic() < deadline and not self._stop.is_set():
                    self._stop.wait(0.1)
        finally:
            left = self._shutdown(threads)
        error = getattr(self.source, "error", None)
        if error is not None:
            raise error
        if self.error is not None:
            raise self.error
        return left

    def stop(self) -> None:
        """Ask the node to stop (signal handlers call this); pulses not sent stay in the outbox."""
        self._stop.set()
        self.ring.close()

    def _shutdown(self, threads) -> int:
        self._stop.set()
        self.source.stop()
        self.ring.close()
        for t in threads:
            t.join(5)
        self.publisher.stop()
        for reader in (self.gps, self.kernel_pps):
            if reader is not None:
                reader.close()
        left = self.outbox.depth()
        self.outbox.close()
        return left


def _cpu_temperature_c() -> float | None:
    try:
        with open(THERMAL_ZONE) as f:
            return int(f.read().strip()) / 1000
    except (OSError, ValueError):
        return None
