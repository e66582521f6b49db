/* tetherctl's command entry points, one cmd_NOUN.c per noun; the table in tetherctl.c dispatches to
 * them. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_CTL_CMD_H
#define TETHER_CTL_CMD_H

#include "ctl.h"

/* Each returns a CTL_EXIT_* code and has printed any error itself. */
int cmd_site_add(struct ctl *c, const struct ctl_args *a);
int cmd_site_list(struct ctl *c, const struct ctl_args *a);
int cmd_site_show(struct ctl *c, const struct ctl_args *a);

#endif
