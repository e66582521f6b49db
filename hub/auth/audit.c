/* The one writer of audit rows (hub/auth/audit.h). */
/* SPDX-License-Identifier: MIT */
#include "audit.h"

#include "../../common/log.h"
#include "../core/hub.h"

int audit_write(struct hub *h, const struct audit_row *row, enum audit_durability d)
{
    const char *actor = row->actor && row->actor[0] ? row->actor : "-";
    const char *remote = row->remote ? row->remote : "";
    const char *target = row->target ? row->target : "";
    const char *detail = row->detail ? row->detail : "";
    int rc;

    if (d == AUDIT_SYNC)
        rc = registry_audit(h->reg, hub_now(), actor, remote, row->action, target, row->result,
                            detail);
    else
        rc = registry_audit_relaxed(h->reg, hub_now(), actor, remote, row->action, target,
                                    row->result, detail);
    if (rc != 0)
        log_event(LOG_ERROR, "audit_failed", "action=%s target=%s err=%d error=%s", row->action,
                  log_q(target), rc,
                  log_q(registry_storage_error(rc) ? registry_storage_error(rc) : strerror(-rc)));
    return rc;
}
