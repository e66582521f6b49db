/* The dashboard's static files, embedded at build time (cmake/embed_files.cmake). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_DASHBOARD_FILES_H
#define TETHER_DASHBOARD_FILES_H

#include <stddef.h>

struct dash_file {
    const char *name; /* "index.html", "app.js", ... */
    const char *type; /* Content-Type */
    const char *etag; /* quoted strong ETag */
    const unsigned char *data;
    size_t len;
};

/* Static, sorted by name. */
extern const struct dash_file dash_files[];
extern const size_t dash_files_n;

#endif
