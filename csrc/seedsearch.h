/* Seed search of association: the point and emission-time window where the most sensors'
 * pulses agree, by best-first branch and bound over a quadtree (Land & Doig 1960).
 *
 * For a candidate source point g every pulse i (sensor at s_i, arrival t_i) implies an
 * emission time t_i - |g - s_i| / c; the first arrivals of one shot pile up in a short
 * window.  Moving g by at most r changes each implied time by at most r / c, so the number
 * of distinct sensors in a window widened by 2 r / c at a cell's centre bounds the number
 * anywhere in the cell.  Cells whose bound cannot beat the best leaf found are never split.
 * fusion/associate.py (best_seed) holds the Python side and the reasons for the constants.
 *
 * Each step drops the cells that cannot beat the best, takes the batch_cells cells that
 * rank highest (ties: the earlier in the pool), keeps the best leaf among them, and appends
 * the four children of every other taken cell that can still beat it.  Cells rank by their
 * bound, except where the window is wider than plain_count_above_s (coarse cells): there by
 * the most pulses, of any sensors, in a window.  That is the order the search had when it
 * was written in NumPy (where the plain count was the cheap bound of wide windows); among
 * leaves of equal support it finds first those in the busiest areas, where a shot's first
 * arrivals and the echoes behind them line up, and the small arrays of the audio path
 * depend on it (ranking by the bound alone picks worse seeds there: 49 -> 48 of 54).
 *
 * Cost: each cell bound sorts every pulse's implied emission time.  A split cell's
 * children start from the order at its centre, which they change little (insertion sort,
 * about linear), and are bound only when they could be taken: until then they wait as one
 * pool entry ranked by an upper bound of their ranks, so most of the children of a long
 * input's search are never bound.  The cells taken are those binding every child at once
 * would give.  Where children rank by their bounds, a family keeps only the pulses lying in
 * some window of its parent that holds more sensors than the best found (no set that could
 * beat it inside is made of others): bounds above the best stay exact, so the same cells are
 * taken and the same leaf found, while deep cells of a dense input sort tens of pulses, not
 * thousands.  A family gets its own list only when that at least halves it (memory).
 *
 * Usage (aubio style):
 *     ew_seed_search_t *s = ew_seed_search_new();                 NULL if out of memory
 *     rc = ew_seed_search_do(s, &params, sx, sy, n_sensors, t, sensor, n, hx, hy, n_hints, &result);
 *     ew_seed_search_del(s);
 * With max_steps > 0 the search stops after that many steps, with max_work > 0 once that many
 * pulses have been bound (summed over the cells bound; exhausted = 1 either way): the best
 * leaf found so far is the result, and no proof is given that none beats it.
 * Buffers grow inside ew_seed_search_do to the largest input and pool seen, and are reused.
 */
#ifndef EW_SEEDSEARCH_H
#define EW_SEEDSEARCH_H

#include <stddef.h>

/* cdef-begin */
typedef struct {
    double x0, y0, x1, y1;        /* area searched (local metres) */
    double c_mps;                 /* speed of sound */
    double window_s;              /* width of the emission-time window that counts as consistent */
    int floor;                    /* support not worth finding: cells that cannot beat it are pruned */
    int root_cells;               /* cells per side of the first quadtree level */
    int batch_cells;              /* cells taken per step */
    double leaf_size_m;           /* cells this small or smaller are leaves */
    double plain_count_above_s;   /* cells whose window is wider than this rank by pulse count */
    int max_steps;                /* work budget: stop after this many steps (0: none) */
    double max_work;              /* ... or once this many pulses have been bound, summed over cells (0: none) */
} ew_seed_params_t;

typedef struct {
    int support;                  /* distinct sensors at the best leaf (the floor if none beats it) */
    double x, y;                  /* its point */
    double emit_start_s;          /* start of its emission-time window */
    int steps;                    /* steps taken */
    int exhausted;                /* 1 when the budget ran out before the search was done */
    double work;                  /* pulses bound, summed over the cells bound */
} ew_seed_result_t;

typedef struct ew_seed_search_t ew_seed_search_t;

ew_seed_search_t *ew_seed_search_new(void);
/* sx, sy: sensor positions (n_sensors); t: each pulse's arrival time (s); sensor: which
 * sensor heard it, 0 .. n_sensors - 1; hx, hy: points tried first (may be NULL when n_hints
 * is 0).  Returns 0, or -1 on bad parameters or when out of memory. */
int ew_seed_search_do(ew_seed_search_t *s, const ew_seed_params_t *p, const double *sx,
                      const double *sy, size_t n_sensors, const double *t, const int *sensor, size_t n,
                      const double *hx, const double *hy, size_t n_hints, ew_seed_result_t *result);
void ew_seed_search_del(ew_seed_search_t *s);
/* cdef-end */

#endif
