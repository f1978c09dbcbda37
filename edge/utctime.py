"""ISO 8601 UTC timestamps <-> integer nanoseconds since the Unix epoch (``t_ns``)."""
from __future__ import annotations

import datetime as dt
import re

from earwitness.units import NS_PER_S

# datetime keeps microseconds only: the fraction is split off and kept to the nanosecond.
_FRACTION = re.compile(r"^(?P<head>\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d)?)(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d\d:?\d\d)?$", re.I)


def parse_utc_ns(text: str) -> int:
    """``2018-12-19T00:49:26.123456789Z`` -> ns since the epoch; no zone means UTC.

    Raises ValueError with the offending text when it is not ISO 8601 date and time.
    """
    m = _FRACTION.match(text.strip())
    if not m:
        raise ValueError(f"not an ISO 8601 date and time: {text!r}")
    tz = m["tz"] or "+00:00"
    tz = "+00:00" if tz.upper() == "Z" else tz[:3] + ":" + tz[-2:]
    try:
        when = dt.datetime.fromisoformat(m["head"] + tz)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date and time: {text!r}") from None
    frac = (m["frac"] or "0")[:9].ljust(9, "0")
    return int(when.timestamp()) * NS_PER_S + int(frac)


def format_utc_ns(t_ns: int) -> str:
    """ns since the epoch -> ``YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ``."""
    s, ns = divmod(int(t_ns), NS_PER_S)
    return dt.datetime.fromtimestamp(s, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"
