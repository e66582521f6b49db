/* The API router's table types and its pure path matcher, public for the router's tests. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_ROUTER_H
#define TETHER_ROUTER_H

#include <jansson.h>
#include <stdint.h>

#include "../../common/token.h"
#include "../auth/auth.h"
#include "../core/hub.h"
#include "../http/user.h"
#include "../store/registry_query.h"

struct api_route;
struct areq;
struct outcome;

/* Who may take a route. */
enum api_role {
    ROLE_NONE,  /* no bearer: the body proves who is asking (or nobody needs to) */
    ROLE_USER,  /* any valid bearer token */
    ROLE_ADMIN, /* an admin token */
};

/* What a pattern captured from a path. Strings are copied; rest points into
 * the request target (borrowed, valid while the request is). */
struct api_match {
    const struct api_route *route; /* the route taken; NULL: status says why not */
    int status;                    /* 0 matched; 404 or 405 */
    const char *detail;            /* a 404's detail (static) */
    char allowed[64];              /* a 405's methods: "GET, PATCH or DELETE" */
    int open;                      /* the path is a ROLE_NONE route's: no bearer asked */
    char name[TOKEN_NAME_MAX + 1]; /* {site} or {token} */
    int64_t id;                    /* {id}: a positive integer */
    char qid[REG_QID_LEN + 1];     /* {qid}: REG_QID_LEN bytes as sent */
    const char *rest;              /* '*': the rest of the target, query included */
};

/* Answers at once (reads). a is NULL on ROLE_NONE routes; borrowed. */
typedef void (*api_read_fn)(struct hub *h, struct ureq *r, const struct auth *a,
                            const struct api_match *m);
/* Runs a state change on its parsed body; fills o, which conclude() audits
 * and answers. */
typedef void (*api_change_fn)(struct areq *q, json_t *body, struct outcome *o);

/* One row of the router's table: exactly one of read and change is set. */
struct api_route {
    const char *method;  /* NULL: any method */
    const char *pattern; /* literal text, {site} {token} {id} {qid}, a final '*' or "/?" */
    enum api_role role;
    api_read_fn read;
    api_change_fn change;
    const char *action; /* a change's audit action */
};

/* router.c: the pure part of the router, for tests. Matches method and the
 * target's path against the table; fills m (always). */
void router_match(const char *method, const char *target, struct api_match *m);
/* 0 if a (NULL: no valid bearer) may take a route of role; else 401 or 403. */
int router_role_status(enum api_role role, const struct auth *a);

#endif
