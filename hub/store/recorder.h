/* Write-behind records of the registry: sessions and "site seen", written in batches on a thread.
 */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_RECORDER_H
#define TETHER_RECORDER_H

/* The event loop must not wait for a commit (an fsync on SQLite, a round
 * trip on PostgreSQL) at every connect, hello and disconnect of a site.
 * These writes are records, not decisions: the loop queues them with copied
 * arguments and goes on; one writer thread, on its own registry connection,
 * takes everything queued (at most RECORDER_BATCH jobs) and writes it in one
 * transaction, in the order it was queued.
 *
 * Sessions are known to the loop by a key it assigns itself (never by the
 * database's row id, which would have to come back to the loop); the writer
 * maps keys of open sessions to their row ids.
 *
 * Threads: every recorder_* call but the writer's own work is made from one
 * thread (the loop). The recorder owns its registry connection and the
 * copies of every argument. */

#include <stddef.h>
#include <stdint.h>

#include "../../common/hist.h"

/* Jobs written in one transaction at most. */
#define RECORDER_BATCH 512
/* A writer woken by a first job waits this long for more before it writes
 * (unless a flush waits): a burst of connects shares one transaction, and
 * one commit (one fsync) costs the hub less than one per record. */
#define RECORDER_LINGER_MS 5
/* Jobs that may wait at most: about five per site for 19,000 sites
 * reconnecting at once. Beyond it a record is dropped and counted
 * (docs/decisions.md): the loop never waits for a stalled database. */
#define RECORDER_QUEUE_MAX 100000

struct recorder;

/* Counters since the recorder started (copied under its lock). */
struct recorder_stats {
    uint64_t queued;  /* jobs accepted */
    uint64_t written; /* jobs committed */
    uint64_t failed;  /* jobs the database refused (e.g. a site removed meanwhile, disk full) */
    uint64_t dropped; /* jobs refused at the queue: full, or out of memory */
    uint64_t batches; /* transactions committed */
    uint64_t depth;   /* jobs waiting now */
    /* The last job the database refused: what it was ("open", "close",
     * "seen"; a static string, NULL before any failure) and its error. */
    const char *last_failed_op;
    int last_error;
};

/* Opens its own connection to the registry at where (a file or a
 * postgresql:// URL, as registry_open) and starts the writer thread. On
 * failure *err (if non-NULL) gets a one-line message. */
int recorder_open(const char *where, struct recorder **out, char *err, size_t err_cap);
/* Sessions the writer opens from now on are this hub's (registry_use_hub).
 * Call it before queuing the first job. */
void recorder_use_hub(struct recorder *rec, int64_t hub_id);
/* Writes everything queued, stops the thread and closes its connection.
 * NULL is a no-op. */
void recorder_close(struct recorder *rec);

/* Queue a session opened now (key_out: the session's key, never 0) /
 * closed. Strings are copied (cut as the registry cuts them). 0, or
 * -ENOBUFS queue full / -ENOMEM: the record is dropped and counted, and
 * *key_out is 0. A close of key 0 is a no-op. */
int recorder_session_open(struct recorder *rec, int64_t site_id, const char *remote_addr,
                          const char *agent_version, int64_t now, uint64_t *key_out);
int recorder_session_close(struct recorder *rec, uint64_t key, int64_t now, const char *reason,
                           int64_t bytes_in, int64_t bytes_out);
/* registry_site_seen(), queued; NULL arguments are left unchanged. */
int recorder_site_seen(struct recorder *rec, int64_t site_id, int64_t last_seen,
                       const char *agent_version, const char *services_json,
                       const char *remote_addr);

/* Waits until every job queued before the call is written (or failed), at
 * most timeout_ms: for a read that must see them. 0, or -ETIMEDOUT. */
int recorder_flush(struct recorder *rec, unsigned timeout_ms);
/* The registry's row id of the open session of this key, 0 when it is not
 * written (yet), failed, or closed. */
int64_t recorder_session_id(struct recorder *rec, uint64_t key);
void recorder_get_stats(struct recorder *rec, struct recorder_stats *out);
/* registry_commit_latency() of the writer's connection, as of its last
 * batch. */
void recorder_commit_latency(struct recorder *rec, struct hist *out);

#endif
