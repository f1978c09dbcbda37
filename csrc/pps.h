/* PPS edge finder: locates GPS pulse-per-second edges recorded on an audio channel.
 *
 * The PPS square pulse enters a (usually AC-coupled) audio input, so each edge arrives as a
 * band-limited step followed by an exponential decay (a spike when the coupling corner is
 * high).  The finder works on the first difference of the signal, where every edge is a
 * narrow band-limited impulse whatever the coupling, and places the edge at that impulse's
 * main-lobe centroid less half a sample: the 50 % point of the band-limited step, to a fraction of a
 * sample.  Leading edges are told from trailing ones by the pulse width (auto polarity) or by a
 * fixed polarity.
 *
 * Streaming and block-size invariant: state carries across calls, output is identical
 * whatever the block sizes.  No allocation after ew_pps_new.
 */
#ifndef EW_PPS_H
#define EW_PPS_H

#include <stddef.h>

/* cdef-begin */
typedef struct {
    double sample;   /* edge position, fractional sample index from stream start */
    float height;    /* signed height of the step in the first difference (full scale 1) */
    float snr;       /* height over the RMS of the first difference's noise */
} ew_pps_edge_t;

typedef struct ew_pps_t ew_pps_t;

/* polarity: +1 rising leading edge, -1 falling, 0 learn it from the pulse width.
 * threshold_snr: edge height over noise RMS needed to accept an edge (e.g. 12).
 * max_pulse_width_s: longest PPS pulse expected (< 0.5 s); edges closer than that are pairs. */
ew_pps_t *ew_pps_new(double sample_rate_hz, int polarity, double threshold_snr,
                     double max_pulse_width_s);
/* Feeds n samples; writes up to max_edges leading edges found so far; returns their count. */
size_t ew_pps_do(ew_pps_t *o, const float *x, size_t n, ew_pps_edge_t *edges, size_t max_edges);
/* Polarity in use: +1, -1, or 0 while still learning. */
int ew_pps_polarity(const ew_pps_t *o);
/* RMS of the first difference's noise (full scale 1). */
double ew_pps_noise_rms(const ew_pps_t *o);
/* Samples consumed since creation. */
long long ew_pps_samples(const ew_pps_t *o);
void ew_pps_del(ew_pps_t *o);
/* cdef-end */

#endif
