/* One process per state directory: an exclusive flock on STATE/lock that holds the owner's PID. */
/* SPDX-License-Identifier: MIT */
#include "statelock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* The holder's PID as written in the file; 0 when unreadable. */
static pid_t read_holder(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    long v;
    char *end;

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || v <= 0 || v > INT_MAX)
        return 0;
    return (pid_t)v;
}

int statelock_acquire(const char *dir, int *fd, pid_t *holder)
{
    char path[PATH_MAX], pid[32];
    int f = -1, rc = -EINVAL, len;

    *fd = -1;
    *holder = 0;
    if (snprintf(path, sizeof(path), "%s/%s", dir, STATELOCK_FILE) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (f < 0)
        return -errno;
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        if (rc == -EBUSY)
            *holder = read_holder(f);
        goto out;
    }
    /* Ours now: whatever PID a dead owner left is replaced. */
    len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)len, 0) != len) {
        rc = -errno;
        goto out;
    }
    *fd = f;
    f = -1;
    rc = 0;
out:
    if (f >= 0)
        close(f);
    return rc;
}

void statelock_release(int fd)
{
    if (fd >= 0)
        close(fd);
}
