/* The site's hello answer (GET /.tether/hello on its tunnel): parsing of the JSON it sends. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_HELLO_H
#define TETHER_HELLO_H

#include <stddef.h>
#include <stdint.h>

/* Longest agent version kept, in bytes (cut on a UTF-8 character boundary). */
#define HELLO_VERSION_MAX 63

/* What a hello says. The struct owns every pointer; free with hello_info_free. */
struct hello_info {
    char agent_version[HELLO_VERSION_MAX + 1]; /* "" when absent */
    char *services_json; /* the "services" array as compact JSON; NULL when absent */
    char **services;     /* its string members, in order */
    size_t n_services;
};

/* Parses the body of a hello answer: a JSON object with optional
 * "agent_version" (string) and "services" (array of strings; other members are
 * skipped). Returns 0, -EINVAL when the body is not a JSON object, -ENOMEM.
 * Every string in out is valid UTF-8. */
int hello_parse(const uint8_t *body, size_t len, struct hello_info *out);
void hello_info_free(struct hello_info *h);

#endif
