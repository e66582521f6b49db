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
int cmd_site_disable(struct ctl *c, const struct ctl_args *a);
int cmd_site_enable(struct ctl *c, const struct ctl_args *a);
int cmd_site_revoke(struct ctl *c, const struct ctl_args *a);
int cmd_site_remove(struct ctl *c, const struct ctl_args *a);
int cmd_site_label(struct ctl *c, const struct ctl_args *a);
int cmd_site_token(struct ctl *c, const struct ctl_args *a);
int cmd_site_watch(struct ctl *c, const struct ctl_args *a);
int cmd_token_create(struct ctl *c, const struct ctl_args *a);
int cmd_token_list(struct ctl *c, const struct ctl_args *a);
int cmd_token_revoke(struct ctl *c, const struct ctl_args *a);
int cmd_enroll_list(struct ctl *c, const struct ctl_args *a);
int cmd_enroll_cancel(struct ctl *c, const struct ctl_args *a);
int cmd_audit(struct ctl *c, const struct ctl_args *a);
int cmd_hub_list(struct ctl *c, const struct ctl_args *a);
int cmd_query(struct ctl *c, const struct ctl_args *a);
int cmd_query_list(struct ctl *c, const struct ctl_args *a);
int cmd_query_show(struct ctl *c, const struct ctl_args *a);
int cmd_query_cancel(struct ctl *c, const struct ctl_args *a);
int cmd_connect(struct ctl *c, const struct ctl_args *a);

#endif
