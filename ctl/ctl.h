/* tetherctl's shared state and helpers: hub connection, request/response handling, output
 * formatting. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CTL_CTL_H
#define TETHER_CTL_CTL_H

#include <stddef.h>

#include <jansson.h>

#include "common/config.h"
#include "common/httpc.h"

/* Exit codes (docs/tetherctl.md). Scripts may rely on them. */
#define CTL_EXIT_OK        0
#define CTL_EXIT_FAIL      1 /* any other failure: bad configuration, hub error, bad answer */
#define CTL_EXIT_USAGE     2 /* the command line cannot be understood */
#define CTL_EXIT_NOT_FOUND 3 /* HTTP 404: no such site, token, enrollment token or query */
#define CTL_EXIT_DENIED    4 /* HTTP 401 or 403: the token is bad or may not do this */
#define CTL_EXIT_CONFLICT  5 /* HTTP 409: name taken, already revoked or used, wrong state */
#define CTL_EXIT_NETWORK   6 /* the hub could not be reached: DNS, TCP, TLS or pin mismatch */

/* Global state of one run. The option strings point into argv. */
struct ctl {
    const char *config_path; /* --config */
    const char *hub_url;     /* --hub */
    const char *token;       /* --token */
    const char *pin;         /* --pin */
    int json;                /* --json */

    /* Filled by ctl_connect() on first use. */
    int connected;
    struct config cfg; /* owned; the bearer may point into it */
    struct httpc_target target;
    const char *bearer;
};

#define CTL_MAX_POS  16
#define CTL_MAX_OPTS 64

/* What a command gets after global options and its own words are taken
 * off the command line. pos and the values point into argv. */
struct ctl_args {
    const char *pos[CTL_MAX_POS];
    size_t npos;
    struct {
        char name[32];     /* without the leading "--" */
        const char *value; /* NULL for options without a value */
    } opt[CTL_MAX_OPTS];
    size_t nopt;
};

/* Prints "tetherctl: MESSAGE" on stderr. */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the message and a hint to --help on stderr, on one line; returns
 * CTL_EXIT_USAGE. */
int ctl_usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Names the command (its words, borrowed) that usage errors' hint points at. */
void ctl_set_command(const char *words);

/* Resolves the configuration (--config, $TETHER_CONFIG,
 * ~/.config/tether/ctl.conf, then the --hub/--pin/--token overrides) once.
 * Returns CTL_EXIT_OK or an exit code after printing why. */
int ctl_connect(struct ctl *c);
/* Frees what ctl_connect() loaded. */
void ctl_free(struct ctl *c);

/* One API call: body (borrowed, may be NULL) is sent as JSON. On a 2xx
 * answer, if out is non-NULL, *out receives the parsed JSON body (an empty
 * object for an empty body): a new reference the caller must json_decref().
 * A hub error prints "tetherctl: DETAIL (HTTP STATUS)"; a network or TLS
 * failure prints httpc's reason. Returns CTL_EXIT_OK or the exit code to
 * use (CTL_EXIT_NOT_FOUND, _DENIED, _CONFLICT, _NETWORK or _FAIL). */
int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **out);

/* A long GET (an event stream): the body of a 2xx answer goes to on_body
 * (arg borrowed) as it arrives, until the hub or the connection ends it, or
 * idle_s seconds pass without a byte. A refusal by the hub is printed like
 * ctl_call's and returns its exit code. CTL_EXIT_NETWORK (nothing printed,
 * the reason in err) when the hub could not be reached or the stream
 * ended; whether it had started, on_body has seen. */
int ctl_stream(struct ctl *c, const char *path, int idle_s, httpc_body_fn on_body, void *arg,
               char *err, size_t cap);
/* Prints why the hub could not be reached (err from ctl_stream), with what
 * to do about the usual causes. */
void ctl_report_unreachable(const char *err);
/* Prints "KEY:    VALUE" (a "-" for NULL or ""), cleaned for the terminal. */
void ctl_kv(const char *key, const char *value);

struct table;

/* The common part of a list command: GET path. With --json the answer is
 * printed whole and *t stays NULL. Otherwise *list is the answer's array
 * `key` (borrowed from *resp) and *t a new table of ncols columns headed by
 * head. *resp (json_decref) and *t (table_free) are the caller's to free in
 * every case. Returns CTL_EXIT_OK or an exit code after printing why. */
int ctl_get_list(struct ctl *c, const char *path, const char *key, size_t ncols,
                 const char *const *head, json_t **resp, json_t **list, struct table **t);
/* table_add(), printing the failure: CTL_EXIT_OK or CTL_EXIT_FAIL. A NULL t
 * stands for a row whose cells could not be allocated: it fails the same way. */
int ctl_table_add(struct table *t, const char *const *row);

/* Checks a site or token name before it goes into a URL path; prints a
 * usage error naming `what` and returns CTL_EXIT_USAGE when it is bad. */
int ctl_check_name(const char *what, const char *name);

/* --sites: "*" (or "all", or v NULL), "label=K=V[,K=V]..." or "NAME,NAME..."
 * into the hub's JSON site selector. Returns a new reference in *out, or an
 * exit code after printing why. */
int ctl_parse_sites(const char *v, json_t **out);

/* Parses a positive decimal integer no larger than max into *out; prints a
 * usage error naming opt and returns CTL_EXIT_USAGE when it is not one. */
int ctl_parse_count(const char *opt, const char *v, long long max, long long *out);

/* The value of the command's option `name` (last one wins), or NULL; for an
 * option without a value, "" when present. */
const char *ctl_opt(const struct ctl_args *a, const char *name);

/* Writes j as indented JSON and a newline on stdout. */
void ctl_print_json(json_t *j);

/* Borrowed readers that tolerate missing or mistyped fields. */
const char *ctl_jstr(json_t *obj, const char *key); /* NULL if absent or not a string */
long long ctl_jint(json_t *obj, const char *key);   /* 0 if absent or not a number */

/* Formatters into caller buffers (cap >= 32); "-" stands for "none". */
void ctl_fmt_time(long long unix_s, char *buf, size_t cap); /* local YYYY-MM-DD HH:MM:SS */
void ctl_fmt_bytes(long long n, char *buf, size_t cap);     /* 512 B, 1.5 KiB, ... */
void ctl_fmt_duration(long long s, char *buf, size_t cap);  /* 45s, 3m 20s, 2h 5m, 4d 1h */

/* Joins the strings of a JSON array, or the "k=v" pairs of a JSON object,
 * with sep. Returns a malloc'ed string the caller frees ("" when empty),
 * NULL on allocation failure. */
char *ctl_join_array(json_t *arr, const char *sep);
char *ctl_join_object(json_t *obj, const char *sep);

#endif
