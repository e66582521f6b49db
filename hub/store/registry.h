/* The hub's registry (SQLite, behind a driver): sites, enrollment and API tokens, sessions, audit.
 */
/* SPDX-License-Identifier: MIT */
#ifndef TETHER_REGISTRY_H
#define TETHER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "../../common/crypto.h"
#include "../../common/hist.h"
#include "../../common/token.h"

/* Everything in these structs is by value; callers own them. JSON text fields
 * are heap strings owned by the struct and freed by registry_site_clear(). */

/* Site states. "pending": registered, never enrolled. "revoked": key
 * forgotten, must enroll again with a new token. The hub compares these;
 * the names are only what the database and the API carry. */
enum reg_site_state {
    REG_SITE_PENDING = 0,
    REG_SITE_ACTIVE,
    REG_SITE_DISABLED,
    REG_SITE_REVOKED,
    REG_SITE_NSTATES
};
/* "pending", "active", ...; static strings, "unknown" out of range. */
const char *registry_site_state_name(enum reg_site_state st);
/* 0 and *out set, or -EINVAL for NULL or any other text. */
int registry_site_state_parse(const char *s, enum reg_site_state *out);

struct reg_site {
    int64_t id;
    char name[TOKEN_NAME_MAX + 1];
    enum reg_site_state state;
    char pin[CRYPTO_PIN_LEN + 1]; /* "" when no key is registered */
    char *labels_json;            /* JSON object text, never NULL after a get */
    char *services_json;          /* JSON array text of service names, never NULL */
    char agent_version[64];
    char remote_addr[64];
    int64_t created_at;
    int64_t enrolled_at;
    int64_t last_seen; /* 0 = never */
};
void registry_site_clear(struct reg_site *s);
/* dst = a copy of src, its JSON texts dst's own (registry_site_clear);
 * 0 or -ENOMEM (dst then cleared). */
int registry_site_copy(struct reg_site *dst, const struct reg_site *src);

struct reg_session {
    int64_t id;
    int64_t site_id;
    char remote_addr[64];
    char agent_version[64];
    int64_t connected_at;
    int64_t disconnected_at; /* 0 while open */
    char reason[128];
    int64_t bytes_in, bytes_out;
    int64_t hub_id; /* registry_session_open_each only: the hub holding it (0: not recorded) */
};

struct reg_apitoken {
    int64_t id;
    char name[TOKEN_NAME_MAX + 1];
    char role[16];    /* admin | user */
    char *scope_json; /* NULL = all sites; else JSON: ["a","b"] or {"labels":{...}} */
    /* NULL = every unrestricted service; else a JSON array of the only
     * service names the token may use (restricted ones included). */
    char *services_json;
    int64_t created_at, expires_at /* 0 = never */, revoked_at /* 0 = not */;
};
void registry_apitoken_clear(struct reg_apitoken *t);

struct registry;
/* For an error of the storage itself, which passes and is no fault of the
 * request (-ENOSPC, -EIO, -EBUSY, -ENOTCONN): a static phrase saying what is wrong
 * ("the hub's disk is full"). NULL for any other rc. */
const char *registry_storage_error(int rc);

/* Opens the registry at path: a postgresql:// or postgres:// URL is a
 * PostgreSQL database (libpq connection URI; the database must exist),
 * anything else an SQLite file, created if needed (WAL, foreign_keys=ON,
 * busy_timeout 5000 ms). Then applies every migration of that backend
 * (schema/sqlite/ or schema/pg/) above the database's version, each in its
 * own transaction. The migrations are compiled into the binary (see
 * schema_sql.h). On failure *err (if non-NULL) gets a one-line message.
 * -ENOTCONN: the database server cannot be reached. */
int registry_open(const char *path, struct registry **out, char *err, size_t err_cap);
void registry_close(struct registry *r);
/* 1 when where is a database URL (postgresql:// or postgres://), which
 * registry_open() takes instead of a file. */
int registry_is_url(const char *where);
/* where as a message may show it: a URL's password replaced by ***. */
void registry_where(const char *where, char *out, size_t cap);
/* Copies the latency of r's commits since it opened (every write
 * transaction, explicit or a single statement's) into out, in seconds. */
void registry_commit_latency(const struct registry *r, struct hist *out);
/* A generation for caching what r reads: *gen moves with every row changed
 * through r (a rolled-back change moves it too). 0, or -ENOTSUP when other
 * processes may change the database (the hubs of a shared PostgreSQL): then
 * nothing read may be cached. Rows the recorder's own connection writes
 * (sessions; a site's last_seen, agent_version, services, remote_addr) do not
 * move it: a cache must hold none of those. */
int registry_write_gen(struct registry *r, uint64_t *gen);
/* PRAGMA integrity_check == "ok": 0, else -EIO. */
int registry_check(struct registry *r);
/* The PRAGMA user_version in force. */
int registry_schema_version(struct registry *r);

/* Notes: what a change made through one hub tells the other hubs of a
 * shared database (PostgreSQL's LISTEN/NOTIFY; registry_listen in
 * notes.h). Sent in the change's own transaction by the calls below. */
enum reg_note_kind {
    REG_NOTE_CUT,     /* the site's tunnels must go (why says why) */
    REG_NOTE_CHANGED, /* the site's row changed (labels, state enabled, ...) */
    REG_NOTE_TOKENS,  /* API tokens were created or revoked */
    REG_NOTE_QUERY,   /* a query was made with results queued for sites */
    REG_NOTE_RESULTS, /* results of a query became final (landed, expired) */
    REG_NOTE_SESSION, /* a hub opened a session of the site (session_id, hub_id) */
};
/* Why a site's tunnels are cut; the payload carries its word
 * (registry_cut_word). */
enum reg_cut_why {
    REG_CUT_REVOKED,
    REG_CUT_DISABLED,
    REG_CUT_REMOVED,
    REG_CUT_ROTATED,    /* key rotation: the old key must not stay connected */
    REG_CUT_REENROLLED, /* enrolled again with a new key */
    REG_CUT_NWHY
};
struct reg_note {
    enum reg_note_kind kind;
    enum reg_cut_why why; /* REG_NOTE_CUT only */
    int64_t site_id;      /* 0 for REG_NOTE_TOKENS and the query notes */
    int64_t query_id;     /* REG_NOTE_QUERY and REG_NOTE_RESULTS: the query's id */
    int64_t session_id;   /* REG_NOTE_SESSION: the new session's row */
    int64_t hub_id;       /* REG_NOTE_SESSION: the hub that holds it */
    /* The site's name; for REG_NOTE_TOKENS the token's ("" unknown). */
    char site[TOKEN_NAME_MAX + 1];
    int own; /* sent through this registry's own connection (this hub) */
};
/* "revoked", "disabled", ...; NULL out of range. */
const char *registry_cut_word(enum reg_cut_why why);
/* Reads a notification of channel ("tether_site", "tether_token",
 * "tether_query") into out (own 0). 0, or -EINVAL for anything else. */
int registry_note_parse(const char *channel, const char *payload, struct reg_note *out);

/* Error codes: -ENOENT not found, -EEXIST name or pin taken, -EINVAL bad
 * argument, -EIO SQLite failure. */

/* Sites */
int registry_site_create(struct registry *r, const char *name, const char *labels_json,
                         int64_t now);
int registry_site_get(struct registry *r, const char *name, struct reg_site *out);
/* Only sites that currently hold this pin (any state). */
int registry_site_by_pin(struct registry *r, const char *pin, struct reg_site *out);
/* Calls cb for every site ordered by name; stop early by returning non-zero
 * from cb (that value is returned). The struct passed to cb is owned by the
 * registry and valid during the call only. */
typedef int (*registry_site_cb)(const struct reg_site *s, void *arg);
int registry_site_list(struct registry *r, registry_site_cb cb, void *arg);
/* state: REG_SITE_ACTIVE or REG_SITE_DISABLED (else -EINVAL). -ENOENT
 * unknown; -EINVAL from pending/revoked. */
int registry_site_set_state(struct registry *r, const char *name, enum reg_site_state state);
/* Forgets the key (pin=""), state "revoked". */
int registry_site_revoke(struct registry *r, const char *name);
/* Deletes the site and (by cascade) its tokens and sessions. */
int registry_site_remove(struct registry *r, const char *name);
/* Records what a connected site reported and when it was last heard. Any
 * NULL argument is left unchanged; an agent_version also goes into the
 * site's open session rows. */
int registry_site_seen(struct registry *r, int64_t site_id, int64_t last_seen,
                       const char *agent_version, const char *services_json,
                       const char *remote_addr);
/* Replaces a site's labels with labels_json (a JSON object's text).
 * -ENOENT unknown site, -EINVAL not a JSON object. */
int registry_site_set_labels(struct registry *r, const char *name, const char *labels_json);
/* Replaces the pin of a site that holds old_pin (key rotation). */
int registry_site_rotate_pin(struct registry *r, int64_t site_id, const char *old_pin,
                             const char *new_pin);

/* Enrollment tokens. secret_hash is token_hash_hex() of the raw secret
 * encoded base64url. */
int registry_enroll_create(struct registry *r, const char *site, const char *secret_hash,
                           int64_t expires_at, int64_t now, int64_t *id_out);
/* Atomically redeems a token: it must exist, be unused, not cancelled and not
 * expired at `now`; marks it used and sets the site's pin, state "active",
 * enrolled_at, in one transaction. site_out gets the site name. Codes:
 * -ENOENT unknown token, -ETIMEDOUT expired, -EALREADY used, -ECANCELED
 * cancelled, -EEXIST another site holds this pin. Exactly one of two
 * concurrent redeemers of one token wins. */
int registry_enroll_redeem(struct registry *r, const char *secret_hash, const char *pin,
                           int64_t now, char site_out[TOKEN_NAME_MAX + 1]);
/* Issues a token for an existing site (a lost token, a revoked site, a new
 * key): in one transaction, cancels the site's tokens that are still unused,
 * then inserts the new one. -ENOENT unknown site. */
int registry_enroll_reissue(struct registry *r, const char *site, const char *secret_hash,
                            int64_t expires_at, int64_t now, int64_t *id_out);
/* Cancels an unused token. Idempotent; -EALREADY if it was used, -ENOENT
 * unknown id. */
int registry_enroll_cancel(struct registry *r, int64_t id);
struct reg_enroll {
    int64_t id;
    char site[TOKEN_NAME_MAX + 1];
    int64_t created_at, expires_at, used_at, cancelled_at; /* 0 = not */
};
/* -ENOENT unknown id. */
int registry_enroll_get(struct registry *r, int64_t id, struct reg_enroll *out);
/* Every token, newest first; the struct passed to cb is valid during the call. */
typedef int (*registry_enroll_cb)(const struct reg_enroll *e, void *arg);
int registry_enroll_list(struct registry *r, registry_enroll_cb cb, void *arg);

/* API tokens. hash is token_hash_hex() of the bearer token. */
int registry_apitoken_create(struct registry *r, const char *name, const char *role,
                             const char *scope_json, const char *hash, int64_t expires_at,
                             int64_t now);
/* The same with a services list (JSON array text; NULL = no limit). */
int registry_apitoken_create_scoped(struct registry *r, const char *name, const char *role,
                                    const char *scope_json, const char *services_json,
                                    const char *hash, int64_t expires_at, int64_t now);
/* The token row with this id, whatever its state (out owned by the caller:
 * registry_apitoken_clear). -ENOENT unknown. */
int registry_apitoken_get(struct registry *r, int64_t id, struct reg_apitoken *out);
/* -ENOENT unknown, -EKEYREVOKED revoked, -EKEYEXPIRED expired at now. */
int registry_apitoken_lookup(struct registry *r, const char *hash, int64_t now,
                             struct reg_apitoken *out);
/* Revokes the live token of that name: -EALREADY if the name exists only
 * revoked, -ENOENT if it never existed. */
int registry_apitoken_revoke(struct registry *r, const char *name, int64_t now);
/* Every token (live, expired and revoked) ordered by name, then age. The
 * struct passed to cb, its JSON texts included, is valid during the call only. */
typedef int (*registry_apitoken_cb)(const struct reg_apitoken *t, void *arg);
int registry_apitoken_list(struct registry *r, registry_apitoken_cb cb, void *arg);
/* Number of API tokens (any state): init uses it to know if admin exists. */
int registry_apitoken_count(struct registry *r, int64_t *count);

/* Hubs of the cluster: the hubs that share this registry (one on SQLite). */
struct reg_hub {
    int64_t id;
    char name[254];
    char pin[CRYPTO_PIN_LEN + 1];
    char *public_json; /* JSON array of "HOST:PORT" strings, owned by the struct */
    int64_t joined_at, seen_at;
};
void registry_hub_clear(struct reg_hub *h);
/* A new hub joins: -EEXIST when its pin is taken. *id_out
 * (optional) gets its row id. public_json is a JSON array of endpoints. */
int registry_hub_join(struct registry *r, const char *name, const char *pin,
                      const char *public_json, int64_t now, int64_t *id_out);
/* At `run`: the row of the hub with this pin takes the name and endpoints
 * of its configuration and is active again; a hub without a row (its
 * registry predates hubs) joins. */
int registry_hub_start(struct registry *r, const char *name, const char *pin,
                       const char *public_json, int64_t now, int64_t *id_out);
/* The hub with this pin leaves: no longer listed (registry_hub_start
 * makes it active again). -ENOENT when no active hub has it, -EBUSY when
 * it is the last active one. */
int registry_hub_leave(struct registry *r, const char *pin, int64_t now);
/* Active hubs, oldest first. The struct passed to cb is valid during the
 * call only; a non-zero return of cb stops the walk and is returned. */
typedef int (*registry_hub_cb)(const struct reg_hub *h, void *arg);
int registry_hub_list(struct registry *r, registry_hub_cb cb, void *arg);
/* Sessions opened on r from now on are this hub's (see close_stale). */
void registry_use_hub(struct registry *r, int64_t hub_id);

/* Sessions (connection history). */
int registry_session_open(struct registry *r, int64_t site_id, const char *remote_addr,
                          const char *agent_version, int64_t now, int64_t *id_out);
int registry_session_close(struct registry *r, int64_t session_id, int64_t now, const char *reason,
                           int64_t bytes_in, int64_t bytes_out);
/* At start-up: closes the sessions this hub left open when it crashed (and
 * those recorded before hubs had ids), with this reason; every open
 * session when registry_use_hub was not called. */
int registry_session_close_stale(struct registry *r, int64_t now, const char *reason);
/* Where the site is connected: the hub id of its newest open session
 * (*hub_id 0 when recorded before hubs had ids) and that session's id.
 * -ENOENT when it has no open session. */
int registry_session_where(struct registry *r, int64_t site_id, int64_t *hub_id,
                           int64_t *session_id);
/* Every open session (of site site_id only, unless 0), oldest first, with
 * remote_addr, agent_version, connected_at and hub_id set. A site whose hub
 * died without closing may have several: the newest is where it is. */
typedef int (*registry_session_cb)(const struct reg_session *s, void *arg);
int registry_session_open_each(struct registry *r, int64_t site_id, registry_session_cb cb,
                               void *arg);
/* Newest first, at most limit. */
int registry_session_list(struct registry *r, int64_t site_id, int limit, registry_session_cb cb,
                          void *arg);

/* Audit: one row per state-changing action. Text fields are cut to 255
 * bytes (detail: 4096) at a UTF-8 boundary, never refused. */
int registry_audit(struct registry *r, int64_t ts, const char *actor, const char *remote,
                   const char *action, const char *target, const char *result, const char *detail);
/* The same row, committed without waiting for the disk (synchronous=NORMAL
 * for this one commit): it survives a crash of the hub but maybe not a power
 * cut. For high-rate rows such as users' proxied requests, where an fsync
 * each would cost more than the request. */
int registry_audit_relaxed(struct registry *r, int64_t ts, const char *actor, const char *remote,
                           const char *action, const char *target, const char *result,
                           const char *detail);
struct reg_audit {
    int64_t id, ts;
    char actor[256], remote[256], action[256], target[256], result[256];
    char detail[4097];
};
/* Newest first (by id), at most limit rows with id < before_id (0: from
 * the newest). The struct passed to cb is valid during the call only. */
typedef int (*registry_audit_cb)(const struct reg_audit *a, void *arg);
int registry_audit_list(struct registry *r, int64_t before_id, int limit, registry_audit_cb cb,
                        void *arg);

#endif
