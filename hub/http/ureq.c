/* The request object of the user front end (hub/http/ureq.h): headers, handler, response API,
 * upload credit, and its deferred free. */
/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_int.h"

struct ureq *ureq_new(struct user_conn *uc, int32_t sid)
{
    struct ureq *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->uc = uc;
    r->sid = sid;
    r->content_length = -1;
    buf_init(&r->out);
    buf_init(&r->trl);
    buf_init(&r->req_trl);
    snprintf(r->remote, sizeof(r->remote), "%s", uc->conn->peer);
    return r;
}

int64_t ureq_peer_hub(const struct ureq *r)
{
    return r->uc != NULL ? r->uc->peer_hub_id : 0;
}

void ureq_peer_remote(struct ureq *r)
{
    const char *xff = ureq_header(r, "x-forwarded-for");
    size_t n;

    if (xff == NULL)
        return;
    /* Only the peer's own entry: the last of the list. */
    if (strrchr(xff, ',') != NULL)
        xff = strrchr(xff, ',') + 1;
    while (*xff == ' ')
        xff++;
    n = strcspn(xff, " ");
    if (n == 0 || n > 45)
        return;
    snprintf(r->remote, sizeof(r->remote), strchr(xff, ':') != NULL ? "[%.*s]:0" : "%.*s:0", (int)n,
             xff);
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
    buf_free(&r->trl);
    buf_free(&r->req_trl);
    free(r);
}

void ureq_reap(struct user_conn *uc)
{
    struct ureq *r;

    while ((r = TAILQ_FIRST(&uc->reaped)) != NULL) {
        TAILQ_REMOVE(&uc->reaped, r, link);
        ureq_free(r);
    }
}

static void reap_cb(uv_timer_t *t)
{
    ureq_reap(t->data);
}

void ureq_release(struct ureq *r)
{
    struct user_conn *uc = r->uc;

    assert(!r->released);
    r->released = 1;
    r->handler = NULL;
    r->hctx = NULL;
    /* HTTP/2 requests are on the conn's stream list; HTTP/1.1's is uc->cur. */
    if (r->sid != 0)
        TAILQ_REMOVE(&uc->streams, r, link);
    TAILQ_INSERT_TAIL(&uc->reaped, r, link);
    /* A timer at 0 runs once the loop is back from whatever callback
     * answered r; a closing conn frees them with itself (uc_free_cb). */
    if (!uc->dead)
        uv_timer_start(&uc->reap_timer, reap_cb, 0, 0);
}

int ureq_add_header(struct ureq *r, const char *name, size_t nl, const char *value, size_t vl)
{
    struct ureq_header *n;
    char *nm, *vv;

    if (h2_header_budget(&r->budget, nl, vl) != 0)
        return -E2BIG;
    if (r->in_trailers) {
        size_t at = r->req_trl.len;

        if (h2_pairs_add(&r->req_trl, &r->n_req_trl, name, nl, value, vl) != 0)
            return -ENOMEM;
        for (char *c = (char *)buf_head(&r->req_trl) + at; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        return 0;
    }
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
    /* Handlers come in pairs: one is set, then cleared (or aborted) before
     * the next; a released request takes none. */
    assert(hd == NULL || r->handler == NULL || r->handler == hd);
    assert(hd == NULL || !r->released);
    if (r->released)
        return;
    r->handler = hd;
    r->hctx = hctx;
    if (r->uc->is_h2)
        h2u_unhold(r);
    /* What the previous handler held is dropped with it. */
    if (r->in_held > 0 && (hd == NULL || !hd->holds_body))
        ureq_credit_body(r, r->in_held);
}

void ureq_abort(struct ureq *r)
{
    const struct ureq_handler *hd = r->handler;
    r->handler = NULL;
    if (hd != NULL && hd->on_abort != NULL)
        hd->on_abort(r);
}

size_t ureq_backlog(const struct ureq *r)
{
    if (r->released || r->uc->dead || r->uc->conn == NULL)
        return 0;
    return conn_out_pending(r->uc->conn) + r->out.len;
}

size_t ureq_queued(const struct ureq *r)
{
    if (r->released || r->uc->dead || r->uc->conn == NULL)
        return 0;
    return r->out.len;
}

/* --- response API --- */

int ureq_respond_head(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n,
                      int64_t content_length)
{
    if (r->released || r->resp_started || r->uc->dead)
        return -EALREADY;
    assert(!r->resp_ended);
    assert(status >= 100 && status <= 599);
    r->resp_started = 1;
    if (!r->uc->is_h2)
        return h1_write_head(r, status, hdrs, n, content_length);
    return h2u_submit_head(r, status, hdrs, n, content_length);
}

int ureq_respond_body(struct ureq *r, const uint8_t *data, size_t len)
{
    if (r->released || !r->resp_started || r->resp_ended || r->uc->dead)
        return -EINVAL;
    if (len == 0 || r->head_only)
        return 0;
    return r->uc->is_h2 ? h2u_write_body(r, data, len) : h1_write_body(r, data, len);
}

int ureq_respond_end(struct ureq *r)
{
    if (r->released || !r->resp_started || r->resp_ended || r->uc->dead)
        return -EINVAL;
    r->resp_ended = 1;
    if (r->uc->is_h2)
        h2u_end(r);
    else
        h1_end(r);
    return 0;
}

/* Names that never go as trailers (RFC 9110 6.5.1): framing, routing and
 * hop-by-hop fields. */
static int trailer_skip(const char *name, size_t nl)
{
    static const char *const no[] = {"content-length",   "host",          "content-type",
                                     "content-encoding", "authorization", "trailer"};

    if (nl == 0 || name[0] == ':' || h2_hop_by_hop(name, nl))
        return 1;
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (nl == strlen(no[i]) && strncasecmp(name, no[i], nl) == 0)
            return 1;
    return 0;
}

int ureq_respond_trailers(struct ureq *r, const nghttp2_nv *hdrs, size_t n)
{
    if (r->released || !r->resp_started || r->resp_ended || r->uc->dead)
        return -EINVAL;
    for (size_t i = 0; i < n && r->n_trl < H2_HEADER_COUNT_MAX; i++) {
        size_t at = r->trl.len;

        if (trailer_skip((const char *)hdrs[i].name, hdrs[i].namelen))
            continue;
        if (h2_pairs_add(&r->trl, &r->n_trl, (const char *)hdrs[i].name, hdrs[i].namelen,
                         (const char *)hdrs[i].value, hdrs[i].valuelen))
            return -ENOMEM;
        /* HTTP/2 wants lower-case names; HTTP/1.1 does not mind. */
        for (char *c = (char *)buf_head(&r->trl) + at; *c; c++)
            *c = (char)tolower((unsigned char)*c);
    }
    return 0;
}

int ureq_respond_head_whole(struct ureq *r, int status, const nghttp2_nv *hdrs, size_t n)
{
    if (!r->uc->is_h2)
        return ureq_respond_head(r, status, hdrs, n, 0);
    r->head_only = 1; /* no data provider: END_STREAM goes with the head */
    return ureq_respond_head(r, status, hdrs, n, -1);
}

void ureq_reset(struct ureq *r)
{
    if (r->released || r->uc->dead || r->resp_ended)
        return;
    r->resp_ended = 1;
    r->handler = NULL;
    if (r->uc->is_h2)
        h2u_reset(r);
    else
        conn_close(r->uc->conn, "upstream broke mid-response");
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
    if (r->uc->dead)
        return;
    /* HTTP/2 flow control bounds the upload (we credit only what was passed
     * on); a lone upload also holds the socket (h2u_pause_body). HTTP/1.1
     * has only the socket. */
    if (r->uc->is_h2)
        h2u_pause_body(r, pause);
    else
        conn_pause_reading(r->uc->conn, pause);
}

void ureq_body_no_deadline(struct ureq *r)
{
    /* The conn's body timer skips r from now on (body_waiting). */
    r->body_watch = 0;
}

void ureq_credit_body(struct ureq *r, size_t len)
{
    if (len > r->in_held)
        len = r->in_held;
    if (len == 0 || r->released || !r->uc->is_h2 || r->uc->dead || r->uc->h2.s == NULL)
        return;
    r->in_held -= len;
    nghttp2_session_consume(r->uc->h2.s, r->sid, len);
    h2_send(&r->uc->h2);
}
