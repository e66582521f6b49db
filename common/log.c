/* One-line structured event log for the daemons. */
/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;

void log_set_level(enum log_level level)
{
    min_level = level;
}

void log_init_from_env(void)
{
    const char *v = getenv("TETHER_LOG");
    if (v == NULL)
        return;
    if (strcmp(v, "debug") == 0)
        min_level = LOG_DEBUG;
    else if (strcmp(v, "warn") == 0)
        min_level = LOG_WARN;
    else if (strcmp(v, "error") == 0)
        min_level = LOG_ERROR;
}

void log_event(enum log_level level, const char *event, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    struct timeval tv;
    struct tm tm;
    va_list ap;
    int n;

    if (level < min_level)
        return;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), names[level], event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line, so lines from one process never interleave. */
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

const char *log_q(const char *s)
{
    static char bufs[8][512];
    static unsigned idx;
    char *b = bufs[idx++ % 8];
    size_t o = 0;

    if (s == NULL)
        return "-";
    if (s[0] != '\0' && strpbrk(s, " \"=\t\n") == NULL)
        return s;
    b[o++] = '"';
    for (; *s && o < sizeof(bufs[0]) - 3; s++) {
        if (*s == '"' || *s == '\\')
            b[o++] = '\\';
        b[o++] = (*s == '\n' || *s == '\t') ? ' ' : *s;
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}
