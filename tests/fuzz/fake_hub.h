/* Fuzzing the hub's user front end: a real hub (SQLite registry in a temporary directory, query
 * engine, API router) whose user connections are fake conns writing their output to a buffer. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_FAKE_HUB_H
#define TETHER_FAKE_HUB_H

#include <assert.h>
#include <errno.h>
#include <http_parser.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/conn.h"
#include "common/log.h"
#include "common/token.h"
#include "hub/api/api.h"
#include "hub/core/hub.h"
#include "hub/query/query.h"
#include "hub/store/db_sqlite.h"
#include "hub/store/registry.h"
#include "hub/http/user.h"
#include "hub/core/ipcount.h"

/* A fixed admin bearer token: the seeds and dictionaries carry it, so the
 * fuzzer reaches what lies behind authentication. */
#define FAKE_ADMIN_TOKEN "tth_ZnV6ei1hZG1pbi1mdXp6LWFkbWluLWZ1enotYWRtaW4"
/* Executions between two resets of the registry to its first state, so the
 * sites and tokens inputs create do not pile up. */
#define FAKE_RESET_EVERY 1000

static struct hub fake_hub;
static unsigned fake_runs;

/* Sites the seeds talk about exist, so inputs reach past "no such site". */
static void fake_hub_sites(void)
{
    if (registry_site_create(fake_hub.reg, "edge-1", "{\"env\":\"prod\",\"zone\":\"a\"}",
                             hub_now()) != 0 ||
        registry_site_create(fake_hub.reg, "edge-2", "{}", hub_now()) != 0)
        abort();
}

/* Everything an input may have created goes; the admin token stays. */
static void fake_hub_reset(void)
{
    sqlite3 *db = registry_sqlite_db(fake_hub.reg);
    static const char sql[] =
        "DELETE FROM query_results; DELETE FROM queries; DELETE FROM sessions;"
        "DELETE FROM enroll_tokens; DELETE FROM audit; DELETE FROM sites;"
        "DELETE FROM api_tokens WHERE name <> 'fuzz-admin';";
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        abort();
    fake_hub.gen++;
    fake_hub_sites();
}

static char fake_dir[64], fake_db[128];

/* At exit: the registry and its WAL files go with the process. */
static void fake_hub_cleanup(void)
{
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
    char p[160];

    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", fake_db, ext[i]);
        unlink(p);
    }
    rmdir(fake_dir);
}

static void fake_hub_init(void)
{
    char err[256], hash[65];

    if (fake_hub.reg != NULL)
        return;
    /* The registry on tmpfs where there is one: millions of small writes. */
    snprintf(fake_dir, sizeof(fake_dir), "%s/tether-fuzz-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(fake_dir) == NULL)
        abort();
    snprintf(fake_db, sizeof(fake_db), "%s/hub.db", fake_dir);
    atexit(fake_hub_cleanup);
    log_set_level(LOG_ERROR);
    fake_hub.loop = uv_default_loop();
    conn_ctx_init(&fake_hub.conns, fake_hub.loop);
    fake_hub.dispatch = api_dispatch;
    snprintf(fake_hub.state_dir, sizeof(fake_hub.state_dir), "%s", fake_dir);
    snprintf(fake_hub.cfg.name, sizeof(fake_hub.cfg.name), "hub.example");
    snprintf(fake_hub.cfg.public_eps[0], sizeof(fake_hub.cfg.public_eps[0]), "hub.example:6443");
    fake_hub.cfg.n_public = 1;
    fake_hub.cfg.ping_interval_ms = 20000;
    fake_hub.cfg.handshake_timeout_ms = 10000;
    fake_hub.cfg.request_timeout_ms = 60000;
    fake_hub.cfg.drain_grace_ms = 10000;
    fake_hub.cfg.enroll_ttl_s = 86400;
    fake_hub.cfg.api_body_max = 1u << 20;
    fake_hub.cfg.query_body_max = 1u << 20;
    fake_hub.cfg.max_pending_handshakes_per_ip = 64;
    fake_hub.cfg.max_user_conns_per_ip = 64;
    if (registry_open(fake_db, &fake_hub.reg, err, sizeof(err)) != 0)
        abort();
    sqlite3_exec(registry_sqlite_db(fake_hub.reg), "PRAGMA synchronous=OFF", NULL, NULL, NULL);
    if (crypto_identity_generate("hub.example", NULL, 0, &fake_hub.id) != 0)
        abort();
    if (token_hash_hex(FAKE_ADMIN_TOKEN, strlen(FAKE_ADMIN_TOKEN), hash) != 0 ||
        registry_apitoken_create(fake_hub.reg, "fuzz-admin", "admin", NULL, hash, 0, hub_now()) !=
            0)
        abort();
    fake_hub_sites();
    if (query_init(&fake_hub) != 0)
        abort();
    fake_hub.started_ms = uv_now(fake_hub.loop);
}

/* Lets the loop run what is due now (timers at 0 ms, closes), a few rounds. */
static void fake_hub_spin(void)
{
    for (int i = 0; i < 4; i++)
        uv_run(fake_hub.loop, UV_RUN_NOWAIT);
}

/* Feeds a user connection (alpn "h2" or "http/1.1", as the TLS handshake
 * chose) the bytes in[0..len) in pieces of `piece` bytes, letting the loop run
 * between pieces, then closes it and lets it be freed. out receives
 * everything the hub wrote. */
static void fake_hub_session_alpn(const char *alpn, const uint8_t *in, size_t len, size_t piece,
                                  struct buf *out)
{
    struct conn_sink sink;
    struct conn *c;
    size_t off = 0;

    fake_hub_init();
    if (++fake_runs % FAKE_RESET_EVERY == 0)
        fake_hub_reset();
    memset(&sink, 0, sizeof(sink));
    buf_init(&sink.out);
    c = conn_new_fake(&fake_hub.conns, &sink, "192.0.2.7:40000");
    if (c == NULL)
        abort();
    /* user_attach takes over the connection's count, as from the listener. */
    if (hub_users_inc(&fake_hub, c->peer) != 0 || user_attach(&fake_hub, c, alpn) != 0)
        abort();
    assert(piece > 0);
    /* c is freed from the loop once closed: sink.closed says so. */
    while (off < len && !sink.closed) {
        size_t n = len - off < piece ? len - off : piece;
        if (!c->closing)
            conn_fake_feed(c, in + off, n);
        off += n;
        fake_hub_spin();
    }
    if (!sink.closed && !c->closing)
        conn_close(c, "fuzz input done");
    for (int i = 0; i < 100 && !sink.closed; i++)
        fake_hub_spin();
    if (!sink.closed)
        abort();
    /* TETHER_FUZZ_SHOW=1: what the hub answered, to see what a seed reaches. */
    if (getenv("TETHER_FUZZ_SHOW") != NULL)
        fprintf(stderr, "--- hub wrote (closed: %s):\n%.*s\n---\n", sink.reason, (int)sink.out.len,
                (const char *)buf_head(&sink.out));
    *out = sink.out;
}

static inline void fake_hub_session(const uint8_t *in, size_t len, size_t piece, struct buf *out)
{
    fake_hub_session_alpn("http/1.1", in, len, piece, out);
}

/* --- checking what the hub answered --- */

struct resp_check {
    int n_final;                /* final (>= 200) responses */
    int last_status;            /* of the last response begun */
    int n_500;                  /* 500 answers */
    const char *const *methods; /* request methods in order, to know HEAD answers */
    size_t n_methods;
    int n_heads;    /* responses begun (heads complete) */
    int n_complete; /* responses complete */
    struct buf body;
};

static int rc_headers_complete(http_parser *p)
{
    struct resp_check *rc = p->data;
    int status = (int)p->status_code;
    int head = 0;

    if (status < 100 || status > 599)
        abort();
    rc->n_heads++;
    rc->last_status = status;
    if (status == 500)
        rc->n_500++;
    if (status >= 200) {
        if ((size_t)rc->n_final < rc->n_methods && strcmp(rc->methods[rc->n_final], "HEAD") == 0)
            head = 1;
        rc->n_final++;
    }
    buf_free(&rc->body);
    /* 1: no body follows (the answer to a HEAD). */
    return head;
}

static int rc_complete(http_parser *p)
{
    ((struct resp_check *)p->data)->n_complete++;
    return 0;
}

static int rc_body(http_parser *p, const char *at, size_t len)
{
    struct resp_check *rc = p->data;
    return buf_append(&rc->body, at, len) ? -1 : 0;
}

/* Parses the hub's output as HTTP/1.1 responses: every byte belongs to a
 * well-formed response (status line, headers, exact framing). Returns the
 * number of final responses. The hub closes after the last response unless
 * it keeps the connection. */
static inline int check_responses(const struct buf *out, const char *const *methods,
                                  size_t n_methods, struct resp_check *rc)
{
    http_parser p;
    http_parser_settings s;
    size_t n, off = 0;

    memset(&s, 0, sizeof(s));
    s.on_headers_complete = rc_headers_complete;
    s.on_body = rc_body;
    s.on_message_complete = rc_complete;
    memset(rc, 0, sizeof(*rc));
    buf_init(&rc->body);
    rc->methods = methods;
    rc->n_methods = n_methods;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = rc;
    while (off < out->len) {
        n = http_parser_execute(&p, &s, (const char *)buf_head(out) + off, out->len - off);
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK) {
            fprintf(stderr, "fuzz: hub output is not HTTP/1.1: %s at byte %zu\n",
                    http_errno_description(HTTP_PARSER_ERRNO(&p)), off + n);
            abort();
        }
        off += n;
    }
    /* The connection ends here: no response may be cut short, but for a
     * chunked one still streaming (an event stream) when the client left. */
    if (rc->n_heads == rc->n_complete + 1 && (p.flags & F_CHUNKED))
        return rc->n_final;
    http_parser_execute(&p, &s, NULL, 0);
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || rc->n_heads != rc->n_complete) {
        fprintf(stderr, "fuzz: the hub's last response was cut short\n");
        abort();
    }
    return rc->n_final;
}

#endif
