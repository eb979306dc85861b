/*
 * service.h - the key service: every operation keyward offers, independent
 * of how it is reached (CLI, HTTP) and of which store holds the data.
 *
 * A kw_service is safe to use from several threads at once. Functions that
 * take a kw_error fill it on failure with a sentence fit to show the caller
 * (it names the offending field and never contains a secret).
 *
 * `actor` names who acts, for the audit log: "cli", "root_key:rk_…",
 * "user:usr_…".
 */
#ifndef KW_SERVICE_H
#define KW_SERVICE_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE)
#error "core/service.h is in the service layer, which core and store must not include"
#endif

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/keyfmt.h"
#include "core/model.h"
#include "core/status.h"
#include "core/timefmt.h"

typedef struct kw_service kw_service;

typedef struct {
    const char *data_dir;      /* holds keyward.db and the pepper file; "./var" */
    const char *store_url;     /* NULL: "sqlite:<data_dir>/keyward.db" */
    const char *pepper_file;   /* NULL: "<data_dir>/pepper", created on first start */
    const char *pepper;        /* pepper keyring text given by the operator, or NULL */
    const char *key_prefix;    /* "kw" */
    int max_keys_per_account;  /* 25 */
    int last_used_interval_ms; /* how often pending last-used times are written; 5000 */
    int verify_cache_entries;  /* the most keys kept in memory for verification; 0: none;
                                  4194304 (see node) */
    bool node;                 /* this process serves verifications: keep every key in
                                  memory (core/keysync.h); false for one-off commands */
    int node_lease_ms;         /* multi-node stores: how long a node may answer from memory
                                  without renewing its lease, the bound on a change's wait
                                  for a silent node; 2000 */
    int session_idle_s;        /* a console session ends after this long unused; 1800 */
    int session_absolute_s;    /* and after this long in any case; 43200 */
    int audit_retention_days;  /* audit entries older than this are pruned; 0: keep all;
                                  at most KW_AUDIT_RETENTION_MAX_DAYS */
    int64_t (*clock)(void);    /* Unix seconds; NULL: the system clock (tests set it) */
} kw_config;

#define KW_AUDIT_RETENTION_MAX_DAYS 36500

/* Fills *cfg with the defaults above. */
void kw_config_defaults(kw_config *cfg);

/* Where cfg keeps its data: the paths the NULL defaults above stand for. */
typedef struct {
    char store_url[PATH_MAX + 8]; /* cfg->store_url, or "sqlite:<data_dir>/keyward.db" */
    char pepper_file[PATH_MAX];   /* cfg->pepper_file, or "<data_dir>/pepper"; "" when
                                     cfg->pepper holds the pepper and no file is named */
} kw_config_paths;

/*
 * Fills *paths from cfg. Returns KW_OK, or KW_ERR_INVALID when a path does
 * not fit in PATH_MAX.
 */
kw_status kw_config_resolve_paths(const kw_config *cfg, kw_config_paths *paths, kw_error *err);

/*
 * Opens the store, applies migrations and loads (or creates) the pepper.
 * Refuses to start when the pepper file is readable by group or others.
 * On success *out is owned by the caller (kw_service_close).
 */
kw_status kw_service_open(const kw_config *cfg, kw_service **out, kw_error *err);

/* What the service's verification index does (for /metrics; see core/keysync.h). */
typedef struct {
    bool index;    /* keys are kept in memory */
    bool leases;   /* multi-node store: answers from memory need a lease */
    bool ready;    /* the index holds every key and may answer */
    bool overflow; /* the store holds more than verify_cache_entries keys */
    bool lease_held;
    int64_t lease_remaining_ms;
    uint64_t entries;
    uint64_t bytes;
    uint64_t hits;          /* verification lookups answered from memory */
    uint64_t misses;        /* ... left to the store */
    uint64_t store_lookups; /* key lookups the store answered for verifications */
    uint64_t invalidations; /* feed changes applied to the index */
    uint64_t reloads;
    uint64_t renewals;
    int64_t applied;          /* change-feed position applied */
    int64_t head;             /* newest change-feed position seen */
    int64_t caught_up_ms_ago; /* -1: never */
} kw_index_stats;

void kw_service_index_stats(kw_service *svc, kw_index_stats *out);

/* Writes pending last-used times, closes the store and wipes the pepper. */
void kw_service_close(kw_service *svc);

/* The schema version the store is at. */
int kw_service_schema_version(const kw_service *svc);

/* KW_OK when the store answers. */
kw_status kw_service_ping(kw_service *svc);

kw_status kw_service_account_create(kw_service *svc, const char *actor, const char *name,
                                    kw_account *out, kw_error *err);
kw_status kw_service_account_get(kw_service *svc, const char *account_id, kw_account *out,
                                 kw_error *err);
kw_status kw_service_account_list(kw_service *svc, kw_account_list *out, kw_error *err);

/*
 * Creates a key named `name` in `environment` (NULL: "production"), expiring
 * at expires_at (KW_TIME_NONE: never), which must be later than now and no
 * later than KW_TIME_MAX: a time in the past, the epoch included, is
 * refused with KW_ERR_INVALID and creates nothing. On success *out describes it and `secret`
 * receives the plaintext key, the only copy that will ever exist: the
 * caller shows it once and wipes it with sodium_memzero. At the account's
 * limit returns KW_ERR_LIMIT and creates nothing.
 */
kw_status kw_service_key_create(kw_service *svc, const char *actor, const char *account_id,
                                const char *name, const char *environment, int64_t expires_at,
                                kw_key *out, char secret[KW_KEY_BUFSZ], kw_error *err);
kw_status kw_service_key_list(kw_service *svc, const char *account_id, kw_key_list *out,
                              kw_error *err);
kw_status kw_service_key_get(kw_service *svc, const char *account_id, const char *key_id,
                             kw_key *out, kw_error *err);
/*
 * ---- The key lifecycle (roll, disable, rename, expiry, metadata, revoke all) ----
 *
 * Every change below commits with its audit entry and its change-feed
 * entries in one transaction and, like a delete, returns only once every
 * serving node answers with it (core/keysync.h: kw_keysync_settle).
 */

/* What a create sets. name is required; the rest may be NULL/KW_TIME_NONE. */
typedef struct {
    const char *name;
    const char *environment; /* NULL: "production" */
    int64_t expires_at;      /* KW_TIME_NONE: never; else later than now, <= KW_TIME_MAX */
    const char *metadata;    /* a JSON object's text (kw_validate_metadata); NULL or "": none */
} kw_key_spec;

/* kw_service_key_create with metadata; the same rules otherwise. */
kw_status kw_service_key_create_spec(kw_service *svc, const char *actor, const char *account_id,
                                     const kw_key_spec *spec, kw_key *out,
                                     char secret[KW_KEY_BUFSZ], kw_error *err);

/* What a PATCH changes: the members whose has_ flag is set, nothing else. */
typedef struct {
    bool has_name;
    const char *name;
    bool has_enabled;
    bool enabled;
    bool has_expires_at;
    int64_t expires_at; /* KW_TIME_NONE clears it; else later than now, <= KW_TIME_MAX */
    bool has_metadata;
    const char *metadata; /* a JSON object's text; NULL or "" clears it */
} kw_key_patch;

/*
 * Applies patch to the key (KW_ERR_INVALID for a bad value, and nothing
 * changes; a patch that sets nothing is KW_ERR_INVALID too). *out receives
 * the key as it now is. Audit actions: key.disable, key.enable, key.rename,
 * key.expiry, key.metadata, or key.update when a patch changes several.
 */
kw_status kw_service_key_update(kw_service *svc, const char *actor, const char *account_id,
                                const char *key_id, const kw_key_patch *patch, kw_key *out,
                                kw_error *err);

#define KW_ROLL_GRACE_DEFAULT_S 86400
#define KW_ROLL_GRACE_MAX_S     (30 * 86400)

/*
 * Rolls a key: creates its replacement (same name, environment and
 * metadata, enabled, expiring after as long as the old key's lifetime was
 * when it had one) whose plaintext goes to `secret` once, and makes the
 * old key expire grace_s seconds from now (0 to KW_ROLL_GRACE_MAX_S; sooner
 * if it expired sooner anyway). The two are linked (rolled_to,
 * rolled_from). The limit is not checked: a roll never leaves an account
 * without a working key, so while rolled keys are in their grace periods
 * the account may hold more keys than its limit (one per key rolled), and
 * creates are refused until they expire. KW_ERR_KEY_STATE for an expired, disabled or
 * already rolled key. *new_key and *previous receive both keys as they now are.
 */
kw_status kw_service_key_roll(kw_service *svc, const char *actor, const char *account_id,
                              const char *key_id, int64_t grace_s, kw_key *new_key,
                              char secret[KW_KEY_BUFSZ], kw_key *previous, kw_error *err);

/*
 * Deletes every key of the account in `environment` (NULL: all
 * environments) in one transaction, each with its audit entry
 * (key.revoke); *revoked receives how many. Like a delete, no node
 * verifies any of them once this returns.
 */
kw_status kw_service_key_revoke_all(kw_service *svc, const char *actor, const char *account_id,
                                    const char *environment, int *revoked, kw_error *err);

/* Deletes permanently: once this returns KW_OK the key never verifies again. */
kw_status kw_service_key_delete(kw_service *svc, const char *actor, const char *account_id,
                                const char *key_id, kw_error *err);

/*
 * Verifies the `len` bytes at `key` (not NUL-terminated necessarily). When
 * required_env is not NULL a key of another environment is refused. Returns
 * KW_OK with the outcome in *out; KW_ERR_INVALID when required_env is not a
 * valid environment label; or an error status when the store failed (then
 * *out is NOT_FOUND). A malformed key is refused before any hashing
 * or store access. A valid verification is remembered as the key's
 * last-used time, written in batches (see kw_config.last_used_interval_ms).
 * A found key is checked in this order: its environment
 * (ENVIRONMENT_MISMATCH), then its expiry (EXPIRED), then whether it is
 * enabled (DISABLED): the same precedence as kw_key_state, so an expired
 * key answers EXPIRED whether or not it was disabled, and a disabled one
 * DISABLED until it expires. A VALID answer's key carries its metadata.
 */
kw_status kw_service_key_verify(kw_service *svc, const char *key, size_t len,
                                const char *required_env, kw_verify_result *out, kw_error *err);

/* Root keys: like keys, but they authorise the management API. */
kw_status kw_service_root_key_create(kw_service *svc, const char *actor, const char *name,
                                     kw_root_key *out, char secret[KW_KEY_BUFSZ], kw_error *err);
kw_status kw_service_root_key_list(kw_service *svc, kw_root_key_list *out, kw_error *err);
kw_status kw_service_root_key_delete(kw_service *svc, const char *actor, const char *id,
                                     kw_error *err);
/* KW_OK and *out when the bytes are a stored root key, else KW_ERR_UNAUTHORIZED. */
kw_status kw_service_root_key_authenticate(kw_service *svc, const char *key, size_t len,
                                           kw_root_key *out, kw_error *err);

/* The bounds of a console user's password, in bytes. */
#define KW_PASSWORD_MIN 12
#define KW_PASSWORD_MAX 1024

/*
 * Adds a console user. The password (len bytes, KW_PASSWORD_MIN to
 * KW_PASSWORD_MAX) is hashed with argon2id; the caller wipes its copy.
 */
kw_status kw_service_user_add(kw_service *svc, const char *actor, const char *account_id,
                              const char *email, const char *password, size_t len, kw_user *out,
                              kw_error *err);
/* KW_OK and *out when email and password match, else KW_ERR_UNAUTHORIZED. */
kw_status kw_service_user_login(kw_service *svc, const char *email, const char *password,
                                size_t len, kw_user *out, kw_error *err);

/* Length of a generated password: base62 characters, 142 bits. */
#define KW_GENERATED_PASSWORD_LEN 24

/* Writes a random password of KW_GENERATED_PASSWORD_LEN base62 characters and a NUL. */
void kw_service_generate_password(char out[KW_GENERATED_PASSWORD_LEN + 1]);

/*
 * First run: when the store holds no account and no root key, creates the
 * account "Default", the console user admin@localhost with a generated
 * password, and a root key, all in one transaction. The password and the
 * root key are written to `password` and `root_secret`, the only copies:
 * the caller shows them once and wipes them. Returns KW_ERR_CONFLICT, and
 * creates nothing, when the store is not empty (another node may have
 * bootstrapped it first).
 */
kw_status kw_service_bootstrap(kw_service *svc, kw_account *account, kw_user *user,
                               char password[KW_GENERATED_PASSWORD_LEN + 1], kw_root_key *root_key,
                               char root_secret[KW_KEY_BUFSZ], kw_error *err);

/* The number of unexpired keys of all accounts. */
kw_status kw_service_key_count_active(kw_service *svc, int64_t *count, kw_error *err);

/* Room for a session token ("kws_" + 43 base62 characters) or a CSRF token, and a NUL. */
#define KW_SESSION_TOKEN_BUFSZ 64

/*
 * Signs in: checks the password (argon2id) and starts a session. token
 * receives the session token (for the cookie; the only copy, wiped by the
 * caller) and csrf the session's CSRF token. Wrong email or password give
 * KW_ERR_UNAUTHORIZED with one message for both.
 */
kw_status kw_service_session_create(kw_service *svc, const char *email, const char *password,
                                    size_t len, kw_session *out, char token[KW_SESSION_TOKEN_BUFSZ],
                                    char csrf[KW_SESSION_TOKEN_BUFSZ], kw_error *err);

/*
 * The session of token (len bytes), or KW_ERR_UNAUTHORIZED when there is
 * none or it has ended (idle or absolute expiry). csrf (may be NULL)
 * receives its CSRF token.
 */
kw_status kw_service_session_get(kw_service *svc, const char *token, size_t len, kw_session *out,
                                 char csrf[KW_SESSION_TOKEN_BUFSZ], kw_error *err);

/* True when presented is the CSRF token of the session token (constant time). */
bool kw_service_session_csrf_ok(kw_service *svc, const char *token, size_t len,
                                const char *presented);

/* Ends the session; KW_ERR_UNAUTHORIZED when there was none. */
kw_status kw_service_session_delete(kw_service *svc, const char *token, size_t len, kw_error *err);

kw_status kw_service_audit_list(kw_service *svc, const char *account_id, size_t limit,
                                kw_audit_list *out, kw_error *err);

#define KW_AUDIT_PAGE_MAX 200

/*
 * One page of an account's activity, newest first: entries older than
 * position `before` (0: from the newest), at most limit (1 to
 * KW_AUDIT_PAGE_MAX). *next is the position to ask for next (the oldest
 * entry's seq), or 0 when there is nothing older. Pages are cut by
 * position, so entries that arrive while a reader pages never shift it:
 * no gap, no repeat.
 */
kw_status kw_service_audit_page(kw_service *svc, const char *account_id, int64_t before,
                                size_t limit, kw_audit_list *out, int64_t *next, kw_error *err);

/*
 * The client address the calling thread's next changes record in their
 * audit entries (source_ip), until set again; NULL or "" clears it. The
 * HTTP layer sets it per request; the CLI never does.
 */
void kw_service_set_source_ip(const char *ip);

/* Removes audit entries older than `before` (Unix seconds): the retention
 * setting audit_retention_days, applied by the service's maintenance. */
kw_status kw_service_audit_prune(kw_service *svc, int64_t before, int64_t *removed, kw_error *err);

/* Writes the pending last-used times now (the service also does it on its own). */
kw_status kw_service_flush_last_used(kw_service *svc);

/* The current time as the service sees it (its clock). */
int64_t kw_service_now(const kw_service *svc);

#endif
