/* Unit tests of the state name tables: site states and query result statuses. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "hub/store/registry.h"
#include "hub/store/registry_query.h"
#include "testutil.h"

/* Texts that name no state: near misses of the real names included. */
static const char *const not_names[] = {
    "",         "unknown", "Active", "ACTIVE", "active ", " active", "activ",    "actived",
    "queued\n", "done\t",  "sent0",  "-1",     "0",       "revoke",  "canceled", "Skipped"};
#define N_NOT_NAMES (sizeof(not_names) / sizeof(not_names[0]))

static void site_states(void)
{
    /* The database's CHECK and the API's JSON use exactly these texts. */
    static const char *const want[REG_SITE_NSTATES] = {
        [REG_SITE_PENDING] = "pending",
        [REG_SITE_ACTIVE] = "active",
        [REG_SITE_DISABLED] = "disabled",
        [REG_SITE_REVOKED] = "revoked",
    };

    for (int i = 0; i < REG_SITE_NSTATES; i++) {
        enum reg_site_state got = REG_SITE_NSTATES;

        CHECK_EQ_STR(registry_site_state_name((enum reg_site_state)i), want[i]);
        CHECK_EQ_INT(registry_site_state_parse(want[i], &got), 0);
        CHECK_EQ_INT(got, i);
    }
    CHECK_EQ_STR(registry_site_state_name(REG_SITE_NSTATES), "unknown");
    CHECK_EQ_STR(registry_site_state_name((enum reg_site_state) - 1), "unknown");
    for (size_t i = 0; i < N_NOT_NAMES; i++) {
        enum reg_site_state got = REG_SITE_REVOKED;

        CHECK_EQ_INT(registry_site_state_parse(not_names[i], &got), -EINVAL);
        CHECK_EQ_INT(got, REG_SITE_REVOKED); /* untouched when refused */
    }
    {
        enum reg_site_state got = REG_SITE_REVOKED;
        CHECK_EQ_INT(registry_site_state_parse(NULL, &got), -EINVAL);
        CHECK_EQ_INT(got, REG_SITE_REVOKED);
    }
}

static void query_statuses(void)
{
    static const char *const want[REG_Q_NSTATUS] = {
        [REG_Q_QUEUED] = "queued",   [REG_Q_SENT] = "sent",           [REG_Q_DONE] = "done",
        [REG_Q_ERROR] = "error",     [REG_Q_TIMEOUT] = "timeout",     [REG_Q_EXPIRED] = "expired",
        [REG_Q_SKIPPED] = "skipped", [REG_Q_CANCELLED] = "cancelled",
    };

    for (int i = 0; i < REG_Q_NSTATUS; i++) {
        CHECK_EQ_STR(registry_query_status_name(i), want[i]);
        CHECK_EQ_INT(registry_query_status_parse(want[i]), i);
        /* queued and sent are open; every other status is final. */
        CHECK_EQ_INT(registry_query_status_final(i), i != REG_Q_QUEUED && i != REG_Q_SENT);
    }
    CHECK_EQ_STR(registry_query_status_name(REG_Q_NSTATUS), "unknown");
    CHECK_EQ_STR(registry_query_status_name(-EINVAL), "unknown");
    CHECK_EQ_INT(registry_query_status_final(-EINVAL), 0);
    CHECK_EQ_INT(registry_query_status_final(REG_Q_NSTATUS), 0);
    for (size_t i = 0; i < N_NOT_NAMES; i++)
        CHECK_EQ_INT(registry_query_status_parse(not_names[i]), -EINVAL);
    CHECK_EQ_INT(registry_query_status_parse(NULL), -EINVAL);
}

int main(void)
{
    site_states();
    query_statuses();
    TEST_DONE();
}
