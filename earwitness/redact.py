"""Secrets out of what the programs print: passwords in URLs (``scheme://user:PASSWORD@host``,
``?password=...``) masked in error lines and log lines, so journals and terminals never hold them.

Example::

    mask_secrets("cannot open postgresql://ew:s3cret@db/ew")   # 'cannot open postgresql://ew:***@db/ew'
    handler.setFormatter(MaskingFormatter("%(levelname)s %(message)s"))
"""
from __future__ import annotations

import logging
import re

MASK = "***"
# The userinfo password of a URL (RFC 3986 §3.2.1), up to the last "@" before the host: a
# password may hold an unescaped "@" or "/" where the user typed one.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)(?P<secret>[^\s'\"]*)(?=@)")
# A password given as a query or keyword parameter (libpq's ``password=``, ``?password=``).
_PARAMETER = re.compile(r"(?P<head>\b(?:password|passwd|pwd)=)(?P<secret>[^\s&;'\"]+)", re.IGNORECASE)


def mask_secrets(text: str) -> str:
    """``text`` with every URL password and ``password=`` value replaced by ``***``."""
    text = _USERINFO.sub(lambda m: m["head"] + MASK, text)
    return _PARAMETER.sub(lambda m: m["head"] + MASK, text)


class MaskingFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks included) carry no password (:func:`mask_secrets`)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def mask_logging(level: str | int, fmt: str) -> None:
    """Configure the root logger (as :func:`logging.basicConfig`) with masked lines."""
    logging.basicConfig(level=level, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(MaskingFormatter(fmt))
