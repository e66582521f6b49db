/* The site's hello answer (GET /.tether/hello on its tunnel): parsing and checking of the JSON it
 * sends. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HELLO_H
#define TETHER_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* Longest agent version, in bytes; a longer one refuses the hello. */
#define HELLO_VERSION_MAX 63
/* Most services one hello may offer. */
#define HELLO_SERVICES_MAX 64

/* What a hello says. The struct owns every pointer; free with hello_info_free.
 * On refusal only why and bad are set. */
struct hello_info {
    char agent_version[HELLO_VERSION_MAX + 1]; /* 1-63 printable ASCII characters */
    char *services_json;                       /* the "services" array as compact JSON */
    char **services;                           /* its members, in order, each a valid tether name */
    size_t n_services;
    char *restricted_json; /* the "restricted" array as compact JSON ("[]" when absent) */
    char **restricted;     /* its members: services that need an explicit scope */
    size_t n_restricted;
    const char *why; /* static text: why the hello was refused */
    char bad[96];    /* the offending value, cut (raw: escape before logging) */
};

/* Parses and checks the body of a hello answer: a JSON object whose
 * "agent_version" is 1-63 printable ASCII characters and whose "services"
 * is an array of at most HELLO_SERVICES_MAX names that token_name_valid
 * accepts, and whose optional "restricted" (absent from older agents) lists
 * some of those services at most once each. The whole hello is refused when any part breaks these
 * rules: a site agent checks its own names with the same rule. Returns 0; -EINVAL with out->why
 * (and out->bad when one value is to blame); -ENOMEM. */
int hello_parse(const uint8_t *body, size_t len, struct hello_info *out);
void hello_info_free(struct hello_info *h);

#endif
