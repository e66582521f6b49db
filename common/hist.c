/* A fixed-bucket histogram of seconds, counted on hot paths without allocating. */
/* SPDX-License-Identifier: MIT */
#include "hist.h"

#include <assert.h>
#include <string.h>

void hist_init(struct hist *h, const double *le, size_t n)
{
    assert(n <= HIST_MAX_BUCKETS);
    memset(h, 0, sizeof(*h));
    h->le = le;
    h->n = n;
}

void hist_observe(struct hist *h, double v)
{
    size_t i = 0;

    if (!(v > 0)) /* negative, zero or NaN */
        v = 0;
    /* A dozen bounds: a linear scan is as fast as a search and branch-friendly. */
    while (i < h->n && v > h->le[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

uint64_t hist_cumulative(const struct hist *h, size_t i)
{
    uint64_t n = 0;

    for (size_t k = 0; k <= i && k <= h->n; k++)
        n += h->bucket[k];
    return n;
}
