/* Forced-include header of the torture build: tether's allocations go through a counter that can
 * fail the Nth. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TORTURE_ALLOC_H
#define TETHER_TORTURE_ALLOC_H

/* As wide as any tether source asks for (config.c wants mkostemp). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

/* The system headers first, so their declarations are not rewritten; their
 * include guards keep later #includes of them from undoing the macros. */
#include <stdlib.h>
#include <string.h>

void *tt_malloc(size_t n);
void *tt_calloc(size_t n, size_t size);
void *tt_realloc(void *p, size_t n);
char *tt_strdup(const char *s);
char *tt_strndup(const char *s, size_t n);

#define malloc(n)     tt_malloc(n)
#define calloc(n, s)  tt_calloc(n, s)
#define realloc(p, n) tt_realloc(p, n)
#define strdup(s)     tt_strdup(s)
#define strndup(s, n) tt_strndup(s, n)

#endif
