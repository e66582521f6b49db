/* The one writer of audit rows: every state change through the API, and every proxied request. */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_AUDIT_H
#define TETHER_AUDIT_H

struct hub;

/* How a row reaches the disk. State changes are synced before they are
 * answered; proxied requests come at request rates and are relaxed (no fsync
 * each, see registry_audit_relaxed). */
enum audit_durability {
    AUDIT_SYNC,
    AUDIT_RELAXED,
};

/* One row. Strings are borrowed for the call; NULL or "" actor is "-". */
struct audit_row {
    const char *actor;  /* token name */
    const char *remote; /* the user's address */
    const char *action; /* "site.add", "query.submit", "proxy", ... */
    const char *target;
    const char *result; /* "ok", "forwarded", or the error code */
    const char *detail;
};

/* Writes row stamped with hub_now(). A row that cannot be written is logged
 * here, once (audit_failed), and the request goes on: the audit trail never
 * turns an answer into an error. Returns 0 or the registry's negative code.
 * Callers audit before answering: one row, written before the one answer. */
int audit_write(struct hub *h, const struct audit_row *row, enum audit_durability d);

#endif
