/* A fixed-bucket histogram of seconds, counted on hot paths without allocating. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HIST_H
#define TETHER_HIST_H

#include <stddef.h>
#include <stdint.h>

/* Most upper bounds a histogram may have (the +Inf bucket is extra). */
#define HIST_MAX_BUCKETS 16

/* Observations in buckets by upper bound (le, ascending, in seconds),
 * counted per bucket, not cumulatively: bucket[i] holds those above le[i-1]
 * and at most le[i]; bucket[n] those above le[n-1]. The bounds are borrowed
 * (a static table); the struct holds no pointer it owns, so it is copied
 * and freed as plain memory. */
struct hist {
    const double *le; /* n bounds, borrowed */
    size_t n;
    uint64_t bucket[HIST_MAX_BUCKETS + 1];
    uint64_t count;
    double sum; /* seconds */
};

/* Sets h empty with n (<= HIST_MAX_BUCKETS) ascending bounds le. */
void hist_init(struct hist *h, const double *le, size_t n);
/* Counts one observation of v seconds (negative counts as 0). */
void hist_observe(struct hist *h, double v);
/* Observations at most le[i] (i < n), or all of them (i == n): the
 * cumulative count Prometheus exposes as le="..." and le="+Inf". */
uint64_t hist_cumulative(const struct hist *h, size_t i);

#endif
