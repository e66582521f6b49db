/* nghttp2 glue shared by every HTTP/2 session (tunnel both ends, user front end): batching,
 * re-entrancy, limits. */
/* SPDX-License-Identifier: MIT */
#include "h2.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

/* TLS records are 16 KiB at most; staging 64 KiB of frames before one
 * conn_write gives full records and few write calls. */
#define H2_STAGE_FLUSH (64 * 1024)

/* Staging buffers up to this size are freed when h2_send is done with
 * them (an idle session holds none); larger ones stay for the next burst. */
#define H2_STAGE_KEEP (16 * 1024)

void h2_init(struct h2 *h, nghttp2_session *s, struct conn *conn)
{
    memset(h, 0, sizeof(*h));
    h->s = s;
    h->conn = conn;
    buf_init(&h->stage);
}

void h2_free(struct h2 *h)
{
    /* The session frees its frame buffer through h->mem: h is still whole. */
    if (h->s != NULL)
        nghttp2_session_del(h->s);
    h->s = NULL;
    buf_free(&h->stage);
}

/* --- the frame buffer on pages of its own ---
 *
 * nghttp2 serialises every outgoing frame into one buffer of 16 KiB and
 * some bytes that each session allocates when it is made and keeps to the
 * end, a third of an idle tunnel's memory on the hub. Given its own pages
 * (mmap), it costs only the pages frames were written into (small frames
 * touch the first), and h2_trim hands them back to the kernel while the
 * session has nothing to send: nghttp2 has then no frame in the buffer. Every
 * other allocation goes to malloc. */

/* Only a block at least this big made while the session is created is the
 * frame buffer (nghttp2 1.52: 16,394 bytes; the next largest is 4 KiB). */
#define H2_FB_MIN (12 * 1024)

static size_t page_round(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

/* Frame buffers of sessions that ended, kept (up to FB_POOL, for any
 * session of the process) for the next one: a site connecting would
 * otherwise cost an mmap, a munmap (which stops the hub's other threads' TLB
 * too) and a page fault per page it writes, 3% of the hub's CPU per connect
 * in the handshake bench. Their pages stay as the last session left them:
 * a calloc'ed buffer is cleared. */
#define FB_POOL 32

static struct {
    pthread_mutex_t mu;
    size_t n;
    void *p[FB_POOL];
    size_t len[FB_POOL];
} fb_pool = {PTHREAD_MUTEX_INITIALIZER, 0, {0}, {0}};

/* A pooled mapping of len bytes, or NULL. */
static void *pool_take(size_t len)
{
    void *p = NULL;

    pthread_mutex_lock(&fb_pool.mu);
    for (size_t i = fb_pool.n; i-- > 0;)
        if (fb_pool.len[i] == len) {
            p = fb_pool.p[i];
            fb_pool.n--;
            fb_pool.p[i] = fb_pool.p[fb_pool.n];
            fb_pool.len[i] = fb_pool.len[fb_pool.n];
            break;
        }
    pthread_mutex_unlock(&fb_pool.mu);
    return p;
}

/* 1 if the pool took p. */
static int pool_give(void *p, size_t len)
{
    int taken = 0;

    pthread_mutex_lock(&fb_pool.mu);
    if (fb_pool.n < FB_POOL) {
        fb_pool.p[fb_pool.n] = p;
        fb_pool.len[fb_pool.n] = len;
        fb_pool.n++;
        taken = 1;
    }
    pthread_mutex_unlock(&fb_pool.mu);
    return taken;
}

static void *fb_map(struct h2 *h, size_t size, int zero)
{
    size_t len = page_round(size);
    void *p = pool_take(len);

    if (p != NULL) {
        if (zero)
            memset(p, 0, len);
    } else {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return NULL;
    }
    h->fb = p;
    h->fb_len = len;
    return p;
}

static int fb_is(const struct h2 *h, const void *p)
{
    return p != NULL && p == h->fb;
}

static void fb_unmap(struct h2 *h)
{
    if (!pool_give(h->fb, h->fb_len))
        munmap(h->fb, h->fb_len);
    h->fb = NULL;
    h->fb_len = 0;
}

static void *mem_malloc(size_t size, void *ud)
{
    struct h2 *h = ud;

    if (h->fb_capture && h->fb == NULL && size >= H2_FB_MIN)
        return fb_map(h, size, 0);
    return malloc(size);
}

static void mem_free(void *p, void *ud)
{
    struct h2 *h = ud;

    if (fb_is(h, p))
        fb_unmap(h);
    else
        free(p);
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    struct h2 *h = ud;

    if (h->fb_capture && h->fb == NULL && size > 0 && n <= SIZE_MAX / size && n * size >= H2_FB_MIN)
        return fb_map(h, n * size, 1);
    return calloc(n, size);
}

static void *mem_realloc(void *p, size_t size, void *ud)
{
    struct h2 *h = ud;
    void *n;

    if (p == NULL)
        return mem_malloc(size, ud);
    if (!fb_is(h, p))
        return realloc(p, size);
    /* nghttp2 does not resize the frame buffer; should it, the block moves
     * to the heap. */
    n = malloc(size);
    if (n == NULL)
        return NULL;
    memcpy(n, p, size < h->fb_len ? size : h->fb_len);
    fb_unmap(h);
    return n;
}

void h2_trim(struct h2 *h)
{
    if (h->s == NULL || h->depth > 0)
        return;
    if (h->stage.len == 0)
        buf_free(&h->stage);
    /* Nothing to send: no frame is being written, and the next one starts
     * at the front of the buffer, over zeros. */
    if (h->fb != NULL && !nghttp2_session_want_write(h->s))
        madvise(h->fb, h->fb_len, MADV_DONTNEED);
}

static int stage_out(struct h2 *h)
{
    int rc = 0;
    if (h->stage.len > 0) {
        rc = conn_write(h->conn, buf_head(&h->stage), h->stage.len);
        buf_consume(&h->stage, h->stage.len);
    }
    return rc;
}

int h2_send(struct h2 *h)
{
    const uint8_t *data;
    ssize_t n;
    int rc;

    if (h->s == NULL || h->conn == NULL || h->conn->closing)
        return 0;
    if (h->depth > 0) {
        h->want_send = 1;
        return 0;
    }
    h->want_send = 0;
    h->depth++;
    for (;;) {
        if (conn_out_pending(h->conn) + h->stage.len >= CONN_HIGH_WATER)
            break; /* on_drain calls us again */
        n = nghttp2_session_mem_send(h->s, &data);
        if (n < 0) {
            h->depth--;
            return (int)n;
        }
        if (n == 0)
            break;
        if (buf_append(&h->stage, data, (size_t)n) != 0) {
            h->depth--;
            return -ENOMEM;
        }
        if (h->stage.len >= H2_STAGE_FLUSH && (rc = stage_out(h)) < 0) {
            h->depth--;
            return rc;
        }
    }
    rc = stage_out(h);
    h->depth--;
    if (h->stage.cap <= H2_STAGE_KEEP)
        buf_free(&h->stage);
    else
        buf_shrink(&h->stage, H2_STAGE_FLUSH * 2);
    conn_flush(h->conn);
    if (rc == 0 && h->want_send)
        return h2_send(h);
    return rc;
}

int h2_feed(struct h2 *h, const uint8_t *data, size_t len)
{
    ssize_t n;

    h->depth++;
    n = nghttp2_session_mem_recv(h->s, data, len);
    h->depth--;
    if (n < 0)
        return (int)n;
    return h2_send(h);
}

int h2_send_data_from(struct h2 *h, const uint8_t *framehd, size_t length, struct buf *src)
{
    uint8_t *frame;

    if (length > src->len)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (length >= H2_DIRECT_MIN && src->off >= H2_FRAME_HDR) {
        /* The already consumed bytes just before the payload take the frame
         * header, so header and payload reach TLS as one contiguous record
         * without passing through the stage. Staged frames go first. */
        frame = buf_head(src) - H2_FRAME_HDR;
        memcpy(frame, framehd, H2_FRAME_HDR);
        if (stage_out(h) < 0 || conn_write(h->conn, frame, H2_FRAME_HDR + length) < 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    } else if (buf_append(&h->stage, framehd, H2_FRAME_HDR) != 0 ||
               buf_append(&h->stage, buf_head(src), length) != 0) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    buf_consume(src, length);
    return 0;
}

ssize_t h2_body_read(const struct buf *src, int eof, int *deferred, size_t length,
                     uint32_t *data_flags)
{
    size_t n = src->len < length ? src->len : length;

    if (n > H2_DATA_MAX)
        n = H2_DATA_MAX;
    if (n == 0 && !eof) {
        *deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    *data_flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (eof && n == src->len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

int h2_finished(const struct h2 *h)
{
    return h->s == NULL || (!nghttp2_session_want_read(h->s) && !nghttp2_session_want_write(h->s));
}

static nghttp2_option *option_new(enum h2_role role)
{
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0)
        return NULL;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
    nghttp2_option_set_max_send_header_block_length(opt, H2_HEADER_BYTES_MAX);
    nghttp2_option_set_max_settings(opt, 32);
    if (role == H2_ROLE_SITE) {
        /* Users cancelling requests at the hub turn into RST_STREAMs from
         * the hub; the site must never GOAWAY its own tunnel over them. */
        nghttp2_option_set_stream_reset_rate_limit(opt, 100000, 10000);
    }
    return opt;
}

static int submit_settings(nghttp2_session *s, enum h2_role role, const struct h2_limits *lim)
{
    /* Servers (the site, the users' front end) take RFC 8441 extended
     * CONNECT: byte streams (raw TCP, WebSocket) ride one stream each. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim->stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_HEADER_BYTES_MAX},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16384},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    size_t n = sizeof(iv) / sizeof(iv[0]) - (role == H2_ROLE_HUB_TUNNEL ? 1 : 0);
    int rc = nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, n);
    if (rc != 0)
        return rc;
    return nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, lim->conn_window);
}

static int session_new(enum h2_role role, const struct h2_callbacks *cb,
                       const struct h2_limits *lim, void *user_data, nghttp2_mem *mem,
                       nghttp2_session **out)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *s = NULL;
    int rc = -ENOMEM;

    *out = NULL;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || (opt = option_new(role)) == NULL)
        goto out;
    if (cb->begin_headers != NULL)
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb->begin_headers);
    if (cb->header != NULL)
        nghttp2_session_callbacks_set_on_header_callback(cbs, cb->header);
    if (cb->frame_recv != NULL)
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb->frame_recv);
    if (cb->data_chunk != NULL)
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb->data_chunk);
    if (cb->stream_close != NULL)
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb->stream_close);
    if (cb->frame_send != NULL)
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb->frame_send);
    if (cb->send_data != NULL)
        nghttp2_session_callbacks_set_send_data_callback(cbs, cb->send_data);
    if (role == H2_ROLE_HUB_TUNNEL || role == H2_ROLE_SITE_SERVICE
            ? nghttp2_session_client_new3(&s, cbs, user_data, opt, mem) != 0
            : nghttp2_session_server_new3(&s, cbs, user_data, opt, mem) != 0)
        goto out;
    if (submit_settings(s, role, lim) != 0) {
        rc = -EIO;
        goto out;
    }
    *out = s;
    s = NULL;
    rc = 0;
out:
    if (s != NULL)
        nghttp2_session_del(s);
    if (opt != NULL)
        nghttp2_option_del(opt);
    if (cbs != NULL)
        nghttp2_session_callbacks_del(cbs);
    return rc;
}

int h2_session_new(enum h2_role role, const struct h2_callbacks *cb, const struct h2_limits *lim,
                   void *user_data, nghttp2_session **out)
{
    return session_new(role, cb, lim, user_data, NULL, out);
}

int h2_open(struct h2 *h, struct conn *conn, enum h2_role role, const struct h2_callbacks *cb,
            const struct h2_limits *lim, void *user_data)
{
    nghttp2_session *s = NULL;
    int rc;

    h2_init(h, NULL, conn);
    h->mem = (nghttp2_mem){h, mem_malloc, mem_free, mem_calloc, mem_realloc};
    h->fb_capture = 1;
    rc = session_new(role, cb, lim, user_data, &h->mem, &s);
    h->fb_capture = 0;
    h->s = s;
    return rc;
}

int h2_header_budget(struct h2_hdr_budget *b, size_t namelen, size_t valuelen)
{
    b->bytes += namelen + valuelen + 32;
    b->count++;
    if (b->bytes > H2_HEADER_BYTES_MAX || b->count > H2_HEADER_COUNT_MAX)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

int h2_status_parse(const uint8_t *v, size_t len)
{
    /* nghttp2 lets any three digits through ("000", "099"); users must only
     * ever see a status of RFC 9110 15 (100-599). */
    if (len != 3 || v[0] < '1' || v[0] > '5' || v[1] < '0' || v[1] > '9' || v[2] < '0' ||
        v[2] > '9')
        return -1;
    return (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
}

int h2_pairs_add(struct buf *b, unsigned *n, const char *name, size_t nl, const char *value,
                 size_t vl)
{
    if (buf_append(b, name, nl) || buf_append(b, "", 1) || buf_append(b, value, vl) ||
        buf_append(b, "", 1))
        return -ENOMEM;
    (*n)++;
    return 0;
}

size_t h2_pairs_nv(const struct buf *b, unsigned n, nghttp2_nv *out, size_t cap)
{
    const char *p = (const char *)buf_head(b);
    size_t k = 0;

    for (unsigned i = 0; i < n && k < cap; i++) {
        size_t nl = strlen(p);
        const char *v = p + nl + 1;
        size_t vl = strlen(v);
        out[k++] = h2_nv(p, nl, v, vl);
        p = v + vl + 1;
    }
    return k;
}

void h2_trailers_at_eof(nghttp2_session *s, int32_t stream_id, uint32_t *data_flags,
                        const struct buf *trl, unsigned n)
{
    nghttp2_nv t[H2_HEADER_COUNT_MAX];
    size_t k;

    if (n == 0 || !(*data_flags & NGHTTP2_DATA_FLAG_EOF))
        return;
    k = h2_pairs_nv(trl, n, t, H2_HEADER_COUNT_MAX);
    /* The trailers end the stream instead of this DATA frame. */
    if (nghttp2_submit_trailer(s, stream_id, t, k) == 0)
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
}

int h2_hop_by_hop(const char *name, size_t len)
{
    static const char *const hop[] = {"connection",        "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade",    "te",
                                      "http2-settings"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (strlen(hop[i]) == len && strncasecmp(hop[i], name, len) == 0)
            return 1;
    return 0;
}
