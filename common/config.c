/* "key = value" configuration files (site.conf, ctl.conf, hub.conf). */
/* SPDX-License-Identifier: MIT */
#define _GNU_SOURCE /* mkostemp */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_LINE_MAX    4096
#define CONFIG_ENTRIES_MAX 1024
/* Comments and blank lines are free, but not without end. */
#define CONFIG_FILE_MAX (4 * 1024 * 1024)

static void set_err(char *err, size_t cap, const char *where, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_err(char *err, size_t cap, const char *where, int line, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (err == NULL || cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (where == NULL)
        snprintf(err, cap, "line %d: %s", line, msg);
    else if (line > 0)
        snprintf(err, cap, "%s:%d: %s", where, line, msg);
    else
        snprintf(err, cap, "%s: %s", where, msg);
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static int key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

static char *dup_range(const char *s, size_t len)
{
    char *d = malloc(len + 1);

    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static int parse_named(const char *where, const char *text, size_t len, struct config *out,
                       char *err, size_t err_cap)
{
    struct config c = {0};
    size_t pos = 0, cap = 0;
    int line = 0, rc = -EINVAL;

    if (text == NULL && len > 0)
        goto out;
    while (pos < len) {
        const char *l = text + pos, *nl, *eq;
        size_t llen, ks, ke, vs, ve;

        line++;
        nl = memchr(l, '\n', len - pos);
        llen = nl != NULL ? (size_t)(nl - l) : len - pos;
        pos += llen + (nl != NULL ? 1 : 0);
        if (llen > CONFIG_LINE_MAX) {
            set_err(err, err_cap, where, line, "line longer than %d bytes", CONFIG_LINE_MAX);
            goto out;
        }
        if (memchr(l, '\0', llen) != NULL) {
            set_err(err, err_cap, where, line, "NUL byte");
            goto out;
        }
        ks = 0;
        while (ks < llen && is_blank(l[ks]))
            ks++;
        if (ks == llen || l[ks] == '#')
            continue;
        eq = memchr(l + ks, '=', llen - ks);
        if (eq == NULL) {
            set_err(err, err_cap, where, line, "expected \"key = value\"");
            goto out;
        }
        ke = (size_t)(eq - l);
        while (ke > ks && is_blank(l[ke - 1]))
            ke--;
        if (ke == ks) {
            set_err(err, err_cap, where, line, "empty key");
            goto out;
        }
        for (size_t i = ks; i < ke; i++) {
            if (!key_char_ok(l[i])) {
                set_err(err, err_cap, where, line, "bad character in key");
                goto out;
            }
        }
        vs = (size_t)(eq - l) + 1;
        ve = llen;
        while (vs < ve && is_blank(l[vs]))
            vs++;
        while (ve > vs && is_blank(l[ve - 1]))
            ve--;
        if (c.n == CONFIG_ENTRIES_MAX) {
            set_err(err, err_cap, where, line, "more than %d entries", CONFIG_ENTRIES_MAX);
            goto out;
        }
        if (c.n == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            struct config_entry *ne = realloc(c.entries, ncap * sizeof(*ne));
            if (ne == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            c.entries = ne;
            cap = ncap;
        }
        c.entries[c.n].key = dup_range(l + ks, ke - ks);
        c.entries[c.n].value = dup_range(l + vs, ve - vs);
        c.entries[c.n].line = line;
        c.n++;
        if (c.entries[c.n - 1].key == NULL || c.entries[c.n - 1].value == NULL) {
            rc = -ENOMEM;
            goto out;
        }
    }
    *out = c;
    c.entries = NULL;
    c.n = 0;
    rc = 0;
out:
    config_free(&c);
    return rc;
}

int config_parse(const char *text, size_t len, struct config *out, char *err, size_t err_cap)
{
    if (out == NULL)
        return -EINVAL;
    out->entries = NULL;
    out->n = 0;
    return parse_named(NULL, text, len, out, err, err_cap);
}

int config_read_data(const char *path, size_t max, char **data, size_t *len)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        rc = -EINVAL;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *data = buf;
    *len = got;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int config_load(const char *path, struct config *out, char *err, size_t err_cap)
{
    char *buf = NULL;
    size_t got = 0;
    int rc;

    if (out == NULL || path == NULL)
        return -EINVAL;
    out->entries = NULL;
    out->n = 0;
    rc = config_read_data(path, CONFIG_FILE_MAX, &buf, &got);
    if (rc == -EINVAL)
        set_err(err, err_cap, path, 0, "not a regular file of at most %d bytes", CONFIG_FILE_MAX);
    else if (rc == -ENOMEM)
        set_err(err, err_cap, path, 0, "out of memory");
    else if (rc != 0)
        set_err(err, err_cap, path, 0, "%s", strerror(-rc));
    else
        rc = parse_named(path, buf, got, out, err, err_cap);
    free(buf);
    return rc;
}

void config_free(struct config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->entries[i].key);
        free(c->entries[i].value);
    }
    free(c->entries);
    c->entries = NULL;
    c->n = 0;
}

const char *config_get(const struct config *c, const char *key)
{
    if (c == NULL || key == NULL)
        return NULL;
    for (size_t i = c->n; i > 0; i--) {
        if (strcmp(c->entries[i - 1].key, key) == 0)
            return c->entries[i - 1].value;
    }
    return NULL;
}

size_t config_get_all(const struct config *c, const char *key, const char **vals, size_t max)
{
    size_t found = 0;

    if (c == NULL || key == NULL || (vals == NULL && max > 0))
        return 0;
    for (size_t i = 0; i < c->n && found < max; i++) {
        if (strcmp(c->entries[i].key, key) == 0)
            vals[found++] = c->entries[i].value;
    }
    return found;
}

/* Makes the rename itself durable. */
static int sync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    int fd, rc = 0;

    if (copy == NULL)
        return -ENOMEM;
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
    } else {
        if (fsync(fd) != 0)
            rc = -errno;
        close(fd);
    }
    free(copy);
    return rc;
}

int config_write_file(const char *path, const char *text, int mode)
{
    if (text == NULL)
        return -EINVAL;
    return config_write_data(path, text, strlen(text), mode);
}

int config_write_data(const char *path, const void *data, size_t len, int mode)
{
    const char *text = data;
    char tmp[4096];
    size_t done = 0;
    int fd = -1, n, rc = -EIO;

    if (path == NULL || (data == NULL && len > 0) || mode < 0 || mode > 07777)
        return -EINVAL;
    n = snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* fchmod, not the umask: a 0644 file must come out 0644 and a secret 0600. */
    if (fchmod(fd, (mode_t)mode) != 0) {
        rc = -errno;
        goto out;
    }
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto out;
    }
    tmp[0] = '\0';
    rc = sync_parent_dir(path);
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0')
        unlink(tmp);
    return rc;
}
