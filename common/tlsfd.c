/* Blocking TLS over a socket for the command-line tools: tls.c's buffers moved by poll/send/recv.
 */
/* SPDX-License-Identifier: MIT */
#include "tlsfd.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "net.h"

/* Largest piece handed to tls_write at once, so a big body is never copied
 * whole into the pending buffer. */
#define TLSFD_CHUNK (1u << 20)

int tlsfd_flush(struct tls_conn *t, int fd, int64_t deadline)
{
    int rc = 0;

    if (t->out.len > 0) {
        rc = net_send_all(fd, buf_head(&t->out), t->out.len, deadline);
        buf_consume(&t->out, t->out.len);
    }
    return rc;
}

/* Reads what is there, waiting until the deadline for the first byte: >0
 * bytes, 0 at end of stream, -ETIMEDOUT or -errno. */
static ssize_t recv_some(int fd, uint8_t *dst, size_t cap, int64_t deadline)
{
    for (;;) {
        ssize_t n = recv(fd, dst, cap, 0);
        int rc;

        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        rc = net_wait_fd(fd, POLLIN, deadline);
        if (rc != 0)
            return rc;
    }
}

int tlsfd_handshake(struct tls_conn *t, int fd, int64_t deadline)
{
    uint8_t in[16384];

    for (;;) {
        int rc = tls_handshake(t);
        ssize_t n;

        /* A peer that hung up mid-handshake shows as a failed send. */
        if (tlsfd_flush(t, fd, deadline) != 0 && rc != 0)
            return -ECONNRESET;
        if (rc == 0)
            return 0;
        if (rc != TLS_AGAIN)
            return -EPROTO;
        n = recv_some(fd, in, sizeof(in), deadline);
        if (n == -ETIMEDOUT)
            return -ETIMEDOUT;
        if (n <= 0)
            return -ECONNRESET;
        if (tls_feed(t, in, (size_t)n) != 0)
            return -ENOMEM;
    }
}

ssize_t tlsfd_recv(struct tls_conn *t, int fd, uint8_t *dst, size_t cap, int64_t deadline)
{
    uint8_t in[16384];

    for (;;) {
        size_t got = 0;
        int rc = tls_read(t, dst, cap, &got);
        ssize_t n;

        tlsfd_flush(t, fd, deadline);
        if (rc == 0 && got > 0)
            return (ssize_t)got;
        if (rc == TLS_EOF)
            return 0;
        if (rc != TLS_AGAIN && rc != 0)
            return -EPROTO;
        n = recv_some(fd, in, sizeof(in), deadline);
        if (n <= 0)
            return n;
        if (tls_feed(t, in, (size_t)n) != 0)
            return -ENOMEM;
    }
}

int tlsfd_send(struct tls_conn *t, int fd, const void *data, size_t len, int64_t deadline)
{
    const uint8_t *p = data;

    while (len > 0) {
        size_t chunk = len < TLSFD_CHUNK ? len : TLSFD_CHUNK;
        int rc = tls_write(t, p, chunk);

        if (rc != 0)
            return -EPROTO;
        p += chunk;
        len -= chunk;
        for (;;) {
            rc = tlsfd_flush(t, fd, deadline);
            if (rc != 0)
                return rc;
            rc = tls_flush_pending(t);
            if (rc == 0 && t->out.len == 0)
                break;
            if (rc != 0 && rc != TLS_AGAIN)
                return -EPROTO;
        }
    }
    return 0;
}
