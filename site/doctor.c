/* tether-site doctor: checks the path to the hub stage by stage and says what to ask the network
 * team. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/cli.h"
#include "../common/crypto.h"
#include "../common/net.h"
#include "../common/proxyconnect.h"
#include "../common/tls.h"
#include "../common/tlsfd.h"
#include "../common/token.h"
#include "cmds.h"
#include "conf.h"
#include "portholder.h"

/* Exit codes, one per failing stage (docs/site-guide.md lists them). */
enum {
    DOC_OK = 0,
    DOC_CANNOT_RUN = 1,
    DOC_USAGE = 2,
    DOC_DNS = 10,
    DOC_TCP = 11,
    DOC_PROXY = 12,
    DOC_TLS = 13,
    DOC_INTERCEPTED = 14,
    DOC_WRONG_PIN = 15,
    DOC_ALPN = 16,
    DOC_CREDENTIALS = 17,
    DOC_SLOW = 18,
};

#define DOC_PINGS     3
#define DOC_CERT_MAX  16384
#define DOC_ADDRS_MAX 8

struct doc {
    char site[TOKEN_NAME_MAX + 1];
    char hubs[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1];
    size_t n_hubs;
    char hub_pin[CRYPTO_PIN_LEN + 1];
    char hub_pins[AGENT_PIN_MAX][CRYPTO_PIN_LEN + 1]; /* hub_pin first, then its cluster's */
    size_t n_pins;
    int use_proxy;
    struct proxyconnect_proxy proxy;
    int source_port;
    int timeout_ms;
    int rtt_warn_ms;
    struct crypto_identity id; /* owned */
    WOLFSSL_CTX *ctx;          /* owned */

    /* The leaf certificate the server showed, for telling interception
     * from a changed hub key. */
    uint8_t cert[DOC_CERT_MAX];
    size_t cert_len;
    char seen_pin[CRYPTO_PIN_LEN + 1];
    int pin_ok;
};

/* The endpoint that passed TCP (or the proxy's CONNECT) and goes on to TLS. */
struct path {
    int fd;
    char host[NET_HOST_MAX + 1];
    int port;
    char addr[80]; /* "ip:port" reached: the hub, or the proxy */
};

static double now_msf(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* --- output: one verdict line per check, then what to ask for --- */

static void verdict(const char *stage, const char *word, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void verdict(const char *stage, const char *word, const char *fmt, ...)
{
    va_list ap;

    printf("%-12s %-12s ", stage, word);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void advise(const char *who, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void advise(const char *who, const char *fmt, ...)
{
    va_list ap;

    printf("%-25s -> ask %s: ", "", who);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

#define NO_INBOUND "no inbound rule is needed (replies return on the same connection)"

static void ask_outbound(const char *host, int port, const char *ip)
{
    advise("the network team", "allow outbound TCP from this host to %s port %d%s%s%s; " NO_INBOUND,
           host, port, ip && ip[0] ? " (" : "", ip ? ip : "", ip && ip[0] ? ")" : "");
}

/* --- configuration --- */

/* site.conf, then the --config file (the loader all commands share), into d. */
static int load_conf(struct doc *d, const char *path, const char *config)
{
    struct site_conf *c = calloc(1, sizeof(*c));
    char err[512];
    int rc = -ENOMEM;

    if (c == NULL) {
        fprintf(stderr, "tether-site: out of memory\n");
        goto out;
    }
    site_conf_init(c);
    rc = site_conf_load(path, c, err, sizeof(err));
    if (rc == 0 && config != NULL)
        rc = site_conf_load(config, c, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "tether-site: %s\n", err);
        goto out;
    }
    rc = site_conf_check(c, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "tether-site: %s %s\n", path, err);
        goto out;
    }
    snprintf(d->site, sizeof(d->site), "%s", c->site);
    snprintf(d->hub_pin, sizeof(d->hub_pin), "%s", c->hub_pin);
    memcpy(d->hub_pins, c->hub_pins, sizeof(d->hub_pins));
    d->n_pins = c->n_pins;
    memcpy(d->hubs, c->hubs, sizeof(d->hubs));
    d->n_hubs = c->n_hubs;
    d->use_proxy = c->use_proxy;
    d->proxy = c->proxy;
    d->source_port = c->source_port;
out:
    free(c);
    return rc;
}

/* --- name resolution and TCP --- */

static void addr_name(const struct sockaddr *sa, char *out, size_t cap, int with_port)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
    }
    if (!with_port)
        snprintf(out, cap, "%s", ip);
    else
        snprintf(out, cap, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

/* DNS stage for one host. Prints the verdict. */
static int stage_dns(const char *host, int port, const char *what, struct addrinfo **res)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    char ports[8], list[200], one[INET6_ADDRSTRLEN];
    size_t off = 0;
    int64_t t0 = net_now_ms();
    int gai;

    snprintf(ports, sizeof(ports), "%d", port);
    gai = getaddrinfo(host, ports, &hints, res);
    if (gai != 0) {
        verdict("dns", "FAIL", "%s %s does not resolve: %s", what, host,
                gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        advise("the network team (DNS)",
               "make %s resolve from this host (or write the hub's address in site.conf's "
               "hub = lines); then allow outbound TCP to it on port %d; " NO_INBOUND,
               host, port);
        *res = NULL;
        return DOC_DNS;
    }
    list[0] = '\0';
    for (struct addrinfo *ai = *res; ai != NULL && off < sizeof(list) - 50; ai = ai->ai_next) {
        addr_name(ai->ai_addr, one, sizeof(one), 0);
        if (strstr(list, one) != NULL)
            continue;
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", off ? ", " : "", one);
    }
    verdict("dns", "ok", "%s %s resolves to %s (%lld ms)", what, host, list,
            (long long)(net_now_ms() - t0));
    return DOC_OK;
}

/* Non-blocking connect with a deadline: a SYN without SYN-ACK shows as
 * -ETIMEDOUT, a reset as -ECONNREFUSED. */
static int tcp_connect(const struct addrinfo *ai, int sport, int timeout_ms, int *fd_out,
                       int64_t *took)
{
    struct pollfd pfd;
    int64_t t0 = net_now_ms();
    int fd, rc, soerr = 0, one = 1;
    socklen_t sl = sizeof(soerr);

    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (sport > 0) {
        struct sockaddr_storage local;
        memset(&local, 0, sizeof(local));
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6) {
            struct sockaddr_in6 *l6 = (struct sockaddr_in6 *)&local;
            l6->sin6_family = AF_INET6;
            l6->sin6_port = htons((uint16_t)sport);
        } else {
            struct sockaddr_in *l4 = (struct sockaddr_in *)&local;
            l4->sin_family = AF_INET;
            l4->sin_port = htons((uint16_t)sport);
        }
        if (bind(fd, (struct sockaddr *)&local,
                 ai->ai_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in)) != 0) {
            rc = -errno;
            close(fd);
            return rc == -EADDRINUSE ? -EADDRINUSE : rc;
        }
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    pfd.fd = fd;
    pfd.events = POLLOUT;
    for (;;) {
        int64_t left = timeout_ms - (net_now_ms() - t0);
        if (left <= 0) {
            close(fd);
            return -ETIMEDOUT;
        }
        rc = poll(&pfd, 1, (int)left);
        if (rc > 0)
            break;
        if (rc < 0 && errno != EINTR) {
            rc = -errno;
            close(fd);
            return rc;
        }
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
        close(fd);
        return soerr ? -soerr : -EIO;
    }
    *took = net_now_ms() - t0;
    *fd_out = fd;
    return 0;
}

/* TCP stage for one endpoint: tries its addresses in order. Prints the
 * verdict; on success *fd is connected. */
static int stage_tcp(struct doc *d, const char *host, int port, const char *what,
                     struct addrinfo *res, int *fd, char *addr, size_t addr_cap)
{
    char name[80], holder[160];
    int64_t took = 0;
    int rc = -EHOSTUNREACH, sport = d->source_port;

    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        addr_name(ai->ai_addr, name, sizeof(name), 1);
        rc = tcp_connect(ai, sport, d->timeout_ms, fd, &took);
        if (sport > 0 && (rc == -EADDRINUSE || rc == -EADDRNOTAVAIL)) {
            /* The running agent may hold it: say so, and test the path from
             * another port rather than not at all. */
            portholder_describe(sport, holder, sizeof(holder));
            verdict("tcp", "warn",
                    "source port %d is taken (held by %s); testing from another port", sport,
                    holder);
            sport = 0;
            rc = tcp_connect(ai, 0, d->timeout_ms, fd, &took);
        }
        if (rc == 0) {
            snprintf(addr, addr_cap, "%s", name);
            verdict("tcp", "ok", "%s %s:%d (%s) accepted the connection in %lld ms%s", what, host,
                    port, name, (long long)took, sport > 0 ? " from the fixed source port" : "");
            return DOC_OK;
        }
        if (rc == -ETIMEDOUT)
            verdict("tcp", "blocked",
                    "%s %s:%d (%s): no answer within %.1f s (SYN sent, no SYN-ACK): a firewall "
                    "drops it",
                    what, host, port, name, d->timeout_ms / 1000.0);
        else if (rc == -ECONNREFUSED)
            verdict("tcp", "refused",
                    "%s %s:%d (%s): connection refused (a reset: nothing listens there, or a "
                    "firewall rejects it)",
                    what, host, port, name);
        else
            verdict("tcp", "FAIL", "%s %s:%d (%s): %s", what, host, port, name, strerror(-rc));
        if (rc == -ETIMEDOUT || rc == -ECONNREFUSED || rc == -EHOSTUNREACH || rc == -ENETUNREACH) {
            char ip[INET6_ADDRSTRLEN];
            addr_name(ai->ai_addr, ip, sizeof(ip), 0);
            ask_outbound(host, port, ip);
        }
    }
    return DOC_TCP;
}

/* --- proxy --- */

static int stage_proxy(struct doc *d, int fd, const char *hub)
{
    char req[PROXYCONNECT_REQUEST_MAX], pname[NET_HOST_MAX + 10], ua[64];
    struct proxyconnect_reply r;
    size_t len = 0;
    int64_t t0 = net_now_ms();
    int rc;

    proxyconnect_reply_init(&r);
    proxyconnect_name(&d->proxy, pname, sizeof(pname));
    snprintf(ua, sizeof(ua), "tether-site/%s (doctor)", TETHER_VERSION);
    rc = proxyconnect_request(&d->proxy, hub, ua, req, sizeof(req), &len);
    if (rc == 0)
        rc = proxyconnect_exchange(fd, req, len, t0 + d->timeout_ms, &r);
    if (rc != 0 && !r.sent) {
        verdict("proxy", "FAIL", "cannot send CONNECT %s to the proxy %s", hub, pname);
        return DOC_PROXY;
    }
    if (rc == -ETIMEDOUT) {
        verdict("proxy", "FAIL", "the proxy %s did not answer CONNECT %s within %.1f s", pname, hub,
                d->timeout_ms / 1000.0);
        advise("the network team", "why the proxy %s holds CONNECT to %s; " NO_INBOUND, pname, hub);
        return DOC_PROXY;
    }
    if (rc == -EPROTO) {
        verdict("proxy", "FAIL", "%s does not answer like an HTTP proxy (%s)", pname,
                proxyconnect_error_string(r.error));
        advise("the network team", "for the address of the HTTP proxy this host must use");
        return DOC_PROXY;
    }
    if (rc != 0) {
        verdict("proxy", "FAIL",
                "the proxy %s closed the connection instead of answering "
                "CONNECT %s",
                pname, hub);
        advise("the network team", "let the proxy %s CONNECT to %s; " NO_INBOUND, pname, hub);
        return DOC_PROXY;
    }
    if (r.status < 200 || r.status > 299) {
        verdict("proxy", "FAIL", "the proxy %s refused CONNECT %s: %d %s", pname, hub, r.status,
                r.reason);
        /* tinyproxy answers 401 where RFC 9110 says 407. */
        if (proxyconnect_auth_refused(r.status))
            advise("the network team",
                   "for proxy credentials, and put them in the proxy URL "
                   "(http://USER:PASS@%s)",
                   pname);
        else
            advise(
                "the network team",
                "let the proxy %s CONNECT to %s (many proxies allow CONNECT only to port "
                "443: squid's SSL_ports, tinyproxy's ConnectPort); outbound TCP only, " NO_INBOUND,
                pname, hub);
        return DOC_PROXY;
    }
    verdict("proxy", "ok", "%s opened a tunnel to %s (%d %s, %lld ms)", pname, hub, r.status,
            r.reason, (long long)(net_now_ms() - t0));
    return DOC_OK;
}

/* --- TLS --- */

static int doc_verify(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
    struct doc *d = store->userCtx;

    if (d == NULL)
        return 0;
    if (store->error_depth != 0)
        return 1;
    if (store->certs == NULL || store->totalCerts < 1)
        return 0;
    d->cert_len = 0;
    if (store->certs[0].length <= sizeof(d->cert)) {
        memcpy(d->cert, store->certs[0].buffer, store->certs[0].length);
        d->cert_len = store->certs[0].length;
    }
    if (crypto_pin_from_cert(store->certs[0].buffer, store->certs[0].length, d->seen_pin) != 0) {
        d->seen_pin[0] = '\0';
        return 0;
    }
    d->pin_ok = 0;
    for (size_t i = 0; i < d->n_pins && !d->pin_ok; i++)
        d->pin_ok = crypto_pin_equal(d->seen_pin, d->hub_pins[i]);
    return d->pin_ok;
}

/* Issuer and subject of the leaf the server showed; *self_signed. */
static int cert_names(struct doc *d, char *issuer, char *subject, size_t cap, int *self_signed)
{
    DecodedCert dc;
    int rc;

    issuer[0] = subject[0] = '\0';
    *self_signed = 0;
    if (d->cert_len == 0)
        return -ENOENT;
    wc_InitDecodedCert(&dc, d->cert, (word32)d->cert_len, NULL);
    rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    if (rc == 0) {
        snprintf(issuer, cap, "%s", dc.issuer);
        snprintf(subject, cap, "%s", dc.subject);
        *self_signed = dc.selfSigned;
    }
    wc_FreeDecodedCert(&dc);
    return rc == 0 ? 0 : -EPROTO;
}

/* --- HTTP/2 after the handshake: the hub speaks first, as the client --- */

struct h2probe {
    struct tls_conn *t;
    int fd;
    int64_t deadline;
    int settings;   /* the hub's SETTINGS arrived */
    int acks;       /* PING ACKs received */
    double sent_at; /* when the last PING went out */
    double rtt[DOC_PINGS];
};

static int probe_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct h2probe *p = arg;
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
        p->settings = 1;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK) && p->acks < DOC_PINGS) {
        p->rtt[p->acks] = now_msf() - p->sent_at;
        p->acks++;
    }
    return 0;
}

static const struct h2_callbacks probe_callbacks = {.frame_recv = probe_frame};

static int probe_flush(nghttp2_session *s, struct h2probe *p)
{
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(s, &data);
        if (n < 0)
            return -EPROTO;
        if (n == 0)
            break;
        if (tls_write(p->t, data, (size_t)n) != 0)
            return -EPROTO;
    }
    return tlsfd_flush(p->t, p->fd, p->deadline);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* --- the stages after TCP --- */

static int stage_tls_on(struct doc *d, struct path *pa)
{
    struct tls_conn t;
    struct h2probe p = {0};
    nghttp2_session *s = NULL;
    char alpn[32], issuer[WC_ASN_NAME_MAX + 1], subject[WC_ASN_NAME_MAX + 1], ep[300];
    uint8_t plain[16384];
    int64_t t0 = net_now_ms(), deadline = t0 + d->timeout_ms;
    int rc, self_signed = 0, code = DOC_TLS;
    ssize_t n;

    snprintf(ep, sizeof(ep), "%s:%d", pa->host, pa->port);
    if (tls_conn_init(&t, d->ctx, pa->host, "tether/1", 0) != 0) {
        verdict("tls", "FAIL", "cannot set up TLS in this process");
        return DOC_CANNOT_RUN;
    }
    /* Our own verifier: it keeps the certificate to tell interception from
     * a changed hub key. */
    wolfSSL_set_verify(t.ssl, WOLFSSL_VERIFY_PEER, doc_verify);
    wolfSSL_SetCertCbCtx(t.ssl, d);
    rc = tlsfd_handshake(&t, pa->fd, deadline);

    if (rc != 0 && d->seen_pin[0] != '\0' && !d->pin_ok) {
        cert_names(d, issuer, subject, sizeof(issuer), &self_signed);
        verdict("tls", "ok", "a TLS server answered at %s (handshake stopped at the key check)",
                ep);
        if (!self_signed) {
            verdict(
                "pin", "intercepted",
                "the server at %s shows key %s issued by \"%s\" (subject \"%s\"), not the hub's "
                "pinned key %s: a TLS-inspecting middlebox re-signs this connection; the site "
                "refuses it",
                ep, d->seen_pin, issuer, subject, d->hub_pin);
            advise("the network team",
                   "exempt %s from TLS inspection (a bypass rule for that destination host and "
                   "port): the tunnel pins the hub's key and cannot work through inspection; "
                   "outbound TCP only, " NO_INBOUND,
                   ep);
            code = DOC_INTERCEPTED;
        } else {
            verdict("pin", "wrong-pin",
                    "the server at %s shows a self-signed key %s (subject \"%s\"); site.conf pins "
                    "%s",
                    ep, d->seen_pin, subject, d->hub_pin);
            advise("the hub operator",
                   "whether the hub key changed (tether-hub init --force makes a new one): then "
                   "set hub_pin in site.conf to the new pin or enroll again");
            advise("the network team",
                   "if the hub key did not change, something on the path to %s intercepts TLS: "
                   "exempt it from inspection; " NO_INBOUND,
                   ep);
            code = DOC_WRONG_PIN;
        }
        goto out;
    }
    if (rc == -ETIMEDOUT) {
        verdict("tls", "FAIL", "no TLS answer from %s within %.1f s", ep, d->timeout_ms / 1000.0);
        advise("the network team",
               "let TLS 1.3 through to %s unchanged (no protocol filter or inspection holding "
               "it); outbound TCP only, " NO_INBOUND,
               ep);
        goto out;
    }
    if (rc != 0) {
        verdict("tls", "FAIL", "TLS handshake with %s failed: %s", ep,
                rc == -ECONNRESET ? "the connection was closed or reset during the handshake"
                                  : tls_error_string(&t));
        advise("the network team",
               "let TLS 1.3 through to %s unchanged (a filter may block TLS 1.3 or this "
               "server name); outbound TCP only, " NO_INBOUND,
               ep);
        goto out;
    }
    verdict("tls", "ok", "TLS 1.3 handshake with %s in %lld ms", ep,
            (long long)(net_now_ms() - t0));
    verdict("pin", "ok", "the hub's key matches hub_pin %s", d->hub_pin);

    tls_alpn(&t, alpn, sizeof(alpn));
    if (strcmp(alpn, "tether/1") != 0) {
        verdict("alpn", "FAIL", "the server at %s did not agree to the tether/1 protocol (%s%s%s)",
                ep, alpn[0] ? "it chose " : "no ALPN answer", alpn, "");
        advise("the hub operator", "whether %s is a tether hub port", ep);
        advise("the network team",
               "whether a middlebox terminates TLS for %s; it must pass through unchanged; "
               "" NO_INBOUND,
               ep);
        code = DOC_ALPN;
        goto out;
    }
    verdict("alpn", "ok", "the hub speaks tether/1");

    /* Credentials: in TLS 1.3 the hub judges our certificate after our
     * Finished; an accepted site gets HTTP/2 (preface + SETTINGS), a refused
     * one an alert. Note: the hub takes this as the site's session, so a
     * running agent is replaced for a moment and reconnects. */
    deadline = net_now_ms() + d->timeout_ms;
    n = tlsfd_recv(&t, pa->fd, plain, sizeof(plain), deadline);
    if (n <= 0) {
        if (n == -ETIMEDOUT)
            verdict("credentials", "FAIL", "the hub said nothing within %.1f s after the handshake",
                    d->timeout_ms / 1000.0);
        else
            verdict("credentials", "refused",
                    "the hub refused this site's key (%s): site \"%s\" is revoked, disabled or "
                    "unknown at the hub",
                    (n == -EPROTO || n == -ENOMEM) ? tls_error_string(&t)
                                                   : "it closed the connection",
                    d->site);
        advise("the hub operator",
               "to check site \"%s\" (tetherctl site show %s) and enable it or enroll it again; "
               "the network path itself works (outbound TCP to %s), nothing to ask the network "
               "team",
               d->site, d->site, ep);
        code = DOC_CREDENTIALS;
        goto out;
    }
    p.t = &t;
    p.fd = pa->fd;
    p.deadline = deadline;
    /* The session the agent would make, so the hub sees the same SETTINGS. */
    if (h2_session_new(H2_ROLE_SITE, &probe_callbacks, &agent_h2_limits, &p, &s) != 0) {
        code = DOC_CANNOT_RUN;
        goto out;
    }
    for (;;) {
        if (nghttp2_session_mem_recv(s, plain, (size_t)n) < 0)
            break;
        if (p.settings)
            break;
        n = tlsfd_recv(&t, pa->fd, plain, sizeof(plain), deadline);
        if (n <= 0)
            break;
    }
    if (!p.settings) {
        verdict("credentials", "FAIL", "the hub did not start HTTP/2 after the handshake");
        advise("the hub operator", "to look at the hub's log for site \"%s\"", d->site);
        code = DOC_CREDENTIALS;
        goto out;
    }
    verdict("credentials", "ok", "the hub accepted this site's key (site \"%s\")", d->site);

    /* Round trip over the whole path, proxies and all: HTTP/2 PINGs. */
    code = DOC_OK;
    for (int i = 0; i < DOC_PINGS; i++) {
        uint8_t opaque[8] = {'d', 'o', 'c', 't', 'o', 'r', '0', (uint8_t)i};
        p.deadline = deadline = net_now_ms() + d->timeout_ms;
        nghttp2_submit_ping(s, NGHTTP2_FLAG_NONE, opaque);
        p.sent_at = now_msf();
        if (probe_flush(s, &p) != 0)
            break;
        while (p.acks <= i) {
            n = tlsfd_recv(&t, pa->fd, plain, sizeof(plain), deadline);
            if (n <= 0 || nghttp2_session_mem_recv(s, plain, (size_t)n) < 0)
                break;
            probe_flush(s, &p);
        }
        if (p.acks <= i)
            break;
    }
    if (p.acks < DOC_PINGS) {
        verdict("rtt", "FAIL", "the hub did not answer HTTP/2 PINGs within %.1f s",
                d->timeout_ms / 1000.0);
        advise("the network team",
               "whether traffic to %s is held or shaped on the way; outbound TCP only, " NO_INBOUND,
               ep);
        code = DOC_SLOW;
    } else {
        double sorted[DOC_PINGS];
        memcpy(sorted, p.rtt, sizeof(sorted));
        qsort(sorted, DOC_PINGS, sizeof(double), cmp_double);
        if (sorted[DOC_PINGS / 2] > d->rtt_warn_ms) {
            verdict("rtt", "slow",
                    "median round trip %.0f ms over %d pings (min %.0f, max %.0f) is above %d ms: "
                    "requests will work, each slower by that much",
                    sorted[DOC_PINGS / 2], DOC_PINGS, sorted[0], sorted[DOC_PINGS - 1],
                    d->rtt_warn_ms);
            advise("the network team",
                   "whether traffic to %s goes a long way round (a distant proxy, a congested or "
                   "shaped link); outbound TCP only, " NO_INBOUND,
                   ep);
            code = DOC_SLOW;
        } else {
            verdict("rtt", "ok", "median round trip %.1f ms over %d pings (min %.1f, max %.1f)",
                    sorted[DOC_PINGS / 2], DOC_PINGS, sorted[0], sorted[DOC_PINGS - 1]);
        }
    }
    nghttp2_submit_goaway(s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
    p.deadline = net_now_ms() + 1000;
    probe_flush(s, &p);
    tls_shutdown(&t);
    tlsfd_flush(&t, pa->fd, net_now_ms() + 1000);
out:
    if (s != NULL)
        nghttp2_session_del(s);
    tls_conn_free(&t);
    return code;
}

/* DNS, TCP (and proxy) for every endpoint; keeps the first that works. */
static int stage_reach(struct doc *d, struct path *pa)
{
    int best_fail = 0, code;

    pa->fd = -1;
    if (d->use_proxy) {
        struct addrinfo *res = NULL;
        char pname[NET_HOST_MAX + 10];

        proxyconnect_name(&d->proxy, pname, sizeof(pname));
        verdict("dns", "skipped", "the hub's names are resolved by the proxy %s", pname);
        code = stage_dns(d->proxy.host, d->proxy.port, "proxy", &res);
        if (code != DOC_OK)
            return code;
        for (size_t i = 0; i < d->n_hubs; i++) {
            char host[NET_HOST_MAX + 1];
            int port, fd = -1;

            if (net_split_hostport(d->hubs[i], 6443, host, &port) != 0) {
                verdict("config", "FAIL", "bad hub endpoint \"%s\" in site.conf", d->hubs[i]);
                continue;
            }
            code = stage_tcp(d, d->proxy.host, d->proxy.port, "proxy", res, &fd, pa->addr,
                             sizeof(pa->addr));
            if (code != DOC_OK) {
                freeaddrinfo(res);
                return code;
            }
            code = stage_proxy(d, fd, d->hubs[i]);
            if (code == DOC_OK) {
                pa->fd = fd;
                snprintf(pa->host, sizeof(pa->host), "%s", host);
                pa->port = port;
                break;
            }
            close(fd);
            best_fail = code;
        }
        freeaddrinfo(res);
        return pa->fd >= 0 ? DOC_OK : (best_fail ? best_fail : DOC_PROXY);
    }
    for (size_t i = 0; i < d->n_hubs; i++) {
        struct addrinfo *res = NULL;
        char host[NET_HOST_MAX + 1], addr[80];
        int port, fd = -1;

        if (net_split_hostport(d->hubs[i], 6443, host, &port) != 0) {
            verdict("config", "FAIL", "bad hub endpoint \"%s\" in site.conf", d->hubs[i]);
            continue;
        }
        code = stage_dns(host, port, "hub", &res);
        if (code != DOC_OK) {
            if (best_fail == 0)
                best_fail = code;
            continue;
        }
        code = stage_tcp(d, host, port, "hub", res, &fd, addr, sizeof(addr));
        freeaddrinfo(res);
        if (code != DOC_OK) {
            /* The furthest stage any endpoint reached decides the code. */
            if (best_fail < code)
                best_fail = code;
            continue;
        }
        if (pa->fd < 0) {
            pa->fd = fd;
            snprintf(pa->host, sizeof(pa->host), "%s", host);
            pa->port = port;
            snprintf(pa->addr, sizeof(pa->addr), "%s", addr);
        } else {
            close(fd);
        }
    }
    if (pa->fd >= 0) {
        if (best_fail != 0)
            verdict("endpoints", "warn",
                    "the site works through %s:%d; the endpoints above that failed are only "
                    "fallbacks",
                    pa->host, pa->port);
        return DOC_OK;
    }
    return best_fail ? best_fail : DOC_CANNOT_RUN;
}

static const char *code_name(int code)
{
    switch (code) {
    case DOC_OK:
        return "ok";
    case DOC_DNS:
        return "dns";
    case DOC_TCP:
        return "tcp";
    case DOC_PROXY:
        return "proxy";
    case DOC_TLS:
        return "tls";
    case DOC_INTERCEPTED:
        return "intercepted";
    case DOC_WRONG_PIN:
        return "wrong-pin";
    case DOC_ALPN:
        return "alpn";
    case DOC_CREDENTIALS:
        return "credentials";
    case DOC_SLOW:
        return "slow";
    default:
        return "cannot-run";
    }
}

static void doctor_usage(FILE *f)
{
    fprintf(f,
            "usage: tether-site doctor --state DIR [--config FILE] [--proxy URL|\"\"]\n"
            "                          [--timeout S] [--rtt-warn MS]\n"
            "Checks the path to the hub stage by stage: name resolution, TCP reach of each hub\n"
            "endpoint, the proxy (if any), TLS, the hub's key pin, ALPN, this site's key, round\n"
            "trip. One verdict line per check; a failing one says what to ask for.\n"
            "Exit: 0 ok, 1 cannot run, 2 usage, 10 dns, 11 tcp, 12 proxy, 13 tls,\n"
            "14 intercepted, 15 wrong-pin, 16 alpn, 17 credentials, 18 slow.\n");
}

int site_cmd_doctor(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, 0, 's'},
                                         {"config", required_argument, 0, 'c'},
                                         {"proxy", required_argument, 0, 'P'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"rtt-warn", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    struct cli p;
    const char *state = NULL, *config = NULL, *proxy = NULL;
    struct doc *d = calloc(1, sizeof(*d));
    struct path pa = {.fd = -1};
    char path[1200];
    int c, code = DOC_CANNOT_RUN;
    long long v;

    if (d == NULL)
        return DOC_CANNOT_RUN;
    d->timeout_ms = 5000;
    d->rtt_warn_ms = 300;
    cli_begin(&p, "tether-site", "doctor", argc, argv, "h", opts);
    while ((c = cli_next(&p)) != CLI_END) {
        switch (c) {
        case 's':
            state = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'P':
            proxy = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, 1, 600, &v) != 0) {
                fprintf(stderr, "tether-site: --timeout must be 1..600 seconds\n");
                code = DOC_USAGE;
                goto out;
            }
            d->timeout_ms = (int)v * 1000;
            break;
        case 'r':
            if (cli_parse_int(optarg, 1, 600000, &v) != 0) {
                fprintf(stderr, "tether-site: --rtt-warn must be 1..600000 ms\n");
                code = DOC_USAGE;
                goto out;
            }
            d->rtt_warn_ms = (int)v;
            break;
        case 'h':
            doctor_usage(stdout);
            code = DOC_OK;
            goto out;
        case CLI_ARG:
            code = cli_usage_error("tether-site", "doctor", "unexpected argument \"%s\"", optarg);
            goto out;
        default:
            code = DOC_USAGE;
            goto out;
        }
    }
    if (state == NULL) {
        code = cli_usage_error("tether-site", "doctor", "doctor needs --state DIR");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/site.conf", state);
    if (access(path, F_OK) != 0) {
        fprintf(stderr,
                "tether-site: %s not found: enroll first (tether-site enroll --state %s TOKEN)\n",
                path, state);
        goto out;
    }
    if (load_conf(d, path, config) != 0)
        goto out;
    if (proxy != NULL) {
        d->use_proxy = 0;
        if (proxy[0] != '\0') {
            if (proxyconnect_parse_url(proxy, &d->proxy) != 0) {
                fprintf(stderr, "tether-site: bad --proxy (want http://[user:pass@]host:port)\n");
                code = DOC_USAGE;
                goto out;
            }
            d->use_proxy = 1;
        }
    }
    if (crypto_identity_load(state, "site", &d->id) != 0) {
        fprintf(stderr, "tether-site: cannot read the site key (site.key, site.crt) in %s\n",
                state);
        goto out;
    }
    if (tls_ctx_client(&d->id, &d->ctx) != 0) {
        fprintf(stderr, "tether-site: cannot set up TLS\n");
        goto out;
    }
    {
        char pname[NET_HOST_MAX + 10] = "";
        if (d->use_proxy)
            proxyconnect_name(&d->proxy, pname, sizeof(pname));
        printf("tether-site doctor: site %s, %zu hub endpoint%s (", d->site, d->n_hubs,
               d->n_hubs == 1 ? "" : "s");
        for (size_t i = 0; i < d->n_hubs; i++)
            printf("%s%s", i ? ", " : "", d->hubs[i]);
        printf("), %s%s", d->use_proxy ? "through the proxy " : "direct", pname);
        if (d->source_port > 0)
            printf(", source port %d", d->source_port);
        printf("\n");
    }
    code = stage_reach(d, &pa);
    if (code == DOC_OK)
        code = stage_tls_on(d, &pa);
    if (code == DOC_OK)
        printf("result: ok: the site can reach the hub and be served\n");
    else
        printf("result: %s (exit %d)\n", code_name(code), code);
out:
    if (pa.fd >= 0)
        close(pa.fd);
    if (d->ctx != NULL)
        wolfSSL_CTX_free(d->ctx);
    crypto_identity_free(&d->id);
    free(d);
    return code;
}
