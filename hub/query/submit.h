/* The pure part of query submission: the submitted JSON checked into a query, and its "sites"
 * resolved. */
/* SPDX-License-Identifier: MIT */
/*
 * No socket and no ureq here, so that tests/unit/hub/query/test_submit.c can
 * call it (the layer check keeps query_int.h inside hub/query/).
 */
#ifndef TETHER_QUERY_SUBMIT_H
#define TETHER_QUERY_SUBMIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../auth/auth.h"
#include "../store/registry.h"
#include "../store/registry_query.h"

#define QUERY_DETAIL_LEN 256

/* One site a query goes to. */
struct query_target {
    int64_t site_id;
    char name[TOKEN_NAME_MAX + 1];
    int status; /* enum reg_qstatus, decided by the submit */
    char detail[QUERY_DETAIL_LEN];
    struct tunnel *t; /* borrowed, while the submit runs; NULL if offline */
    /* Picked by "*" or labels, not named, and the services the site
     * announced when it was last connected lack the query's service (0 for
     * a site never connected: nothing known). */
    int lacks_service;
};

/* The targets of one query, in the order given (names) or listed (selector). */
struct query_targets {
    struct query_target *v; /* owned */
    size_t n, cap;
    /* Set by the caller before resolving (borrowed; NULL: not judged): the
     * service, for lacks_service. */
    const char *service;
};

/* Whether a query's "sites" (its stored JSON text) is a selector ("*" or
 * labels), which passes over sites without the service, rather than a list
 * of names, where such a site is an error. */
int query_by_selector(const char *target_json);

/* Checks body (a JSON object, borrowed) and fills q with what it asks:
 * service, method, path (normalised), headers_json, target_json, body,
 * timeout_s, ttl_s. Every pointer set in q is owned by q (registry_query_clear
 * frees it, also after a failure). Returns 0, or <0 with *status (400 bad
 * input, 500 out of memory) and msg set for the answer. */
int query_parse(json_t *body, struct reg_query *q, int *status, char *msg, size_t cap);

/* Resolves the "sites" selector (borrowed) into out (appended; the caller
 * frees out->v), keeping the sites a may use. Returns 0, or <0 with *status
 * (400, 403, 404 or 500) and msg set for the answer. */
int query_resolve_sites(struct registry *reg, const struct auth *a, json_t *sites,
                        struct query_targets *out, int *status, char *msg, size_t cap);

#endif
