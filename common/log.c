/* One-line structured event log for the daemons. */
/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static enum log_format format = LOG_FORMAT_TEXT;

int log_set_format_name(const char *name)
{
    if (strcmp(name, "text") == 0)
        format = LOG_FORMAT_TEXT;
    else if (strcmp(name, "json") == 0)
        format = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

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

/* Appends s[0..len) to out as JSON string content (no quotes): '"' and
 * backslash escaped, control bytes as \u00XX. */
static size_t json_str(char *out, size_t o, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < len && o + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            memcpy(out + o, "\\u00", 4);
            out[o + 4] = hex[c >> 4];
            out[o + 5] = hex[c & 15];
            o += 6;
        } else {
            out[o++] = (char)c;
        }
    }
    return o;
}

/* One value of the text line at *p into val, log_q's quoting undone for
 * \" \\ \n \r \t; a \xNN stays as those four characters, so a JSON reader
 * gets no byte the text form kept from the terminal. *p moves past it. */
static size_t take_value(const char **p, char *val, size_t cap)
{
    const char *q = *p;
    size_t o = 0;

    if (*q != '"') {
        while (*q && *q != ' ' && o + 1 < cap)
            val[o++] = *q++;
        *p = q;
        return o;
    }
    for (q++; *q && *q != '"' && o + 1 < cap; q++) {
        if (*q == '\\' && q[1] != '\0' && q[1] != 'x') {
            q++;
            val[o++] = *q == 'n' ? '\n' : *q == 'r' ? '\r' : *q == 't' ? '\t' : *q;
        } else {
            val[o++] = *q;
        }
    }
    *p = *q == '"' ? q + 1 : q;
    return o;
}

/* The JSON form of a line whose key=value text starts at pairs: {"ts",
 * "level", "event", then each key with its value as a string}. Text that
 * is not key=value goes whole into "msg". */
static void to_json(char *out, size_t cap, const char *ts, const char *level, const char *event,
                    const char *pairs)
{
    char val[1024];
    const char *p = pairs, *key, *eq;
    size_t o;
    int k;

    k = snprintf(out, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":\"", ts, level);
    if (k < 0 || (size_t)k >= cap)
        return;
    o = json_str(out, (size_t)k, cap - 2, event, strlen(event));
    out[o++] = '"';
    while (*p && o + 16 < cap) {
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        key = eq = p;
        while ((*eq >= 'a' && *eq <= 'z') || (*eq >= '0' && *eq <= '9') || *eq == '_')
            eq++;
        if (eq == key || *eq != '=') {
            memcpy(out + o, ",\"msg\":\"", 8);
            o = json_str(out, o + 8, cap - 2, p, strlen(p));
            out[o++] = '"';
            break;
        }
        out[o++] = ',';
        out[o++] = '"';
        o = json_str(out, o, cap - 2, key, (size_t)(eq - key));
        memcpy(out + o, "\":\"", 3);
        p = eq + 1;
        k = (int)take_value(&p, val, sizeof(val));
        o = json_str(out, o + 3, cap - 2, val, (size_t)k);
        out[o++] = '"';
    }
    out[o++] = '}';
    out[o] = '\0';
}

/* Writes the line in buf (NUL-terminated, cap bytes of room) and a newline
 * to stderr in one write(), so lines from one process never interleave. No
 * stdio: an unbuffered stream's fprintf formats through a buffer of its own
 * first, a cost paid by every connect (docs/benchmarks.md, handshakes). */
static void put_line(char *buf, size_t cap)
{
    size_t len = strlen(buf), off = 0;
    ssize_t k;

    if (len + 1 >= cap)
        len = cap - 2; /* a line cut short still ends */
    buf[len++] = '\n';
    while (off < len) {
        k = write(STDERR_FILENO, buf + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        off += (size_t)k;
    }
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
    if (format == LOG_FORMAT_JSON) {
        char json[4096];

        line[24] = '\0'; /* the timestamp: "YYYY-MM-DDTHH:MM:SS.mmmZ" */
        to_json(json, sizeof(json), line, names[level], event, line + n);
        put_line(json, sizeof(json));
    } else {
        put_line(line, sizeof(line));
    }
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
