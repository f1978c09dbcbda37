/* Impulse (gunshot pulse) detector: high-pass, energy envelope, trigger against an
 * adaptive noise floor, onset refined to a fraction of a sample on the leading edge of the
 * earliest rise (the foot of its tangent at half its first peak).
 *
 * Streaming: the state advances one sample at a time and every look-back lives in a
 * fixed ring buffer, so results do not depend on how the input is cut into blocks.
 * All memory is allocated by ew_detector_new; ew_detector_do allocates nothing.
 *
 * Usage (aubio style):
 *     ew_detector_params_t p; ew_detector_params_default(&p);
 *     ew_detector_t *d = ew_detector_new(48000.0, &p);          NULL if invalid
 *     n = ew_detector_do(d, block, len, pulses, max, &consumed);  repeat per block
 *     n = ew_detector_flush(d, pulses, max);                       end of stream
 *     ew_detector_del(d);
 */
#ifndef EW_DETECTOR_H
#define EW_DETECTOR_H

#include <stddef.h>
#include <stdint.h>

/* cdef-begin */
typedef struct {
    double highpass_hz;     /* prefilter corner: 4th-order Butterworth high-pass */
    double sta_ms;          /* short-term energy average time constant */
    double mta_ms;          /* mid-term energy average: re-arming reference (echo tails) */
    double lta_s;           /* noise floor: time constant when the floor rises */
    double lta_fall_s;      /* noise floor: time constant when the floor falls */
    double lta_step_ms;     /* the noise floor is updated once per step of this length */
    double warmup_ms;       /* no trigger before the noise floor has seen this much audio */
    double trigger_db;      /* trigger: STA above the noise floor by this much ... */
    double echo_ms;         /* ... except this long after a trigger, while its echoes arrive, ... */
    double echo_trigger_db; /* ... when STA must clear the noise floor by this much ... */
    double jump_db;         /* ... and above the mid-term average by this much */
    double window_ms;       /* after a trigger: pulse window, no new trigger inside it */
    double lookback_ms;     /* onset search before the trigger */
    double peak_search_ms;  /* onset reference peak: look-back up to this long after the trigger */
    double onset_snr_db;    /* onset level: at least this far above the noise rms ... */
    double onset_rel_db;    /* ... and at least this far relative to the first peak (<0) */
    double gap_ms;          /* quiet longer than this ends the backward onset search */
    double envelope_ms;     /* onset search on the mean energy over this long (centred) */
    double retrigger_ms;    /* a new pulse may open this long after a trigger, inside the window
                             * (0: never), when it triggers and its STA is ... */
    double retrigger_db;    /* ... this far above the highest STA of the pulse's first
                             * retrigger_ms (louder: the first was a precursor or another shot) */
} ew_detector_params_t;

typedef struct {
    int64_t onset_index;    /* onset = onset_index + onset_frac, samples since the first */
    double onset_frac;      /* in [0, 1) */
    int64_t trigger_index;  /* sample at which the trigger fired */
    double peak_dbfs;       /* peak |x| of the high-passed signal in the pulse window */
    double snr_db;          /* peak over the noise-floor rms */
    double noise_dbfs;      /* noise-floor rms at the trigger */
    double rise_ms;         /* onset to the highest peak */
    double duration_ms;     /* onset to the last sample above -20 dB re peak (within the window) */
    double decay_ms;        /* highest peak to the last sample above the duration level */
    double crest_db;        /* peak over rms of the pulse window */
    double low_ratio_db;    /* energy below 1 kHz over total, dB (2nd-order Butterworth) */
    double high_ratio_db;   /* energy above 3 kHz over total, dB (capped at 0.45 x rate) */
} ew_pulse_t;

typedef struct ew_detector ew_detector_t;

void ew_detector_params_default(ew_detector_params_t *params);
/* 0 when rate and params are usable; else -1 with a one-line reason in why. */
int ew_detector_check(double rate_hz, const ew_detector_params_t *params, char *why, size_t why_len);
ew_detector_t *ew_detector_new(double rate_hz, const ew_detector_params_t *params);
/* Upper bound of the pulses that n more samples can finish (size of the out buffer). */
size_t ew_detector_max_pulses(const ew_detector_t *det, size_t n);
/* Processes in[0..n); stops early only when out is full; *consumed = samples used.
 * Float samples that are NaN or infinite are taken as 0. */
size_t ew_detector_do(ew_detector_t *det, const float *in, size_t n,
                      ew_pulse_t *out, size_t max_out, size_t *consumed);
size_t ew_detector_do_s16(ew_detector_t *det, const int16_t *in, size_t n,
                          ew_pulse_t *out, size_t max_out, size_t *consumed);
/* Finishes a pulse still open at the end of the stream (at most one). */
size_t ew_detector_flush(ew_detector_t *det, ew_pulse_t *out, size_t max_out);
int64_t ew_detector_samples(const ew_detector_t *det);
void ew_detector_del(ew_detector_t *det);
/* cdef-end */

#endif
