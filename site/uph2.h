/* HTTP/2 exchanges between the site agent and an h2c:// or h2:// service: one connection per
 * service, many streams at once, flow control and trailers both ways. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_UPH2_H
#define TETHER_UPH2_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../common/net.h"
#include "upstream.h"

struct uph2_stream;

/* Starts one request to the service at url (NET_URL_H2C, or NET_URL_H2 with
 * opts->tls_ctx and opts->tls as for https://; -ENOTSUP for others) on the
 * service's shared HTTP/2 connection, made on first use. Same contract as
 * upstream_start: headers are copied; te_trailers adds "te: trailers" (the
 * user asked for trailers; gRPC servers require it); no callback runs from
 * inside this call or after uph2_abort. on_body_written reports request
 * bytes handed to the service's connection, on_trailers the response
 * trailers. A connection failure is on_error(502) with the reason (TLS
 * failures name the certificate check's). */
int uph2_start(uv_loop_t *loop, const struct net_url *url, const struct upstream_opts *opts,
               const char *method, const char *path, const struct upstream_header *headers,
               size_t n_headers, int has_body, int64_t content_length, int te_trailers,
               const struct upstream_cbs *cbs, void *arg, struct uph2_stream **out);
/* Queues request body bytes (copied). */
int uph2_write_body(struct uph2_stream *u, const uint8_t *data, size_t len);
/* No more request body; trailers (may be 0; copied) end the stream. */
int uph2_end_body(struct uph2_stream *u, const struct upstream_header *trailers, size_t n);
/* Stops (1) or resumes (0) taking response bytes: while stopped, the
 * stream's window is not reopened, so the service stops sending. */
void uph2_pause_reading(struct uph2_stream *u, int pause);
/* 1 when the response head came with END_STREAM (no body, no trailers:
 * a gRPC status without messages); valid from inside on_head, so the agent
 * passes it on as one HEADERS frame too. */
int uph2_head_ended(const struct uph2_stream *u);
/* Cancels (RST_STREAM CANCEL); no callback after this. */
void uph2_abort(struct uph2_stream *u);
/* Closes the service connections of loop that carry no stream still owned
 * (aborted ones do not count), for uv_loop_close at shutdown. */
void uph2_close_idle(uv_loop_t *loop);

#endif
