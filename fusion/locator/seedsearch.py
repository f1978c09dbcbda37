"""The seed search of association: the point where most sensors' pulses agree on one emission time.

For a candidate source point g every pulse implies an emission time ``t_i - |g - s_i| / c``; the
pulses of one shot pile up in a short window. Moving the point by at most r changes each implied
time by at most r / c, so the count in a window widened by 2 r / c at a cell's centre bounds the
count anywhere in the cell. That bound drives a best-first branch and bound over a quadtree of the
area (Land & Doig 1960), in C (``csrc/seedsearch.c``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fusion.locator.picks import Picks

log = logging.getLogger(__name__)

try:
    from earwitness._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError("the C extension earwitness._native is not built; build it with `pip install -e .` "
                      "(or `make test`) on a machine with a C compiler") from exc

# Cells whose search window is wider than this are explored busiest first (most pulses in a
# window, of any sensors), the rest by their bound (see csrc/seedsearch.h for why).
PLAIN_COUNT_ABOVE_S = 0.1
# Smallest quadtree cell (m): the emission-time slack it adds, 2 r / c, stays a few ms.
LEAF_SIZE_M = 2.0
# Cells per side of the first level of the quadtree.
ROOT_CELLS = 16
# Cells split per step of the branch and bound (vectorised together).
BATCH_CELLS = 16
# Work budget of one seed search, in steps: proving that no further shot hides among
# thousands of pulses over a city can take minutes, and a live server must move on.  The
# Pittsburgh, audio-path and fleet inputs take at most a few hundred steps; past it the best
# leaf found so far is the seed, unproven, and the stop is logged.
MAX_SEED_STEPS = 2_000


@dataclass(frozen=True)
class SeedSearch:
    """Settings of one seed search (:func:`best_seed`; the C search's ``ew_seed_params_t``).

    Attributes
    ----------
    c : float
        Speed of sound, m/s.
    window_s : float
        Width of the emission-time window that counts as consistent.
    bounds : (x_min, y_min, x_max, y_max)
        Area searched.
    max_steps : int
        Work budget (steps of BATCH_CELLS cells; 0: none); an exhausted search is logged.
    max_work : float
        Work budget in pulses bound, summed over the cells bound (0: none).
    """

    c: float
    window_s: float
    bounds: tuple[float, float, float, float]
    max_steps: int = MAX_SEED_STEPS
    max_work: float = 0.0


def best_seed(picks: Picks, search: SeedSearch, floor: int = 0, hints: np.ndarray | None = None,
              stats: dict | None = None) -> tuple[int, np.ndarray, float]:
    """Branch-and-bound search for the point where most sensors' pulses agree on one emission time.

    Best-first branch and bound over a quadtree (Land & Doig 1960; the bound is in the module
    doc). The search runs in C (``csrc/seedsearch.c``): it evaluates thousands of cells per shot,
    each a sort of every pulse's implied emission time, where NumPy's per-call overhead on
    batches of a few cells was most of the locator's run time. The bound counts distinct
    sensors in every window (the NumPy version counted pulses in wide windows, a looser
    bound that pruned little on long inputs).

    Parameters
    ----------
    picks : Picks
        The pulses searched (their sigmas are not used).
    search : SeedSearch
        Speed of sound, emission-time window, area and budgets.
    floor : int
        Support not worth finding: cells that cannot beat it are pruned at once.
    hints : ndarray, shape (k, 2), optional
        Points tried first (e.g. where earlier shots were): a good early incumbent lets the
        bound prune most of the area; the result is the same.
    stats : dict, optional
        Filled with ``steps``, ``work`` and ``exhausted`` (whether a budget ran out).

    Returns
    -------
    support : int
        Number of distinct sensors at the best leaf (``floor`` if none beats it).
    point : ndarray, shape (2,)
    emit_start_s : float
        Start of the best emission-time window.
    """
    _, first, ids = np.unique(picks.sensor, return_index=True, return_inverse=True)
    ids = np.ascontiguousarray(ids, dtype=np.intc)
    xy = picks.xy
    sx = np.ascontiguousarray(xy[first, 0], dtype=float)
    sy = np.ascontiguousarray(xy[first, 1], dtype=float)
    t = np.ascontiguousarray(picks.t_s, dtype=float)
    hints = np.zeros((0, 2)) if hints is None else np.asarray(hints, dtype=float).reshape(-1, 2)
    hx, hy = np.ascontiguousarray(hints[:, 0]), np.ascontiguousarray(hints[:, 1])
    x0, y0, x1, y1 = search.bounds
    params = ffi.new("ew_seed_params_t *", dict(
        x0=x0, y0=y0, x1=x1, y1=y1, c_mps=search.c, window_s=search.window_s, floor=int(floor),
        root_cells=ROOT_CELLS, batch_cells=BATCH_CELLS, leaf_size_m=LEAF_SIZE_M,
        plain_count_above_s=PLAIN_COUNT_ABOVE_S, max_steps=search.max_steps, max_work=search.max_work))
    result = ffi.new("ew_seed_result_t *")
    handle = ffi.gc(lib.ew_seed_search_new(), lib.ew_seed_search_del)
    if handle == ffi.NULL:
        raise MemoryError("seed search: out of memory")

    def ptr(a):
        return ffi.cast("const double *", ffi.from_buffer(a))

    rc = lib.ew_seed_search_do(handle, params, ptr(sx), ptr(sy), len(sx), ptr(t),
                               ffi.cast("const int *", ffi.from_buffer(ids)), len(t), ptr(hx), ptr(hy), len(hints),
                               result)
    if rc != 0:
        raise MemoryError("seed search: out of memory")
    if stats is not None:
        stats.update(steps=int(result.steps), work=float(result.work), exhausted=bool(result.exhausted))
    if result.exhausted:
        log.info("seed search of %d pulses from %d sensors stopped at its budget of %d steps or %.0f pulses bound "
                 "(best support %d, floor %d): no proof that no stronger set exists", len(t), len(sx),
                 search.max_steps, search.max_work, result.support, floor)
    return int(result.support), np.array([result.x, result.y]), float(result.emit_start_s)
