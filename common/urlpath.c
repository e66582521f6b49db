/* Normalising the path a user asks of a site's service, so it can never leave the service's base.
 */
/* SPDX-License-Identifier: MIT */
#include "urlpath.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

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

/* Bytes RFC 3986 allows raw in a path segment (pchar, without '%', which
 * decode_segment checks itself). Everything else, '#' first, is refused:
 * a service may read a byte the RFC forbids in its own way ("/..#" is ".."
 * to nginx and Node), so the hub and the service could disagree on the path. */
static int path_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

/* Bytes refused raw in the query: those no client leaves raw (controls,
 * space, '"', '#', '<', '>', DEL, non-ASCII). The query is passed on
 * unchanged and never takes part in routing, so the other bytes RFC 3986
 * forbids but browsers send raw there ('[', '\', '^', '`', '{', '|', '}')
 * are accepted. */
static int query_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '#' && c != '<' && c != '>';
}

/* 1 if the escaped byte v, after the escaped byte prev (-1 if none), ends
 * the start of an overlong UTF-8 form ("%c0%ae" is '.' to a lax decoder). */
static int overlong(int prev, int v)
{
    if (v < 0x80 || v > 0xbf)
        return 0;
    return prev == 0xc0 || prev == 0xc1 || (prev == 0xe0 && v <= 0x9f) ||
           (prev == 0xf0 && v <= 0x8f) || prev >= 0xf8;
}

/* Decodes the segment in[0..n) to dst (at most n bytes, room checked by the
 * caller); *dl gets its length. Only "%2e" is decoded: other escapes stay as
 * sent, so the service decodes them exactly as the user meant. */
static int decode_segment(const char *in, size_t n, char *dst, size_t *dl)
{
    size_t o = 0;
    int prev = -1;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        int hi, lo, v;

        if (c == '\\')
            return -EILSEQ;
        if (c != '%') {
            if (!path_char(c))
                return -EINVAL;
            dst[o++] = (char)c;
            prev = -1;
            continue;
        }
        if (i + 2 >= n)
            return -EINVAL;
        hi = urlpath_hexval(in[i + 1]);
        lo = urlpath_hexval(in[i + 2]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        v = hi * 16 + lo;
        if (v == '/' || v == '\\' || v == 0 || overlong(prev, v))
            return -EILSEQ;
        if (v == '.') {
            dst[o++] = '.';
        } else {
            memcpy(dst + o, in + i, 3);
            o += 3;
        }
        prev = v;
        i += 2;
    }
    *dl = o;
    return 0;
}

/* 1 if the decoded segment seg[0..n) is "." or ".." followed by a byte that
 * some servers end a segment at: ';' (Tomcat reads "..;x" as ".."), or an
 * encoded ';', '?' or '#' that a service decoding before it splits would. */
static int dots_then_delim(const char *seg, size_t n)
{
    size_t d = 0;

    while (d < n && d < 2 && seg[d] == '.')
        d++;
    if (d == 0 || d == n)
        return 0;
    if (seg[d] == ';')
        return 1;
    return n - d >= 3 && seg[d] == '%' &&
           (strncasecmp(seg + d, "%3b", 3) == 0 || strncasecmp(seg + d, "%3f", 3) == 0 ||
            strncmp(seg + d, "%23", 3) == 0);
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
        if (dots_then_delim(seg, sl))
            return -EILSEQ;
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
    for (i = plen + 1; i < plen + qlen; i++)
        if (!query_char((unsigned char)in[i]))
            return -EINVAL;
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
        return "the path holds an encoded '/', '\\' or NUL, a '\\', a \".\" or \"..\" segment "
               "followed by ';' (or an encoded ';', '?' or '#'), or an overlong UTF-8 escape";
    case -ENOSPC:
        return "the path is too long";
    default:
        return "the path must start with '/' and hold only what RFC 3986 allows (percent-encode "
               "the rest): no control byte, space, non-ASCII byte, '#', '\"', '<', '>', '[', ']', "
               "'^', '`', '{', '|', '}' or malformed %-escape";
    }
}
