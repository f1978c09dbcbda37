"""A fusion process that runs worker slots by lease, and takes over the slots of workers that died.

With ``workers = N`` on PostgreSQL each process prefers its ``worker_index`` and runs it as soon as
it holds that slot's lease (:mod:`fusion.server.lease`).  Once it has run ``TAKEOVER_AFTER_S``
(time for every worker of the site to start and take its own slot), it also takes any slot whose
lease is free: the slot of a worker that died.  Each slot it runs is a
:class:`fusion.server.service.FusionService` of its own (its link, tracker and outbox, resumed from
the shared store), so a taken-over slot continues the incidents of the dead worker under their
ids.  A slot whose lease is lost is stopped, and so is one whose store refuses our writes because
another process started it since (:meth:`fusion.server.store.Store.take_slot`: the fence for a
lease lost unnoticed).

Example::

    runner = SlotRunner(load_config("fusion.toml")).start()
    ...
    runner.stop()
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

from fusion.server.lease import SlotLease
from fusion.server.service import FusionConfig, FusionService, StartCancelled

log = logging.getLogger(__name__)

# After this long a process takes over free slots: its peers had time to take their own.
TAKEOVER_AFTER_S = 10.0
POLL_S = 0.5


class SlotRunner:
    """Runs the slots this process holds the lease of (see the module's docstring)."""

    def __init__(self, config: FusionConfig, takeover_after_s: float = TAKEOVER_AFTER_S, poll_s: float = POLL_S,
                 stop: threading.Event | None = None):
        from fusion.transport import fusion_service

        self.config = config
        self.takeover_after_s, self.poll_s = takeover_after_s, poll_s
        self.leases = {slot: SlotLease(config.database, config.site, slot, config.schema) for slot in range(config.workers)}
        self.services: dict[int, FusionService] = {}
        self.takeovers = 0
        self._make = fusion_service
        self._started = time.monotonic()
        # Set by stop() or the caller's own (a signal): also ends a slot's wait for an unreachable broker.
        self._stop = stop or threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> "SlotRunner":
        """Take the own slot if free (at once; waiting for the broker if it cannot be reached yet,
        StartCancelled if stopped meanwhile), then watch the leases in a thread."""
        self._started = time.monotonic()
        self._tick()
        self._thread = threading.Thread(target=self._run, name="fusion-slots", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop every slot it runs (final revisions published) and give their leases back."""
        self._stop.set()
        watcher, self._thread = self._thread, None
        if watcher is not None:
            watcher.join()
        with self._lock:
            for slot, service in list(self.services.items()):
                service.stop()
                self.leases[slot].release()
            self.services.clear()
        for lease in self.leases.values():
            lease.close()

    def first(self) -> FusionService | None:
        with self._lock:
            return next(iter(self.services.values()), None)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._tick()
            except StartCancelled:   # stopped while a slot waited for the broker
                return
            except Exception:  # noqa: BLE001 - a database outage: try again next time
                log.exception("slot leases: check failed; again in %.1f s", self.poll_s)

    def _tick(self) -> None:
        with self._lock:
            for slot, service in list(self.services.items()):
                fenced = service.fenced   # another process started the slot while we held it, as we thought
                if fenced or not self.leases[slot].alive():
                    if not fenced:
                        log.error("lost the lease of slot %d (database connection gone): stopping it", slot)
                    del self.services[slot]
                    service.stop(finalise=False)
                    self.leases[slot].release()
            wanted = [self.config.worker_index]
            if time.monotonic() - self._started >= self.takeover_after_s:
                wanted += [s for s in range(self.config.workers) if s != self.config.worker_index]
            for slot in wanted:
                if slot not in self.services and not self._stop.is_set() and self.leases[slot].try_acquire():
                    self._run_slot(slot)

    def _run_slot(self, slot: int) -> None:
        own = slot == self.config.worker_index
        base = self.config.client_id or f"earwitness-fusion-{self.config.site}"
        config = dataclasses.replace(self.config, worker_index=slot, client_id=f"{base}-slot{slot}")
        if not own:
            log.warning("slot %d of site %s is free (its worker died or stopped): taking it over", slot, self.config.site)
        service = None
        try:
            service = self._make(config)
            service.start(cancel=self._stop)
        except Exception:
            if service is not None:
                service.store.close()
            self.leases[slot].release()
            raise
        self.services[slot] = service
        if not own:
            self.takeovers += 1
            log.warning("took over slot %d of site %s", slot, self.config.site)
        else:
            log.info("running slot %d of %d of site %s", slot, self.config.workers, self.config.site)
