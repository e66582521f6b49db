/* tether-site subcommands that live in their own files. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SITE_CMDS_H
#define TETHER_SITE_CMDS_H

#include <stdio.h>

/* argv[0] is the subcommand name; each returns the process exit code and
 * has printed its own messages. */
int site_cmd_rotate_key(int argc, char **argv);
int site_cmd_doctor(int argc, char **argv);
int site_cmd_status(int argc, char **argv);

/* Prints the usage of one command (cmd NULL: of all) on f. */
void site_usage(FILE *f, const char *cmd);

#endif
