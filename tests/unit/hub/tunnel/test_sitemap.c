/* Unit tests for hub/tunnel/sitemap.c: find, standby, take-over, cut and each, without sockets. */
/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "hub/tunnel/sitemap.h"
#include "testutil.h"

/* What a tunnel is to the map: an entry, open until killed. */
struct fake {
    struct sitemap_entry e;
    int killed;         /* times kill was called */
    int in_map_at_kill; /* where the entry was when kill ran */
    char why[96];
    int visits;
};

#define FAKE_OF(p) ((struct fake *)((char *)(p)-offsetof(struct fake, e)))

static int fake_is_open(const struct sitemap_entry *e)
{
    return FAKE_OF(e)->killed == 0;
}

static void fake_kill(struct sitemap_entry *e, const char *why)
{
    struct fake *f = FAKE_OF(e);

    f->killed++;
    f->in_map_at_kill = e->where;
    snprintf(f->why, sizeof(f->why), "%s", why);
}

static const struct sitemap_ops ops = {fake_is_open, fake_kill};

static void fake_init(struct fake *f, int64_t site_id)
{
    memset(f, 0, sizeof(*f));
    sitemap_entry_init(&f->e, site_id);
}

static void test_find_after_put(void)
{
    struct sitemap m = {0};
    struct fake a, b;

    fake_init(&a, 1);
    fake_init(&b, 2);
    CHECK(sitemap_find(&m, 1) == NULL); /* empty map, no table yet */
    CHECK_EQ_INT(sitemap_arrive(&m, &a.e, &ops), SITEMAP_LIVE);
    CHECK_EQ_INT(sitemap_arrive(&m, &b.e, &ops), SITEMAP_LIVE);
    CHECK(sitemap_find(&m, 1) == &a.e);
    CHECK(sitemap_find(&m, 2) == &b.e);
    CHECK(sitemap_find(&m, 3) == NULL);
    CHECK_EQ_INT(sitemap_count(&m), 2);
    sitemap_remove(&m, &a.e);
    CHECK(sitemap_find(&m, 1) == NULL);
    CHECK_EQ_INT(a.e.where, SITEMAP_NONE);
    sitemap_remove(&m, &a.e); /* nowhere: nothing */
    CHECK_EQ_INT(sitemap_count(&m), 1);
    sitemap_remove(&m, &b.e);
    CHECK_EQ_INT(sitemap_count(&m), 0);
    CHECK_EQ_INT(a.killed + b.killed, 0);
    sitemap_free(&m);
}

/* A second tunnel of a live site waits; only take-over replaces, and kills
 * the old one once it is out of the map. */
static void test_standby_and_take_over(void)
{
    struct sitemap m = {0};
    struct fake old, young;

    fake_init(&old, 7);
    fake_init(&young, 7);
    CHECK_EQ_INT(sitemap_arrive(&m, &old.e, &ops), SITEMAP_LIVE);
    CHECK_EQ_INT(sitemap_arrive(&m, &young.e, &ops), SITEMAP_STANDBY);
    CHECK(sitemap_find(&m, 7) == &old.e); /* the working one stays */
    CHECK_EQ_INT(sitemap_count(&m), 1);
    CHECK_EQ_INT(sitemap_standby_count(&m), 1);
    CHECK_EQ_INT(old.killed, 0);

    sitemap_take_over(&m, &young.e, &ops);
    CHECK(sitemap_find(&m, 7) == &young.e);
    CHECK_EQ_INT(young.e.where, SITEMAP_LIVE);
    CHECK_EQ_INT(sitemap_standby_count(&m), 0);
    CHECK_EQ_INT(sitemap_count(&m), 1);
    CHECK_EQ_INT(old.killed, 1);
    CHECK_EQ_INT(old.in_map_at_kill, SITEMAP_NONE);
    CHECK_EQ_STR(old.why, "replaced by a newer connection of the same site");
    CHECK_EQ_INT(young.killed, 0);
    sitemap_remove(&m, &young.e);
    sitemap_free(&m);
}

/* A live tunnel already closing does not hold a newcomer on standby: the
 * newcomer is live at once, and the closing one is not killed twice. */
static void test_arrive_over_closing(void)
{
    struct sitemap m = {0};
    struct fake old, young;

    fake_init(&old, 9);
    fake_init(&young, 9);
    CHECK_EQ_INT(sitemap_arrive(&m, &old.e, &ops), SITEMAP_LIVE);
    old.killed = 1; /* closing on its own */
    CHECK_EQ_INT(sitemap_arrive(&m, &young.e, &ops), SITEMAP_LIVE);
    CHECK(sitemap_find(&m, 9) == &young.e);
    CHECK_EQ_INT(old.e.where, SITEMAP_NONE);
    CHECK_EQ_INT(old.killed, 1);
    CHECK_EQ_INT(sitemap_count(&m), 1);
    sitemap_remove(&m, &young.e);
    sitemap_free(&m);
}

/* Cut takes out the live tunnel and every standby one of the site, leaves
 * other sites alone, and kills each once, after it left the map. */
static void test_cut(void)
{
    struct sitemap m = {0};
    struct fake live, sb1, sb2, other, other_sb;

    fake_init(&live, 3);
    fake_init(&sb1, 3);
    fake_init(&sb2, 3);
    fake_init(&other, 4);
    fake_init(&other_sb, 4);
    sitemap_arrive(&m, &live.e, &ops);
    sitemap_arrive(&m, &other.e, &ops);
    CHECK_EQ_INT(sitemap_arrive(&m, &sb1.e, &ops), SITEMAP_STANDBY);
    CHECK_EQ_INT(sitemap_arrive(&m, &other_sb.e, &ops), SITEMAP_STANDBY);
    CHECK_EQ_INT(sitemap_arrive(&m, &sb2.e, &ops), SITEMAP_STANDBY);
    CHECK_EQ_INT(sitemap_standby_count(&m), 3);

    sitemap_cut(&m, 3, "site disabled", &ops);
    CHECK(sitemap_find(&m, 3) == NULL);
    CHECK_EQ_INT(live.killed, 1);
    CHECK_EQ_INT(sb1.killed, 1);
    CHECK_EQ_INT(sb2.killed, 1);
    CHECK_EQ_INT(live.in_map_at_kill, SITEMAP_NONE);
    CHECK_EQ_INT(sb1.in_map_at_kill, SITEMAP_NONE);
    CHECK_EQ_STR(sb2.why, "site disabled");
    CHECK_EQ_INT(sitemap_standby_count(&m), 1);
    CHECK(sitemap_find(&m, 4) == &other.e);
    CHECK_EQ_INT(other.killed + other_sb.killed, 0);
    CHECK_EQ_INT(other_sb.e.where, SITEMAP_STANDBY);
    sitemap_cut(&m, 3, "again", &ops); /* nothing left of site 3 */
    CHECK_EQ_INT(live.killed, 1);

    /* A standby tunnel that goes away (its hello failed) leaves only itself. */
    sitemap_remove(&m, &other_sb.e);
    CHECK_EQ_INT(sitemap_standby_count(&m), 0);
    CHECK(sitemap_find(&m, 4) == &other.e);
    CHECK_EQ_INT(other.killed, 0);
    sitemap_remove(&m, &other.e);
    CHECK_EQ_INT(sitemap_count(&m), 0);
    sitemap_free(&m);
}

static void count_visit(struct sitemap_entry *e, void *arg)
{
    FAKE_OF(e)->visits++;
    (*(size_t *)arg)++;
}

/* each may kill what it visits: the map changes under it. */
static void cut_visit(struct sitemap_entry *e, void *arg)
{
    FAKE_OF(e)->visits++;
    sitemap_cut(arg, e->site_id, "draining", &ops);
}

/* 10k sites grow the table many times and stay findable; each visits every
 * entry, live and standby, exactly once. */
static void test_many_and_each(void)
{
    enum { N = 10000, NSB = 100 };
    struct sitemap m = {0};
    struct fake *f = calloc(N + NSB, sizeof(*f));
    size_t visited = 0;

    CHECK(f != NULL);
    if (f == NULL)
        return;
    for (int i = 0; i < N; i++) {
        fake_init(&f[i], (int64_t)i * 7919 + 1);
        CHECK_EQ_INT(sitemap_arrive(&m, &f[i].e, &ops), SITEMAP_LIVE);
    }
    for (int i = 0; i < NSB; i++) {
        fake_init(&f[N + i], (int64_t)i * 100 * 7919 + 1);
        CHECK_EQ_INT(sitemap_arrive(&m, &f[N + i].e, &ops), SITEMAP_STANDBY);
    }
    CHECK_EQ_INT(sitemap_count(&m), N);
    CHECK_EQ_INT(sitemap_standby_count(&m), NSB);
    for (int i = 0; i < N; i++)
        CHECK(sitemap_find(&m, (int64_t)i * 7919 + 1) == &f[i].e);
    CHECK(sitemap_find(&m, 0) == NULL);
    CHECK(sitemap_find(&m, -1) == NULL);

    CHECK_EQ_INT(sitemap_each(&m, count_visit, &visited), 0);
    CHECK_EQ_INT(visited, N + NSB);
    for (int i = 0; i < N + NSB; i++)
        CHECK_EQ_INT(f[i].visits, 1);

    for (int i = 0; i < N + NSB; i++)
        f[i].visits = 0;
    CHECK_EQ_INT(sitemap_each(&m, cut_visit, &m), 0);
    CHECK_EQ_INT(sitemap_count(&m), 0);
    CHECK_EQ_INT(sitemap_standby_count(&m), 0);
    for (int i = 0; i < N + NSB; i++) {
        CHECK_EQ_INT(f[i].visits, 1); /* listed before: cut entries still visited once */
        CHECK_EQ_INT(f[i].killed, 1);
        CHECK_EQ_INT(f[i].e.where, SITEMAP_NONE);
    }
    visited = 0;
    CHECK_EQ_INT(sitemap_each(&m, count_visit, &visited), 0);
    CHECK_EQ_INT(visited, 0);
    sitemap_free(&m);
    free(f);
}

int main(void)
{
    test_find_after_put();
    test_standby_and_take_over();
    test_arrive_over_closing();
    test_cut();
    test_many_and_each();
    TEST_DONE();
}
