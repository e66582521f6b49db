/* Unit tests for common/statelock.c: one holder per state directory, the holder's PID, stale files.
 */
/* SPDX-License-Identifier: MIT */
#include "common/statelock.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    char dir[] = "/tmp/tether-lock-XXXXXX", path[128], buf[64];
    int fd = -1, fd2 = -1, st;
    pid_t holder = -1, child;
    ssize_t n;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/" STATELOCK_FILE, dir);

    /* A stale file of a dead process (no flock held) does not block. */
    tu_write_file(path, "999999\n", 7);
    CHECK_EQ_INT(statelock_acquire(dir, &fd, &holder), 0);
    CHECK(fd >= 0);
    int rfd = open(path, O_RDONLY);
    n = read(rfd, buf, sizeof(buf) - 1);
    close(rfd);
    buf[n > 0 ? n : 0] = '\0';
    CHECK_EQ_INT(atoi(buf), (int)getpid());

    /* Another process is refused and told who holds it. */
    child = fork();
    if (child == 0) {
        int cfd;
        pid_t h = 0;
        int rc = statelock_acquire(dir, &cfd, &h);
        _exit(rc == -EBUSY && h == getppid() && cfd == -1 ? 0 : 1);
    }
    CHECK(child > 0);
    CHECK(waitpid(child, &st, 0) == child);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* A second open in this very process conflicts too (flock is per open). */
    CHECK_EQ_INT(statelock_acquire(dir, &fd2, &holder), -EBUSY);
    CHECK_EQ_INT((int)holder, (int)getpid());
    CHECK_EQ_INT(fd2, -1);

    /* Released: free again. */
    statelock_release(fd);
    CHECK_EQ_INT(statelock_acquire(dir, &fd2, &holder), 0);
    statelock_release(fd2);
    statelock_release(-1);

    /* No such directory. */
    CHECK_EQ_INT(statelock_acquire("/nonexistent/tether", &fd, &holder), -ENOENT);
    unlink(path);
    rmdir(dir);
    TEST_DONE();
}
