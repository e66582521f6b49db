/* The site agent: dials the hub, keeps one TLS tunnel up, and serves the hub's HTTP/2 requests from
 * local services. */
/* SPDX-License-Identifier: MIT */
#include "agent.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/hfield.h"
#include "../common/log.h"
#include "../common/notify.h"
#include "../common/tls.h"
#include "../common/urlpath.h"
#include "bytestream.h"
#include "hubs.h"
#include "status.h"
#include "upstream.h"
#include "uph2.h"

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Streams the hub may have open on the tunnel: the hub's own cap per tunnel.
 * The hub gives long-lived streams (WebSocket, TCP, gRPC) at most 768 of
 * them and keeps the rest for requests (docs/protocol.md). What the site
 * holds per stream is bounded by its window and RESP_HIGH. */
#define SITE_MAX_STREAMS   1024
#define SITE_STREAM_WINDOW (1 << 20)
#define SITE_CONN_WINDOW   (64 << 20)

const struct h2_limits agent_h2_limits = {
    .max_streams = SITE_MAX_STREAMS,
    .stream_window = SITE_STREAM_WINDOW,
    .conn_window = SITE_CONN_WINDOW,
};
#define AGENT_HUB_WINDOW_MAX_MS 60000
#define RESP_HIGH               (256 << 10)
#define RESP_LOW                (64 << 10)

struct sstream {
    struct agent *a;
    int32_t id;
    struct h2_hdr_budget budget;
    char method[24];
    char protocol[16]; /* :protocol of an extended CONNECT; "" for none */
    char *path;
    char service[TOKEN_NAME_MAX + 1];
    char authority[TOKEN_NAME_MAX + 1];
    int n_service;   /* tether-service headers seen: the hub sends exactly one */
    int n_authority; /* :authority seen; long_authority: it was no service name */
    int long_authority;
    struct upstream_header *hdrs;
    char **hstore; /* owned copies behind hdrs */
    size_t n_hdrs;
    int64_t content_length;
    int req_ended;
    int te_trailers; /* the request's TE named "trailers" */
    void *up;        /* struct upstream, or struct uph2_stream when up_h2 */
    int up_h2;
    struct buf rtrl; /* response trailers for the tunnel: name\0value\0 */
    unsigned n_rtrl;
    struct bytestream *bs; /* a CONNECT stream's service end (tcp://) */
    struct buf resp;
    int resp_eof;
    int deferred;
    int paused;
    int head_sent;
    int events;               /* the hub's GET /.tether/events: open while the tunnel is */
    LIST_ENTRY(sstream) link; /* in a->streams */
};

static const char *state_names[] = {"idle",      "resolving", "connecting", "handshake",
                                    "connected", "backoff",   "stopped"};

/* STATE/status for `tether-site status`: advisory, so a failed write only
 * leaves the previous one (the command then says the agent is starting). */
static void write_status(struct agent *a, const char *why)
{
    struct site_status st = {.pid = (long)getpid(), .since = (int64_t)time(NULL)};

    if (a->state == AG_BACKOFF || a->state == AG_STOPPED)
        snprintf(a->last_error, sizeof(a->last_error), "%s", why ? why : "");
    if (a->status_path[0] == '\0')
        return;
    snprintf(st.state, sizeof(st.state), "%s", state_names[a->state]);
    if (a->n_hubs > 0)
        snprintf(st.hub, sizeof(st.hub), "%s", a->hubs[a->hub_idx]);
    snprintf(st.last_error, sizeof(st.last_error), "%s", a->last_error);
    status_write(a->status_path, &st);
}

static void enter_state(struct agent *a, enum agent_state s, const char *why)
{
    if (a->state == s)
        return;
    log_event(LOG_DEBUG, "state", "from=%s to=%s why=%s", state_names[a->state], state_names[s],
              log_q(why));
    a->state = s;
    write_status(a, why);
    notify_status("tunnel %s", state_names[s]);
    if (s == AG_CONNECTED)
        notify_ready(); /* systemd takes the first; later ones change nothing */
}

static void start_attempt(struct agent *a);
static void watch_cb(uv_timer_t *t);

/* --- streams --- */

/* The service exchange, HTTP/1.1 (upstream.c) or HTTP/2 (uph2.c). */
static void sup_abort(struct sstream *ss)
{
    if (ss->up_h2)
        uph2_abort(ss->up);
    else
        upstream_abort(ss->up);
}

static int sup_write(struct sstream *ss, const uint8_t *data, size_t len)
{
    return ss->up_h2 ? uph2_write_body(ss->up, data, len) : upstream_write_body(ss->up, data, len);
}

/* trl: the request's trailers (gathered in hdrs once the head went). */
static void sup_end(struct sstream *ss, const struct upstream_header *trl, size_t n)
{
    if (ss->up_h2)
        uph2_end_body(ss->up, trl, n);
    else
        upstream_end_body_trailers(ss->up, trl, n);
}

static void sup_pause(struct sstream *ss, int pause)
{
    if (ss->up_h2)
        uph2_pause_reading(ss->up, pause);
    else
        upstream_pause_reading(ss->up, pause);
}

static void drop_headers(struct sstream *ss)
{
    for (size_t i = 0; i < ss->n_hdrs * 2; i++)
        free(ss->hstore[i]);
    free(ss->hstore);
    free(ss->hdrs);
    ss->hstore = NULL;
    ss->hdrs = NULL;
    ss->n_hdrs = 0;
}

static void ss_free(struct sstream *ss)
{
    /* Every stream is linked from on_begin_headers until here. */
    assert(ss->link.le_prev != NULL);
    if (ss->up != NULL)
        sup_abort(ss);
    if (ss->bs != NULL)
        bytestream_abort(ss->bs);
    LIST_REMOVE(ss, link);
    drop_headers(ss);
    free(ss->path);
    buf_free(&ss->resp);
    buf_free(&ss->rtrl);
    free(ss);
}

/* Stops (1) or resumes (0) reading the service end, whichever it is. */
static void ss_pause(struct sstream *ss, int pause)
{
    ss->paused = pause;
    if (ss->up != NULL)
        sup_pause(ss, pause);
    if (ss->bs != NULL)
        bytestream_pause_reading(ss->bs, pause);
}

static ssize_t resp_read(nghttp2_session *session, int32_t stream_id, uint8_t *dst, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    struct sstream *ss = source->ptr;
    /* The bytes go out in resp_send() (h2_send_data_from). */
    ssize_t n = h2_body_read(&ss->resp, ss->resp_eof, &ss->deferred, length, data_flags);

    /* The service's trailers end the tunnel stream (docs/protocol.md). */
    if (n >= 0)
        h2_trailers_at_eof(session, stream_id, data_flags, &ss->rtrl, ss->n_rtrl);
    return n;
}

static int resp_send(nghttp2_session *session, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t length, nghttp2_data_source *source, void *user_data)
{
    struct agent *a = user_data;
    struct sstream *ss = source->ptr;
    int rc = h2_send_data_from(&a->h2, framehd, length, &ss->resp);

    if (ss->paused && ss->resp.len < RESP_LOW)
        ss_pause(ss, 0);
    return rc;
}

static void ss_kick(struct sstream *ss)
{
    if (ss->deferred) {
        ss->deferred = 0;
        nghttp2_session_resume_data(ss->a->h2.s, ss->id);
    }
    h2_send(&ss->a->h2);
}

/* The response cannot go on whole (no memory for its bytes): stop the
 * service request and reset the stream, so the hub never passes on a body
 * with a hole in it. */
static void ss_break(struct sstream *ss)
{
    if (ss->up != NULL)
        sup_abort(ss);
    ss->up = NULL;
    if (ss->bs != NULL)
        bytestream_abort(ss->bs);
    ss->bs = NULL;
    nghttp2_submit_rst_stream(ss->a->h2.s, NGHTTP2_FLAG_NONE, ss->id, NGHTTP2_INTERNAL_ERROR);
    h2_send(&ss->a->h2);
}

/* Answers ss with the JSON o (a new reference, released here) and status;
 * with code, a tether-error header too. A body that cannot be made breaks the
 * stream instead. Returns 0 when the answer was submitted, else -1. The
 * caller sends (h2_send) when it may. */
static int respond_json(struct sstream *ss, const char *status, json_t *o, const char *code)
{
    nghttp2_nv nva[3];
    nghttp2_data_provider prd = {{.ptr = ss}, resp_read};
    char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL; /* malloc'ed by jansson */
    size_t n = 2;

    json_decref(o);
    if (txt == NULL || buf_append(&ss->resp, txt, strlen(txt)) != 0) {
        free(txt);
        ss_break(ss);
        return -1;
    }
    free(txt);
    ss->resp_eof = 1;
    ss->head_sent = 1;
    nva[0] = h2_nv(":status", 7, status, strlen(status));
    nva[1] = h2_nv("content-type", 12, "application/json", 16);
    if (code != NULL)
        nva[n++] = h2_nv("tether-error", 12, code, strlen(code));
    nghttp2_submit_response(ss->a->h2.s, ss->id, nva, n, &prd);
    return 0;
}

static void respond_simple(struct sstream *ss, int status, const char *code, const char *detail)
{
    char st[8];

    snprintf(st, sizeof(st), "%d", status);
    if (respond_json(ss, st, json_pack("{s:s,s:s}", "error", code, "detail", detail), code) == 0)
        h2_send(&ss->a->h2);
}

static void up_head(void *arg, int status, const struct upstream_header *h, size_t n)
{
    struct sstream *ss = arg;
    nghttp2_nv nva[H2_HEADER_COUNT_MAX + 1];
    nghttp2_data_provider prd = {{.ptr = ss}, resp_read};
    char st[8];
    size_t k = 0;

    snprintf(st, sizeof(st), "%d", status);
    nva[k++] = h2_nv(":status", 7, st, strlen(st));
    for (size_t i = 0; i < n && k < H2_HEADER_COUNT_MAX; i++)
        nva[k++] = h2_nv(h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    ss->head_sent = 1;
    /* A head that is the whole answer (gRPC's status without messages)
     * stays one HEADERS frame with END_STREAM. */
    nghttp2_submit_response(
        ss->a->h2.s, ss->id, nva, k,
        strcmp(ss->method, "HEAD") == 0 || (ss->up_h2 && uph2_head_ended(ss->up)) ? NULL : &prd);
    h2_send(&ss->a->h2);
}

static void up_trailers(void *arg, const struct upstream_header *h, size_t n)
{
    struct sstream *ss = arg;

    for (size_t i = 0; i < n && ss->n_rtrl < H2_HEADER_COUNT_MAX; i++) {
        /* Hop-by-hop and pseudo names never cross (RFC 9110 6.5.1). */
        if (h[i].name_len == 0 || h[i].name[0] == ':' || h2_hop_by_hop(h[i].name, h[i].name_len))
            continue;
        if (h2_pairs_add(&ss->rtrl, &ss->n_rtrl, h[i].name, h[i].name_len, h[i].value,
                         h[i].value_len)) {
            ss_break(ss); /* never an answer without the trailers it had */
            return;
        }
    }
}

static void up_body(void *arg, const uint8_t *data, size_t len)
{
    struct sstream *ss = arg;
    if (buf_append(&ss->resp, data, len) != 0) {
        ss_break(ss);
        return;
    }
    if (ss->resp.len >= RESP_HIGH && !ss->paused)
        ss_pause(ss, 1);
    ss_kick(ss);
}

static void up_end(void *arg)
{
    struct sstream *ss = arg;
    ss->up = NULL;
    ss->resp_eof = 1;
    ss_kick(ss);
}

/* The service end failed: an error answer naming why while no head went,
 * else the stream is reset with rst (the hub must not take it as whole). */
static void ss_service_failed(struct sstream *ss, int status, const char *why, uint32_t rst)
{
    if (!ss->head_sent) {
        respond_simple(ss, status, status == 504 ? "gateway_timeout" : "bad_gateway", why);
        return;
    }
    nghttp2_submit_rst_stream(ss->a->h2.s, NGHTTP2_FLAG_NONE, ss->id, rst);
    h2_send(&ss->a->h2);
}

static void up_error(void *arg, int status, const char *why)
{
    struct sstream *ss = arg;
    ss->up = NULL;
    log_event(LOG_WARN, "upstream_error", "service=%s path=%s status=%d reason=%s", ss->service,
              log_q(ss->path), status, log_q(why));
    ss_service_failed(ss, status, why, NGHTTP2_INTERNAL_ERROR);
}

static void up_written(void *arg, size_t len)
{
    struct sstream *ss = arg;
    /* The service took these bytes: only now may the hub send more on this
     * stream (the connection window came back on arrival). */
    nghttp2_session_consume_stream(ss->a->h2.s, ss->id, len);
    h2_send(&ss->a->h2);
}

static const struct upstream_cbs up_cbs = {up_head,  up_body,    up_end,
                                           up_error, up_written, up_trailers};

/* --- CONNECT streams to tcp:// services (docs/protocol.md, "Byte streams") --- */

static void bs_open(void *arg, const struct upstream_header *h, size_t n)
{
    up_head(arg, 200, h, n);
}

static void bs_eof(void *arg)
{
    struct sstream *ss = arg;
    /* END_STREAM towards the hub; the other direction may go on. */
    ss->resp_eof = 1;
    ss_kick(ss);
}

static void bs_error(void *arg, int status, const char *why)
{
    struct sstream *ss = arg;
    ss->bs = NULL;
    log_event(LOG_WARN, "service_connect_error", "service=%s status=%d reason=%s", ss->service,
              status, log_q(why));
    ss_service_failed(ss, status, why, NGHTTP2_CONNECT_ERROR);
}

static const struct bytestream_cbs bs_cbs = {bs_open, up_body, bs_eof, bs_error, up_written};

/* An extended CONNECT: :protocol connect-tcp to a tcp:// service (dial it),
 * :protocol websocket to an http:// one (dial it and make the HTTP/1.1
 * upgrade to ss->path); 200 once the service accepted, then bytes both ways. */
static void start_connect(struct sstream *ss, const struct agent_service *svc)
{
    int ws = strcmp(ss->protocol, "websocket") == 0;
    struct bytestream_upgrade up = {ss->path, ss->hdrs, ss->n_hdrs};

    if (!ws && strcmp(ss->protocol, "connect-tcp") != 0) {
        respond_simple(ss, 501, "not_implemented",
                       "this site carries CONNECT streams with :protocol connect-tcp or "
                       "websocket only");
        return;
    }
    if (!ws && svc->url.kind != NET_URL_TCP) {
        respond_simple(ss, 400, "bad_request", "the service is not a tcp:// service");
        return;
    }
    if (ws && svc->url.kind != NET_URL_HTTP) {
        respond_simple(ss, svc->url.kind == NET_URL_TCP ? 400 : 501,
                       svc->url.kind == NET_URL_TCP ? "bad_request" : "not_implemented",
                       svc->url.kind == NET_URL_TCP
                           ? "a tcp:// service takes :protocol connect-tcp, not websocket"
                           : "WebSocket is carried to http:// services only so far");
        return;
    }
    if (bytestream_start(ss->a->loop, &svc->url, 0, ws ? &up : NULL, &bs_cbs, ss, &ss->bs) != 0) {
        ss->bs = NULL;
        respond_simple(ss, 502, "bad_gateway", "could not start a connection to the service");
        return;
    }
    if (ss->req_ended)
        bytestream_end(ss->bs);
}

int agent_apply_hubs(struct agent *a, const struct hubs_list *l)
{
    char cur[TOKEN_ENDPOINT_MAX + 1];
    size_t i, k, mine = 0;

    for (i = 0; i < l->n; i++)
        for (k = 0; k < a->n_conf_pins; k++)
            mine += crypto_pin_equal(l->hub[i].pin, a->hub_pins[k]);
    if (mine == 0)
        return -EPERM;
    snprintf(cur, sizeof(cur), "%s", a->n_hubs > a->hub_idx ? a->hubs[a->hub_idx] : "");
    a->n_pins = a->n_conf_pins;
    a->n_hubs = a->n_conf_hubs;
    for (i = 0; i < l->n; i++) {
        for (k = 0; k < a->n_pins && strcmp(a->hub_pins[k], l->hub[i].pin) != 0; k++)
            ;
        if (k == a->n_pins && a->n_pins < AGENT_PIN_MAX)
            snprintf(a->hub_pins[a->n_pins++], sizeof(a->hub_pins[0]), "%s", l->hub[i].pin);
    }
    for (i = 0; i < l->n; i++)
        for (size_t e = 0; e < l->hub[i].n_eps; e++) {
            for (k = 0; k < a->n_hubs && strcmp(a->hubs[k], l->hub[i].eps[e]) != 0; k++)
                ;
            if (k == a->n_hubs && a->n_hubs < TOKEN_HUB_MAX)
                snprintf(a->hubs[a->n_hubs++], sizeof(a->hubs[0]), "%s", l->hub[i].eps[e]);
        }
    for (a->hub_idx = 0; a->hub_idx < a->n_hubs && strcmp(a->hubs[a->hub_idx], cur) != 0;
         a->hub_idx++)
        ;
    if (a->hub_idx == a->n_hubs)
        a->hub_idx = 0;
    return 0;
}

/* The hub's list of its cluster (the hello's tether-hubs header): a new
 * one is applied and kept in key_dir/hubs.json, so that the site knows
 * hubs that joined after it enrolled, at its next dial and after a
 * restart. A list that does not parse changes nothing. */
static void learn_hubs(struct agent *a, const struct sstream *ss)
{
    struct hubs_list *l = NULL;
    const struct upstream_header *v = NULL;
    uint8_t sig[32];
    int rc;

    for (size_t i = 0; i < ss->n_hdrs && v == NULL; i++)
        if (ss->hdrs[i].name_len == 11 && memcmp(ss->hdrs[i].name, "tether-hubs", 11) == 0)
            v = &ss->hdrs[i];
    if (!a->learn_hubs || v == NULL || crypto_sha256(v->value, v->value_len, sig) != 0 ||
        (a->has_hubs_sig && memcmp(sig, a->hubs_sig, sizeof(sig)) == 0))
        return;
    if ((l = malloc(sizeof(*l))) == NULL)
        return;
    if (hubs_parse(v->value, v->value_len, l) != 0) {
        log_event(LOG_WARN, "hubs_refused", "hub=%s reason=\"not a list of hubs and endpoints\"",
                  a->hubs[a->hub_idx]);
    } else if (agent_apply_hubs(a, l) != 0) {
        log_event(LOG_WARN, "hubs_refused", "hub=%s reason=\"names none of site.conf's hub keys\"",
                  a->hubs[a->hub_idx]);
    } else {
        rc = a->key_dir[0] != '\0' ? hubs_save(a->key_dir, l) : 0;
        if (rc != 0)
            log_event(LOG_WARN, "hubs_not_saved", "dir=%s error=%s", log_q(a->key_dir),
                      log_q(strerror(-rc)));
        log_event(LOG_INFO, "hubs_learned", "hub=%s hubs=%zu keys=%zu endpoints=%zu",
                  a->hubs[a->hub_idx], l->n, a->n_pins, a->n_hubs);
    }
    memcpy(a->hubs_sig, sig, sizeof(sig));
    a->has_hubs_sig = 1;
    free(l);
}

static void hello(struct sstream *ss)
{
    struct agent *a = ss->a;
    json_t *svcs = json_array(), *res = json_array();
    json_t *o;

    for (size_t i = 0; i < a->n_services; i++) {
        json_array_append_new(svcs, json_string(a->services[i].name));
        if (a->services[i].restricted)
            json_array_append_new(res, json_string(a->services[i].name));
    }
    /* "o" steals svcs and res; respond_json() releases o. */
    o = json_pack("{s:s,s:s,s:o,s:o}", "site", a->site, "agent_version", TETHER_VERSION, "services",
                  svcs, "restricted", res);
    respond_json(ss, "200", o, NULL);
}

/* The hub's events stream: 200 now, then one line per announcement
 * (agent_announce); it ends only with the tunnel. */
static void events_open(struct sstream *ss)
{
    nghttp2_nv nva[2];
    nghttp2_data_provider prd = {{.ptr = ss}, resp_read};

    ss->events = 1;
    ss->head_sent = 1;
    nva[0] = h2_nv(":status", 7, "200", 3);
    nva[1] = h2_nv("content-type", 12, "text/plain", 10);
    nghttp2_submit_response(ss->a->h2.s, ss->id, nva, 2, &prd);
    h2_send(&ss->a->h2);
    if (ss->a->on_live != NULL)
        ss->a->on_live(ss->a);
}

void agent_announce(struct agent *a, const char *line)
{
    struct sstream *ss;

    LIST_FOREACH(ss, &a->streams, link)
    {
        /* A hub that reads none of them gets one line, not a growing pile. */
        if (!ss->events || ss->resp.len > 4096)
            continue;
        if (buf_append(&ss->resp, line, strlen(line)) != 0 || buf_append(&ss->resp, "\n", 1) != 0)
            continue;
        ss_kick(ss);
    }
}

static void start_request(struct sstream *ss)
{
    struct agent *a = ss->a;
    struct agent_service *svc = NULL;
    struct upstream_opts opts = {0, a->upstream_timeout_ms, NULL, NULL};
    int64_t clen;
    char *path = NULL;
    int rc;

    /* The hub's own hello names no service; a proxied request names exactly
     * one, twice over (:authority and tether-service, both set by the hub). */
    if (ss->n_service == 0 && ss->path != NULL && strcmp(ss->path, "/.tether/hello") == 0) {
        learn_hubs(a, ss);
        hello(ss);
        return;
    }
    if (ss->n_service == 0 && ss->path != NULL && strcmp(ss->path, "/.tether/events") == 0) {
        events_open(ss);
        return;
    }
    if (ss->n_service > 1 ||
        (ss->n_authority > 0 && (ss->long_authority || strcmp(ss->authority, ss->service) != 0))) {
        respond_simple(ss, 400, "bad_request", "the request names its service ambiguously");
        return;
    }
    for (size_t i = 0; i < a->n_services; i++)
        if (strcmp(a->services[i].name, ss->service) == 0)
            svc = &a->services[i];
    if (svc == NULL || ss->path == NULL || ss->path[0] != '/') {
        /* Only configured services are reachable: no open proxy. */
        respond_simple(ss, 404, "not_found", "this site does not offer that service");
        return;
    }
    /* The hub normalised the path already; a site checks again so that no
     * request, whoever built it, leaves the service's base path. */
    path = malloc(strlen(ss->path) + 1);
    if (path == NULL) {
        respond_simple(ss, 500, "internal", "out of memory");
        return;
    }
    rc = urlpath_normalize(ss->path, path, strlen(ss->path) + 1);
    if (rc != 0) {
        free(path);
        respond_simple(ss, 400, "bad_request", urlpath_strerror(rc));
        return;
    }
    free(ss->path);
    ss->path = path;
    if (strcmp(ss->method, "CONNECT") == 0) {
        start_connect(ss, svc);
        return;
    }
    if (svc->url.kind == NET_URL_TCP) {
        respond_simple(ss, 400, "bad_request",
                       "a tcp:// service is reached with CONNECT (:protocol connect-tcp) only");
        return;
    }
    /* A body-less POST/PUT/PATCH still says Content-Length: 0 (some servers
     * answer 411 otherwise); a body-less GET says nothing. */
    clen = ss->content_length;
    if (ss->req_ended)
        clen = (strcmp(ss->method, "POST") == 0 || strcmp(ss->method, "PUT") == 0 ||
                strcmp(ss->method, "PATCH") == 0)
                   ? 0
                   : -1;
    opts.tls_ctx = svc->tls_ctx;
    opts.tls = &svc->tls;
    ss->up_h2 = svc->url.kind == NET_URL_H2C || svc->url.kind == NET_URL_H2;
    if (ss->up_h2)
        rc = uph2_start(a->loop, &svc->url, &opts, ss->method, ss->path, ss->hdrs, ss->n_hdrs,
                        !ss->req_ended, ss->req_ended ? -1 : ss->content_length, ss->te_trailers,
                        &up_cbs, ss, (struct uph2_stream **)&ss->up);
    else
        rc = upstream_start(a->loop, &svc->url, &opts, ss->method, ss->path, ss->hdrs, ss->n_hdrs,
                            !ss->req_ended, clen, &up_cbs, ss, (struct upstream **)&ss->up);
    if (rc != 0) {
        ss->up = NULL;
        respond_simple(ss, 502, "bad_gateway", "could not start a request to the local service");
        return;
    }
    if (ss->req_ended)
        sup_end(ss, NULL, 0);
    /* The head is copied: hdrs now gathers the request's trailers, if any. */
    drop_headers(ss);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct agent *a = user_data;
    struct sstream *ss;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    ss = calloc(1, sizeof(*ss));
    if (ss == NULL)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    ss->a = a;
    ss->id = frame->hd.stream_id;
    ss->content_length = -1;
    buf_init(&ss->resp);
    buf_init(&ss->rtrl);
    LIST_INSERT_HEAD(&a->streams, ss, link);
    nghttp2_session_set_stream_user_data(session, ss->id, ss);
    return 0;
}

static int add_header(struct sstream *ss, const uint8_t *name, size_t nl, const uint8_t *value,
                      size_t vl)
{
    struct upstream_header *nh = realloc(ss->hdrs, (ss->n_hdrs + 1) * sizeof(*nh));
    char **ns;
    if (nh == NULL)
        return -1;
    ss->hdrs = nh;
    ns = realloc(ss->hstore, (ss->n_hdrs + 1) * 2 * sizeof(*ns));
    if (ns == NULL)
        return -1;
    ss->hstore = ns;
    ns[ss->n_hdrs * 2] = strndup((const char *)name, nl);
    ns[ss->n_hdrs * 2 + 1] = strndup((const char *)value, vl);
    if (ns[ss->n_hdrs * 2] == NULL || ns[ss->n_hdrs * 2 + 1] == NULL) {
        free(ns[ss->n_hdrs * 2]);
        free(ns[ss->n_hdrs * 2 + 1]);
        return -1;
    }
    nh[ss->n_hdrs].name = ns[ss->n_hdrs * 2];
    nh[ss->n_hdrs].name_len = nl;
    nh[ss->n_hdrs].value = ns[ss->n_hdrs * 2 + 1];
    nh[ss->n_hdrs].value_len = vl;
    ss->n_hdrs++;
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *user_data)
{
    struct sstream *ss = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

    if (ss == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (h2_header_budget(&ss->budget, nl, vl) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nl == 7 && memcmp(name, ":method", 7) == 0) {
        snprintf(ss->method, sizeof(ss->method), "%.*s", (int)vl, value);
        return 0;
    }
    if (nl == 5 && memcmp(name, ":path", 5) == 0) {
        free(ss->path);
        ss->path = strndup((const char *)value, vl);
        return ss->path ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (nl == 10 && memcmp(name, ":authority", 10) == 0) {
        ss->n_authority++;
        ss->long_authority = vl > TOKEN_NAME_MAX;
        snprintf(ss->authority, sizeof(ss->authority), "%.*s", (int)vl, value);
        return 0;
    }
    if (nl == 9 && memcmp(name, ":protocol", 9) == 0) {
        snprintf(ss->protocol, sizeof(ss->protocol), "%.*s", (int)vl, value);
        return 0;
    }
    if (nl > 0 && name[0] == ':')
        return 0;
    if (nl == 14 && memcmp(name, "tether-service", 14) == 0) {
        if (vl > TOKEN_NAME_MAX)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        /* The first one counts; a second makes the request ambiguous (refused). */
        if (ss->n_service++ == 0)
            snprintf(ss->service, sizeof(ss->service), "%.*s", (int)vl, value);
        return 0;
    }
    if (nl == 14 && memcmp(name, "content-length", 14) == 0) {
        ss->content_length = hfield_content_length((const char *)value, vl);
        return 0;
    }
    if (nl == 2 && memcmp(name, "te", 2) == 0 &&
        hfield_token_listed((const char *)value, vl, "trailers", 8))
        ss->te_trailers = 1; /* for HTTP/2 services (gRPC needs it) */
    if (h2_hop_by_hop((const char *)name, nl) || (nl == 4 && memcmp(name, "host", 4) == 0))
        return 0;
    return add_header(ss, name, nl, value, vl) == 0 ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* "reconnect_window_ms=N" in a GOAWAY's (printable, bounded) debug data; 0
 * without it. A hub asks for at most a minute: more is not honoured. */
static unsigned goaway_window_ms(const char *why)
{
    const char *p = strstr(why, "reconnect_window_ms=");
    unsigned long v;
    char *end;

    if (p == NULL)
        return 0;
    p += strlen("reconnect_window_ms=");
    if (*p < '0' || *p > '9')
        return 0;
    errno = 0;
    v = strtoul(p, &end, 10);
    if (errno != 0 || v > AGENT_HUB_WINDOW_MAX_MS)
        return AGENT_HUB_WINDOW_MAX_MS;
    return (unsigned)v;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct agent *a = user_data;
    struct sstream *ss;

    a->last_heard_ms = uv_now(a->loop);
    if (a->state != AG_CONNECTED && frame->hd.type == NGHTTP2_SETTINGS && a->conn != NULL) {
        a->attempt = 0;
        a->offline_since_ms = 0;
        a->tried_in_round = 0;
        a->hub_window_ms = 0;
        enter_state(a, AG_CONNECTED, "hub settings received");
        if (a->use_proxy)
            log_event(LOG_INFO, "connected", "hub=%s addr=%s site=%s via=proxy",
                      a->hubs[a->hub_idx], a->conn->peer, a->site);
        else
            log_event(LOG_INFO, "connected", "hub=%s addr=%s site=%s", a->hubs[a->hub_idx],
                      a->conn->peer, a->site);
        /* One deadline at last_heard + 2 intervals, moved on as frames
         * arrive: silence is noticed two intervals after it began, not up to
         * a tick later. */
        if (a->ping_interval_ms > 0)
            uv_timer_start(&a->watch_timer, watch_cb, 2 * a->ping_interval_ms, 0);
    }
    if (frame->hd.stream_id == 0) {
        if (frame->hd.type == NGHTTP2_GOAWAY) {
            /* The hub says why in the GOAWAY's debug data ("site revoked by
             * operator", "key rotated", "hub shutting down"): show it,
             * bounded and printable only. */
            char why[128];
            size_t n = frame->goaway.opaque_data_len < sizeof(why) - 1
                           ? frame->goaway.opaque_data_len
                           : sizeof(why) - 1;
            for (size_t i = 0; i < n; i++) {
                uint8_t ch = frame->goaway.opaque_data[i];
                why[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
            }
            why[n] = '\0';
            log_event(LOG_INFO, "hub_goaway", "hub=%s reason=%s", a->hubs[a->hub_idx],
                      log_q(n ? why : "none"));
            a->hub_window_ms = goaway_window_ms(why);
        }
        return 0;
    }
    ss = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (ss == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        ss->req_ended = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
        start_request(ss);
        return 0;
    }
    /* The body ends with its last DATA or with the request's trailers. */
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !ss->req_ended) {
        ss->req_ended = 1;
        if (ss->up != NULL)
            sup_end(ss, ss->hdrs, ss->n_hdrs);
        if (ss->bs != NULL)
            bytestream_end(ss->bs);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                         const uint8_t *data, size_t len, void *user_data)
{
    struct agent *a = user_data;
    struct sstream *ss = nghttp2_session_get_stream_user_data(session, stream_id);

    a->last_heard_ms = uv_now(a->loop);
    /* Connection credit goes back at once: an upload the service does not
     * read holds its own stream window (1 MiB, queued for the service) and
     * nothing other streams need, also after it is cancelled. */
    nghttp2_session_consume_connection(session, len);
    if (ss != NULL && ss->bs != NULL) {
        if (bytestream_write(ss->bs, data, len) != 0)
            nghttp2_session_consume_stream(session, stream_id, len);
        return 0;
    }
    if (ss == NULL || ss->up == NULL || sup_write(ss, data, len) != 0)
        nghttp2_session_consume_stream(session, stream_id, len);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
    struct sstream *ss = nghttp2_session_get_stream_user_data(session, stream_id);
    if (ss != NULL) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        ss_free(ss);
    }
    return 0; /* never fatal: a cancelled request is normal */
}

/* --- connection --- */

static void schedule_reconnect(struct agent *a, const char *why);

static int agent_conn_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct agent *a = c->owner;
    if (a->h2.s == NULL)
        return -EPROTO;
    if (h2_feed(&a->h2, data, len) < 0)
        return -EPROTO;
    if (h2_finished(&a->h2))
        conn_close_after_flush(c, "hub ended the session");
    return 0;
}

static void agent_conn_drain(struct conn *c)
{
    struct agent *a = c->owner;
    if (a->h2.s != NULL && h2_send(&a->h2) < 0)
        conn_close(c, "http2 send error");
}

static void watch_cb(uv_timer_t *t)
{
    struct agent *a = t->data;
    uint64_t now = uv_now(a->loop), limit = 2 * a->ping_interval_ms, quiet;

    if (a->state != AG_CONNECTED || a->conn == NULL || a->ping_interval_ms == 0)
        return;
    quiet = now >= a->last_heard_ms ? now - a->last_heard_ms : 0;
    if (quiet >= limit) {
        char why[96];
        snprintf(why, sizeof(why), "hub silent for %llu ms", (unsigned long long)quiet);
        conn_close(a->conn, why);
        return;
    }
    uv_timer_start(&a->watch_timer, watch_cb, limit - quiet, 0);
}

static void agent_conn_handshake(struct conn *c)
{
    struct agent *a = c->owner;
    static const struct h2_callbacks cb = {
        .begin_headers = on_begin_headers,
        .header = on_header,
        .frame_recv = on_frame_recv,
        .data_chunk = on_data_chunk,
        .stream_close = on_stream_close,
        .send_data = resp_send,
    };
    nghttp2_session *s = NULL;
    char alpn[32];

    tls_alpn(&c->tls, alpn, sizeof(alpn));
    if (strcmp(alpn, "tether/1") != 0) {
        conn_close(c, "hub did not accept ALPN tether/1");
        return;
    }
    if (h2_session_new(H2_ROLE_SITE, &cb, &agent_h2_limits, a, &s) != 0) {
        conn_close(c, "out of memory");
        return;
    }
    h2_init(&a->h2, s, c);
    a->last_heard_ms = uv_now(a->loop);
    /* In TLS 1.3 the client finishes before the hub has judged its
     * certificate: the tunnel counts as up at the hub's first SETTINGS. */
    h2_send(&a->h2);
}

static void agent_conn_close(struct conn *c, const char *reason)
{
    struct agent *a = c->owner;
    int was_connected = a->state == AG_CONNECTED;
    char why[512];

    while (!LIST_EMPTY(&a->streams))
        ss_free(LIST_FIRST(&a->streams));
    if (a->h2.s != NULL)
        h2_free(&a->h2);
    a->conn = NULL;
    uv_timer_stop(&a->watch_timer);
    uv_timer_stop(&a->connect_timer);
    if (a->proxy_wait && a->close_why[0] == '\0') {
        char pname[NET_HOST_MAX + 10];
        proxyconnect_name(&a->proxy, pname, sizeof(pname));
        snprintf(a->close_why, sizeof(a->close_why),
                 "no answer from the proxy %.80s to CONNECT %.80s (%.80s)", pname,
                 a->hubs[a->hub_idx], reason);
    }
    a->proxy_wait = 0;
    snprintf(why, sizeof(why), "%s", a->close_why[0] ? a->close_why : reason);
    a->close_why[0] = '\0';
    if (!was_connected && a->v.result != 0 && a->v.seen_pin[0] != '\0') {
        snprintf(why, sizeof(why),
                 "hub key pin mismatch: expected %s%s, got %s; something on the path intercepts "
                 "TLS (or the hub key changed)",
                 a->hub_pins[0], a->n_pins > 1 ? " or another key of its cluster" : "",
                 a->v.seen_pin);
        log_event(LOG_ERROR, "tls_intercepted", "hub=%s expected=%s trusted=%zu got=%s",
                  a->hubs[a->hub_idx], a->hub_pins[0], a->n_pins, a->v.seen_pin);
    } else if (!was_connected && a->v.result == 0 && c->tls_started) {
        snprintf(why, sizeof(why),
                 "the hub refused this site's key during the TLS handshake (site revoked, "
                 "disabled or unknown: 'tetherctl site show %s' on the hub says which; a revoked "
                 "site enrolls again with a token from 'tetherctl site token %s') [%s]",
                 a->site, a->site, reason);
    }
    if (was_connected) /* our own stop is no trouble: information only */
        log_event(a->stopping ? LOG_INFO : LOG_WARN, "disconnected", "hub=%s reason=%s",
                  a->hubs[a->hub_idx], log_q(why));
    else if (!a->stopping)
        log_event(LOG_WARN, "connect_failed", "hub=%s reason=%s", a->hubs[a->hub_idx], log_q(why));
    schedule_reconnect(a, why);
}

static int agent_conn_peek(struct conn *c, const uint8_t *data, size_t len);

static const struct conn_ops agent_conn_ops = {
    .on_peek = agent_conn_peek,
    .on_handshake = agent_conn_handshake,
    .on_data = agent_conn_data,
    .on_drain = agent_conn_drain,
    .on_close = agent_conn_close,
};

static int check_hub_pin(void *arg, const char *pin)
{
    struct agent *a = arg;

    for (size_t i = 0; i < a->n_pins; i++)
        if (crypto_pin_equal(pin, a->hub_pins[i]))
            return 0;
    return -EACCES;
}

static void start_tls(struct agent *a, struct conn *c)
{
    char host[NET_HOST_MAX + 1];
    int port;

    a->v.check = check_hub_pin;
    a->v.arg = a;
    net_split_hostport(a->hubs[a->hub_idx], 6443, host, &port);
    if (conn_start_tls(c, a->ctx, host, "tether/1", 1, &a->v) != 0)
        conn_close(c, "tls setup failed");
}

/* The proxy's reply to CONNECT arrives here, before TLS: the conn keeps the
 * bytes in c->early, and whatever follows the reply header already belongs
 * to the tunnel and stays there for TLS. */
static int agent_conn_peek(struct conn *c, const uint8_t *data, size_t len)
{
    struct agent *a = c->owner;
    struct proxyconnect_reply *r = &a->proxy_reply;
    char pname[NET_HOST_MAX + 10];
    char *why = a->close_why;
    enum proxyconnect_result res;

    if (!a->proxy_wait)
        return -EPROTO; /* the hub never speaks first */
    /* c->early holds every byte so far; the parser has taken r->seen. */
    assert(r->seen <= len);
    res = proxyconnect_reply_feed(r, data + r->seen, len - r->seen, NULL);
    if (res == PROXYCONNECT_NEED_MORE)
        return 0;
    proxyconnect_name(&a->proxy, pname, sizeof(pname));
    if (res == PROXYCONNECT_ERROR) {
        snprintf(why, sizeof(a->close_why), "proxy %.80s did not answer CONNECT with HTTP (%s)",
                 pname, proxyconnect_error_string(r->error));
        conn_close(c, "proxy error");
        return 0;
    }
    if (r->status < 200 || r->status > 299) {
        snprintf(why, sizeof(a->close_why), "proxy %.60s refused CONNECT to %.60s: %d %.60s%s",
                 pname, a->hubs[a->hub_idx], r->status, r->reason,
                 proxyconnect_auth_refused(r->status)
                     ? " (wrong or missing user:password in the proxy URL)"
                     : "");
        conn_close(c, "proxy refused");
        return 0;
    }
    a->proxy_wait = 0;
    buf_consume(&c->early, r->seen);
    enter_state(a, AG_HANDSHAKE, "proxy tunnel open");
    start_tls(a, c);
    return 0;
}

static void proxy_written(uv_write_t *req, int status)
{
    struct conn *c = req->handle->data;

    if (status < 0 && !c->closing)
        conn_close(c, "cannot send CONNECT to the proxy");
}

static void source_port_fatal(struct agent *a, int rc);

static void on_connect(uv_connect_t *req, int status)
{
    struct agent *a = req->data;
    struct conn *c = a->conn;

    uv_timer_stop(&a->connect_timer);
    if (c == NULL)
        return;
    if (status < 0) {
        /* libuv reports a bind conflict only here, through the connect. */
        if (a->source_port > 0 && (status == UV_EADDRINUSE || status == UV_EADDRNOTAVAIL) &&
            !a->stopping) {
            source_port_fatal(a, status);
            a->stopping = 1;
            a->exit_code = 1;
        }
        conn_close(c, uv_strerror(status));
        return;
    }
    if (a->stopping) {
        conn_close(c, "stopping");
        return;
    }
    /* The deadline covers the proxy's answer and the TLS handshake. */
    if (conn_start(c, 15000) != 0) {
        conn_close(c, "connection lost at connect");
        return;
    }
    if (a->use_proxy) {
        uv_buf_t b;
        size_t len = 0;
        char ua[64];

        enter_state(a, AG_HANDSHAKE, "proxy connected");
        snprintf(ua, sizeof(ua), "tether-site/%s", TETHER_VERSION);
        if (proxyconnect_request(&a->proxy, a->hubs[a->hub_idx], ua, a->proxy_req,
                                 sizeof(a->proxy_req), &len) != 0) {
            conn_close(c, "bad hub endpoint for CONNECT");
            return;
        }
        a->proxy_wait = 1;
        proxyconnect_reply_init(&a->proxy_reply);
        b = uv_buf_init(a->proxy_req, (unsigned)len);
        if (uv_write(&a->proxy_wreq, (uv_stream_t *)&c->tcp, &b, 1, proxy_written) != 0)
            conn_close(c, "cannot send CONNECT to the proxy");
        return;
    }
    enter_state(a, AG_HANDSHAKE, "tcp connected");
    start_tls(a, c);
}

static void connect_timeout_cb(uv_timer_t *t)
{
    struct agent *a = t->data;

    if (a->conn == NULL || a->state != AG_CONNECTING)
        return;
    snprintf(a->close_why, sizeof(a->close_why),
             "no answer within %llu ms (SYN sent, no SYN-ACK: a firewall may drop it)",
             (unsigned long long)a->connect_timeout_ms);
    conn_close(a->conn, "connect timeout");
}

/* Never another port: the firewall may allow only this one. */
static void source_port_fatal(struct agent *a, int rc)
{
    char holder[160];

    portholder_describe(a->source_port, holder, sizeof(holder));
    snprintf(a->fatal, sizeof(a->fatal),
             "cannot use source port %d: %s; held by %s (see `ss -tanp sport = :%d`); not "
             "trying another port",
             a->source_port, uv_strerror(rc), holder, a->source_port);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct agent *a = req->data;
    struct conn *c;
    int rc;

    if (a->stopping) {
        uv_freeaddrinfo(res);
        enter_state(a, AG_STOPPED, "stopping");
        return;
    }
    if (status < 0 || res == NULL) {
        char why[256];
        if (a->use_proxy)
            snprintf(why, sizeof(why), "cannot resolve the proxy %.100s: %s", a->proxy.host,
                     uv_strerror(status));
        else
            snprintf(why, sizeof(why), "cannot resolve %s: %s", a->hubs[a->hub_idx],
                     uv_strerror(status));
        log_event(LOG_WARN, "connect_failed", "hub=%s reason=%s", a->hubs[a->hub_idx], log_q(why));
        uv_freeaddrinfo(res);
        schedule_reconnect(a, why);
        return;
    }
    c = conn_new(&a->conns, &agent_conn_ops, a);
    if (c == NULL) {
        uv_freeaddrinfo(res);
        schedule_reconnect(a, "out of memory");
        return;
    }
    a->conn = c;
    a->v.seen_pin[0] = '\0';
    a->v.result = -EPROTO;
    if (a->source_port > 0 || a->source_ip[0] != '\0') {
        struct sockaddr_storage local;
        const char *ip = a->source_ip;
        memset(&local, 0, sizeof(local));
        if (res->ai_family == AF_INET6) {
            rc = uv_ip6_addr(ip[0] ? ip : "::", a->source_port, (struct sockaddr_in6 *)&local);
        } else {
            rc = uv_ip4_addr(ip[0] ? ip : "0.0.0.0", a->source_port, (struct sockaddr_in *)&local);
        }
        /* libuv sets SO_REUSEADDR on bind: a reconnect works while the old
         * socket of this port sits in TIME_WAIT. */
        if (rc == 0)
            rc = uv_tcp_bind(&c->tcp, (struct sockaddr *)&local, 0);
        if (rc != 0 && a->source_port > 0) {
            source_port_fatal(a, rc);
            uv_freeaddrinfo(res);
            a->stopping = 1;
            a->exit_code = 1;
            conn_close(c, a->fatal);
            return;
        }
        if (rc != 0) {
            uv_freeaddrinfo(res);
            conn_close(c, "cannot bind the source address");
            return;
        }
    }
    enter_state(a, AG_CONNECTING, "resolved");
    a->connect_req.data = a;
    rc = uv_tcp_connect(&a->connect_req, &c->tcp, res->ai_addr, on_connect);
    uv_freeaddrinfo(res);
    if (rc != 0) {
        if (a->source_port > 0 && (rc == UV_EADDRINUSE || rc == UV_EADDRNOTAVAIL)) {
            source_port_fatal(a, rc);
            a->stopping = 1;
            a->exit_code = 1;
        }
        conn_close(c, uv_strerror(rc));
        return;
    }
    uv_timer_start(&a->connect_timer, connect_timeout_cb, a->connect_timeout_ms, 0);
}

/* 0 and the signature of key_dir/site.crt, or -errno. */
static int key_signature(const struct agent *a, uint64_t sig[3])
{
    char path[AGENT_PATH_MAX + 16];
    struct stat st;

    snprintf(path, sizeof(path), "%s/site.crt", a->key_dir);
    if (stat(path, &st) != 0)
        return -errno;
    sig[0] = (uint64_t)st.st_dev;
    sig[1] = (uint64_t)st.st_ino;
    sig[2] = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
    return 0;
}

/* rotate-key replaces site.key and site.crt (renames) while the agent runs;
 * the hub then cuts the tunnel of the old key, and the next dial must use
 * the new one. A half-done rotation (key renamed, certificate not yet) fails
 * to load and is tried again at the next dial. */
static void reload_key_if_changed(struct agent *a)
{
    struct crypto_identity id = {0};
    WOLFSSL_CTX *ctx = NULL;
    uint64_t sig[3];

    if (a->key_dir[0] == '\0' || key_signature(a, sig) != 0 ||
        memcmp(sig, a->key_sig, sizeof(sig)) == 0)
        return;
    if (crypto_identity_load(a->key_dir, "site", &id) != 0 || tls_ctx_client(&id, &ctx) != 0) {
        crypto_identity_free(&id);
        log_event(LOG_WARN, "site_key_reload_failed", "dir=%s", log_q(a->key_dir));
        return;
    }
    log_event(LOG_INFO, "site_key_reloaded", "site=%s old_pin=%s pin=%s", a->site, a->id.pin,
              id.pin);
    /* Connections made with the old context hold their own reference. */
    wolfSSL_CTX_free(a->ctx);
    crypto_identity_free(&a->id);
    a->ctx = ctx;
    a->id = id;
    memcpy(a->key_sig, sig, sizeof(sig));
}

/* Starts one connection attempt to the current hub endpoint: resolves it (or
 * the proxy), then connects in on_resolved. */
static void start_attempt(struct agent *a)
{
    char host[NET_HOST_MAX + 1], port_s[8];
    struct addrinfo hints;
    int port, rc;

    if (a->stopping)
        return;
    reload_key_if_changed(a);
    if (net_split_hostport(a->hubs[a->hub_idx], 6443, host, &port) != 0) {
        schedule_reconnect(a, "bad hub endpoint");
        return;
    }
    /* Through a proxy, the proxy resolves the hub's name. */
    if (a->use_proxy) {
        snprintf(host, sizeof(host), "%s", a->proxy.host);
        port = a->proxy.port;
    }
    snprintf(port_s, sizeof(port_s), "%d", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    enter_state(a, AG_RESOLVING, a->hubs[a->hub_idx]);
    a->gai.data = a;
    rc = uv_getaddrinfo(a->loop, &a->gai, on_resolved, host, port_s, &hints);
    if (rc != 0)
        schedule_reconnect(a, uv_strerror(rc));
}

static void backoff_cb(uv_timer_t *t)
{
    start_attempt(t->data);
}

static uint64_t jitter(uint64_t max)
{
    uint32_t r = 0;
    crypto_random(&r, sizeof(r));
    return max ? (uint64_t)r % (max + 1) : 0;
}

static void schedule_reconnect(struct agent *a, const char *why)
{
    uint64_t delay, ceiling, offline;

    if (a->stopping) {
        enter_state(a, AG_STOPPED, why);
        return;
    }
    if (a->offline_since_ms == 0)
        a->offline_since_ms = uv_now(a->loop);
    /* Next endpoint first: a site whose firewall blocks one port tries the
     * next at once; a full round of failures backs off. */
    a->tried_in_round++;
    a->hub_idx = (a->hub_idx + 1) % a->n_hubs;
    if (a->tried_in_round < a->n_hubs) {
        enter_state(a, AG_BACKOFF, why);
        uv_timer_start(&a->backoff_timer, backoff_cb, 0, 0);
        return;
    }
    a->tried_in_round = 0;
    a->hub_idx = 0;
    offline = uv_now(a->loop) - a->offline_since_ms;
    if (a->hub_window_ms > 0) {
        /* The draining hub sized the window by its number of sites. */
        delay = jitter(a->hub_window_ms);
        a->hub_window_ms = 0;
    } else {
        ceiling = a->backoff_base_ms << (a->attempt < 16 ? a->attempt : 16);
        if (ceiling > a->backoff_cap_ms)
            ceiling = a->backoff_cap_ms;
        /* Quick failures (refused at once, short random waits) must not run
         * the ceiling up: after a 2 s outage a site once waited 11.5 s. The
         * wait stays within the time already offline, so a site is back
         * within about twice the outage. */
        if (offline < a->backoff_base_ms)
            offline = a->backoff_base_ms;
        if (ceiling > offline)
            ceiling = offline;
        a->attempt++;
        /* Full jitter: a hub restart must not bring every site back at once. */
        delay = jitter(ceiling);
    }
    enter_state(a, AG_BACKOFF, why);
    log_event(LOG_INFO, "reconnect_in", "ms=%llu attempt=%u", (unsigned long long)delay,
              a->attempt);
    uv_timer_start(&a->backoff_timer, backoff_cb, delay, 0);
}

void agent_init(struct agent *a, uv_loop_t *loop)
{
    memset(a, 0, sizeof(*a));
    a->loop = loop;
    conn_ctx_init(&a->conns, loop);
    a->ping_interval_ms = 20000;
    a->upstream_timeout_ms = 60000;
    a->connect_timeout_ms = 10000;
    a->backoff_base_ms = 500;
    a->backoff_cap_ms = 30000;
    uv_timer_init(loop, &a->backoff_timer);
    uv_timer_init(loop, &a->watch_timer);
    uv_timer_init(loop, &a->connect_timer);
    a->backoff_timer.data = a;
    a->watch_timer.data = a;
    a->connect_timer.data = a;
}

int agent_start(struct agent *a)
{
    if (a->n_hubs == 0 || a->ctx == NULL)
        return -EINVAL;
    if (a->key_dir[0] != '\0' && key_signature(a, a->key_sig) != 0)
        memset(a->key_sig, 0, sizeof(a->key_sig));
    start_attempt(a);
    return 0;
}

void agent_stop(struct agent *a)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    uv_timer_stop(&a->backoff_timer);
    uv_timer_stop(&a->connect_timer);
    if (a->conn != NULL) {
        if (a->h2.s != NULL) {
            nghttp2_submit_goaway(a->h2.s, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(a->h2.s),
                                  NGHTTP2_NO_ERROR, NULL, 0);
            h2_send(&a->h2);
        }
        conn_close_after_flush(a->conn, "site stopping");
    }
}

void agent_free(struct agent *a)
{
    /* Pooled keep-alive connections to local services do not keep the loop
     * alive; close them so the loop can be closed. */
    upstream_close_idle(a->loop);
    uph2_close_idle(a->loop);
    uv_close((uv_handle_t *)&a->backoff_timer, NULL);
    uv_close((uv_handle_t *)&a->watch_timer, NULL);
    uv_close((uv_handle_t *)&a->connect_timer, NULL);
}
