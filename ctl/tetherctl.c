/* tetherctl: the operators' and users' command line for the hub's HTTPS API (argument parsing and
 * dispatch). */
/* SPDX-License-Identifier: MIT */
#include <assert.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "common/cli.h"
#include "cmd.h"
#include "ctl.h"

struct optspec {
    const char *name; /* without "--" */
    int has_value;
};

/* A command is the words that name it ("site add"), then positional
 * arguments and its own options; global options are accepted anywhere. */
struct command {
    const char *words;
    const char *synopsis; /* what follows the words in the usage text */
    const char *summary;
    size_t min_pos, max_pos;
    const struct optspec *opts; /* terminated by a NULL name; NULL for none */
    int (*run)(struct ctl *c, const struct ctl_args *a);
};

static int cmd_help(struct ctl *c, const struct ctl_args *a);

static const struct optspec site_add_opts[] = {{"label", 1}, {"ttl", 1}, {NULL, 0}};
static const struct optspec ttl_opts[] = {{"ttl", 1}, {NULL, 0}};
static const struct optspec token_create_opts[] = {
    {"role", 1}, {"sites", 1}, {"services", 1}, {"ttl", 1}, {NULL, 0}};
static const struct optspec enroll_list_opts[] = {{"site", 1}, {"all", 0}, {NULL, 0}};
static const struct optspec audit_opts[] = {{"limit", 1}, {"before", 1}, {NULL, 0}};
static const struct optspec query_opts[] = {
    {"service", 1}, {"sites", 1},   {"method", 1}, {"path", 1}, {"data", 1},
    {"header", 1},  {"timeout", 1}, {"ttl", 1},    {"wait", 0}, {NULL, 0}};
static const struct optspec connect_opts[] = {{"listen", 1}, {"stdio", 0}, {NULL, 0}};
static const struct optspec query_list_opts[] = {{"limit", 1}, {"before", 1}, {NULL, 0}};

static const struct command commands[] = {
    {"site add", "NAME [--label K=V]... [--ttl SECONDS]",
     "register a site; prints only its one-time enrollment token", 1, 1, site_add_opts,
     cmd_site_add},
    {"site list", "", "list the sites with their state and connection", 0, 0, NULL, cmd_site_list},
    {"site show", "NAME", "show one site and its recent sessions", 1, 1, NULL, cmd_site_show},
    {"site disable", "NAME", "refuse the site's tunnel (cut now) until enabled", 1, 1, NULL,
     cmd_site_disable},
    {"site enable", "NAME", "let a disabled site connect again", 1, 1, NULL, cmd_site_enable},
    {"site revoke", "NAME", "forget the site's key and cut its tunnel; it must enroll again", 1, 1,
     NULL, cmd_site_revoke},
    {"site remove", "NAME", "delete the site and its history (cuts its tunnel)", 1, 1, NULL,
     cmd_site_remove},
    {"site label", "NAME KEY=VALUE|KEY-...", "set (KEY=VALUE) or remove (KEY-) labels", 2,
     CTL_MAX_POS, NULL, cmd_site_label},
    {"site token", "NAME [--ttl SECONDS]",
     "new one-time enrollment token for a site (earlier unused ones stop working)", 1, 1, ttl_opts,
     cmd_site_token},
    {"site watch", "",
     "print one line per site change (online, offline, state) as it happens, until interrupted", 0,
     0, NULL, cmd_site_watch},
    {"token create",
     "NAME --role admin|user [--sites NAME,NAME|label=K=V|*] [--services NAME,NAME] "
     "[--ttl SECONDS]",
     "make an API token; prints only the token", 1, 1, token_create_opts, cmd_token_create},
    {"token list", "", "list API tokens (never the tokens themselves)", 0, 0, NULL, cmd_token_list},
    {"token revoke", "NAME", "revoke an API token at once", 1, 1, NULL, cmd_token_revoke},
    {"enroll list", "[--site NAME] [--all]",
     "list unused enrollment tokens (--all: also used, expired, cancelled)", 0, 0, enroll_list_opts,
     cmd_enroll_list},
    {"enroll cancel", "ID", "cancel an unused enrollment token", 1, 1, NULL, cmd_enroll_cancel},
    {"audit", "[--limit N] [--before ID]", "the audit log, newest first", 0, 0, audit_opts,
     cmd_audit},
    {"hub list", "",
     "the cluster's hubs: this hub's link to each and how many sites each holds (admin)", 0, 0,
     NULL, cmd_hub_list},
    {"query",
     "--service S [--sites all|NAME,NAME|label=K=V] [--method M] [--path P] [--data @FILE|-|TEXT] "
     "[--header 'K: V']... [--timeout S] [--ttl S] [--wait]",
     "ask many sites one question; prints the query id, or with --wait each site's result", 0, 0,
     query_opts, cmd_query},
    {"query list", "[--limit N] [--before ID]",
     "federated queries, newest first (a user token's own; an admin token's: all)", 0, 0,
     query_list_opts, cmd_query_list},
    {"query show", "ID", "one query: what it asked and each site's result", 1, 1, NULL,
     cmd_query_show},
    {"query cancel", "ID", "cancel a query: the sites it has not been sent to yet never get it", 1,
     1, NULL, cmd_query_cancel},
    {"connect", "SITE SERVICE --listen HOST:PORT | --stdio",
     "reach a site's tcp:// service: a local listener (one stream per connection) or "
     "stdin/stdout (ssh ProxyCommand)",
     2, 2, connect_opts, cmd_connect},
    {"help", "", "show this help", 0, CTL_MAX_POS, NULL, cmd_help},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

enum global_opt { G_CONFIG, G_HUB, G_TOKEN, G_PIN, G_JSON, G_HELP, G_VERSION };
static const struct {
    const char *name;
    int has_value;
    const char *arg;
    const char *help;
} globals[] = {
    [G_CONFIG] = {"config", 1, "FILE",
                  "configuration file (default: $TETHER_CONFIG, else ~/.config/tether/ctl.conf)"},
    [G_HUB] = {"hub", 1, "URL", "hub API address, https://HOST[:PORT] (port 6443 by default)"},
    [G_TOKEN] = {"token", 1, "TOKEN", "API token (tth_...)"},
    [G_PIN] = {"pin", 1, "PIN", "the hub's key pin (sha256//...)"},
    [G_JSON] = {"json", 0, NULL, "print the hub's JSON instead of tables or bare values"},
    [G_HELP] = {"help", 0, NULL, "show this help (also -h)"},
    [G_VERSION] = {"version", 0, NULL, "show the version"},
};
#define N_GLOBALS (sizeof(globals) / sizeof(globals[0]))

/* Exact match of the words typed so far: the command, or NULL. *prefix
 * tells whether more words could still name one. */
static const struct command *match_words(const char *typed, int *prefix)
{
    size_t len = strlen(typed), i;

    *prefix = 0;
    for (i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].words, typed) == 0)
            return &commands[i];
        if (strncmp(commands[i].words, typed, len) == 0 && commands[i].words[len] == ' ')
            *prefix = 1;
    }
    return NULL;
}

/* Whether some command's words are words and more ("query list" for "query"). */
static int heads_longer(const char *words)
{
    size_t len = strlen(words);

    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strncmp(commands[i].words, words, len) == 0 && commands[i].words[len] == ' ')
            return 1;
    return 0;
}

/* Whether the command's words start with the words in prefix ("" for all). */
static int words_under(const struct command *cmd, const char *prefix)
{
    size_t len = strlen(prefix);

    return len == 0 || (strncmp(cmd->words, prefix, len) == 0 &&
                        (cmd->words[len] == '\0' || cmd->words[len] == ' '));
}

/* The help of every command under prefix: "" for all, "site" for the site
 * commands, "site add" for one (with its summary on a line of its own). */
static void usage(FILE *f, const char *prefix)
{
    const struct command *only = NULL;
    int prefix_ignored;
    size_t i;

    if (prefix[0] != '\0')
        only = match_words(prefix, &prefix_ignored);
    if (only != NULL) {
        fprintf(f, "Usage: tetherctl %s%s%s\n  %s\n", only->words,
                only->synopsis[0] != '\0' ? " " : "", only->synopsis, only->summary);
        if (heads_longer(only->words)) {
            fprintf(f, "\nAlso:\n");
            for (i = 0; i < N_COMMANDS; i++)
                if (&commands[i] != only && words_under(&commands[i], prefix))
                    fprintf(f, "  tetherctl %s%s%s\n      %s\n", commands[i].words,
                            commands[i].synopsis[0] != '\0' ? " " : "", commands[i].synopsis,
                            commands[i].summary);
        }
    } else {
        fprintf(f, "Usage: tetherctl [OPTIONS] %s%sCOMMAND [ARGUMENTS]\n\nCommands:\n", prefix,
                prefix[0] != '\0' ? " " : "");
        for (i = 0; i < N_COMMANDS; i++) {
            char left[256];

            if (!words_under(&commands[i], prefix))
                continue;
            snprintf(left, sizeof(left), "%s%s%s", commands[i].words,
                     commands[i].synopsis[0] != '\0' ? " " : "", commands[i].synopsis);
            if (strlen(left) <= 22)
                fprintf(f, "  %-22s  %s\n", left, commands[i].summary);
            else
                fprintf(f, "  %s\n  %-22s  %s\n", left, "", commands[i].summary);
        }
    }
    fprintf(f, "\nOptions (before or after the command):\n");
    for (i = 0; i < N_GLOBALS; i++) {
        char left[64];

        snprintf(left, sizeof(left), "--%s%s%s", globals[i].name, globals[i].arg ? " " : "",
                 globals[i].arg ? globals[i].arg : "");
        fprintf(f, "  %-22s  %s\n", left, globals[i].help);
    }
    fprintf(
        f, "\nThe configuration file holds \"hub = https://HOST:PORT\", \"hub_pin = sha256//...\"\n"
           "and \"token = tth_...\"; tether-hub init writes a ready one.\n"
           "Exit status: 0 success, 1 failure, 2 usage error, 3 not found, 4 not allowed\n"
           "(bad token or role), 5 conflict (taken, already done, wrong state), 6 hub\n"
           "unreachable (network, TLS or key pin).\n");
}

/* `tetherctl help [WORDS...]`: the help of those commands. */
static int cmd_help(struct ctl *c, const struct ctl_args *a)
{
    char prefix[128] = "";

    for (size_t i = 0; i < a->npos; i++) {
        size_t len = strlen(prefix);

        snprintf(prefix + len, sizeof(prefix) - len, "%s%s", i > 0 ? " " : "", a->pos[i]);
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (words_under(&commands[i], prefix)) {
            usage(stdout, prefix);
            return CTL_EXIT_OK;
        }
    return ctl_usage_err("no command '%s'", prefix);
}

#define WORD_LEN 32

/* The distinct words that may follow typed ("" for the first word): n of
 * them into out. */
static size_t next_word_list(const char *typed, char out[][WORD_LEN])
{
    size_t len = strlen(typed), i, k, n = 0;

    for (i = 0; i < N_COMMANDS; i++) {
        const char *w = commands[i].words;
        char word[WORD_LEN];

        if (len > 0 && (strncmp(w, typed, len) != 0 || w[len] != ' '))
            continue;
        w += len > 0 ? len + 1 : 0;
        snprintf(word, sizeof(word), "%.*s", (int)strcspn(w, " "), w);
        for (k = 0; k < n && strcmp(out[k], word) != 0; k++)
            ;
        if (k == n)
            memcpy(out[n++], word, sizeof(word));
    }
    return n;
}

/* Lists the next words after typed, for "'site' needs a subcommand: ...". */
static void next_words(const char *typed, char *out, size_t cap)
{
    char words[N_COMMANDS][WORD_LEN];
    size_t n = next_word_list(typed, words), o = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%s", i > 0 ? ", " : "", words[i]);
}

/* An unknown command word after the words before (maybe ""), with the
 * likely one if it looks like a typo. */
static int unknown_command(const char *before, const char *word)
{
    static char head[128]; /* the --help the error points at; lives until exit */
    char words[N_COMMANDS][WORD_LEN], pre[132], hint[512];
    const char *cands[N_COMMANDS];
    size_t n = next_word_list(before, words);

    for (size_t i = 0; i < n; i++)
        cands[i] = words[i];
    snprintf(head, sizeof(head), "%s", before);
    ctl_set_command(head[0] != '\0' ? head : NULL);
    snprintf(pre, sizeof(pre), "%s%s", before, before[0] != '\0' ? " " : "");
    if (strlen(word) <= CLI_WORD_MAX && cli_suggest(word, cands, n, pre, hint, sizeof(hint)) > 0)
        return ctl_usage_err("unknown command '%s%s'; did you mean %s?", pre, word, hint);
    return ctl_usage_err("unknown command '%s%s'", pre, word);
}

struct parsed {
    const struct command *cmd;
    char typed[128]; /* command words seen, space-separated */
    int help, version;
};

/* vals of the long options: globals are G_BASE + enum global_opt, the
 * commands' own CMD_OPT and up. */
#define G_BASE    0x100
#define CMD_OPT   0x200
#define LONGS_MAX 64

/* Every long option any command takes. The command may come after its
 * options, so one table serves the whole line; each command's own are
 * checked against its list once it is known. */
static const struct option *long_options(void)
{
    static struct option longs[LONGS_MAX + 1];
    size_t n = 0, i;

    if (longs[0].name != NULL)
        return longs;
    for (i = 0; i < N_GLOBALS; i++)
        longs[n++] =
            (struct option){globals[i].name, globals[i].has_value ? required_argument : no_argument,
                            NULL, G_BASE + (int)i};
    for (i = 0; i < N_COMMANDS; i++) {
        for (const struct optspec *o = commands[i].opts; o != NULL && o->name != NULL; o++) {
            size_t k = 0;

            while (k < n && strcmp(longs[k].name, o->name) != 0)
                k++;
            /* One name means one thing in every command. */
            assert(k == n || longs[k].has_arg == (o->has_value ? required_argument : no_argument));
            if (k < n)
                continue;
            assert(n < LONGS_MAX);
            /* A val of its own: getopt_long takes an abbreviation of
             * several options with the same val as the first one. */
            longs[n] = (struct option){o->name, o->has_value ? required_argument : no_argument,
                                       NULL, CMD_OPT + (int)n};
            n++;
        }
    }
    return longs;
}

static int takes(const struct command *cmd, const char *name)
{
    for (const struct optspec *o = cmd->opts; o != NULL && o->name != NULL; o++)
        if (strcmp(o->name, name) == 0)
            return 1;
    return 0;
}

static void set_global(int g, const char *value, struct ctl *c, struct parsed *p)
{
    switch (g) {
    case G_CONFIG:
        c->config_path = value;
        break;
    case G_HUB:
        c->hub_url = value;
        break;
    case G_TOKEN:
        c->token = value;
        break;
    case G_PIN:
        c->pin = value;
        break;
    case G_JSON:
        c->json = 1;
        break;
    case G_HELP:
        p->help = 1;
        break;
    case G_VERSION:
        p->version = 1;
        break;
    }
}

/* A command word or a positional argument. */
static int take_word(const char *arg, struct cli *cl, struct ctl_args *a, struct parsed *p)
{
    size_t len = strlen(p->typed);
    int prefix;

    if (p->cmd != NULL && (a->npos > 0 || !heads_longer(p->cmd->words))) {
        if (a->npos >= CTL_MAX_POS)
            return ctl_usage_err("too many arguments");
        a->pos[a->npos++] = arg;
        return 0;
    }
    /* Here p->cmd is NULL, or a command that heads longer ones ("query",
     * "query list"): its next word names one of them. */
    if (len + 1 + strlen(arg) >= sizeof(p->typed))
        return unknown_command(p->typed, arg);
    snprintf(p->typed + len, sizeof(p->typed) - len, "%s%s", len > 0 ? " " : "", arg);
    p->cmd = match_words(p->typed, &prefix);
    if (p->cmd == NULL && !prefix) {
        p->typed[len] = '\0';
        return unknown_command(p->typed, arg);
    }
    if (p->cmd != NULL) {
        /* Errors from here on point at this command's --help. */
        cl->cmd = p->cmd->words;
        ctl_set_command(p->cmd->words);
    }
    return 0;
}

static int parse(int argc, char **argv, struct ctl *c, struct ctl_args *a, struct parsed *p)
{
    struct cli cl;
    int r, rc;

    cli_begin(&cl, "tetherctl", NULL, argc, argv, "h", long_options());
    while ((r = cli_next(&cl)) != CLI_END) {
        if (r == CLI_ERROR)
            return CTL_EXIT_USAGE;
        if (r == 'h') {
            p->help = 1;
        } else if (r == CLI_ARG) {
            rc = take_word(optarg, &cl, a, p);
            if (rc != 0)
                return rc;
        } else if (r >= G_BASE && r < G_BASE + (int)N_GLOBALS) {
            set_global(r - G_BASE, optarg, c, p);
        } else {
            assert(r >= CMD_OPT && cli_long_name(&cl) != NULL);
            if (a->nopt >= CTL_MAX_OPTS)
                return ctl_usage_err("too many options");
            snprintf(a->opt[a->nopt].name, sizeof(a->opt[a->nopt].name), "%s", cli_long_name(&cl));
            a->opt[a->nopt].value = optarg;
            a->nopt++;
        }
    }
    if (p->help || p->version)
        return 0;
    for (size_t i = 0; i < a->nopt; i++) {
        if (p->cmd == NULL)
            return ctl_usage_err("unknown option '--%s' without a command", a->opt[i].name);
        if (!takes(p->cmd, a->opt[i].name))
            return ctl_usage_err("unknown option '--%s' for '%s'", a->opt[i].name, p->cmd->words);
    }
    return 0;
}

/* wcwidth() in the table printer needs a UTF-8 character type. */
static void set_locale(void)
{
    const char *cs;

    if (setlocale(LC_CTYPE, "") == NULL)
        setlocale(LC_CTYPE, "C.UTF-8");
    cs = nl_langinfo(CODESET);
    if (cs == NULL || (strcasecmp(cs, "UTF-8") != 0 && strcasecmp(cs, "utf8") != 0))
        setlocale(LC_CTYPE, "C.UTF-8");
}

int main(int argc, char **argv)
{
    struct ctl c = {0};
    struct ctl_args a = {0};
    struct parsed p = {0};
    int rc;

    set_locale();
    rc = parse(argc, argv, &c, &a, &p);
    if (rc != 0)
        return rc;
    if (p.help) {
        usage(stdout, p.typed);
        return CTL_EXIT_OK;
    }
    if (p.version) {
        cli_print_version("tetherctl");
        return CTL_EXIT_OK;
    }
    if (p.cmd == NULL) {
        char next[128];

        if (p.typed[0] == '\0') {
            usage(stderr, "");
            return CTL_EXIT_USAGE;
        }
        next_words(p.typed, next, sizeof(next));
        return ctl_usage_err("'%s' needs a subcommand: %s", p.typed, next);
    }
    if (a.npos < p.cmd->min_pos)
        return ctl_usage_err("missing arguments: tetherctl %s %s", p.cmd->words, p.cmd->synopsis);
    if (a.npos > p.cmd->max_pos)
        return ctl_usage_err("unexpected argument '%s' for '%s'", a.pos[p.cmd->max_pos],
                             p.cmd->words);

    rc = p.cmd->run(&c, &a);
    ctl_free(&c);
    /* Frees what wolfSSL set up on first use, so leak checkers stay quiet. */
    wolfSSL_Cleanup();
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("cannot write the output: %s", strerror(errno));
        if (rc == CTL_EXIT_OK)
            rc = CTL_EXIT_FAIL;
    }
    return rc;
}
