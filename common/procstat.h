/* The process's own resource use from /proc/self: descriptors, memory, CPU, start time. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_PROCSTAT_H
#define TETHER_PROCSTAT_H

#include <stdint.h>

/* What procstat_read found; a field it could not read is -1. */
struct procstat {
    long open_fds;          /* entries of /proc/self/fd */
    long max_fds;           /* the soft RLIMIT_NOFILE; -1 also when unlimited */
    int64_t resident_bytes; /* resident set size */
    int64_t virtual_bytes;  /* virtual memory size */
    double cpu_seconds;     /* user + system time */
    double start_time;      /* seconds since the epoch the process started */
};

/* Fills out; 0 when /proc/self/stat was read, else a negative errno (the
 * fields read by other means are still set). */
int procstat_read(struct procstat *out);
/* Descriptors open now (the count's own directory handle not included);
 * -1 when /proc is not there. */
int procstat_count_fds(void);

#endif
