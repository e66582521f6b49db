/* The hubs of a site's cluster as its hub last told them (the tether-hubs header of the hello). */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SITE_HUBS_H
#define TETHER_SITE_HUBS_H

#include <stddef.h>

#include "../common/crypto.h"
#include "../common/token.h"

/* Hubs, and endpoints of each, a list may name. */
#define HUBS_MAX    16
#define HUBS_EP_MAX 8
/* The longest list read (the header's value). */
#define HUBS_JSON_MAX 16384

/* A list: JSON [{"pin":"sha256//...","endpoints":["HOST:PORT",...]},...],
 * every hub of the cluster, the one that sent it among them. By value. */
struct hubs_list {
    struct hubs_entry {
        char pin[CRYPTO_PIN_LEN + 1];
        char eps[HUBS_EP_MAX][TOKEN_ENDPOINT_MAX + 1];
        size_t n_eps;
    } hub[HUBS_MAX];
    size_t n;
};

/* Parses and checks len bytes of JSON (bounded by HUBS_JSON_MAX): at least
 * one and at most HUBS_MAX hubs, each a valid pin and 0..HUBS_EP_MAX
 * HOST:PORT endpoints, no other members needed (unknown ones are
 * ignored). 0, or -EINVAL with *out cleared. */
int hubs_parse(const char *json, size_t len, struct hubs_list *out);
/* 1 when a and b name the same hubs and endpoints, in the same order. */
int hubs_equal(const struct hubs_list *a, const struct hubs_list *b);
/* STATE/hubs.json: 0 and *out, -ENOENT when there is none, -EINVAL when it
 * is not a list (it is then ignored: site.conf still holds the hubs the
 * site enrolled with). */
int hubs_load(const char *state, struct hubs_list *out);
/* Writes l as STATE/hubs.json atomically (mode 0644). */
int hubs_save(const char *state, const struct hubs_list *l);

#endif
