/* Seed search of association; see seedsearch.h for what it does and why. */
#include "seedsearch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SORT_CUTOFF 16   /* runs this short are finished by insertion sort */
#define MAX_SHIFTS_PER_PULSE 16  /* about twice a quicksort's work on a few hundred pulses */
#define NEW_LIST_SHRINK 2  /* a family gets its own pulse list when that halves it (memory) */
#define SQRT2 1.41421356237309504880  /* a cell's diagonal over its side (M_SQRT2 is not C99) */

typedef struct {
    double e;     /* implied emission time */
    int pulse;    /* which pulse */
    int sensor;   /* which sensor heard it */
} emit_t;

typedef struct {
    double x, y, h;  /* centre and side */
    int ub;          /* bound on the support inside */
    int rank;        /* exploration order: highest first */
    double start;    /* start of the window that reaches it */
    int family;      /* stands for its four children, not yet bound (ub, rank: bounds on theirs) */
    size_t list;     /* where its pulses start in the search's lists: those that can still matter inside */
    size_t len;      /* ... and how many */
} cell_t;

struct ew_seed_search_t {
    emit_t *emit;       /* the pulses in emission-time order at the cell being bounded */
    size_t emit_cap;
    emit_t *parent;     /* ... and at the cell being split: its children start from that order */
    size_t parent_cap;
    double *delay;      /* per sensor, travel time from the cell's centre */
    size_t delay_cap;
    cell_t *pool;
    size_t pool_len, pool_cap;
    cell_t *spare;      /* the pool being rebuilt as families are bound */
    size_t spare_cap;
    int *in_window;     /* per sensor, its pulses in the window being counted */
    size_t in_window_cap;
    cell_t *taken;      /* the cells of one step, highest rank first */
    size_t taken_cap;
    size_t *pick;       /* their places in the pool while they are picked */
    size_t pick_cap;
    emit_t *lists;      /* the cells' pulse lists, each in the order near the centre it was cut at */
    size_t lists_len, lists_cap;
    double work;        /* pulses bound so far in this search */
};

ew_seed_search_t *ew_seed_search_new(void)
{
    return calloc(1, sizeof(ew_seed_search_t));
}

void ew_seed_search_del(ew_seed_search_t *s)
{
    if (!s)
        return;
    free(s->emit);
    free(s->parent);
    free(s->delay);
    free(s->pool);
    free(s->spare);
    free(s->in_window);
    free(s->taken);
    free(s->pick);
    free(s->lists);
    free(s);
}

static int reserve(void **buf, size_t *cap, size_t need, size_t item)
{
    size_t size;
    void *grown;
    if (need <= *cap)
        return 0;
    size = *cap ? *cap : 64;
    while (size < need)
        size *= 2;
    grown = realloc(*buf, size * item);
    if (!grown)
        return -1;
    *buf = grown;
    *cap = size;
    return 0;
}

/* Insertion sort giving up (0) after max_shifts moves, the array then still a permutation. */
static int insertion_sort(emit_t *a, size_t n, size_t max_shifts)
{
    size_t shifts = 0;
    for (size_t i = 1; i < n; i++) {
        emit_t v = a[i];
        size_t k = i;
        while (k > 0 && a[k - 1].e > v.e) {
            a[k] = a[k - 1];
            k--;
        }
        a[k] = v;
        shifts += i - k;
        if (shifts > max_shifts)
            return 0;
    }
    return 1;
}

/* Quicksort by e (median of three), insertion sort for short runs. */
static void sort_emit(emit_t *a, size_t n)
{
    while (n > SORT_CUTOFF) {
        size_t i = 0, j = n - 1, mid = n / 2;
        emit_t tmp;
        double pivot;
        if (a[mid].e < a[0].e) { tmp = a[mid]; a[mid] = a[0]; a[0] = tmp; }
        if (a[n - 1].e < a[0].e) { tmp = a[n - 1]; a[n - 1] = a[0]; a[0] = tmp; }
        if (a[n - 1].e < a[mid].e) { tmp = a[n - 1]; a[n - 1] = a[mid]; a[mid] = tmp; }
        pivot = a[mid].e;
        for (;;) {
            while (a[i].e < pivot)
                i++;
            while (a[j].e > pivot)
                j--;
            if (i >= j)
                break;
            tmp = a[i]; a[i] = a[j]; a[j] = tmp;
            i++;
            j--;
        }
        /* Recurse into the smaller part, loop on the larger: stack depth O(log n). */
        if (j + 1 < n - j - 1) {
            sort_emit(a, j + 1);
            a += j + 1;
            n -= j + 1;
        } else {
            sort_emit(a + j + 1, n - j - 1);
            n = j + 1;
        }
    }
    insertion_sort(a, n, (size_t)-1);
}

/* Implied emission times of the pulses at (px, py), sorted.  With presorted, em already
 * holds the order at a nearby point (the parent cell's centre): a child's times differ by
 * at most its offset / c per pulse, so few pairs swap and insertion sort finishes in about
 * linear time, where a full sort of every cell was most of the search's cost. */
static void emission_times(ew_seed_search_t *s, const ew_seed_params_t *p, const double *sx,
                           const double *sy, const double *t, size_t n, size_t n_sensors,
                           double px, double py, int presorted)
{
    emit_t *em = s->emit;
    for (size_t k = 0; k < n_sensors; k++) {
        double dx = px - sx[k], dy = py - sy[k];
        s->delay[k] = sqrt(dx * dx + dy * dy) / p->c_mps;
    }
    for (size_t i = 0; i < n; i++)
        em[i].e = t[em[i].pulse] - s->delay[em[i].sensor];
    /* A nearly sorted order finishes by insertion; one far off (a coarse cell's child
     * among dense pulses) costs no more than MAX_SHIFTS_PER_PULSE moves per pulse before
     * the quicksort takes over. */
    if (!presorted || !insertion_sort(em, n, MAX_SHIFTS_PER_PULSE * n))
        sort_emit(em, n);
}

/* Most distinct sensors whose implied emission times (sorted in s->emit) fit a window of
 * width_s, and where that window starts (the earliest such start); and the most pulses any
 * such window holds.  Windows start at each pulse and slide, counting each sensor's pulses
 * inside. */
static int distinct_count(ew_seed_search_t *s, size_t n, size_t n_sensors, double width_s,
                          double *start, int *most_pulses)
{
    const emit_t *em = s->emit;
    int *inside = s->in_window;
    int best = 0, distinct = 0;
    size_t end = 0;
    for (size_t k = 0; k < n_sensors; k++)
        inside[k] = 0;
    *most_pulses = 0;
    *start = n ? em[0].e : 0.0;
    for (size_t j = 0; j < n; j++) {
        double limit = em[j].e + width_s;
        while (end < n && em[end].e <= limit)
            distinct += inside[em[end++].sensor]++ == 0;
        if ((int)(end - j) > *most_pulses)
            *most_pulses = (int)(end - j);
        if (distinct > best) {
            best = distinct;
            *start = em[j].e;
        }
        distinct -= --inside[em[j].sensor] == 0;
    }
    return best;
}

/* Bound and rank of a cell whose emission times are in s->emit. */
static void bound_cell(ew_seed_search_t *s, const ew_seed_params_t *p, size_t n, size_t n_sensors,
                       cell_t *cell)
{
    s->work += (double)n;
    double slack = p->window_s + cell->h * SQRT2 / p->c_mps;
    int most_pulses;
    cell->ub = distinct_count(s, n, n_sensors, slack, &cell->start, &most_pulses);
    cell->rank = slack > p->plain_count_above_s ? most_pulses : cell->ub;
}

/* Emission times at (px, py) in s->emit, from scratch. */
static void emission_times_anew(ew_seed_search_t *s, const ew_seed_params_t *p, const double *sx,
                                const double *sy, const double *t, const int *sensor, size_t n,
                                size_t n_sensors, double px, double py)
{
    for (size_t i = 0; i < n; i++) {
        s->emit[i].pulse = (int)i;
        s->emit[i].sensor = sensor[i];
    }
    emission_times(s, p, sx, sy, t, n, n_sensors, px, py, 0);
}

/* Keeps, in order, the pulses of s->emit that some window of width_s holding more than
 * `above` distinct sensors contains; returns how many.  Every window of a point inside a cell
 * lies within such a window at its centre (width: the cell's slack), so a set of more than
 * `above` sensors anywhere inside is made only of kept pulses, and every window holding more
 * than `above` sensors keeps its count: bounds above the best found stay exact. */
static size_t keep_covered(ew_seed_search_t *s, size_t n, size_t n_sensors, double width_s, int above)
{
    emit_t *em = s->emit;
    int *inside = s->in_window;
    int distinct = 0;
    size_t end = 0, covered_to = 0, kept = 0;
    for (size_t k = 0; k < n_sensors; k++)
        inside[k] = 0;
    for (size_t j = 0; j < n; j++) {
        double limit = em[j].e + width_s;
        while (end < n && em[end].e <= limit)
            distinct += inside[em[end++].sensor]++ == 0;
        if (distinct > above && end > covered_to)
            covered_to = end;
        distinct -= --inside[em[j].sensor] == 0;
        if (j < covered_to)
            em[kept++] = em[j];  /* kept <= j: only entries already passed are overwritten */
    }
    return kept;
}

/* Binds the four children of the cell c into out[0..3], each sorted from c's order.  Where
 * the children rank by their bounds, they get only the pulses that can still beat the best
 * found (keep_covered): their bounds, ranks and windows above it are the same, so the search
 * takes the same cells, and deep cells sort a few dozen pulses instead of every one. */
static int bind_children(ew_seed_search_t *s, const ew_seed_params_t *p, const double *sx,
                         const double *sy, const double *t, size_t n_sensors, int best,
                         const cell_t *c, cell_t *out)
{
    static const double offsets[4][2] = {{-1, -1}, {-1, 1}, {1, -1}, {1, 1}};
    size_t n = c->len, list = c->list;
    memcpy(s->emit, s->lists + c->list, n * sizeof(emit_t));
    /* The root list is in pulse order; the others in the order near their cutting cell's centre. */
    emission_times(s, p, sx, sy, t, n, n_sensors, c->x, c->y, list != 0);
    if (p->window_s + c->h / 2.0 * SQRT2 / p->c_mps <= p->plain_count_above_s) {
        size_t kept;
        memcpy(s->parent, s->emit, n * sizeof(emit_t));
        kept = keep_covered(s, n, n_sensors, p->window_s + c->h * SQRT2 / p->c_mps, best);
        if (kept <= n / NEW_LIST_SHRINK) {
            if (reserve((void **)&s->lists, &s->lists_cap, s->lists_len + kept, sizeof(emit_t)))
                return -1;
            list = s->lists_len;
            memcpy(s->lists + list, s->emit, kept * sizeof(emit_t));
            s->lists_len += kept;
            n = kept;
        } else {
            /* Too little gone to be worth a list of its own: the parent's, a superset, serves. */
            memcpy(s->emit, s->parent, n * sizeof(emit_t));
        }
    }
    memcpy(s->parent, s->emit, n * sizeof(emit_t));
    for (int q = 0; q < 4; q++) {
        cell_t *child = &out[q];
        child->x = c->x + offsets[q][0] * (c->h / 4.0);
        child->y = c->y + offsets[q][1] * (c->h / 4.0);
        child->h = c->h / 2.0;
        child->family = 0;
        child->list = list;
        child->len = n;
        memcpy(s->emit, s->parent, n * sizeof(emit_t));
        emission_times(s, p, sx, sy, t, n, n_sensors, child->x, child->y, 1);
        bound_cell(s, p, n, n_sensors, child);
    }
    return 0;
}

int ew_seed_search_do(ew_seed_search_t *s, const ew_seed_params_t *p, const double *sx,
                      const double *sy, size_t n_sensors, const double *t, const int *sensor, size_t n,
                      const double *hx, const double *hy, size_t n_hints, ew_seed_result_t *result)
{
    size_t root, batch;
    double size;
    if (!s || !p || !result || p->root_cells < 1 || p->batch_cells < 1 || !(p->c_mps > 0))
        return -1;
    root = (size_t)p->root_cells;
    batch = (size_t)p->batch_cells;
    result->support = p->floor;
    result->x = (p->x0 + p->x1) / 2;
    result->y = (p->y0 + p->y1) / 2;
    result->emit_start_s = 0.0;
    result->steps = 0;
    result->work = 0.0;
    s->work = 0.0;
    result->exhausted = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (sensor[i] < 0 || (size_t)sensor[i] >= n_sensors)
            return -1;
    if (reserve((void **)&s->emit, &s->emit_cap, n, sizeof(emit_t))
        || reserve((void **)&s->parent, &s->parent_cap, n, sizeof(emit_t))
        || reserve((void **)&s->delay, &s->delay_cap, n_sensors, sizeof(double))
        || reserve((void **)&s->in_window, &s->in_window_cap, n_sensors, sizeof(int))
        || reserve((void **)&s->pool, &s->pool_cap, root * root, sizeof(cell_t))
        || reserve((void **)&s->taken, &s->taken_cap, batch, sizeof(cell_t))
        || reserve((void **)&s->pick, &s->pick_cap, batch, sizeof(size_t))
        || reserve((void **)&s->lists, &s->lists_cap, n, sizeof(emit_t)))
        return -1;
    /* The root cells' list: every pulse. */
    for (size_t i = 0; i < n; i++) {
        s->lists[i].pulse = (int)i;
        s->lists[i].sensor = sensor[i];
    }
    s->lists_len = n;

    /* Hints first: a good early incumbent lets the bound prune most of the area. */
    {
        int best_hint = -1;
        cell_t hint, chosen = {0};
        for (size_t k = 0; k < n_hints; k++) {
            hint.x = hx[k];
            hint.y = hy[k];
            hint.h = p->leaf_size_m;
            hint.family = 0;
            emission_times_anew(s, p, sx, sy, t, sensor, n, n_sensors, hint.x, hint.y);
            bound_cell(s, p, n, n_sensors, &hint);
            if (hint.ub > best_hint) {
                best_hint = hint.ub;
                chosen = hint;
            }
        }
        if (best_hint > result->support) {
            result->support = best_hint;
            result->x = chosen.x;
            result->y = chosen.y;
            result->emit_start_s = chosen.start;
        }
    }

    size = fmax(p->x1 - p->x0, p->y1 - p->y0) / (double)root;
    s->pool_len = 0;
    for (size_t iy = 0; iy < root; iy++)
        for (size_t ix = 0; ix < root; ix++) {
            cell_t *c = &s->pool[s->pool_len++];
            c->x = p->x0 + size * ((double)ix + 0.5);
            c->y = p->y0 + size * ((double)iy + 0.5);
            c->h = size;
            c->family = 0;
            c->list = 0;
            c->len = n;
            emission_times_anew(s, p, sx, sy, t, sensor, n, n_sensors, c->x, c->y);
            bound_cell(s, p, n, n_sensors, c);
        }

    for (;;) {
        size_t n_taken = 0, kept = 0, leaf_best = batch;
        /* Drop what cannot beat the best; pick the highest bounds (ties: earlier first). */
        for (size_t i = 0; i < s->pool_len; i++) {
            cell_t c = s->pool[i];
            size_t at;
            if (c.ub <= result->support)
                continue;
            s->pool[kept] = c;
            if (n_taken < batch || c.rank > s->pool[s->pick[n_taken - 1]].rank) {
                at = n_taken < batch ? n_taken++ : batch - 1;
                while (at > 0 && s->pool[s->pick[at - 1]].rank < c.rank) {
                    s->pick[at] = s->pick[at - 1];
                    at--;
                }
                s->pick[at] = kept;
            }
            kept++;
        }
        s->pool_len = kept;
        if (n_taken == 0)
            break;
        if ((p->max_steps > 0 && result->steps >= p->max_steps) || (p->max_work > 0 && s->work >= p->max_work)) {
            result->exhausted = 1;
            break;
        }
        /* Families among the picked: bind their children in their place and pick again.
         * Their bounds and ranks are at most the parent's, so the cells finally picked are
         * the ones binding every child at once would give; most children never need it. */
        {
            size_t families = 0, len = 0;
            for (size_t k = 0; k < n_taken; k++)
                if (s->pool[s->pick[k]].family) {
                    s->pool[s->pick[k]].family = 2;  /* marks one to bind now */
                    families++;
                }
            if (families) {
                if (reserve((void **)&s->spare, &s->spare_cap, s->pool_len + 3 * families, sizeof(cell_t)))
                    return -1;
                for (size_t i = 0; i < s->pool_len; i++) {
                    if (s->pool[i].family == 2) {
                        if (bind_children(s, p, sx, sy, t, n_sensors, result->support, &s->pool[i], &s->spare[len]))
                            return -1;
                        len += 4;
                    } else {
                        s->spare[len++] = s->pool[i];
                    }
                }
                {
                    cell_t *swap = s->pool;
                    size_t cap = s->pool_cap;
                    s->pool = s->spare;
                    s->pool_cap = s->spare_cap;
                    s->spare = swap;
                    s->spare_cap = cap;
                }
                s->pool_len = len;
                continue;
            }
        }
        result->steps++;
        /* Take them out of the pool, the rest keeping their order. */
        for (size_t k = 0; k < n_taken; k++) {
            s->taken[k] = s->pool[s->pick[k]];
            s->pool[s->pick[k]].h = -1.0;  /* marks a taken cell */
        }
        kept = 0;
        for (size_t i = 0; i < s->pool_len; i++)
            if (s->pool[i].h >= 0.0)
                s->pool[kept++] = s->pool[i];
        s->pool_len = kept;
        for (size_t k = 0; k < n_taken; k++)
            if (s->taken[k].h <= p->leaf_size_m
                && (leaf_best == batch || s->taken[k].ub > s->taken[leaf_best].ub))
                leaf_best = k;
        if (leaf_best < batch && s->taken[leaf_best].ub > result->support) {
            /* A leaf's bound is its value: the window slack it carries is a few ms. */
            result->support = s->taken[leaf_best].ub;
            result->x = s->taken[leaf_best].x;
            result->y = s->taken[leaf_best].y;
            result->emit_start_s = s->taken[leaf_best].start;
        }
        for (size_t k = 0; k < n_taken; k++) {
            cell_t c = s->taken[k];
            if (c.h <= p->leaf_size_m || c.ub <= result->support)
                continue;
            if (reserve((void **)&s->pool, &s->pool_cap, s->pool_len + 1, sizeof(cell_t)))
                return -1;
            /* The children wait unbound, as a family ranked by what bounds their ranks: the
             * parent's pulse count, or its bound where they will rank by theirs. */
            c.family = 1;
            if (p->window_s + c.h / 2.0 * SQRT2 / p->c_mps <= p->plain_count_above_s)
                c.rank = c.ub;
            s->pool[s->pool_len++] = c;
        }
    }
    result->work = s->work;
    return 0;
}
