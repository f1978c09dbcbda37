"""NMEA reader: captured-style logs of three receivers, a real pseudo-terminal through
pyserial, and fuzzed input."""
import datetime as dt
import os
import pathlib
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import nmea
from edge.nmea import GpsError, GpsReader, NmeaStream, replay

DATA = pathlib.Path(__file__).parent / "data" / "nmea"


def utc_ns(*args):
    return int(dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000_000


def dm(deg, minutes):
    return deg + minutes / 60


# What the sentences of each log say, epoch by epoch: (t_ns, mode, sats, lat, lon, alt).
EXPECTED = {
    "ublox_m8_gn.nmea": [
        (utc_ns(2026, 12, 9, 9, 27, 25), 1, 0, None, None, None),
        (utc_ns(2026, 12, 9, 9, 27, 26), 1, 2, None, None, None),
        (utc_ns(2026, 12, 9, 9, 27, 27), 2, 4, dm(47, 17.11411), dm(8, 33.91578), None),
        (utc_ns(2026, 12, 9, 9, 27, 28), 3, 7, dm(47, 17.11417), dm(8, 33.91572), 499.6 + 48.0),
        (utc_ns(2026, 12, 9, 9, 27, 29), 3, 8, dm(47, 17.11423), dm(8, 33.91566), 499.9 + 48.0),
        (utc_ns(2026, 12, 9, 9, 27, 30), 3, 9, dm(47, 17.11429), dm(8, 33.91560), 500.1 + 48.0),
    ],
    "sirf_gp.nmea": [
        (utc_ns(2026, 11, 24, 23, 59, 57), 3, 6, dm(40, 26.43750), -dm(79, 59.75184), 270.3 - 33.4),
        (utc_ns(2026, 11, 24, 23, 59, 58), 3, 7, dm(40, 26.43762), -dm(79, 59.75172), 270.4 - 33.4),
        (utc_ns(2026, 11, 24, 23, 59, 59), 3, 6, dm(40, 26.43774), -dm(79, 59.75160), 270.5 - 33.4),
        (utc_ns(2026, 11, 25, 0, 0, 0), 3, 7, dm(40, 26.43786), -dm(79, 59.75148), 270.6 - 33.4),
        (utc_ns(2026, 11, 25, 0, 0, 1), 3, 6, dm(40, 26.43798), -dm(79, 59.75136), 270.7 - 33.4),
    ],
    "bds_mix.nmea": [
        (utc_ns(2026, 3, 15, 4, 12, 10 + i), 3, 12 + i, dm(39, 54.45006),
         dm(116, 23.83350 + i * 0.00018), 52.6 + 0.2 * i - 8.9) for i in range(4)
    ],
}


def check_fixes(fixes, expected):
    assert len(fixes) == len(expected)
    for fix, (t_ns, mode, sats, lat, lon, alt) in zip(fixes, expected):
        assert (fix.t_ns, fix.mode, fix.sats) == (t_ns, mode, sats)
        for got, want in ((fix.lat, lat), (fix.lon, lon), (fix.alt, alt)):
            assert (got is None) == (want is None)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-7)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay_gives_the_fixes_the_sentences_say(name):
    check_fixes(list(replay(DATA / name)), EXPECTED[name])


def _ns(*args, ms: int = 0) -> int:
    return utc_ns(*args) + ms * 1_000_000


def test_sub_second_times_are_exact_to_the_millisecond():
    """Hand-written vectors (tests/data/nmea/subsecond.nmea); gpsd 3.22 (gpsfake) gives the same
    times: the fraction as written, not a float rounded to centiseconds (.408, not .410)."""
    fixes = list(replay(DATA / "subsecond.nmea"))
    assert [f.t_ns for f in fixes] == [
        _ns(2026, 1, 2, 10, 51, 53, ms=408), _ns(2026, 1, 2, 10, 51, 53, ms=608), _ns(2026, 1, 2, 10, 51, 53, ms=808),
        _ns(2026, 1, 2, 10, 51, 54, ms=8), _ns(2026, 1, 2, 23, 59, 59, ms=999), _ns(2026, 1, 3, 0, 0, 0, ms=199),
        _ns(2026, 1, 3, 0, 0, 0, ms=500), _ns(2026, 1, 3, 0, 0, 1), _ns(2026, 1, 3, 0, 0, 1, ms=250)]
    assert all(f.mode == 3 for f in fixes)


@pytest.mark.parametrize("field, ns", [("105153.408", (10 * 3600 + 51 * 60 + 53) * 10**9 + 408_000_000),
                                       ("000000", 0), ("235960.5", 86_400 * 10**9 + 500_000_000),
                                       ("120000.123456789", 43_200 * 10**9 + 123_456_789)])
def test_time_of_day_is_read_digit_for_digit(field, ns):
    assert nmea._tod_ns(field) == ns


@pytest.mark.parametrize("field", ["1051.408", "245959", "106053", "105161", "10515a.4", "+10515.4",
                                   "105153.1234567890"])
def test_time_of_day_refuses_what_is_not_one(field):
    with pytest.raises(ValueError):
        nmea._tod_ns(field)


def test_fix_modes_as_the_sentences_say():
    """Hand-written vectors from the NMEA 0183 definitions (tests/data/nmea/fix_modes.nmea):
    GGA quality, GSA mode and RMC status each state the mode; the epoch's last statement wins."""
    fixes = list(replay(DATA / "fix_modes.nmea"))
    assert [(f.mode, f.lat is not None, f.alt is not None) for f in fixes] == [
        (1, False, False), (3, True, True), (2, True, False), (3, True, True), (1, False, False), (3, True, True)]
    assert fixes[0].t_ns == utc_ns(2026, 1, 2, 12, 0, 0) and fixes[2].sats == 3


def test_rmc_alone_status_and_mode_indicator():
    fixes = list(replay(DATA / "rmc_only.nmea"))
    assert [f.mode for f in fixes] == [2, 1, 1, 2]      # A; V; A with mode N (not valid); A without a mode (2.2)
    assert [f.t_ns for f in fixes] == [utc_ns(2026, 3, 15, 8, 0, s) for s in range(4)]


def test_replay_counts_what_it_skipped():
    stream = NmeaStream()
    fixes = stream.feed((DATA / "sirf_gp.nmea").read_bytes()) + stream.flush()
    assert len(fixes) == 5
    c = stream.counts
    # one corrupted checksum, one line cut short (no checksum at all), one binary line
    assert c["bad_checksum"] == 2 and c["garbage"] == 1
    assert stream.health()["sats_in_view"] == 8


def test_bd_gb_talkers_and_health():
    stream = NmeaStream()
    stream.feed((DATA / "bds_mix.nmea").read_bytes())
    h = stream.health()
    assert h["in_view_by_talker"] == {"GP": 6, "GB": 7}
    assert 30 < h["cn0_dbhz_mean"] < 50
    assert stream.counts["sentences"] == 36


@pytest.mark.parametrize("chunk", [1, 3, 17, 100_000])
def test_chunking_does_not_matter(chunk):
    raw = (DATA / "ublox_m8_gn.nmea").read_bytes()
    stream = NmeaStream()
    fixes = []
    for i in range(0, len(raw), chunk):
        fixes += stream.feed(raw[i:i + chunk])
    fixes += stream.flush()
    check_fixes(fixes, EXPECTED["ublox_m8_gn.nmea"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_random_bytes_never_crash(chunks):
    stream = NmeaStream()
    for c in chunks:
        for fix in stream.feed(c):
            assert fix.mode in (1, 2, 3)
    stream.flush()


LOG = (DATA / "bds_mix.nmea").read_bytes()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(LOG) - 1), st.integers(0, 255), st.integers(1, 60))
def test_truncated_and_mutated_logs_never_crash(pos, byte, cut):
    mutated = LOG[:pos] + bytes([byte]) + LOG[pos + 1:]
    truncated = LOG[:pos] + b"\r\n" + LOG[pos + cut:]
    for raw in (mutated, truncated):
        stream = NmeaStream()
        fixes = stream.feed(raw) + stream.flush()
        assert len(fixes) <= 5


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=80).filter(lambda b: b"$" not in b and b"\n" not in b
                                               and b"\r" not in b), min_size=1, max_size=10))
def test_noise_lines_between_sentences_change_nothing(noise):
    lines = (DATA / "bds_mix.nmea").read_bytes().split(b"\r\n")
    noisy = []
    for i, line in enumerate(lines):
        noisy += [noise[i % len(noise)], line]
    stream = NmeaStream()
    fixes = stream.feed(b"\r\n".join(noisy)) + stream.flush()
    check_fixes(fixes, EXPECTED["bds_mix.nmea"])


class Emulator(threading.Thread):
    """A GPS receiver on the master side of a pseudo-terminal, sending a log line by line."""

    def __init__(self, master_fd, raw, line_gap_s=0.002):
        super().__init__(daemon=True)
        self.fd, self.raw, self.gap = master_fd, raw, line_gap_s

    def run(self):
        for line in self.raw.splitlines(keepends=True):
            os.write(self.fd, line)
            time.sleep(self.gap)


def test_reads_a_real_pseudo_terminal_through_pyserial():
    master, slave = os.openpty()
    try:
        fixes = []
        # pyserial flushes the input on open: the receiver starts talking after that
        with GpsReader(os.ttyname(slave), 9600) as gps:
            emulator = Emulator(master, (DATA / "ublox_m8_gn.nmea").read_bytes())
            emulator.start()
            deadline = time.monotonic() + 20
            while len(fixes) < 5 and time.monotonic() < deadline:
                fixes += gps.read()
            emulator.join()
        # the first epoch after opening is dropped: it may be partial
        check_fixes(fixes, EXPECTED["ublox_m8_gn.nmea"][1:])
        assert all(f.received_ns for f in fixes)
    finally:
        os.close(master)
        os.close(slave)


def test_unplugged_port_mid_stream_is_a_clear_error():
    master, slave = os.openpty()
    gps = GpsReader(os.ttyname(slave), 4800)
    os.write(master, (DATA / "sirf_gp.nmea").read_bytes()[:1100])
    got = []
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        got += gps.read()
    assert got and got[0].sats == 7            # accepted before the unplug
    os.close(master)
    os.close(slave)
    with pytest.raises(GpsError, match="went away"):
        for _ in range(50):
            gps.read()


def test_missing_port_and_bad_baud():
    with pytest.raises(GpsError, match="cannot open GPS port /dev/ttyNOPE0"):
        GpsReader("/dev/ttyNOPE0", 9600)
    with pytest.raises(ValueError, match="baud"):
        GpsReader("/dev/null", 1234)
