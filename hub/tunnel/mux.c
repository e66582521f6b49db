/* The hub's HTTP/2 client end that opens request streams to a peer: shared by site tunnels and peer
 * links. */
/* SPDX-License-Identifier: MIT */
#include "mux.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* The connection window is credited as bytes arrive (on_data_chunk), so it
 * only paces the peer; TUNNEL_STREAM_WINDOW (tunnel.h) bounds each stream. */
#define TMUX_CONN_WINDOW (64 << 20)

struct tstream {
    struct tmux *m;
    int32_t id;
    const struct tstream_ops *ops; /* NULL once cancelled or finished */
    void *arg;
    int head_seen;
    int remote_ended;
    int released; /* no longer counted in n_streams (cancelled while queued) */
    int opening;  /* inside tmux_stream_open: a close is reported by its return */
    int closed;   /* nghttp2 closed it while opening */
    size_t unconsumed;
    struct h2_hdr_budget budget;
    struct buf hdrs; /* name\0value\0 pairs of the response head */
    unsigned n_hdrs;
    int status;
    LIST_ENTRY(tstream) link; /* in m->streams */
};

static void stream_unlink(struct tstream *s)
{
    struct tmux *m = s->m;

    LIST_REMOVE(s, link);
    if (!s->released) {
        assert(m->n_streams > 0);
        m->n_streams--;
    }
    buf_free(&s->hdrs);
    free(s);
}

/* n_streams counts the streams of the list not yet released. O(streams):
 * checked where a connection's streams all go at once. */
static void check_streams(const struct tmux *m)
{
#ifndef NDEBUG
    const struct tstream *s;
    size_t n = 0;

    LIST_FOREACH(s, &m->streams, link)
    {
        assert(s->m == m);
        n += !s->released;
    }
    assert(n == m->n_streams);
#else
    (void)m;
#endif
}

void tmux_close(struct tmux *m)
{
    check_streams(m);
    while (!LIST_EMPTY(&m->streams)) {
        struct tstream *s = LIST_FIRST(&m->streams);
        const struct tstream_ops *ops = s->ops;
        s->ops = NULL;
        if (ops != NULL)
            ops->on_error(s->arg, TSTREAM_ERR_GONE, m->kind->gone);
        stream_unlink(s);
    }
    assert(m->n_streams == 0);
    h2_free(&m->h2);
}

/* --- nghttp2 callbacks (client side) --- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
    struct tstream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (h2_header_budget(&s->budget, namelen, valuelen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        /* A status users may not see resets the stream: the user gets a 502. */
        s->status = h2_status_parse(value, valuelen);
        return s->status < 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (h2_pairs_add(&s->hdrs, &s->n_hdrs, (const char *)name, namelen, (const char *)value,
                     valuelen))
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* this stream only, not the connection */
    return 0;
}

static void deliver_head(struct tstream *s)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX];
    size_t n = h2_pairs_nv(&s->hdrs, s->n_hdrs, nva, H2_HEADER_COUNT_MAX);

    s->head_seen = 1;
    if (s->ops != NULL)
        s->ops->on_head(s->arg, s->status, nva, n);
    buf_free(&s->hdrs);
    s->n_hdrs = 0;
}

/* A trailing HEADERS frame (nghttp2 lets one through only with END_STREAM
 * and without pseudo-headers). */
static void deliver_trailers(struct tstream *s)
{
    nghttp2_nv nva[H2_HEADER_COUNT_MAX];
    size_t n = h2_pairs_nv(&s->hdrs, s->n_hdrs, nva, H2_HEADER_COUNT_MAX);

    if (s->ops != NULL && s->ops->on_trailers != NULL && n > 0)
        s->ops->on_trailers(s->arg, nva, n);
    buf_free(&s->hdrs);
    s->n_hdrs = 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct tmux *m = user_data;
    struct tstream *s;

    m->last_heard_ms = uv_now(m->loop);
    m->ping_outstanding = 0;
    if (frame->hd.stream_id == 0) {
        if (frame->hd.type == NGHTTP2_GOAWAY)
            snprintf(m->close_reason, sizeof(m->close_reason), "%s", m->kind->goaway);
        return 0;
    }
    s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        if (s->status >= 100 && s->status < 200) {
            buf_free(&s->hdrs); /* interim response */
            s->n_hdrs = 0;
            s->status = 0;
        } else if (!s->head_seen) {
            if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
                s->remote_ended = 1; /* a head that is the whole answer */
            deliver_head(s);
        }
    } else if (frame->hd.type == NGHTTP2_HEADERS && s->head_seen) {
        deliver_trailers(s);
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->remote_ended) {
        s->remote_ended = 1;
        if (s->ops != NULL && s->ops->on_remote_end != NULL && s->head_seen)
            s->ops->on_remote_end(s->arg);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    struct tmux *m = user_data;
    struct tstream *s = nghttp2_session_get_stream_user_data(session, stream_id);

    m->last_heard_ms = uv_now(m->loop);
    /* The connection window comes back at once: the bytes are in the hub's
     * hands now, and a user who does not read them must not hold credit
     * other streams need. Each stream's own window still closes until its
     * user takes the bytes (tunnel_stream_consume), so a stream keeps at
     * most one stream window in the hub. */
    nghttp2_session_consume_connection(session, len);
    if (s == NULL || s->ops == NULL) {
        nghttp2_session_consume_stream(session, stream_id, len);
        return 0;
    }
    s->unconsumed += len;
    s->ops->on_data(s->arg, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct tmux *m = user_data;
    struct tstream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    const struct tstream_ops *ops;

    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    if (s->opening) {
        /* Its HEADERS could not go (the peer sent GOAWAY): the caller of
         * tmux_stream_open hears it from its return value, not from a
         * callback run before that call returned. */
        s->closed = 1;
        return 0;
    }
    ops = s->ops;
    s->ops = NULL;
    if (ops != NULL) {
        if (error_code == NGHTTP2_NO_ERROR && s->remote_ended && s->head_seen)
            ops->on_end(s->arg);
        else if (error_code == NGHTTP2_REFUSED_STREAM)
            ops->on_error(s->arg, TSTREAM_ERR_REFUSED, m->kind->refused);
        else
            ops->on_error(s->arg, TSTREAM_ERR_RESET, m->kind->reset);
    }
    stream_unlink(s);
    return 0;
}

static ssize_t read_body_cb(nghttp2_session *session, int32_t stream_id, uint8_t *dst,
                            size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                            void *user_data)
{
    struct tstream *s = source->ptr;
    int eof = 0;
    size_t n;

    if (s == NULL || s->ops == NULL) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    if (s->ops->body_buf != NULL) {
        struct buf *b = s->ops->body_buf(s->arg, &eof);
        int deferred = 0;
        ssize_t k = h2_body_read(b, eof, &deferred, length, data_flags);

        /* The bytes go out in send_body_cb (NO_COPY). */
        if (k < 0)
            return k;
        n = (size_t)k;
        eof = (*data_flags & NGHTTP2_DATA_FLAG_EOF) != 0;
    } else {
        n = s->ops->read_body(s->arg, dst, length, &eof);
    }
    if (eof) {
        nghttp2_nv tnv[H2_HEADER_COUNT_MAX];
        size_t tn = 0;

        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->ops->body_trailers != NULL)
            tn = s->ops->body_trailers(s->arg, tnv, H2_HEADER_COUNT_MAX);
        /* The request's trailers end the stream instead of the DATA. */
        if (tn > 0 && nghttp2_submit_trailer(session, stream_id, tnv, tn) == 0)
            *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    } else if (n == 0)
        return NGHTTP2_ERR_DEFERRED;
    return (ssize_t)n;
}

static int send_body_cb(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user_data)
{
    struct tmux *m = user_data;
    struct tstream *s = source->ptr;
    struct buf *b;
    int eof = 0;

    /* Nothing runs between read_body_cb and this call that could end s. */
    if (s == NULL || s->ops == NULL || s->ops->body_buf == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    b = s->ops->body_buf(s->arg, &eof);
    if (h2_send_data_from(&m->h2, framehd, length, b) != 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (s->ops->body_taken != NULL)
        s->ops->body_taken(s->arg, length);
    return 0;
}

static const struct h2_callbacks tmux_h2_callbacks = {
    .header = on_header,
    .frame_recv = on_frame_recv,
    .data_chunk = on_data_chunk,
    .stream_close = on_stream_close,
    .send_data = send_body_cb,
};

/* The far end never opens streams toward the hub. */
static const struct h2_limits tmux_h2_limits = {0, TUNNEL_STREAM_WINDOW, TMUX_CONN_WINDOW};

int tmux_open(struct tmux *m, uv_loop_t *loop, struct conn *c, enum h2_role role,
              const struct tmux_kind *kind)
{
    m->loop = loop;
    m->kind = kind;
    LIST_INIT(&m->streams);
    m->last_heard_ms = uv_now(loop);
    /* The session's frame buffer on pages of its own: the ping tick hands
     * them back while the connection is quiet (h2_trim). */
    return h2_open(&m->h2, c, role, &tmux_h2_callbacks, &tmux_h2_limits, m);
}

int tunnel_stream_head_ended(const struct tstream *s)
{
    return s->remote_ended;
}

int tmux_stream_open(struct tmux *m, const nghttp2_nv *nva, size_t n, int has_body,
                     const struct tstream_ops *ops, void *arg, struct tstream **out)
{
    struct tstream *s;
    nghttp2_data_provider prd;
    int32_t id;

    if (m->h2.s == NULL)
        return -ENOTCONN;
    if (m->n_streams >= TMUX_MAX_STREAMS)
        return -EBUSY;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->m = m;
    s->ops = ops;
    s->arg = arg;
    buf_init(&s->hdrs);
    prd.source.ptr = s;
    prd.read_callback = read_body_cb;
    id = nghttp2_submit_request(m->h2.s, NULL, nva, n, has_body ? &prd : NULL, s);
    if (id < 0) {
        free(s);
        return -EIO;
    }
    s->id = id;
    LIST_INSERT_HEAD(&m->streams, s, link);
    m->n_streams++;
    m->n_opened++;
    s->opening = 1;
    h2_send(&m->h2);
    s->opening = 0;
    if (s->closed) {
        stream_unlink(s);
        return -ENOTCONN;
    }
    *out = s;
    return 0;
}

void tunnel_stream_resume(struct tstream *s)
{
    if (s->ops == NULL || s->m->h2.s == NULL)
        return;
    nghttp2_session_resume_data(s->m->h2.s, s->id);
    h2_send(&s->m->h2);
}

void tunnel_stream_consume(struct tstream *s, size_t len)
{
    if (s->m->h2.s == NULL)
        return;
    if (len > s->unconsumed)
        len = s->unconsumed;
    s->unconsumed -= len;
    nghttp2_session_consume_stream(s->m->h2.s, s->id, len);
    h2_send(&s->m->h2);
}

void tunnel_stream_cancel(struct tstream *s)
{
    s->ops = NULL;
    /* A request still waiting in nghttp2 for a slot stays there until a
     * slot frees; it must not keep its place under TMUX_MAX_STREAMS. */
    if (!s->released) {
        s->released = 1;
        assert(s->m->n_streams > 0);
        s->m->n_streams--;
    }
    if (s->m->h2.s == NULL)
        return;
    nghttp2_submit_rst_stream(s->m->h2.s, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    h2_send(&s->m->h2);
}

size_t tmux_stream_slots(const struct tmux *m)
{
    uint32_t n;

    if (m->h2.s == NULL)
        return 0;
    n = nghttp2_session_get_remote_settings(m->h2.s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return n < TMUX_MAX_STREAMS ? n : TMUX_MAX_STREAMS;
}

void tmux_ping(struct tmux *m)
{
    if (m->ping_outstanding || m->h2.s == NULL)
        return;
    nghttp2_submit_ping(m->h2.s, NGHTTP2_FLAG_NONE, NULL);
    m->ping_outstanding = 1;
    h2_send(&m->h2);
}
