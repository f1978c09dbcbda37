"""Whether a file a configuration names can be read: checked when the configuration loads.

ssl reports an unreadable certificate or key only once it connects, and without the file's path
or the setting that named it ("Permission denied"); a program's start checks each such file
here so that its one-line error names both, before anything runs.

Example::

    problem = file_problem(pathlib.Path("/etc/earwitness/node-key.pem"))
    if problem:
        raise ConfigError(f"mqtt.cert_key: {problem}")   # "... cannot read PATH (Permission denied)"
"""
from __future__ import annotations

import pathlib


def file_problem(path: pathlib.Path) -> str | None:
    """``no such file PATH`` or ``cannot read PATH (reason)``; None if the file opens for reading."""
    if not path.is_file():
        return f"no such file {path}"
    try:
        open(path, "rb").close()
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror})"
    return None
