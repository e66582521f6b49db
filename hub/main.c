/* tether-hub: the program: its commands (init, run, help, version), their flags, and the exit
 * codes. */
/* SPDX-License-Identifier: MIT */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "../common/cli.h"
#include "../common/config.h"
#include "../common/crypto.h"
#include "../common/log.h"
#include "../common/net.h"
#include "../common/statelock.h"
#include "../common/token.h"
#include "../common/tune.h"
#include "core/hub.h"
#include "daemon.h"
#include "settings.h"
#include "store/registry.h"

#define PATH_CAP SETTINGS_PATH_CAP
#define PROG     "tether-hub"

/* Each command's block of the help text; `tether-hub CMD --help` prints its
 * own, `tether-hub --help` all of them. */
static const struct cli_help commands[] = {
    {"init", "  init --state DIR [--name HOSTNAME] [--public HOST:PORT]... [--db URL] [--force]\n"
             "      Create a hub state in DIR: registry (hub.db), hub key and certificate\n"
             "      (hub.key, hub.crt), a first admin API token (admin.token), hub.conf and\n"
             "      ctl.conf (a ready tetherctl configuration). --public (up to 8, default\n"
             "      HOSTNAME:6443) are the endpoints written into enrollment tokens. --db\n"
             "      postgresql://USER@HOST:PORT/DBNAME keeps the registry in that existing\n"
             "      PostgreSQL database instead of hub.db (the URL goes into hub.conf as db).\n"
             "      Refuses an existing state unless --force, which deletes its registry\n"
             "      (hub.db; a database named by --db is never deleted) and starts over.\n"},
    {"run", "  run --state DIR [--listen HOST:PORT]... [--config FILE] [--ping-interval S]\n"
            "      [--handshake-timeout S] [--drain-grace S] [--log-format text|json]\n"
            "      Serve sites and users (default listen 0.0.0.0:6443; up to 8 addresses).\n"
            "      Reads DIR/hub.conf, then FILE; command line flags win over both.\n"
            "      SIGTERM/SIGINT: drain gracefully (a second one stops at once).\n"
            "      SIGHUP: reload hub.conf and FILE (not the listen addresses).\n"},
    {"leave", "  leave --state DIR\n"
              "      Take this hub out of its cluster (a hub stopped for good): enrollment\n"
              "      tokens and the hub lists sites get no longer name it. Running it again\n"
              "      rejoins. The last hub of a registry cannot leave.\n"},
    {"version", "  version\n"
                "      Print the version and the wolfSSL build in use (also --version).\n"},
    {"help", "  help\n"
             "      Show this help (also --help, -h; COMMAND --help shows one command's).\n"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *const usage_footer =
    "\n"
    "Logs: one line per event on stderr; TETHER_LOG=debug|warn|error sets the level.\n"
    "Exit status: 0 success, 1 failure, 2 usage error.\n";

/* The whole help (cmd NULL) or one command's. */
static void usage(FILE *f, const char *cmd)
{
    cli_help_print(f, PROG, commands, N_COMMANDS, cmd);
    fputs(usage_footer, f);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "tether-hub: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    return EXIT_FAILURE;
}
/* --- init --- */

static int mkdir_p(const char *dir, mode_t mode)
{
    char p[PATH_CAP];
    struct stat st;
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, dir, len + 1);
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) != 0 && errno != EEXIST)
        return -errno;
    if (stat(p, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Removes a registry and its WAL companions. */
static void remove_db(const char *db)
{
    char p[PATH_CAP + 8];

    unlink(db);
    snprintf(p, sizeof(p), "%s-wal", db);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", db);
    unlink(p);
}

static void add_san(const char **names, size_t *n, size_t max, const char *name)
{
    for (size_t i = 0; i < *n; i++) {
        if (strcasecmp(names[i], name) == 0)
            return;
    }
    if (*n < max)
        names[(*n)++] = name;
}

/* The admin token of a hub that joins a cluster: admin-NAME, the name's
 * letters and digits kept, the rest '-', then -N past the first try. */
static void admin_name(const char *name, int n, char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "admin-");

    for (const char *p = name; *p != '\0' && len + 5 < cap; p++)
        out[len++] = isalnum((unsigned char)*p) ? (char)tolower((unsigned char)*p) : '-';
    out[len] = '\0';
    if (n > 1)
        snprintf(out + len, cap - len, "-%d", n);
}

static int count_hub(const struct reg_hub *hub, void *arg)
{
    (void)hub;
    (*(int *)arg)++;
    return 0;
}

#define init_error(...) cli_usage_error(PROG, "init", __VA_ARGS__)
#define run_error(...)  cli_usage_error(PROG, "run", __VA_ARGS__)

static int cmd_init(int argc, char **argv)
{
    const char *state = NULL, *name_arg = NULL, *pubs[TOKEN_HUB_MAX];
    char name[NET_HOST_MAX + 1], eps[TOKEN_HUB_MAX][TOKEN_ENDPOINT_MAX + 1];
    char db[PATH_CAP], p_token[PATH_CAP], p_conf[PATH_CAP], p_ctl[PATH_CAP], err[512];
    char where[SETTINGS_DB_CAP], old_db[SETTINGS_DB_CAP];
    const char *db_url = NULL, *reg_at;
    char tok[TOKEN_API_LEN + 1], hash[65], shown[PATH_MAX];
    const char *sans[4 + TOKEN_HUB_MAX];
    char san_hosts[TOKEN_HUB_MAX][NET_HOST_MAX + 1];
    size_t n_pubs = 0, n_sans = 0;
    struct crypto_identity id = {0};
    struct registry *reg = NULL;
    struct stat st;
    struct settings_text t = {.len = 0};
    static const struct option init_opts[] = {{"state", required_argument, NULL, 's'},
                                              {"name", required_argument, NULL, 'n'},
                                              {"public", required_argument, NULL, 'p'},
                                              {"force", no_argument, NULL, 'f'},
                                              {"db", required_argument, NULL, 'd'},
                                              {"help", no_argument, NULL, 'h'},
                                              {NULL, 0, NULL, 0}};
    struct cli cli;
    int force = 0, created = 0, token_made = 0, ret = EXIT_FAILURE, rc, opt, lock_fd = -1;
    int joining = 0, n_hubs = 0;
    char admin[64] = "admin", *pub = NULL;
    pid_t holder = 0;

    cli_begin(&cli, PROG, "init", argc - 1, argv + 1, "h", init_opts);
    while ((opt = cli_next(&cli)) != CLI_END) {
        switch (opt) {
        case 'h':
            usage(stdout, "init");
            return EXIT_SUCCESS;
        case 'f':
            force = 1;
            break;
        case 's':
            state = optarg;
            break;
        case 'n':
            name_arg = optarg;
            break;
        case 'd':
            if (!settings_db_ok(optarg))
                return init_error("invalid --db (expected postgresql://USER@HOST:PORT/DBNAME or "
                                  "postgres://..., no blanks, under %d bytes)",
                                  SETTINGS_DB_CAP);
            db_url = optarg;
            break;
        case 'p':
            if (n_pubs == TOKEN_HUB_MAX)
                return init_error("at most %d --public endpoints", TOKEN_HUB_MAX);
            if (!settings_endpoint_ok(optarg))
                return init_error("invalid --public \"%s\" (expected HOST:PORT)", optarg);
            pubs[n_pubs++] = optarg;
            break;
        case CLI_ARG:
            return init_error("unexpected argument \"%s\"", optarg);
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL || state[0] == '\0')
        return init_error("init needs --state DIR");
    if (name_arg != NULL) {
        if (!settings_hostname_ok(name_arg))
            return init_error("invalid --name \"%s\" (expected a host name)", name_arg);
        snprintf(name, sizeof(name), "%s", name_arg);
    } else if (settings_local_hostname(name, sizeof(name)) != 0 || !settings_hostname_ok(name)) {
        return fail("cannot use this machine's host name; pass --name HOSTNAME");
    }
    for (size_t i = 0; i < n_pubs; i++)
        snprintf(eps[i], sizeof(eps[i]), "%s", pubs[i]);
    if (n_pubs == 0) {
        if (settings_default_endpoint(name, eps[0], sizeof(eps[0])) != 0 ||
            !settings_endpoint_ok(eps[0]))
            return fail("default endpoint \"%s\" is invalid; pass --public HOST:PORT", eps[0]);
        n_pubs = 1;
    }

    if (settings_path_join(db, sizeof(db), state, "hub.db") != 0 ||
        settings_path_join(p_token, sizeof(p_token), state, "admin.token") != 0 ||
        settings_path_join(p_conf, sizeof(p_conf), state, "hub.conf") != 0 ||
        settings_path_join(p_ctl, sizeof(p_ctl), state, "ctl.conf") != 0)
        return fail("state directory path too long");
    /* A state is initialised when it has hub.db, or a hub.conf naming a
     * database (its registry is elsewhere); with --db, any hub.conf. */
    reg_at = db_url != NULL ? db_url : db;
    registry_where(reg_at, where, sizeof(where));
    if (lstat(db, &st) == 0) {
        snprintf(shown, sizeof(shown), "%s", db);
    } else if (errno != ENOENT) {
        return fail("cannot check %s: %s", db, strerror(errno));
    } else if ((settings_db(state, old_db, sizeof(old_db), err, sizeof(err)) == 0 &&
                old_db[0] != '\0') ||
               (db_url != NULL && lstat(p_conf, &st) == 0)) {
        snprintf(shown, sizeof(shown), "%s", p_conf);
    } else {
        shown[0] = '\0';
    }
    if (shown[0] != '\0') {
        if (!force)
            return fail("%s exists: this hub state is already initialised (--force deletes "
                        "its registry and starts over)",
                        shown);
        /* --force must not pull the registry from under a running hub. */
        rc = statelock_acquire(state, &lock_fd, &holder);
        if (rc == -EBUSY)
            return fail("state directory %s is in use by process %ld: stop that hub first", state,
                        (long)holder);
        /* A database (--db, or hub.conf's) is never deleted; hub.db is. */
        remove_db(db);
    }
    rc = mkdir_p(state, 0700);
    if (rc != 0)
        return fail("cannot create %s: %s", state, strerror(-rc));

    /* The certificate names what people type to reach the hub; sites and
     * tetherctl pin the key, so these only matter to other clients. */
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), name);
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), "localhost");
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), "127.0.0.1");
    add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), "::1");
    for (size_t i = 0; i < n_pubs; i++) {
        int port;
        if (net_split_hostport(eps[i], 0, san_hosts[i], &port) == 0)
            add_san(sans, &n_sans, sizeof(sans) / sizeof(sans[0]), san_hosts[i]);
    }
    /* X.509 common names are limited to 64 bytes; the SAN carries the name. */
    rc = crypto_identity_generate(strlen(name) < 64 ? name : "tether-hub", sans, n_sans, &id);
    if (rc != 0) {
        fail("cannot make the hub key and certificate: %s", strerror(-rc));
        goto out;
    }

    rc = registry_open(reg_at, &reg, err, sizeof(err));
    if (rc != 0) {
        fail("cannot create %s: %s", where, err[0] ? err : strerror(-rc));
        goto out;
    }
    /* A database is never removed on failure: it was there before. */
    created = db_url == NULL;
    if (token_api_generate(tok) != 0 || token_hash_hex(tok, strlen(tok), hash) != 0) {
        fail("cannot make the admin token");
        goto out;
    }
    rc = registry_apitoken_create(reg, admin, "admin", NULL, hash, 0, hub_now());
    /* A database that holds a registry already: this hub joins its
     * cluster, with an admin token of its own. */
    for (int n = 1; rc == -EEXIST && db_url != NULL && n < 100; n++) {
        joining = 1;
        admin_name(name, n, admin, sizeof(admin));
        rc = registry_apitoken_create(reg, admin, "admin", NULL, hash, 0, hub_now());
    }
    if (rc != 0) {
        fail("cannot store the admin token in %s: %s", where, strerror(-rc));
        goto out;
    }
    token_made = 1;
    rc = crypto_identity_save(&id, state, "hub");
    if (rc != 0) {
        fail("cannot write %s/hub.key and hub.crt: %s", state, strerror(-rc));
        goto out;
    }
    settings_text_add(&t, "%s\n", tok);
    rc = config_write_file(p_token, t.buf, 0600);
    if (rc != 0) {
        fail("cannot write %s: %s", p_token, strerror(-rc));
        goto out;
    }
    rc = settings_write_conf(p_conf, name, eps, n_pubs, db_url);
    if (rc != 0) {
        fail("cannot write %s: %s", p_conf, strerror(-rc));
        goto out;
    }
    t.len = 0;
    settings_text_add(&t,
                      "# tetherctl configuration for this hub, written by `tether-hub init`.\n"
                      "# Use it with: tetherctl --config FILE, TETHER_CONFIG=FILE, or copy it to\n"
                      "# ~/.config/tether/ctl.conf. It holds an admin token: keep it private.\n"
                      "hub = https://%s\n"
                      "hub_pin = %s\n"
                      "token = %s\n",
                      eps[0], id.pin, tok);
    rc = t.overflow ? -ENOSPC : config_write_file(p_ctl, t.buf, 0600);
    if (rc != 0) {
        fail("cannot write %s: %s", p_ctl, strerror(-rc));
        goto out;
    }
    rc = settings_public_json((const char(*)[TOKEN_ENDPOINT_MAX + 1]) eps, n_pubs, &pub);
    if (rc == 0)
        rc = registry_hub_join(reg, name, id.pin, pub, hub_now(), NULL);
    if (rc == 0)
        rc = registry_hub_list(reg, count_hub, &n_hubs);
    if (rc != 0) {
        fail("cannot record this hub in %s: %s", where, strerror(-rc));
        goto out;
    }

    if (realpath(state, shown) == NULL)
        snprintf(shown, sizeof(shown), "%s", state);
    printf("Hub state initialised in %s\n"
           "  hub name     %s\n"
           "  hub key pin  %s\n"
           "  endpoints   ",
           shown, name, id.pin);
    for (size_t i = 0; i < n_pubs; i++)
        printf(" %s", eps[i]);
    printf(" (written into enrollment tokens)\n");
    if (db_url != NULL)
        printf("  registry     %s\n", where);
    if (joining)
        printf("  cluster      joined: %d hubs share this registry; sites, tokens, audit and "
               "queries are shared\n",
               n_hubs);
    printf("  admin token  %s/admin.token (token name %s)\n"
           "  tetherctl    %s/ctl.conf\n"
           "\n"
           "Next steps:\n"
           "  tether-hub run --state %s\n"
           "  export TETHER_CONFIG=%s/ctl.conf\n"
           "  tetherctl site add NAME    # prints an enrollment token for tether-site enroll\n",
           shown, admin, shown, shown, shown);
    fflush(stdout);
    created = 0;
    token_made = 0;
    ret = EXIT_SUCCESS;
out:
    /* The database stays; the token of a state that was not made goes. */
    if (token_made && db_url != NULL)
        registry_apitoken_revoke(reg, admin, hub_now());
    free(pub);
    if (reg != NULL)
        registry_close(reg);
    /* A half-made state would make the next init refuse; leave none. */
    if (created) {
        remove_db(db);
        unlink(p_token); /* its token was only in that registry */
        unlink(p_ctl);
    }
    crypto_identity_free(&id);
    statelock_release(lock_fd);
    explicit_bzero(tok, sizeof(tok));
    explicit_bzero(t.buf, sizeof(t.buf));
    return ret;
}

/* --- run --- */

static int parse_flag_seconds(const char *flag, const char *v, enum settings_time_key k,
                              uint64_t *out, int *has)
{
    char why[96];
    uint64_t min_ms, max_ms;

    if (settings_parse_seconds(k, v, out, why, sizeof(why)) != 0) {
        settings_time_bounds(k, &min_ms, &max_ms);
        return run_error("invalid --%s \"%s\" (expected seconds, %g to %g)", flag, v,
                         (double)min_ms / 1000.0, (double)max_ms / 1000.0);
    }
    *has = 1;
    return 0;
}

/* 0, -1 after --help, or the exit code of a usage error. */
static int parse_run_args(int argc, char **argv, struct settings_cli *cli)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"ping-interval", required_argument, NULL, 'i'},
                                         {"handshake-timeout", required_argument, NULL, 'H'},
                                         {"drain-grace", required_argument, NULL, 'g'},
                                         {"log-format", required_argument, NULL, 'L'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct cli p;
    int opt, rc = 0;

    cli_begin(&p, PROG, "run", argc - 1, argv + 1, "h", opts);
    while (rc == 0 && (opt = cli_next(&p)) != CLI_END) {
        switch (opt) {
        case 'h':
            usage(stdout, "run");
            return -1;
        case 's':
            cli->state = optarg;
            break;
        case 'c':
            cli->config = optarg;
            break;
        case 'l':
            if (cli->n_listen == HUB_MAX_LISTEN)
                return run_error("at most %d --listen addresses", HUB_MAX_LISTEN);
            if (!settings_endpoint_ok(optarg))
                return run_error("invalid --listen \"%s\" (expected HOST:PORT)", optarg);
            cli->listen[cli->n_listen++] = optarg;
            break;
        case 'i':
            rc = parse_flag_seconds("ping-interval", optarg, TK_PING_INTERVAL, &cli->ping_ms,
                                    &cli->has_ping);
            break;
        case 'H':
            rc = parse_flag_seconds("handshake-timeout", optarg, TK_HANDSHAKE_TIMEOUT,
                                    &cli->handshake_ms, &cli->has_handshake);
            break;
        case 'g':
            rc = parse_flag_seconds("drain-grace", optarg, TK_DRAIN_GRACE, &cli->drain_ms,
                                    &cli->has_drain);
            break;
        case 'L':
            if (log_set_format_name(optarg) != 0)
                return run_error("--log-format is text or json");
            break;
        case CLI_ARG:
            return run_error("unexpected argument \"%s\"", optarg);
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (rc != 0)
        return rc;
    if (cli->state == NULL || cli->state[0] == '\0')
        return run_error("run needs --state DIR");
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    struct daemon_opts o = {.program = 1};
    struct hub *h = NULL;
    uv_loop_t *loop = uv_default_loop();
    char err[512] = "";
    int ret = EXIT_FAILURE, rc;

    rc = parse_run_args(argc, argv, &o.cli);
    if (rc != 0)
        return rc < 0 ? EXIT_SUCCESS : rc;
    log_init_from_env();
    rc = daemon_start(loop, &o, &h, err, sizeof(err));
    if (rc == 0) {
        uv_run(loop, UV_RUN_DEFAULT);
        ret = EXIT_SUCCESS;
    } else {
        fail("%s", err);
    }
    if (h != NULL) {
        /* Start-up failures leave listeners or signal handles behind; after
         * a run this closes the shutdown watchdog. */
        daemon_stop(h, NULL);
        daemon_loop_teardown(loop, rc == 0);
        daemon_free(h);
    }
    if (rc == 0)
        log_event(LOG_INFO, "hub_stopped", "exit=%d", ret);
    return ret;
}

/* --- leave --- */

static int cmd_leave(int argc, char **argv)
{
    static const struct option opts[] = {{"state", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    char db[SETTINGS_DB_CAP], where[SETTINGS_DB_CAP], err[512];
    const char *state = NULL;
    struct crypto_identity id = {0};
    struct registry *reg = NULL;
    struct cli cli;
    int ret = EXIT_FAILURE, rc, opt, lock_fd = -1;
    pid_t holder = 0;

    cli_begin(&cli, PROG, "leave", argc - 1, argv + 1, "h", opts);
    while ((opt = cli_next(&cli)) != CLI_END) {
        switch (opt) {
        case 'h':
            usage(stdout, "leave");
            return EXIT_SUCCESS;
        case 's':
            state = optarg;
            break;
        case CLI_ARG:
            return cli_usage_error(PROG, "leave", "unexpected argument \"%s\"", optarg);
        default:
            return CLI_EXIT_USAGE;
        }
    }
    if (state == NULL || state[0] == '\0')
        return cli_usage_error(PROG, "leave", "leave needs --state DIR");
    if (settings_db(state, db, sizeof(db), err, sizeof(err)) != 0)
        return fail("%s", err);
    if (db[0] == '\0')
        return fail("%s keeps its registry in hub.db: a hub alone is its own cluster and has "
                    "nothing to leave",
                    state);
    registry_where(db, where, sizeof(where));
    rc = statelock_acquire(state, &lock_fd, &holder);
    if (rc == -EBUSY)
        return fail("state directory %s is in use by process %ld: stop that hub first", state,
                    (long)holder);
    rc = crypto_identity_load(state, "hub", &id);
    if (rc != 0) {
        fail("cannot load the hub key in %s: %s", state, strerror(-rc));
        goto out;
    }
    rc = registry_open(db, &reg, err, sizeof(err));
    if (rc != 0) {
        fail("cannot open %s: %s", where, err[0] ? err : strerror(-rc));
        goto out;
    }
    rc = registry_hub_leave(reg, id.pin, hub_now());
    if (rc == -ENOENT)
        fail("this hub (key %s) is not an active hub of %s", id.pin, where);
    else if (rc == -EBUSY)
        fail("this is the last active hub of %s: a registry needs one", where);
    else if (rc != 0)
        fail("cannot update %s: %s", where, strerror(-rc));
    else {
        printf("Hub %s (key %s) left the cluster of %s.\n"
               "Tokens issued from now on, and the hub lists sites get at their next connect,\n"
               "no longer name it. Its admin token stays valid: revoke it with\n"
               "`tetherctl token revoke NAME` if it is not needed. `tether-hub run` rejoins.\n",
               state, id.pin, where);
        ret = EXIT_SUCCESS;
    }
out:
    if (reg != NULL)
        registry_close(reg);
    crypto_identity_free(&id);
    statelock_release(lock_fd);
    return ret;
}

int main(int argc, char **argv)
{
    const char *cmd;
    int ret, at;

    tune_program_start(argc, argv);
    at = cli_top(PROG, argc, argv, usage, &ret);
    if (at < 0)
        return ret;
    cmd = argv[at];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "version") == 0)
        return cli_simple_command(PROG, argc - at, argv + at, usage);
    if (strcmp(cmd, "leave") == 0)
        return cmd_leave(argc - at + 1, argv + at - 1);
    if (strcmp(cmd, "init") != 0 && strcmp(cmd, "run") != 0) {
        static const char *const cmds[] = {"init", "run", "leave", "version", "help"};

        return cli_unknown_command(PROG, cmd, cmds, sizeof(cmds) / sizeof(cmds[0]));
    }
    if (wolfSSL_Init() != WOLFSSL_SUCCESS)
        return fail("cannot initialise wolfSSL");
    ret = strcmp(cmd, "init") == 0 ? cmd_init(argc - at + 1, argv + at - 1)
                                   : cmd_run(argc - at + 1, argv + at - 1);
    wolfSSL_Cleanup();
    return ret;
}
