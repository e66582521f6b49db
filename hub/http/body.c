/* Reading a request body whole, bounded (hub/http/body.h). */
/* SPDX-License-Identifier: MIT */
#include "body.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "../../common/buf.h"
#include "ureq.h"

struct body_reader {
    size_t max;
    body_done_fn done;
    void *arg;
    struct buf data;
    enum body_status st;
};

static void reader_free(struct body_reader *b)
{
    buf_free(&b->data);
    free(b);
}

/* Hands the result over and frees the reader, which done must not find: done may answer r. */
static void finish(struct ureq *r, struct body_reader *b, enum body_status st)
{
    body_done_fn done = b->done;
    void *arg = b->arg;

    if (r != NULL)
        ureq_set_handler(r, NULL, NULL);
    if (st == BODY_OK)
        st = b->st;
    if (st == BODY_OK) {
        /* The buffer outlives the call: it is freed after done returns. */
        struct buf data = b->data;

        buf_init(&b->data);
        reader_free(b);
        done(r, arg, st, data.len ? buf_head(&data) : NULL, data.len);
        buf_free(&data);
        return;
    }
    reader_free(b);
    done(r, arg, st, NULL, 0);
}

static void on_body(struct ureq *r, const uint8_t *data, size_t len)
{
    struct body_reader *b = r->hctx;

    if (b->st == BODY_OK && b->data.len + len > b->max)
        b->st = BODY_TOO_LARGE;
    if (b->st == BODY_OK && buf_append(&b->data, data, len) != 0)
        b->st = BODY_NO_MEMORY;
    if (b->st != BODY_OK)
        buf_free(&b->data);
    /* Copied or dropped: the client may send more. */
    ureq_credit_body(r, len);
}

static void on_end(struct ureq *r)
{
    finish(r, r->hctx, BODY_OK);
}

static void on_abort(struct ureq *r)
{
    finish(NULL, r->hctx, BODY_ABORTED);
}

/* holds_body: this reader credits each piece itself (on_body). */
static const struct ureq_handler reader_handler = {on_body, on_end, on_abort, NULL, 1};

int body_read(struct ureq *r, size_t max, body_done_fn done, void *arg)
{
    struct body_reader *b;

    assert(done != NULL);
    b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->max = max;
    b->done = done;
    b->arg = arg;
    buf_init(&b->data);
    /* HTTP/1.1 answers at once and closes after; an HTTP/2 stream answered
     * before its body ended can lose the answer to the stream reset that
     * follows it, so there the body is read and dropped first. */
    if (r->sid == 0 && r->content_length > (int64_t)max) {
        reader_free(b);
        done(r, arg, BODY_TOO_LARGE, NULL, 0);
        return 0;
    }
    ureq_set_handler(r, &reader_handler, b);
    if (r->req_ended)
        finish(r, b, BODY_OK);
    return 0;
}
