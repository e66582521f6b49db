/* Minimal assertion helpers for tether's unit tests (CTest runs each binary). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TESTUTIL_H
#define TETHER_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failures;
static int tu_checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        tu_checks++;                                                                               \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            tu_failures++;                                                                         \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long tu_a = (long long)(a), tu_b = (long long)(b);                                    \
        tu_checks++;                                                                               \
        if (tu_a != tu_b) {                                                                        \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    tu_a, tu_b);                                                                   \
            tu_failures++;                                                                         \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *tu_a = (a), *tu_b = (b);                                                       \
        tu_checks++;                                                                               \
        if (tu_a == NULL || tu_b == NULL || strcmp(tu_a, tu_b) != 0) {                             \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, tu_a ? tu_a : "(null)", tu_b ? tu_b : "(null)");                           \
            tu_failures++;                                                                         \
        }                                                                                          \
    } while (0)

/* Ends main(): prints a summary and returns the exit status. */
#define TEST_DONE()                                                                                \
    do {                                                                                           \
        fprintf(stderr, "%d checks, %d failed\n", tu_checks, tu_failures);                         \
        return tu_failures == 0 && tu_checks > 0 ? 0 : 1;                                          \
    } while (0)

#endif
