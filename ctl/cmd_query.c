/* tetherctl query: submit a federated query (with --wait, print each site's result); list, show
 * and cancel queries. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "common/crypto.h"
#include "common/token.h"
#include "table.h"

#define TIMEOUT_MAX  3600
#define TTL_MAX      (30LL * 86400)
#define DATA_MAX     (16u << 20) /* the hub refuses more than its API body limit anyway */
#define BODY_COLUMN  60
#define WAIT_EXTRA_S 2

static int parse_seconds(const char *flag, const char *v, long long lo, long long hi,
                         long long *out)
{
    char *end = NULL;

    errno = 0;
    *out = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || *out < lo || *out > hi)
        return ctl_usage_err("--%s expects whole seconds from %lld to %lld, got \"%s\"", flag, lo,
                             hi, v);
    return CTL_EXIT_OK;
}

/* --data @FILE | - | TEXT into *data (malloc'ed). */
static int read_data(const char *v, char **data, size_t *len)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int rc = CTL_EXIT_FAIL;

    *data = NULL;
    *len = 0;
    if (v[0] != '@' && strcmp(v, "-") != 0) {
        *data = strdup(v);
        *len = strlen(v);
        if (*data == NULL) {
            ctl_err("out of memory");
            return CTL_EXIT_FAIL;
        }
        return CTL_EXIT_OK;
    }
    f = strcmp(v, "-") == 0 ? stdin : fopen(v + 1, "rb");
    if (f == NULL) {
        ctl_err("cannot read %s: %s", v + 1, strerror(errno));
        return CTL_EXIT_FAIL;
    }
    for (;;) {
        size_t got;

        if (n == cap) {
            char *nb;
            cap = cap ? cap * 2 : 65536;
            if (cap > DATA_MAX + 1)
                cap = DATA_MAX + 1;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                ctl_err("out of memory");
                goto out;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n > DATA_MAX) {
            ctl_err("--data: more than %u bytes", DATA_MAX);
            goto out;
        }
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        ctl_err("cannot read %s: %s", strcmp(v, "-") == 0 ? "stdin" : v + 1, strerror(errno));
        goto out;
    }
    *data = buf;
    *len = n;
    buf = NULL;
    rc = CTL_EXIT_OK;
out:
    if (f != NULL && f != stdin)
        fclose(f);
    free(buf);
    return rc;
}

/* Puts the data in the request as "body" (UTF-8 text) or "body_base64". */
static int set_body(json_t *req, const char *data, size_t len)
{
    json_t *s = json_stringn(data, len);
    size_t cap, n;
    char *b64;

    if (s != NULL)
        return json_object_set_new(req, "body", s) == 0 ? 0 : -ENOMEM;
    cap = (len + 2) / 3 * 4 + 1;
    b64 = malloc(cap);
    if (b64 == NULL || crypto_b64_encode((const uint8_t *)data, len, 0, b64, cap, &n) != 0) {
        free(b64);
        return -ENOMEM;
    }
    json_object_set_new(req, "body_base64", json_stringn(b64, n));
    free(b64);
    return 0;
}

/* The start of a body (or the detail) as one short line. */
static void body_start(json_t *site, char *out, size_t cap)
{
    const char *b = ctl_jstr(site, "body");
    size_t o = 0, i;
    int space = 0;

    if (b == NULL) {
        if (ctl_jstr(site, "body_base64") != NULL)
            b = "(binary body)";
        else if (ctl_jstr(site, "detail") != NULL)
            b = ctl_jstr(site, "detail");
        else
            b = "";
    }
    for (i = 0; b[i] != '\0' && o + 4 < cap && o < BODY_COLUMN; i++) {
        unsigned char ch = (unsigned char)b[i];

        if (ch == '\n' || ch == '\r' || ch == '\t' || ch == ' ') {
            if (!space && o > 0)
                out[o++] = ' ';
            space = 1;
            continue;
        }
        space = 0;
        out[o++] = (char)ch;
    }
    /* Never cut inside a character: its bytes were copied one for one. */
    while (b[i] != '\0' && o > 0 && i > 0 && ((unsigned char)b[i] & 0xc0) == 0x80) {
        o--;
        i--;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
    if (b[i] != '\0' && o + 4 < cap)
        strcat(out, "...");
}

/* The per-site results of query q as a table on stdout. */
static int print_table(json_t *q, long long *n, long long *n_done, long long *n_skipped)
{
    static const char *const head[] = {"SITE", "STATUS", "HTTP", "LATENCY", "BODY"};
    json_t *sites = json_object_get(q, "sites"), *s;
    struct table *t = table_new(5, head);
    size_t i;
    int rc = CTL_EXIT_FAIL;

    *n = *n_done = *n_skipped = 0;
    if (t == NULL) {
        ctl_err("out of memory");
        return CTL_EXIT_FAIL;
    }
    if (!json_is_array(sites)) {
        ctl_err("the hub's answer has no \"sites\" list");
        goto out;
    }
    table_align_right(t, 2);
    table_align_right(t, 3);
    json_array_foreach(sites, i, s)
    {
        char http[16] = "-", lat[32] = "-", body[BODY_COLUMN + 8];
        const char *st = ctl_jstr(s, "status");
        const char *row[5] = {ctl_jstr(s, "site"), st, http, lat, body};

        if (json_is_integer(json_object_get(s, "http_status")))
            snprintf(http, sizeof(http), "%lld", ctl_jint(s, "http_status"));
        if (json_is_integer(json_object_get(s, "latency_ms")))
            snprintf(lat, sizeof(lat), "%lld ms", ctl_jint(s, "latency_ms"));
        body_start(s, body, sizeof(body));
        if (ctl_table_add(t, row) != CTL_EXIT_OK)
            goto out;
        (*n)++;
        if (st != NULL && strcmp(st, "done") == 0)
            (*n_done)++;
        if (st != NULL && strcmp(st, "skipped") == 0)
            (*n_skipped)++;
    }
    table_print(t, stdout);
    rc = CTL_EXIT_OK;
out:
    table_free(t);
    return rc;
}

/* The table, then exit 1 with a summary on stderr unless every site that
 * offers the service answered. */
static int print_results(json_t *q)
{
    long long n, n_done, n_skipped;
    json_t *c = json_object_get(q, "counts");
    const char *id = ctl_jstr(q, "id") ? ctl_jstr(q, "id") : "?";
    int rc = print_table(q, &n, &n_done, &n_skipped);

    if (rc != CTL_EXIT_OK)
        return rc;
    if (n > 0 && n_skipped == n) {
        ctl_err("none of the %lld sites offers service \"%s\" ('tetherctl site list' shows each "
                "site's services); query %s",
                n, ctl_jstr(q, "service") ? ctl_jstr(q, "service") : "?", id);
        return CTL_EXIT_FAIL;
    }
    if (n_done < n - n_skipped) {
        ctl_err("%lld of %lld sites did not answer (queued %lld, sent %lld, error %lld, timeout "
                "%lld, expired %lld, cancelled %lld); query %s",
                n - n_skipped - n_done, n - n_skipped, ctl_jint(c, "queued"), ctl_jint(c, "sent"),
                ctl_jint(c, "error"), ctl_jint(c, "timeout"), ctl_jint(c, "expired"),
                ctl_jint(c, "cancelled"), id);
        return CTL_EXIT_FAIL;
    }
    return CTL_EXIT_OK;
}

/* "done 2, queued 1": the non-zero counts of a query, in the hub's order. */
static void counts_text(json_t *counts, char *out, size_t cap)
{
    const char *k;
    json_t *v;
    size_t o = 0;

    out[0] = '\0';
    json_object_foreach(counts, k, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) == 0 || o >= cap)
            continue;
        o += (size_t)snprintf(out + o, cap - o, "%s%s %lld", o > 0 ? ", " : "", k,
                              (long long)json_integer_value(v));
    }
}

/* The query id argument, checked before it goes into a URL path. */
static int check_qid(const char *id)
{
    size_t n = strlen(id);

    if (n == 24 && strncmp(id, "q_", 2) == 0 &&
        strspn(id + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                       "qrstuvwxyz0123456789-_") == 22)
        return CTL_EXIT_OK;
    return ctl_usage_err("invalid query id \"%s\" (an id is q_ and 22 letters, digits, '-' or "
                         "'_')",
                         id);
}

int cmd_query_list(struct ctl *c, const struct ctl_args *a)
{
    static const char *const head[] = {"ID",      "CREATED", "USER",   "SERVICE",
                                       "REQUEST", "SITES",   "STATUS", "RESULTS"};
    const char *lim = ctl_opt(a, "limit"), *bef = ctl_opt(a, "before");
    json_t *resp = NULL; /* owned here; everything below borrows from it */
    json_t *list, *q;
    struct table *t = NULL;
    long long limit = 50;
    char path[128];
    size_t i;
    int rc;

    if (lim != NULL && (rc = ctl_parse_count("--limit", lim, 500, &limit)) != CTL_EXIT_OK)
        return rc;
    if (bef != NULL && (rc = check_qid(bef)) != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/queries?limit=%lld%s%s", limit, bef ? "&before=" : "",
             bef ? bef : "");
    rc = ctl_get_list(c, path, "queries", 8, head, &resp, &list, &t);
    if (rc != CTL_EXIT_OK || t == NULL)
        goto out;
    table_align_right(t, 5);
    json_array_foreach(list, i, q)
    {
        char when[32], sites[24], request[160], results[160];
        const char *row[8] = {ctl_jstr(q, "id"),      when,    ctl_jstr(q, "user"),
                              ctl_jstr(q, "service"), request, sites,
                              ctl_jstr(q, "status"),  results};

        ctl_fmt_time(ctl_jint(q, "created_at"), when, sizeof(when));
        snprintf(sites, sizeof(sites), "%lld", ctl_jint(q, "n_sites"));
        snprintf(request, sizeof(request), "%s %.120s",
                 ctl_jstr(q, "method") ? ctl_jstr(q, "method") : "?",
                 ctl_jstr(q, "path") ? ctl_jstr(q, "path") : "?");
        counts_text(json_object_get(q, "counts"), results, sizeof(results));
        rc = ctl_table_add(t, row);
        if (rc != CTL_EXIT_OK)
            goto out;
    }
    table_print(t, stdout);
    if (table_rows(t) == 0 && isatty(STDERR_FILENO))
        fprintf(stderr, "No queries yet: ask the sites with 'tetherctl query --service NAME'.\n");
    if (ctl_jstr(resp, "next") != NULL && isatty(STDERR_FILENO))
        fprintf(stderr, "Older queries: tetherctl query list --before %s\n",
                ctl_jstr(resp, "next"));
out:
    table_free(t);
    json_decref(resp);
    return rc;
}

/* GET or POST path, then the query it answers: printed whole with --json,
 * else by show. */
static int query_call(struct ctl *c, const char *method, const char *id, const char *suffix,
                      int (*show)(json_t *q))
{
    json_t *q = NULL; /* owned here */
    char path[96];
    int rc = check_qid(id);

    if (rc != CTL_EXIT_OK)
        return rc;
    snprintf(path, sizeof(path), "/v1/queries/%s%s", id, suffix);
    rc = ctl_call(c, method, path, NULL, &q);
    if (rc == CTL_EXIT_OK && c->json)
        ctl_print_json(q);
    else if (rc == CTL_EXIT_OK)
        rc = show(q);
    json_decref(q);
    return rc;
}

static int show_query(json_t *q)
{
    char buf[256], when[32], *target;
    long long n, n_done, n_skipped;

    ctl_kv("id:", ctl_jstr(q, "id"));
    ctl_kv("status:", ctl_jstr(q, "status"));
    ctl_kv("user:", ctl_jstr(q, "user"));
    ctl_fmt_time(ctl_jint(q, "created_at"), when, sizeof(when));
    ctl_kv("created:", when);
    ctl_fmt_time(ctl_jint(q, "completed_at"), when, sizeof(when));
    ctl_kv("completed:", when);
    if (ctl_jint(q, "cancelled_at") > 0) {
        ctl_fmt_time(ctl_jint(q, "cancelled_at"), when, sizeof(when));
        ctl_kv("cancelled:", when);
    }
    ctl_kv("service:", ctl_jstr(q, "service"));
    snprintf(buf, sizeof(buf), "%s %.200s", ctl_jstr(q, "method") ? ctl_jstr(q, "method") : "?",
             ctl_jstr(q, "path") ? ctl_jstr(q, "path") : "?");
    ctl_kv("request:", buf);
    target = json_dumps(json_object_get(q, "target"), JSON_COMPACT | JSON_ENCODE_ANY);
    ctl_kv("sites:", target);
    free(target);
    snprintf(buf, sizeof(buf), "%lld s", ctl_jint(q, "timeout_s"));
    ctl_kv("timeout:", buf);
    ctl_fmt_time(ctl_jint(q, "expires_at"), when, sizeof(when));
    snprintf(buf, sizeof(buf), "%lld s (offline sites wait until %s)", ctl_jint(q, "ttl_s"), when);
    ctl_kv("ttl:", buf);
    counts_text(json_object_get(q, "counts"), buf, sizeof(buf));
    ctl_kv("results:", buf);
    printf("\n");
    return print_table(q, &n, &n_done, &n_skipped);
}

int cmd_query_show(struct ctl *c, const struct ctl_args *a)
{
    return query_call(c, "GET", a->pos[0], "", show_query);
}

static int show_cancelled(json_t *q)
{
    json_t *counts = json_object_get(q, "counts");

    printf("query %s cancelled: %lld site(s) will not get it", ctl_jstr(q, "id"),
           ctl_jint(counts, "cancelled"));
    if (ctl_jint(counts, "sent") > 0)
        printf("; %lld had it already and may still answer", ctl_jint(counts, "sent"));
    printf("\n");
    return CTL_EXIT_OK;
}

int cmd_query_cancel(struct ctl *c, const struct ctl_args *a)
{
    return query_call(c, "POST", a->pos[0], "/cancel", show_cancelled);
}

int cmd_query(struct ctl *c, const struct ctl_args *a)
{
    const char *service = ctl_opt(a, "service"), *v;
    json_t *req = json_object(), *sel = NULL, *headers = json_object();
    json_t *resp = NULL, *full = NULL;
    long long timeout = 30, ttl = -1;
    char *data = NULL, path[128];
    size_t data_len = 0;
    int wait = ctl_opt(a, "wait") != NULL, rc = CTL_EXIT_FAIL;
    const char *id;

    if (req == NULL || headers == NULL) {
        ctl_err("out of memory");
        goto out;
    }
    if (service == NULL || !token_name_valid(service)) {
        rc = ctl_usage_err(
            service == NULL
                ? "query needs --service NAME (or a subcommand: list, show ID, cancel ID)"
                : "--service: invalid service name");
        goto out;
    }
    rc = ctl_parse_sites(ctl_opt(a, "sites"), &sel);
    if (rc != CTL_EXIT_OK)
        goto out;
    if ((v = ctl_opt(a, "timeout")) != NULL &&
        (rc = parse_seconds("timeout", v, 1, TIMEOUT_MAX, &timeout)) != CTL_EXIT_OK)
        goto out;
    if ((v = ctl_opt(a, "ttl")) != NULL &&
        (rc = parse_seconds("ttl", v, 0, TTL_MAX, &ttl)) != CTL_EXIT_OK)
        goto out;
    for (size_t i = 0; i < a->nopt; i++) {
        const char *hv = a->opt[i].value, *colon;
        char *name;

        if (strcmp(a->opt[i].name, "header") != 0)
            continue;
        colon = strchr(hv, ':');
        if (colon == NULL || colon == hv) {
            rc = ctl_usage_err("--header expects \"Name: value\", got \"%s\"", hv);
            goto out;
        }
        name = strndup(hv, (size_t)(colon - hv));
        colon++;
        while (*colon == ' ')
            colon++;
        if (name == NULL || json_object_set_new(headers, name, json_string(colon)) != 0) {
            free(name);
            rc = ctl_usage_err("--header \"%s\" is not valid UTF-8 text", hv);
            goto out;
        }
        free(name);
    }
    if ((v = ctl_opt(a, "data")) != NULL) {
        rc = read_data(v, &data, &data_len);
        if (rc != CTL_EXIT_OK)
            goto out;
        if (set_body(req, data, data_len) != 0) {
            ctl_err("out of memory");
            rc = CTL_EXIT_FAIL;
            goto out;
        }
    }
    json_object_set(req, "sites", sel);
    json_object_set_new(req, "service", json_string(service));
    v = ctl_opt(a, "method");
    json_object_set_new(req, "method", json_string(v ? v : data ? "POST" : "GET"));
    v = ctl_opt(a, "path");
    json_object_set_new(req, "path", json_string(v ? v : "/"));
    if (json_object_size(headers) > 0)
        json_object_set(req, "headers", headers);
    json_object_set_new(req, "timeout_s", json_integer(timeout));
    if (ttl >= 0)
        json_object_set_new(req, "ttl_s", json_integer(ttl));

    rc = ctl_call(c, "POST", "/v1/queries", req, &resp);
    if (rc != CTL_EXIT_OK)
        goto out;
    id = ctl_jstr(resp, "id");
    if (id == NULL || strlen(id) > 64) {
        ctl_err("the hub's answer has no query id");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (!wait) {
        if (c->json)
            ctl_print_json(resp);
        else
            printf("%s\n", id);
        goto out;
    }
    /* Sent requests end within timeout_s; queued ones may take until their
     * site connects, which --wait does not wait for. */
    snprintf(path, sizeof(path), "/v1/queries/%s?wait=%lld", id, timeout + WAIT_EXTRA_S);
    c->target.timeout_ms = (int)(timeout + WAIT_EXTRA_S + 30) * 1000;
    rc = ctl_call(c, "GET", path, NULL, &full);
    if (rc != CTL_EXIT_OK)
        goto out;
    if (c->json)
        ctl_print_json(full);
    else
        rc = print_results(full);
out:
    free(data);
    json_decref(sel);
    json_decref(headers);
    json_decref(req);
    json_decref(resp);
    json_decref(full);
    return rc;
}
