/* Minimal assertion helpers for tether's unit tests (CTest runs each binary). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TESTUTIL_H
#define TETHER_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failures;
static int tu_checks;

/* In the allocation-failure torture build (tests/torture/), a failed check
 * is the expected answer to the allocation that was made to fail: the test
 * ends there, so what it goes on to do with a handle it did not get is not
 * taken for a fault of tether's code. Objects the test still holds are on
 * its stack at exit(), so LeakSanitizer sees them as reachable; what a
 * failure path of tether's lost is not, and is reported. */
#ifdef TETHER_TORTURE_TEST
#define TU_FAILED() (tu_failures++, fflush(stderr), exit(3))
#else
#define TU_FAILED() (tu_failures++)
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        tu_checks++;                                                                               \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            TU_FAILED();                                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long tu_a = (long long)(a), tu_b = (long long)(b);                                    \
        tu_checks++;                                                                               \
        if (tu_a != tu_b) {                                                                        \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    tu_a, tu_b);                                                                   \
            TU_FAILED();                                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *tu_a = (a), *tu_b = (b);                                                       \
        tu_checks++;                                                                               \
        if (tu_a == NULL || tu_b == NULL || strcmp(tu_a, tu_b) != 0) {                             \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, tu_a ? tu_a : "(null)", tu_b ? tu_b : "(null)");                           \
            TU_FAILED();                                                                           \
        }                                                                                          \
    } while (0)

/* Ends main(): prints a summary and returns the exit status. */
#define TEST_DONE()                                                                                \
    do {                                                                                           \
        fprintf(stderr, "%d checks, %d failed\n", tu_checks, tu_failures);                         \
        return tu_failures == 0 && tu_checks > 0 ? 0 : 1;                                          \
    } while (0)

#endif
