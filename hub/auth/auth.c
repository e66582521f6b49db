/* Who is asking: token identity and site scope (hub/auth/auth.h). */
/* SPDX-License-Identifier: MIT */
#include "auth.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../http/apijson.h"

void auth_clear(struct auth *a)
{
    free(a->scope_json);
    a->scope_json = NULL;
}

int auth_site_allowed(const struct auth *a, const struct reg_site *s)
{
    json_t *scope, *labels, *v;
    size_t i;
    int ok = 0;

    if (a->admin || a->scope_json == NULL)
        return 1;
    /* scope: a new reference, released below. */
    scope = json_loads(a->scope_json, 0, NULL);
    if (json_is_array(scope)) {
        json_array_foreach(scope, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), s->name) == 0)
                ok = 1;
        }
    } else if (json_is_object(scope) && json_is_object(labels = json_object_get(scope, "labels")) &&
               json_object_size(labels) > 0) {
        /* An empty selector would match every site: never from token_create,
         * and refused here too in case a row was written by hand. */
        ok = apijson_labels_match(labels, s->labels_json);
    }
    json_decref(scope);
    return ok;
}
