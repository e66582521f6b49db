/* Unit tests for site/hubs.c and agent_apply_hubs: the cluster's hub list a site learns (bounds,
 * bad lists, hubs.json round trip, merging with site.conf's hubs and keys). */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../../site/agent.h"
#include "../../../site/hubs.h"
#include "testutil.h"

#define PA "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define PB "sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="
#define PC "sha256//CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA="

static struct hubs_list l, m;

static int parse(const char *json)
{
    return hubs_parse(json, strlen(json), &l);
}

static void test_parse(void)
{
    char *big;

    CHECK_EQ_INT(parse("[{\"pin\":\"" PA "\",\"endpoints\":[\"a:1\",\"[::1]:2\"]},"
                       "{\"pin\":\"" PB "\",\"endpoints\":[],\"name\":\"ignored\"}]"),
                 0);
    CHECK_EQ_INT(l.n, 2);
    CHECK_EQ_STR(l.hub[0].pin, PA);
    CHECK_EQ_INT(l.hub[0].n_eps, 2);
    CHECK_EQ_STR(l.hub[0].eps[1], "[::1]:2");
    CHECK_EQ_INT(l.hub[1].n_eps, 0);

    /* Each is refused whole, and leaves an empty list. */
    const char *bad[] = {
        "",
        "[]",
        "{}",
        "[1]",
        "[{\"pin\":\"sha256//short\",\"endpoints\":[]}]",
        "[{\"pin\":\"" PA "\"}]",
        "[{\"pin\":\"" PA "\",\"endpoints\":[\"no-port\"]}]",
        "[{\"pin\":\"" PA "\",\"endpoints\":[\"a:1\\u0000b\"]}]",
        "[{\"pin\":\"" PA "\",\"endpoints\":[7]}]",
        "[{\"pin\":\"" PA "\",\"pin\":\"" PB "\",\"endpoints\":[]}]",
        "[{\"pin\":\"" PA "\",\"endpoints\":[\"a:1\",\"a:2\",\"a:3\",\"a:4\",\"a:5\",\"a:6\","
        "\"a:7\",\"a:8\",\"a:9\"]}]",
        "[{\"pin\":\"" PA "\",\"endpoints\":[]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        l.n = 99;
        CHECK_EQ_INT(parse(bad[i]), -EINVAL);
        CHECK_EQ_INT(l.n, 0);
    }
    /* 17 hubs: one too many. */
    big = malloc(HUBS_JSON_MAX * 2);
    strcpy(big, "[");
    for (int i = 0; i < HUBS_MAX + 1; i++)
        strcat(strcat(big, i ? "," : ""), "{\"pin\":\"" PA "\",\"endpoints\":[]}");
    strcat(big, "]");
    CHECK_EQ_INT(parse(big), -EINVAL);
    /* Longer than HUBS_JSON_MAX, however valid its start. */
    memset(big, ' ', HUBS_JSON_MAX * 2 - 1);
    big[HUBS_JSON_MAX * 2 - 1] = '\0';
    memcpy(big, "[{\"pin\":\"" PA "\",\"endpoints\":[]}]",
           strlen("[{\"pin\":\"" PA "\",\"endpoints\":[]}]"));
    CHECK_EQ_INT(parse(big), -EINVAL);
    free(big);
}

static void test_save_load(void)
{
    char dir[] = "/tmp/test_hubs.XXXXXX", path[300];

    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ_INT(hubs_load(dir, &m), -ENOENT);
    CHECK_EQ_INT(parse("[{\"pin\":\"" PA "\",\"endpoints\":[\"a:1\"]},"
                       "{\"pin\":\"" PB "\",\"endpoints\":[\"b:1\",\"b:2\"]}]"),
                 0);
    CHECK_EQ_INT(hubs_save(dir, &l), 0);
    CHECK_EQ_INT(hubs_load(dir, &m), 0);
    CHECK(hubs_equal(&l, &m));

    m.hub[1].n_eps = 1;
    CHECK(!hubs_equal(&l, &m));
    snprintf(path, sizeof(path), "%s/hubs.json", dir);
    tu_write_file(path, "not json", 8);
    CHECK_EQ_INT(hubs_load(dir, &m), -EINVAL);
    unlink(path);
    rmdir(dir);
}

/* site.conf's keys and endpoints come first and stay; the list's others
 * follow, without repeats; a later, shorter list drops what it no longer
 * names; the endpoint in use keeps its place. */
static void test_apply(void)
{
    static struct agent a;

    memset(&a, 0, sizeof(a));
    strcpy(a.hub_pins[0], PA);
    a.n_pins = a.n_conf_pins = 1;
    strcpy(a.hubs[0], "a:1");
    a.n_hubs = a.n_conf_hubs = 1;
    /* A list without site.conf's key is another cluster's: refused. */
    CHECK_EQ_INT(parse("[{\"pin\":\"" PB "\",\"endpoints\":[\"b:1\"]}]"), 0);
    CHECK_EQ_INT(agent_apply_hubs(&a, &l), -EPERM);
    CHECK_EQ_INT(a.n_pins, 1);
    CHECK_EQ_INT(a.n_hubs, 1);
    CHECK_EQ_INT(parse("[{\"pin\":\"" PA "\",\"endpoints\":[\"a:1\"]},"
                       "{\"pin\":\"" PB "\",\"endpoints\":[\"b:1\",\"b:2\"]},"
                       "{\"pin\":\"" PC "\",\"endpoints\":[\"c:1\"]}]"),
                 0);
    CHECK_EQ_INT(agent_apply_hubs(&a, &l), 0);
    CHECK_EQ_INT(a.n_pins, 3);
    CHECK_EQ_STR(a.hub_pins[0], PA);
    CHECK_EQ_STR(a.hub_pins[2], PC);
    CHECK_EQ_INT(a.n_hubs, 4);
    CHECK_EQ_STR(a.hubs[1], "b:1");
    CHECK_EQ_STR(a.hubs[3], "c:1");
    a.hub_idx = 3; /* connected through c:1 */
    CHECK_EQ_INT(parse("[{\"pin\":\"" PA "\",\"endpoints\":[]},"
                       "{\"pin\":\"" PC "\",\"endpoints\":[\"c:1\"]}]"),
                 0);
    CHECK_EQ_INT(agent_apply_hubs(&a, &l), 0);
    CHECK_EQ_INT(a.n_pins, 2);
    CHECK_EQ_STR(a.hub_pins[1], PC);
    CHECK_EQ_INT(a.n_hubs, 2);
    CHECK_EQ_STR(a.hubs[a.hub_idx], "c:1");
}

int main(void)
{
    test_parse();
    test_save_load();
    test_apply();
    TEST_DONE();
}
