/* Blocking HTTPS/1.1 client for the command-line tools: one pinned TLS 1.3 connection per request.
 */
/* SPDX-License-Identifier: MIT */
#include "httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "errmsg.h"
#include "net.h"
#include "proxyconnect.h"
#include "tls.h"
#include "tlsfd.h"

#define HTTPC_DEFAULT_PORT    6443
#define HTTPC_DEFAULT_TIMEOUT 30000
#define HTTPC_MAX_HEADERS     (64u << 10)
#define HTTPC_MAX_BODY        (64u << 20)

#define PIN_MISMATCH_MSG                                                                           \
    "hub key does not match the pinned key (something on the path may intercept TLS)"

int httpc_target_from_url(const char *url, struct httpc_target *t)
{
    char hostport[NET_HOST_MAX + 16];
    char host[NET_HOST_MAX + 1];
    const char *p;
    size_t n;
    int port;

    if (url == NULL || t == NULL || strncasecmp(url, "https://", 8) != 0)
        return -EINVAL;
    p = url + 8;
    n = strcspn(p, "/?#");
    /* The API paths are fixed, so a base path would be silently dropped:
     * refuse it rather than guess. A lone trailing '/' is harmless. */
    if (p[n] != '\0' && strcmp(p + n, "/") != 0)
        return -EINVAL;
    if (n == 0 || n >= sizeof(hostport))
        return -EINVAL;
    memcpy(hostport, p, n);
    hostport[n] = '\0';
    if (strchr(hostport, '@') != NULL)
        return -EINVAL;
    if (net_split_hostport(hostport, HTTPC_DEFAULT_PORT, host, &port) != 0)
        return -EINVAL;
    if (host[0] == '\0' || strlen(host) >= sizeof(t->host))
        return -EINVAL;
    snprintf(t->host, sizeof(t->host), "%s", host);
    t->port = port;
    return 0;
}

void httpc_response_free(struct httpc_response *r)
{
    if (r == NULL)
        return;
    free(r->body);
    memset(r, 0, sizeof(*r));
}

static int check_pin(void *arg, const char *pin)
{
    const struct httpc_target *t = arg;

    for (size_t i = 0; i < t->n_alt_pins; i++)
        if (crypto_pin_equal(t->alt_pins[i], pin))
            return 0;
    return crypto_pin_equal(t->pin, pin) ? 0 : -EKEYREJECTED;
}

/* Connects to the first address of host:port that accepts, within the
 * deadline; what names it in errors ("hub", "proxy"). */
static int tcp_connect_first(const char *what, const char *host, int port, int64_t deadline,
                             int *out, char *err, size_t cap)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL, *ai;
    char port_s[8];
    int fd = -1, gai, last = ECONNREFUSED, rc = -EIO;

    snprintf(port_s, sizeof(port_s), "%d", port);
    gai = getaddrinfo(host, port_s, &hints, &res);
    if (gai != 0) {
        errmsg_set(err, cap, "cannot resolve %s host \"%s\": %s", what, host,
                   gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        rc = -EHOSTUNREACH;
        goto out;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        /* As on every tether socket: a write must not wait for the peer's
         * delayed ACK of the one before (Nagle), 40 ms on Linux. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            *out = fd;
            rc = 0;
            goto out;
        }
        if (errno != EINPROGRESS) {
            last = errno;
            close(fd);
            fd = -1;
            continue;
        }
        rc = net_wait_fd(fd, POLLOUT, deadline);
        if (rc == -ETIMEDOUT) {
            close(fd);
            errmsg_set(err, cap, "timed out connecting to %s %s:%d", what, host, port);
            goto out;
        }
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0) {
            *out = fd;
            goto out;
        }
        last = rc != 0 ? -rc : soerr != 0 ? soerr : errno;
        close(fd);
        fd = -1;
    }
    errmsg_set(err, cap, "cannot connect to %s %s:%d: %s", what, host, port, strerror(last));
    rc = -last;
out:
    if (res != NULL)
        freeaddrinfo(res);
    return rc;
}

int httpc_proxy_via(struct httpc_proxy *hp, const struct proxyconnect_proxy *p, const char *target,
                    char *buf, size_t cap)
{
    size_t len = 0;
    int rc = proxyconnect_request(p, target, "tether-site/" TETHER_VERSION, buf, cap, &len);

    if (rc != 0)
        return rc;
    memset(hp, 0, sizeof(*hp));
    hp->host = p->host;
    hp->port = p->port;
    hp->request = buf;
    hp->request_len = len;
    return 0;
}

/* Sends the CONNECT request and reads the proxy's reply (nothing of the
 * tunnel past it). 0 when the proxy answered 2xx. */
static int proxy_connect(const struct httpc_target *t, int fd, int64_t deadline, char *err,
                         size_t cap)
{
    const struct httpc_proxy *p = t->proxy;
    struct proxyconnect_reply r;
    int rc = proxyconnect_exchange(fd, p->request, p->request_len, deadline, &r);

    if (rc == -EPROTO && r.error == PROXYCONNECT_ERR_TOO_LONG) {
        errmsg_set(err, cap, "the proxy %s:%d sent a reply header over %d bytes", p->host, p->port,
                   PROXYCONNECT_REPLY_MAX);
        return -EMSGSIZE;
    }
    if (rc == -EPROTO) {
        errmsg_set(err, cap, "the proxy %s:%d did not answer CONNECT with HTTP", p->host, p->port);
        return -EPROTO;
    }
    if (rc == -ECONNRESET && r.sent) {
        errmsg_set(err, cap, "the proxy %s:%d closed the connection before answering CONNECT",
                   p->host, p->port);
        return -ECONNRESET;
    }
    if (rc == -ETIMEDOUT) {
        errmsg_set(err, cap, "timed out waiting for the proxy %s:%d to answer CONNECT", p->host,
                   p->port);
        return rc;
    }
    if (rc != 0) {
        errmsg_set(err, cap, "talking to the proxy %s:%d: %s", p->host, p->port, strerror(-rc));
        return rc;
    }
    if (proxyconnect_auth_refused(r.status)) {
        errmsg_set(err, cap,
                   "the proxy %s:%d refused the credentials (%d %s): give the right ones as "
                   "http://USER:PASS@HOST:PORT",
                   p->host, p->port, r.status, r.reason);
        return -EACCES;
    }
    if (r.status < 200 || r.status > 299) {
        errmsg_set(err, cap, "the proxy %s:%d refused CONNECT to %s:%d: %d %s", p->host, p->port,
                   t->host, t->port, r.status, r.reason);
        return -ECONNREFUSED;
    }
    return 0;
}

static int is_ip_literal(const char *host)
{
    unsigned char addr[16];

    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* Header text must not let a caller's string start a new header line. */
static int safe_text(const char *s, int allow_space)
{
    for (; s != NULL && *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch < 0x20 || ch == 0x7f || (ch == ' ' && !allow_space))
            return 0;
    }
    return 1;
}

/* Response parsing state (http_parser's data pointer). */
struct rstate {
    struct httpc_response *resp;
    int head_only;       /* HEAD request: no body follows the headers */
    size_t header_bytes; /* status line + header fields and values so far */
    char field[16];      /* start of the current header name (only Content-Type matters) */
    size_t field_len;    /* full length of the current header name */
    int in_value;        /* the last callback was a header value */
    int is_ctype;        /* the current header is Content-Type */
    size_t ctype_len;
    char *body;
    size_t body_len, body_cap;
    int done;
    int err; /* -EFBIG when a bound was hit */
    /* Streaming (httpc_target.on_body); borrowed. */
    httpc_body_fn on_body;
    void *body_arg;
    int streaming; /* a 2xx head arrived: the body goes to on_body */
};

static void rstate_reset(struct rstate *s)
{
    s->header_bytes = 0;
    s->field_len = 0;
    s->in_value = 0;
    s->is_ctype = 0;
    s->ctype_len = 0;
    s->resp->content_type[0] = '\0';
    s->body_len = 0;
}

static int count_header(struct rstate *s, size_t len)
{
    s->header_bytes += len;
    if (s->header_bytes > HTTPC_MAX_HEADERS) {
        s->err = -EFBIG;
        return -1;
    }
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
    return count_header(p->data, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct rstate *s = p->data;

    if (s->in_value) {
        s->in_value = 0;
        s->field_len = 0;
    }
    if (s->field_len < sizeof(s->field)) {
        size_t n = sizeof(s->field) - s->field_len;

        memcpy(s->field + s->field_len, at, len < n ? len : n);
    }
    s->field_len += len;
    return count_header(s, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct rstate *s = p->data;
    char *ct = s->resp->content_type;

    if (!s->in_value) {
        s->in_value = 1;
        s->is_ctype = s->field_len == 12 && strncasecmp(s->field, "content-type", 12) == 0;
        if (s->is_ctype)
            s->ctype_len = 0;
    }
    if (s->is_ctype) {
        /* Longer values are cut: only the media type is of interest. */
        size_t room = sizeof(s->resp->content_type) - 1 - s->ctype_len;
        size_t n = len < room ? len : room;

        memcpy(ct + s->ctype_len, at, n);
        s->ctype_len += n;
        ct[s->ctype_len] = '\0';
    }
    return count_header(s, len);
}

static int on_headers_complete(http_parser *p)
{
    struct rstate *s = p->data;

    /* http_parser sets content_length to ULLONG_MAX when there is none. */
    if (p->content_length != ULLONG_MAX && p->content_length > HTTPC_MAX_BODY) {
        s->err = -EFBIG;
        return -1;
    }
    s->streaming = s->on_body != NULL && p->status_code >= 200 && p->status_code < 300;
    return s->head_only ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct rstate *s = p->data;
    int rc;

    if (s->streaming) {
        rc = s->on_body(s->body_arg, at, len);
        if (rc != 0) {
            s->err = rc < 0 ? rc : -ECANCELED;
            return -1;
        }
        return 0;
    }
    if (len > HTTPC_MAX_BODY - s->body_len) {
        s->err = -EFBIG;
        return -1;
    }
    if (s->body_len + len + 1 > s->body_cap) {
        size_t cap = s->body_cap != 0 ? s->body_cap : 16384;
        char *nb;

        while (cap < s->body_len + len + 1)
            cap *= 2;
        if (cap > HTTPC_MAX_BODY + 1)
            cap = HTTPC_MAX_BODY + 1;
        nb = realloc(s->body, cap);
        if (nb == NULL) {
            s->err = -ENOMEM;
            return -1;
        }
        s->body = nb;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, at, len);
    s->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct rstate *s = p->data;

    /* An interim 1xx answer is followed by the real one on the same stream. */
    if (p->status_code < 200) {
        rstate_reset(s);
        return 0;
    }
    s->resp->status = (int)p->status_code;
    s->done = 1;
    /* Anything after the response (there should be nothing) is not ours. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Feeds received bytes (len 0 = end of stream) to the parser. */
static int feed(http_parser *p, struct rstate *s, const char *data, size_t len, char *err,
                size_t cap)
{
    size_t used = http_parser_execute(p, &parser_settings, data, len);
    enum http_errno e = HTTP_PARSER_ERRNO(p);

    if (s->done)
        return 0;
    if (s->err == -EFBIG) {
        errmsg_set(err, cap,
                   "the hub's response is too large (over %u MiB of body or %u KiB of headers)",
                   HTTPC_MAX_BODY >> 20, HTTPC_MAX_HEADERS >> 10);
        return -EFBIG;
    }
    if (s->err != 0 && s->streaming) {
        errmsg_set(err, cap, "the stream was ended by its reader");
        return s->err;
    }
    if (s->err != 0) {
        errmsg_set(err, cap, "out of memory reading the hub's response");
        return s->err;
    }
    if (e == HPE_HEADER_OVERFLOW) {
        errmsg_set(err, cap, "the hub's response headers are too large");
        return -EFBIG;
    }
    if (e != HPE_OK || used != len) {
        errmsg_set(err, cap, "malformed HTTP response from the hub: %s", http_errno_description(e));
        return -EPROTO;
    }
    return 0;
}

/* Hands the body read so far to resp, NUL-terminated (an empty one too). */
static int take_body(struct rstate *s, struct httpc_response *resp, char *err, size_t cap)
{
    if (s->body == NULL) {
        s->body = malloc(1);
        if (s->body == NULL) {
            errmsg_set(err, cap, "out of memory");
            return -ENOMEM;
        }
    }
    s->body[s->body_len] = '\0';
    resp->body = s->body;
    resp->body_len = s->body_len;
    s->body = NULL;
    return 0;
}

int httpc_parse_response(const uint8_t *data, size_t len, size_t piece, int head_only,
                         struct httpc_response *resp, char *err, size_t err_cap)
{
    struct rstate st = {0};
    http_parser parser;
    size_t off = 0;
    int rc = 0;

    memset(resp, 0, sizeof(*resp));
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    st.resp = resp;
    st.head_only = head_only;
    while (rc == 0 && !st.done && off < len) {
        size_t n = len - off < piece ? len - off : piece;
        rc = feed(&parser, &st, (const char *)data + off, n, err, err_cap);
        off += n;
    }
    if (rc == 0 && !st.done)
        rc = feed(&parser, &st, NULL, 0, err, err_cap);
    if (rc == 0 && !st.done) {
        errmsg_set(err, err_cap, "the hub closed the connection before a complete response");
        rc = -EPROTO;
    }
    if (rc == 0)
        rc = take_body(&st, resp, err, err_cap);
    if (rc != 0)
        memset(resp, 0, sizeof(*resp));
    free(st.body);
    return rc;
}

static int build_request(const struct httpc_target *t, const char *method, const char *path,
                         const char *bearer, const char *content_type, size_t body_len, char **out,
                         size_t *out_len)
{
    int has_body = body_len > 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0);
    int v6 = strchr(t->host, ':') != NULL;
    size_t cap = 512 + strlen(path) + strlen(t->host) + (bearer ? strlen(bearer) : 0) +
                 (content_type ? strlen(content_type) : 0);
    char *req = malloc(cap);
    int n;

    if (req == NULL)
        return -ENOMEM;
    n = snprintf(req, cap,
                 "%s %s HTTP/1.1\r\n"
                 "Host: %s%s%s:%d\r\n"
                 "User-Agent: tether/%s\r\n"
                 "Accept: application/json\r\n"
                 "%s%s%s"
                 "%s%s%s"
                 "Connection: close\r\n",
                 method, path, v6 ? "[" : "", t->host, v6 ? "]" : "", t->port, TETHER_VERSION,
                 bearer ? "Authorization: Bearer " : "", bearer ? bearer : "", bearer ? "\r\n" : "",
                 has_body && content_type ? "Content-Type: " : "",
                 has_body && content_type ? content_type : "",
                 has_body && content_type ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap) {
        free(req);
        return -EIO;
    }
    if (has_body)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if ((size_t)n >= cap) {
        free(req);
        return -EIO;
    }
    *out = req;
    *out_len = (size_t)n;
    return 0;
}

int httpc_request(const struct httpc_target *t, const char *method, const char *path,
                  const char *bearer, const char *content_type, const char *body, size_t body_len,
                  struct httpc_response *resp, char *err, size_t err_cap)
{
    int timeout = t != NULL && t->timeout_ms > 0 ? t->timeout_ms : HTTPC_DEFAULT_TIMEOUT;
    int64_t deadline = net_now_ms() + timeout;
    struct tls_pin_verifier verifier = {0};
    struct tls_conn tls = {0};
    struct rstate st = {0};
    WOLFSSL_CTX *ctx = NULL;
    http_parser parser;
    char *req = NULL;
    size_t req_len = 0;
    uint8_t rbuf[16384];
    int fd = -1, rc = -EIO, write_rc;
    ssize_t n;

    if (resp != NULL)
        memset(resp, 0, sizeof(*resp));
    if (err != NULL && err_cap > 0)
        err[0] = '\0';
    if (t == NULL || resp == NULL || method == NULL || path == NULL || t->host[0] == '\0' ||
        t->port <= 0 || t->port > 65535 || (body == NULL && body_len > 0)) {
        errmsg_set(err, err_cap, "invalid request");
        rc = -EINVAL;
        goto out;
    }
    if (!crypto_pin_valid(t->pin)) {
        errmsg_set(err, err_cap, "no valid hub key pin configured (expected sha256//...)");
        rc = -EINVAL;
        goto out;
    }
    if (method[0] == '\0' || !safe_text(method, 0) || path[0] != '/' || !safe_text(path, 0) ||
        (bearer != NULL && !safe_text(bearer, 0)) ||
        (content_type != NULL && !safe_text(content_type, 1))) {
        errmsg_set(err, err_cap,
                   "invalid request: control characters or spaces in method, path or headers");
        rc = -EINVAL;
        goto out;
    }
    rc = build_request(t, method, path, bearer, content_type, body_len, &req, &req_len);
    if (rc != 0) {
        errmsg_set(err, err_cap, "cannot build the request");
        goto out;
    }

    if (t->proxy != NULL) {
        if (t->proxy->host == NULL || t->proxy->request == NULL) {
            errmsg_set(err, err_cap, "invalid proxy");
            rc = -EINVAL;
            goto out;
        }
        rc =
            tcp_connect_first("proxy", t->proxy->host, t->proxy->port, deadline, &fd, err, err_cap);
        if (rc == 0)
            rc = proxy_connect(t, fd, deadline, err, err_cap);
    } else {
        rc = tcp_connect_first("hub", t->host, t->port, deadline, &fd, err, err_cap);
    }
    if (rc != 0)
        goto out;

    rc = tls_ctx_client(NULL, &ctx);
    if (rc != 0) {
        errmsg_set(err, err_cap, "cannot set up TLS");
        goto out;
    }
    /* No SNI for an address. Continue on an ALPN mismatch: the hub speaks
     * HTTP/1.1 to users whatever ALPN says. */
    rc = tls_conn_init(&tls, ctx, is_ip_literal(t->host) ? NULL : t->host, "http/1.1", 0);
    if (rc != 0) {
        errmsg_set(err, err_cap, "cannot set up TLS");
        goto out;
    }
    verifier.check = check_pin;
    verifier.arg = (void *)t;
    tls_attach_verifier(tls.ssl, &verifier);

    rc = tlsfd_handshake(&tls, fd, deadline);
    if (rc != 0 && verifier.seen_pin[0] != '\0' && verifier.result != 0) {
        errmsg_set(err, err_cap, PIN_MISMATCH_MSG ": pinned %s, the hub presented %s", t->pin,
                   verifier.seen_pin);
        rc = -EKEYREJECTED;
        goto out;
    }
    if (rc == -ETIMEDOUT) {
        errmsg_set(err, err_cap, "timed out in the TLS handshake with %s:%d", t->host, t->port);
        goto out;
    }
    if (rc == -ECONNRESET) {
        errmsg_set(
            err, err_cap,
            "TLS handshake with %s:%d failed: the connection was closed (is it a tether hub?)",
            t->host, t->port);
        rc = -EPROTO;
        goto out;
    }
    if (rc != 0) {
        errmsg_set(err, err_cap, "TLS handshake with %s:%d failed: %s", t->host, t->port,
                   tls_error_string(&tls));
        rc = -EPROTO;
        goto out;
    }

    /* A hub may refuse a request (413, 401) and close before reading all of
     * it; its answer is still worth reading, so a failed write only counts
     * when no response arrives. */
    write_rc = tlsfd_send(&tls, fd, req, req_len, deadline);
    if (write_rc == 0 && body_len > 0)
        write_rc = tlsfd_send(&tls, fd, body, body_len, deadline);
    if (write_rc == -ETIMEDOUT) {
        rc = write_rc;
        errmsg_set(err, err_cap, "timed out sending the request to %s:%d", t->host, t->port);
        goto out;
    }

    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    st.resp = resp;
    st.head_only = strcmp(method, "HEAD") == 0;
    st.on_body = t->on_body;
    st.body_arg = t->body_arg;
    while (!st.done) {
        n = tlsfd_recv(&tls, fd, rbuf, sizeof(rbuf), deadline);
        if (n > 0 && st.streaming)
            deadline = net_now_ms() + timeout; /* a silence limit, not a total */
        if (n > 0) {
            rc = feed(&parser, &st, (const char *)rbuf, (size_t)n, err, err_cap);
            if (rc != 0)
                goto out;
            continue;
        }
        if (n == -ETIMEDOUT) {
            if (st.streaming)
                errmsg_set(err, err_cap, "%s:%d sent nothing for %d s", t->host, t->port,
                           (timeout + 999) / 1000);
            else
                errmsg_set(err, err_cap, "no response from %s:%d within %d s", t->host, t->port,
                           (timeout + 999) / 1000);
            rc = -ETIMEDOUT;
            goto out;
        }
        if (n == 0 && st.streaming) {
            /* An event stream has no natural end: the hub went away. */
            errmsg_set(err, err_cap, "%s:%d closed the stream", t->host, t->port);
            rc = -ECONNRESET;
            goto out;
        }
        if (n == 0) {
            /* End of stream ends a response that has no length. */
            rc = feed(&parser, &st, NULL, 0, err, err_cap);
            if (rc != 0)
                goto out;
            if (st.done)
                break;
            if (write_rc != 0)
                errmsg_set(err, err_cap, "the connection to %s:%d broke while sending the request",
                           t->host, t->port);
            else
                errmsg_set(err, err_cap,
                           "the hub closed the connection before a complete response");
            rc = -EPROTO;
            goto out;
        }
        errmsg_set(err, err_cap, "reading the response from %s:%d failed: %s", t->host, t->port,
                   n == -EPROTO ? "TLS error" : strerror((int)-n));
        rc = -EIO;
        goto out;
    }

    rc = take_body(&st, resp, err, err_cap);
out:
    if (rc != 0 && resp != NULL)
        memset(resp, 0, sizeof(*resp));
    free(st.body);
    /* The request head may carry a bearer token. */
    if (req != NULL)
        explicit_bzero(req, req_len);
    free(req);
    tls_conn_free(&tls);
    if (ctx != NULL)
        wolfSSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    return rc;
}
