/* One process per state directory: an exclusive flock on STATE/lock that holds the owner's PID. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_STATELOCK_H
#define TETHER_STATELOCK_H

#include <sys/types.h>

/* Name of the lock file inside a state directory. */
#define STATELOCK_FILE "lock"

/*
 * Takes the lock of state directory dir: opens (creating if needed) dir/lock
 * and flock()s it exclusively without waiting, then writes this process's
 * PID into it. The lock lives as long as *fd is open (the kernel drops it
 * when the process dies, so a lock file left by a dead process does not
 * block). Only the lock file is created or written; nothing else in dir.
 * Returns 0 and sets *fd (owned by the caller: statelock_release), or
 * -EBUSY when another process holds it: *holder is then its PID (0 when the
 * file does not say), or another negative errno (e.g. -ENOENT: no dir).
 */
int statelock_acquire(const char *dir, int *fd, pid_t *holder);
/* Drops the lock (closes fd; the file stays). A negative fd is accepted. */
void statelock_release(int fd);

#endif
