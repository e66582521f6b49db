/* Minimal assertion helpers for tether's unit tests (CTest runs each binary). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_TESTUTIL_H
#define TETHER_TESTUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int tu_failures;
static int tu_checks;

/* In the allocation-failure torture build (tests/torture/), a failed check
 * is the expected answer to the allocation that was made to fail: the test
 * ends there, so what it goes on to do with a handle it did not get is not
 * taken for a fault of tether's code. Objects the test still holds are on
 * its stack at exit(), so LeakSanitizer sees them as reachable; what a
 * failure path of tether's lost is not, and is reported. */
#ifdef TETHER_TORTURE_TEST
#define TU_FAILED() (tu_failures++, fflush(stderr), exit(3))
#else
#define TU_FAILED() (tu_failures++)
#endif

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        tu_checks++;                                                                               \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            TU_FAILED();                                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long tu_a = (long long)(a), tu_b = (long long)(b);                                    \
        tu_checks++;                                                                               \
        if (tu_a != tu_b) {                                                                        \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    tu_a, tu_b);                                                                   \
            TU_FAILED();                                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *tu_a = (a), *tu_b = (b);                                                       \
        tu_checks++;                                                                               \
        if (tu_a == NULL || tu_b == NULL || strcmp(tu_a, tu_b) != 0) {                             \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, tu_a ? tu_a : "(null)", tu_b ? tu_b : "(null)");                           \
            TU_FAILED();                                                                           \
        }                                                                                          \
    } while (0)

/* Writes len bytes of data to path (created or emptied); a failure is a
 * failed check. */
static inline void tu_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    CHECK(f != NULL);
    if (f == NULL)
        return;
    CHECK_EQ_INT(fwrite(data, 1, len, f), len);
    CHECK_EQ_INT(fclose(f), 0);
}

/* A TCP socket bound to 127.0.0.1 on a port the kernel picks, stored in
 * *port; listening with that backlog when backlog >= 0 (the caller closes
 * it). A socket closed at once leaves a port that refuses. -1 on failure. */
static inline int tu_loopback_socket(int *port, int backlog)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        (backlog >= 0 && listen(fd, backlog) != 0) ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* Ends main(): prints a summary and returns the exit status. */
#define TEST_DONE()                                                                                \
    do {                                                                                           \
        fprintf(stderr, "%d checks, %d failed\n", tu_checks, tu_failures);                         \
        return tu_failures == 0 && tu_checks > 0 ? 0 : 1;                                          \
    } while (0)

#endif
