/* Peeks at a TLS ClientHello to learn ALPN and SNI before any TLS state exists. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CLIENTHELLO_H
#define TETHER_CLIENTHELLO_H

#include <stddef.h>
#include <stdint.h>

/* Largest ClientHello we wait for; beyond this the peer is refused. */
#define CLIENTHELLO_MAX 16384
/* Most TLS records one ClientHello may be split over (real clients use one or
 * two). With it, a caller holding CLIENTHELLO_READ_MAX bytes never gets -EAGAIN. */
#define CLIENTHELLO_MAX_RECORDS 16
#define CLIENTHELLO_READ_MAX    (CLIENTHELLO_MAX + 5 * CLIENTHELLO_MAX_RECORDS)

#define CLIENTHELLO_ALPN_TUNNEL 0x1  /* offered "tether/1" */
#define CLIENTHELLO_ALPN_H2     0x2  /* offered "h2" */
#define CLIENTHELLO_ALPN_HTTP11 0x4  /* offered "http/1.1" */
#define CLIENTHELLO_ALPN_ANY    0x8  /* offered an ALPN extension at all */
#define CLIENTHELLO_ALPN_PEER   0x10 /* offered "tether-peer/1" (hub to hub) */

struct clienthello_info {
    unsigned alpn; /* CLIENTHELLO_ALPN_* bits */
    char sni[256]; /* server_name host, "" when absent */
};

/* Parses the TLS records at the start of data (len bytes read so far).
 * Handles a ClientHello split over several handshake records.
 * Returns 0 and fills info when the whole ClientHello is present,
 * -EAGAIN when more bytes are needed (never when len >= CLIENTHELLO_READ_MAX),
 * -EPROTO when this is not a TLS ClientHello or is malformed. Every length is
 * checked against its container; no allocation. */
int clienthello_parse(const uint8_t *data, size_t len, struct clienthello_info *info);

#endif
