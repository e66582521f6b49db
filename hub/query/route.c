/* The old /v1/queries router, kept while the API's router takes the routes over (query.h). */
/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "query_int.h"

static int engine_up(struct hub *h, struct ureq *r)
{
    return query_engine_up(h, r);
}

int query_api(struct hub *h, struct ureq *r, const struct auth *a)
{
    const char *path = r->target, *m = r->method;
    size_t plen = strcspn(path, "?");
    char qid[REG_QID_LEN + 1];
    const char *rest;
    size_t idlen;
    int events = 0;

    if (plen < 11 || strncmp(path, "/v1/queries", 11) != 0 || (plen > 11 && path[11] != '/'))
        return 0;
    if (!engine_up(h, r))
        return 1;
    if (plen == 11 || plen == 12) {
        if (strcmp(m, "POST") == 0)
            query_api_submit(h, r, a);
        else if (strcmp(m, "GET") == 0)
            query_api_list(h, r, a);
        else
            ureq_error(r, 405, "bad_request", "use GET or POST");
        return 1;
    }
    rest = path + 12;
    idlen = strcspn(rest, "/?");
    if (idlen != REG_QID_LEN) {
        ureq_error(r, 404, "not_found", "no such query");
        return 1;
    }
    memcpy(qid, rest, idlen);
    qid[idlen] = '\0';
    rest += idlen;
    if (strncmp(rest, "/events", 7) == 0 && (rest[7] == '\0' || rest[7] == '?'))
        events = 1;
    else if (*rest != '\0' && *rest != '?') {
        ureq_error(r, 404, "not_found", "no such endpoint");
        return 1;
    }
    if (strcmp(m, "GET") != 0) {
        ureq_error(r, 405, "bad_request", "use GET");
        return 1;
    }
    if (events)
        query_api_events(h, r, a, qid);
    else
        query_api_show(h, r, a, qid);
    return 1;
}
