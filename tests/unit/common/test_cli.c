/* Unit test of common/cli.c's "did you mean": the edit distance, the suggestions and the usage
 * error that carries them. */
/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "common/cli.h"
#include "testutil.h"

static void distance(void)
{
    CHECK_EQ_INT(cli_edit_distance("", ""), 0);
    CHECK_EQ_INT(cli_edit_distance("list", "list"), 0);
    CHECK_EQ_INT(cli_edit_distance("lst", "list"), 1);      /* a letter left out */
    CHECK_EQ_INT(cli_edit_distance("lisst", "list"), 1);    /* one too many */
    CHECK_EQ_INT(cli_edit_distance("lost", "list"), 1);     /* one changed */
    CHECK_EQ_INT(cli_edit_distance("stauts", "status"), 1); /* two swapped */
    CHECK_EQ_INT(cli_edit_distance("LIST", "list"), 0);     /* case does not count */
    CHECK_EQ_INT(cli_edit_distance("", "run"), 3);
    CHECK_EQ_INT(cli_edit_distance("kitten", "sitting"), 3);
    {
        char longer[CLI_WORD_MAX + 2];

        memset(longer, 'a', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        CHECK(cli_edit_distance(longer, "a") == (size_t)-1);
    }
}

static void suggestions(void)
{
    static const char *const cmds[] = {"init", "run", "version", "help"};
    static const char *const sub[] = {"add",    "list",   "show",  "disable", "enable",
                                      "revoke", "remove", "label", "token",   "watch"};
    static const char *const opts[] = {"service", "sites", "method", "path", "timeout", NULL};
    char out[128];

    CHECK_EQ_INT(cli_suggest("rn", cmds, 4, NULL, out, sizeof(out)), 1);
    CHECK_EQ_STR(out, "'run'");
    CHECK_EQ_INT(cli_suggest("ini", cmds, 4, NULL, out, sizeof(out)), 1);
    CHECK_EQ_STR(out, "'init'");
    /* Far from everything: nothing. */
    CHECK_EQ_INT(cli_suggest("xyz", cmds, 4, NULL, out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "");
    /* The word itself is no typo. */
    CHECK_EQ_INT(cli_suggest("run", cmds, 4, NULL, out, sizeof(out)), 0);
    /* A prefix of "site " makes the whole command. */
    CHECK_EQ_INT(cli_suggest("lst", sub, 10, "site ", out, sizeof(out)), 1);
    CHECK_EQ_STR(out, "'site list'");
    /* The start of a word (two letters at least) is suggested... */
    CHECK_EQ_INT(cli_suggest("dis", sub, 10, NULL, out, sizeof(out)), 1);
    CHECK_EQ_STR(out, "'disable'");
    /* ...one letter is not. */
    CHECK_EQ_INT(cli_suggest("w", sub, 10, NULL, out, sizeof(out)), 0);
    /* Ties are all named: "re" starts "revoke" and "remove". */
    CHECK_EQ_INT(cli_suggest("re", sub, 10, NULL, out, sizeof(out)), 2);
    CHECK_EQ_STR(out, "'revoke' or 'remove'");
    /* Two edits only for longer words. */
    CHECK_EQ_INT(cli_suggest("srvce", opts, 6, "--", out, sizeof(out)), 0);
    CHECK_EQ_INT(cli_suggest("srvicee", opts, 6, "--", out, sizeof(out)), 1);
    CHECK_EQ_STR(out, "'--service'");
    CHECK_EQ_INT(cli_suggest("sevice", opts, 6, "--", out, sizeof(out)), 1);
    CHECK_EQ_STR(out, "'--service'");
    /* NULL candidates are skipped; a small buffer is cut, never overrun. */
    {
        char small[6];

        CHECK_EQ_INT(cli_suggest("rn", cmds, 4, NULL, small, sizeof(small)), 1);
        CHECK_EQ_STR(small, "'run'");
    }
}

/* The option parser's error for an unknown long option names the likely
 * one; it goes to stderr, so only the return is checked here. */
static void parser(void)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"service", required_argument, NULL, 'v'},
                                         {NULL, 0, NULL, 0}};
    char *argv[] = {"run", "--servce", "x", NULL};
    struct cli c;

    cli_begin(&c, "prog", "run", 3, argv, "", opts);
    CHECK_EQ_INT(cli_next(&c), CLI_ERROR);
    CHECK_EQ_INT(cli_unknown_command("prog", "rn", (const char *const[]){"run"}, 1),
                 CLI_EXIT_USAGE);
}

int main(void)
{
    distance();
    suggestions();
    parser();
    TEST_DONE();
}
