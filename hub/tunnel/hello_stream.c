/* The hello exchange on a new tunnel: GET /.tether/hello, then the site's version and services. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"
#include "../core/events.h"
#include "hello.h"
#include "tunnel_int.h"

/* The largest hello answer kept; the site's real one is a few KB. */
#define HELLO_MAX (64 * 1024)

struct hello {
    struct tunnel *t;
    struct buf body;
    struct tstream *s;
    int status;
};

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

static void hello_end(void *arg)
{
    struct hello *hl = arg;
    struct tunnel *t = hl->t;
    struct hello_info info = {.why = "hello answered with a status other than 200"};
    int rc = -EINVAL;

    if (hl->status == 200)
        rc = hello_parse(buf_head(&hl->body), hl->body.len, &info);
    if (rc != 0) {
        log_event(LOG_WARN, "site_hello_refused", "site=%s reason=%s value=%s", t->site,
                  log_q(info.why), log_q(info.bad[0] ? info.bad : NULL));
        /* Standby or not: a site that answers but not as a site agent does
         * is not served. */
        tunnel_kill(t, "invalid hello");
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
        registry_site_seen(t->hub->reg, t->site_id, hub_now(), t->agent_version, t->services_json,
                           t->conn ? t->conn->peer : NULL);
        /* services_json holds only checked names: safe and readable raw. */
        log_event(LOG_INFO, "site_hello", "site=%s agent_version=%s services=%s restricted=%s",
                  t->site, log_q(t->agent_version), t->services_json, t->restricted_json);
        if (t->conn != NULL && !t->closing)
            events_site_online(&t->hub->subs, t);
    }
    buf_free(&hl->body);
    free(hl);
}

static void hello_error(void *arg, enum tstream_err err, const char *why)
{
    struct hello *hl = arg;
    if (tunnel_is_standby(hl->t))
        tunnel_kill(hl->t, "no answer to the hello");
    buf_free(&hl->body);
    free(hl);
}

static size_t hello_body(void *arg, uint8_t *dst, size_t cap, int *eof)
{
    *eof = 1;
    return 0;
}

static const struct tstream_ops hello_ops = {hello_head, hello_data, hello_end, hello_error,
                                             hello_body};

void tunnel_send_hello(struct tunnel *t)
{
    struct hello *hl = calloc(1, sizeof(*hl));
    nghttp2_nv nva[] = {
        h2_nv(":method", 7, "GET", 3),
        h2_nv(":scheme", 7, "https", 5),
        h2_nv(":authority", 10, "site", 4),
        h2_nv(":path", 5, "/.tether/hello", 14),
    };
    if (hl == NULL)
        return;
    hl->t = t;
    buf_init(&hl->body);
    if (tunnel_stream_open(t, nva, 4, 0, &hello_ops, hl, &hl->s) != 0)
        free(hl);
}
