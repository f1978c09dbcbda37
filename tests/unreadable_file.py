"""A file the test process cannot read, for the configurations' readability checks."""
from __future__ import annotations

import pathlib

import pytest

# Mode 0200 in procfs: even root, who reads any file whatever its mode, cannot read it.
WRITE_ONLY_FILE = pathlib.Path("/proc/sys/vm/compact_memory")


def unreadable(folder: pathlib.Path) -> pathlib.Path:
    """A file this process cannot read: mode 000, or where that does not stop it (root) a write-only one."""
    path = folder / "locked.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\n")
    path.chmod(0)
    for candidate in (path, WRITE_ONLY_FILE):
        try:
            open(candidate, "rb").close()
        except PermissionError:
            return candidate
        except OSError:
            continue
    pytest.skip("no file this process cannot read: it reads mode 000 (root) and this kernel has no "
                f"{WRITE_ONLY_FILE}")
