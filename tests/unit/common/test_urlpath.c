/* Unit tests for common/urlpath.c: dot segments, percent-encoded dots, encoded slashes. */
/* SPDX-License-Identifier: MIT */
#include "common/urlpath.h"
#include "testutil.h"

#include <errno.h>

static void ok(const char *in, const char *want)
{
    char out[256];
    int rc = urlpath_normalize(in, out, sizeof(out));

    CHECK_EQ_INT(rc, 0);
    if (rc == 0)
        CHECK_EQ_STR(out, want);
    if (rc != 0 || strcmp(out, want) != 0)
        fprintf(stderr, "  input was \"%s\"\n", in);
}

static void refused(const char *in, int want)
{
    char out[256];
    int rc = urlpath_normalize(in, out, sizeof(out));

    CHECK_EQ_INT(rc, want);
    if (rc != want)
        fprintf(stderr, "  input was \"%s\"\n", in);
}

static void test_kept(void)
{
    ok("/", "/");
    ok("/a", "/a");
    ok("/a/b/", "/a/b/");
    ok("/a?x=../../y", "/a?x=../../y"); /* the query is not a path */
    ok("/?", "/?");
    ok("/a%20b/%41", "/a%20b/%41"); /* other escapes stay exactly as sent */
    ok("/...", "/...");             /* not a dot segment */
    ok("/a..b/.c/c.", "/a..b/.c/c.");
    ok("/a;b=1/x", "/a;b=1/x");
    ok("/%2e%2e%2e", "/...");
    /* Every byte RFC 3986 allows raw in a path. */
    ok("/az-AZ_09.~!$&'()*+,;=:@", "/az-AZ_09.~!$&'()*+,;=:@");
    /* Escapes other than %2e pass as sent: "%252e" is "%2e" to a service
     * that decodes once, not '.'. */
    ok("/a/%252e%252e/b", "/a/%252e%252e/b");
    ok("/a/%23/%3f/%3B", "/a/%23/%3f/%3B");
    ok("/..a%23/.x%3f/...%3b", "/..a%23/.x%3f/...%3b");
    ok("/a;x/../b", "/b");
    ok("/caf%C3%A9/%c0x/%e0%a0%80", "/caf%C3%A9/%c0x/%e0%a0%80"); /* valid UTF-8, lone byte */
    /* The query may hold what browsers leave raw there, but not '#'. */
    ok("/a?x=[1]&y={|^`\\}/?z", "/a?x=[1]&y={|^`\\}/?z");
}

static void test_dots(void)
{
    /* RFC 3986 5.2.4 examples that stay under "/". */
    ok("/a/b/c/./../../g", "/a/g");
    ok("/mid/content=5/../6", "/mid/6");
    ok("/./secret", "/secret");
    ok("/a/.", "/a/");
    ok("/a/..", "/");
    ok("/a/b/..?q", "/a/?q");
    ok("/a/%2e/b", "/a/b");
    ok("/a/%2E%2e/b", "/b");
    ok("/a/.%2e/b", "/b");
    ok("/a/%2e./b", "/b");
    ok("//etc//passwd", "/etc/passwd"); /* "//" would read as an authority */
    ok("/a//../b", "/b");
}

static void test_escapes(void)
{
    refused("/../secret", -EPERM);
    refused("/..", -EPERM);
    refused("/a/../../secret", -EPERM);
    refused("/%2e%2e/secret", -EPERM);
    refused("/%2E%2E", -EPERM);
    refused("/%2e./x", -EPERM);
    refused("/.%2e/x", -EPERM);
    refused("//../x", -EPERM);
    refused("/./../x", -EPERM);
}

static void test_refused(void)
{
    refused("/..%2fsecret", -EILSEQ);
    refused("/a%2Fb", -EILSEQ);
    refused("/a%5cb", -EILSEQ);
    refused("/a\\b", -EILSEQ);
    refused("/a%00b", -EILSEQ);
    refused("/..;/secret", -EILSEQ);
    refused("/.;x/secret", -EILSEQ);
    refused("relative", -EINVAL);
    refused("", -EINVAL);
    refused("*", -EINVAL);
    refused("/a%", -EINVAL);
    refused("/a%2", -EINVAL);
    refused("/a%zz", -EINVAL);
    refused("/a%2/b", -EINVAL);
    refused("/a b", -EINVAL);
    refused("/a\tb", -EINVAL);
    refused("/a\x7f", -EINVAL);
    /* '#' ends the path to nginx and Node: "/..#" would be "..". */
    refused("/..#", -EINVAL);
    refused("/..#x", -EINVAL);
    refused("/..#/x", -EINVAL);
    refused("/a/..#/../..", -EINVAL);
    refused("/a#b", -EINVAL);
    refused("/a?x#y", -EINVAL);
    refused("/a?x=1&#/../..", -EINVAL);
    /* Every other byte RFC 3986 forbids raw in a path. */
    {
        static const char bad[] = "\"<>[]^`{|}";
        char in[8];

        for (size_t i = 0; bad[i] != '\0'; i++) {
            snprintf(in, sizeof(in), "/a%cb", bad[i]);
            refused(in, -EINVAL);
        }
        for (int c = 1; c < 256; c++) {
            if (c > 0x20 && c < 0x7f)
                continue;
            snprintf(in, sizeof(in), "/a%cb", c);
            refused(in, -EINVAL);
            snprintf(in, sizeof(in), "/a?%c", c);
            refused(in, -EINVAL);
        }
    }
    refused("/a?\"", -EINVAL);
    refused("/a?<>", -EINVAL);
    /* A dot segment then a byte some servers end a segment at. */
    refused("/..%3b/secret", -EILSEQ);
    refused("/..%3Bx/secret", -EILSEQ);
    refused("/.%3b/x", -EILSEQ);
    refused("/..%3f", -EILSEQ);
    refused("/..%3F/x", -EILSEQ);
    refused("/..%23", -EILSEQ);
    refused("/.%23/x", -EILSEQ);
    refused("/%2e%2e%3b/x", -EILSEQ);
    refused("/.%2E;", -EILSEQ);
    /* Overlong UTF-8: '.' and '/' to a lax decoder. */
    refused("/%c0%ae%c0%ae/secret", -EILSEQ);
    refused("/%C0%AF", -EILSEQ);
    refused("/%c1%9c", -EILSEQ);
    refused("/%e0%80%ae", -EILSEQ);
    refused("/%f0%80%80%ae", -EILSEQ);
    refused("/%f8%80%80%80%ae", -EILSEQ);
    CHECK_EQ_INT(urlpath_normalize(NULL, NULL, 0), -EINVAL);
}

static void test_bounds(void)
{
    char out[8];

    /* cap must hold the input: the output is never longer. */
    CHECK_EQ_INT(urlpath_normalize("/abcdefg", out, sizeof(out)), -ENOSPC);
    CHECK_EQ_INT(urlpath_normalize("/abcdef", out, sizeof(out)), 0);
    CHECK_EQ_STR(out, "/abcdef");
    CHECK_EQ_INT(urlpath_normalize("/a/../bc", out, sizeof(out)), -ENOSPC);
    CHECK(urlpath_strerror(-EPERM)[0] != '\0');
    CHECK(urlpath_strerror(-EILSEQ)[0] != '\0');
}

int main(void)
{
    test_kept();
    test_dots();
    test_escapes();
    test_refused();
    test_bounds();
    TEST_DONE();
}
