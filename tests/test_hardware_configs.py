"""The node's system configs in hardware/ parse with the real tools that read them."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

HARDWARE = pathlib.Path(__file__).resolve().parents[1] / "hardware"


def _chronyd() -> str:
    found = shutil.which("chronyd") or shutil.which("chronyd", path="/usr/sbin")
    if not found:
        pytest.fail("chronyd is not installed (apt-get install chrony; .ci/run does this)")
    return found


def test_chrony_conf_parses_and_locks_pps_to_nmea():
    conf = HARDWARE / "chrony" / "chrony.conf"
    # -p: parse the file, print it, exit; an unknown directive or option exits non-zero
    run = subprocess.run([_chronyd(), "-p", "-f", str(conf)], capture_output=True, text=True, timeout=10)
    assert run.returncode == 0, run.stderr
    refclocks = [line.split() for line in run.stdout.splitlines() if line.startswith("refclock")]
    shm = next(r for r in refclocks if r[1] == "SHM")
    pps = next(r for r in refclocks if r[1] == "PPS")
    nmea_refid = shm[shm.index("refid") + 1]
    assert "noselect" in shm
    assert pps[2] == "/dev/pps0" and pps[pps.index("lock") + 1] == nmea_refid and "prefer" in pps


def test_chronyd_rejects_a_broken_refclock(tmp_path):
    bad = tmp_path / "chrony.conf"
    bad.write_text((HARDWARE / "chrony" / "chrony.conf").read_text().replace("lock NMEA", "lokc NMEA"))
    run = subprocess.run([_chronyd(), "-p", "-f", str(bad)], capture_output=True, text=True, timeout=10)
    assert run.returncode != 0 and "refclock" in run.stderr
