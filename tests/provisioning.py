"""Runs hardware/provision.sh as an installer would, with the earwitness of this venv."""
from __future__ import annotations

import pathlib
import subprocess
import sys

PROVISION = pathlib.Path(__file__).resolve().parents[1] / "hardware" / "provision.sh"
EARWITNESS = pathlib.Path(sys.executable).parent / "earwitness"


def provision(dest: pathlib.Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``provision.sh --dest DEST --data-dir DEST/var ARGS...``; raises on failure if ``check``."""
    run = subprocess.run([str(PROVISION), "--dest", str(dest), "--data-dir", str(dest / "var"),
                          "--earwitness", str(EARWITNESS), *args], capture_output=True, text=True, timeout=30)
    if check and run.returncode != 0:
        raise AssertionError(f"provision.sh failed: {run.stderr}")
    return run
