/* Write-behind records of the registry: a queue the loop fills, drained in batches by a thread. */
/* SPDX-License-Identifier: MIT */
#include "recorder.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "registry.h"
#include "store_int.h"

enum job_kind { JOB_SESS_OPEN, JOB_SESS_CLOSE, JOB_SITE_SEEN };

/* One record, with heap copies of its strings (NULL = not given). */
struct job {
    struct job *next;
    enum job_kind kind;
    uint64_t seq;
    uint64_t key; /* session jobs */
    int64_t site_id;
    int64_t at; /* connected_at, disconnected_at or last_seen */
    int64_t bytes_in, bytes_out;
    char *addr, *agent, *reason, *services;
    int64_t row_id; /* set by the writer: the open session's row */
    int error;      /* set by the writer: why the database refused it, or 0 */
};

static const char *job_op(enum job_kind kind)
{
    switch (kind) {
    case JOB_SESS_OPEN:
        return "open";
    case JOB_SESS_CLOSE:
        return "close";
    case JOB_SITE_SEEN:
        return "seen";
    }
    return "?";
}

/* Open sessions' keys to row ids: linear probing, no tombstones (deletion
 * shifts back), grown at half load. Written by the writer thread under the
 * lock, read by the writer freely and by the loop under the lock. */
struct keymap {
    uint64_t *keys; /* 0 = empty slot */
    int64_t *ids;
    size_t cap, n; /* cap: a power of two, or 0 */
};

struct recorder {
    struct registry *reg; /* the writer's own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* jobs queued, or stop */
    pthread_cond_t done; /* done_seq moved */
    struct job *head, *tail;
    size_t depth;
    int stopping;
    int idle;                 /* the writer waits for an empty queue to fill */
    uint64_t hurry_seq;       /* a flush waits for this job: no lingering until it is done */
    uint64_t next_key;        /* the loop's only */
    uint64_t seq, done_seq;   /* last queued, last written or failed */
    struct recorder_stats st; /* under mu */
    struct keymap map;
    struct hist commits; /* under mu: the connection's, copied after each batch */
};

static size_t slot_of(uint64_t key, size_t cap)
{
    key *= 0x9e3779b97f4a7c15ULL;
    return (size_t)(key >> 32) & (cap - 1);
}

static int64_t map_get(const struct keymap *m, uint64_t key)
{
    size_t i;

    if (m->cap == 0 || key == 0)
        return 0;
    for (i = slot_of(key, m->cap); m->keys[i] != 0; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == key)
            return m->ids[i];
    return 0;
}

static void map_place(struct keymap *m, uint64_t key, int64_t id)
{
    size_t i = slot_of(key, m->cap);

    while (m->keys[i] != 0 && m->keys[i] != key)
        i = (i + 1) & (m->cap - 1);
    if (m->keys[i] == 0)
        m->n++;
    m->keys[i] = key;
    m->ids[i] = id;
}

static int map_put(struct keymap *m, uint64_t key, int64_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        struct keymap g = {0};
        size_t i;

        g.cap = m->cap ? m->cap * 2 : 1024;
        g.keys = calloc(g.cap, sizeof(*g.keys));
        g.ids = calloc(g.cap, sizeof(*g.ids));
        if (g.keys == NULL || g.ids == NULL) {
            free(g.keys);
            free(g.ids);
            return -ENOMEM;
        }
        for (i = 0; i < m->cap; i++)
            if (m->keys[i] != 0)
                map_place(&g, m->keys[i], m->ids[i]);
        free(m->keys);
        free(m->ids);
        *m = g;
    }
    map_place(m, key, id);
    return 0;
}

static void map_del(struct keymap *m, uint64_t key)
{
    size_t i, j, home;

    if (m->cap == 0 || key == 0)
        return;
    for (i = slot_of(key, m->cap); m->keys[i] != key; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == 0)
            return;
    /* Shift back every later entry of the run that may sit at i. */
    for (j = (i + 1) & (m->cap - 1); m->keys[j] != 0; j = (j + 1) & (m->cap - 1)) {
        home = slot_of(m->keys[j], m->cap);
        if (((j - home) & (m->cap - 1)) >= ((j - i) & (m->cap - 1))) {
            m->keys[i] = m->keys[j];
            m->ids[i] = m->ids[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->ids[i] = 0;
    m->n--;
}

static void job_free(struct job *j)
{
    free(j->addr);
    free(j->agent);
    free(j->reason);
    free(j->services);
    free(j);
}

/* *dst = a copy of s, or NULL for NULL; 0 or -ENOMEM. */
static int dup_opt(char **dst, const char *s)
{
    *dst = NULL;
    if (s == NULL)
        return 0;
    *dst = strdup(s);
    return *dst ? 0 : -ENOMEM;
}

/* Queues j (taken in every case). */
static int enqueue(struct recorder *rec, struct job *j)
{
    int rc = -ENOBUFS;

    pthread_mutex_lock(&rec->mu);
    if (rec->depth >= RECORDER_QUEUE_MAX || rec->stopping) {
        rec->st.dropped++;
        pthread_mutex_unlock(&rec->mu);
        job_free(j);
        return rc;
    }
    j->seq = ++rec->seq;
    if (rec->tail)
        rec->tail->next = j;
    else
        rec->head = j;
    rec->tail = j;
    rec->depth++;
    rec->st.queued++;
    /* A busy or lingering writer takes the queue when it is ready: waking it
     * for every job would cost a context switch per record. */
    if (rec->idle || rec->depth == RECORDER_BATCH)
        pthread_cond_signal(&rec->wake);
    pthread_mutex_unlock(&rec->mu);
    return 0;
}

static struct job *job_new(struct recorder *rec, enum job_kind kind)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        pthread_mutex_lock(&rec->mu);
        rec->st.dropped++;
        pthread_mutex_unlock(&rec->mu);
        return NULL;
    }
    j->kind = kind;
    return j;
}

static int job_strings(struct recorder *rec, struct job *j, const char *addr, const char *agent,
                       const char *reason, const char *services)
{
    if (dup_opt(&j->addr, addr) == 0 && dup_opt(&j->agent, agent) == 0 &&
        dup_opt(&j->reason, reason) == 0 && dup_opt(&j->services, services) == 0)
        return 0;
    job_free(j);
    pthread_mutex_lock(&rec->mu);
    rec->st.dropped++;
    pthread_mutex_unlock(&rec->mu);
    return -ENOMEM;
}

void recorder_use_hub(struct recorder *rec, int64_t hub_id)
{
    /* Under mu: the writer reads it while it writes, after taking a batch. */
    pthread_mutex_lock(&rec->mu);
    registry_use_hub(rec->reg, hub_id);
    pthread_mutex_unlock(&rec->mu);
}

int recorder_session_open(struct recorder *rec, int64_t site_id, const char *remote_addr,
                          const char *agent_version, int64_t now, uint64_t *key_out)
{
    struct job *j;
    int rc = -ENOMEM;

    *key_out = 0;
    j = job_new(rec, JOB_SESS_OPEN);
    if (j == NULL)
        goto out;
    rc = job_strings(rec, j, remote_addr ? remote_addr : "", agent_version ? agent_version : "",
                     NULL, NULL);
    if (rc != 0)
        goto out;
    j->key = ++rec->next_key;
    j->site_id = site_id;
    j->at = now;
    rc = enqueue(rec, j);
    if (rc == 0)
        *key_out = j->key; /* j may be freed already: the key was copied first */
out:
    return rc;
}

int recorder_session_close(struct recorder *rec, uint64_t key, int64_t now, const char *reason,
                           int64_t bytes_in, int64_t bytes_out)
{
    struct job *j;
    int rc;

    if (key == 0)
        return 0;
    j = job_new(rec, JOB_SESS_CLOSE);
    if (j == NULL)
        return -ENOMEM;
    rc = job_strings(rec, j, NULL, NULL, reason ? reason : "", NULL);
    if (rc != 0)
        return rc;
    j->key = key;
    j->at = now;
    j->bytes_in = bytes_in;
    j->bytes_out = bytes_out;
    return enqueue(rec, j);
}

int recorder_site_seen(struct recorder *rec, int64_t site_id, int64_t last_seen,
                       const char *agent_version, const char *services_json,
                       const char *remote_addr)
{
    struct job *j;
    int rc;

    j = job_new(rec, JOB_SITE_SEEN);
    if (j == NULL)
        return -ENOMEM;
    rc = job_strings(rec, j, remote_addr, agent_version, NULL, services_json);
    if (rc != 0)
        return rc;
    j->site_id = site_id;
    j->at = last_seen;
    return enqueue(rec, j);
}

/* The row of session key as the writer knows it before batch's map
 * changes apply: an open earlier in the same batch, else the map. */
static int64_t row_of(const struct recorder *rec, const struct job *batch, const struct job *upto,
                      uint64_t key)
{
    int64_t id = 0;
    const struct job *j;

    for (j = batch; j != upto; j = j->next)
        if (j->key == key && j->kind == JOB_SESS_OPEN)
            id = j->row_id;
        else if (j->key == key && j->kind == JOB_SESS_CLOSE)
            id = 0;
    return id ? id : map_get(&rec->map, key);
}

static int run_job(struct recorder *rec, struct job *batch, struct job *j)
{
    int64_t id;

    switch (j->kind) {
    case JOB_SESS_OPEN:
        j->row_id = 0;
        return registry_session_open(rec->reg, j->site_id, j->addr, j->agent, j->at, &j->row_id);
    case JOB_SESS_CLOSE:
        id = row_of(rec, batch, j, j->key);
        if (id == 0)
            return -ENOENT; /* its open was dropped or failed */
        return registry_session_close(rec->reg, id, j->at, j->reason, j->bytes_in, j->bytes_out);
    case JOB_SITE_SEEN:
        return registry_site_seen(rec->reg, j->site_id, j->at, j->agent, j->services, j->addr);
    }
    return -EINVAL;
}

/* The sites whose rows batch writes (opens reference theirs, seens update
 * them) are taken first: see registry__lock_sites. A job's own transaction
 * needs no such step, as it touches one site's rows in that order. */
static int lock_sites(struct recorder *rec, const struct job *batch)
{
    int64_t ids[RECORDER_BATCH];
    size_t n = 0;

    for (const struct job *j = batch; j != NULL && n < RECORDER_BATCH; j = j->next)
        if (j->kind == JOB_SESS_OPEN || j->kind == JOB_SITE_SEEN)
            ids[n++] = j->site_id;
    return registry__lock_sites(rec->reg, ids, n);
}

/* Writes batch (n jobs) in one transaction; when anything in it fails, rolls
 * it back and writes each job in its own, so that one refused record (a site
 * removed meanwhile) costs no other. Returns the jobs that failed. */
static uint64_t write_batch(struct recorder *rec, struct job *batch, uint64_t *batches)
{
    uint64_t failed = 0;
    struct job *j;
    int rc;

    rc = registry__tx_begin(rec->reg);
    if (rc == 0)
        rc = lock_sites(rec, batch);
    for (j = batch; rc == 0 && j != NULL; j = j->next)
        rc = run_job(rec, batch, j);
    if (rc == 0)
        rc = registry__tx_commit(rec->reg);
    if (rc == 0) {
        (*batches)++;
        return 0;
    }
    registry__tx_rollback(rec->reg);
    for (j = batch; j != NULL; j = j->next)
        j->row_id = 0;
    for (j = batch; j != NULL; j = j->next) {
        rc = registry__tx_begin(rec->reg);
        if (rc == 0)
            rc = registry__tx_end(rec->reg, run_job(rec, batch, j));
        if (rc != 0) {
            failed++;
            if (j->kind == JOB_SESS_OPEN)
                j->row_id = 0;
            j->error = rc;
        } else {
            (*batches)++;
        }
    }
    return failed;
}

/* Under mu, with jobs queued: waits up to RECORDER_LINGER_MS for more, so
 * that a burst of connects shares one transaction, unless the batch is full,
 * a flush waits, or the recorder stops. */
static void linger(struct recorder *rec)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += RECORDER_LINGER_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    while (rec->depth < RECORDER_BATCH && !rec->stopping && rec->hurry_seq <= rec->done_seq)
        if (pthread_cond_timedwait(&rec->wake, &rec->mu, &until) != 0)
            break;
}

static void *writer_main(void *arg)
{
    struct recorder *rec = arg;
    struct job *batch, *j, *last;
    uint64_t failed, batches, n;

    pthread_mutex_lock(&rec->mu);
    for (;;) {
        rec->idle = 1;
        while (rec->head == NULL && !rec->stopping)
            pthread_cond_wait(&rec->wake, &rec->mu);
        rec->idle = 0;
        if (rec->head == NULL)
            break; /* stopping, and everything is written */
        linger(rec);
        batch = last = rec->head;
        for (n = 1; n < RECORDER_BATCH && last->next != NULL; n++)
            last = last->next;
        rec->head = last->next;
        if (rec->head == NULL)
            rec->tail = NULL;
        last->next = NULL;
        rec->depth -= n;
        pthread_mutex_unlock(&rec->mu);

        batches = 0;
        failed = write_batch(rec, batch, &batches);

        pthread_mutex_lock(&rec->mu);
        for (j = batch; j != NULL; j = j->next) {
            /* Out of memory the session stays unknown to the loop's reads
             * (not live in the API); its row is written all the same. */
            if (j->kind == JOB_SESS_OPEN && j->row_id != 0)
                (void)map_put(&rec->map, j->key, j->row_id);
            else if (j->kind == JOB_SESS_CLOSE)
                map_del(&rec->map, j->key);
        }
        rec->done_seq = last->seq;
        rec->st.written += n - failed;
        rec->st.failed += failed;
        rec->st.batches += batches;
        for (j = batch; failed > 0 && j != NULL; j = j->next)
            if (j->error != 0) {
                rec->st.last_failed_op = job_op(j->kind);
                rec->st.last_error = j->error;
            }
        registry_commit_latency(rec->reg, &rec->commits);
        pthread_cond_broadcast(&rec->done);
        pthread_mutex_unlock(&rec->mu);
        while (batch != NULL) {
            j = batch->next;
            job_free(batch);
            batch = j;
        }
        pthread_mutex_lock(&rec->mu);
    }
    pthread_mutex_unlock(&rec->mu);
    return NULL;
}

int recorder_open(const char *where, struct recorder **out, char *err, size_t err_cap)
{
    struct recorder *rec = NULL;
    pthread_condattr_t ca;
    sigset_t all, old;
    int rc = -ENOMEM, sync = 0;

    *out = NULL;
    if (err && err_cap)
        err[0] = '\0';
    rec = calloc(1, sizeof(*rec));
    if (rec == NULL)
        goto out;
    rc = registry_open(where, &rec->reg, err, err_cap);
    if (rc != 0)
        goto out;
    registry_commit_latency(rec->reg, &rec->commits);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&rec->mu, NULL);
    pthread_cond_init(&rec->wake, &ca);
    pthread_cond_init(&rec->done, &ca);
    pthread_condattr_destroy(&ca);
    sync = 1;
    /* Signals are the loop's (libuv's handlers): none lands on the writer. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&rec->thread, NULL, writer_main, rec);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        if (err && err_cap)
            snprintf(err, err_cap, "cannot start the registry writer thread: %s", strerror(-rc));
        goto out;
    }
    *out = rec;
    rec = NULL;
out:
    if (rec != NULL) {
        if (sync) {
            pthread_cond_destroy(&rec->wake);
            pthread_cond_destroy(&rec->done);
            pthread_mutex_destroy(&rec->mu);
        }
        registry_close(rec->reg);
        free(rec);
    }
    return rc;
}

void recorder_close(struct recorder *rec)
{
    if (rec == NULL)
        return;
    pthread_mutex_lock(&rec->mu);
    rec->stopping = 1;
    pthread_cond_signal(&rec->wake);
    pthread_mutex_unlock(&rec->mu);
    pthread_join(rec->thread, NULL);
    registry_close(rec->reg);
    pthread_cond_destroy(&rec->wake);
    pthread_cond_destroy(&rec->done);
    pthread_mutex_destroy(&rec->mu);
    free(rec->map.keys);
    free(rec->map.ids);
    free(rec);
}

int recorder_flush(struct recorder *rec, unsigned timeout_ms)
{
    struct timespec until;
    int rc = 0;
    uint64_t target;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&rec->mu);
    target = rec->seq;
    if (rec->done_seq < target) {
        if (rec->hurry_seq < target)
            rec->hurry_seq = target;
        pthread_cond_signal(&rec->wake);
    }
    while (rc == 0 && rec->done_seq < target)
        rc = pthread_cond_timedwait(&rec->done, &rec->mu, &until);
    if (rec->done_seq >= target)
        rc = 0;
    pthread_mutex_unlock(&rec->mu);
    return rc == 0 ? 0 : -ETIMEDOUT;
}

int64_t recorder_session_id(struct recorder *rec, uint64_t key)
{
    int64_t id;

    pthread_mutex_lock(&rec->mu);
    id = map_get(&rec->map, key);
    pthread_mutex_unlock(&rec->mu);
    return id;
}

void recorder_get_stats(struct recorder *rec, struct recorder_stats *out)
{
    pthread_mutex_lock(&rec->mu);
    *out = rec->st;
    out->depth = rec->depth;
    pthread_mutex_unlock(&rec->mu);
}

void recorder_commit_latency(struct recorder *rec, struct hist *out)
{
    pthread_mutex_lock(&rec->mu);
    *out = rec->commits;
    pthread_mutex_unlock(&rec->mu);
}
