/* Unit test of the hub listener: every calloc from accept to a user or tunnel fails once, real TLS.
 */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/conn.h"
#include "common/crypto.h"
#include "common/tls.h"
#include "hub/auth/auth.h"
#include "hub/core/hub.h"
#include "hub/core/ipcount.h"
#include "hub/net/listen.h"
#include "hub/store/registry.h"
#include "testutil.h"

/* Linked with -Wl,--wrap=calloc: every calloc of the hub and common code
 * comes here. fail_in > 0 makes the fail_in-th call from now return NULL. */
void *__real_calloc(size_t n, size_t size);
static long fail_in;
static long injected;

void *__wrap_calloc(size_t n, size_t size)
{
    if (fail_in > 0 && --fail_in == 0) {
        injected++;
        return NULL;
    }
    return __real_calloc(n, size);
}

struct client {
    struct conn *c;
    uv_connect_t req;
    struct tls_pin_verifier v;
    int done, handshakes;
};

static WOLFSSL_CTX *cli_ctx;  /* users: no certificate */
static WOLFSSL_CTX *site_ctx; /* tunnels: the site's key */
static WOLFSSL_CTX *use_ctx;
static const char *cli_alpn;

static int any_pin(void *arg, const char *pin)
{
    return 0;
}

static void cli_handshake(struct conn *c)
{
    struct client *cl = c->owner;
    cl->handshakes++;
    conn_close_after_flush(c, "client done");
}

static int cli_data(struct conn *c, const uint8_t *data, size_t len)
{
    return 0;
}

static void cli_close(struct conn *c, const char *reason)
{
    struct client *cl = c->owner;
    cl->done = 1;
}

static const struct conn_ops cli_ops = {
    .on_handshake = cli_handshake,
    .on_data = cli_data,
    .on_close = cli_close,
};

static void cli_connected(uv_connect_t *req, int status)
{
    struct client *cl = req->data;

    if (status < 0 || conn_start(cl->c, 5000) != 0) {
        conn_close(cl->c, "connect failed");
        return;
    }
    cl->v.check = any_pin;
    if (conn_start_tls(cl->c, use_ctx, "127.0.0.1", cli_alpn, 0, &cl->v) != 0)
        conn_close(cl->c, "tls start failed");
}

static int pending_total(const struct hub *h)
{
    int n = 0;
    for (size_t i = 0; i < sizeof(h->pending) / sizeof(h->pending[0]); i++)
        n += h->pending[i].count;
    return n;
}

/* One connection from a client conn on the same loop; returns the number
 * of completed client handshakes (0 or 1). */
static int one_connection(struct hub *h, const struct sockaddr *addr)
{
    struct client cl;
    memset(&cl, 0, sizeof(cl));
    cl.c = conn_new(&h->conns, &cli_ops, &cl); /* counted with the hub's */
    if (cl.c == NULL)
        return 0; /* the injected failure hit the client: nothing to do */
    cl.req.data = &cl;
    if (uv_tcp_connect(&cl.req, &cl.c->tcp, addr, cli_connected) != 0) {
        conn_close(cl.c, "connect failed");
    }
    while (!cl.done)
        uv_run(h->loop, UV_RUN_ONCE);
    /* The hub's side goes away once it saw the client's close. */
    for (int i = 0; i < 2000 && (pending_total(h) != 0 || conn_live(&h->conns) != 0); i++)
        uv_run(h->loop, UV_RUN_NOWAIT), usleep(1000);
    CHECK_EQ_INT(pending_total(h), 0);
    CHECK_EQ_INT(conn_live(&h->conns), 0);
    return cl.handshakes;
}

static void run_torture(struct hub *h, const struct sockaddr *addr, const char *alpn)
{
    long n;
    int ok = 0;

    cli_alpn = alpn;
    use_ctx = strcmp(alpn, "tether/1") == 0 ? site_ctx : cli_ctx;
    for (n = 1; n < 200; n++) {
        long before = injected;
        fail_in = n;
        ok = one_connection(h, addr);
        if (injected == before)
            break; /* no calloc left to fail: the whole path ran */
    }
    fail_in = 0;
    fprintf(stderr, "alpn %s: %ld failure points\n", alpn, n - 1);
    CHECK(n > 3); /* hs, conn and the user layer at least */
    CHECK(n < 200);
    CHECK_EQ_INT(ok, 1);
    CHECK_EQ_INT(hub_users_count(h, "127.0.0.1:1"), 0);
    CHECK_EQ_INT(h->tunnels.count, 0);
    CHECK_EQ_INT(h->tunnels.n_standby, 0);
    CHECK_EQ_INT(h->lst.n_waiters, 0);
    CHECK_EQ_INT(h->lst.n_probation, 0);
    /* /metrics' gauges are back at 0 whatever failed, and the last run,
     * which failed nothing, counts as accepted. */
    for (int k = 0; k < STATS_CONN_NKINDS; k++)
        CHECK_EQ_INT(h->n_conns[k], 0);
    CHECK(h->n_handshakes[strcmp(alpn, "tether/1") == 0 ? STATS_HS_TUNNEL : STATS_HS_USER]
                         [STATS_HS_ACCEPTED] >= 1);
}

/* n user connections started at once, client i from 127.1.x.y number
 * i % n_src, with cap pending handshakes per address: those over the cap
 * wait in their address's queue, those over a loop turn's share (32) or
 * whose address finds none of the 256 slots free wait in `queued`, no turn
 * starts more than its share, and every one gets through in turn. Returns
 * how many waited at most at once; *queued: whether `queued` was used. */
static size_t run_crowd(struct hub *h, const struct sockaddr *addr, int n, int n_src, int cap,
                        int *queued)
{
    struct client *cl = calloc((size_t)n, sizeof(*cl));
    size_t most = 0;
    int done = 0, handshakes = 0;

    *queued = 0;
    CHECK(cl != NULL);
    if (cl == NULL)
        return 0;
    cli_alpn = "http/1.1";
    use_ctx = cli_ctx;
    h->cfg.max_pending_handshakes_per_ip = cap;
    for (int i = 0; i < n; i++) {
        struct sockaddr_in src;
        char ip[32];
        int k = i % n_src;

        cl[i].c = conn_new(&h->conns, &cli_ops, &cl[i]);
        CHECK(cl[i].c != NULL);
        if (cl[i].c == NULL)
            return 0;
        snprintf(ip, sizeof(ip), "127.1.%d.%d", k / 250, k % 250 + 1);
        CHECK_EQ_INT(uv_ip4_addr(ip, 0, &src), 0);
        CHECK_EQ_INT(uv_tcp_bind(&cl[i].c->tcp, (const struct sockaddr *)&src, 0), 0);
        cl[i].req.data = &cl[i];
        CHECK_EQ_INT(uv_tcp_connect(&cl[i].req, &cl[i].c->tcp, addr, cli_connected), 0);
    }
    while (done < n) {
        uv_run(h->loop, UV_RUN_ONCE);
        if (h->lst.n_waiters > most)
            most = h->lst.n_waiters;
        if (!TAILQ_EMPTY(&h->lst.queued))
            *queued = 1;
        CHECK(h->lst.turn_started <= 32);
        done = 0;
        for (int i = 0; i < n; i++)
            done += cl[i].done;
    }
    for (int i = 0; i < n; i++)
        handshakes += cl[i].handshakes;
    CHECK_EQ_INT(handshakes, n);
    for (int i = 0; i < 2000 && (pending_total(h) != 0 || conn_live(&h->conns) != 0); i++)
        uv_run(h->loop, UV_RUN_NOWAIT), usleep(1000);
    CHECK_EQ_INT(pending_total(h), 0);
    CHECK_EQ_INT(conn_live(&h->conns), 0);
    CHECK_EQ_INT(h->lst.n_waiters, 0);
    h->cfg.max_pending_handshakes_per_ip = 64;
    free(cl);
    return most;
}

/* A registry in a new directory with site "s1" active under pin. */
static struct registry *registry_with_site(char *dir, const char *pin)
{
    struct registry *reg = NULL;
    char path[512], err[256], name[TOKEN_NAME_MAX + 1];
    char hash[65];
    int64_t now = hub_now();

    memset(hash, 'a', 64);
    hash[64] = '\0';
    snprintf(path, sizeof(path), "%s/hub.db", dir);
    CHECK_EQ_INT(registry_open(path, &reg, err, sizeof(err)), 0);
    if (reg == NULL)
        return NULL;
    CHECK_EQ_INT(registry_site_create(reg, "s1", NULL, now), 0);
    CHECK_EQ_INT(registry_enroll_create(reg, "s1", hash, now + 1000, now, NULL), 0);
    CHECK_EQ_INT(registry_enroll_redeem(reg, hash, pin, now, name), 0);
    return reg;
}

int main(void)
{
    struct hub *h = calloc(1, sizeof(*h));
    struct crypto_identity id, site_id;
    char dir[] = "/tmp/tether-test-listen-XXXXXX", path[600];
    const char *names[] = {"127.0.0.1"};
    struct sockaddr_in sa;
    int len = sizeof(sa);
    char err[256] = "", addr[64];

    CHECK(wolfSSL_Init() == WOLFSSL_SUCCESS);
    CHECK_EQ_INT(crypto_identity_generate("hub-test", names, 1, &id), 0);
    h->loop = uv_default_loop();
    conn_ctx_init(&h->conns, h->loop);
    h->cfg.handshake_timeout_ms = 5000;
    h->cfg.request_head_timeout_ms = 5000;
    h->cfg.idle_timeout_ms = 5000;
    h->cfg.request_body_timeout_ms = 5000;
    h->cfg.max_pending_handshakes_per_ip = 64;
    h->cfg.max_user_conns_per_ip = 64;
    h->cfg.fd_reserve = 16;
    CHECK_EQ_INT(tls_ctx_user_server(&id, (WOLFSSL_CTX **)&h->user_ctx), 0);
    CHECK_EQ_INT(tls_ctx_tunnel_server(&id, (WOLFSSL_CTX **)&h->tunnel_ctx), 0);
    CHECK_EQ_INT(tls_ctx_client(NULL, &cli_ctx), 0);
    CHECK_EQ_INT(crypto_identity_generate("s1", NULL, 0, &site_id), 0);
    CHECK_EQ_INT(tls_ctx_client(&site_id, &site_ctx), 0);
    CHECK(mkdtemp(dir) != NULL);
    h->reg = registry_with_site(dir, site_id.pin);
    h->cfg.ping_interval_ms = 60000;
    /* hub_listen wants a real port: take one the kernel picks. */
    {
        int port = 0, fd = tu_loopback_socket(&port, -1);
        CHECK(fd >= 0);
        close(fd);
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    }
    CHECK_EQ_INT(hub_listen(h, addr, err, sizeof(err)), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&h->listeners[0], (struct sockaddr *)&sa, &len), 0);

    run_torture(h, (const struct sockaddr *)&sa, "http/1.1");
    run_torture(h, (const struct sockaddr *)&sa, "h2");
    if (h->reg != NULL) {
        run_torture(h, (const struct sockaddr *)&sa, "tether/1");
        /* Out of memory in tunnel_attach is a refusal of its own kind. */
        CHECK(h->n_handshakes[STATS_HS_TUNNEL][STATS_HS_OUT_OF_MEMORY] >= 1);
    }

    /* The waiting queues: 40 from one address over a cap of 2, then 300
     * addresses, one handshake each, more than the 256 slots and than a
     * turn's share. */
    {
        int queued;
        CHECK(run_crowd(h, (const struct sockaddr *)&sa, 40, 1, 2, &queued) > 0);
        CHECK(run_crowd(h, (const struct sockaddr *)&sa, 300, 300, 1, &queued) > 0);
        CHECK_EQ_INT(queued, 1);
    }

    hub_listen_stop(h);
    conn_close_all(&h->conns, "test done");
    uv_run(h->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(h->loop), 0);
    hub_listen_free(h);
    auth_cache_free(h);
    hub_users_free(h);
    stats_sites_free(h);
    wolfSSL_CTX_free(cli_ctx);
    wolfSSL_CTX_free(site_ctx);
    crypto_identity_free(&site_id);
    free(h->tunnels.buckets);
    if (h->reg != NULL)
        registry_close(h->reg);
    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    CHECK_EQ_INT(system(path), 0);
    wolfSSL_CTX_free(h->user_ctx);
    wolfSSL_CTX_free(h->tunnel_ctx);
    crypto_identity_free(&id);
    free(h);
    wolfSSL_Cleanup();
    TEST_DONE();
}
