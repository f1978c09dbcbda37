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
 * The search is the one the NumPy version did, step for step: root cells in row-major
 * order; each step drops the cells that cannot beat the best, takes the BATCH with the
 * highest bounds (ties: the earlier in the pool), keeps the best leaf among them, and
 * appends the four children of every other taken cell that can still beat it.
 *
 * Usage (aubio style):
 *     ew_seed_search_t *s = ew_seed_search_new();                 NULL if out of memory
 *     rc = ew_seed_search_do(s, &params, x, y, t, gap, n, hx, hy, n_hints, &result);
 *     ew_seed_search_del(s);
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
    double plain_count_above_s;   /* windows wider than this are bounded by the plain pulse count */
    double same_time_s;           /* implied emission times closer than this are one instant */
} ew_seed_params_t;

typedef struct {
    int support;                  /* distinct sensors at the best leaf (the floor if none beats it) */
    double x, y;                  /* its point */
    double emit_start_s;          /* start of its emission-time window */
} ew_seed_result_t;

typedef struct ew_seed_search_t ew_seed_search_t;

ew_seed_search_t *ew_seed_search_new(void);
/* x, y: each pulse's sensor position; t: arrival time (s); gap: time since the previous
 * pulse of the same sensor (s; +inf for its first); hx, hy: points tried first (may be
 * NULL when n_hints is 0).  Returns 0, or -1 on bad parameters or when out of memory. */
int ew_seed_search_do(ew_seed_search_t *s, const ew_seed_params_t *p, const double *x,
                      const double *y, const double *t, const double *gap, size_t n,
                      const double *hx, const double *hy, size_t n_hints, ew_seed_result_t *result);
void ew_seed_search_del(ew_seed_search_t *s);
/* cdef-end */

#endif
