/* PPS edge finder; see pps.h for what it does and why. */
#include "pps.h"

#include <math.h>
#include <stdlib.h>

#define HALF 4                    /* look-ahead and widest lobe, samples */
#define RING (2 * HALF + 1)
#define NOISE_TAU_S 1.0           /* time constant of the noise-power tracker */
#define WARMUP_S 0.02             /* no detection until the noise tracker has seen this much */
#define REFRACTORY_S 0.0005       /* one edge per half millisecond at most */
#define HEIGHT_HALF_LIFE_S 10.0   /* remembered edge height halves after this long without edges */
#define HEIGHT_REL 0.3            /* an edge must reach this fraction of the recent edges' height */
#define HEIGHT_SMOOTH 0.3         /* weight of a new edge in the remembered height */
#define FLOOR_FS 1e-4             /* -80 dBFS: below this nothing is an edge, even in silence */
#define POL_LOCK_VOTES 2          /* pulse pairs of one polarity before it is trusted */
#define POL_MAX_VOTES 8

struct ew_pps_t {
    double rate_hz;
    int fixed_polarity;
    int votes;
    double threshold_snr;
    long long max_width, refractory, warmup, height_half_life;
    double alpha, noise_ms;
    float prev_x;
    float ring[RING];
    long long n;           /* samples consumed */
    long long last_cand;   /* centre of the last accepted candidate */
    double height;         /* recent edge height (absolute, first difference) */
    long long height_at;
    int has_pending;
    ew_pps_edge_t pending;
    long long pending_at;
};

ew_pps_t *ew_pps_new(double sample_rate_hz, int polarity, double threshold_snr,
                     double max_pulse_width_s)
{
    ew_pps_t *o;
    if (!(sample_rate_hz > 0) || !(threshold_snr > 0) || !(max_pulse_width_s > 0)
        || polarity < -1 || polarity > 1)
        return NULL;
    o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->rate_hz = sample_rate_hz;
    o->fixed_polarity = polarity;
    o->threshold_snr = threshold_snr;
    o->max_width = (long long)(max_pulse_width_s * sample_rate_hz);
    o->refractory = (long long)(REFRACTORY_S * sample_rate_hz);
    if (o->refractory < RING)
        o->refractory = RING;
    o->warmup = (long long)(WARMUP_S * sample_rate_hz);
    if (o->warmup < 2 * RING)
        o->warmup = 2 * RING;
    o->height_half_life = (long long)(HEIGHT_HALF_LIFE_S * sample_rate_hz);
    o->alpha = 1.0 / (NOISE_TAU_S * sample_rate_hz);
    o->last_cand = -(1LL << 60);
    return o;
}

void ew_pps_del(ew_pps_t *o) { free(o); }

int ew_pps_polarity(const ew_pps_t *o)
{
    if (o->fixed_polarity)
        return o->fixed_polarity;
    return o->votes >= POL_LOCK_VOTES ? 1 : (o->votes <= -POL_LOCK_VOTES ? -1 : 0);
}

double ew_pps_noise_rms(const ew_pps_t *o) { return sqrt(o->noise_ms); }

long long ew_pps_samples(const ew_pps_t *o) { return o->n; }

static float ring_at(const ew_pps_t *o, long long j) { return o->ring[j % RING]; }

static void emit(const ew_pps_edge_t *e, ew_pps_edge_t *edges, size_t max_edges, size_t *count)
{
    if (*count < max_edges)
        edges[(*count)++] = *e;
}

/* Leading-edge selection: with auto polarity, an edge followed within the pulse width by one
 * of the other sign is a leading edge; a lone edge counts only once the polarity is known. */
static void on_edge(ew_pps_t *o, const ew_pps_edge_t *e, long long at, ew_pps_edge_t *edges,
                    size_t max_edges, size_t *count)
{
    int sign = e->height > 0 ? 1 : -1;
    if (o->fixed_polarity) {
        if (sign == o->fixed_polarity)
            emit(e, edges, max_edges, count);
        return;
    }
    if (o->has_pending) {
        int psign = o->pending.height > 0 ? 1 : -1;
        o->has_pending = 0;
        if (psign != sign && at - o->pending_at <= o->max_width) {
            o->votes += psign;
            if (o->votes > POL_MAX_VOTES)
                o->votes = POL_MAX_VOTES;
            if (o->votes < -POL_MAX_VOTES)
                o->votes = -POL_MAX_VOTES;
            emit(&o->pending, edges, max_edges, count);
            return; /* this one is the trailing edge */
        }
        if (psign == ew_pps_polarity(o))
            emit(&o->pending, edges, max_edges, count);
    }
    o->pending = *e;
    o->pending_at = at;
    o->has_pending = 1;
}

static double recent_height(const ew_pps_t *o, long long at)
{
    if (o->height <= 0)
        return 0;
    return o->height * exp2(-(double)(at - o->height_at) / (double)o->height_half_life);
}

size_t ew_pps_do(ew_pps_t *o, const float *x, size_t n, ew_pps_edge_t *edges, size_t max_edges)
{
    size_t count = 0;
    for (size_t k = 0; k < n; k++) {
        long long j = o->n++;
        float d = j > 0 ? x[k] - o->prev_x : 0.0f;
        long long c = j - HALF; /* candidate centre: HALF samples of look-ahead */
        o->prev_x = x[k];
        o->ring[j % RING] = d;
        if (c < 0)
            continue;
        if (o->has_pending && c - o->pending_at > o->max_width) {
            int psign = o->pending.height > 0 ? 1 : -1;
            o->has_pending = 0;
            if (psign == ew_pps_polarity(o))
                emit(&o->pending, edges, max_edges, &count);
        }
        float dc = ring_at(o, c);
        double a = fabs(dc);
        double noise = sqrt(o->noise_ms);
        double thr = o->threshold_snr * noise;
        double rel = HEIGHT_REL * recent_height(o, c);
        if (rel > thr)
            thr = rel;
        if (thr < FLOOR_FS)
            thr = FLOOR_FS;
        int candidate = c >= o->warmup && a > thr && c - o->last_cand >= o->refractory;
        for (int i = 1; candidate && i <= HALF; i++)
            candidate = fabs(ring_at(o, c - i)) < a && fabs(ring_at(o, c + i)) <= a;
        if (candidate) {
            /* Centroid of the contiguous same-sign lobe only: the AC coupling's decay is of
             * the other sign and would drag a fixed-window centroid early. */
            double sgn = dc > 0 ? 1.0 : -1.0, num = 0, den = 0;
            int lo = 0, hi = 0;
            while (lo > -HALF && sgn * ring_at(o, c + lo - 1) > 0)
                lo--;
            while (hi < HALF && sgn * ring_at(o, c + hi + 1) > 0)
                hi++;
            for (int i = lo; i <= hi; i++) {
                double w = sgn * ring_at(o, c + i);
                num += i * w;
                den += w;
            }
            ew_pps_edge_t e;
            /* centroid of the first difference sits half a sample after the step's 50 % point */
            e.sample = (double)c + (den > 0 ? num / den : 0.0) - 0.5;
            e.height = dc;
            e.snr = (float)(noise > 0 ? a / noise : INFINITY);
            o->last_cand = c;
            o->height = o->height > 0 ? (1 - HEIGHT_SMOOTH) * recent_height(o, c) + HEIGHT_SMOOTH * a : a;
            o->height_at = c;
            on_edge(o, &e, c, edges, max_edges, &count);
        } else if (c - o->last_cand > 2 * HALF) {
            /* running mean at first, then exponential: settles fast, forgets slowly */
            double w = c < (long long)(1.0 / o->alpha) ? 1.0 / (double)(c + 1) : o->alpha;
            if (a <= thr || c < o->warmup)
                o->noise_ms += w * ((double)dc * dc - o->noise_ms);
        }
    }
    return count;
}
