/* The HTTP/1.1 front end of the hub's users (http-parser): requests parsed one at a time,
 * pipelined ones kept back until the current answer is out. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/crypto.h"
#include "../../common/hfield.h"
#include "http_int.h"

static http_parser_settings h1_settings;
static void h1_finish_request(struct user_conn *uc);

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

static int h1_message_begin(http_parser *p)
{
    struct user_conn *uc = p->data;
    /* A later head has as long as the first had; the first's deadline
     * started with the connection. */
    if (uc->heads > 0 && uc->wait == UC_IDLE)
        uc_arm(uc, UC_HEAD);
    uc->cur = ureq_new(uc, 0);
    uc->in_value = 0;
    buf_free(&uc->hname);
    buf_free(&uc->hval);
    return uc->cur == NULL ? -1 : 0;
}

static int h1_url(http_parser *p, const char *at, size_t len)
{
    struct user_conn *uc = p->data;
    struct ureq *r = uc->cur;
    size_t old = r->target ? strlen(r->target) : 0;
    char *n;

    /* The method is whole once the target starts: a refusal of a HEAD
     * (h1_bad_request) must know it, whenever it comes. */
    if (old == 0)
        snprintf(r->method, sizeof(r->method), "%s", http_method_str((enum http_method)p->method));
    if (old + len > TARGET_MAX)
        return -1;
    n = realloc(r->target, old + len + 1);
    if (n == NULL)
        return -1;
    memcpy(n + old, at, len);
    n[old + len] = '\0';
    r->target = n;
    return 0;
}

static int h1_flush_header(struct user_conn *uc)
{
    int rc = 0;
    /* http-parser (not strict) lets a space into a name: "Content-Length : 5"
     * would count as a length yet go on as another header. RFC 9112 5.1: 400. */
    if (uc->hname.len > 0 &&
        !hfield_token_valid((const char *)buf_head(&uc->hname), uc->hname.len)) {
        uc->bad = "invalid header field name";
        return -EINVAL;
    }
    if (uc->hname.len > 0)
        rc = ureq_add_header(uc->cur, (const char *)buf_head(&uc->hname), uc->hname.len,
                             uc->hval.len ? (const char *)buf_head(&uc->hval) : "", uc->hval.len);
    buf_consume(&uc->hname, uc->hname.len);
    buf_consume(&uc->hval, uc->hval.len);
    return rc;
}

static int h1_header_field(http_parser *p, const char *at, size_t len)
{
    struct user_conn *uc = p->data;
    if (uc->in_value) {
        if (h1_flush_header(uc) != 0)
            return -1;
        uc->in_value = 0;
    }
    if (uc->hname.len + len > H2_HEADER_BYTES_MAX)
        return -1;
    return buf_append(&uc->hname, at, len) ? -1 : 0;
}

static int h1_header_value(http_parser *p, const char *at, size_t len)
{
    struct user_conn *uc = p->data;
    uc->in_value = 1;
    if (uc->hval.len + len > H2_HEADER_BYTES_MAX)
        return -1;
    return buf_append(&uc->hval, at, len) ? -1 : 0;
}

/* An RFC 6455 opening handshake (GET, Upgrade: websocket, Connection:
 * upgrade, a 16-byte Sec-WebSocket-Key, version 13) becomes a byte stream:
 * the same CONNECT :protocol websocket an HTTP/2 user sends, answered 101
 * once the site's service accepted (h1_write_head), then raw bytes both
 * ways until either side closes the connection. Returns 1 when r is one. */
static int h1_websocket(struct user_conn *uc, http_parser *p, struct ureq *r)
{
    const char *up = ureq_header(r, "upgrade"), *key = ureq_header(r, "sec-websocket-key");
    const char *ver = ureq_header(r, "sec-websocket-version");

    if (!p->upgrade || p->method != HTTP_GET || up == NULL || strcasecmp(up, "websocket") != 0 ||
        key == NULL || strlen(key) != 24 || ver == NULL || strcmp(ver, "13") != 0 || r->has_body)
        return 0;
    r->bytestream = 1;
    snprintf(r->protocol, sizeof(r->protocol), "websocket");
    snprintf(r->method, sizeof(r->method), "CONNECT");
    r->has_body = 1; /* the user's frames */
    r->content_length = -1;
    uc->close_after = 1; /* the connection ends with the WebSocket */
    return 1;
}

/* Bytes of an upgraded connection: the user's side of the byte stream. */
static void h1_raw(struct user_conn *uc, const uint8_t *data, size_t len)
{
    struct ureq *r = uc->cur;

    if (r != NULL && len > 0 && r->handler != NULL && r->handler->on_body != NULL)
        r->handler->on_body(r, data, len);
}

static int h1_headers_complete(http_parser *p)
{
    struct user_conn *uc = p->data;
    struct ureq *r = uc->cur;
    const char *expect;

    if (uc->in_value && h1_flush_header(uc) != 0)
        return -1;
    uc->in_value = 0;
    /* Known before the checks below (also when the target was empty). */
    snprintf(r->method, sizeof(r->method), "%s", http_method_str((enum http_method)p->method));
    /* RFC 9112 3.2: two Hosts make the request ambiguous for whoever reads one. */
    for (size_t i = 0, n_host = 0; i < r->n_hdrs; i++)
        if (strcmp(r->hdrs[i].name, "host") == 0 && ++n_host > 1) {
            uc->bad = "more than one Host";
            return -1;
        }
    /* http-parser refuses a Transfer-Encoding that does not end in chunked only
     * after this callback, once the request has gone on. Refuse it here, and
     * any other than exactly "chunked" (RFC 9112 6.1: we know no other). */
    if (p->uses_transfer_encoding) {
        const char *te = NULL;
        int n_te = 0;
        for (size_t i = 0; i < r->n_hdrs; i++)
            if (strcmp(r->hdrs[i].name, "transfer-encoding") == 0) {
                te = r->hdrs[i].value;
                n_te++;
            }
        if (n_te != 1 || strcasecmp(te, "chunked") != 0 || !(p->flags & F_CHUNKED)) {
            uc->bad = "Transfer-Encoding other than chunked";
            return -1;
        }
    }

    uc->heads++;
    uc_busy(uc);
    r->in_trailers = 1; /* a chunked body's trailer section, if any, comes next */
    if (r->target == NULL)
        r->target = strdup("/");
    if (p->flags & F_CHUNKED) {
        r->has_body = 1;
        r->content_length = -1;
    } else if (p->content_length != ULLONG_MAX && p->content_length > 0) {
        r->has_body = 1;
        r->content_length = (int64_t)p->content_length;
    } else {
        r->content_length = 0;
    }
    r->head_only = p->method == HTTP_HEAD;
    if (!http_should_keep_alive(p))
        uc->close_after = 1;
    expect = ureq_header(r, "expect");
    if (!h1_websocket(uc, p, r) && r->has_body)
        body_watch(uc, r);
    uc->hub->dispatch(uc->hub, r);
    if (uc->dead)
        return -1;
    if (expect != NULL && r->has_body && !r->resp_started && r->handler != NULL) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        conn_write(uc->conn, (const uint8_t *)cont, sizeof(cont) - 1);
    }
    return 0;
}

static int h1_body(http_parser *p, const char *at, size_t len)
{
    struct user_conn *uc = p->data;
    struct ureq *r = uc->cur;
    if (r != NULL && len > 0)
        r->body_at = uv_now(uc->hub->loop);
    if (r != NULL && r->handler != NULL && r->handler->on_body != NULL)
        r->handler->on_body(r, (const uint8_t *)at, len);
    return 0;
}

static int h1_message_complete(http_parser *p)
{
    struct user_conn *uc = p->data;
    struct ureq *r = uc->cur;

    if (r == NULL || r->bytestream)
        return 0; /* an upgrade: what follows is the byte stream (h1_raw) */
    if (uc->in_value && h1_flush_header(uc) != 0) /* the last trailer field */
        return -1;
    uc->in_value = 0;
    r->req_ended = 1;
    /* One request at a time: later pipelined bytes wait in the backlog. */
    http_parser_pause(p, 1);
    if (r->handler != NULL && r->handler->on_end != NULL)
        r->handler->on_end(r);
    else if (r->resp_ended)
        h1_finish_request(uc);
    return 0;
}

static void h1_bad_request(struct user_conn *uc, enum http_errno e)
{
    char body[256];
    int n = snprintf(body, sizeof(body),
                     "{\"error\":\"bad_request\",\"detail\":\"malformed HTTP/1.1 request: %s\"}",
                     uc->bad != NULL ? uc->bad : http_errno_description(e));
    char head[256];
    int hn = snprintf(head, sizeof(head),
                      "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n\r\n",
                      n);
    if (uc->cur == NULL || !uc->cur->resp_started) {
        conn_write(uc->conn, (const uint8_t *)head, (size_t)hn);
        /* RFC 9110 9.3.2: never a body after a HEAD, or the client would
         * read it as the next response. */
        if (uc->cur == NULL || strcmp(uc->cur->method, "HEAD") != 0)
            conn_write(uc->conn, (const uint8_t *)body, (size_t)n);
    }
    conn_close_after_flush(uc->conn, "bad request");
}

static int h1_process(struct user_conn *uc, const uint8_t *data, size_t len)
{
    size_t n;
    enum http_errno e;

    /* Timed out: the 408 or close is on its way; nothing more is parsed. */
    if (uc->wait == UC_CLOSE)
        return 0;
    n = http_parser_execute(&uc->parser, &h1_settings, (const char *)data, len);
    e = HTTP_PARSER_ERRNO(&uc->parser);

    if (uc->dead || uc->conn->closing)
        return 0;
    if (e == HPE_OK && uc->cur != NULL && uc->cur->bytestream) {
        h1_raw(uc, data + n, len - n); /* the bytes after the upgrade's head */
        return 0;
    }
    if (e == HPE_PAUSED) {
        if (n < len) {
            if (buf_append(&uc->backlog, data + n, len - n) != 0) {
                /* The next request's bytes cannot be kept: never parse a
                 * stream with a hole in it. */
                conn_close(uc->conn, "out of memory");
                return 0;
            }
            conn_pause_reading(uc->conn, 1);
        }
        return 0;
    }
    if (e != HPE_OK) {
        h1_bad_request(uc, e);
        return 0;
    }
    return 0;
}

static void resume_cb(uv_timer_t *t)
{
    struct user_conn *uc = t->data;
    struct buf pending;

    if (uc->dead || uc->conn == NULL || uc->conn->closing)
        return;
    /* A client that pipelines requests and reads no answers must not make
     * the hub hold one response after another: the next request is parsed
     * once this one's output went below the high-water mark (user_drain_cb). */
    if (conn_out_pending(uc->conn) >= CONN_HIGH_WATER) {
        uc->resume_wait = 1;
        return;
    }
    uc->resume_wait = 0;
    http_parser_pause(&uc->parser, 0);
    pending = uc->backlog;
    buf_init(&uc->backlog);
    conn_pause_reading(uc->conn, 0);
    if (pending.len > 0)
        h1_process(uc, buf_head(&pending), pending.len);
    buf_free(&pending);
    conn_flush(uc->conn);
}

/* The current request and its response are both complete. */
static void h1_finish_request(struct user_conn *uc)
{
    struct ureq *r = uc->cur;
    uc->cur = NULL;
    if (r != NULL)
        ureq_release(r);
    if (uc->close_after) {
        conn_close_after_flush(uc->conn, "request done");
        return;
    }
    uc_arm(uc, UC_IDLE);
    /* Parse the next request from the loop, not from inside a callback. */
    uv_timer_start(&uc->resume_timer, resume_cb, 0, 0);
}

/* Appends a response's header fields, without the hop-by-hop ones and
 * without Content-Length (the head's framing writes its own). */
static int append_fields(struct buf *b, const nghttp2_nv *hdrs, size_t n)
{
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        if (h2_hop_by_hop((const char *)hdrs[i].name, hdrs[i].namelen) ||
            (hdrs[i].namelen == 14 &&
             strncasecmp((const char *)hdrs[i].name, "content-length", 14) == 0))
            continue;
        rc |= buf_append(b, hdrs[i].name, hdrs[i].namelen);
        rc |= buf_append(b, ": ", 2);
        rc |= buf_append(b, hdrs[i].value, hdrs[i].valuelen);
        rc |= buf_append(b, "\r\n", 2);
    }
    return rc;
}

int h1_write_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                  int64_t content_length)
{
    struct user_conn *uc = r->uc;
    struct buf b;
    char line[128];
    int rc = 0;

    buf_init(&b);
    if (r->bytestream && status >= 200 && status <= 299) {
        /* The service accepted the WebSocket: 101 with the user's Accept. */
        const char *key = ureq_header(r, "sec-websocket-key");
        char acc[CRYPTO_WS_ACCEPT_LEN + 1];

        if (key == NULL || crypto_ws_accept(key, strlen(key), acc) != 0) {
            conn_close(uc->conn, "cannot compute Sec-WebSocket-Accept");
            return -EINVAL;
        }
        snprintf(line, sizeof(line),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n",
                 acc);
        rc |= buf_append(&b, line, strlen(line));
        rc |= append_fields(&b, hdrs, n);
        goto write;
    }
    r->bytestream = 0; /* a refused upgrade is an ordinary answer (the conn closes after) */
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    rc |= buf_append(&b, line, strlen(line));
    rc |= append_fields(&b, hdrs, n);
    if (status == 204 || status == 304 || status < 200) {
        r->head_only = 1;
    } else if (content_length >= 0) {
        snprintf(line, sizeof(line), "Content-Length: %lld\r\n", (long long)content_length);
        rc |= buf_append(&b, line, strlen(line));
    } else if (!r->head_only) {
        r->resp_chunked = 1;
        rc |= buf_append(&b, "Transfer-Encoding: chunked\r\n", 28);
    }
    if (!r->req_ended && r->has_body)
        uc->close_after = 1; /* unread request body: cannot reuse the connection */
    if (uc->close_after)
        rc |= buf_append(&b, "Connection: close\r\n", 19);
write:
    rc |= buf_append(&b, "\r\n", 2);
    if (rc != 0) {
        /* A head with a header missing is a different answer: send none. */
        buf_free(&b);
        conn_close(uc->conn, "out of memory");
        return -ENOMEM;
    }
    rc = conn_write(uc->conn, buf_head(&b), b.len);
    buf_free(&b);
    conn_flush(uc->conn);
    return rc;
}

int h1_write_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct user_conn *uc = r->uc;
    char hdr[24];
    int rc;

    if (r->resp_chunked) {
        snprintf(hdr, sizeof(hdr), "%zx\r\n", len);
        rc = conn_write(uc->conn, (const uint8_t *)hdr, strlen(hdr));
        if (rc == 0)
            rc = conn_write(uc->conn, data, len);
        if (rc == 0)
            rc = conn_write(uc->conn, (const uint8_t *)"\r\n", 2);
    } else {
        rc = conn_write(uc->conn, data, len);
    }
    conn_flush(uc->conn);
    return rc;
}

void h1_end(struct ureq *r)
{
    struct user_conn *uc = r->uc;

    if (r->resp_chunked && !r->head_only) {
        nghttp2_nv t[H2_HEADER_COUNT_MAX];
        size_t n = h2_pairs_nv(&r->trl, r->n_trl, t, H2_HEADER_COUNT_MAX);

        /* RFC 9112 7.1.2: the trailer section follows the last chunk. */
        conn_write(uc->conn, (const uint8_t *)"0\r\n", 3);
        for (size_t i = 0; i < n; i++) {
            conn_write(uc->conn, t[i].name, t[i].namelen);
            conn_write(uc->conn, (const uint8_t *)": ", 2);
            conn_write(uc->conn, t[i].value, t[i].valuelen);
            conn_write(uc->conn, (const uint8_t *)"\r\n", 2);
        }
        conn_write(uc->conn, (const uint8_t *)"\r\n", 2);
    }
    conn_flush(uc->conn);
    if (r->bytestream) {
        /* The service ended the WebSocket's connection: so does the hub
         * (HTTP/1.1 over TLS has no half-close to offer). */
        conn_close_after_flush(uc->conn, "websocket ended");
        return;
    }
    r->handler = NULL;
    if (r->req_ended)
        h1_finish_request(uc);
    else if (r->has_body)
        conn_close_after_flush(uc->conn, "response sent before request body ended");
    /* else h1_message_complete finishes the request when it is parsed */
}

void h1_start(struct user_conn *uc)
{
    http_parser_init(&uc->parser, HTTP_REQUEST);
    uc->parser.data = uc;
}

int h1_data(struct user_conn *uc, const uint8_t *data, size_t len)
{
    if (uc->wait == UC_CLOSE)
        return 0; /* timed out: see h1_process */
    if (uc->cur != NULL && uc->cur->bytestream) {
        h1_raw(uc, data, len);
        return 0;
    }
    if (uc->backlog.len > 0 || HTTP_PARSER_ERRNO(&uc->parser) == HPE_PAUSED) {
        conn_pause_reading(uc->conn, 1);
        return buf_append(&uc->backlog, data, len);
    }
    return h1_process(uc, data, len);
}

void h1_drain(struct user_conn *uc)
{
    if (uc->cur != NULL && uc->cur->handler != NULL && uc->cur->handler->on_drain != NULL)
        uc->cur->handler->on_drain(uc->cur);
    else if (uc->resume_wait && conn_out_pending(uc->conn) < CONN_HIGH_WATER)
        uv_timer_start(&uc->resume_timer, resume_cb, 0, 0);
}

void h1_close(struct user_conn *uc)
{
    if (uc->cur != NULL) {
        struct ureq *r = uc->cur;

        uc->cur = NULL;
        ureq_abort(r);
        ureq_release(r);
    }
    buf_free(&uc->backlog);
    buf_free(&uc->hname);
    buf_free(&uc->hval);
}

static http_parser_settings h1_settings = {
    .on_message_begin = h1_message_begin,
    .on_url = h1_url,
    .on_header_field = h1_header_field,
    .on_header_value = h1_header_value,
    .on_headers_complete = h1_headers_complete,
    .on_body = h1_body,
    .on_message_complete = h1_message_complete,
};
