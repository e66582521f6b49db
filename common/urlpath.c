/* Normalising the path a user asks of a site's service, so it can never leave the service's base.
 */
/* SPDX-License-Identifier: MIT */
#include "urlpath.h"

#include <errno.h>
#include <string.h>

int urlpath_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the segment in[0..n) to dst (at most n bytes, room checked by the
 * caller); *dl gets its length. Only "%2e" is decoded: other escapes stay as
 * sent, so the service decodes them exactly as the user meant. */
static int decode_segment(const char *in, size_t n, char *dst, size_t *dl)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        int hi, lo, v;

        if (c <= 0x20 || c == 0x7f)
            return -EINVAL;
        if (c == '\\')
            return -EILSEQ;
        if (c != '%') {
            dst[o++] = (char)c;
            continue;
        }
        if (i + 2 >= n)
            return -EINVAL;
        hi = urlpath_hexval(in[i + 1]);
        lo = urlpath_hexval(in[i + 2]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        v = hi * 16 + lo;
        if (v == '/' || v == '\\' || v == 0)
            return -EILSEQ;
        if (v == '.') {
            dst[o++] = '.';
        } else {
            memcpy(dst + o, in + i, 3);
            o += 3;
        }
        i += 2;
    }
    *dl = o;
    return 0;
}

int urlpath_normalize(const char *in, char *out, size_t cap)
{
    size_t plen, qlen, i, o = 0;
    int rc;

    if (in == NULL || in[0] != '/')
        return -EINVAL;
    plen = strcspn(in, "?");
    qlen = strlen(in + plen);
    /* The output never outgrows the input: one check up front covers every
     * write below. */
    if (plen + qlen + 1 > cap)
        return -ENOSPC;
    i = 0;
    while (i < plen) {
        size_t n, sl;
        const char *seg;
        int last;

        while (i < plen && in[i] == '/')
            i++; /* "//" is one separator */
        n = strcspn(in + i, "/?");
        if (i + n > plen)
            n = plen - i;
        last = i + n >= plen;
        if (n == 0) {
            out[o++] = '/'; /* trailing slash kept */
            break;
        }
        out[o] = '/';
        rc = decode_segment(in + i, n, out + o + 1, &sl);
        if (rc != 0)
            return rc;
        seg = out + o + 1;
        i += n;
        if ((sl >= 2 && seg[0] == '.' && seg[1] == ';') ||
            (sl >= 3 && seg[0] == '.' && seg[1] == '.' && seg[2] == ';'))
            return -EILSEQ; /* Tomcat and others read "..;x" as ".." */
        if (sl == 1 && seg[0] == '.') {
            /* dropped */
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            if (o == 0)
                return -EPERM;
            while (o > 0 && out[o - 1] != '/')
                o--;
            o--; /* the '/' before the popped segment */
        } else {
            o += 1 + sl;
            continue;
        }
        if (last)
            out[o++] = '/'; /* "/a/." and "/a/b/.." name a directory */
    }
    if (o == 0)
        out[o++] = '/';
    memcpy(out + o, in + plen, qlen);
    out[o + qlen] = '\0';
    return 0;
}

const char *urlpath_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case -EPERM:
        return "the path climbs above the service's base with \"..\"";
    case -EILSEQ:
        return "the path holds an encoded '/', '\\' or NUL, a '\\', or a \".;\" segment";
    case -ENOSPC:
        return "the path is too long";
    default:
        return "the path must start with '/' and hold no control bytes, spaces or malformed "
               "percent-escapes";
    }
}
