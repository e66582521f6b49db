/* Unit test of errmsg_set: formats, cuts to the buffer, and tolerates no buffer. */
/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "common/errmsg.h"
#include "testutil.h"

int main(void)
{
    char err[8];

    errmsg_set(err, sizeof(err), "%s %d", "ab", 12);
    CHECK_EQ_STR(err, "ab 12");
    /* Longer than the buffer: cut, always terminated. */
    memset(err, 'x', sizeof(err));
    errmsg_set(err, sizeof(err), "%s", "0123456789");
    CHECK_EQ_STR(err, "0123456");
    /* No buffer, or no room: nothing is written. */
    memset(err, 'x', sizeof(err));
    errmsg_set(NULL, 16, "%s", "abc");
    errmsg_set(err, 0, "%s", "abc");
    CHECK_EQ_INT(err[0], 'x');
    TEST_DONE();
}
