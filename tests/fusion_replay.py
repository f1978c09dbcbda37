"""Feed pulses to the incident tracker as the service does: a fusion_site.Site through the store
in one go, or a stream of pulses on a simulated clock."""
from __future__ import annotations

from earwitness.units import NS_PER_S
from fusion.server.registry import load_registry
from fusion.server.store import PulseRecord, Store
from fusion.tracking.incidents import IncidentTracker


def store_and_locate(site, store: Store, site_name: str = "pgh") -> list:
    """Store every message of ``site`` and every revision the tracker makes; returns the final updates."""
    registry = load_registry(site.registry_path)
    ids = store.add_pulses([PulseRecord(node, p["seq"], {k: v for k, v in p.items() if k != "seq"}, raw)
                            for (node, raw), p in zip(site.messages, site.pulses)])
    tracker = IncidentTracker(registry.sensors, site_name, temperature_c=site.temperature_c,
                              positions=registry.positions)
    stored = store.pulses(ids=ids)
    finals = []
    for update in tracker.add(stored, received_ns=0) + tracker.flush():
        store.save_incident(update.incident, update.status, update.used, update.rejected, update.meta)
        if update.status == "final":
            finals.append(update)
    return finals


STAMP_WAIT_S = 1.0           # a node publishes a pulse once the next PPS edge has timed it
STEP_S = 0.1                 # the server's rounds


def stream(tracker: IncidentTracker, pulses: list[dict], start_ns: int) -> list[dict]:
    """Feed pulses (in time order) to the tracker as the server receives them from nodes in real
    time (a pulse goes out once STAMP_WAIT_S after its arrival), a round every STEP_S of the
    server's clock, on a simulated clock; the last revision of every incident."""
    latest, k = {}, 0
    now_ns, step_ns = start_ns, int(STEP_S * NS_PER_S)
    while k < len(pulses):
        now_ns += step_ns
        batch = []
        while k < len(pulses) and pulses[k]["t_ns"] + STAMP_WAIT_S * NS_PER_S <= now_ns:
            batch.append(pulses[k])
            k += 1
        for update in tracker.add(batch, now_ns) + tracker.expire(now_ns):
            latest[update.incident["incident"]] = dict(update.incident, status=update.status)
    for update in tracker.flush():
        latest[update.incident["incident"]] = dict(update.incident, status=update.status)
    return list(latest.values())
