"""How far an anchor's window reaches, in space and in time, over a site's sensors.

If an anchor pulse is a shot's first arrival, the shot lies within the *anchor range* of its
sensor: the distance at which a sensor has LOCAL_SENSORS neighbours, or the farthest a shot is
heard if less.  The shot's first arrivals at the sensors within HEARD_BY_BOTH anchor ranges of
the anchor (the *window range*) come no earlier than the anchor (less a slack) and no later
than their distance over the slowest speed of sound.

Example::

    reach = Reach(registry.sensors, max_range_m=4000.0, margin_s=1.0)
    reach.near["roof-12"]          # {neighbour: distance_m} within the window range
"""
from __future__ import annotations

import math

import numpy as np
import scipy.spatial

from earwitness.records import Incident, Position, Shot
from earwitness.units import NS_PER_S
from fusion.locator.multilaterate import C_MIN
from fusion.locator.sensors import FRAME_LOCAL, Sensors

# Two arrivals of one sound differ by at most distance / c plus this: TN098's 40 ms association
# limit for diffracted paths, plus the clock error of a node in holdover.
PAIR_SLACK_S = 0.1
HEARD_BY_BOTH = 2.0   # two sensors hearing one shot near the anchor are at most this many anchor ranges apart
# A shot's first arrival is at one of its nearest sensors, so a window needs only the anchor's
# neighbourhood: this many neighbours within the anchor range (a window of about four times as
# many sensors) locate a shot as well as the whole city does (TN098: six or more sensors give
# 96 % within 15 m), and the association's work grows much faster than the sensor count.
LOCAL_SENSORS = 8
# Pulses within this fraction of the anchor range of an anchor (and as soon after its window
# as sound crosses that) are not anchors again: a shot they would anchor is near it too.
ANCHOR_COVER_FRACTION = 0.75
# Beyond this many distinct points the farthest pair is sought on the convex hull.
HULL_MIN_POINTS = 3


def incident_c_m_s(incident: Incident) -> float:
    """The speed of sound an incident's fit used; C_MIN (the slowest, so its arrivals are the
    latest possible) when the fit did not say."""
    return incident.get("c_mps") or C_MIN


def diameter_m(sensors: Sensors) -> float:
    """Largest horizontal distance between two sensors (sets the propagation window)."""
    enu = np.unique(sensors.enu_m[:, :2], axis=0)
    if len(enu) < 2:
        return 0.0
    if len(enu) > HULL_MIN_POINTS:
        try:
            # The farthest pair lies on the convex hull: O(n log n) instead of all n^2 pairs.
            enu = enu[scipy.spatial.ConvexHull(enu).vertices]
        except scipy.spatial.QhullError:  # all on one line
            pass
    return float(scipy.spatial.distance.pdist(enu).max())


def sensor_positions(sensors: Sensors) -> dict[str, Position]:
    """Each sensor's position in the frame of the input (what an incident's evidence lists)."""
    if sensors.frame == FRAME_LOCAL:   # exactly as given: no rounding
        return {name: dict(zip(("x", "y", "z"), map(float, enu))) for name, enu in zip(sensors.ids, sensors.enu_m)}
    return {name: sensors.to_output(enu) for name, enu in zip(sensors.ids, sensors.enu_m)}


def neighbourhood_m(tree: scipy.spatial.cKDTree | None, k: int) -> float:
    """Median distance from a sensor to its k-th nearest neighbour (inf with k or fewer others)."""
    if tree is None or tree.n <= k:
        return math.inf
    dist_m, _ = tree.query(tree.data, k=k + 1)
    return float(np.median(dist_m[:, k]))


class Reach:
    """The sensors' horizontal positions and neighbourhoods, and the ranges and times of a window.

    Attributes
    ----------
    sensors : Sensors
        The site's sensors (the frame of the output).
    xy : dict
        Each sensor's (east, north) metres; ``names`` in the order of ``tree``'s points.
    near : dict
        Per sensor, its neighbours within ``window_range_m``, with their distances.
    anchor_range_m, window_range_m, cover_m, max_range_m : float
        See the module docstring; ``cover_m``: pulses this near an anchor are no anchors.
    pair_slack_ns : int
        How much more than distance / c two arrivals of one sound may differ by.
    span_ns : int
        A window's pulses come at most this long after its anchor (less the burst it holds).
    window_ns : int
        ``span_ns`` plus the margin: a window no pulse came into for this long closes.
    """

    def __init__(self, sensors: Sensors, max_range_m: float, margin_s: float):
        self.sensors = sensors
        self.max_range_m = max_range_m
        self.xy = {name: (float(e), float(n)) for name, (e, n, _) in zip(sensors.ids, sensors.enu_m)}
        self.names = list(self.xy)
        points = np.array([self.xy[n] for n in self.names]).reshape(-1, 2)
        self.tree = scipy.spatial.cKDTree(points) if self.names else None
        self.anchor_range_m = min(max_range_m, neighbourhood_m(self.tree, LOCAL_SENSORS))
        self.window_range_m = HEARD_BY_BOTH * self.anchor_range_m
        self.cover_m = ANCHOR_COVER_FRACTION * self.anchor_range_m
        self.pair_slack_ns = int(min(margin_s, PAIR_SLACK_S) * NS_PER_S)
        self.span_ns = int(min(diameter_m(sensors), self.window_range_m) / C_MIN * NS_PER_S) + self.pair_slack_ns
        self.window_ns = self.span_ns + int(margin_s * NS_PER_S)
        self.near: dict[str, dict[str, float]] = {}
        for name in self.names:
            idx = self.tree.query_ball_point(self.xy[name], self.window_range_m)
            self.near[name] = {self.names[j]: math.dist(self.xy[name], self.xy[self.names[j]]) for j in idx}

    def enu_xy(self, position: Position) -> np.ndarray:
        """A position of the output frame as (east, north) metres."""
        return self.sensors.to_enu(position)[:2]

    def arrival_ns(self, shot: Shot, incident: Incident, sensor: str) -> int:
        """A shot's straight-line arrival time at a sensor."""
        return shot["t_ns"] + int(math.dist(self.enu_xy(shot), self.xy[sensor]) / incident_c_m_s(incident) * NS_PER_S)
