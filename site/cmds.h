/* tether-site subcommands that live in their own files. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_SITE_CMDS_H
#define TETHER_SITE_CMDS_H

/* argv[0] is the subcommand name; each returns the process exit code and
 * has printed its own messages. */
int site_cmd_rotate_key(int argc, char **argv);
int site_cmd_doctor(int argc, char **argv);

#endif
