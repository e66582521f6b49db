/* The dashboard: GET / and /ui/<file>, static files embedded in the hub, with strict security
 * headers. */
/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "api_int.h"
#include "dashboard_files.h"

/* The page loads only its own script and style and talks only to this hub:
 * no inline code, no frames, no forms posting elsewhere. */
#define DASH_CSP                                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

static const struct dash_file *dash_find(const char *name)
{
    for (size_t i = 0; i < dash_files_n; i++) {
        if (strcmp(dash_files[i].name, name) == 0)
            return &dash_files[i];
    }
    return NULL;
}

/* 1 if the If-None-Match header names etag (or is "*"). */
static int etag_matches(const char *inm, const char *etag)
{
    size_t n = strlen(etag);
    const char *p;

    if (inm == NULL)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    for (p = strstr(inm, etag); p != NULL; p = strstr(p + 1, etag)) {
        if (p[n] == '\0' || p[n] == ',' || p[n] == ' ')
            return 1;
    }
    return 0;
}

static void dash_serve(struct ureq *r, const char *name)
{
    const struct dash_file *f = dash_find(name);
    int fresh;

    if (f == NULL) {
        ureq_error(r, 404, "not_found", "no such endpoint");
        return;
    }
    fresh = etag_matches(ureq_header(r, "if-none-match"), f->etag);
    nghttp2_nv hdrs[] = {
        h2_nv("content-type", 12, f->type, strlen(f->type)),
        h2_nv("etag", 4, f->etag, strlen(f->etag)),
        /* Revalidated each time: a new hub build serves its own files. */
        h2_nv("cache-control", 13, "no-cache", 8),
        h2_nv("content-security-policy", 23, DASH_CSP, sizeof(DASH_CSP) - 1),
        h2_nv("x-content-type-options", 22, "nosniff", 7),
        h2_nv("referrer-policy", 15, "no-referrer", 11),
        h2_nv("x-frame-options", 15, "DENY", 4),
        h2_nv("cross-origin-opener-policy", 26, "same-origin", 11),
    };
    size_t n = sizeof(hdrs) / sizeof(hdrs[0]);

    if (fresh) {
        if (ureq_respond_head(r, 304, hdrs + 1, n - 1, 0) == 0)
            ureq_respond_end(r);
        return;
    }
    if (ureq_respond_head(r, 200, hdrs, n, (int64_t)f->len) != 0)
        return;
    ureq_respond_body(r, f->data, f->len);
    ureq_respond_end(r);
}

void dash_index(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    dash_serve(r, "index.html");
}

void dash_js(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    dash_serve(r, "app.js");
}

void dash_css(struct hub *h, struct ureq *r, const struct auth *a, const struct api_match *m)
{
    dash_serve(r, "app.css");
}
