/* libFuzzer entry point for the API's JSON bodies (sites, tokens, enrollments, queries, rotation):
 * input "METHOD /path\n" then the body, sent by an admin over the real front end and router. */
/* SPDX-License-Identifier: MIT */
#include <jansson.h>

#include "fake_hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Takes "METHOD /path" from the first line when it is one: an upper-case
 * method and a printable path without spaces (the request line must stay one
 * request). Otherwise POST /v1/sites. */
static void request_line(const uint8_t *d, size_t n, char *method, char *path, size_t *used)
{
    const uint8_t *nl = memchr(d, '\n', n < 2048 ? n : 2048);
    size_t i = 0, m = 0, k = 0;

    strcpy(method, "POST");
    strcpy(path, "/v1/sites");
    *used = 0;
    if (nl == NULL)
        return;
    while (d + i < nl && d[i] >= 'A' && d[i] <= 'Z' && m < 16)
        method[m++] = (char)d[i++];
    if (m == 0 || d + i >= nl || d[i] != ' ' || d[i + 1] != '/')
        goto bad;
    method[m] = '\0';
    for (i++; d + i < nl && k < 1023; i++) {
        if (d[i] <= 0x20 || d[i] >= 0x7f)
            goto bad;
        path[k++] = (char)d[i];
    }
    if (d + i != nl)
        goto bad;
    path[k] = '\0';
    *used = (size_t)(nl - d) + 1;
    return;
bad:
    strcpy(method, "POST");
    strcpy(path, "/v1/sites");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char method[17], path[1024], head[1400];
    const char *methods[1];
    struct resp_check rc;
    struct buf req, out;
    size_t used;
    int hn, finals;

    if (size > 64 * 1024)
        return 0;
    request_line(data, size, method, path, &used);
    hn = snprintf(head, sizeof(head),
                  "%s %s HTTP/1.1\r\nHost: hub.example\r\nAuthorization: Bearer %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                  method, path, FAKE_ADMIN_TOKEN, size - used);
    buf_init(&req);
    buf_init(&out);
    if (buf_append(&req, head, (size_t)hn) != 0 || buf_append(&req, data + used, size - used) != 0)
        abort();
    fake_hub_session(buf_head(&req), req.len, req.len, &out);
    methods[0] = method;
    finals = check_responses(&out, methods, 1, &rc);
    /* One request, one answer; only a query waited on (?wait=) may still be
     * waiting when the connection goes. */
    if (finals > 1 || (finals == 0 && strstr(path, "wait") == NULL)) {
        fprintf(stderr, "fuzz: %d answers to one request\n", finals);
        abort();
    }
    if (finals == 1) {
        int status = rc.last_status;
        /* Bad input is the client's fault: never a 500. Errors are JSON
         * {"error", "detail"} (HEAD answers carry no body). */
        if (status == 500)
            abort();
        if (status >= 400 && strcmp(method, "HEAD") != 0) {
            json_t *j = json_loadb((const char *)buf_head(&rc.body), rc.body.len, 0, NULL);
            if (j == NULL || !json_is_string(json_object_get(j, "error")))
                abort();
            json_decref(j);
        }
    }
    buf_free(&rc.body);
    buf_free(&req);
    buf_free(&out);
    return 0;
}
