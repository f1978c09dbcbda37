"""The fusion server's own health, published on ``ew/v1/{site}/fusion/health`` (JSON) so that an
operator's dashboard sees a sick server or a sick node before a shot goes unlocated::

    {"t_ns": ..., "worker": "pgh/0", "uptime_s": 812.4, "connected": true, "reconnects": 1,
     "pulses_per_s": 3.2, "pulses_accepted": 2604, "deadletters": {"replay": 2, "signature": 1},
     "backlog": {"unstored_messages": 0, "to_locate": 0, "unstored_rounds": 0, "open_windows": 1},
     "store_failing": null,
     "nodes_last_seen_ns": {"roof-12": 17..., "roof-13": null},
     "nodes_degraded": {"roof-13": ["silent"], "roof-14": ["timing-system", "pps-unlocked"]}}

A node is *degraded* when its last pulse or health report says its times come from the system
clock (``timing`` ``system``: hundreds of ms uncertain), its PPS is not locked, its outbox
evicted or dropped pulses (its disk filled), or nothing has come from it for NODE_SILENT_S.

Example::

    health = ServerHealth(registry.positions, started_ns=time.time_ns())
    health.saw_pulses(accepted); health.saw_health("roof-12", body, received_ns)
    report = health.report(now_ns, accepted_total, rejected_counter, backlog, connected, reconnects, failing)
"""
from __future__ import annotations

from earwitness.units import NS_PER_S

# A node nothing has come from (pulse or health report) for this long is degraded ("silent").
NODE_SILENT_S = 300.0
DEGRADED_TIMING = "system"
DECIMALS = 2


class ServerHealth:
    """What the server has seen of its nodes, and its health report."""

    def __init__(self, nodes, started_ns: int):
        self.started_ns = started_ns
        self.last_seen_ns: dict[str, int | None] = {n: None for n in nodes}
        self._timing: dict[str, str] = {}          # each node's latest pulse's timing
        self._reported: dict[str, dict] = {}       # each node's latest health report
        self._last = (started_ns, 0)               # (t_ns, pulses accepted) at the last report

    def saw_pulses(self, pulses: list[dict]) -> None:
        """Accepted pulses (contract pulses with ``sensor``, ``received_ns``, ``timing``)."""
        for p in pulses:
            node = p["sensor"]
            self.last_seen_ns[node] = max(self.last_seen_ns.get(node) or 0, int(p["received_ns"]))
            if "timing" in p:
                self._timing[node] = p["timing"]

    def saw_health(self, node: str, body: dict, received_ns: int) -> None:
        """A node's health report (as :meth:`edge.node.Node.health` publishes it)."""
        self.last_seen_ns[node] = max(self.last_seen_ns.get(node) or 0, received_ns)
        self._reported[node] = body

    def degraded(self, now_ns: int) -> dict[str, list[str]]:
        """The degraded nodes and why (``silent``, ``timing-system``, ``pps-unlocked``, ``outbox-evicted``,
        ``outbox-dropped``)."""
        out = {}
        for node, seen_ns in self.last_seen_ns.items():
            why = []
            if seen_ns is None or now_ns - seen_ns > NODE_SILENT_S * NS_PER_S:
                why.append("silent")
            report = self._reported.get(node, {})
            if DEGRADED_TIMING in (self._timing.get(node), report.get("timing")):
                why.append("timing-system")
            if report.get("pps_locked") is False:
                why.append("pps-unlocked")
            for key in ("outbox_evicted", "outbox_dropped"):   # pulses its full disk lost
                if (report.get(key) or 0) > 0:
                    why.append(key.replace("_", "-"))
            if why:
                out[node] = why
        return out

    def report(self, now_ns: int, accepted: int, rejected, backlog: dict, connected: bool, reconnects: int,
               failing: str | None, worker: str) -> dict:
        """The health report; ``accepted`` and ``rejected`` (reason -> count) are totals since start."""
        then_ns, then_accepted = self._last
        self._last = (now_ns, accepted)
        rate = (accepted - then_accepted) * NS_PER_S / (now_ns - then_ns) if now_ns > then_ns else 0.0
        return {"t_ns": now_ns, "worker": worker, "uptime_s": round((now_ns - self.started_ns) / NS_PER_S, 1),
                "connected": connected, "reconnects": reconnects, "pulses_per_s": round(rate, DECIMALS),
                "pulses_accepted": accepted, "deadletters": dict(sorted(dict(rejected).items())),
                "backlog": backlog, "store_failing": failing,
                "nodes_last_seen_ns": dict(sorted(self.last_seen_ns.items())),
                "nodes_degraded": self.degraded(now_ns)}
