/* Peeks at a TLS ClientHello to learn ALPN and SNI before any TLS state exists. */
/* SPDX-License-Identifier: MIT */
#include "clienthello.h"

#include <errno.h>
#include <string.h>

#define REC_HDR           5
#define REC_HANDSHAKE     22
#define REC_PLAINTEXT_MAX 16384
#define HS_HDR            4
#define HS_CLIENT_HELLO   1
#define EXT_SNI           0
#define EXT_ALPN          16

/* A bounded reader over one container: every get checks what is left. */
struct rd {
    const uint8_t *p;
    size_t n;
};

static int rd_u8(struct rd *r, unsigned *v)
{
    if (r->n < 1)
        return -1;
    *v = r->p[0];
    r->p++;
    r->n--;
    return 0;
}

static int rd_u16(struct rd *r, unsigned *v)
{
    if (r->n < 2)
        return -1;
    *v = (unsigned)r->p[0] << 8 | r->p[1];
    r->p += 2;
    r->n -= 2;
    return 0;
}

/* Splits off the next len bytes as a sub-container. */
static int rd_sub(struct rd *r, size_t len, struct rd *sub)
{
    if (r->n < len)
        return -1;
    sub->p = r->p;
    sub->n = len;
    r->p += len;
    r->n -= len;
    return 0;
}

static int alpn_match(const uint8_t *p, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(p, name, len) == 0;
}

static int parse_alpn(struct rd ext, struct clienthello_info *info)
{
    struct rd list, name;
    unsigned llen, nlen;

    if (rd_u16(&ext, &llen) != 0 || llen != ext.n || llen < 2 || rd_sub(&ext, llen, &list) != 0)
        return -1;
    info->alpn |= CLIENTHELLO_ALPN_ANY;
    while (list.n > 0) {
        if (rd_u8(&list, &nlen) != 0 || nlen == 0 || rd_sub(&list, nlen, &name) != 0)
            return -1;
        if (alpn_match(name.p, name.n, "tether/1"))
            info->alpn |= CLIENTHELLO_ALPN_TUNNEL;
        else if (alpn_match(name.p, name.n, "tether-peer/1"))
            info->alpn |= CLIENTHELLO_ALPN_PEER;
        else if (alpn_match(name.p, name.n, "h2"))
            info->alpn |= CLIENTHELLO_ALPN_H2;
        else if (alpn_match(name.p, name.n, "http/1.1"))
            info->alpn |= CLIENTHELLO_ALPN_HTTP11;
    }
    return 0;
}

static int parse_sni(struct rd ext, struct clienthello_info *info)
{
    struct rd list, name;
    unsigned llen, type, nlen;
    int have = 0;

    if (rd_u16(&ext, &llen) != 0 || llen != ext.n || llen < 3 || rd_sub(&ext, llen, &list) != 0)
        return -1;
    while (list.n > 0) {
        if (rd_u8(&list, &type) != 0 || rd_u16(&list, &nlen) != 0 ||
            rd_sub(&list, nlen, &name) != 0)
            return -1;
        if (type != 0)
            continue;
        /* RFC 6066: one host_name at most, ASCII, no trailing NUL. */
        if (have || nlen == 0 || nlen >= sizeof(info->sni))
            return -1;
        for (size_t i = 0; i < name.n; i++) {
            if (name.p[i] <= 0x20 || name.p[i] >= 0x7f)
                return -1;
        }
        memcpy(info->sni, name.p, name.n);
        info->sni[name.n] = '\0';
        have = 1;
    }
    return 0;
}

static int parse_body(const uint8_t *body, size_t len, struct clienthello_info *info)
{
    struct rd r = {body, len}, skip, exts, ext;
    unsigned v, ext_total, type, elen;
    int seen_sni = 0, seen_alpn = 0;

    /* legacy_version, random */
    if (rd_u16(&r, &v) != 0 || (v >> 8) != 3 || rd_sub(&r, 32, &skip) != 0)
        return -EPROTO;
    /* legacy_session_id <0..32> */
    if (rd_u8(&r, &v) != 0 || v > 32 || rd_sub(&r, v, &skip) != 0)
        return -EPROTO;
    /* cipher_suites <2..2^16-2> */
    if (rd_u16(&r, &v) != 0 || v < 2 || (v & 1) != 0 || rd_sub(&r, v, &skip) != 0)
        return -EPROTO;
    /* legacy_compression_methods <1..2^8-1> */
    if (rd_u8(&r, &v) != 0 || v < 1 || rd_sub(&r, v, &skip) != 0)
        return -EPROTO;
    if (r.n == 0)
        return 0; /* no extensions: no SNI, no ALPN */
    if (rd_u16(&r, &ext_total) != 0 || ext_total != r.n || rd_sub(&r, ext_total, &exts) != 0)
        return -EPROTO;
    while (exts.n > 0) {
        if (rd_u16(&exts, &type) != 0 || rd_u16(&exts, &elen) != 0 ||
            rd_sub(&exts, elen, &ext) != 0)
            return -EPROTO;
        if (type == EXT_SNI) {
            if (seen_sni++ || parse_sni(ext, info) != 0)
                return -EPROTO;
        } else if (type == EXT_ALPN) {
            if (seen_alpn++ || parse_alpn(ext, info) != 0)
                return -EPROTO;
        }
    }
    return 0;
}

int clienthello_parse(const uint8_t *data, size_t len, struct clienthello_info *info)
{
    uint8_t msg[CLIENTHELLO_MAX];
    const uint8_t *whole = NULL;
    size_t off = 0, have = 0, total = 0;
    int records = 0, rc;

    if (info == NULL || (data == NULL && len > 0))
        return -EINVAL;
    memset(info, 0, sizeof(*info));
    for (;;) {
        size_t rec_len, avail, copy;

        /* Judge each header byte as soon as it arrives, so that a peer
         * speaking something else is refused without waiting for more. */
        if (len - off >= 1 && data[off] != REC_HANDSHAKE)
            return -EPROTO;
        if (len - off >= 2 && data[off + 1] != 3)
            return -EPROTO;
        if (len - off < REC_HDR)
            return -EAGAIN;
        rec_len = (size_t)data[off + 3] << 8 | data[off + 4];
        if (rec_len == 0 || rec_len > REC_PLAINTEXT_MAX)
            return -EPROTO;
        if (++records > CLIENTHELLO_MAX_RECORDS)
            return -EPROTO;
        off += REC_HDR;
        avail = len - off < rec_len ? len - off : rec_len;

        if (records == 1 && avail >= HS_HDR) {
            /* The common case, the whole message in the first record: parse in place. */
            size_t mlen = (size_t)data[off + 1] << 16 | (size_t)data[off + 2] << 8 | data[off + 3];
            if (data[off] != HS_CLIENT_HELLO || mlen + HS_HDR > CLIENTHELLO_MAX)
                return -EPROTO;
            if (mlen + HS_HDR <= avail) {
                whole = data + off;
                total = mlen + HS_HDR;
                break;
            }
        }
        /* Only message bytes are copied: while the message is incomplete,
         * every record byte belongs to it, and it fits in msg. */
        copy = avail;
        if (copy > sizeof(msg) - have)
            copy = sizeof(msg) - have;
        memcpy(msg + have, data + off, copy);
        have += copy;
        if (have >= 1 && msg[0] != HS_CLIENT_HELLO)
            return -EPROTO;
        if (have >= HS_HDR) {
            total = ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]) + HS_HDR;
            if (total > CLIENTHELLO_MAX)
                return -EPROTO;
            if (have >= total) {
                whole = msg;
                break;
            }
        }
        if (avail < rec_len)
            return -EAGAIN;
        off += rec_len;
    }
    rc = parse_body(whole + HS_HDR, total - HS_HDR, info);
    if (rc != 0)
        memset(info, 0, sizeof(*info));
    return rc;
}
