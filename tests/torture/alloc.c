/* The torture build's allocator: counts tether's and jansson's allocations and fails the Nth
 * (TETHER_FAIL_ALLOC=N). */
/* SPDX-License-Identifier: MIT */
/* Not compiled with alloc.h: these call the real functions. */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

/* Set from the environment before main():
 *   TETHER_FAIL_ALLOC=N         the Nth allocation (1-based) returns NULL,
 *                               every other one succeeds (as curl's torture);
 *   TETHER_ALLOC_COUNT_FILE=F   at exit, the number of allocations made is
 *                               written to F (the first, counting run). */
static atomic_ulong n_allocs;
static unsigned long fail_at;
static const char *count_file;

static int fail_now(void)
{
    unsigned long n = atomic_fetch_add(&n_allocs, 1) + 1;

    if (fail_at == 0 || n != fail_at)
        return 0;
    /* Where it failed: torture.py tells a leak on this call's failure path
     * from an object the test got from an earlier call and still held. */
    fprintf(stderr, "torture: allocation %lu fails here:\n", n);
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_print_stack_trace();
#endif
    fprintf(stderr, "torture: end\n");
    return 1;
}

void *tt_malloc(size_t n)
{
    return fail_now() ? NULL : malloc(n);
}

void *tt_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : calloc(n, size);
}

/* A failed realloc leaves p allocated, as the real one does. */
void *tt_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : realloc(p, n);
}

char *tt_strdup(const char *s)
{
    return fail_now() ? NULL : strdup(s);
}

char *tt_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : strndup(s, n);
}

static void *tt_json_malloc(size_t n)
{
    return tt_malloc(n);
}

static void write_count(void)
{
    FILE *f;

    if (count_file == NULL || (f = fopen(count_file, "w")) == NULL)
        return;
    fprintf(f, "%lu\n", (unsigned long)atomic_load(&n_allocs));
    fclose(f);
}

__attribute__((constructor)) static void tt_init(void)
{
    const char *v = getenv("TETHER_FAIL_ALLOC");

    fail_at = v ? strtoul(v, NULL, 10) : 0;
    count_file = getenv("TETHER_ALLOC_COUNT_FILE");
    if (count_file != NULL)
        atexit(write_count);
    /* Most of the hub's allocations are JSON values made by tether's code. */
    json_set_alloc_funcs(tt_json_malloc, free);
}
