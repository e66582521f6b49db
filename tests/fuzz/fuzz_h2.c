/* libFuzzer entry point for the hub's HTTP/2 user front end (hub/http/h2.c over nghttp2, and the
 * API router behind it): frames in after the client preface, frames out. */
/* SPDX-License-Identifier: MIT */
#include <nghttp2/nghttp2.h>

#include "fake_hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Walks the hub's output frame by frame: every byte belongs to a whole frame
 * of a known type no larger than the default maximum (the hub never raises
 * it), the first is SETTINGS, header blocks decode, and no :status is 500. */
static void check_frames(const struct buf *out)
{
    const uint8_t *p = buf_head(out);
    size_t off = 0, n = out->len;
    nghttp2_hd_inflater *inf;
    int first = 1;

    if (nghttp2_hd_inflate_new(&inf) != 0)
        abort();
    while (off < n) {
        size_t len, hdr_off, blen;
        uint8_t type, flags;
        int final = 0;

        if (n - off < 9)
            abort();
        len = (size_t)p[off] << 16 | (size_t)p[off + 1] << 8 | p[off + 2];
        type = p[off + 3];
        flags = p[off + 4];
        if (len > 16384 || n - off - 9 < len || type > NGHTTP2_CONTINUATION)
            abort();
        if (first && type != NGHTTP2_SETTINGS)
            abort();
        first = 0;
        if (getenv("TETHER_FUZZ_SHOW") != NULL)
            fprintf(stderr, "frame type %u flags 0x%02x stream %u length %zu\n", type, flags,
                    (unsigned)(p[off + 5] << 24 | p[off + 6] << 16 | p[off + 7] << 8 | p[off + 8]) &
                        0x7fffffffu,
                    len);
        if (type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION) {
            /* The hub sends neither padding nor priority. */
            if (type == NGHTTP2_HEADERS && (flags & (NGHTTP2_FLAG_PADDED | NGHTTP2_FLAG_PRIORITY)))
                abort();
            hdr_off = off + 9;
            blen = len;
            final = (flags & NGHTTP2_FLAG_END_HEADERS) != 0;
            while (1) {
                nghttp2_nv nv;
                int iflags = 0;
                ssize_t used = nghttp2_hd_inflate_hd2(inf, &nv, &iflags, p + hdr_off, blen, final);
                if (used < 0)
                    abort();
                hdr_off += (size_t)used;
                blen -= (size_t)used;
                if ((iflags & NGHTTP2_HD_INFLATE_EMIT) && getenv("TETHER_FUZZ_SHOW") != NULL)
                    fprintf(stderr, "  %.*s: %.*s\n", (int)nv.namelen, nv.name, (int)nv.valuelen,
                            nv.value);
                if (iflags & NGHTTP2_HD_INFLATE_EMIT) {
                    if (nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0 && nv.valuelen == 3 &&
                        memcmp(nv.value, "500", 3) == 0)
                        abort();
                }
                if (iflags & NGHTTP2_HD_INFLATE_FINAL) {
                    nghttp2_hd_inflate_end_headers(inf);
                    break;
                }
                if ((iflags & NGHTTP2_HD_INFLATE_EMIT) == 0 && blen == 0)
                    break;
            }
        }
        off += 9 + len;
    }
    nghttp2_hd_inflate_del(inf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf in, out;
    size_t piece;

    if (size < 1 || size > 64 * 1024)
        return 0;
    /* The first byte says how the bytes arrive: in pieces of that size (0: at once). */
    piece = data[0] ? data[0] : size + sizeof(preface);
    buf_init(&in);
    if (buf_append(&in, preface, sizeof(preface) - 1) != 0 ||
        buf_append(&in, data + 1, size - 1) != 0)
        abort();
    fake_hub_session_alpn("h2", buf_head(&in), in.len, piece, &out);
    check_frames(&out);
    buf_free(&in);
    buf_free(&out);
    return 0;
}
