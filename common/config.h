/* "key = value" configuration files (site.conf, ctl.conf, hub.conf). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CONFIG_H
#define TETHER_CONFIG_H

#include <stddef.h>

/* Lines are "key = value"; '#' starts a comment line; blank lines are
 * ignored; keys may repeat (e.g. several "hub =" lines, kept in file order).
 * Values are trimmed; no quoting. Lines longer than 4 KiB or more than 1024
 * entries are an error. The struct owns all strings. */
struct config_entry {
    char *key;
    char *value;
    int line;
};
struct config {
    struct config_entry *entries;
    size_t n;
};

/* Parses a file. On error returns a negative code and, if err is non-NULL,
 * writes a one-line message naming the file and line into err. */
int config_load(const char *path, struct config *out, char *err, size_t err_cap);
int config_parse(const char *text, size_t len, struct config *out, char *err, size_t err_cap);
void config_free(struct config *c);

/* Last value for key, or NULL. The pointer is owned by c. */
const char *config_get(const struct config *c, const char *key);
/* Fills vals (owned by c) with up to max values for key in file order;
 * returns how many were found. */
size_t config_get_all(const struct config *c, const char *key, const char **vals, size_t max);

/* Writes a file atomically with the given mode: a temporary file in the same
 * directory, fsync, rename over path, fsync of the directory. A crash or a
 * failed write leaves either the old file or the new one whole, never a
 * truncated one (key files rely on it). text is the whole content. */
int config_write_file(const char *path, const char *text, int mode);
/* The same for len bytes of data (which may hold NULs). */
int config_write_data(const char *path, const void *data, size_t len, int mode);
/* Reads the whole regular file path, of at most max bytes, into *data (a
 * heap buffer the caller frees, NUL-terminated after its *len bytes).
 * Returns 0, -errno from the system, -EINVAL (not a regular file, or larger
 * than max) or -ENOMEM. */
int config_read_data(const char *path, size_t max, char **data, size_t *len);

#endif
