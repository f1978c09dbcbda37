"""Hardware in the loop on one machine: the parts a rooftop node talks to, made real.

- :class:`VirtualMic`: a PulseAudio server with a null sink; PortAudio's ALSA ``pulse``
  device records its monitor (``PULSE_SOURCE=<sink>.monitor``), sample-exact, what ``paplay``
  plays into the sink: a stereo WAV with the microphone in channel 1 and PPS in channel 2.
- :class:`PtyGps`: a GPS receiver on a pseudo-terminal behind a fixed path (as udev's
  ``/dev/gps0``): RMC, GGA and GSA for the current UTC second, paced at 9600 baud.
- :func:`schedule`: when to start a WAV so that its PPS edges fall on the host's whole
  seconds, as a GPS's do on UTC's, and the UTC of any of its samples then.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import pathlib
import signal
import subprocess
import threading
import time
import tty

import pynmea2

from simulator.broker import wait_until

SINK = "ewmic"
RATE_HZ = 48_000
START_WAIT_S = 10.0
BITS_PER_BYTE = 10  # 8N1 serial framing
SEND_AFTER_S = 0.05  # a receiver sends a second's sentences this long after its PPS edge
SATELLITES = ("02", "05", "07", "09", "13", "15", "20", "24", "30", "", "", "")  # GSA's 12 slots
# The fixed position the emulated receiver reports (Pittsburgh, above the ellipsoid).
LAT, LAT_DIR, LON, LON_DIR, ALT_M, GEOID_M = "4026.4375", "N", "07959.8000", "W", "250.0", "-33.0"


class VirtualMic:
    """A PulseAudio server of its own (socket, runtime and home in ``folder``) with one null sink."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.socket = folder / "native"
        self.proc: subprocess.Popen | None = None
        self.env = {"PULSE_SERVER": f"unix:{self.socket}", "PULSE_SOURCE": f"{SINK}.monitor", "PULSE_SINK": SINK}

    def start(self) -> VirtualMic:
        self.socket.unlink(missing_ok=True)
        env = dict(os.environ, HOME=str(self.folder), PULSE_RUNTIME_PATH=str(self.folder / "rt"),
                   XDG_RUNTIME_DIR=str(self.folder / "rt"))
        self.proc = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--use-pid-file=no", "--log-target=stderr",
             f"--load=module-null-sink sink_name={SINK} rate={RATE_HZ} channels=2",
             f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(self.folder / "pulseaudio.log", "ab"))
        up = wait_until(lambda: self.socket.exists() and subprocess.run(
            ["pactl", "info"], env=dict(os.environ, **self.env), capture_output=True).returncode == 0, START_WAIT_S)
        if not up:
            raise RuntimeError(f"pulseaudio did not start: {(self.folder / 'pulseaudio.log').read_text()[-500:]}")
        return self

    def kill(self) -> None:
        """The sound server dies (SIGKILL): streams on it end."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        self.socket.unlink(missing_ok=True)

    def play(self, wav: pathlib.Path) -> subprocess.Popen:
        """paplay with its default buffer (a 20 ms one ran dry under load)."""
        return subprocess.Popen(["paplay", str(wav)], env=dict(os.environ, **self.env),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def sentences(t_s: int) -> list[bytes]:
    """One epoch of a receiver with a 3D fix, for UTC second ``t_s``."""
    t = dt.datetime.fromtimestamp(t_s, dt.timezone.utc)
    hms, date = t.strftime("%H%M%S.00"), t.strftime("%d%m%y")
    msgs = [
        pynmea2.RMC("GP", "RMC", (hms, "A", LAT, LAT_DIR, LON, LON_DIR, "0.0", "0.0", date, "", "")),
        pynmea2.GGA("GP", "GGA", (hms, LAT, LAT_DIR, LON, LON_DIR, "1", "09", "0.9", ALT_M, "M", GEOID_M, "M", "", "")),
        pynmea2.GSA("GP", "GSA", ("A", "3", *SATELLITES, "1.6", "0.9", "1.3")),
    ]
    return [(str(m) + "\r\n").encode() for m in msgs]


class PtyGps:
    """A receiver behind ``path`` (a symlink to a pty's far end); ``unplug`` and ``plug`` it."""

    def __init__(self, path: pathlib.Path, baud: int = 9600):
        self.path, self.byte_s = path, BITS_PER_BYTE / baud
        self._fds: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0

    def plug(self) -> PtyGps:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: a serial line
        os.set_blocking(master, False)  # a full pty (nobody reading) drops bytes, as a UART does
        self._fds = (master, slave)
        self.path.unlink(missing_ok=True)
        self.path.symlink_to(os.ttyname(slave))
        self._stop.clear()
        self._thread = threading.Thread(target=self._feed, args=(master,), name="pty-gps", daemon=True)
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The cable is pulled: the port goes away under whoever has it open."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
        self.path.unlink(missing_ok=True)

    def _feed(self, master: int) -> None:
        while not self._stop.is_set():
            now = time.time()
            second = math.floor(now)
            if self._stop.wait(max(0.0, second + 1 + SEND_AFTER_S - now)):
                return
            for line in sentences(second + 1):
                for i in range(len(line)):  # byte by byte at the line's pace
                    try:
                        os.write(master, line[i:i + 1])
                    except BlockingIOError:
                        pass
                    time.sleep(self.byte_s)
            self.sent += 1


def schedule(t0_s: float, lead_s: float = 2.0) -> tuple[int, float]:
    """(``base_s``, ``start``) for a WAV whose PPS channel was rendered by ``Adc(t0_s=t0_s)``
    (0 <= t0_s < 1): started at host time ``start``, its PPS edges land on whole UTC seconds,
    as a GPS's do, and ``base_s`` + the Adc's time of a sample is that sample's true UTC."""
    base_s = math.ceil(time.time() + lead_s)
    return base_s, base_s + t0_s


def sleep_until(t_s: float) -> None:
    time.sleep(max(0.0, t_s - time.time()))


def node_toml_from(template: pathlib.Path, substitutions: dict[str, str], out: pathlib.Path) -> pathlib.Path:
    """``template`` (hardware/node/node.toml) with each of ``substitutions`` swapped, written to ``out``;
    a line the template no longer holds fails the test that asked for it."""
    conf = template.read_text()
    for old, new in substitutions.items():
        assert old in conf, f"{template} no longer has {old!r}: update this test"
        conf = conf.replace(old, new)
    out.write_text(conf)
    return out
