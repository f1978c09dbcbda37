"""Text from a user's file, shown in a one-line error message.

A CSV header with a quote left open runs on over the next lines (the csv module reads the quoted
field to the next quote), and a user's file may hold any character: what the message shows of it
is escaped onto one line and cut short.

Example::

    raise SensorsError(f"{path}: header is {header_shown(header)}; expected ...")
"""
from __future__ import annotations

from collections.abc import Sequence

# Characters of a user's text shown in a message; the rest is elided.
SHOWN_MAX = 80


def one_line(text: str, limit: int = SHOWN_MAX) -> str:
    """``text`` with line breaks, control and non-ASCII characters escaped (``\\n``, ``\\xe9``),
    cut to ``limit`` characters and ``...``."""
    shown = text.encode("unicode_escape").decode("ascii")
    return shown if len(shown) <= limit else shown[:limit] + "..."


def header_shown(header: Sequence[str] | None) -> str:
    """A CSV header's fields as :func:`one_line` shows them, comma-joined; ``(empty)`` for none."""
    return one_line(",".join(header or ())) or "(empty)"
