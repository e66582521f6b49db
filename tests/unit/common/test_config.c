/* Unit tests for common/config.c: parsing rules, limits, errors and atomic writes. */
/* SPDX-License-Identifier: MIT */
#include "common/config.h"
#include "testutil.h"

#include <errno.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int parse(const char *text, struct config *c, char *err, size_t cap)
{
    return config_parse(text, strlen(text), c, err, cap);
}

static void test_basic(void)
{
    const char *text = "# site configuration\n"
                       "\n"
                       "   \t\n"
                       "name = alpha\n"
                       "  hub=hub1.example:6443  \n"
                       "\t# indented comment\n"
                       "hub =  hub2.example:443\t\n"
                       "empty =\n"
                       "url = http://x/?a=b#frag\n"
                       "name = beta\r\n"
                       "last = no newline";
    struct config c;
    const char *vals[4];
    char err[256] = "";
    int rc = parse(text, &c, err, sizeof(err));

    CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  err: %s\n", err);
        return;
    }
    CHECK_EQ_INT(c.n, 7);
    /* Repeated keys: get returns the last, get_all all of them in order. */
    CHECK_EQ_STR(config_get(&c, "name"), "beta");
    CHECK_EQ_INT(config_get_all(&c, "hub", vals, 4), 2);
    CHECK_EQ_STR(vals[0], "hub1.example:6443");
    CHECK_EQ_STR(vals[1], "hub2.example:443");
    CHECK_EQ_INT(config_get_all(&c, "hub", vals, 1), 1);
    CHECK_EQ_STR(vals[0], "hub1.example:6443");
    CHECK_EQ_INT(config_get_all(&c, "name", vals, 4), 2);
    CHECK_EQ_STR(vals[0], "alpha");
    CHECK_EQ_STR(config_get(&c, "empty"), "");
    /* Only whole-line comments; '=' and '#' in a value are kept. */
    CHECK_EQ_STR(config_get(&c, "url"), "http://x/?a=b#frag");
    CHECK_EQ_STR(config_get(&c, "last"), "no newline");
    CHECK(config_get(&c, "missing") == NULL);
    CHECK(config_get(&c, "nam") == NULL);
    CHECK_EQ_INT(config_get_all(&c, "missing", vals, 4), 0);
    /* Line numbers count comments and blank lines. */
    CHECK_EQ_INT(c.entries[0].line, 4);
    CHECK_EQ_INT(c.entries[1].line, 5);
    CHECK_EQ_INT(c.entries[5].line, 10);
    CHECK_EQ_STR(c.entries[1].key, "hub");
    config_free(&c);
    CHECK(c.entries == NULL && c.n == 0);

    rc = parse("", &c, err, sizeof(err));
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(c.n, 0);
    config_free(&c);
}

static void expect_error(const char *text, size_t len, const char *want_in_err)
{
    struct config c = {(void *)1, 99};
    char err[256] = "";
    int rc = config_parse(text, len, &c, err, sizeof(err));

    CHECK(rc < 0);
    CHECK(c.entries == NULL && c.n == 0);
    CHECK(strstr(err, want_in_err) != NULL);
    if (strstr(err, want_in_err) == NULL)
        fprintf(stderr, "  err \"%s\" lacks \"%s\"\n", err, want_in_err);
}

static void test_errors(void)
{
    char *big;
    size_t pos = 0;

    expect_error("a = 1\nno equals here\n", 21, "line 2:");
    expect_error("a = 1\n = value\n", 15, "line 2:");
    expect_error("bad key = 1\n", 12, "line 1:");
    expect_error("a = 1\nb = x\0y\n", 14, "line 2:");

    /* A 4096-byte line is fine, 4097 is not. */
    big = malloc(8192);
    memcpy(big, "k = ", 4);
    memset(big + 4, 'v', 4092);
    big[4096] = '\n';
    {
        struct config c;
        char err[256] = "";
        CHECK_EQ_INT(config_parse(big, 4097, &c, err, sizeof(err)), 0);
        CHECK_EQ_INT(strlen(config_get(&c, "k")), 4092);
        config_free(&c);
    }
    big[4096] = 'v';
    big[4097] = '\n';
    expect_error(big, 4098, "line 1:");
    free(big);

    /* 1024 entries are fine, 1025 are not; comments do not count. */
    big = malloc(1100 * 16);
    for (int i = 0; i < 1024; i++)
        pos += (size_t)sprintf(big + pos, "k%d = %d\n#c\n", i, i);
    {
        struct config c;
        char err[256] = "";
        CHECK_EQ_INT(config_parse(big, pos, &c, err, sizeof(err)), 0);
        CHECK_EQ_INT(c.n, 1024);
        CHECK_EQ_STR(config_get(&c, "k1023"), "1023");
        config_free(&c);
    }
    pos += (size_t)sprintf(big + pos, "one = more\n");
    expect_error(big, pos, "line 2049:");
    free(big);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    }
    closedir(d);
    return n;
}

static void test_files(void)
{
    char dir[] = "/tmp/tether-test-config-XXXXXX";
    char path[256], err[512] = "";
    struct config c;
    struct stat st;
    mode_t old_umask;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/site.conf", dir);

    /* The requested mode wins over the umask. */
    old_umask = umask(0077);
    CHECK_EQ_INT(config_write_file(path, "hub = a:1\nhub = b:2\n", 0644), 0);
    umask(old_umask);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 07777, 0644);
    CHECK_EQ_INT(config_load(path, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(config_get(&c, "hub"), "b:2");
    config_free(&c);

    /* Rewriting replaces content and mode and leaves no temporary behind. */
    CHECK_EQ_INT(config_write_file(path, "token = secret\n", 0600), 0);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 07777, 0600);
    CHECK_EQ_INT(config_load(path, &c, err, sizeof(err)), 0);
    CHECK_EQ_STR(config_get(&c, "token"), "secret");
    CHECK(config_get(&c, "hub") == NULL);
    config_free(&c);
    CHECK_EQ_INT(count_entries(dir), 1);

    /* Errors name the file and line. */
    CHECK_EQ_INT(config_write_file(path, "a = 1\n\noops\n", 0644), 0);
    CHECK(config_load(path, &c, err, sizeof(err)) < 0);
    {
        char want[300];
        snprintf(want, sizeof(want), "%s:3:", path);
        CHECK(strstr(err, want) == err);
    }
    unlink(path);
    CHECK_EQ_INT(config_load(path, &c, err, sizeof(err)), -ENOENT);
    CHECK(strstr(err, path) != NULL);

    /* A write into a missing directory fails cleanly. */
    snprintf(path, sizeof(path), "%s/nodir/x.conf", dir);
    CHECK(config_write_file(path, "a = 1\n", 0644) < 0);
    CHECK_EQ_INT(count_entries(dir), 0);
    CHECK_EQ_INT(rmdir(dir), 0);
}

int main(void)
{
    test_basic();
    test_errors();
    test_files();
    TEST_DONE();
}
