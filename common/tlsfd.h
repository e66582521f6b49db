/* Blocking TLS over a socket for the command-line tools (httpc, doctor): the memory-buffer TLS
 * layer (tls.c) moved by poll, send and recv against a deadline. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TLSFD_H
#define TETHER_TLSFD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tls.h"

/* fd is a connected non-blocking socket in all of these; deadline is in
 * net_now_ms() milliseconds. t and fd stay the caller's. */

/* Sends the ciphertext t has queued (all of it leaves t->out, even on
 * error): 0, -ETIMEDOUT or -errno. */
int tlsfd_flush(struct tls_conn *t, int fd, int64_t deadline);

/* Runs the handshake to its end: 0, -ETIMEDOUT, -ECONNRESET (the peer closed
 * or reset the connection), -EPROTO (TLS failed: tls_error_string(t)), or
 * -ENOMEM. */
int tlsfd_handshake(struct tls_conn *t, int fd, int64_t deadline);

/* Reads plaintext into dst: >0 bytes; 0 when the peer closed (close_notify,
 * end of stream); -ETIMEDOUT; -EPROTO on a TLS error (tls_error_string(t));
 * another -errno when the socket failed (a reset). */
ssize_t tlsfd_recv(struct tls_conn *t, int fd, uint8_t *dst, size_t cap, int64_t deadline);

/* Encrypts and sends all of data: 0, -ETIMEDOUT, -EPROTO or -errno. */
int tlsfd_send(struct tls_conn *t, int fd, const void *data, size_t len, int64_t deadline);

#endif
