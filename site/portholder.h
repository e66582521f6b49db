/* Finding the process that holds a local TCP port, for the site's "source port taken" messages. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_PORTHOLDER_H
#define TETHER_PORTHOLDER_H

#include <stddef.h>

/* Describes who holds local TCP port `port` in this network namespace, from
 * /proc/net/tcp{,6} and /proc/PID/fd: "pid 123 (python3), listening" or
 * "a socket in state ESTABLISHED owned by no visible process". Returns 0 when
 * some socket uses the port, -ENOENT when none does (out then says so too). */
int portholder_describe(int port, char *out, size_t cap);

#endif
