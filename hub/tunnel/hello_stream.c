/* The hello exchange on a new tunnel (GET /.tether/hello: the site's version and services), and
 * the site's announcements (GET /.tether/events) that make the hub ask again. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../core/events.h"
#include "hello.h"
#include "tunnel_int.h"

/* The largest hello answer kept; the site's real one is a few KB. */
#define HELLO_MAX (64 * 1024)
/* The longest announcement line read; longer ones are skipped whole. */
#define EV_LINE_MAX 64
/* Events streams in a row that may end without news before the hub stops
 * asking (until the site connects again); the wait before each next one
 * doubles from one ping interval. */
#define EV_FAILURES_MAX 5

struct hello {
    struct tunnel *t;
    struct buf body;
    struct tstream *s;
    int status;
    int refresh; /* asked again after an announcement: t keeps running as it is */
};

/* The open GET /.tether/events of a tunnel (t->ev). */
struct evwatch {
    struct tunnel *t;
    struct tstream *s;
    int status;
    int news; /* a line came on this stream */
    size_t len;
    int skipping; /* inside a line longer than EV_LINE_MAX */
    char line[EV_LINE_MAX + 1];
};

static void send_hello(struct tunnel *t, int refresh);

/* How long the cluster's hub list is served from memory: hubs join from
 * other hosts, so it is read again, at most this often, when a hello
 * needs it. */
#define HUBS_READ_MS 1000

static int add_hub(const struct reg_hub *hub, void *arg)
{
    json_t *eps = json_loads(hub->public_json ? hub->public_json : "[]", 0, NULL);
    json_t *o = json_pack("{s:s,s:o}", "pin", hub->pin, "endpoints",
                          json_is_array(eps) ? eps : json_array());

    if (!json_is_array(eps))
        json_decref(eps);
    return o != NULL && json_array_append_new(arg, o) == 0 ? 0 : -ENOMEM;
}

/* Every hub of the cluster with its endpoints, for the hello's tether-hubs
 * header (docs/protocol.md, "Cluster identity"): the sites keep the list
 * and trust its keys. NULL when it could never be read. */
static const char *cluster_hubs(struct hub *h)
{
    uint64_t now = uv_now(h->loop);
    json_t *list;
    char *text;

    /* A failed read waits its turn too: a database that is down must not
     * cost every hello of a reconnect storm a try. */
    if (h->hubs_read_ms != 0 && now - h->hubs_read_ms < HUBS_READ_MS)
        return h->hubs_json;
    h->hubs_read_ms = now;
    list = json_array();
    if (list != NULL && registry_hub_list(h->reg, add_hub, list) == 0 &&
        json_array_size(list) > 0 && (text = json_dumps(list, JSON_COMPACT)) != NULL) {
        free(h->hubs_json);
        h->hubs_json = text;
    }
    json_decref(list);
    return h->hubs_json; /* unreadable: the last list read, if any */
}

static void hello_head(void *arg, int status, const nghttp2_nv *nva, size_t n)
{
    struct hello *hl = arg;
    hl->status = status;
}

static void hello_data(void *arg, const uint8_t *data, size_t len)
{
    struct hello *hl = arg;
    if (hl->body.len + len <= HELLO_MAX)
        buf_append(&hl->body, data, len);
    tunnel_stream_consume(hl->s, len);
}

/* A refresh is over: one more if news came meanwhile. */
static void refresh_done(struct tunnel *t)
{
    t->refreshing = 0;
    if (t->refresh_again && t->conn != NULL && !t->closing) {
        t->refresh_again = 0;
        send_hello(t, 1);
    }
}

static void hello_end(void *arg)
{
    struct hello *hl = arg;
    struct tunnel *t = hl->t;
    struct hello_info info = {.why = "hello answered with a status other than 200"};
    int rc = -EINVAL;

    if (hl->status == 200)
        rc = hello_parse(buf_head(&hl->body), hl->body.len, &info);
    if (rc != 0 && hl->refresh) {
        /* The site checks a new set before it announces it; should a bad one
         * come anyway, the tunnel and its running streams stay as they are. */
        log_event(LOG_WARN, "site_hello_refused", "site=%s reason=%s value=%s kept=old", t->site,
                  log_q(info.why), log_q(info.bad[0] ? info.bad : NULL));
    } else if (rc != 0) {
        log_event(LOG_WARN, "site_hello_refused", "site=%s reason=%s value=%s", t->site,
                  log_q(info.why), log_q(info.bad[0] ? info.bad : NULL));
        /* Standby or not: a site that answers but not as a site agent does
         * is not served. */
        tunnel_kill(t, "invalid hello");
    } else if (hl->refresh && strcmp(t->services_json, info.services_json) == 0 &&
               strcmp(t->restricted_json, info.restricted_json) == 0 &&
               strcmp(t->agent_version, info.agent_version) == 0) {
        /* Nothing new: no registry write, however often a site announces. */
        hello_info_free(&info);
    } else {
        snprintf(t->agent_version, sizeof(t->agent_version), "%s", info.agent_version);
        tunnel_free_services(t);
        free(t->services_json);
        free(t->restricted_json);
        /* The tunnel takes over the parsed strings. */
        t->services_json = info.services_json;
        t->services = info.services;
        t->n_services = info.n_services;
        t->restricted_json = info.restricted_json;
        t->restricted = info.restricted;
        t->n_restricted = info.n_restricted;
        info.services_json = NULL;
        info.services = NULL;
        info.n_services = 0;
        info.restricted_json = NULL;
        info.restricted = NULL;
        info.n_restricted = 0;
        hello_info_free(&info);
        t->hello_done = 1;
        if (tunnel_is_standby(t) && !t->closing && t->conn != NULL)
            tunnel_take_over(t);
        /* The live tunnel's services are the labels of its site's request
         * counters (out of memory they keep the previous set). */
        if (!tunnel_is_standby(t))
            (void)stats_site_services(t->hub, t->site_id, t->services, t->n_services);
        tunnel__record_seen(t, hub_now(), t->agent_version, t->services_json,
                            t->conn ? t->conn->peer : NULL);
        /* services_json holds only checked names: safe and readable raw. */
        log_event(LOG_INFO, hl->refresh ? "site_services_changed" : "site_hello",
                  "site=%s agent_version=%s services=%s restricted=%s", t->site,
                  log_q(t->agent_version), t->services_json, t->restricted_json);
        if (t->conn != NULL && !t->closing)
            events_site_online(&t->hub->subs, t);
        /* The live tunnel listens for the site's announcements from now on. */
        if (!hl->refresh && !tunnel_is_standby(t))
            tunnel_events_tick(t);
    }
    if (hl->refresh)
        refresh_done(t);
    buf_free(&hl->body);
    free(hl);
}

static void hello_error(void *arg, enum tstream_err err, const char *why)
{
    struct hello *hl = arg;
    if (tunnel_is_standby(hl->t))
        tunnel_kill(hl->t, "no answer to the hello");
    if (hl->refresh)
        refresh_done(hl->t);
    buf_free(&hl->body);
    free(hl);
}

static size_t hello_body(void *arg, uint8_t *dst, size_t cap, int *eof)
{
    *eof = 1;
    return 0;
}

static const struct tstream_ops hello_ops = {
    .on_head = hello_head,
    .on_data = hello_data,
    .on_end = hello_end,
    .on_error = hello_error,
    .read_body = hello_body,
};

void tunnel_send_hello(struct tunnel *t)
{
    send_hello(t, 0);
}

static void send_hello(struct tunnel *t, int refresh)
{
    struct hello *hl = calloc(1, sizeof(*hl));
    const char *hubs = cluster_hubs(t->hub);
    nghttp2_nv nva[] = {
        h2_nv(":method", 7, "GET", 3),
        h2_nv(":scheme", 7, "https", 5),
        h2_nv(":authority", 10, "site", 4),
        h2_nv(":path", 5, "/.tether/hello", 14),
        h2_nv("tether-hubs", 11, hubs ? hubs : "", hubs ? strlen(hubs) : 0),
    };
    if (hl == NULL)
        return;
    hl->t = t;
    hl->refresh = refresh;
    buf_init(&hl->body);
    if (tunnel_stream_open(t, nva, hubs ? 5 : 4, 0, &hello_ops, hl, &hl->s) != 0) {
        free(hl);
        return;
    }
    if (refresh)
        t->refreshing = 1;
}

/* --- the site's announcements: GET /.tether/events --- */

static void ev_head(void *arg, int status, const nghttp2_nv *nva, size_t n)
{
    struct evwatch *ev = arg;
    ev->status = status;
}

/* One whole line from the site. */
static void ev_line(struct evwatch *ev)
{
    struct tunnel *t = ev->t;

    ev->line[ev->len] = '\0';
    if (strcmp(ev->line, "services-changed") != 0)
        return; /* unknown announcements are for newer hubs */
    ev->news = 1;
    t->ev_failures = 0;
    if (t->refreshing)
        t->refresh_again = 1;
    else
        send_hello(t, 1);
}

static void ev_data(void *arg, const uint8_t *data, size_t len)
{
    struct evwatch *ev = arg;

    tunnel_stream_consume(ev->s, len);
    if (ev->status != 200)
        return;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (!ev->skipping)
                ev_line(ev);
            ev->len = 0;
            ev->skipping = 0;
        } else if (ev->len < EV_LINE_MAX) {
            ev->line[ev->len++] = (char)data[i];
        } else {
            ev->skipping = 1;
        }
    }
}

/* The events stream is over (ended, reset, or the tunnel closed): another
 * one later, unless the site does not announce at all. */
static void ev_over(struct evwatch *ev)
{
    struct tunnel *t = ev->t;
    uint64_t iv = t->hub->cfg.ping_interval_ms;

    t->ev = NULL;
    if (ev->status == 404) {
        /* An older site agent: it never announces; nothing to retry. */
        t->ev_off = 1;
    } else if (!ev->news && ++t->ev_failures >= EV_FAILURES_MAX) {
        t->ev_off = 1;
        if (t->conn != NULL && !t->closing)
            log_event(LOG_WARN, "site_events_off", "site=%s status=%d tries=%u", t->site,
                      ev->status, t->ev_failures);
    }
    t->ev_retry_ms = uv_now(t->hub->loop) + (iv << (t->ev_failures < 8 ? t->ev_failures : 8));
    free(ev);
}

static void ev_end(void *arg)
{
    ev_over(arg);
}

static void ev_error(void *arg, enum tstream_err err, const char *why)
{
    ev_over(arg);
}

static const struct tstream_ops ev_ops = {
    .on_head = ev_head,
    .on_data = ev_data,
    .on_end = ev_end,
    .on_error = ev_error,
    .read_body = hello_body,
};

void tunnel_events_tick(struct tunnel *t)
{
    struct evwatch *ev;
    nghttp2_nv nva[] = {
        h2_nv(":method", 7, "GET", 3),
        h2_nv(":scheme", 7, "https", 5),
        h2_nv(":authority", 10, "site", 4),
        h2_nv(":path", 5, "/.tether/events", 15),
    };

    if (t->ev != NULL || t->ev_off || !t->hello_done || t->closing || t->conn == NULL ||
        tunnel_is_standby(t) || uv_now(t->hub->loop) < t->ev_retry_ms)
        return;
    ev = calloc(1, sizeof(*ev));
    if (ev == NULL)
        return;
    ev->t = t;
    if (tunnel_stream_open(t, nva, 4, 0, &ev_ops, ev, &ev->s) != 0) {
        free(ev);
        return;
    }
    t->ev = ev;
}

void tunnel_events_stop(struct tunnel *t)
{
    struct evwatch *ev = t->ev;

    if (ev == NULL)
        return;
    t->ev = NULL;
    t->ev_off = 1;
    tunnel_stream_cancel(ev->s); /* no callback after this */
    free(ev);
}
