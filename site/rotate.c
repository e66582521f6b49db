/* tether-site rotate-key: replace the site's key, proving possession of the old one. */
/* SPDX-License-Identifier: MIT */
/* Placeholder while key rotation is written (issue 4). */
#include <stdio.h>

#include "cmds.h"

int site_cmd_rotate_key(int argc, char **argv)
{
    fprintf(stderr, "tether-site: rotate-key is not available in this build yet\n");
    return 1;
}
