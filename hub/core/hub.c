/* The hub daemon's one wall clock, with the test hook that moves it. */
/* SPDX-License-Identifier: MIT */
#include "hub.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef TETHER_TEST_HOOKS
/* Tests make time pass without waiting: the file named by
 * TETHER_TEST_CLOCK_FILE holds a signed number of seconds added to the wall
 * clock, read again at every call so a test can move it while the hub runs.
 * Compiled only with -DTETHER_TEST_HOOKS=ON (docs/decisions.md). */
static int64_t test_clock_offset(void)
{
    const char *path = hub_test_clock_file();
    char buf[32];
    long long v = 0;
    size_t n;
    FILE *f;

    if (path == NULL || (f = fopen(path, "re")) == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (sscanf(buf, "%lld", &v) != 1 || v < -3153600000LL || v > 3153600000LL)
        return 0; /* a file being rewritten reads empty: no offset for that call */
    return (int64_t)v;
}

const char *hub_test_clock_file(void)
{
    const char *p = getenv("TETHER_TEST_CLOCK_FILE");

    return p != NULL && *p != '\0' ? p : NULL;
}
#else
const char *hub_test_clock_file(void)
{
    return NULL;
}
#endif

int64_t hub_now(void)
{
#ifdef TETHER_TEST_HOOKS
    return (int64_t)time(NULL) + test_clock_offset();
#else
    return (int64_t)time(NULL);
#endif
}
