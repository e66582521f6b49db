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

/* Bytes that may reach an operator's terminal as they are: printable ASCII. */
static int plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f;
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
    /* Last line of defence for a value a caller did not pass through log_q:
     * no byte outside printable ASCII reaches the terminal. */
    for (unsigned char *p = (unsigned char *)line; *p; p++)
        if (!plain(*p))
            *p = '?';
    /* One write per line, so lines from one process never interleave. */
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

const char *log_q(const char *s)
{
    static const char hex[] = "0123456789abcdef";
    static char bufs[8][512];
    static unsigned idx;
    char *b = bufs[idx++ % 8];
    size_t o = 0, cap = sizeof(bufs[0]);
    const unsigned char *p;
    int quote = 0;

    if (s == NULL)
        return "-";
    for (p = (const unsigned char *)s; *p; p++)
        if (!plain(*p) || strchr(" \"=\\", *p) != NULL)
            quote = 1;
    if (s[0] != '\0' && !quote)
        return s;
    b[o++] = '"';
    /* Room is kept for the longest escape (4), the closing quote and NUL. */
    for (p = (const unsigned char *)s; *p && o + 6 <= cap; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            b[o++] = '\\';
            b[o++] = (char)c;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            b[o++] = '\\';
            b[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (!plain(c)) {
            /* Control bytes, DEL and every byte >= 0x80 (C1 controls hide in
             * UTF-8 too): nothing a terminal could act on gets through. */
            b[o++] = '\\';
            b[o++] = 'x';
            b[o++] = hex[c >> 4];
            b[o++] = hex[c & 15];
        } else {
            b[o++] = (char)c;
        }
    }
    b[o++] = '"';
    b[o] = '\0';
    return b;
}
