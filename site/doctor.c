/* tether-site doctor: checks the path to the hub stage by stage and says what to ask the network team. */
/* SPDX-License-Identifier: MIT */
/* Placeholder while doctor is written (issue 5). */
#include <stdio.h>

#include "cmds.h"

int site_cmd_doctor(int argc, char **argv)
{
    fprintf(stderr, "tether-site: doctor is not available in this build yet\n");
    return 1;
}
