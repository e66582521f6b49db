/* Registry part for federated queries: the queries and their per-site results in SQLite. */
/* SPDX-License-Identifier: MIT */
#include "registry_query.h"
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAIL_MAX 1024

/* The column of Q_QUEUED_SITE's body, after the query's own columns. */
#define QCOL_BODY 18

/* Transactions are the registry's own (registry__tx_*): one connection. */
struct reg_qstore {
    struct registry *r; /* borrowed: outlives this store */
    struct reg_stmt *st[Q_NSTMT];
    /* No result was queued for any site at registry_write_gen none_gen. */
    int none_queued;
    uint64_t none_gen;
};

static const char *const status_names[REG_Q_NSTATUS] = {
    [REG_Q_QUEUED] = "queued",   [REG_Q_SENT] = "sent",           [REG_Q_DONE] = "done",
    [REG_Q_ERROR] = "error",     [REG_Q_TIMEOUT] = "timeout",     [REG_Q_EXPIRED] = "expired",
    [REG_Q_SKIPPED] = "skipped", [REG_Q_CANCELLED] = "cancelled",
};

const char *registry_query_status_name(int status)
{
    if (status < 0 || status >= REG_Q_NSTATUS)
        return "unknown";
    return status_names[status];
}

int registry_query_status_final(int status)
{
    return status >= REG_Q_DONE && status < REG_Q_NSTATUS;
}

int registry_query_status_parse(const char *s)
{
    for (int i = 0; s != NULL && i < REG_Q_NSTATUS; i++)
        if (strcmp(s, status_names[i]) == 0)
            return i;
    return -EINVAL;
}

void registry_query_clear(struct reg_query *q)
{
    free(q->target_json);
    free(q->path);
    free(q->headers_json);
    free(q->body);
    q->target_json = q->path = q->headers_json = NULL;
    q->body = NULL;
    q->body_len = 0;
}

/* A foreign key points at queries or sites that are always there: a
 * violation is bad input, not a missing row. */
#define QUERY_FK (-EINVAL)

static struct reg_stmt *stmt(struct reg_qstore *s, enum qstmt id)
{
    return registry__reset(s->st[id]);
}

static int exec_stmt(struct reg_stmt *st)
{
    return registry__exec_fk(st, QUERY_FK);
}

/* 1 row, 0 none, <0 error; the statement stays positioned. */
static int step_row(struct reg_stmt *st)
{
    return registry__step_fk(st, QUERY_FK);
}

int registry_query_open(struct registry *r, struct reg_qstore **out)
{
    struct reg_qstore *s = calloc(1, sizeof(*s));
    int rc = -EIO;

    if (s == NULL)
        return -ENOMEM;
    s->r = r;
    for (int i = 0; i < Q_NSTMT; i++) {
        rc = registry__prepare(r, r->drv->qsql[i], &s->st[i]);
        if (rc < 0)
            goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (s != NULL)
        registry_query_close(s);
    return rc;
}

void registry_query_close(struct reg_qstore *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < Q_NSTMT; i++)
        registry__finalize(s->st[i]);
    free(s);
}

/* --- reading rows --- */

/* Fills q from a QCOLS row; heap fields are new copies (body only if
 * with_body). */
static int read_query(struct reg_stmt *st, struct reg_query *q, int with_body)
{
    memset(q, 0, sizeof(*q));
    q->id = registry__col_i64(st, 0);
    registry__copy_col(st, 1, q->qid, sizeof(q->qid));
    q->created_at = registry__col_i64(st, 2);
    q->token_id = registry__col_i64(st, 3);
    registry__copy_col(st, 4, q->actor, sizeof(q->actor));
    registry__copy_col(st, 5, q->remote, sizeof(q->remote));
    registry__dup_col(st, 6, &q->target_json);
    registry__copy_col(st, 7, q->service, sizeof(q->service));
    registry__copy_col(st, 8, q->method, sizeof(q->method));
    registry__dup_col(st, 9, &q->path);
    registry__dup_col(st, 10, &q->headers_json);
    q->timeout_s = registry__col_i64(st, 11);
    q->ttl_s = registry__col_i64(st, 12);
    q->expires_at = registry__col_i64(st, 13);
    q->n_sites = registry__col_i64(st, 14);
    q->n_final = registry__col_i64(st, 15);
    q->completed_at = registry__col_i64(st, 16);
    q->cancelled_at = registry__col_i64(st, 17);
    if (q->target_json == NULL || q->path == NULL || q->headers_json == NULL)
        goto nomem;
    if (with_body) {
        size_t n = 0;
        const void *b = registry__col_blob(st, QCOL_BODY, &n);

        if (n > 0) {
            q->body = malloc(n);
            if (q->body == NULL)
                goto nomem;
            memcpy(q->body, b, n);
            q->body_len = n;
        }
    }
    return 0;
nomem:
    registry_query_clear(q);
    return -ENOMEM;
}

/* A view of an RCOLS row, valid until the statement moves. */
static void read_result(struct reg_stmt *st, struct reg_qresult *r)
{
    static const uint8_t empty_body[1];

    memset(r, 0, sizeof(*r));
    r->query_id = registry__col_i64(st, 0);
    r->site_id = registry__col_i64(st, 1);
    r->site = registry__col_text(st, 2);
    r->status = registry_query_status_parse(registry__col_text(st, 3));
    r->http_status = (int)registry__col_i64(st, 4);
    r->headers_json = registry__col_text(st, 5);
    if (!registry__col_null(st, 6)) {
        r->body = registry__col_blob(st, 6, &r->body_len);
        if (r->body == NULL)
            r->body = empty_body; /* zero-length blob */
    }
    r->detail = registry__col_text(st, 7);
    r->latency_ms = registry__col_i64(st, 8);
    r->sent_at = registry__col_i64(st, 9);
    r->finished_at = registry__col_i64(st, 10);
    r->seq = registry__col_i64(st, 11);
    if (r->site == NULL)
        r->site = "";
}

/* --- writing --- */

int registry_query_create(struct reg_qstore *s, struct reg_query *q,
                          const struct reg_qresult *targets, size_t n, int64_t now)
{
    struct reg_stmt *st;
    int64_t n_final = 0, seq = 0;
    int rc;

    if (n == 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (registry_query_status_final(targets[i].status))
            n_final++;
    rc = registry__tx_begin(s->r);
    if (rc != 0)
        return rc;
    st = stmt(s, Q_INSERT);
    registry__bind_text(st, 1, q->qid);
    registry__bind_i64(st, 2, q->created_at);
    registry__bind_i64(st, 3, q->token_id);
    registry__bind_text(st, 4, q->actor);
    registry__bind_text_cut(st, 5, q->remote, 63);
    registry__bind_text(st, 6, q->target_json);
    registry__bind_text(st, 7, q->service);
    registry__bind_text(st, 8, q->method);
    registry__bind_text(st, 9, q->path);
    registry__bind_text(st, 10, q->headers_json ? q->headers_json : "{}");
    if (registry__bind_blob(st, 11, q->body ? q->body : (const uint8_t *)"", q->body_len) != 0) {
        rc = -EINVAL;
        goto out;
    }
    registry__bind_i64(st, 12, q->timeout_s);
    registry__bind_i64(st, 13, q->ttl_s);
    registry__bind_i64(st, 14, q->expires_at);
    registry__bind_i64(st, 15, (int64_t)n);
    registry__bind_i64(st, 16, n_final);
    registry__bind_i64(st, 17, n_final == (int64_t)n ? now : 0);
    rc = registry__insert_id(st, QUERY_FK, &q->id);
    if (rc == 0)
        rc = -EIO; /* RETURNING gave no row: not what the table does */
    if (rc < 0)
        goto out;
    rc = 0;
    q->n_sites = (int64_t)n;
    q->n_final = n_final;
    q->completed_at = n_final == (int64_t)n ? now : 0;
    for (size_t i = 0; i < n; i++)
        if (targets[i].status < 0 || targets[i].status >= REG_Q_NSTATUS) {
            rc = -EINVAL;
            goto out;
        }
    /* REG_RINSERT_ROWS rows per statement, the rest one by one (store_int.h
     * numbers the parameters). */
    for (size_t i = 0; i < n;) {
        size_t k = n - i >= REG_RINSERT_ROWS ? REG_RINSERT_ROWS : 1;

        st = stmt(s, k > 1 ? Q_RINSERT_MANY : Q_RINSERT);
        registry__bind_i64(st, 1, q->id);
        registry__bind_i64(st, 2, q->expires_at);
        for (size_t j = 0; j < k; j++, i++) {
            const struct reg_qresult *t = &targets[i];
            int final = registry_query_status_final(t->status), p = 3 + 7 * (int)j;

            registry__bind_i64(st, p, t->site_id);
            registry__bind_text(st, p + 1, t->site);
            registry__bind_text(st, p + 2, status_names[t->status]);
            registry__bind_i64(st, p + 3, t->status == REG_Q_SENT ? now : 0);
            registry__bind_text_cut(st, p + 4, t->detail ? t->detail : "", DETAIL_MAX);
            registry__bind_i64(st, p + 5, final ? now : 0);
            registry__bind_i64(st, p + 6, final ? ++seq : 0);
        }
        rc = exec_stmt(st);
        if (rc != 0)
            goto out;
    }
    /* Other hubs deliver to the sites they hold (hub/cluster.c). */
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (targets[i].status == REG_Q_QUEUED) {
            rc = registry__note_query(s->r, REG_NOTE_QUERY, q->id);
            break;
        }
    if (rc != 0)
        goto out;
    if (s->r->hub_id > 0) {
        st = stmt(s, Q_SENT_BY);
        registry__bind_i64(st, 1, q->id);
        registry__bind_i64(st, 2, s->r->hub_id);
        rc = exec_stmt(st);
        if (rc != 0)
            goto out;
    }
    rc = registry__tx_commit(s->r);
out:
    if (rc != 0)
        registry__tx_rollback(s->r);
    return rc;
}

static int change_one(struct reg_qstore *s, struct reg_stmt *st)
{
    int rc = exec_stmt(st);

    if (rc == 0 && registry__changes(s->r) != 1)
        rc = -ENOENT;
    return rc;
}

int registry_query_mark_sent(struct reg_qstore *s, int64_t query_id, int64_t site_id, int64_t now)
{
    struct reg_stmt *st = stmt(s, Q_MARK_SENT);

    registry__bind_i64(st, 1, query_id);
    registry__bind_i64(st, 2, site_id);
    registry__bind_i64(st, 3, now);
    registry__bind_hub(s->r, st, 4);
    return change_one(s, st);
}

int registry_query_mark_sent_many(struct reg_qstore *s, int64_t site_id, const int64_t *query_ids,
                                  size_t n, int64_t now, int *ok)
{
    int rc;

    if (n == 0)
        return 0;
    rc = registry__tx_begin(s->r);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        rc = registry_query_mark_sent(s, query_ids[i], site_id, now);
        ok[i] = rc == 0;
        if (rc == -ENOENT)
            rc = 0;
        if (rc != 0)
            break;
    }
    rc = registry__tx_end(s->r, rc);
    if (rc != 0)
        memset(ok, 0, n * sizeof(*ok));
    return rc;
}

int registry_query_requeue(struct reg_qstore *s, int64_t query_id, int64_t site_id)
{
    struct reg_stmt *st = stmt(s, Q_REQUEUE);
    int rc;

    registry__bind_i64(st, 1, query_id);
    registry__bind_i64(st, 2, site_id);
    rc = change_one(s, st);
    if (rc != -ENOENT)
        return rc;
    /* Not requeued: say whether the cancel is why. */
    st = stmt(s, Q_IS_CANCELLED);
    registry__bind_i64(st, 1, query_id);
    if (step_row(st) == 1 && registry__col_i64(st, 0) != 0)
        rc = -ECANCELED;
    registry__done(st);
    return rc;
}

/* Inside a transaction: the results rs[idx[0..k)], all of one query, each
 * still in state from[i], to their final states, numbered in that order.
 * The query's row is read first, under its row lock on a database with
 * concurrent writers, so that two finishers of one query never take the
 * same seq; its count then moves once for the whole group (not once per
 * result: on a 1,000-site query that was half the statements of a
 * commit). Per item: rcs[i] 0 (seqs[i] set; completes[i] on the result
 * that completed the query), -ENOENT (no longer in that state) or -EINVAL
 * (refused: not a final state, or the row's CHECK); other codes return at
 * once and the whole transaction must go. */
static int finish_group(struct reg_qstore *s, const struct reg_qresult *rs, const int *from,
                        const size_t *idx, size_t k, int64_t *seqs, int *completes, int *rcs)
{
    struct reg_stmt *st = stmt(s, Q_LOCK_COUNT);
    int64_t n_final = 0, done = 0;
    size_t last = 0;
    int rc;

    for (size_t j = 0; j < k; j++) {
        seqs[idx[j]] = 0;
        completes[idx[j]] = 0;
        rcs[idx[j]] = -ENOENT;
    }
    registry__bind_i64(st, 1, rs[idx[0]].query_id);
    rc = step_row(st);
    if (rc == 1)
        n_final = registry__col_i64(st, 0);
    registry__done(st);
    if (rc == 0)
        return 0; /* no such query: every item -ENOENT */
    if (rc < 0)
        return rc == -EINVAL ? -EIO : rc;
    for (size_t j = 0; j < k; j++) {
        size_t i = idx[j];
        const struct reg_qresult *r = &rs[i];

        if (!registry_query_status_final(r->status) ||
            (from[i] != REG_Q_QUEUED && from[i] != REG_Q_SENT)) {
            rcs[i] = -EINVAL;
            continue;
        }
        st = stmt(s, Q_FINISH);
        registry__bind_i64(st, 1, r->query_id);
        registry__bind_i64(st, 2, r->site_id);
        registry__bind_text(st, 3, status_names[from[i]]);
        registry__bind_text(st, 4, status_names[r->status]);
        registry__bind_i64(st, 5, r->http_status);
        registry__bind_text(st, 6, r->headers_json);
        if (registry__bind_blob(st, 7, r->body, r->body_len) != 0) {
            registry__done(st);
            rcs[i] = -EINVAL;
            continue;
        }
        registry__bind_text_cut(st, 8, r->detail ? r->detail : "", DETAIL_MAX);
        registry__bind_i64(st, 9, r->latency_ms);
        registry__bind_i64(st, 10, r->finished_at);
        registry__bind_i64(st, 11, n_final + done + 1);
        rc = exec_stmt(st);
        if (rc == 0 && registry__changes(s->r) == 0)
            continue; /* not in state from (any more): -ENOENT, no seq taken */
        if (rc == 0 && registry__changes(s->r) != 1)
            return -EIO;
        if (rc != 0) {
            /* The result refused its new state (a CHECK): that undoes this
             * item only; anything else, the whole transaction. */
            rcs[i] = rc;
            if (rc != -EINVAL)
                return rc;
            continue;
        }
        rcs[i] = 0;
        seqs[i] = n_final + ++done;
        last = i;
    }
    if (done == 0)
        return 0;
    st = stmt(s, Q_BUMP_N);
    registry__bind_i64(st, 1, rs[idx[0]].query_id);
    registry__bind_i64(st, 2, done);
    registry__bind_i64(st, 3, rs[last].finished_at);
    rc = step_row(st);
    if (rc == 1)
        completes[last] = registry__col_i64(st, 0) != 0;
    registry__done(st);
    /* The row was there under the lock: not finding it now, or a count
     * past n_sites (its CHECK), means the transaction saw two states. */
    return rc == 1 ? 0 : rc < 0 && rc != -EINVAL ? rc : -EIO;
}

/* One result, alone (finish_group of one): its rcs as the return value. */
static int finish_one(struct reg_qstore *s, const struct reg_qresult *r, int from, int64_t *seq,
                      int *complete)
{
    size_t idx = 0;
    int one = 0, rc;

    rc = finish_group(s, r, &from, &idx, 1, seq, complete, &one);
    return rc != 0 ? rc : one;
}

int registry_query_finish_many(struct reg_qstore *s, const struct reg_qresult *rs, const int *from,
                               size_t n, int64_t *seqs, int *completes, int *rcs)
{
    size_t *idx, k;
    uint8_t *taken;
    int rc;

    if (n == 0)
        return 0;
    idx = malloc(n * sizeof(*idx));
    taken = calloc(n, 1);
    if (idx == NULL || taken == NULL) {
        free(idx);
        free(taken);
        return -ENOMEM;
    }
    rc = registry__tx_begin(s->r);
    if (rc != 0) {
        free(idx);
        free(taken);
        return rc;
    }
    /* By query, each query's results in their order in rs (a batch holds
     * few queries: the quadratic walk is over at most n items each). A
     * failed UPDATE undoes only itself; the others still commit. */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (taken[i])
            continue;
        k = 0;
        for (size_t j = i; j < n; j++)
            if (!taken[j] && rs[j].query_id == rs[i].query_id) {
                taken[j] = 1;
                idx[k++] = j;
            }
        rc = finish_group(s, rs, from, idx, k, seqs, completes, rcs);
        /* Waiters on other hubs read the new results (hub/cluster.c). */
        if (rc == 0)
            rc = registry__note_query(s->r, REG_NOTE_RESULTS, rs[i].query_id);
    }
    free(idx);
    free(taken);
    return registry__tx_end(s->r, rc);
}

int registry_query_finish(struct reg_qstore *s, const struct reg_qresult *r, int from, int64_t *seq,
                          int *complete)
{
    int64_t sq = 0;
    int cp = 0, one = 0, rc;

    rc = registry_query_finish_many(s, r, &from, 1, &sq, &cp, &one);
    if (rc == 0)
        rc = one;
    if (rc != 0)
        return rc;
    if (seq != NULL)
        *seq = sq;
    if (complete != NULL)
        *complete = cp;
    return 0;
}

/* Room for element len in v, an array of *cap elements of size bytes that
 * doubles from first: v itself, or its new place (the caller's to free), or
 * NULL with v untouched. */
static void *grow(void *v, size_t *cap, size_t len, size_t size, size_t first)
{
    size_t ncap = *cap ? *cap * 2 : first;
    void *nv;

    if (len < *cap)
        return v;
    nv = realloc(v, ncap * size);
    if (nv != NULL)
        *cap = ncap;
    return nv;
}

struct qpair {
    int64_t query_id, site_id;
    char site[64];
    char qid[REG_QID_LEN + 1];
    int64_t seq;
    int complete;
};

/* A REG_NOTE_RESULTS note for each query among v[0..len), once. */
static int note_pairs(struct reg_qstore *s, const struct qpair *v, size_t len)
{
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < len; i++) {
        size_t j = 0;

        while (j < i && v[j].query_id != v[i].query_id)
            j++;
        if (j == i)
            rc = registry__note_query(s->r, REG_NOTE_RESULTS, v[i].query_id);
    }
    return rc;
}

/* Reads (query_id, site_id[, site]) rows of st into a malloc'ed array. */
static int collect_pairs(struct reg_qstore *s, struct reg_stmt *st, int with_site,
                         struct qpair **out, size_t *n)
{
    struct qpair *v = NULL, *nv;
    size_t len = 0, cap = 0;
    int rc;

    while ((rc = step_row(st)) == 1) {
        nv = grow(v, &cap, len, sizeof(*v), 16);
        if (nv == NULL) {
            rc = -ENOMEM;
            break;
        }
        v = nv;
        memset(&v[len], 0, sizeof(v[len]));
        v[len].query_id = registry__col_i64(st, 0);
        v[len].site_id = registry__col_i64(st, 1);
        if (with_site) {
            registry__copy_col(st, 2, v[len].site, sizeof(v[len].site));
            registry__copy_col(st, 3, v[len].qid, sizeof(v[len].qid));
        }
        len++;
    }
    registry__done(st);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

int registry_query_fail_sent(struct reg_qstore *s, const char *detail, int64_t now, int64_t *n)
{
    struct reg_stmt *st;
    struct qpair *v = NULL;
    size_t len = 0;
    int rc;

    *n = 0;
    rc = registry__tx_begin(s->r);
    if (rc != 0)
        return rc;
    st = stmt(s, Q_SENT_LIST);
    registry__bind_hub(s->r, st, 1);
    rc = collect_pairs(s, st, 0, &v, &len);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        struct reg_qresult r = {.query_id = v[i].query_id,
                                .site_id = v[i].site_id,
                                .status = REG_Q_ERROR,
                                .detail = detail,
                                .latency_ms = -1,
                                .finished_at = now};
        rc = finish_one(s, &r, REG_Q_SENT, &v[i].seq, &v[i].complete);
    }
    if (rc == 0)
        rc = note_pairs(s, v, len);
    rc = registry__tx_end(s->r, rc);
    if (rc == 0)
        *n = (int64_t)len;
    free(v);
    return rc;
}

/* The rows (query_id, site_id, site, qid) that st (bound, not yet
 * stepped) lists, all queued, move to status with detail in one
 * transaction; cancel_id (0: none) is marked cancelled in it too. Then cb
 * for each. */
static int finish_listed(struct reg_qstore *s, struct reg_stmt *st, int from, int status,
                         const char *detail, int64_t now, int64_t cancel_id,
                         registry_qexpired_cb cb, void *arg, size_t *n)
{
    struct qpair *v = NULL;
    size_t len = 0;
    int rc;

    *n = 0;
    rc = registry__tx_begin(s->r);
    if (rc != 0) {
        registry__done(st);
        return rc;
    }
    rc = collect_pairs(s, st, 1, &v, &len);
    for (size_t i = 0; rc == 0 && i < len; i++) {
        struct reg_qresult r = {.query_id = v[i].query_id,
                                .site_id = v[i].site_id,
                                .status = status,
                                .detail = detail,
                                .latency_ms = -1,
                                .finished_at = now};
        rc = finish_one(s, &r, from, &v[i].seq, &v[i].complete);
    }
    if (rc == 0)
        rc = note_pairs(s, v, len);
    if (rc == 0 && cancel_id != 0 && len > 0) {
        st = stmt(s, Q_CANCEL_MARK);
        registry__bind_i64(st, 1, cancel_id);
        registry__bind_i64(st, 2, now);
        rc = change_one(s, st);
    }
    rc = registry__tx_end(s->r, rc);
    if (rc != 0) {
        free(v);
        return rc;
    }
    *n = len;
    for (size_t i = 0; cb != NULL && i < len; i++) {
        struct reg_qresult r = {.query_id = v[i].query_id,
                                .site_id = v[i].site_id,
                                .site = v[i].site,
                                .status = status,
                                .latency_ms = -1,
                                .finished_at = now,
                                .seq = v[i].seq};
        cb(&r, v[i].qid, v[i].complete, arg);
    }
    free(v);
    return 0;
}

int registry_query_expire(struct reg_qstore *s, int64_t now, size_t max, registry_qexpired_cb cb,
                          void *arg, size_t *n)
{
    struct reg_stmt *st = stmt(s, Q_EXPIRE_LIST);

    registry__bind_i64(st, 1, now);
    registry__bind_i64(st, 2, (int64_t)max);
    return finish_listed(s, st, REG_Q_QUEUED, REG_Q_EXPIRED,
                         "the site did not connect before ttl_s ran out", now, 0, cb, arg, n);
}

int registry_query_cancel(struct reg_qstore *s, int64_t query_id, const char *detail, int64_t now,
                          registry_qexpired_cb cb, void *arg, size_t *n)
{
    struct reg_stmt *st = stmt(s, Q_CANCEL_LIST);

    registry__bind_i64(st, 1, query_id);
    return finish_listed(s, st, REG_Q_QUEUED, REG_Q_CANCELLED, detail, now, query_id, cb, arg, n);
}

int registry_query_queued_sites(struct reg_qstore *s, int64_t query_id, int64_t **ids, size_t *n)
{
    struct reg_stmt *st = stmt(s, Q_QUEUED_OF);
    int64_t *v = NULL, *nv;
    size_t len = 0, cap = 0;
    int rc;

    *ids = NULL;
    *n = 0;
    registry__bind_i64(st, 1, query_id);
    while ((rc = step_row(st)) == 1) {
        nv = grow(v, &cap, len, sizeof(*v), 64);
        if (nv == NULL) {
            rc = -ENOMEM;
            break;
        }
        v = nv;
        v[len++] = registry__col_i64(st, 0);
    }
    registry__done(st);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *ids = v;
    *n = len;
    return 0;
}

/* Q_SENT_ELSEWHERE bound for site_id and this hub. */
static struct reg_stmt *sent_elsewhere(struct reg_qstore *s, int64_t site_id)
{
    struct reg_stmt *st = stmt(s, Q_SENT_ELSEWHERE);

    registry__bind_i64(st, 1, site_id);
    registry__bind_i64(st, 2, s->r->hub_id);
    return st;
}

int registry_query_fail_elsewhere(struct reg_qstore *s, int64_t site_id, const char *detail,
                                  int64_t now, registry_qexpired_cb cb, void *arg, size_t *n)
{
    struct reg_stmt *st;
    int rc;

    *n = 0;
    if (s->r->hub_id <= 0)
        return 0; /* one hub: every sent result is its own */
    /* Asked at every connect, and mostly there is none: no transaction (a
     * write lock on SQLite) for nothing. */
    st = sent_elsewhere(s, site_id);
    rc = step_row(st);
    registry__done(st);
    if (rc <= 0)
        return rc;
    return finish_listed(s, sent_elsewhere(s, site_id), REG_Q_SENT, REG_Q_ERROR, detail, now, 0, cb,
                         arg, n);
}

int registry_query_next_expiry(struct reg_qstore *s, int64_t *out)
{
    struct reg_stmt *st = stmt(s, Q_NEXT_EXPIRY);
    int rc = step_row(st);

    *out = rc == 1 ? registry__col_i64(st, 0) : 0;
    registry__done(st);
    return rc < 0 ? rc : 0;
}

int registry_query_queued_for_site(struct reg_qstore *s, int64_t site_id, int64_t now, size_t max,
                                   struct reg_query **out, size_t *n)
{
    struct reg_stmt *st = stmt(s, Q_QUEUED_SITE);
    struct reg_query *v = NULL, *nv;
    size_t len = 0, cap = 0;
    uint64_t gen;
    int64_t next;
    int rc;

    *out = NULL;
    *n = 0;
    /* Every site that connects asks; mostly nothing is queued anywhere. That
     * is known without a read while r's connection has written nothing since
     * it was: only it queues results (in SQLite; with PostgreSQL other hubs
     * do, and every connect reads). 2% of the hub's CPU per connect in the
     * handshake bench. */
    if (registry_write_gen(s->r, &gen) == 0) {
        if (s->none_queued && s->none_gen == gen) {
            registry__done(st);
            return 0;
        }
        s->none_queued = 0;
        if (registry_query_next_expiry(s, &next) == 0 && next == 0) {
            s->none_queued = 1;
            s->none_gen = gen;
            registry__done(st);
            return 0;
        }
    }
    registry__bind_i64(st, 1, site_id);
    registry__bind_i64(st, 2, now);
    registry__bind_i64(st, 3, (int64_t)max);
    while ((rc = step_row(st)) == 1) {
        nv = grow(v, &cap, len, sizeof(*v), 8);
        if (nv == NULL) {
            rc = -ENOMEM;
            break;
        }
        v = nv;
        rc = read_query(st, &v[len], 1);
        if (rc != 0)
            break;
        len++;
    }
    registry__done(st);
    if (rc < 0) {
        for (size_t i = 0; i < len; i++)
            registry_query_clear(&v[i]);
        free(v);
        return rc;
    }
    *out = v;
    *n = len;
    return 0;
}

int registry_query_get(struct reg_qstore *s, const char *qid, struct reg_query *out)
{
    struct reg_stmt *st = stmt(s, Q_GET);
    int rc;

    registry__bind_text(st, 1, qid);
    rc = step_row(st);
    if (rc == 1)
        rc = read_query(st, out, 0);
    else if (rc == 0)
        rc = -ENOENT;
    registry__done(st);
    return rc;
}

static int each_result(struct reg_qstore *s, struct reg_stmt *st, registry_qresult_cb cb, void *arg,
                       int *count)
{
    struct reg_qresult r;
    int rc, ret = 0;

    *count = 0;
    while ((rc = step_row(st)) == 1) {
        read_result(st, &r);
        (*count)++;
        ret = cb(&r, arg);
        if (ret != 0)
            break;
    }
    registry__done(st);
    if (rc < 0)
        return rc;
    return ret;
}

int registry_query_results(struct reg_qstore *s, int64_t query_id, int order_by_seq,
                           int64_t after_seq, registry_qresult_cb cb, void *arg)
{
    struct reg_stmt *st = stmt(s, order_by_seq ? Q_RESULTS_SEQ : Q_RESULTS_SITE);
    int count;

    registry__bind_i64(st, 1, query_id);
    if (order_by_seq)
        registry__bind_i64(st, 2, after_seq);
    return each_result(s, st, cb, arg, &count);
}

int registry_query_result(struct reg_qstore *s, int64_t query_id, int64_t site_id,
                          registry_qresult_cb cb, void *arg)
{
    struct reg_stmt *st = stmt(s, Q_RESULT_ONE);
    int count, rc;

    registry__bind_i64(st, 1, query_id);
    registry__bind_i64(st, 2, site_id);
    rc = each_result(s, st, cb, arg, &count);
    if (rc == 0 && count == 0)
        rc = -ENOENT;
    return rc;
}

int registry_query_counts(struct reg_qstore *s, int64_t query_id, int64_t counts[REG_Q_NSTATUS])
{
    struct reg_stmt *st = stmt(s, Q_COUNTS);
    int rc;

    memset(counts, 0, sizeof(int64_t) * REG_Q_NSTATUS);
    registry__bind_i64(st, 1, query_id);
    while ((rc = step_row(st)) == 1) {
        int k = registry_query_status_parse(registry__col_text(st, 0));
        if (k >= 0)
            counts[k] = registry__col_i64(st, 1);
    }
    registry__done(st);
    return rc < 0 ? rc : 0;
}

int registry_query_open_counts(struct reg_qstore *s, int64_t *queued, int64_t *sent)
{
    int64_t v[2];
    int rc = registry__row_i64(stmt(s, Q_OPEN_COUNTS), v, 2);

    if (rc == 0) {
        *queued = v[0];
        *sent = v[1];
    }
    return rc;
}

int registry_query_list(struct reg_qstore *s, int64_t token_id, int64_t before_id, int limit,
                        registry_query_cb cb, void *arg)
{
    struct reg_stmt *st = stmt(s, token_id != 0 ? Q_LIST_TOKEN : Q_LIST_ALL);
    struct reg_query q;
    int rc, ret = 0;

    registry__bind_i64(st, 1, before_id > 0 ? before_id : INT64_MAX);
    registry__bind_i64(st, 2, limit);
    if (token_id != 0)
        registry__bind_i64(st, 3, token_id);
    while ((rc = step_row(st)) == 1) {
        rc = read_query(st, &q, 0);
        if (rc != 0)
            break;
        ret = cb(&q, arg);
        registry_query_clear(&q);
        if (ret != 0)
            break;
    }
    registry__done(st);
    if (rc < 0)
        return rc;
    return ret;
}
