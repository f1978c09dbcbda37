"""Feed a fusion_site.Site through the store and the incident tracker, as the service does, in one go."""
from __future__ import annotations

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
