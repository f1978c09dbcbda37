"""Spatial partition of a site among fusion workers: square cells, each owned by one worker, with a halo.

Ingest is shared (an MQTT v5 shared subscription hands each pulse message to one worker),
but location needs every pulse of an incident in one place.  So the worker that ingests a
pulse forwards it to the owners of the cells whose square, grown by ``halo_m``, contains the
pulse's node (topic ``ew/v1/{site}/worker/{k}/pulse``, once per owner); each worker locates from
what its topic brings.  A shot near a border is heard by sensors of both cells and may
be located by both workers, but only the owner of the cell of the node nearest to the shot
opens it as an incident.  (A node, not the estimated position itself, decides, so that every
worker that located the same position agrees on its owner whatever its own cells.)  Two
workers may still locate one shot at places each owns (each from its own side's pulses, or a
preliminary from few sensors on the far side): the first to store it claims the shot and
publishes it to the end, wherever it moves, and the other yields (:mod:`fusion.server.claims`).

Ownership is ``(i * P_I + j * P_J) mod workers`` with odd multipliers: with two workers, a
checkerboard, so neighbouring cells always have different owners.
"""
from __future__ import annotations

import math

import numpy as np

from fusion.server.registry import Registry

P_I, P_J = 73856093, 19349663   # odd, so that with two workers neighbours alternate


class Partition:
    """Cells of ``cell_m`` metres (site ENU frame) shared among ``workers``; this is worker ``index``.

    Parameters
    ----------
    registry : fusion.server.registry.Registry
        The site's nodes (positions).
    cell_m : float
        Side of a square cell.
    halo_m : float
        How far beyond its cell a node still feeds the cell: at least the distance at which a
        shot in the cell gives usable first arrivals.
    workers, index : int
        How many workers share the site, and which one this is (0-based).
    """

    def __init__(self, registry: Registry, cell_m: float, halo_m: float, workers: int, index: int):
        if cell_m <= 0 or halo_m < 0 or workers < 1 or not 0 <= index < workers:
            raise ValueError("partition needs cell_m > 0, halo_m >= 0 and 0 <= index < workers")
        self.registry, self.cell_m, self.halo_m = registry, float(cell_m), float(halo_m)
        self.workers, self.index = workers, index
        self.node_cells: dict[str, list[tuple[int, int]]] = {}
        for name, i in registry.sensors.index.items():
            x, y = registry.sensors.enu_m[i, :2]
            self.node_cells[name] = self._cells_near(x, y)

    def _cells_near(self, x: float, y: float) -> list[tuple[int, int]]:
        """Cells whose square grown by the halo contains (x, y)."""
        lo_i, hi_i = math.floor((x - self.halo_m) / self.cell_m), math.floor((x + self.halo_m) / self.cell_m)
        lo_j, hi_j = math.floor((y - self.halo_m) / self.cell_m), math.floor((y + self.halo_m) / self.cell_m)
        return [(i, j) for i in range(lo_i, hi_i + 1) for j in range(lo_j, hi_j + 1)]

    def owner(self, cell: tuple[int, int]) -> int:
        return (cell[0] * P_I + cell[1] * P_J) % self.workers

    def cell_of(self, enu_xy) -> tuple[int, int]:
        return math.floor(enu_xy[0] / self.cell_m), math.floor(enu_xy[1] / self.cell_m)

    def owned_cells(self) -> list[tuple[int, int]]:
        """The cells this worker owns that any node feeds."""
        cells = {c for cs in self.node_cells.values() for c in cs}
        return sorted(c for c in cells if self.owner(c) == self.index)

    def owns(self, incident: dict) -> bool:
        """True if this worker publishes ``incident``: it owns the cell of the node nearest to it."""
        xy = np.asarray(self.registry.sensors.to_enu(incident), dtype=float)[:2]
        nearest = int(np.argmin(np.hypot(*(self.registry.sensors.enu_m[:, :2] - xy).T)))
        return self.owner(self.cell_of(self.registry.sensors.enu_m[nearest, :2])) == self.index

    @staticmethod
    def cell_name(cell: tuple[int, int]) -> str:
        return f"{cell[0]}_{cell[1]}"
