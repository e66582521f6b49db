/* Command lines of tether-hub, tether-site and tetherctl: getopt_long with one error style, the
 * version line, and number options. */
/* SPDX-License-Identifier: MIT */
#include "cli.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto.h"

#define SHORTS_MAX  64
#define SUGGEST_MAX 3
#define LONGS_MAX   128

void cli_begin(struct cli *c, const char *prog, const char *cmd, int argc, char **argv,
               const char *shorts, const struct option *opts)
{
    assert(prog != NULL && shorts != NULL && opts != NULL && argc >= 1);
    c->prog = prog;
    c->cmd = cmd;
    c->shorts = shorts;
    c->opts = opts;
    c->argc = argc;
    c->argv = argv;
    c->cur = 1;
    c->rest = 0;
    /* 0, not 1: GNU getopt then forgets the rest of a previous parse. */
    optind = 0;
    opterr = 0;
}

/* The long option that "--NAME[=...]" (name, len) means: an exact match, else
 * the only one it abbreviates. NULL if none; *ambiguous set when several. */
static const struct option *lookup(const struct option *opts, const char *name, size_t len,
                                   int *ambiguous)
{
    const struct option *found = NULL;

    *ambiguous = 0;
    for (const struct option *o = opts; o->name != NULL; o++) {
        if (strncmp(o->name, name, len) != 0)
            continue;
        if (o->name[len] == '\0')
            return o;
        if (found != NULL)
            *ambiguous = 1;
        found = o;
    }
    return *ambiguous ? NULL : found;
}

/* Says what is wrong with argv[c->cur], which getopt refused. */
static int explain(const struct cli *c, int missing)
{
    const char *a = c->cur < c->argc ? c->argv[c->cur] : "";
    const struct option *o;
    size_t len;
    int ambiguous;

    if (strncmp(a, "--", 2) != 0) {
        if (missing)
            return cli_usage_error(c->prog, c->cmd, "option '-%c' needs a value", optopt);
        return cli_usage_error(c->prog, c->cmd, "unknown option '-%c'", optopt);
    }
    len = strcspn(a + 2, "=");
    o = lookup(c->opts, a + 2, len, &ambiguous);
    if (ambiguous)
        return cli_usage_error(c->prog, c->cmd, "ambiguous option '--%.*s'", (int)len, a + 2);
    if (o == NULL) {
        const char *names[LONGS_MAX];
        char typed[CLI_WORD_MAX + 1], hint[256];
        size_t n = 0;

        for (const struct option *p = c->opts; p->name != NULL && n < LONGS_MAX; p++)
            names[n++] = p->name;
        snprintf(typed, sizeof(typed), "%.*s", (int)len, a + 2);
        if (len <= CLI_WORD_MAX && cli_suggest(typed, names, n, "--", hint, sizeof(hint)) > 0)
            return cli_usage_error(c->prog, c->cmd, "unknown option '--%s'; did you mean %s?",
                                   typed, hint);
        return cli_usage_error(c->prog, c->cmd, "unknown option '--%.*s'", (int)len, a + 2);
    }
    if (missing)
        return cli_usage_error(c->prog, c->cmd, "option '--%s' needs a value", o->name);
    return cli_usage_error(c->prog, c->cmd, "option '--%s' takes no value", o->name);
}

int cli_next(struct cli *c)
{
    char shorts[SHORTS_MAX];
    int r, n;

    if (c->rest) {
        /* After "--": the rest are arguments, one per call. */
        if (optind >= c->argc)
            return CLI_END;
        c->cur = optind;
        optarg = c->argv[optind++];
        return CLI_ARG;
    }
    /* "-": arguments come back in order, as CLI_ARG; ":": a missing value
     * is told apart from an unknown option. */
    n = snprintf(shorts, sizeof(shorts), "-:%s", c->shorts);
    if (n < 0 || (size_t)n >= sizeof(shorts)) {
        assert(!"short options too long");
        return CLI_ERROR;
    }
    /* Without permutation, the argument getopt looks at next is argv[optind]
     * (a cluster of short options keeps optind until its last letter). */
    c->cur = optind > 0 ? optind : 1;
    r = getopt_long(c->argc, c->argv, shorts, c->opts, NULL);
    if (r == -1) {
        /* In this mode getopt only ends early at "--", with optind on what
         * follows it. */
        c->rest = 1;
        return cli_next(c);
    }
    if (r == ':' || r == '?') {
        explain(c, r == ':');
        return CLI_ERROR;
    }
    return r;
}

const char *cli_long_name(const struct cli *c)
{
    const char *a = c->cur < c->argc ? c->argv[c->cur] : "";
    const struct option *o;
    int ambiguous;

    if (strncmp(a, "--", 2) != 0)
        return NULL;
    o = lookup(c->opts, a + 2, strcspn(a + 2, "="), &ambiguous);
    return o != NULL ? o->name : NULL;
}

int cli_usage_error(const char *prog, const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try '%s%s%s --help')\n", prog, cmd != NULL ? " " : "",
            cmd != NULL ? cmd : "");
    return CLI_EXIT_USAGE;
}

int cli_top(const char *prog, int argc, char **argv, cli_usage_fn usage, int *exit_code)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
    struct cli p;

    *exit_code = 0;
    cli_begin(&p, prog, NULL, argc, argv, "hV", opts);
    switch (cli_next(&p)) {
    case 'h':
        usage(stdout, NULL);
        return -1;
    case 'V':
        cli_print_version(prog);
        return -1;
    case CLI_ARG:
        return p.cur;
    case CLI_END:
        usage(stderr, NULL);
        *exit_code = CLI_EXIT_USAGE;
        return -1;
    default:
        *exit_code = CLI_EXIT_USAGE;
        return -1;
    }
}

int cli_simple_command(const char *prog, int argc, char **argv, cli_usage_fn usage)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    struct cli p;
    int opt;

    cli_begin(&p, prog, argv[0], argc, argv, "h", opts);
    while ((opt = cli_next(&p)) != CLI_END) {
        if (opt == 'h') {
            usage(stdout, argv[0]);
            return 0;
        }
        if (opt == CLI_ARG)
            return cli_usage_error(prog, argv[0], "unexpected argument \"%s\"", optarg);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[0], "help") == 0)
        usage(stdout, NULL);
    else
        cli_print_version(prog);
    return 0;
}

size_t cli_edit_distance(const char *a, const char *b)
{
    /* Three rows of the dynamic programme: the two before and this one. */
    size_t prev2[CLI_WORD_MAX + 1], prev[CLI_WORD_MAX + 1], cur[CLI_WORD_MAX + 1];
    size_t la = strlen(a), lb = strlen(b), i, j;

    if (la > CLI_WORD_MAX || lb > CLI_WORD_MAX)
        return (size_t)-1;
    for (j = 0; j <= lb; j++)
        prev[j] = j;
    memset(prev2, 0, sizeof(prev2));
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            size_t best = prev[j - 1] + (ca != cb);

            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        memcpy(prev2, prev, sizeof(prev));
        memcpy(prev, cur, sizeof(cur));
    }
    return prev[lb];
}

/* How far typed is from cand as a typo (0 never: the same word is no typo),
 * or (size_t)-1 when too far to suggest. */
static size_t typo_score(const char *typed, const char *cand)
{
    size_t lt = strlen(typed), d = cli_edit_distance(typed, cand);

    if (d == 0)
        return (size_t)-1;
    /* "dis" for "disable": the start of a word is worth suggesting. */
    if (lt >= 2 && strncasecmp(typed, cand, lt) == 0 && d > 1)
        d = 1;
    return d <= (lt >= 6 ? 2u : 1u) ? d : (size_t)-1;
}

size_t cli_suggest(const char *typed, const char *const *cands, size_t n, const char *prefix,
                   char *out, size_t cap)
{
    size_t best = (size_t)-1, found = 0, o = 0, i, k;

    if (cap > 0)
        out[0] = '\0';
    for (i = 0; i < n; i++) {
        size_t sc = cands[i] != NULL ? typo_score(typed, cands[i]) : (size_t)-1;

        if (sc < best)
            best = sc;
    }
    if (best == (size_t)-1)
        return 0;
    for (i = 0; i < n && found < SUGGEST_MAX; i++) {
        int dup = 0;

        if (cands[i] == NULL || typo_score(typed, cands[i]) != best)
            continue;
        for (k = 0; k < i; k++)
            if (cands[k] != NULL && strcmp(cands[k], cands[i]) == 0)
                dup = 1;
        if (dup)
            continue;
        found++;
        if (o < cap)
            o += (size_t)snprintf(out + o, cap - o, "%s'%s%s'", found == 1 ? "" : " or ",
                                  prefix != NULL ? prefix : "", cands[i]);
    }
    return found;
}

int cli_unknown_command(const char *prog, const char *word, const char *const *cmds, size_t n)
{
    char hint[256];

    if (strlen(word) <= CLI_WORD_MAX && cli_suggest(word, cmds, n, NULL, hint, sizeof(hint)) > 0)
        return cli_usage_error(prog, NULL, "unknown command \"%s\"; did you mean %s?", word, hint);
    return cli_usage_error(prog, NULL, "unknown command \"%s\"", word);
}

void cli_help_print(FILE *f, const char *prog, const struct cli_help *cmds, size_t n,
                    const char *cmd)
{
    if (cmd == NULL)
        fprintf(f, "Usage: %s COMMAND [OPTIONS]\n\nCommands:\n", prog);
    for (size_t i = 0; i < n; i++) {
        if (cmd == NULL)
            fputs(cmds[i].text, f);
        else if (strcmp(cmd, cmds[i].name) == 0)
            fprintf(f, "Usage: %s %s", prog, cmds[i].text + 2);
    }
}

void cli_print_version(const char *prog)
{
    printf("%s %s (wolfSSL %s)\n", prog, TETHER_VERSION, crypto_wolfssl_build());
}

int cli_parse_seconds_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out)
{
    char *end;
    double v, ms;

    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < 0)
        return -EINVAL;
    /* Rounded before the range check, so that the bounds themselves pass. */
    ms = floor(v * 1000.0 + 0.5);
    if (ms < (double)min_ms || ms > (double)max_ms)
        return -ERANGE;
    *out = (uint64_t)ms;
    return 0;
}

int cli_parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0)
        return -EINVAL;
    if (v < min || v > max)
        return -ERANGE;
    *out = v;
    return 0;
}
