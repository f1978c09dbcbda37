"""A small disk for a command: a tmpfs of a given size mounted in a mount namespace the test
creates (``unshare -rm``: a user namespace, so no privileges are needed), optionally already
filled with a ballast file; the rest of the system sees nothing of it."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

SCRIPT = ('mount -t tmpfs -o size="$1"k tmpfs "$0" && '
          '{ [ "$2" = 0 ] || dd if=/dev/zero of="$0/ballast" bs=1k count="$2" status=none; } && shift 3 && exec "$@"')


def available() -> str | None:
    """None if small disks can be made here, else why not (one line)."""
    if shutil.which("unshare") is None:
        return "no unshare(1) here"
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -rm refused: {probe.stderr.strip()}"


def on_small_disk(mount: pathlib.Path, size_kb: int, argv: list[str], ballast_kb: int = 0) -> list[str]:
    """The command line that runs ``argv`` with a ``size_kb`` tmpfs at ``mount`` holding ``ballast_kb`` of ballast."""
    mount.mkdir(parents=True, exist_ok=True)
    return ["unshare", "-rm", "sh", "-c", SCRIPT, str(mount), str(size_kb), str(ballast_kb), "--", *argv]
