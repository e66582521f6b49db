/* The HTTP/2 front end of the hub's users (nghttp2): one ureq per stream, request-body credit,
 * responses fed to nghttp2 as the client's window allows. */
/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../common/hfield.h"
#include "../../common/token.h"
#include "http_int.h"

/* Streams one user connection may have open: enough for a few hundred
 * WebSockets or TCP streams on one connection; the requests among them are
 * capped further by max_requests_per_conn (hub.conf). */
#define USER_MAX_STREAMS   256
#define USER_STREAM_WINDOW (1 << 20)
#define USER_CONN_WINDOW   (16 << 20)
#define PEER_MAX_STREAMS   1024
#define PEER_CONN_WINDOW   (64 << 20)

/* Lone uploads. A client that runs out of stream window may spin instead of
 * sleeping: curl before 8.0 polls its writable socket in a loop (curl issue
 * 10618), and on a relay, whose window follows the site, it is out of window
 * whenever the site is the slower end (2.5-3.6 CPU s per GiB in curl, taken
 * from the hub and the site). An upload that is alone on its connection is
 * therefore held back by the socket, as on HTTP/1.1: when its handler pauses
 * it, its window is widened to the connection's (once) and reading stops, so
 * the client fills its socket and sleeps; the hub still holds no more than
 * the handler's high-water mark. Reading resumes when the handler resumes,
 * when another stream starts, and at the latest after USER_HOLD_MAX_MS: a
 * connection is never held longer than that while its other streams wait,
 * and from then on that upload is bounded by its window alone (at most
 * USER_CONN_WINDOW, which bounds every connection anyway). */
#define USER_HELD_WINDOW USER_CONN_WINDOW
#define USER_HOLD_MAX_MS 500
/* Widened windows hub-wide: each may come to hold USER_HELD_WINDOW in the
 * hub once its hold expired (a stalled site), so at most this many lift the
 * hub's worst case, by 16 x 15 MiB = 240 MiB; past it, uploads keep the
 * ordinary window. */
#define USER_WIDE_MAX 16

static void hold_release(struct user_conn *uc);

static ssize_t h2_read_out(nghttp2_session *session, int32_t stream_id, uint8_t *dst, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    struct ureq *r = source->ptr;
    /* The bytes go out in h2_send_body() (h2_send_data_from). */
    ssize_t n = h2_body_read(&r->out, r->out_eof, &r->deferred, length, data_flags);

    if (n >= 0)
        h2_trailers_at_eof(session, stream_id, data_flags, &r->trl, r->n_trl);
    return n;
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
    TAILQ_INSERT_TAIL(&uc->streams, r, link);
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
    if (r->in_trailers) /* a trailing HEADERS (nghttp2 refused pseudo-headers in it) */
        return ureq_add_header(r, (const char *)name, namelen, (const char *)value, valuelen)
                   ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
                   : 0;
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
    if (namelen == 9 && memcmp(name, ":protocol", 9) == 0) {
        if (valuelen >= sizeof(r->protocol))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* no protocol we carry */
        snprintf(r->protocol, sizeof(r->protocol), "%.*s", (int)valuelen, value);
        return 0;
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

/* A CONNECT makes r a byte stream. The extended form (RFC 8441) names its
 * target in :path like any request; the classic one names only an authority,
 * SITE.SERVICE[:port] (the port is ignored), which becomes the path
 * /v1/sites/SITE/services/SERVICE so the one router handles both. Returns 1
 * when the authority says nothing usable (answered 400). */
static int h2_connect_target(struct ureq *r)
{
    const char *host = ureq_header(r, "host");
    char site[TOKEN_NAME_MAX + 1], svc[TOKEN_NAME_MAX + 1];
    size_t sl, vl;

    r->bytestream = 1;
    if (r->protocol[0] != '\0')
        return 0; /* nghttp2 checked :scheme, :path and :authority */
    snprintf(r->protocol, sizeof(r->protocol), "connect-tcp");
    if (host == NULL || r->target != NULL)
        goto bad;
    sl = strcspn(host, ".");
    vl = host[sl] == '.' ? strcspn(host + sl + 1, ":") : 0;
    if (sl == 0 || sl > TOKEN_NAME_MAX || vl == 0 || vl > TOKEN_NAME_MAX)
        goto bad;
    memcpy(site, host, sl);
    site[sl] = '\0';
    memcpy(svc, host + sl + 1, vl);
    svc[vl] = '\0';
    if (!token_name_valid(site) || !token_name_valid(svc))
        goto bad;
    r->target = malloc(sizeof("/v1/sites//services/") + sl + vl);
    if (r->target != NULL)
        sprintf(r->target, "/v1/sites/%s/services/%s", site, svc);
    return 0;
bad:
    free(r->target);
    r->target = strdup("/"); /* answered 400 by the caller */
    return 1;
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
        int bad_connect = 0;

        if (strcmp(r->method, "CONNECT") == 0)
            bad_connect = h2_connect_target(r);
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
        r->in_trailers = 1;
        r->active = 1;
        if (uc->h2_active++ == 0)
            uc_busy(uc);
        if (uc->h2_holder != NULL)
            hold_release(uc); /* a lone upload is no longer alone */
        if (r->has_body && !r->bytestream)
            body_watch(uc, r);
        if (bad_connect)
            ureq_error(r, 400, "bad_request",
                       "CONNECT wants :authority SITE.SERVICE[:port] or :protocol connect-tcp "
                       "with :path /v1/sites/SITE/services/SERVICE");
        else {
            if (uc->peer_hub_id > 0)
                ureq_peer_remote(r);
            uc->hub->dispatch(uc->hub, r);
        }
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

static void hold_release(struct user_conn *uc)
{
    uv_timer_stop(&uc->resume_timer);
    uc->h2_holder = NULL;
    if (!uc->dead && uc->conn != NULL)
        conn_pause_reading(uc->conn, 0);
}

static void hold_expired(uv_timer_t *t)
{
    struct user_conn *uc = t->data;

    if (uc->h2_holder == NULL)
        return;
    uc->h2_holder->hold_done = 1;
    hold_release(uc);
}

void h2u_unhold(struct ureq *r)
{
    if (r->uc->h2_holder == r)
        hold_release(r->uc);
}

/* r's stream is gone: its widened window no longer counts. */
static void wide_put(struct ureq *r)
{
    if (!r->hold_window)
        return;
    r->hold_window = 0;
    assert(r->uc->hub->n_wide_uploads > 0);
    r->uc->hub->n_wide_uploads--;
}

void h2u_pause_body(struct ureq *r, int pause)
{
    struct user_conn *uc = r->uc;

    if (!pause) {
        h2u_unhold(r);
        return;
    }
    /* A byte stream (CONNECT, WebSocket) is interactive and long-lived: a
     * new stream behind it must not wait, so its window alone holds it. So
     * does any upload a peer hub forwards: the link carries every user's
     * streams and the dialler's PINGs, so it must not stop being read, and
     * the peer hub's HTTP/2 client sleeps when out of window (the hold is
     * for clients that spin); widened, the window would let this hub hold
     * 16 MiB of an upload its user's hub already holds back. */
    if (uc->h2_holder != NULL || r->released || r->hold_done || r->bytestream || !r->active ||
        uc->h2_active != 1 || uc->conn == NULL || uc->peer_hub_id > 0)
        return; /* not alone: its window alone holds it back */
    if (!r->hold_window) {
        if (uc->hub->n_wide_uploads >= USER_WIDE_MAX)
            return;
        /* Sends the WINDOW_UPDATE for the difference. */
        if (nghttp2_session_set_local_window_size(uc->h2.s, NGHTTP2_FLAG_NONE, r->sid,
                                                  USER_HELD_WINDOW) != 0)
            return;
        r->hold_window = 1;
        uc->hub->n_wide_uploads++;
        h2_send(&uc->h2);
    }
    uc->h2_holder = r;
    conn_pause_reading(uc->conn, 1);
    uv_timer_start(&uc->resume_timer, hold_expired, USER_HOLD_MAX_MS, 0);
}

/* A stream holds the conn busy (no idle deadline) until its response has
 * ended or it closes: a client that never ends its request body holds
 * nothing once answered. */
static void h2_stream_idle(struct user_conn *uc, struct ureq *r)
{
    if (!r->active)
        return;
    r->active = 0;
    assert(uc->h2_active > 0);
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
    if (r->bytestream)
        return; /* half-closed: the user may go on sending */
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
        assert(!r->end_sent); /* END_STREAM goes out once */
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

    if (r == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    h2u_unhold(r);
    wide_put(r);
    h2_stream_idle(uc, r);
    if (!r->resp_ended || !r->req_ended)
        ureq_abort(r);
    /* Body bytes a handler still held (an upload cut short) must not keep
     * the connection's window shut. */
    if (r->in_held > 0)
        nghttp2_session_consume_connection(session, r->in_held);
    r->in_held = 0;
    /* Whoever answered r may still be using it: it is freed from the loop. */
    ureq_release(r);
    return 0;
}

int h2u_submit_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                    int64_t content_length)
{
    struct user_conn *uc = r->uc;
    nghttp2_nv nva[H2_HEADER_COUNT_MAX + 2];
    char st[8], cl[24];
    nghttp2_data_provider prd;
    size_t k = 0;
    int rc;

    /* A refused CONNECT is an ordinary answered request: the stream is
     * reset once the answer is out (h2_reset_unfinished). */
    if (status < 200 || status > 299)
        r->bytestream = 0;
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

int h2u_write_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct user_conn *uc = r->uc;
    int rc = buf_append(&r->out, data, len);

    if (rc == 0 && r->deferred) {
        r->deferred = 0;
        nghttp2_session_resume_data(uc->h2.s, r->sid);
    }
    h2_send(&uc->h2);
    return rc;
}

void h2u_end(struct ureq *r)
{
    struct user_conn *uc = r->uc;

    /* A byte stream's user may still be sending (half-close): its handler
     * stays until the stream closes or it lets go itself. */
    if (!r->bytestream || r->req_ended)
        ureq_set_handler(r, NULL, NULL);
    r->out_eof = 1;
    if (r->deferred) {
        r->deferred = 0;
        nghttp2_session_resume_data(uc->h2.s, r->sid);
    }
    /* Answered before the body ended: the stream is reset once the answer
     * is out (h2_frame_sent), or now if it is already. */
    h2_stream_idle(uc, r);
    h2_reset_unfinished(uc, r);
    h2_send(&uc->h2);
}

void h2u_reset(struct ureq *r)
{
    struct user_conn *uc = r->uc;

    nghttp2_submit_rst_stream(uc->h2.s, NGHTTP2_FLAG_NONE, r->sid, NGHTTP2_INTERNAL_ERROR);
    h2_stream_idle(uc, r);
    h2_send(&uc->h2);
}

int h2u_start(struct user_conn *uc)
{
    static const struct h2_callbacks cb = {
        .begin_headers = h2_begin_headers,
        .header = h2_on_header,
        .frame_recv = h2_frame_recv,
        .data_chunk = h2_data_chunk,
        .stream_close = h2_stream_close,
        .frame_send = h2_frame_sent,
        .send_data = h2_send_body,
    };
    static const struct h2_limits lim = {USER_MAX_STREAMS, USER_STREAM_WINDOW, USER_CONN_WINDOW};
    /* A peer link carries many users' requests: the windows of a tunnel
     * (docs/plans/scale-out.md §4.5). */
    static const struct h2_limits peer_lim = {PEER_MAX_STREAMS, USER_STREAM_WINDOW,
                                              PEER_CONN_WINDOW};
    nghttp2_session *s = NULL;

    if (h2_session_new(H2_ROLE_HUB_USERS, &cb, uc->peer_hub_id > 0 ? &peer_lim : &lim, uc, &s) != 0)
        return -ENOMEM;
    h2_init(&uc->h2, s, uc->conn);
    return 0;
}

int h2u_data(struct user_conn *uc, const uint8_t *data, size_t len)
{
    if (h2_feed(&uc->h2, data, len) < 0)
        return -EPROTO;
    if (h2_finished(&uc->h2))
        conn_close_after_flush(uc->conn, "http2 session finished");
    return 0;
}

void h2u_drain(struct user_conn *uc)
{
    struct ureq *r, *next;

    h2_send(&uc->h2);
    /* A handler's on_drain may end its stream, or others: a released one
     * stays valid (it moved to uc->reaped, whose requests have no handler). */
    for (r = TAILQ_FIRST(&uc->streams); r != NULL; r = next) {
        next = TAILQ_NEXT(r, link);
        if (r->handler != NULL && r->handler->on_drain != NULL)
            r->handler->on_drain(r);
    }
}

void h2u_goaway(struct user_conn *uc)
{
    nghttp2_submit_goaway(uc->h2.s, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(uc->h2.s), NGHTTP2_NO_ERROR, NULL,
                          0);
    h2_send(&uc->h2);
}

void h2u_close(struct user_conn *uc)
{
    struct ureq *r;

    uv_timer_stop(&uc->resume_timer);
    uc->h2_holder = NULL;
    while ((r = TAILQ_FIRST(&uc->streams)) != NULL) {
        wide_put(r);
        ureq_abort(r);
        ureq_release(r);
    }
    if (uc->h2.s != NULL)
        h2_free(&uc->h2);
}
