/* Unit test of the event log: log_q escapes every byte a terminal could act on, and log_event
 * never writes one. */
/* SPDX-License-Identifier: MIT */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "testutil.h"

/* 1 if s holds only printable ASCII. */
static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

/* Runs log_event with stderr sent to a file and returns what it wrote. */
static void logged(const char *value, char *out, size_t cap)
{
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    size_t n;

    fflush(stderr);
    dup2(fileno(f), STDERR_FILENO);
    log_event(LOG_INFO, "test_event", "raw=%s", value);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
}

int main(void)
{
    char all[256], line[4096], big[2000];

    /* Plain values pass as they are; the others are quoted. */
    CHECK_EQ_STR(log_q("web-1.2"), "web-1.2");
    CHECK_EQ_STR(log_q(NULL), "-");
    CHECK_EQ_STR(log_q(""), "\"\"");
    CHECK_EQ_STR(log_q("a b"), "\"a b\"");
    CHECK_EQ_STR(log_q("k=v"), "\"k=v\"");
    CHECK_EQ_STR(log_q("say \"hi\""), "\"say \\\"hi\\\"\"");
    CHECK_EQ_STR(log_q("back\\slash"), "\"back\\\\slash\"");

    /* Control bytes: escaped, never passed, whether or not a space is there. */
    CHECK_EQ_STR(log_q("a\rb"), "\"a\\rb\"");
    CHECK_EQ_STR(log_q("a\nb\tc"), "\"a\\nb\\tc\"");
    CHECK_EQ_STR(log_q("\x1b[31mred\x1b[0m"), "\"\\x1b[31mred\\x1b[0m\"");
    CHECK_EQ_STR(log_q("\x1b]0;title\x07"), "\"\\x1b]0;title\\x07\"");
    CHECK_EQ_STR(log_q("del\x7f"), "\"del\\x7f\"");
    CHECK_EQ_STR(log_q("\x01\x1f"), "\"\\x01\\x1f\"");
    /* Bytes >= 0x80: a UTF-8 C1 CSI (U+009B), other UTF-8, invalid UTF-8. */
    CHECK_EQ_STR(log_q("\xc2\x9b"
                       "2J"),
                 "\"\\xc2\\x9b2J\"");
    CHECK_EQ_STR(log_q("caf\xc3\xa9"), "\"caf\\xc3\\xa9\"");
    CHECK_EQ_STR(log_q("\xff\xfe"), "\"\\xff\\xfe\"");

    /* Every byte value: the result is printable ASCII. */
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    CHECK(printable(log_q(all)));
    CHECK(log_q(all)[0] == '"');

    /* A long value is cut, stays quoted and never ends inside an escape. */
    memset(big, 0x1b, sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    {
        const char *q = log_q(big);
        size_t n = strlen(q);
        CHECK(n < 512);
        CHECK(n > 400);
        CHECK(q[n - 1] == '"');
        CHECK((n - 2) % 4 == 0);
        CHECK(printable(q));
    }

    /* The result buffers rotate: eight results are valid at once. */
    {
        const char *r[8];
        char want[16];
        for (int i = 0; i < 8; i++) {
            snprintf(want, sizeof(want), "v %d", i);
            r[i] = log_q(want);
        }
        for (int i = 0; i < 8; i++) {
            snprintf(want, sizeof(want), "\"v %d\"", i);
            CHECK_EQ_STR(r[i], want);
        }
    }

    /* log_event itself: a raw value a caller forgot to quote cannot carry a
     * control byte or a high byte to the terminal either. */
    logged("\x1b[2J\rgone\x7f\xc2\x9b", line, sizeof(line));
    CHECK(strstr(line, " info test_event raw=?[2J?gone???\n") != NULL);
    CHECK(strchr(line, '\n') == line + strlen(line) - 1);
    line[strlen(line) - 1] = '\0';
    CHECK(printable(line));
    logged(log_q("\x1b[2J"), line, sizeof(line));
    CHECK(strstr(line, "raw=\"\\x1b[2J\"\n") != NULL);

    /* --log-format json: one object per line; values come back as they
     * were given, escapes undone, except bytes the text form hides. */
    CHECK(log_set_format_name("yaml") != 0);
    CHECK_EQ_INT(log_set_format_name("json"), 0);
    logged(log_q("say \"hi\"\n\tnow\x01"), line, sizeof(line));
    {
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);

        CHECK(o != NULL && json_is_object(o));
        CHECK_EQ_STR(json_string_value(json_object_get(o, "level")), "info");
        CHECK_EQ_STR(json_string_value(json_object_get(o, "event")), "test_event");
        CHECK_EQ_STR(json_string_value(json_object_get(o, "raw")), "say \"hi\"\n\tnow\\x01");
        CHECK(json_string_length(json_object_get(o, "ts")) == 24);
        CHECK(strchr(line, '\n') == line + strlen(line) - 1); /* one line */
        json_decref(o);
    }
    logged("plain", line, sizeof(line));
    {
        json_t *o = json_loads(line, 0, NULL);

        CHECK_EQ_STR(json_string_value(json_object_get(o, "raw")), "plain");
        json_decref(o);
    }
    CHECK_EQ_INT(log_set_format_name("text"), 0);
    logged("plain", line, sizeof(line));
    CHECK(strstr(line, " info test_event raw=plain") != NULL);

    TEST_DONE();
}
