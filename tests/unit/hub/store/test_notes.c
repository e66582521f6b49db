/* Unit tests of hub/store/notes.h: notes sent in a change's transaction reach the listener of
 * another registry connection on one PostgreSQL database (TETHER_TEST_PG_URL, tests/unit/pgtest.h).
 */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "hub/store/notes.h"
#include "hub/store/registry.h"
#include "pgtest.h"
#include "testutil.h"

static void test_parse(void)
{
    static const char *const bad[][2] = {
        {"tether_site", "cut:12:bogus:abc"},
        {"tether_site", "cut:x:revoked:abc"},
        {"tether_site", "chg:5:"},
        {"tether_site", "chg:5:Abc"},
        {"tether_site", "cut:0:revoked:a"},
        {"tether_site", "chg:5:a:b"},
        {"tether_site", "cut:5:revoked"},
        {"tether_site", "xyz:5:a"},
        {"tether_token", "cut"},
        {"tether_token", "chgx"},
        {"other", "chg"},
        {"tether_query", "new:"},
        {"tether_query", "new:0"},
        {"tether_query", "new:-3"},
        {"tether_query", "new:12x"},
        {"tether_query", "res:99999999999999999999"},
        {"tether_query", "chg:5"},
        {"tether_site", "ses:1:2"},
        {"tether_site", "ses:1:2:0"},
        {"tether_site", "ses:1:2:3:4"},
        {"tether_site", "ses:a:2:3"},
    };
    struct reg_note n;

    CHECK_EQ_INT(registry_note_parse("tether_site", "cut:12:revoked:abc", &n), 0);
    CHECK(n.kind == REG_NOTE_CUT && n.why == REG_CUT_REVOKED && n.site_id == 12 && !n.own);
    CHECK_EQ_STR(n.site, "abc");
    CHECK_EQ_INT(registry_note_parse("tether_site", "cut:7:reenrolled:s-1", &n), 0);
    CHECK(n.kind == REG_NOTE_CUT && n.why == REG_CUT_REENROLLED && n.site_id == 7);
    CHECK_EQ_INT(registry_note_parse("tether_site", "chg:5:s-1", &n), 0);
    CHECK(n.kind == REG_NOTE_CHANGED && n.site_id == 5);
    CHECK_EQ_STR(n.site, "s-1");
    CHECK_EQ_INT(registry_note_parse("tether_token", "chg:ops-1", &n), 0);
    CHECK(n.kind == REG_NOTE_TOKENS);
    CHECK_EQ_STR(n.site, "ops-1");
    CHECK_EQ_INT(registry_note_parse("tether_token", "chg", &n), 0);
    CHECK(n.kind == REG_NOTE_TOKENS && n.site[0] == '\0');
    CHECK_EQ_INT(registry_note_parse("tether_token", "chg:Bad:Name", &n), 0);
    CHECK(n.kind == REG_NOTE_TOKENS && n.site[0] == '\0');
    CHECK_EQ_INT(registry_note_parse("tether_site", "ses:5:77:2", &n), 0);
    CHECK(n.kind == REG_NOTE_SESSION && n.site_id == 5 && n.session_id == 77 && n.hub_id == 2);
    CHECK_EQ_INT(registry_note_parse("tether_query", "new:42", &n), 0);
    CHECK(n.kind == REG_NOTE_QUERY && n.query_id == 42 && n.site_id == 0);
    CHECK_EQ_INT(registry_note_parse("tether_query", "res:7", &n), 0);
    CHECK(n.kind == REG_NOTE_RESULTS && n.query_id == 7);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(registry_note_parse(bad[i][0], bad[i][1], &n), -EINVAL);
    for (int w = 0; w < REG_CUT_NWHY; w++)
        CHECK(registry_cut_word((enum reg_cut_why)w) != NULL);
    CHECK(registry_cut_word(REG_CUT_NWHY) == NULL);
}

#ifdef TETHER_HAVE_PG
/* What the listener told, in order. */
struct heard {
    struct reg_note notes[64];
    int n;
    int ups, downs, first_up, first_down;
};

static void on_note(void *arg, const struct reg_note *n)
{
    struct heard *h = arg;

    if (h->n < 64)
        h->notes[h->n++] = *n;
}

static void on_up(void *arg, int first)
{
    struct heard *h = arg;

    h->ups++;
    h->first_up += first;
}

static void on_down(void *arg, int first, const char *why)
{
    struct heard *h = arg;

    (void)why;
    h->downs++;
    h->first_down += first;
}

static const struct registry_listen_ops ops = {on_note, on_up, on_down};

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *count reaches want or ms passed; 1 when reached. */
static int run_for(uv_loop_t *loop, const int *count, int want, uint64_t ms)
{
    uv_timer_t t;
    uint64_t end;
    int ok;

    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_tick, 10, 10);
    uv_update_time(loop);
    end = uv_now(loop) + ms;
    while (*count < want && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    ok = *count >= want;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

static int run_until(uv_loop_t *loop, const int *count, int want)
{
    return run_for(loop, count, want, 3000);
}

static void hash_of(unsigned n, char out[65])
{
    snprintf(out, 65, "%064x", 0xabc00u + n);
}

static void pin_of(unsigned n, char out[CRYPTO_PIN_LEN + 1])
{
    char body[44];

    for (int i = 0; i < 43; i++)
        body[i] = (char)('A' + (n * 7 + (unsigned)i) % 26);
    body[43] = '\0';
    snprintf(out, CRYPTO_PIN_LEN + 1, "sha256//%s=", body);
}

/* The note i: kind, why (cuts), site name and own. */
static void check_note(const struct heard *h, int i, enum reg_note_kind kind, enum reg_cut_why why,
                       const char *site, int own)
{
    CHECK(i < h->n);
    if (i >= h->n)
        return;
    CHECK_EQ_INT(h->notes[i].kind, kind);
    if (kind == REG_NOTE_CUT)
        CHECK_EQ_INT(h->notes[i].why, why);
    if (site != NULL)
        CHECK_EQ_STR(h->notes[i].site, site);
    CHECK_EQ_INT(h->notes[i].own, own);
}

static void test_listen(const char *server)
{
    char url[PGTEST_URL_CAP], hash[65], pin1[CRYPTO_PIN_LEN + 1], pin2[CRYPTO_PIN_LEN + 1],
        pin3[CRYPTO_PIN_LEN + 1], site[TOKEN_NAME_MAX + 1];
    struct registry *r1 = NULL, *r2 = NULL;
    struct registry_listener *l = NULL;
    struct heard h;
    struct reg_site s;
    uv_loop_t loop;
    int n;

    memset(&h, 0, sizeof(h));
    CHECK_EQ_INT(pgtest_create(server, "notes", url, sizeof(url)), 0);
    CHECK_EQ_INT(registry_open(url, &r1, NULL, 0), 0);
    CHECK_EQ_INT(registry_open(url, &r2, NULL, 0), 0);
    if (r1 == NULL || r2 == NULL)
        return;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    /* r2 is "this hub": it listens; r1 is another hub. */
    CHECK_EQ_INT(registry_listen(r2, &loop, &ops, &h, &l), 0);
    CHECK(run_until(&loop, &h.ups, 1));
    CHECK_EQ_INT(h.first_up, 1);
    CHECK_EQ_INT(h.downs, 0);

    /* A site added: changed (watchers see it added). */
    CHECK_EQ_INT(registry_site_create(r1, "alpha", "{}", 1000), 0);
    CHECK_EQ_INT(registry_site_create(r1, "bravo", "{}", 1000), 0);
    CHECK(run_until(&loop, &h.n, 2));
    check_note(&h, 0, REG_NOTE_CHANGED, REG_CUT_NWHY, "alpha", 0);
    check_note(&h, 1, REG_NOTE_CHANGED, REG_CUT_NWHY, "bravo", 0);
    CHECK_EQ_INT(registry_site_create(r1, "alpha", "{}", 1000), -EEXIST);
    CHECK_EQ_INT(registry_site_get(r1, "alpha", &s), 0);
    CHECK_EQ_INT(h.notes[0].site_id, s.id);
    /* Enrolling a site that had no key: changed, not cut. */
    hash_of(1, hash);
    pin_of(1, pin1);
    pin_of(2, pin2);
    pin_of(3, pin3);
    CHECK_EQ_INT(registry_enroll_create(r1, "alpha", hash, 2000, 1000, NULL), 0);
    CHECK_EQ_INT(registry_enroll_redeem(r1, hash, pin1, 1500, site), 0);
    n = h.n;
    CHECK(run_until(&loop, &h.n, n + 1));
    check_note(&h, n, REG_NOTE_CHANGED, REG_CUT_NWHY, "alpha", 0);
    CHECK_EQ_INT(h.notes[n].site_id, s.id);
    registry_site_clear(&s);

    /* Each change, one note, in commit order. */
    n = h.n;
    CHECK_EQ_INT(registry_site_set_labels(r1, "alpha", "{\"team\":\"x\"}"), 0);
    CHECK_EQ_INT(registry_site_set_state(r1, "alpha", REG_SITE_DISABLED), 0);
    CHECK_EQ_INT(registry_site_set_state(r1, "alpha", REG_SITE_ACTIVE), 0);
    CHECK_EQ_INT(registry_site_rotate_pin(r1, h.notes[n - 1].site_id, pin1, pin2), 0);
    hash_of(2, hash);
    CHECK_EQ_INT(registry_enroll_reissue(r1, "alpha", hash, 2000, 1000, NULL), 0);
    CHECK_EQ_INT(registry_enroll_redeem(r1, hash, pin3, 1500, site), 0);
    hash_of(9, hash);
    CHECK_EQ_INT(registry_apitoken_create(r1, "u1", "user", NULL, hash, 0, 1000), 0);
    CHECK_EQ_INT(registry_apitoken_revoke(r1, "u1", 1100), 0);
    CHECK_EQ_INT(registry_site_revoke(r1, "alpha"), 0);
    CHECK_EQ_INT(registry_site_remove(r1, "bravo"), 0);
    CHECK(run_until(&loop, &h.n, n + 9));
    check_note(&h, n, REG_NOTE_CHANGED, REG_CUT_NWHY, "alpha", 0);
    check_note(&h, n + 1, REG_NOTE_CUT, REG_CUT_DISABLED, "alpha", 0);
    check_note(&h, n + 2, REG_NOTE_CHANGED, REG_CUT_NWHY, "alpha", 0);
    check_note(&h, n + 3, REG_NOTE_CUT, REG_CUT_ROTATED, "alpha", 0);
    check_note(&h, n + 4, REG_NOTE_CUT, REG_CUT_REENROLLED, "alpha", 0);
    check_note(&h, n + 5, REG_NOTE_TOKENS, REG_CUT_NWHY, "u1", 0);
    check_note(&h, n + 6, REG_NOTE_TOKENS, REG_CUT_NWHY, "u1", 0);
    check_note(&h, n + 7, REG_NOTE_CUT, REG_CUT_REVOKED, "alpha", 0);
    check_note(&h, n + 8, REG_NOTE_CUT, REG_CUT_REMOVED, "bravo", 0);

    /* A change refused (rolled back) tells nothing; the next one is the
     * only note. A change through the listener's own registry is own. */
    n = h.n;
    CHECK_EQ_INT(registry_site_revoke(r1, "nobody"), -ENOENT);
    CHECK_EQ_INT(registry_site_set_state(r1, "alpha", REG_SITE_ACTIVE), -EINVAL); /* revoked */
    CHECK_EQ_INT(registry_apitoken_revoke(r1, "u1", 1200), -EALREADY);
    CHECK_EQ_INT(registry_site_set_labels(r1, "alpha", "[1]"), -EINVAL);
    CHECK_EQ_INT(registry_site_create(r1, "charlie", "{}", 1000), 0);
    CHECK_EQ_INT(registry_site_set_labels(r2, "charlie", "{\"a\":\"b\"}"), 0);
    CHECK(run_until(&loop, &h.n, n + 2));
    check_note(&h, n, REG_NOTE_CHANGED, REG_CUT_NWHY, "charlie", 0);
    check_note(&h, n + 1, REG_NOTE_CHANGED, REG_CUT_NWHY, "charlie", 1);
    CHECK(!run_for(&loop, &h.n, n + 3, 300)); /* nothing more comes */

    /* The listening connection is ended by the server: down, then up again
     * (not first), and notes flow again. */
    CHECK_EQ_INT(pgtest_exec(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE datname = current_database() AND query LIKE 'LISTEN%'"),
                 0);
    CHECK(run_until(&loop, &h.downs, 1));
    CHECK_EQ_INT(h.first_down, 1);
    CHECK(run_until(&loop, &h.ups, 2));
    CHECK_EQ_INT(h.first_up, 1);
    n = h.n;
    CHECK_EQ_INT(registry_site_set_labels(r1, "charlie", "{}"), 0);
    CHECK(run_until(&loop, &h.n, n + 1));
    check_note(&h, n, REG_NOTE_CHANGED, REG_CUT_NWHY, "charlie", 0);

    /* Stopped: every handle closes and the loop ends empty. */
    registry_listen_stop(l);
    CHECK_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    registry_close(r1);
    registry_close(r2);
    CHECK_EQ_INT(pgtest_drop(server, url), 0);
}
#endif

int main(void)
{
    const char *pg = pgtest_server_or_skip();
    char dir[256], path[300], cmd[400];
    struct registry_listener *l = (struct registry_listener *)&dir;
    struct registry *r = NULL;
    uv_loop_t loop;

    test_parse();
    if (pg == NULL) {
        /* SQLite: one hub per file, nothing to listen to. */
        snprintf(dir, sizeof(dir), "/tmp/tether-notes-XXXXXX");
        CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/hub.db", dir);
        CHECK_EQ_INT(registry_open(path, &r, NULL, 0), 0);
        CHECK_EQ_INT(uv_loop_init(&loop), 0);
        if (r != NULL)
            CHECK_EQ_INT(registry_listen(r, &loop, NULL, NULL, &l), -ENOTSUP);
        CHECK(l == NULL);
        registry_listen_stop(NULL);
        CHECK_EQ_INT(uv_loop_close(&loop), 0);
        registry_close(r);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK_EQ_INT(system(cmd), 0);
    }
#ifdef TETHER_HAVE_PG
    else {
        test_listen(pg);
    }
#endif
    TEST_DONE();
}
