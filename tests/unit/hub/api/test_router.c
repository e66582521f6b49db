/* Unit tests of the API router table (hub/api/router.h): methods, captures, 404/405, roles. */
/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "hub/api/router.h"
#include "testutil.h"

#define QID "abcdefghijklmnopqrstuvwx" /* REG_QID_LEN bytes */

static struct api_match m;

/* Matches and checks the route taken: its pattern, method and role. */
static void taken(const char *method, const char *target, const char *pattern, enum api_role role)
{
    router_match(method, target, &m);
    CHECK(m.route != NULL);
    CHECK_EQ_INT(m.status, 0);
    if (m.route == NULL) {
        fprintf(stderr, "  %s %s: no route (status %d)\n", method, target, m.status);
        return;
    }
    CHECK_EQ_STR(m.route->pattern, pattern);
    CHECK_EQ_INT(m.route->role, role);
    CHECK(m.route->method == NULL || strcmp(m.route->method, method) == 0);
    /* Exactly one handler, and an audit action for every state change. */
    CHECK((m.route->read != NULL) != (m.route->change != NULL));
    CHECK(m.route->change == NULL || (m.route->action != NULL && m.route->action[0] != '\0'));
}

static void refused(const char *method, const char *target, int status, const char *what)
{
    router_match(method, target, &m);
    CHECK(m.route == NULL);
    CHECK_EQ_INT(m.status, status);
    if (status == 404)
        CHECK_EQ_STR(m.detail, what);
    else
        CHECK_EQ_STR(m.allowed, what);
}

static void test_routes(void)
{
    taken("GET", "/healthz", "/healthz", ROLE_NONE);
    taken("POST", "/healthz?x=1", "/healthz", ROLE_NONE); /* any method */
    taken("GET", "/readyz", "/readyz", ROLE_NONE);
    CHECK(m.open);
    taken("GET", "/metrics", "/metrics", ROLE_ADMIN);
    CHECK(!m.open);
    taken("GET", "/v1/sites", "/v1/sites", ROLE_USER);
    CHECK(m.route->read != NULL);
    taken("POST", "/v1/sites?pretty", "/v1/sites", ROLE_ADMIN);
    CHECK(m.route->change != NULL);
    CHECK_EQ_STR(m.route->action, "site.add");
    taken("GET", "/v1/sites/edge-1?sessions=1", "/v1/sites/{site}", ROLE_USER);
    CHECK_EQ_STR(m.name, "edge-1");
    taken("PATCH", "/v1/sites/edge-1", "/v1/sites/{site}", ROLE_ADMIN);
    CHECK_EQ_STR(m.route->action, "site.update");
    taken("DELETE", "/v1/sites/edge-1", "/v1/sites/{site}", ROLE_ADMIN);
    CHECK_EQ_STR(m.route->action, "site.remove");
    taken("POST", "/v1/sites/edge-1/revoke", "/v1/sites/{site}/revoke", ROLE_ADMIN);
    taken("POST", "/v1/sites/edge-1/enroll", "/v1/sites/{site}/enroll", ROLE_ADMIN);
    CHECK_EQ_STR(m.route->action, "site.token");
    /* Rotation and enrollment: the body proves who asks, no bearer. */
    taken("POST", "/v1/sites/edge-1/rotate", "/v1/sites/{site}/rotate", ROLE_NONE);
    CHECK(m.open);
    CHECK_EQ_STR(m.name, "edge-1");
    CHECK_EQ_STR(m.route->action, "site.rotate");
    taken("POST", "/v1/enroll", "/v1/enroll", ROLE_NONE);
    CHECK_EQ_STR(m.route->action, "site.enroll");
    /* The proxy hand-off: any method, the rest (query included) as sent. */
    taken("PUT", "/v1/sites/edge-1/services/web/a/b?q=1", "/v1/sites/{site}/services/*", ROLE_USER);
    CHECK_EQ_STR(m.name, "edge-1");
    CHECK_EQ_STR(m.rest, "web/a/b?q=1");
    taken("GET", "/v1/sites/edge-1/services/", "/v1/sites/{site}/services/*", ROLE_USER);
    CHECK_EQ_STR(m.rest, "");
    taken("GET", "/v1/tokens", "/v1/tokens", ROLE_ADMIN);
    taken("POST", "/v1/tokens", "/v1/tokens", ROLE_ADMIN);
    CHECK_EQ_STR(m.route->action, "token.create");
    taken("DELETE", "/v1/tokens/ops-1", "/v1/tokens/{token}", ROLE_ADMIN);
    CHECK_EQ_STR(m.name, "ops-1");
    taken("GET", "/v1/enrollments?all=1", "/v1/enrollments", ROLE_ADMIN);
    taken("DELETE", "/v1/enrollments/12", "/v1/enrollments/{id}", ROLE_ADMIN);
    CHECK_EQ_INT(m.id, 12);
    CHECK_EQ_STR(m.route->action, "enroll.cancel");
    taken("GET", "/v1/audit?limit=5", "/v1/audit", ROLE_ADMIN);
    /* The dashboard's files are open (they hold no data); its events are not. */
    taken("GET", "/", "/", ROLE_NONE);
    CHECK(m.open);
    taken("GET", "/?x=1", "/", ROLE_NONE);
    taken("GET", "/ui/app.js", "/ui/app.js", ROLE_NONE);
    taken("GET", "/ui/app.css", "/ui/app.css", ROLE_NONE);
    taken("GET", "/v1/events", "/v1/events", ROLE_USER);
    CHECK(!m.open);
    /* Queries: a trailing '/' is the collection too. */
    taken("GET", "/v1/queries", "/v1/queries/?", ROLE_USER);
    taken("POST", "/v1/queries/", "/v1/queries/?", ROLE_USER);
    taken("GET", "/v1/queries/" QID, "/v1/queries/{qid}", ROLE_USER);
    CHECK_EQ_STR(m.qid, QID);
    taken("GET", "/v1/queries/" QID "/events?after=3", "/v1/queries/{qid}/events", ROLE_USER);
    CHECK_EQ_STR(m.qid, QID);
}

static void test_refusals(void)
{
    /* 405 names the path's methods, in the words the API always used. */
    refused("PUT", "/v1/sites", 405, "GET or POST");
    refused("POST", "/v1/sites/edge-1", 405, "GET, PATCH or DELETE");
    refused("GET", "/v1/sites/edge-1/revoke", 405, "POST");
    refused("DELETE", "/v1/queries", 405, "GET or POST");
    refused("POST", "/v1/queries/" QID, 405, "GET");
    refused("GET", "/v1/tokens/ops-1", 405, "DELETE");
    refused("GET", "/v1/enroll", 405, "POST");
    CHECK(m.open); /* answered without asking for a bearer */
    refused("GET", "/v1/sites/edge-1/rotate", 405, "POST");
    CHECK(m.open);
    refused("POST", "/", 405, "GET");
    refused("GET", "/ui/other.js", 404, "no such endpoint");
    refused("HEAD", "/metrics", 405, "GET");
    CHECK(!m.open);
    /* 404: what was not found. */
    refused("GET", "/nothing", 404, "no such endpoint");
    CHECK(!m.open);
    refused("GET", "/metricsx", 404, "no such endpoint");
    refused("GET", "/v1/sites/", 404, "no such site");
    refused("GET", "/v1/sites/Not_A_Name", 404, "no such site");
    refused("POST", "/v1/sites/Not_A_Name/rotate", 404, "no such site");
    CHECK(!m.open); /* an invalid name is not the open rotate route */
    refused("GET", "/v1/sites/edge-1/", 404, "no such endpoint");
    refused("GET", "/v1/sites/edge-1/bogus", 404, "no such endpoint");
    refused("GET", "/v1/sites/edge-1/services", 404, "no such endpoint");
    refused("GET", "/v1/queries/short", 404, "no such query");
    refused("GET", "/v1/queries/" QID "/bogus", 404, "no such endpoint");
    refused("GET", "/v1/queriesx", 404, "no such endpoint");
    refused("DELETE", "/v1/tokens/Bad!", 404, "no such endpoint");
    refused("DELETE", "/v1/enrollments/0", 404, "no such endpoint");
    refused("DELETE", "/v1/enrollments/12x", 404, "no such endpoint");
    refused("DELETE", "/v1/enrollments/1234567890123456789", 404, "no such endpoint");
    refused("GET", "/v1/sitesx", 404, "no such endpoint");
}

static void test_roles(void)
{
    struct auth user, admin;

    memset(&user, 0, sizeof(user));
    memset(&admin, 0, sizeof(admin));
    admin.admin = 1;
    CHECK_EQ_INT(router_role_status(ROLE_NONE, NULL), 0);
    CHECK_EQ_INT(router_role_status(ROLE_USER, NULL), 401);
    CHECK_EQ_INT(router_role_status(ROLE_ADMIN, NULL), 401);
    CHECK_EQ_INT(router_role_status(ROLE_USER, &user), 0);
    CHECK_EQ_INT(router_role_status(ROLE_ADMIN, &user), 403);
    CHECK_EQ_INT(router_role_status(ROLE_ADMIN, &admin), 0);
}

int main(void)
{
    test_routes();
    test_refusals();
    test_roles();
    TEST_DONE();
}
