/* Two hubs in one process on one loop, each with its own state, registry and port: they share
 * nothing. */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* memmem */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/conn.h"
#include "common/crypto.h"
#include "common/httpc.h"
#include "common/log.h"
#include "common/net.h"
#include "common/tls.h"
#include "common/tlsfd.h"
#include "common/token.h"
#include "hub/core/hub.h"
#include "hub/daemon.h"
#include "hub/settings.h"
#include "hub/store/registry.h"
#include "testutil.h"

struct one_hub {
    char dir[64];
    char listen[64];
    char admin[TOKEN_API_LEN + 1];
    char pin[CRYPTO_PIN_LEN + 1];
    int port;
    struct hub *h;
};

static struct one_hub hubs[2];
static uv_loop_t loop;
static uv_async_t stop_a, finish;
static int client_failed_to_start;

/* A state as `tether-hub init` leaves it: key and certificate, a registry
 * with one admin token, and hub.conf. */
static void make_state(struct one_hub *o, const char *name)
{
    const char *sans[] = {"127.0.0.1"};
    char db[128], conf[128], hash[65], eps[1][TOKEN_ENDPOINT_MAX + 1];
    struct crypto_identity id = {0};
    struct registry *reg = NULL;
    char err[256] = "";

    snprintf(o->dir, sizeof(o->dir), "/tmp/tether-two-hubs-XXXXXX");
    CHECK(mkdtemp(o->dir) != NULL);
    CHECK_EQ_INT(crypto_identity_generate(name, sans, 1, &id), 0);
    CHECK_EQ_INT(crypto_identity_save(&id, o->dir, "hub"), 0);
    snprintf(o->pin, sizeof(o->pin), "%s", id.pin);
    crypto_identity_free(&id);
    snprintf(db, sizeof(db), "%s/hub.db", o->dir);
    CHECK_EQ_INT(registry_open(db, &reg, err, sizeof(err)), 0);
    CHECK_EQ_INT(token_api_generate(o->admin), 0);
    CHECK_EQ_INT(token_hash_hex(o->admin, strlen(o->admin), hash), 0);
    CHECK_EQ_INT(registry_apitoken_create(reg, "admin", "admin", NULL, hash, 0, hub_now()), 0);
    registry_close(reg);
    snprintf(conf, sizeof(conf), "%s/hub.conf", o->dir);
    snprintf(eps[0], sizeof(eps[0]), "%s:6443", name);
    CHECK_EQ_INT(settings_write_conf(conf, name, eps, 1, NULL), 0);
}

/* A loopback port nobody listens on now (a later bind may still lose it to
 * another process: the caller retries). */
static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int start_hub(struct one_hub *o)
{
    char err[512] = "";
    int rc = -EADDRINUSE;

    for (int attempt = 0; attempt < 5 && rc != 0; attempt++) {
        struct daemon_opts opts = {.program = 0};

        if (o->h != NULL) { /* the port was taken between free_port and bind */
            daemon_stop(o->h, NULL);
            uv_run(&loop, UV_RUN_NOWAIT);
            daemon_free(o->h);
            o->h = NULL;
        }
        snprintf(o->listen, sizeof(o->listen), "127.0.0.1:%d", free_port());
        opts.cli.state = o->dir;
        opts.cli.listen[0] = o->listen;
        opts.cli.n_listen = 1;
        rc = daemon_start(&loop, &opts, &o->h, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "daemon_start: %s\n", err);
    }
    CHECK_EQ_INT(rc, 0);
    if (rc == 0)
        o->port = daemon_port(o->h, 0);
    return rc;
}

/* One request from the client thread; the status, or -1 when the request
 * failed (body, if asked, gets the response body, malloc'ed). */
static int request(const struct one_hub *o, const char *pin, const char *method, const char *path,
                   const char *bearer, const char *body, char **out)
{
    struct httpc_target t;
    struct httpc_response r = {0};
    char err[256] = "";
    int status;

    memset(&t, 0, sizeof(t));
    snprintf(t.host, sizeof(t.host), "127.0.0.1");
    t.port = o->port;
    snprintf(t.pin, sizeof(t.pin), "%s", pin);
    t.timeout_ms = 10000;
    if (httpc_request(&t, method, path, bearer, body ? "application/json" : NULL, body,
                      body ? strlen(body) : 0, &r, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s %s on :%d: %s\n", method, path, o->port, err);
        return -1;
    }
    status = r.status;
    if (out != NULL) {
        *out = r.body;
        r.body = NULL;
    }
    httpc_response_free(&r);
    return status;
}

/* A user connection that stays open (HTTP/1.1 keep-alive) across steps. */
struct kept {
    int fd;
    WOLFSSL_CTX *ctx;
    struct tls_conn t;
    int tls_on;
    struct tls_pin_verifier v;
};

static int pin_is(void *arg, const char *pin)
{
    return strcmp(arg, pin) == 0 ? 0 : -EPERM;
}

static int kept_open(struct kept *k, const struct one_hub *o)
{
    struct sockaddr_in sa;
    int64_t deadline = net_now_ms() + 10000;

    memset(k, 0, sizeof(*k));
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (k->fd < 0 || connect(k->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        fcntl(k->fd, F_SETFL, O_NONBLOCK) != 0 || tls_ctx_client(NULL, &k->ctx) != 0 ||
        tls_conn_init(&k->t, k->ctx, NULL, "http/1.1", 0) != 0)
        return -1;
    k->tls_on = 1;
    k->v.check = pin_is;
    k->v.arg = (void *)o->pin;
    tls_attach_verifier(k->t.ssl, &k->v);
    return tlsfd_handshake(&k->t, k->fd, deadline);
}

/* GET /healthz on k; 1 if the answer is a 200. */
static int kept_healthz(struct kept *k)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n";
    int64_t deadline = net_now_ms() + 10000;
    uint8_t buf[512];
    size_t got = 0;

    if (tlsfd_send(&k->t, k->fd, req, sizeof(req) - 1, deadline) != 0)
        return 0;
    while (got < sizeof(buf) - 1 && memmem(buf, got, "\r\n\r\nok\n", 7) == NULL) {
        ssize_t n = tlsfd_recv(&k->t, k->fd, buf + got, sizeof(buf) - 1 - got, deadline);
        if (n <= 0) {
            fprintf(stderr, "kept connection: %s\n", n == 0 ? "closed" : strerror((int)-n));
            return 0;
        }
        got += (size_t)n;
    }
    buf[got] = 0;
    if (strncmp((char *)buf, "HTTP/1.1 200", 12) != 0)
        fprintf(stderr, "kept connection: got \"%s\"\n", buf);
    return strncmp((char *)buf, "HTTP/1.1 200", 12) == 0;
}

static void kept_close(struct kept *k)
{
    if (k->tls_on)
        tls_conn_free(&k->t);
    if (k->ctx != NULL)
        wolfSSL_CTX_free(k->ctx);
    if (k->fd >= 0)
        close(k->fd);
}

static int get(const struct one_hub *o, const char *path, const char *bearer)
{
    return request(o, o->pin, "GET", path, bearer, NULL, NULL);
}

static void *client(void *arg)
{
    struct one_hub *a = &hubs[0], *b = &hubs[1];
    char *body = NULL, made[TOKEN_API_LEN + 1] = "";
    struct kept kb;
    json_t *j;

    /* Both answer, each with its own key: A's pin does not fit B. */
    CHECK_EQ_INT(get(a, "/healthz", NULL), 200);
    CHECK_EQ_INT(get(b, "/healthz", NULL), 200);
    CHECK(a->port != b->port);
    CHECK(strcmp(a->pin, b->pin) != 0);
    CHECK_EQ_INT(request(b, a->pin, "GET", "/healthz", NULL, NULL, NULL), -1);

    /* A's admin token is A's: read on A first (so any cache holds it), then
     * shown to B, which never issued it. */
    CHECK_EQ_INT(get(a, "/v1/sites", a->admin), 200);
    CHECK_EQ_INT(get(b, "/v1/sites", a->admin), 401);
    CHECK_EQ_INT(get(b, "/v1/sites", b->admin), 200);
    CHECK_EQ_INT(get(a, "/v1/sites", b->admin), 401);

    /* A token made through A's API works on A only. */
    CHECK_EQ_INT(request(a, a->pin, "POST", "/v1/tokens", a->admin,
                         "{\"name\":\"made-in-a\",\"role\":\"admin\"}", &body),
                 201);
    j = body != NULL ? json_loads(body, 0, NULL) : NULL;
    CHECK(j != NULL && json_is_string(json_object_get(j, "token")));
    if (j != NULL && json_is_string(json_object_get(j, "token")))
        snprintf(made, sizeof(made), "%s", json_string_value(json_object_get(j, "token")));
    json_decref(j);
    free(body);
    body = NULL;
    CHECK_EQ_INT(get(a, "/v1/tokens", made), 200);
    CHECK_EQ_INT(get(b, "/v1/tokens", made), 401);

    /* A site registered in A is in A's registry, not in B's. */
    CHECK_EQ_INT(
        request(a, a->pin, "POST", "/v1/sites", a->admin, "{\"name\":\"only-in-a\"}", NULL), 201);
    CHECK_EQ_INT(get(a, "/v1/sites/only-in-a", a->admin), 200);
    CHECK_EQ_INT(get(b, "/v1/sites/only-in-a", b->admin), 404);
    CHECK_EQ_INT(request(b, b->pin, "GET", "/v1/sites", b->admin, NULL, &body), 200);
    CHECK(body != NULL && strstr(body, "only-in-a") == NULL && strstr(body, "\"sites\"") != NULL);
    free(body);
    body = NULL;

    /* Stopping A leaves B serving: A's port stops answering, B's does not,
     * and a connection B holds open is not among those A's stop closes. */
    CHECK_EQ_INT(kept_open(&kb, b), 0);
    CHECK(kept_healthz(&kb));
    uv_async_send(&stop_a);
    for (int i = 0; i < 200 && get(a, "/healthz", NULL) != -1; i++)
        usleep(10000);
    CHECK_EQ_INT(get(a, "/healthz", NULL), -1);
    CHECK_EQ_INT(get(b, "/healthz", NULL), 200);
    CHECK_EQ_INT(get(b, "/v1/sites", b->admin), 200);
    CHECK(kept_healthz(&kb));
    kept_close(&kb);

    uv_async_send(&finish);
    return NULL;
}

static void on_stop_a(uv_async_t *as)
{
    daemon_stop(hubs[0].h, "test stops A");
}

static void on_finish(uv_async_t *as)
{
    daemon_stop(hubs[1].h, "test done");
    uv_close((uv_handle_t *)&stop_a, NULL);
    uv_close((uv_handle_t *)&finish, NULL);
}

static void remove_state(const struct one_hub *o)
{
    static const char *const files[] = {"hub.db",  "hub.db-wal", "hub.db-shm",
                                        "hub.key", "hub.crt",    "hub.conf"};
    char p[128];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%.63s/%s", o->dir, files[i]);
        unlink(p);
    }
    rmdir(o->dir);
}

int main(void)
{
    struct sigaction sa;
    pthread_t th;
    int rc;

    log_set_level(LOG_ERROR);
    CHECK(wolfSSL_Init() == WOLFSSL_SUCCESS);
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    make_state(&hubs[0], "hub-a.test");
    make_state(&hubs[1], "hub-b.test");
    if (start_hub(&hubs[0]) != 0 || start_hub(&hubs[1]) != 0)
        goto out;
    CHECK(hubs[0].h != hubs[1].h);
    CHECK_EQ_STR(hubs[0].h->cfg.name, "hub-a.test");
    CHECK_EQ_STR(hubs[1].h->cfg.name, "hub-b.test");
    /* Only the program takes the process's signals. */
    CHECK_EQ_INT(sigaction(SIGTERM, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);
    CHECK_EQ_INT(sigaction(SIGHUP, NULL, &sa), 0);
    CHECK(sa.sa_handler == SIG_DFL);

    uv_async_init(&loop, &stop_a, on_stop_a);
    uv_async_init(&loop, &finish, on_finish);
    rc = pthread_create(&th, NULL, client, NULL);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        client_failed_to_start = 1;
        on_stop_a(&stop_a);
        on_finish(&finish);
    }
    /* Ends once both hubs closed everything: no handle of either is left. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (!client_failed_to_start)
        pthread_join(th, NULL);
    CHECK_EQ_INT(conn_live(&hubs[0].h->conns), 0);
    CHECK_EQ_INT(conn_live(&hubs[1].h->conns), 0);
out:
    for (int i = 0; i < 2; i++) {
        if (hubs[i].h != NULL) {
            daemon_stop(hubs[i].h, NULL);
            uv_run(&loop, UV_RUN_DEFAULT);
            daemon_free(hubs[i].h);
        }
        remove_state(&hubs[i]);
    }
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    wolfSSL_Cleanup();
    TEST_DONE();
}
