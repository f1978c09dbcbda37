"""Record types of the contracts in DESIGN.md: a pulse, a shot, an incident.

They are :class:`typing.TypedDict`: the records travel as JSON (JSONL files, MQTT, the
store), so a plain dict is what every program reads and writes; these types say which keys
it has.  Positions use the frame the input used: local ``x``/``y``/``z`` metres or WGS84
``lat``/``lon``/``alt``; the keys of the other frame are absent.
"""

import sys
from typing import TypedDict

if sys.version_info >= (3, 11):
    from typing import NotRequired
else:
    from typing_extensions import NotRequired

GUNFIRE, FIREWORKS, OTHER, UNKNOWN = "gunfire", "fireworks", "other", "unknown"
CLASSES = (GUNFIRE, FIREWORKS, OTHER, UNKNOWN)
# How a pulse's time was obtained, best first.
TIMINGS = ("pps-audio", "pps-kernel", "system", "file")


class Pulse(TypedDict):
    """One impulse heard by one sensor (Pulses JSONL)."""

    sensor: str
    t_ns: int                        # first arrival, ns since the Unix epoch, UTC
    t_unc_ns: NotRequired[int]       # one-sigma timing uncertainty
    snr_db: NotRequired[float]
    peak_dbfs: NotRequired[float]
    spl_db: NotRequired[float]
    features: NotRequired[dict[str, float]]
    timing: NotRequired[str]         # one of TIMINGS


class Position(TypedDict, total=False):
    """A located position in the frame of the input: ``x``/``y``/``z`` or ``lat``/``lon``/``alt``."""

    x: float
    y: float
    z: float
    lat: float
    lon: float
    alt: float


class Ellipse(TypedDict):
    """The 95 % region of a horizontal position: semi-axes and the major axis' bearing."""

    semi_major_m: float
    semi_minor_m: float
    orientation_deg: float           # of the major axis, degrees clockwise from north, [0, 180)


class Shot(Position):
    """One discharge: its time at the source, where, and the sensors whose arrivals fixed it."""

    t_ns: int                        # estimated discharge time at the source
    err_m: float                     # radius of the 95 % circle for the true horizontal position
    ellipse: NotRequired[Ellipse]    # the 95 % ellipse for it
    shooter: int                     # shooters numbered in order of their first shot
    sensors: list[str]


# "class" is a keyword, so it is declared in the functional syntax; one of CLASSES.
_Classified = TypedDict("_Classified", {"class": str})


class Incident(Position, _Classified):
    """One burst of shots close in time and place (Incidents JSONL)."""

    incident: str
    t_ns: int                        # the first shot's discharge time
    err_m: float                     # the main shooter's shots' median err_m
    ellipse: NotRequired[Ellipse]    # the ellipse of the shot with that err_m
    rounds: int
    shooters: int
    confidence: float
    c_mps: NotRequired[float]        # the speed of sound the fit used
    shots: list[Shot]                # in discharge order
    sensors: list[str]
