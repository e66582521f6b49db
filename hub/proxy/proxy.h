/* Proxying a user request to a site's service through its tunnel, streamed with end-to-end
 * backpressure. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_PROXY_H
#define TETHER_PROXY_H

#include "../core/hub.h"
#include "../http/ureq.h"

/* Starts proxying r to `service` of the site t with the given path (starting
 * with '/', query included). Answers errors itself. user is the token name
 * passed to the site in X-Tether-User. Returns 0 when the request went on
 * (or waits for a slot), else the status it was answered with and *code
 * (static) its error code; r is finished then (readable until the caller returns). */
int proxy_start(struct hub *h, struct ureq *r, struct tunnel *t, const char *service,
                const char *path, const char *user, const char **code);
/* The same for a site whose tunnel is on peer hub via_hub: the request
 * goes over the link to it (peer_stream_open), which checks the token,
 * the service and the path again and answers as for its own users. */
int proxy_start_via(struct hub *h, struct ureq *r, int64_t via_hub, int64_t site_id,
                    const char *site, const char *service, const char *path, const char *user,
                    const char **code);
/* One request's access line (event "access", unless hub.conf says
 * access_log = off): the path is logged without its query string, which may
 * hold secrets. Called by the proxy when a request ends, and by the router
 * for one it refused before proxying. */
struct proxy_access {
    const char *site, *service, *method, *path, *token;
    int status;                   /* the status the user got; 0: reset before any */
    uint64_t bytes_in, bytes_out; /* request body from the user, response body to them */
    uint64_t ms;
};
void proxy_access_log(struct hub *h, const struct proxy_access *a);
/* "conn_requests", ...: static. */
const char *proxy_refusal_name(enum proxy_refusal kind);

#endif
