/* Unit tests on a real PostgreSQL: a database of their own per test, made and dropped over libpq.
 */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_PGTEST_H
#define TETHER_PGTEST_H

/* The server comes from the environment: TETHER_TEST_PG_URL, else the first
 * line of the file named by TETHER_TEST_PG_URL_FILE (the CTest fixture `pg`
 * writes the server's base URL, e.g. postgresql://postgres@127.0.0.1:PORT,
 * to BUILD/pgtest/url). Each test makes its own database with a unique name
 * and drops it at the end, so tests run in parallel on one server.
 *
 * Exit code 77 (CTest SKIP_RETURN_CODE) for a test asked to run on
 * PostgreSQL where the build or the environment has none. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef TETHER_HAVE_PG
#include <libpq-fe.h>
#endif

#define PGTEST_URL_CAP 512

/* The server's base URL (static storage), or NULL when none is given. */
static const char *pgtest_server(void)
{
    static char url[PGTEST_URL_CAP];
    const char *env = getenv("TETHER_TEST_PG_URL");
    const char *file = getenv("TETHER_TEST_PG_URL_FILE");
    FILE *f;

    if (env != NULL && env[0] != '\0') {
        snprintf(url, sizeof(url), "%s", env);
        return url;
    }
    if (file == NULL || file[0] == '\0' || (f = fopen(file, "r")) == NULL)
        return NULL;
    if (fgets(url, sizeof(url), f) == NULL)
        url[0] = '\0';
    fclose(f);
    url[strcspn(url, "\r\n")] = '\0';
    return url[0] ? url : NULL;
}

/* 1 when the test was asked to run on PostgreSQL (TETHER_TEST_PG_URL_FILE
 * or TETHER_TEST_PG_URL set, even empty). */
static __attribute__((unused)) int pgtest_wanted(void)
{
    return getenv("TETHER_TEST_PG_URL") != NULL || getenv("TETHER_TEST_PG_URL_FILE") != NULL;
}

/* For a test that runs on SQLite unless asked otherwise: NULL when not
 * asked (pgtest_wanted() is 0), else the server's URL; asked but without
 * a server, or in a build without libpq, the process exits 77 (skipped). */
static __attribute__((unused)) const char *pgtest_server_or_skip(void)
{
    const char *url;

    if (!pgtest_wanted())
        return NULL;
    url = pgtest_server();
#ifndef TETHER_HAVE_PG
    url = NULL;
#endif
    if (url == NULL) {
        fprintf(stderr, "no PostgreSQL (TETHER_TEST_PG_URL unset, no fixture URL, or a build "
                        "without libpq): skipped\n");
        exit(77);
    }
    return url;
}

/* base with its database path replaced by db: "scheme://authority/db?query". */
static __attribute__((unused)) int pgtest_url(const char *base, const char *db, char *out,
                                              size_t cap)
{
    const char *auth = strstr(base, "://");
    size_t host_len;
    const char *query;
    int n;

    if (auth == NULL)
        return -EINVAL;
    auth += 3;
    host_len = strcspn(auth, "/?");
    query = strchr(auth + host_len, '?');
    n = snprintf(out, cap, "%.*s/%s%s", (int)(auth + host_len - base), base, db,
                 query ? query : "");
    return n > 0 && (size_t)n < cap ? 0 : -ENAMETOOLONG;
}

#ifdef TETHER_HAVE_PG
/* Runs one statement on the server's postgres database: 0 or -1 (printed). */
static __attribute__((unused)) int pgtest_admin(const char *server, const char *sql)
{
    char url[PGTEST_URL_CAP];
    PGconn *pc;
    PGresult *res;
    int rc = -1;

    if (pgtest_url(server, "postgres", url, sizeof(url)) != 0)
        return -1;
    pc = PQconnectdb(url);
    if (PQstatus(pc) != CONNECTION_OK) {
        fprintf(stderr, "pgtest: %s: %s", url, PQerrorMessage(pc));
        PQfinish(pc);
        return -1;
    }
    res = PQexec(pc, sql);
    if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
        rc = 0;
    else
        fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(pc));
    PQclear(res);
    PQfinish(pc);
    return rc;
}

/* Makes a new, empty database (UTF-8, bytewise C collation) named after
 * tag, the process and a counter; its URL into out. 0 or -1. */
static __attribute__((unused)) int pgtest_create(const char *server, const char *tag, char *out,
                                                 size_t cap)
{
    static unsigned n;
    char name[64], sql[256];

    snprintf(name, sizeof(name), "t_%.24s_%ld_%u_%ld", tag, (long)getpid(), ++n,
             (long)(time(NULL) % 100000));
    for (char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            *p = '_';
    snprintf(sql, sizeof(sql),
             "CREATE DATABASE %s TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' "
             "LC_CTYPE 'C'",
             name);
    if (pgtest_admin(server, sql) != 0)
        return -1;
    return pgtest_url(server, name, out, cap) == 0 ? 0 : -1;
}

/* Drops the database a pgtest_create() URL names (connections to it are
 * ended first). 0 or -1. */
static __attribute__((unused)) int pgtest_drop(const char *server, const char *url)
{
    const char *db = strstr(url, "://");
    char name[128], sql[256];

    if (db == NULL || (db = strchr(db + 3, '/')) == NULL)
        return -1;
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(db + 1, "?"), db + 1);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    return pgtest_admin(server, sql);
}

/* Runs sql (one or more statements) on the database at url: 0 or -1
 * (printed). */
static __attribute__((unused)) int pgtest_exec(const char *url, const char *sql)
{
    PGconn *pc = PQconnectdb(url);
    PGresult *res = NULL;
    int rc = -1;

    if (PQstatus(pc) == CONNECTION_OK) {
        res = PQexec(pc, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
            rc = 0;
    }
    if (rc != 0)
        fprintf(stderr, "pgtest: %s", PQerrorMessage(pc));
    PQclear(res);
    PQfinish(pc);
    return rc;
}

/* Runs sql on the database at url and gives the first column of its first
 * row as an integer (-1 when there is none), as another process would. */
static __attribute__((unused)) long long pgtest_int(const char *url, const char *sql)
{
    PGconn *pc = PQconnectdb(url);
    PGresult *res = NULL;
    long long v = -1;

    if (PQstatus(pc) == CONNECTION_OK) {
        res = PQexec(pc, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 &&
            !PQgetisnull(res, 0, 0)) {
            const char *t = PQgetvalue(res, 0, 0);

            v = strcmp(t, "t") == 0 ? 1 : strcmp(t, "f") == 0 ? 0 : strtoll(t, NULL, 10);
        } else if (PQresultStatus(res) != PGRES_TUPLES_OK &&
                   PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "pgtest: %s: %s", sql, PQerrorMessage(pc));
        }
    }
    PQclear(res);
    PQfinish(pc);
    return v;
}
#endif

#endif
