/* Unit tests for common/h2.c without sockets: the one session constructor (role, options,
 * SETTINGS), the frame buffer on its own pages (h2_open, h2_trim) and the one NO_COPY body
 * provider. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../common/h2.h"
#include "testutil.h"

struct seen {
    int settings;
    uint32_t max_streams, window;
};

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct seen *v = arg;

    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        v->settings++;
        for (size_t i = 0; i < f->settings.niv; i++) {
            if (f->settings.iv[i].settings_id == NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
                v->max_streams = f->settings.iv[i].value;
            if (f->settings.iv[i].settings_id == NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE)
                v->window = f->settings.iv[i].value;
        }
    }
    return 0;
}

/* A hub-tunnel client and a site server made by h2_session_new talk to each
 * other in memory: each sees the other's SETTINGS with the limits given. */
static void test_session_pair(void)
{
    static const struct h2_callbacks cb = {.frame_recv = on_frame};
    static const struct h2_limits hub_lim = {0, 1 << 20, 8 << 20};
    static const struct h2_limits site_lim = {256, 1 << 16, 64 << 20};
    struct seen at_hub = {0}, at_site = {0};
    nghttp2_session *hub = NULL, *site = NULL;

    CHECK_EQ_INT(h2_session_new(H2_ROLE_HUB_TUNNEL, &cb, &hub_lim, &at_hub, &hub), 0);
    CHECK_EQ_INT(h2_session_new(H2_ROLE_SITE, &cb, &site_lim, &at_site, &site), 0);
    if (hub == NULL || site == NULL)
        return;
    for (int round = 0; round < 4; round++) {
        const uint8_t *d;
        ssize_t n;

        while ((n = nghttp2_session_mem_send(hub, &d)) > 0)
            CHECK_EQ_INT(nghttp2_session_mem_recv(site, d, (size_t)n), n);
        while ((n = nghttp2_session_mem_send(site, &d)) > 0)
            CHECK_EQ_INT(nghttp2_session_mem_recv(hub, d, (size_t)n), n);
    }
    CHECK_EQ_INT(at_site.settings, 1);
    CHECK_EQ_INT(at_site.max_streams, 0);
    CHECK_EQ_INT(at_site.window, 1 << 20);
    CHECK_EQ_INT(at_hub.settings, 1);
    CHECK_EQ_INT(at_hub.max_streams, 256);
    CHECK_EQ_INT(at_hub.window, 1 << 16);
    /* The client may open a stream; the server may not. */
    CHECK(nghttp2_session_check_server_session(site));
    CHECK(!nghttp2_session_check_server_session(hub));
    /* Connection windows: the local one was raised to the limit. */
    CHECK_EQ_INT(nghttp2_session_get_local_window_size(site), 64 << 20);
    CHECK_EQ_INT(nghttp2_session_get_local_window_size(hub), 8 << 20);
    nghttp2_session_del(hub);
    nghttp2_session_del(site);
}

/* Pages of [p, p+len) in memory now. */
static size_t resident_pages(void *p, size_t len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = (len + pg - 1) / pg, k = 0;
    unsigned char v[64];

    if (n > sizeof(v) || mincore(p, len, v) != 0)
        return (size_t)-1;
    for (size_t i = 0; i < n; i++)
        k += v[i] & 1;
    return k;
}

struct got {
    int pings;
    uint8_t opaque[8];
    int requests;
    char path[64];
};

static int got_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct got *g = arg;

    if (f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
        g->pings++;
        memcpy(g->opaque, f->ping.opaque_data, 8);
    }
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        g->requests++;
    return 0;
}

static int got_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                      size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                      void *arg)
{
    struct got *g = arg;

    if (namelen == 5 && memcmp(name, ":path", 5) == 0 && valuelen < sizeof(g->path)) {
        memcpy(g->path, value, valuelen);
        g->path[valuelen] = '\0';
    }
    return 0;
}

static void pump(nghttp2_session *from, nghttp2_session *to)
{
    const uint8_t *d;
    ssize_t n;

    while ((n = nghttp2_session_mem_send(from, &d)) > 0)
        CHECK_EQ_INT(nghttp2_session_mem_recv(to, d, (size_t)n), n);
}

/* A session made by h2_open writes its frames into pages of its own; h2_trim
 * gives them back while nothing waits to be sent, and the session goes on
 * as before: frames written after it arrive whole. */
static void test_open_trim(void)
{
    static const struct h2_callbacks hub_cb = {0};
    static const struct h2_callbacks site_cb = {.frame_recv = got_frame, .header = got_header};
    static const struct h2_limits hub_lim = {0, 1 << 20, 8 << 20};
    static const struct h2_limits site_lim = {256, 1 << 16, 64 << 20};
    static const uint8_t opaque[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static const uint8_t opaque2[8] = {9, 10, 11, 12, 13, 14, 15, 16};
    nghttp2_nv nva[] = {
        h2_nv(":method", 7, "GET", 3),
        h2_nv(":scheme", 7, "https", 5),
        h2_nv(":authority", 10, "site", 4),
        h2_nv(":path", 5, "/after/trim", 11),
    };
    struct got got = {0};
    struct h2 h;
    nghttp2_session *site = NULL;

    CHECK_EQ_INT(h2_open(&h, NULL, H2_ROLE_HUB_TUNNEL, &hub_cb, &hub_lim, NULL), 0);
    CHECK_EQ_INT(h2_session_new(H2_ROLE_SITE, &site_cb, &site_lim, &got, &site), 0);
    if (h.s == NULL || site == NULL)
        return;
    /* nghttp2's 16 KiB frame buffer, on whole pages. */
    CHECK(h.fb != NULL);
    CHECK(h.fb_len >= 16384 && h.fb_len % (size_t)sysconf(_SC_PAGESIZE) == 0);
    pump(h.s, site);
    pump(site, h.s);
    pump(h.s, site);
    /* Small frames touched the first page only. */
    CHECK(resident_pages(h.fb, h.fb_len) >= 1);
    CHECK(resident_pages(h.fb, h.fb_len) < h.fb_len / (size_t)sysconf(_SC_PAGESIZE));

    /* A frame queued but not yet written: the pages stay. */
    CHECK_EQ_INT(nghttp2_submit_ping(h.s, NGHTTP2_FLAG_NONE, opaque), 0);
    CHECK(nghttp2_session_want_write(h.s));
    h2_trim(&h);
    CHECK(h.fb != NULL);
    pump(h.s, site);
    CHECK_EQ_INT(got.pings, 1);
    CHECK(memcmp(got.opaque, opaque, 8) == 0);
    pump(site, h.s);

    /* Nothing to send: the pages go back to the kernel. */
    CHECK(!nghttp2_session_want_write(h.s));
    h2_trim(&h);
    CHECK_EQ_INT((long)resident_pages(h.fb, h.fb_len), 0);
    /* And the session writes over them as before. */
    CHECK(nghttp2_submit_request(h.s, NULL, nva, 4, NULL, NULL) > 0);
    CHECK_EQ_INT(nghttp2_submit_ping(h.s, NGHTTP2_FLAG_NONE, opaque2), 0);
    pump(h.s, site);
    CHECK_EQ_INT(got.requests, 1);
    CHECK_EQ_STR(got.path, "/after/trim");
    CHECK_EQ_INT(got.pings, 2);
    CHECK(memcmp(got.opaque, opaque2, 8) == 0);
    /* The session frees its pages through h (ASan and valgrind see no leak). */
    h2_free(&h);
    CHECK(h.fb == NULL);
    nghttp2_session_del(site);
}

static void test_body_read(void)
{
    struct buf b;
    uint8_t big[40000];
    uint32_t flags = 0;
    int deferred = 0;

    buf_init(&b);
    /* Empty and more to come: deferred. */
    CHECK_EQ_INT(h2_body_read(&b, 0, &deferred, 16384, &flags), NGHTTP2_ERR_DEFERRED);
    CHECK_EQ_INT(deferred, 1);
    CHECK_EQ_INT(flags, 0);
    /* Empty and done: an empty last frame. */
    CHECK_EQ_INT(h2_body_read(&b, 1, &deferred, 16384, &flags), 0);
    CHECK_EQ_INT(flags, NGHTTP2_DATA_FLAG_NO_COPY | NGHTTP2_DATA_FLAG_EOF);
    /* More than a frame: capped at H2_DATA_MAX and at length, no EOF yet. */
    memset(big, 'x', sizeof(big));
    CHECK_EQ_INT(buf_append(&b, big, sizeof(big)), 0);
    flags = 0;
    CHECK_EQ_INT(h2_body_read(&b, 1, &deferred, 1 << 20, &flags), H2_DATA_MAX);
    CHECK_EQ_INT(flags, NGHTTP2_DATA_FLAG_NO_COPY);
    flags = 0;
    CHECK_EQ_INT(h2_body_read(&b, 1, &deferred, 100, &flags), 100);
    CHECK_EQ_INT(flags, NGHTTP2_DATA_FLAG_NO_COPY);
    /* The last bytes of a finished body carry EOF. */
    buf_consume(&b, sizeof(big) - 10);
    flags = 0;
    CHECK_EQ_INT(h2_body_read(&b, 1, &deferred, 16384, &flags), 10);
    CHECK_EQ_INT(flags, NGHTTP2_DATA_FLAG_NO_COPY | NGHTTP2_DATA_FLAG_EOF);
    flags = 0;
    CHECK_EQ_INT(h2_body_read(&b, 0, &deferred, 16384, &flags), 10);
    CHECK_EQ_INT(flags, NGHTTP2_DATA_FLAG_NO_COPY);
    buf_free(&b);
}

/* :status values users may see, and the name\0value\0 lists. */
static void test_status_and_pairs(void)
{
    struct buf b;
    unsigned n = 0;
    nghttp2_nv nv[4];

    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"200", 3), 200);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"599", 3), 599);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"100", 3), 100);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"099", 3), -1);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"600", 3), -1);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"20", 2), -1);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"2000", 4), -1);
    CHECK_EQ_INT(h2_status_parse((const uint8_t *)"2x0", 3), -1);

    buf_init(&b);
    CHECK_EQ_INT(h2_pairs_add(&b, &n, "grpc-status", 11, "0", 1), 0);
    CHECK_EQ_INT(h2_pairs_add(&b, &n, "x-empty", 7, "", 0), 0);
    CHECK_EQ_INT(h2_pairs_add(&b, &n, "grpc-message", 12, "a b", 3), 0);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(h2_pairs_nv(&b, n, nv, 4), 3);
    CHECK(nv[0].namelen == 11 && memcmp(nv[0].name, "grpc-status", 11) == 0);
    CHECK(nv[0].valuelen == 1 && nv[0].value[0] == '0');
    CHECK(nv[1].namelen == 7 && nv[1].valuelen == 0);
    CHECK(nv[2].valuelen == 3 && memcmp(nv[2].value, "a b", 3) == 0);
    /* cap bounds the output */
    CHECK_EQ_INT(h2_pairs_nv(&b, n, nv, 2), 2);
    buf_free(&b);
}

int main(void)
{
    test_session_pair();
    test_open_trim();
    test_body_read();
    test_status_and_pairs();
    TEST_DONE();
}
