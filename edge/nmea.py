"""GPS over NMEA 0183: framing, checksums, fixes, from a serial port or a captured log.

Sentences are parsed by pynmea2 (``parse(line, check=True)``: checksum required and
verified); this module adds what pynmea2 leaves to the caller: framing a byte stream full
of binary noise and broken lines, counting what was skipped, and merging one epoch's RMC,
GGA, GSA and ZDA (any of the GP, GN, GL, GA, GB, BD talkers) into one ``Fix``.  GSV feeds
``health()``.  Nothing a receiver or a line can send raises: bad input is counted in
``counts`` and skipped.

Example::

    with GpsReader("/dev/ttyAMA0", 9600) as gps:
        for fix in gps.fixes():
            print(fix.t_ns, fix.lat, fix.lon, fix.mode, fix.sats)
"""
from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import pynmea2

from earwitness.units import NS_PER_S

BAUD_RATES = (4800, 9600, 19200, 38400, 57600, 115200)
TALKERS = frozenset({"GP", "GN", "GL", "GA", "GB", "BD"})
FIX_TYPES = ("RMC", "GGA", "GSA", "ZDA")
MAX_SENTENCE_CHARS = 100          # NMEA says 82; some receivers run longer, none this long
MAX_BUFFER_BYTES = 4096           # a line longer than this is noise
MODE_NO_FIX, MODE_2D, MODE_3D = 1, 2, 3
HALF_DAY_S = 43_200
FRACTION_DIGITS_MAX = 9     # nanoseconds
ALT_DECIMALS = 3            # millimetres: NMEA gives decimetres
READ_TIMEOUT_S = 0.2
# Everything pynmea2 or a field accessor raises on a malformed sentence.
PARSE_ERRORS = (pynmea2.ParseError, ValueError, TypeError, AttributeError, IndexError,
                KeyError, OverflowError, ArithmeticError)


@dataclass(frozen=True)
class Fix:
    """One epoch's fix.

    ``t_ns``: UTC of the epoch (the second the PPS marks), None until a date is known;
    ``lat``/``lon`` degrees, ``alt`` metres above the WGS84 ellipsoid (GGA altitude plus
    geoid separation), None without a fix; ``mode`` 1 no fix, 2 2D, 3 3D; ``sats`` in use;
    ``hdop``; ``received_ns``: host time its first timed sentence arrived; ``talker``."""

    t_ns: int | None
    lat: float | None
    lon: float | None
    alt: float | None
    mode: int
    sats: int
    hdop: float | None = None
    received_ns: int | None = None
    talker: str = ""

    def to_json(self) -> dict:
        """The ``earwitness gps --json`` object."""
        return {"t_ns": self.t_ns, "lat": self.lat, "lon": self.lon, "alt": self.alt,
                "mode": self.mode, "sats": self.sats}


class NmeaFramer:
    """Bytes -> checksum-verified pynmea2 sentences, skipping (and counting) all else.

    ``counts``: ``sentences`` accepted, ``bad_checksum``, ``malformed``, ``garbage`` (lines
    with no sentence), ``overlong``, ``other_talker``."""

    def __init__(self):
        self._buf = bytearray()
        self.counts: Counter = Counter()

    def feed(self, data: bytes) -> list:
        """Feeds raw bytes; returns the complete sentences they finish."""
        self._buf += data
        out = []
        while True:
            cut = min((i for i in (self._buf.find(b"\n"), self._buf.find(b"\r")) if i >= 0),
                      default=-1)
            if cut < 0:
                break
            line = bytes(self._buf[:cut])
            del self._buf[:cut + 1]
            msg = self._parse(line)
            if msg is not None:
                out.append(msg)
        if len(self._buf) > MAX_BUFFER_BYTES:
            self.counts["overlong"] += 1
            start = self._buf.rfind(b"$")
            del self._buf[:start if start > 0 else len(self._buf)]
        return out

    def _parse(self, line: bytes):
        start = line.rfind(b"$")
        if start < 0:
            if line.strip():
                self.counts["garbage"] += 1
            return None
        raw = line[start:].strip()
        if len(raw) > MAX_SENTENCE_CHARS:
            self.counts["overlong"] += 1
            return None
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            self.counts["malformed"] += 1
            return None
        if not text.isprintable():
            self.counts["malformed"] += 1
            return None
        try:
            msg = pynmea2.parse(text, check=True)
        except pynmea2.ChecksumError:
            self.counts["bad_checksum"] += 1
            return None
        except PARSE_ERRORS:
            self.counts["malformed"] += 1
            return None
        if getattr(msg, "talker", None) not in TALKERS:
            self.counts["other_talker"] += 1
            return None
        self.counts["sentences"] += 1
        return msg


def _tod_ns(field: str) -> int:
    """hhmmss[.s...] -> nanoseconds of the day, exactly: the digits as written, no binary float
    (``105153.408`` is .408 s, where ``round(float("53.408") * 100)`` would say .41)."""
    whole, _, frac = field.partition(".")
    if len(whole) != 6 or not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > FRACTION_DIGITS_MAX:
        raise ValueError(f"bad time of day {field!r}")
    hh, mm, ss = int(whole[0:2]), int(whole[2:4]), int(whole[4:6])
    if not (hh < 24 and mm < 60 and ss < 61):   # 60: a leap second
        raise ValueError(f"bad time of day {field!r}")
    return (hh * 3600 + mm * 60 + ss) * NS_PER_S + (int(frac.ljust(FRACTION_DIGITS_MAX, "0")) if frac else 0)


class _Epoch:
    def __init__(self, tod_ns: int, received_ns: int | None):
        self.tod_ns = tod_ns
        self.received_ns = received_ns
        self.types: Counter = Counter()
        self.date: dt.date | None = None
        self.lat = self.lon = self.alt = self.hdop = None
        self.mode: int | None = None   # as the epoch's sentences said it, the last one to say it
        self.gsa_prns: set = set()
        self.gga_sats = None
        self.talker = ""
        self.emitted = False


class FixAssembler:
    """Merges one epoch's sentences into a ``Fix``.

    An epoch ends when a sentence with another time of day arrives, or as soon as it holds
    as many RMC/GGA/GSA/ZDA as the previous complete epoch did (so a fix is out without
    waiting a second), or on ``flush()``.  Dates come from RMC/ZDA and carry over midnight."""

    def __init__(self):
        self._epoch: _Epoch | None = None
        self._learned: Counter = Counter()
        self._date: dt.date | None = None
        self._date_tod_ns = 0
        self._gsv: dict = {}
        self.counts: Counter = Counter()

    def update(self, msg, received_ns: int | None = None) -> list[Fix]:
        """Takes one parsed sentence; returns the fixes it completes (0, 1 or 2)."""
        kind = msg.sentence_type
        out: list[Fix] = []
        try:
            if kind == "GSV":
                self._gsv_update(msg)
                return out
            if kind not in FIX_TYPES:
                return out
            if kind in ("RMC", "GGA", "ZDA"):
                if not msg.data[0]:
                    self.counts["no_time"] += 1
                    return out
                tod = _tod_ns(msg.data[0])
                if self._epoch is None or self._epoch.tod_ns != tod:
                    out += self._close()
                    self._epoch = _Epoch(tod, received_ns)
            ep = self._epoch
            if ep is None:
                return out
            getattr(self, "_" + kind.lower())(ep, msg)
            ep.types[kind] += 1
            ep.talker = ep.talker or msg.talker
            if (not ep.emitted and self._learned
                    and all(ep.types[t] >= n for t, n in self._learned.items())):
                out.append(self._fix(ep))
                ep.emitted = True
        except PARSE_ERRORS:
            self.counts["malformed"] += 1
        return out

    def flush(self) -> list[Fix]:
        """Ends the current epoch (end of a replay)."""
        return self._close()

    def health(self) -> dict:
        """Satellites in view per talker and their mean carrier-to-noise (dB-Hz) from GSV."""
        view = {t: len(s) for t, s in self._gsv.items()}
        snrs = [v for s in self._gsv.values() for v in s.values() if v is not None]
        return {"sats_in_view": sum(view.values()), "in_view_by_talker": view,
                "cn0_dbhz_mean": round(sum(snrs) / len(snrs), 1) if snrs else None}

    # --- per sentence -------------------------------------------------------------------

    # Each sentence states the fix mode its way (NMEA 0183: RMC status A/V and, from 2.3, its
    # mode indicator, N = not valid; GGA quality 0 = no fix; GSA mode 1/2/3); within an epoch
    # the last statement wins, as in gpsd's merge of a cycle.

    def _rmc(self, ep, msg):
        mode_indicator = msg.data[11] if len(msg.data) > 11 else ""
        valid = msg.status == "A" and mode_indicator != "N"
        ep.mode = max(ep.mode or MODE_NO_FIX, MODE_2D) if valid else MODE_NO_FIX
        if msg.data[8]:
            ep.date = msg.datestamp
        if ep.lat is None and valid and msg.data[2]:
            ep.lat, ep.lon = msg.latitude, msg.longitude

    def _gga(self, ep, msg):
        quality = int(msg.gps_qual or 0)
        ep.gga_sats = int(msg.num_sats) if msg.num_sats else None
        ep.hdop = float(msg.horizontal_dil) if msg.horizontal_dil else None
        if quality == 0:
            ep.mode = MODE_NO_FIX
            return
        if msg.data[1]:
            ep.lat, ep.lon = msg.latitude, msg.longitude
        if msg.altitude is not None and msg.data[8]:
            ep.alt = round(float(msg.altitude) + (float(msg.geo_sep) if msg.geo_sep else 0.0), ALT_DECIMALS)
            ep.mode = MODE_3D
        else:
            ep.mode = max(ep.mode or MODE_NO_FIX, MODE_2D)

    def _gsa(self, ep, msg):
        if msg.data[1] in ("1", "2", "3"):
            ep.mode = int(msg.data[1])
        ep.gsa_prns.update(p for p in msg.data[2:14] if p)
        if ep.hdop is None and len(msg.data) > 15 and msg.data[15]:
            ep.hdop = float(msg.data[15])

    def _zda(self, ep, msg):
        if msg.data[1] and msg.data[2] and msg.data[3]:
            ep.date = dt.date(int(msg.data[3]), int(msg.data[2]), int(msg.data[1]))

    def _gsv_update(self, msg):
        sats = self._gsv.setdefault(msg.talker, {})
        if msg.data[1] == "1":
            sats.clear()
        for i in range(3, len(msg.data) - 3, 4):
            prn, snr = msg.data[i], msg.data[i + 3]
            if prn:
                sats[prn] = float(snr) if snr else None

    # --- epoch --------------------------------------------------------------------------

    def _close(self) -> list[Fix]:
        ep, self._epoch = self._epoch, None
        if ep is None:
            return []
        self._learned = Counter({t: n for t, n in ep.types.items()})
        if not (ep.types["RMC"] or ep.types["GGA"]):
            # a time-only epoch (ZDA, or joined mid-epoch) says nothing about the fix
            self.counts["time_only"] += 1
            return []
        return [] if ep.emitted else [self._fix(ep)]

    def _fix(self, ep) -> Fix:
        if ep.date is not None:
            self._date, self._date_tod_ns = ep.date, ep.tod_ns
        elif self._date is not None and ep.tod_ns + HALF_DAY_S * NS_PER_S < self._date_tod_ns:
            # past midnight since the last dated sentence
            self._date, self._date_tod_ns = self._date + dt.timedelta(days=1), ep.tod_ns
        t_ns = None
        if self._date is not None:
            day = dt.datetime(self._date.year, self._date.month, self._date.day,
                              tzinfo=dt.timezone.utc)
            t_ns = int(day.timestamp()) * NS_PER_S + ep.tod_ns
        mode = ep.mode or MODE_NO_FIX
        if ep.lat is None:   # a mode without a position to go with it
            mode = MODE_NO_FIX
        sats = ep.gga_sats if ep.gga_sats is not None else len(ep.gsa_prns)
        fixed = mode > MODE_NO_FIX
        return Fix(t_ns=t_ns, lat=ep.lat if fixed else None, lon=ep.lon if fixed else None,
                   alt=ep.alt if mode == MODE_3D else None, mode=mode, sats=sats,
                   hdop=ep.hdop, received_ns=ep.received_ns, talker=ep.talker)


class NmeaStream:
    """Framer + assembler: bytes in, fixes out; ``counts`` merges both counters."""

    def __init__(self):
        self.framer = NmeaFramer()
        self.assembler = FixAssembler()

    def feed(self, data: bytes, received_ns: int | None = None) -> list[Fix]:
        out: list[Fix] = []
        for msg in self.framer.feed(data):
            out += self.assembler.update(msg, received_ns)
        return out

    def flush(self) -> list[Fix]:
        return self.assembler.flush()

    @property
    def counts(self) -> Counter:
        return self.framer.counts + self.assembler.counts

    def health(self) -> dict:
        return self.assembler.health()


def replay(path, chunk_bytes: int = 4096, stream: NmeaStream | None = None) -> Iterator[Fix]:
    """Fixes from a captured NMEA log file (any line endings, noise tolerated); ``stream``
    (optional) is the one to use, whose ``counts`` then tell what the file held."""
    stream = stream if stream is not None else NmeaStream()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            yield from stream.feed(chunk)
    yield from stream.flush()


class GpsError(OSError):
    """The GPS serial port cannot be opened or went away."""


class GpsReader:
    """Reads fixes from a GPS receiver on a serial port (pyserial).

    Parameters
    ----------
    port : str
        Device, e.g. ``/dev/ttyAMA0`` or ``/dev/ttyUSB0``.
    baud : int, optional
        4800 to 115200 (``BAUD_RATES``).

    The first epoch read is dropped (the port may have opened in its middle).  Raises
    ``GpsError`` (an OSError) with a one-line reason when the port is missing or is
    unplugged while reading; fixes already returned are not affected.
    """

    def __init__(self, port: str, baud: int = 9600, timeout_s: float = READ_TIMEOUT_S):
        import serial

        if baud not in BAUD_RATES:
            raise ValueError(f"baud must be one of {', '.join(map(str, BAUD_RATES))}")
        self.port = port
        self.stream = NmeaStream()
        self._first_pending = True
        self._serial_error = serial.SerialException
        try:
            self._ser = serial.Serial(port, baud, timeout=timeout_s)
        except (serial.SerialException, OSError) as exc:
            raise GpsError(f"cannot open GPS port {port}: {_reason(exc)}") from None

    def read(self) -> list[Fix]:
        """Reads what the port has (waits at most the timeout); returns completed fixes."""
        try:
            data = self._ser.read(max(1, self._ser.in_waiting))
        except (self._serial_error, OSError) as exc:
            raise GpsError(f"GPS port {self.port} went away: {_reason(exc)}") from None
        fixes = self.stream.feed(data, time.time_ns()) if data else []
        if fixes and self._first_pending:
            # the epoch under way when the port opened may have lost its first sentences
            self._first_pending = False
            fixes = fixes[1:]
        return fixes

    def fixes(self) -> Iterator[Fix]:
        """Fixes as they come, forever (until the port goes away)."""
        while True:
            yield from self.read()

    def close(self) -> None:
        self._ser.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _reason(exc: BaseException) -> str:
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return os.strerror(code)
    return str(exc) or type(exc).__name__
