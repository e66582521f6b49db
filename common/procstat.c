/* The process's own resource use from /proc/self: descriptors, memory, CPU, start time. */
/* SPDX-License-Identifier: MIT */
#include "procstat.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int procstat_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own */
}

/* Reads a small /proc file into buf (NUL-terminated); its length or -errno. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL)
        return -errno;
    n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* The boot time (btime of /proc/stat), or 0. */
static double boot_time(void)
{
    char buf[8192];
    const char *p;

    if (read_small("/proc/stat", buf, sizeof(buf)) < 0 || (p = strstr(buf, "\nbtime ")) == NULL)
        return 0;
    return strtod(p + 7, NULL);
}

int procstat_read(struct procstat *out)
{
    char buf[1024];
    const char *p;
    unsigned long long utime, stime, start, vsize;
    long long rss;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    struct rlimit rl;
    double bt;

    out->open_fds = procstat_count_fds();
    out->max_fds = -1;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        out->max_fds = (long)rl.rlim_cur;
    out->resident_bytes = out->virtual_bytes = -1;
    out->cpu_seconds = out->start_time = -1;
    if (read_small("/proc/self/stat", buf, sizeof(buf)) < 0)
        return -errno;
    /* The name (field 2) may hold spaces and parentheses: fields are
     * counted from its last ')'. Field 3 is the state; then 14 utime,
     * 15 stime, 22 starttime, 23 vsize, 24 rss (pages). */
    p = strrchr(buf, ')');
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                            "%*d %*d %llu %llu %lld",
                            &utime, &stime, &start, &vsize, &rss) != 5)
        return -EINVAL;
    if (tick > 0) {
        out->cpu_seconds = (double)(utime + stime) / (double)tick;
        bt = boot_time();
        if (bt > 0)
            out->start_time = bt + (double)start / (double)tick;
    }
    out->virtual_bytes = (int64_t)vsize;
    if (page > 0)
        out->resident_bytes = (int64_t)rss * page;
    return 0;
}
