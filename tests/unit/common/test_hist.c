/* Unit test of common/hist.c: bucket placement at and between bounds, cumulative counts, sum. */
/* SPDX-License-Identifier: MIT */
#include <math.h>

#include "common/hist.h"
#include "testutil.h"

static const double le[] = {0.01, 0.1, 1};

int main(void)
{
    struct hist h;

    hist_init(&h, le, 3);
    CHECK_EQ_INT(h.count, 0);
    CHECK_EQ_INT(hist_cumulative(&h, 3), 0);

    /* A value equal to a bound is in that bound's bucket (le is "<="). */
    hist_observe(&h, 0.01);
    hist_observe(&h, 0.005);
    hist_observe(&h, 0.05);
    hist_observe(&h, 1);
    hist_observe(&h, 7);   /* above the last bound: +Inf only */
    hist_observe(&h, -3);  /* a clock step back counts as 0 */
    hist_observe(&h, NAN); /* as does nonsense */
    CHECK_EQ_INT(h.count, 7);
    CHECK_EQ_INT(hist_cumulative(&h, 0), 4); /* 0.01, 0.005, -3 -> 0, NaN -> 0 */
    CHECK_EQ_INT(hist_cumulative(&h, 1), 5);
    CHECK_EQ_INT(hist_cumulative(&h, 2), 6);
    CHECK_EQ_INT(hist_cumulative(&h, 3), 7); /* +Inf: everything */
    CHECK_EQ_INT(hist_cumulative(&h, 99), 7);
    CHECK(fabs(h.sum - (0.01 + 0.005 + 0.05 + 1 + 7)) < 1e-9);

    /* A copy is a snapshot: plain memory, the bounds borrowed. */
    {
        struct hist c = h;

        hist_observe(&h, 0.5);
        CHECK_EQ_INT(c.count, 7);
        CHECK_EQ_INT(h.count, 8);
        CHECK(c.le == le);
    }
    TEST_DONE();
}
