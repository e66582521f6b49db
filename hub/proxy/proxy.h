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
/* "conn_requests", ...: static. */
const char *proxy_refusal_name(enum proxy_refusal kind);

#endif
