/* One-line structured event log for the daemons: "TS LEVEL EVENT key=value ...". */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_LOG_H
#define TETHER_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

enum log_format {
    LOG_FORMAT_TEXT, /* "TS LEVEL EVENT key=value ..." (the default) */
    LOG_FORMAT_JSON, /* one JSON object per line: {"ts","level","event", key: "value", ...} */
};

/* --log-format text|json: 0, or -EINVAL for another name. */
int log_set_format_name(const char *name);

/* Messages below this level are dropped; default LOG_INFO, TETHER_LOG=debug lowers it. */
void log_set_level(enum log_level level);
void log_init_from_env(void);

/* Writes one line to stderr: ISO-8601 UTC time, level, event name, then the
 * formatted key=value text. Values containing spaces should be quoted by the
 * caller with log_q(). Any byte outside printable ASCII left in the line is
 * written as '?'. Lower layers never call this; only daemons do. */
void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quotes s for a log value when it is empty or holds a space, '"', '=', a backslash
 * or any byte outside printable ASCII; inside the quotes '"' and backslash are
 * backslashed, \n \r \t written so, and every other control byte, DEL and
 * every byte >= 0x80 written as \xNN, so no value from the network can drive
 * an operator's terminal. Long values are cut (about 500 bytes out). Returns s
 * itself or a pointer into one of a few rotating static buffers (not
 * thread-safe, and each result is valid for the next 8 calls only). */
const char *log_q(const char *s);

#endif
