/* Unit tests for common/h2.c without sockets: the one session constructor (role, options, SETTINGS)
 * and the one NO_COPY body provider. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <string.h>

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
    test_body_read();
    test_status_and_pairs();
    TEST_DONE();
}
