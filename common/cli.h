/* Command lines of tether-hub, tether-site and tetherctl: getopt_long with one error style, the
 * version line, and number options. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CLI_H
#define TETHER_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_EXIT_USAGE 2

/* What cli_next() returns besides an option's val. */
#define CLI_END   (-1) /* no more arguments */
#define CLI_ARG   1    /* a positional argument, in optarg (options' vals must differ) */
#define CLI_ERROR (-2) /* a usage error was printed: exit CLI_EXIT_USAGE */

/* One parse of one command line. All pointers are borrowed and must outlive
 * the parse. Arguments come back in the order given ("--" ends the options,
 * a lone "-" is an argument); long options may be written "--name value" or
 * "--name=value", and abbreviated while unambiguous (getopt_long's rule). */
struct cli {
    const char *prog;          /* "tether-hub": starts every message */
    const char *cmd;           /* "run", or NULL: named in the --help hint */
    const char *shorts;        /* short options, getopt syntax ("h"); never NULL */
    const struct option *opts; /* long options, zero-terminated */
    int argc;
    char **argv;
    int cur;  /* index of the argument being looked at */
    int rest; /* past "--" or the end: only arguments are left */
};

/* Starts a parse of argv[1..argc-1] (argv[0] is the program or command
 * name). Resets getopt's global state, so parses may follow each other. */
void cli_begin(struct cli *c, const char *prog, const char *cmd, int argc, char **argv,
               const char *shorts, const struct option *opts);

/* The next option's val (optarg holds its value), CLI_ARG for a positional
 * argument (in optarg), CLI_END, or CLI_ERROR after printing a one-line
 * error that names the option: unknown, ambiguous, missing value or an
 * unexpected one. */
int cli_next(struct cli *c);

/* The long name of the option cli_next() just returned (after
 * abbreviations are resolved), or NULL for a short one. */
const char *cli_long_name(const struct cli *c);

/* Prints "PROG: MESSAGE (try 'PROG CMD --help')" on stderr; returns
 * CLI_EXIT_USAGE. cmd may be NULL. */
int cli_usage_error(const char *prog, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints the help of cmd (NULL: of the program) on f. */
typedef void (*cli_usage_fn)(FILE *f, const char *cmd);

/* One command's block of a program's help: "  NAME SYNOPSIS\n" then lines
 * of what it does, indented by six. Static strings. */
struct cli_help {
    const char *name;
    const char *text;
};
/* "Usage: PROG COMMAND [OPTIONS]" and every block (cmd NULL), or "Usage:
 * PROG " and cmd's block alone; the caller adds its notes after. The layout
 * help2man turns into a man page (a synopsis, a description per command). */
void cli_help_print(FILE *f, const char *prog, const struct cli_help *cmds, size_t n,
                    const char *cmd);

/* The options before the command of "PROG [--help|--version] COMMAND ...".
 * Returns the command's index in argv, or -1 when done, with *exit_code
 * set: after the help or version (0) or a usage error (2; without any
 * argument, the help goes to stderr). */
int cli_top(const char *prog, int argc, char **argv, cli_usage_fn usage, int *exit_code);

/* Runs `PROG version` or `PROG help` (argv[0]), which take only --help;
 * returns the exit code. */
int cli_simple_command(const char *prog, int argc, char **argv, cli_usage_fn usage);

/* Edit distance between a and b, ASCII letters compared without case: each
 * letter added, removed or changed, and each swap of two neighbours, counts
 * one (optimal string alignment). Words longer than CLI_WORD_MAX count as
 * far from everything. */
#define CLI_WORD_MAX 64
size_t cli_edit_distance(const char *a, const char *b);

/* "Did you mean": the candidates (n of them, NULL ones skipped) likely meant
 * by typed, a typo: at one edit (two for a word of 6 letters or more), or
 * typed being the start of them (2 letters at least). The closest ones, up
 * to three, go into out as "'PREFIXa'", "'PREFIXa' or 'PREFIXb'" (prefix:
 * "--" for options, may be NULL). Returns how many (0: out is ""). */
size_t cli_suggest(const char *typed, const char *const *cands, size_t n, const char *prefix,
                   char *out, size_t cap);

/* "PROG: unknown command "WORD"; did you mean 'run'? (try 'PROG --help')"
 * on stderr, the suggestion from cmds (n); returns CLI_EXIT_USAGE. */
int cli_unknown_command(const char *prog, const char *word, const char *const *cmds, size_t n);

/* Prints "PROG VERSION (wolfSSL BUILD)" on stdout. */
void cli_print_version(const char *prog);

/* Seconds, fractions allowed ("0.5"), into milliseconds within
 * [min_ms, max_ms] (checked after rounding, so the bounds themselves pass).
 * -EINVAL if not a number, -ERANGE if out of range. */
int cli_parse_seconds_ms(const char *s, uint64_t min_ms, uint64_t max_ms, uint64_t *out);

/* A whole decimal number within [min, max]; -EINVAL or -ERANGE. */
int cli_parse_int(const char *s, long long min, long long max, long long *out);

#endif
