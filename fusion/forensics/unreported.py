"""Gunfire nobody called in: per area, located incidents with and without a matching 911 call.

The unreported share of an area is the fraction of its gunfire incidents that no call matched,
k of n, with a 95 % interval by Wilson's score method (E. B. Wilson, "Probable inference, the
law of succession, and statistical inference", JASA 22, 1927), computed by
:meth:`scipy.stats.binomtest`'s ``proportion_ci(method="wilson")``: unlike the normal
approximation it stays inside [0, 1] and keeps near its nominal coverage for the small counts
a neighbourhood has (Brown, Cai & DasGupta, "Interval estimation for a binomial proportion",
Statistical Science 16, 2001).

An incident lies in every area whose polygon covers its located position; incidents in no area
are counted in a row of their own (OUTSIDE), so the table adds up.
"""
from __future__ import annotations

from dataclasses import dataclass

import shapely
from scipy import stats
from shapely.geometry import Point

from fusion.forensics.frame import Plane
from fusion.forensics.geojson import Area

CONFIDENCE = 0.95
OUTSIDE = "(outside every area)"
# Without areas, one that holds every incident (plane metres: far beyond any city).
EVERYWHERE_M = 1e12
ALL = "all"
SHARE_DECIMALS = 4


@dataclass
class AreaCount:
    """One area's incidents: ``called`` of them matched a call, the rest nobody called in."""

    name: str
    incidents: list[str]
    called: list[str]

    @property
    def n(self) -> int:
        return len(self.incidents)

    @property
    def unreported(self) -> int:
        return len(self.incidents) - len(self.called)

    def row(self, confidence: float = CONFIDENCE) -> dict:
        """``{"area", "incidents", "called", "unreported", "unreported_share", "ci_low", "ci_high"}`` (None without incidents)."""
        share = lo = hi = None
        if self.n:
            share = round(self.unreported / self.n, SHARE_DECIMALS)
            lo, hi = wilson_interval(self.unreported, self.n, confidence)
        return {"area": self.name, "incidents": self.n, "called": len(self.called), "unreported": self.unreported,
                "unreported_share": share, "ci_low": lo, "ci_high": hi}


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson's score interval for k successes of n trials (module docstring), rounded."""
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return round(float(ci.low), SHARE_DECIMALS), round(float(ci.high), SHARE_DECIMALS)


def count_by_area(areas: list[Area], incidents: list[dict], called: set[str], plane: Plane) -> list[AreaCount]:
    """Each area's incidents and the called ones among them, in the areas' order, OUTSIDE last if any."""
    counts = [AreaCount(a.name, [], []) for a in areas]
    outside = AreaCount(OUTSIDE, [], [])
    for inc in incidents:
        plane.check(inc, f"incident {inc['incident']}")
        point = Point(plane.xy(inc))
        homes = [c for a, c in zip(areas, counts) if a.polygon.covers(point)] or [outside]
        for c in homes:
            c.incidents.append(inc["incident"])
            if inc["incident"] in called:
                c.called.append(inc["incident"])
    return counts + ([outside] if outside.n else [])


def tally(areas: list[Area] | None, incidents: list[dict], called: set[str], plane: Plane) -> list[AreaCount]:
    """:func:`count_by_area` over ``areas``, or over one area ``"all"`` holding everything when there are none."""
    if not areas:
        areas = [Area(ALL, shapely.box(-EVERYWHERE_M, -EVERYWHERE_M, EVERYWHERE_M, EVERYWHERE_M))]
    return count_by_area(areas, incidents, called, plane)
