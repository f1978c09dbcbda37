"""`earwitness gps`: replays, a receiver emulated on a real pseudo-terminal, and one-line
errors."""
import datetime as dt
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import pytest

DATA = pathlib.Path(__file__).parent / "data" / "nmea"


def gps(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "earwitness", "gps", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_replay_json_one_line_per_fix():
    out = gps("--replay", str(DATA / "sirf_gp.nmea"), "--json")
    assert out.returncode == 0, out.stderr
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(recs) == 5
    assert all(set(r) == {"t_ns", "lat", "lon", "alt", "mode", "sats"} for r in recs)
    assert [r["sats"] for r in recs] == [6, 7, 6, 7, 6]
    midnight = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc).timestamp()
    assert recs[3]["t_ns"] == int(midnight) * 10**9
    assert recs[0]["alt"] == 236.9 and recs[0]["mode"] == 3
    assert abs(recs[0]["lat"] - (40 + 26.4375 / 60)) < 1e-9


def test_replay_text_and_count():
    out = gps("--replay", str(DATA / "ublox_m8_gn.nmea"), "--count", "4")
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == 4
    assert lines[0].startswith("2026-12-09T09:27:25.000000000Z no fix sats=0")
    assert " 2D sats=4 lat=47.2852352 lon=8.5652630" in lines[2]
    assert lines[3].endswith("alt=547.6")


def test_port_reports_fixes_and_degraded_clock():
    master, slave = os.openpty()
    stop = threading.Event()
    raw = (DATA / "bds_mix.nmea").read_bytes()

    def receiver():        # keeps talking, like a receiver, until the test ends
        while not stop.is_set():
            for line in raw.splitlines(keepends=True):
                if stop.is_set():
                    return
                os.write(master, line)
                time.sleep(0.005)

    t = threading.Thread(target=receiver, daemon=True)
    t.start()
    try:
        out = gps("--port", os.ttyname(slave), "--baud", "115200", "--json", "--count", "3")
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)
    assert out.returncode == 0, out.stderr
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(recs) == 3
    for r in recs:
        assert r["mode"] == 3 and 12 <= r["sats"] <= 15
        assert r["pps_locked"] is False and r["clock"]["timing"] == "system"


def test_replay_of_a_file_without_fixes_says_so_in_one_line(tmp_path):
    nothing = tmp_path / "nothing.nmea"
    nothing.write_bytes(b"\x00\xb5b binary\r\n$GPGSV,1,1,01,05,40,083,46*40\r\nhello\r\n")
    out = gps("--replay", str(nothing))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [f"earwitness gps: error: no fixes in {nothing}: no timed RMC or GGA "
                                               "sentence among its 1 valid sentences (0 bad checksums, 2 lines that "
                                               "are not NMEA)"]
    cold = tmp_path / "cold.nmea"
    cold.write_bytes(b"".join(line + b"\r\n" for line in (DATA / "fix_modes.nmea").read_bytes().splitlines()[3:6]))
    out = gps("--replay", str(cold))
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1 and " no fix " in out.stdout
    assert out.stderr.strip().splitlines() == [f"earwitness gps: no position fix in {cold}: 1 epochs, none with a fix "
                                               "(the receiver never saw enough satellites)"]


def test_user_errors_are_one_line():
    for args, words in [
        (("--port", "/dev/ttyNOPE0"), "cannot open GPS port /dev/ttyNOPE0"),
        (("--port", "/dev/null", "--pps", "/dev/pps99"), "no PPS device /dev/pps99"),
        (("--port", "/dev/null", "--baud", "300"), "--baud must be one of"),
        (("--replay", "/no/such/log.nmea"), "No such file"),
    ]:
        out = gps(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = gps()
    assert out.returncode == 2 and "one of the arguments --port --replay is required" in out.stderr


@pytest.mark.slow
def test_silent_port_and_non_pps_device_are_reported():
    """A port that sends nothing gets a warning line; /dev/null as PPS device is named as
    not a PPS device in the status line, and the clock is flagged degraded."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "earwitness", "gps", "--port", os.ttyname(slave),
                             "--pps", "/dev/null", "--count", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = proc.stderr.readline()
        assert "no fix from" in warning and "wrong --baud?" in warning
        raw = (DATA / "bds_mix.nmea").read_bytes()
        os.write(master, raw)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
        os.close(slave)
    assert proc.returncode == 0
    assert "pps=none (/dev/null is not a PPS device) clock=system (degraded)" in out
