/* User-facing front end of the hub: HTTP/1.1 (http-parser) and HTTP/2 (nghttp2) connections
 * producing requests. */
/* SPDX-License-Identifier: MIT */
#include "user.h"

#include <ctype.h>
#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/h2.h"
#include "../../common/hfield.h"

#define TARGET_MAX         (8 * 1024)
#define USER_MAX_STREAMS   128
#define USER_STREAM_WINDOW (1 << 20)
#define USER_CONN_WINDOW   (16 << 20)

/* What the connection's deadline is waiting for. */
enum uc_wait {
    UC_BUSY,  /* a request is in progress: no deadline here */
    UC_HEAD,  /* a request head: the first one, or one that has begun */
    UC_IDLE,  /* the next request (keep-alive; HTTP/2 with no stream open) */
    UC_CLOSE, /* timed out, closing after a last word: hard close when it fires */
};

struct user_conn {
    struct hub *hub;
    struct conn *conn;
    int is_h2;
    /* HTTP/1.1 */
    http_parser parser;
    struct ureq *cur;
    struct buf backlog; /* bytes received while a response was in progress */
    int resume_wait;    /* the next request waits for the output to drain */
    struct buf hname, hval;
    int in_value;
    const char *bad; /* why a callback refused the request (static), or NULL */
    int close_after;
    int dead;
    /* HTTP/2 */
    struct h2 h2;
    struct ureq *streams;
    int h2_active; /* streams whose request head is complete and response not yet ended */
    uv_timer_t resume_timer;
    /* Deadlines while no request is in progress (see uc_arm). */
    uv_timer_t idle_timer;
    enum uc_wait wait;
    int heads;             /* request heads completed */
    uint64_t armed_out;    /* conn->bytes_out when the deadline was armed */
    uv_timer_t body_timer; /* request_body_timeout of the bodies awaited (body_cb) */
    int timers_open;       /* handles to close before uc is freed */
};

static http_parser_settings h1_settings;

/* --- deadlines (request_head_timeout, idle_timeout) --- */

/* Time for a closing connection's last bytes (408, GOAWAY) to go out. */
#define UC_LINGER_MS 2000

static void idle_cb(uv_timer_t *t);

static void uc_arm(struct user_conn *uc, enum uc_wait what)
{
    uint64_t ms = what == UC_HEAD   ? uc->hub->cfg.request_head_timeout_ms
                  : what == UC_IDLE ? uc->hub->cfg.idle_timeout_ms
                                    : UC_LINGER_MS;
    uc->wait = what;
    uc->armed_out = uc->conn->bytes_out;
    uv_timer_start(&uc->idle_timer, idle_cb, ms, 0);
}

static void uc_busy(struct user_conn *uc)
{
    uc->wait = UC_BUSY;
    uv_timer_stop(&uc->idle_timer);
}

static void idle_cb(uv_timer_t *t)
{
    struct user_conn *uc = t->data;
    struct conn *c = uc->conn;
    static const char timeout408[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                     "Connection: close\r\n\r\n";

    if (uc->dead || c == NULL || c->closing || uc->wait == UC_BUSY)
        return;
    if (uc->wait == UC_CLOSE) {
        conn_close(c, "idle close unanswered");
        return;
    }
    /* A response still going out to a client that reads it is no idling
     * (HTTP/2: a stream whose response ended may still have bytes to send). */
    if ((conn_out_pending(c) > 0 || (uc->is_h2 && uc->streams != NULL)) &&
        c->bytes_out != uc->armed_out) {
        uc_arm(uc, uc->wait);
        return;
    }
    if (c->close_after_flush) {
        conn_close(c, "idle close unanswered");
        return;
    }
    uc->hub->n_users_idle_closed++;
    if (uc->is_h2) {
        nghttp2_submit_goaway(uc->h2.s, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(uc->h2.s), NGHTTP2_NO_ERROR,
                              NULL, 0);
        h2_send(&uc->h2);
    } else if (uc->wait == UC_HEAD && uc->cur != NULL && !uc->cur->resp_started) {
        conn_write(c, (const uint8_t *)timeout408, sizeof(timeout408) - 1);
    }
    conn_close_after_flush(c, uc->wait == UC_HEAD ? "request head timeout" : "idle timeout");
    if (!c->closing)
        uc_arm(uc, UC_CLOSE);
}

/* --- request body deadline (request_body_timeout) --- */

static void body_cb(uv_timer_t *t);
static void ureq_abort(struct ureq *r);

/* r's body is awaited from now: the conn's body timer fires at the earliest
 * deadline of the bodies it waits for (and re-arms itself from there). */
static void body_watch(struct user_conn *uc, struct ureq *r)
{
    if (uc->hub->cfg.request_body_timeout_ms == 0)
        return; /* a hub set up without the default (hub.conf allows >= 0.1 s) */
    r->body_watch = 1;
    r->body_at = uv_now(uc->hub->loop);
    if (!uv_is_active((uv_handle_t *)&uc->body_timer))
        uv_timer_start(&uc->body_timer, body_cb, uc->hub->cfg.request_body_timeout_ms, 0);
}

static int body_waiting(const struct ureq *r)
{
    return r->body_watch && !r->req_ended && !r->resp_ended;
}

/* No body byte for request_body_timeout, whether the client stalls or the
 * hub stopped reading because the site does not take the upload: the
 * request is cut (408 if no answer began, else reset). */
static void body_cut(struct user_conn *uc, struct ureq *r)
{
    char detail[96];

    r->body_watch = 0;
    uc->hub->n_users_idle_closed++;
    ureq_abort(r);
    if (r->resp_started) {
        ureq_reset(r);
        return;
    }
    snprintf(detail, sizeof(detail), "no request body bytes for %llu ms",
             (unsigned long long)uc->hub->cfg.request_body_timeout_ms);
    ureq_error(r, 408, "request_timeout", detail);
    /* HTTP/1.1: the conn closes after the 408 (the body is unread), and
     * what the client sends meanwhile is ignored. */
    if (!uc->is_h2 && !uc->dead && !uc->conn->closing)
        uc_arm(uc, UC_CLOSE);
}

static void body_cb(uv_timer_t *t)
{
    struct user_conn *uc = t->data;
    uint64_t lim = uc->hub->cfg.request_body_timeout_ms, now, next;
    struct ureq *r;

again:
    if (uc->dead || uc->conn == NULL || uc->conn->closing)
        return;
    now = uv_now(uc->hub->loop);
    next = 0;
    for (r = uc->is_h2 ? uc->streams : uc->cur; r != NULL; r = uc->is_h2 ? r->next : NULL) {
        if (!body_waiting(r))
            continue;
        if (now - r->body_at >= lim) {
            /* Cutting may close and free streams: scan again. */
            body_cut(uc, r);
            goto again;
        }
        if (next == 0 || lim - (now - r->body_at) < next)
            next = lim - (now - r->body_at);
    }
    if (next > 0)
        uv_timer_start(&uc->body_timer, body_cb, next, 0);
}

/* --- requests --- */

static struct ureq *ureq_new(struct user_conn *uc, int32_t sid)
{
    struct ureq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->uc = uc;
    r->sid = sid;
    r->content_length = -1;
    buf_init(&r->out);
    snprintf(r->remote, sizeof(r->remote), "%s", uc->conn->peer);
    return r;
}

static void ureq_free(struct ureq *r)
{
    for (size_t i = 0; i < r->n_hdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    free(r->target);
    buf_free(&r->out);
    free(r);
}

static int ureq_add_header(struct ureq *r, const char *name, size_t nl, const char *value,
                           size_t vl)
{
    struct ureq_header *n;
    char *nm, *vv;

    if (h2_header_budget(&r->budget, nl, vl) != 0)
        return -E2BIG;
    n = realloc(r->hdrs, (r->n_hdrs + 1) * sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    r->hdrs = n;
    nm = strndup(name, nl);
    vv = strndup(value, vl);
    if (nm == NULL || vv == NULL) {
        free(nm);
        free(vv);
        return -ENOMEM;
    }
    for (char *p = nm; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->hdrs[r->n_hdrs].name = nm;
    r->hdrs[r->n_hdrs].value = vv;
    r->n_hdrs++;
    return 0;
}

const char *ureq_header(const struct ureq *r, const char *name)
{
    for (size_t i = 0; i < r->n_hdrs; i++)
        if (strcmp(r->hdrs[i].name, name) == 0)
            return r->hdrs[i].value;
    return NULL;
}

void ureq_set_handler(struct ureq *r, const struct ureq_handler *hd, void *hctx)
{
    r->handler = hd;
    r->hctx = hctx;
    /* What the previous handler held is dropped with it. */
    if (r->in_held > 0 && (hd == NULL || !hd->holds_body))
        ureq_credit_body(r, r->in_held);
}

static void ureq_abort(struct ureq *r)
{
    const struct ureq_handler *hd = r->handler;
    r->handler = NULL;
    if (hd != NULL && hd->on_abort != NULL)
        hd->on_abort(r);
}

size_t ureq_backlog(const struct ureq *r)
{
    if (r->uc->dead || r->uc->conn == NULL)
        return 0;
    return conn_out_pending(r->uc->conn) + r->out.len;
}

size_t ureq_queued(const struct ureq *r)
{
    if (r->uc->dead || r->uc->conn == NULL)
        return 0;
    return r->out.len;
}

/* --- HTTP/1.1 --- */

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

static void h1_finish_request(struct user_conn *uc);

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
    if (r->has_body)
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

    if (r == NULL)
        return 0;
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
        ureq_free(r);
    if (uc->close_after) {
        conn_close_after_flush(uc->conn, "request done");
        return;
    }
    uc_arm(uc, UC_IDLE);
    /* Parse the next request from the loop, not from inside a callback. */
    uv_timer_start(&uc->resume_timer, resume_cb, 0, 0);
}

static int h1_write_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                         int64_t content_length)
{
    struct user_conn *uc = r->uc;
    struct buf b;
    char line[128];
    int rc = 0;

    buf_init(&b);
    snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    rc |= buf_append(&b, line, strlen(line));
    for (size_t i = 0; i < n; i++) {
        if (h2_hop_by_hop((const char *)hdrs[i].name, hdrs[i].namelen) ||
            (hdrs[i].namelen == 14 &&
             strncasecmp((const char *)hdrs[i].name, "content-length", 14) == 0))
            continue;
        rc |= buf_append(&b, hdrs[i].name, hdrs[i].namelen);
        rc |= buf_append(&b, ": ", 2);
        rc |= buf_append(&b, hdrs[i].value, hdrs[i].valuelen);
        rc |= buf_append(&b, "\r\n", 2);
    }
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

/* --- HTTP/2 --- */

static ssize_t h2_read_out(nghttp2_session *session, int32_t stream_id, uint8_t *dst, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    struct ureq *r = source->ptr;

    /* The bytes go out in h2_send_body() (h2_send_data_from). */
    return h2_body_read(&r->out, r->out_eof, &r->deferred, length, data_flags);
}

static int h2_send_body(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
    struct user_conn *uc = user_data;
    struct ureq *r = source->ptr;
    int rc = h2_send_data_from(&uc->h2, framehd, length, &r->out);

    if (rc == 0 && r->handler != NULL && r->handler->on_drain != NULL)
        r->handler->on_drain(r);
    return rc;
}

static struct ureq *h2_find(struct user_conn *uc, int32_t sid)
{
    return nghttp2_session_get_stream_user_data(uc->h2.s, sid);
}

static int h2_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct user_conn *uc = user_data;
    struct ureq *r;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    r = ureq_new(uc, frame->hd.stream_id);
    if (r == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
    r->next = uc->streams;
    uc->streams = r;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, r);
    return 0;
}

static int h2_on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data)
{
    struct ureq *r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (r == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0) {
        snprintf(r->method, sizeof(r->method), "%.*s", (int)valuelen, value);
        return h2_header_budget(&r->budget, namelen, valuelen);
    }
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        if (valuelen > TARGET_MAX)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        free(r->target);
        r->target = strndup((const char *)value, valuelen);
        return r->target ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (namelen > 0 && name[0] == ':') {
        if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
            return ureq_add_header(r, "host", 4, (const char *)value, valuelen)
                       ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
                       : 0;
        return 0;
    }
    if (ureq_add_header(r, (const char *)name, namelen, (const char *)value, valuelen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
        r->content_length = hfield_content_length((const char *)value, valuelen);
    }
    return 0;
}

static int h2_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct user_conn *uc = user_data;
    struct ureq *r;

    if (frame->hd.stream_id == 0)
        return 0;
    r = h2_find(uc, frame->hd.stream_id);
    if (r == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        if (r->target == NULL || r->method[0] == '\0') {
            nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_PROTOCOL_ERROR);
            return 0;
        }
        r->has_body = !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
        if (!r->has_body) {
            r->content_length = 0;
            r->req_ended = 1;
        }
        r->head_only = strcmp(r->method, "HEAD") == 0;
        r->dispatched = 1;
        r->active = 1;
        if (uc->h2_active++ == 0)
            uc_busy(uc);
        if (r->has_body)
            body_watch(uc, r);
        uc->hub->dispatch(uc->hub, r);
        return 0;
    }
    if (frame->hd.type == NGHTTP2_DATA && frame->hd.length > frame->data.padlen)
        r->body_at = uv_now(uc->hub->loop);
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) && !r->req_ended) {
        r->req_ended = 1;
        if (r->handler != NULL && r->handler->on_end != NULL)
            r->handler->on_end(r);
    }
    return 0;
}

/* Flow control of request bodies is done here, once for every handler:
 * bytes are counted in in_held as they arrive and credited when the handler
 * lets go of them (at once unless it holds_body, else through
 * ureq_credit_body, at the latest when it is replaced or the stream closes). */
static int h2_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    struct ureq *r = nghttp2_session_get_stream_user_data(session, stream_id);
    if (r == NULL) {
        nghttp2_session_consume(session, stream_id, len);
        return 0;
    }
    r->in_held += len;
    if (r->handler != NULL && r->handler->on_body != NULL)
        r->handler->on_body(r, data, len);
    /* The ureq lives until its stream closes, which on_body cannot cause. */
    if (r->handler == NULL || !r->handler->holds_body)
        ureq_credit_body(r, r->in_held);
    return 0;
}

/* A stream holds the conn busy (no idle deadline) until its response has
 * ended or it closes: a client that never ends its request body holds
 * nothing once answered. */
static void h2_stream_idle(struct user_conn *uc, struct ureq *r)
{
    if (!r->active)
        return;
    r->active = 0;
    if (--uc->h2_active == 0 && !uc->dead)
        uc_arm(uc, UC_IDLE);
}

/* RFC 9113 8.1: a complete response sent while the request body is still
 * coming is followed by RST_STREAM(NO_ERROR), queued only once the
 * response's END_STREAM is out so it cannot overtake the answer, and once
 * the handler has ended the response (a HEAD answer's END_STREAM goes out
 * with its head, while ureq_respond still uses r). */
static void h2_reset_unfinished(struct user_conn *uc, struct ureq *r)
{
    if (r->end_sent && r->resp_ended && !r->req_ended)
        nghttp2_submit_rst_stream(uc->h2.s, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_NO_ERROR);
}

static int h2_frame_sent(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct ureq *r;

    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS))
        return 0;
    r = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (r != NULL) {
        r->end_sent = 1;
        h2_reset_unfinished(user_data, r);
    }
    return 0;
}

static int h2_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct user_conn *uc = user_data;
    struct ureq *r = nghttp2_session_get_stream_user_data(session, stream_id);
    struct ureq **pp;

    if (r == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    h2_stream_idle(uc, r);
    if (!r->resp_ended || !r->req_ended)
        ureq_abort(r);
    /* Body bytes a handler still held (an upload cut short) must not keep
     * the connection's window shut. */
    if (r->in_held > 0)
        nghttp2_session_consume_connection(session, r->in_held);
    r->in_held = 0;
    for (pp = &uc->streams; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    ureq_free(r);
    return 0;
}

/* --- response API --- */

int ureq_respond_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                      int64_t content_length)
{
    struct user_conn *uc = r->uc;
    nghttp2_nv nva[H2_HEADER_COUNT_MAX + 2];
    char st[8], cl[24];
    nghttp2_data_provider prd;
    size_t k = 0;
    int rc;

    if (r->resp_started || uc->dead)
        return -EALREADY;
    r->resp_started = 1;
    if (!uc->is_h2)
        return h1_write_head(r, status, hdrs, n, content_length);
    snprintf(st, sizeof(st), "%d", status);
    nva[k++] = h2_nv(":status", 7, st, strlen(st));
    for (size_t i = 0; i < n && k < H2_HEADER_COUNT_MAX; i++) {
        if (h2_hop_by_hop((const char *)hdrs[i].name, hdrs[i].namelen) ||
            (hdrs[i].namelen == 14 &&
             strncasecmp((const char *)hdrs[i].name, "content-length", 14) == 0))
            continue;
        nva[k++] = hdrs[i];
    }
    if (content_length >= 0) {
        snprintf(cl, sizeof(cl), "%lld", (long long)content_length);
        nva[k++] = h2_nv("content-length", 14, cl, strlen(cl));
    }
    prd.source.ptr = r;
    prd.read_callback = h2_read_out;
    rc = nghttp2_submit_response(uc->h2.s, r->sid, nva, k, r->head_only ? NULL : &prd);
    h2_send(&uc->h2);
    return rc == 0 ? 0 : -EIO;
}

int ureq_respond_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct user_conn *uc = r->uc;
    char hdr[24];
    int rc;

    if (!r->resp_started || r->resp_ended || uc->dead)
        return -EINVAL;
    if (len == 0 || r->head_only)
        return 0;
    if (uc->is_h2) {
        rc = buf_append(&r->out, data, len);
        if (rc == 0 && r->deferred) {
            r->deferred = 0;
            nghttp2_session_resume_data(uc->h2.s, r->sid);
        }
        h2_send(&uc->h2);
        return rc;
    }
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

int ureq_respond_end(struct ureq *r)
{
    struct user_conn *uc = r->uc;

    if (!r->resp_started || r->resp_ended || uc->dead)
        return -EINVAL;
    r->resp_ended = 1;
    if (uc->is_h2) {
        ureq_set_handler(r, NULL, NULL);
        r->out_eof = 1;
        if (r->deferred) {
            r->deferred = 0;
            nghttp2_session_resume_data(uc->h2.s, r->sid);
        }
        /* Answered before the body ended: the stream is reset once the
         * answer is out (h2_frame_sent), or now if it is already. */
        h2_stream_idle(uc, r);
        h2_reset_unfinished(uc, r);
        h2_send(&uc->h2);
        return 0;
    }
    if (r->resp_chunked && !r->head_only)
        conn_write(uc->conn, (const uint8_t *)"0\r\n\r\n", 5);
    conn_flush(uc->conn);
    r->handler = NULL;
    if (r->req_ended)
        h1_finish_request(uc);
    else if (r->has_body)
        conn_close_after_flush(uc->conn, "response sent before request body ended");
    /* else h1_message_complete finishes the request when it is parsed */
    return 0;
}

void ureq_reset(struct ureq *r)
{
    struct user_conn *uc = r->uc;
    if (uc->dead || r->resp_ended)
        return;
    r->resp_ended = 1;
    r->handler = NULL;
    if (uc->is_h2) {
        nghttp2_submit_rst_stream(uc->h2.s, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_INTERNAL_ERROR);
        h2_stream_idle(uc, r);
        h2_send(&uc->h2);
    } else {
        conn_close(uc->conn, "upstream broke mid-response");
    }
}

void ureq_respond(struct ureq *r, int status, const char *content_type, const char *body,
                  size_t len)
{
    nghttp2_nv nv[2];
    size_t n = 0;
    if (content_type != NULL)
        nv[n++] = h2_nv("content-type", 12, content_type, strlen(content_type));
    nv[n++] = h2_nv("cache-control", 13, "no-store", 8);
    if (ureq_respond_head(r, status, nv, n, (int64_t)len) != 0)
        return;
    if (ureq_respond_body(r, (const uint8_t *)body, len) != 0) {
        ureq_reset(r); /* never a body shorter than its Content-Length */
        return;
    }
    ureq_respond_end(r);
}

void ureq_error(struct ureq *r, int status, const char *code, const char *detail)
{
    json_t *o = json_pack("{s:s,s:s}", "error", code, "detail", detail ? detail : "");
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
    /* o: new reference, released here; txt: malloc'ed by jansson. */
    json_decref(o);
    if (txt == NULL) {
        ureq_respond(r, status, "application/json", "{\"error\":\"internal\"}", 20);
        return;
    }
    ureq_respond(r, status, "application/json", txt, strlen(txt));
    free(txt);
}

void ureq_pause_body(struct ureq *r, int pause)
{
    /* HTTP/2 flow control already bounds the upload: we credit only what was
     * passed on. HTTP/1.1 has only the socket. */
    if (!r->uc->is_h2 && !r->uc->dead)
        conn_pause_reading(r->uc->conn, pause);
}

void ureq_credit_body(struct ureq *r, size_t len)
{
    if (len > r->in_held)
        len = r->in_held;
    if (len == 0 || !r->uc->is_h2 || r->uc->dead || r->uc->h2.s == NULL)
        return;
    r->in_held -= len;
    nghttp2_session_consume(r->uc->h2.s, r->sid, len);
    h2_send(&r->uc->h2);
}

/* --- connection --- */

static int user_data_cb(struct conn *c, const uint8_t *data, size_t len)
{
    struct user_conn *uc = c->owner;
    if (uc->is_h2) {
        int rc = h2_feed(&uc->h2, data, len);
        if (rc < 0)
            return -EPROTO;
        if (h2_finished(&uc->h2))
            conn_close_after_flush(c, "http2 session finished");
        return 0;
    }
    if (uc->wait == UC_CLOSE)
        return 0; /* timed out: see h1_process */
    if (uc->backlog.len > 0 || HTTP_PARSER_ERRNO(&uc->parser) == HPE_PAUSED) {
        conn_pause_reading(c, 1);
        return buf_append(&uc->backlog, data, len);
    }
    return h1_process(uc, data, len);
}

static void user_drain_cb(struct conn *c)
{
    struct user_conn *uc = c->owner;
    if (uc->is_h2) {
        h2_send(&uc->h2);
        for (struct ureq *r = uc->streams; r != NULL; r = r->next)
            if (r->handler != NULL && r->handler->on_drain != NULL)
                r->handler->on_drain(r);
        return;
    }
    if (uc->cur != NULL && uc->cur->handler != NULL && uc->cur->handler->on_drain != NULL)
        uc->cur->handler->on_drain(uc->cur);
    else if (uc->resume_wait && conn_out_pending(c) < CONN_HIGH_WATER)
        uv_timer_start(&uc->resume_timer, resume_cb, 0, 0);
}

static void uc_free_cb(uv_handle_t *h)
{
    struct user_conn *uc = h->data;
    if (--uc->timers_open == 0)
        free(uc);
}

static void uc_close_timers(struct user_conn *uc)
{
    uv_close((uv_handle_t *)&uc->resume_timer, uc_free_cb);
    uv_close((uv_handle_t *)&uc->idle_timer, uc_free_cb);
    uv_close((uv_handle_t *)&uc->body_timer, uc_free_cb);
}

static void user_close_cb(struct conn *c, const char *reason)
{
    struct user_conn *uc = c->owner;
    uc->dead = 1;
    if (uc->cur != NULL) {
        ureq_abort(uc->cur);
        ureq_free(uc->cur);
        uc->cur = NULL;
    }
    while (uc->streams != NULL) {
        struct ureq *r = uc->streams;
        uc->streams = r->next;
        ureq_abort(r);
        ureq_free(r);
    }
    if (uc->h2.s != NULL)
        h2_free(&uc->h2);
    buf_free(&uc->backlog);
    buf_free(&uc->hname);
    buf_free(&uc->hval);
    hub_users_dec(uc->hub, c->peer);
    uc->conn = NULL;
    uc_close_timers(uc);
}

static const struct conn_ops user_conn_ops = {
    .on_data = user_data_cb,
    .on_drain = user_drain_cb,
    .on_close = user_close_cb,
};

int user_attach(struct hub *h, struct conn *c, const char *alpn)
{
    struct user_conn *uc = calloc(1, sizeof(*uc));
    nghttp2_session *s = NULL;
    int rc = -ENOMEM;

    if (uc == NULL)
        return -ENOMEM;
    uc->hub = h;
    uc->conn = c;
    buf_init(&uc->backlog);
    buf_init(&uc->hname);
    buf_init(&uc->hval);
    uv_timer_init(h->loop, &uc->resume_timer);
    uv_timer_init(h->loop, &uc->idle_timer);
    uv_timer_init(h->loop, &uc->body_timer);
    uc->resume_timer.data = uc->idle_timer.data = uc->body_timer.data = uc;
    uc->timers_open = 3;
    if (strcmp(alpn, "h2") == 0) {
        static const struct h2_callbacks cb = {
            .begin_headers = h2_begin_headers,
            .header = h2_on_header,
            .frame_recv = h2_frame_recv,
            .data_chunk = h2_data_chunk,
            .stream_close = h2_stream_close,
            .frame_send = h2_frame_sent,
            .send_data = h2_send_body,
        };
        static const struct h2_limits lim = {USER_MAX_STREAMS, USER_STREAM_WINDOW,
                                             USER_CONN_WINDOW};

        uc->is_h2 = 1;
        if (h2_session_new(H2_ROLE_HUB_USERS, &cb, &lim, uc, &s) != 0)
            goto out;
        h2_init(&uc->h2, s, c);
    } else {
        http_parser_init(&uc->parser, HTTP_REQUEST);
        uc->parser.data = uc;
    }
    c->ops = &user_conn_ops;
    c->owner = uc;
    uc_arm(uc, UC_HEAD);
    if (uc->is_h2)
        h2_send(&uc->h2);
    rc = 0;
out:
    if (rc != 0) {
        if (uc->h2.s != NULL)
            h2_free(&uc->h2);
        uc_close_timers(uc);
    }
    return rc;
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
