"""What a located incident's shots explain among the held pulses: their predicted arrivals,
their echoes and bullet cracks, and the evidence beyond the window they were located in.

A pulse within MATCH_TOLERANCE_S of a shot's predicted arrival at its sensor is that shot's
arrival (no other window may take it); one up to ECHO_SKIP_S later may be its echo (not an
anchor of a shot of its own); one before the blast, too loud for it at that distance, is its
bullet's crack (:func:`fusion.locator.shockwave.louder_than_blast`: downrange sensors may hear
it alone).

Example::

    book = ArrivalBook(reach, buffer)
    predicted = book.predict(incident, window_pulses, used_ids)
    explains([predicted], "roof-12", t_ns, peak_dbfs) == ARRIVAL
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from earwitness.records import Incident
from earwitness.units import NS_PER_S
from fusion.locator.attribution import ECHO_WINDOW_S, MATCH_TOLERANCE_S
from fusion.locator.classify import CRACKLE_SPAN_S
from fusion.locator.shockwave import LEVEL_EXCESS_DB, MIN_LEVELS, level_at_1m_db
from fusion.tracking.buffer import PulseBuffer, PulseRecord
from fusion.tracking.reach import Reach, incident_c_m_s

# A shot's arrivals farther out than its window and its echoes, up to this long after the
# predicted arrival, are not anchors (the fleet model's echoes lag 0.25 s on average).
ECHO_SKIP_S = 1.0
# No bullet is faster (Mach 3.5): its crack reaches a sensor no sooner than distance / this.
V_MAX_BULLET_M_S = 1200.0

# What a pulse is to a located shot (see explains); NOT_EXPLAINED is false.
NOT_EXPLAINED, ARRIVAL, ECHO = 0, 1, 2


class Span(NamedTuple):
    """One shot's predicted arrival at one sensor, in ns (and the distance it travels)."""

    crack_ns: int       # the earliest its bullet's crack can come
    first_ns: int       # the earliest arrival
    last_ns: int        # the latest arrival
    echo_ns: int        # the latest echo
    dist_m: float


class Predicted(NamedTuple):
    """A located incident's predicted arrivals out to the farthest a shot is heard."""

    until_ns: int                      # the latest time they explain a pulse
    table: dict[str, list[Span]]       # per sensor, a span per shot
    level_max_db: float | None         # the loudest level at 1 m its blasts can imply


def explains(active: list[Predicted], sensor: str, t_ns: int, peak_dbfs: float | None) -> int:
    """ARRIVAL if a pulse is an active incident's predicted arrival or its bullet's crack, ECHO if
    it may be one's echo, else NOT_EXPLAINED."""
    found = NOT_EXPLAINED
    for _, table, level_max_db in active:
        for span in table.get(sensor, ()):
            state = span_explains(span, level_max_db, t_ns, peak_dbfs)
            if state == ARRIVAL:
                return ARRIVAL
            found = found or state
    return found


def span_explains(span: Span, level_max_db: float | None, t_ns: int, peak_dbfs: float | None) -> int:
    """What a pulse at ``t_ns`` is to one shot's predicted arrival at its sensor: ARRIVAL (or
    its crack), ECHO, or NOT_EXPLAINED."""
    crack_ns, first_ns, last_ns, echo_ns, dist_m = span
    if first_ns <= t_ns <= last_ns:
        return ARRIVAL
    if last_ns < t_ns <= echo_ns:
        return ECHO
    if (crack_ns <= t_ns < first_ns and level_max_db is not None and peak_dbfs is not None
            and level_at_1m_db(peak_dbfs, dist_m) > level_max_db):
        return ARRIVAL
    return NOT_EXPLAINED


class ArrivalBook:
    """Predicts located incidents' arrivals and finds the held pulses they explain."""

    def __init__(self, reach: Reach, buffer: PulseBuffer):
        self.reach = reach
        self.buffer = buffer

    def predict(self, incident: Incident, pulses: list[dict] = (), used: set = frozenset()) -> Predicted:
        """An incident's predicted arrivals; ``pulses`` it ``used`` (ids) bound its blasts' level."""
        reach, c_m_s = self.reach, incident_c_m_s(incident)
        tolerance_ns, echo_ns = int(MATCH_TOLERANCE_S * NS_PER_S), int(ECHO_SKIP_S * NS_PER_S)
        table: dict[str, list[Span]] = {}
        until_ns = 0
        for shot in incident.get("shots", []):
            xy = reach.enu_xy(shot)
            near = reach.tree.query_ball_point(xy, reach.max_range_m)
            if not near:
                continue
            dist_m = np.hypot(*(reach.tree.data[near] - xy).T)
            t_pred = shot["t_ns"] + (dist_m / c_m_s * NS_PER_S).astype(np.int64)
            t_crack = shot["t_ns"] + (dist_m / V_MAX_BULLET_M_S * NS_PER_S).astype(np.int64)
            for j, t, tc, d in zip(near, t_pred.tolist(), t_crack.tolist(), dist_m.tolist()):
                table.setdefault(reach.names[j], []).append(Span(tc, t - tolerance_ns, t + tolerance_ns, t + echo_ns, d))
            until_ns = max(until_ns, int(t_pred.max()) + echo_ns)
        return Predicted(until_ns, table, self._level_max_db(incident, pulses, used))

    def _level_max_db(self, incident: Incident, pulses: list[dict], used: set) -> float | None:
        """The loudest level at 1 m the incident's used pulses imply for its blasts (None from too few)."""
        xy0 = self.reach.enu_xy(incident) if "shots" in incident else None
        levels = [float(level_at_1m_db(p["peak_dbfs"], math.dist(xy0, self.reach.xy[p["sensor"]])))
                  for p in pulses if p["id"] in used and p.get("peak_dbfs") is not None and p["sensor"] in self.reach.xy]
        return float(np.median(levels)) + LEVEL_EXCESS_DB if len(levels) >= MIN_LEVELS else None

    def in_spans(self, table: dict[str, list[Span]], after_ns: int = 0) -> Iterator[tuple[Span, PulseRecord]]:
        """(span, pulse record) for every held pulse from a span's earliest crack to its latest
        echo (plus ``after_ns``)."""
        for name, spans in table.items():
            for span in spans:
                for rec in self.buffer.of_sensor(name, span.crack_ns, span.echo_ns + after_ns):
                    yield span, rec

    def explained(self, incident: Incident, pulses: list[dict], used: set) -> tuple[set, set]:
        """Ids of the held pulses that are a located incident's arrivals (or cracks), and of those
        that may be its echoes."""
        predicted = self.predict(incident, pulses, used)
        arrivals, echoes = set(), set()
        for span, rec in self.in_spans(predicted.table):
            found = span_explains(span, predicted.level_max_db, rec.t_ns, rec.pulse.get("peak_dbfs"))
            if found == ARRIVAL:
                arrivals.add(rec.id)
            elif found == ECHO:
                echoes.add(rec.id)
        return arrivals, echoes

    def heard_beyond(self, incident: Incident, window: list[dict]) -> list[dict]:
        """The pulses outside the incident's window that are its shots' arrivals or echoes (up to
        the attribution's echo window) at sensors out to the farthest a shot is heard: the
        report lists them with the rest of its evidence."""
        table = self.predict(incident).table
        have = {p["id"] for p in window}
        out = []
        for span, rec in self.in_spans(table, int((ECHO_WINDOW_S - ECHO_SKIP_S) * NS_PER_S)):
            if rec.t_ns >= span.first_ns and rec.id not in have:
                have.add(rec.id)
                out.append(rec.pulse)
        return out

    def around(self, window: list[dict], arrivals: list[list[dict]], beyond: list[dict]) -> list[dict]:
        """What the classifier reads besides an incident's located arrivals: its window's pulses,
        its arrivals ``beyond`` it (:meth:`heard_beyond`: more sensors for the height fix of an
        aerial burst, which all the city hears) and every pulse its sensors heard from
        CRACKLE_SPAN_S before its first arrival to as long after its last (the pops of a
        firecracker string its shots did not take in, before its anchor or after its window)."""
        out = window + beyond
        have = {p["id"] for p in out}
        span_ns = int(CRACKLE_SPAN_S * NS_PER_S)
        for name in {p["sensor"] for a in arrivals for p in a}:
            mine = [int(p["t_ns"]) for a in arrivals for p in a if p["sensor"] == name]
            for rec in self.buffer.of_sensor(name, min(mine) - span_ns, max(mine) + span_ns):
                if rec.id not in have:
                    have.add(rec.id)
                    out.append(rec.pulse)
        return out
