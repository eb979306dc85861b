/*
 * store.h - the one storage interface; one file per backend behind it.
 *
 * The store knows records, hashes and transactions, never a plaintext key
 * or password: the key service hashes before it calls in. Every mutation
 * writes its audit entry in the same transaction, so an acknowledged change
 * always has its entry and a refused one never does.
 *
 * All functions return KW_OK or an error status. Reads of a missing object
 * return KW_ERR_NOT_FOUND. KW_ERR_UNAVAILABLE means the store could not be
 * reached or stayed locked past its busy timeout; the request changed
 * nothing. A store handle may be used from several threads at once.
 */
#ifndef KW_STORE_H
#define KW_STORE_H

#if defined(KW_LAYER_CORE)
#error "store/store.h is in the store layer, which core must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/status.h"

typedef struct kw_store kw_store;

/* What an audit entry records about the change being made; never a secret. */
typedef struct {
    int64_t at;
    const char *actor;     /* "cli", "root_key:rk_…", "user:usr_…" */
    const char *action;    /* "key.create", "key.delete", ... */
    const char *source_ip; /* the client's address; NULL when not known (the CLI) */
} kw_audit;

/* What key_update changes: the members set, nothing else. */
typedef struct {
    const char *name; /* NULL: unchanged */
    int enabled;      /* -1: unchanged; 0 or 1 */
    bool set_expires_at;
    int64_t expires_at; /* KW_TIME_NONE: never */
    bool set_metadata;
    const char *metadata; /* compact JSON object text; NULL or "": none */
} kw_key_update;

/* A stored key with its hash: one row of the verification index. */
typedef struct {
    uint8_t hash[KW_HASH_BYTES];
    uint32_t pepper_version;
    kw_key key;
} kw_key_row;

/*
 * One entry of the change feed (see key_changes below): a change that can
 * turn a verification answer wrong, and the state of its key now. The feed
 * records key ids only, never hashes: a deleted key's hash leaves the
 * database with its row.
 */
typedef struct {
    int64_t seq;  /* the change's position in the feed: 1, 2, 3, ... with no gap */
    bool present; /* the key exists now, and row holds it (hash included); false:
                     the key is gone; only row.key.id names it (the rest is zero) */
    kw_key_row row;
} kw_key_change;

typedef struct {
    kw_key_change *items; /* oldest first */
    size_t count;
} kw_key_change_list;

/* Called once per key by key_scan; a status other than KW_OK stops the scan and is returned. */
typedef kw_status (*kw_key_row_fn)(void *ctx, const kw_key_row *row);

typedef struct kw_store_ops {
    void (*close)(kw_store *s);
    /* Applies pending schema migrations; returns the resulting version. */
    kw_status (*migrate)(kw_store *s, int *version, kw_error *err);
    /* KW_OK when the store answers a trivial query. */
    kw_status (*ping)(kw_store *s);

    kw_status (*account_insert)(kw_store *s, const kw_account *a, const kw_audit *au);
    kw_status (*account_get)(kw_store *s, const char *id, kw_account *out);
    kw_status (*account_list)(kw_store *s, kw_account_list *out);

    /*
     * Inserts k with its hash if the account exists (else KW_ERR_NOT_FOUND)
     * and holds fewer than `limit` keys that are unexpired at `now` (else
     * KW_ERR_LIMIT), atomically: concurrent inserts from any number of
     * threads or processes never exceed the limit. A hash that is already
     * stored gives KW_ERR_CONFLICT. Appends the change to the feed in the
     * same transaction; *seq (when seq is not NULL) receives its position.
     */
    kw_status (*key_insert)(kw_store *s, const kw_key *k, const uint8_t hash[KW_HASH_BYTES],
                            uint32_t pepper_version, int limit, int64_t now, const kw_audit *au,
                            int64_t *seq);
    /* Keys of an account, newest first; active_count counts those unexpired at now. */
    kw_status (*key_list)(kw_store *s, const char *account_id, int64_t now, kw_key_list *out);
    kw_status (*key_get)(kw_store *s, const char *account_id, const char *key_id, kw_key *out);
    /*
     * Deletes the row (and so its hash), records the key's id and name in
     * the audit log and appends the change (the key's id) to the feed, in
     * one transaction; *seq (when not NULL) receives the change's position.
     */
    kw_status (*key_delete)(kw_store *s, const char *account_id, const char *key_id,
                            const kw_audit *au, int64_t *seq);
    /*
     * Applies u to the key, records au in the audit log (with the key's id
     * and its name as it now is) and appends the change (the key's id) to
     * the feed, in one transaction under the account's lock; *out receives
     * the key as it now is, *seq (when not NULL) the change's position.
     */
    kw_status (*key_update)(kw_store *s, const char *account_id, const char *key_id,
                            const kw_key_update *u, const kw_audit *au, kw_key *out, int64_t *seq);
    /*
     * Rolls key key_id in one transaction under the account's lock: the
     * old key must exist (else KW_ERR_NOT_FOUND) and, at `now`, be
     * unexpired, enabled and not rolled already (else KW_ERR_KEY_STATE).
     * Inserts k with its hash, no limit checked, taking from the old row
     * as it is under the lock its name, environment and metadata, a
     * rolled_from naming it, and, when the old key had an expiry, the same
     * lifetime from now (at most KW_TIME_MAX); k gives the id, masked
     * form and times. The old key gets rolled_to and expires at the sooner
     * of its own expiry and now + grace_s. One audit entry (au, naming the
     * old key), a feed change for each key; *new_key and *previous receive
     * both as they now are, *seq (when not NULL) the last change's position.
     */
    kw_status (*key_roll)(kw_store *s, const char *account_id, const char *key_id, const kw_key *k,
                          const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version, int64_t now,
                          int64_t grace_s, const kw_audit *au, kw_key *new_key, kw_key *previous,
                          int64_t *seq);
    /*
     * Deletes every key of the account in environment (NULL: all) in one
     * transaction under the account's lock (KW_ERR_NOT_FOUND when there is
     * no such account): a key inserted before it commits is deleted, one
     * inserted after it survives. Each key gets its audit entry (au, with
     * its id and name) and its feed change; *count receives how many, *seq
     * (when not NULL) the last change's position (0 when none).
     */
    kw_status (*key_revoke)(kw_store *s, const char *account_id, const char *environment,
                            const kw_audit *au, int *count, int64_t *seq);
    /* Looks a key up by its hash (an indexed point lookup). */
    kw_status (*key_find)(kw_store *s, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                          kw_key *out);
    /* Raises last_used_at of each listed key or root key to `at`; ids not found are skipped. */
    kw_status (*touch)(kw_store *s, const kw_touch *items, size_t count);

    kw_status (*root_key_insert)(kw_store *s, const kw_root_key *rk,
                                 const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                                 const kw_audit *au);
    kw_status (*root_key_list)(kw_store *s, kw_root_key_list *out);
    kw_status (*root_key_delete)(kw_store *s, const char *id, const kw_audit *au);
    kw_status (*root_key_find)(kw_store *s, const uint8_t hash[KW_HASH_BYTES],
                               uint32_t pepper_version, kw_root_key *out);

    /* KW_ERR_CONFLICT when the email (compared case-insensitively) exists. */
    kw_status (*user_insert)(kw_store *s, const kw_user *u, const char *password_hash,
                             const kw_audit *au);
    /* password_hash receives the stored argon2id string (buffer of hash_size bytes). */
    kw_status (*user_find_by_email)(kw_store *s, const char *email, kw_user *out,
                                    char *password_hash, size_t hash_size);

    /*
     * Stores `check` as the check value of pepper `version` unless one is
     * stored already. KW_OK when the stored value equals check;
     * KW_ERR_CONFLICT when it differs: the database was made with another
     * pepper of that version, and hashing under this one would lock every
     * key out.
     */
    kw_status (*pepper_check)(kw_store *s, uint32_t version, const uint8_t check[KW_HASH_BYTES]);

    /* Audit entries, newest first, of one account (or all when account_id is NULL). */
    kw_status (*audit_list)(kw_store *s, const char *account_id, size_t limit, kw_audit_list *out);
    /*
     * An account's audit entries whose seq is below before_seq (0: no
     * bound), newest first, at most limit: pages cut by position, which
     * entries inserted meanwhile never shift.
     */
    kw_status (*audit_page)(kw_store *s, const char *account_id, int64_t before_seq, size_t limit,
                            kw_audit_list *out);
    /*
     * Deletes the audit entries recorded before before_time (Unix
     * seconds); *removed receives how many. The only way rows leave the
     * log: its triggers refuse any other delete or update.
     */
    kw_status (*audit_prune)(kw_store *s, int64_t before_time, int64_t *removed);

    /*
     * Optional (NULL when the backend cannot offer it): a value that changes
     * whenever any process commits anything to the store, read without a
     * query or a lock. Once a commit has returned, every later call, in
     * any process, sees the new value. A node on such a store keeps its
     * verification index exact by reading the feed whenever the token has
     * moved (see core/keyindex.h); without it, by node leases (below).
     */
    kw_status (*change_token)(kw_store *s, uint64_t *token);

    /*
     * Console sessions, stored by the keyed hash of their token. Inserting
     * also removes every session whose absolute end is at or before `now`.
     * A sign-in and a sign-out are audited (au, when not NULL: its time,
     * action and source_ip) in their transaction, for the user's account
     * and with the user as actor ("user:usr_…", read from the store: au's
     * actor is not used).
     */
    kw_status (*session_insert)(kw_store *s, const uint8_t hash[KW_HASH_BYTES], const char *user_id,
                                int64_t now, int64_t expires_at, const kw_audit *au);
    /* The session and its user; KW_ERR_NOT_FOUND when there is none. */
    kw_status (*session_find)(kw_store *s, const uint8_t hash[KW_HASH_BYTES], kw_session *out);
    kw_status (*session_touch)(kw_store *s, const uint8_t hash[KW_HASH_BYTES], int64_t at);
    /* KW_ERR_NOT_FOUND when there was no such session. au: see session_insert. */
    kw_status (*session_delete)(kw_store *s, const uint8_t hash[KW_HASH_BYTES], const kw_audit *au);

    /* Counts the keys of all accounts that are unexpired at `now` (for metrics). */
    kw_status (*key_count_active)(kw_store *s, int64_t now, int64_t *count);

    /*
     * ---- The change feed: how every node keeps its verification index exact ----
     *
     * Every mutation that can change a verification answer (key_insert,
     * key_update, key_roll, key_revoke and key_delete) appends one row per
     * key it changes to the feed in its own transaction.
     * Positions are allocated under a lock every writer takes (the feed
     * head row), so they are contiguous and in commit order: a reader that
     * has seen position N has seen every change up to N. Writes that cannot
     * change an answer (last-used times, sessions, audit, root keys) never
     * touch the feed.
     */
    /* The position of the newest change (0: none yet). */
    kw_status (*feed_head)(kw_store *s, int64_t *head);
    /*
     * Calls fn for every stored key, expired ones included, and sets *head
     * to the feed position those rows reflect: the rows and the head are
     * read in one snapshot.
     */
    kw_status (*key_scan)(kw_store *s, kw_key_row_fn fn, void *ctx, int64_t *head);
    /*
     * The changes after position `after`, oldest first, at most `limit`,
     * each with its key's state now: its whole row (present), or only its
     * id (gone; the index removes it by id). The caller frees
     * out->items. When the oldest returned seq is not after + 1, the feed
     * was pruned past `after` and the caller must scan again.
     */
    kw_status (*changes_since)(kw_store *s, int64_t after, size_t limit, kw_key_change_list *out);
    /* Removes feed entries recorded before `before` (Unix seconds); never the newest one. */
    kw_status (*feed_prune)(kw_store *s, int64_t before);

    /*
     * ---- Node leases (NULL when the backend has change_token instead) ----
     *
     * A node serves verifications from memory only while it holds a lease:
     * a row (node id, applied position, lease end by the database's clock).
     * A writer, after its commit, waits until every node whose lease has not
     * ended has applied its change (nodes_behind reaches 0).
     *
     * node_renew registers or renews node_id's lease of lease_ms
     * milliseconds with `applied` as its position, inside a transaction
     * that holds the feed head in share mode, so that no change can commit
     * between the head being read and the lease being granted. When the
     * head is past `applied` it grants nothing, sets *head and returns
     * KW_ERR_CONFLICT: the node catches up and asks again. On KW_OK *head
     * is the head (== applied).
     */
    kw_status (*node_renew)(kw_store *s, const char *node_id, int64_t applied, int lease_ms,
                            int64_t *head);
    /* How many nodes hold a lease that has not ended and have applied less than seq. */
    kw_status (*nodes_behind)(kw_store *s, int64_t seq, int *count);
    /* Removes node_id's lease (a node that stops cleanly); no writer waits for it again. */
    kw_status (*node_leave)(kw_store *s, const char *node_id);
    /*
     * Waits up to timeout_ms for a notification that some node committed a
     * change (PostgreSQL LISTEN/NOTIFY). A wake-up only: it may return
     * early or miss a change, the feed itself is the truth. Called from
     * one thread at a time, on a connection of its own.
     */
    kw_status (*feed_wait)(kw_store *s, int timeout_ms);

    /*
     * First run: inserts the account, its console user and the root key in
     * one transaction if the store holds no account and no root key yet,
     * else returns KW_ERR_CONFLICT and writes nothing. Atomic across
     * processes and nodes, so exactly one of several nodes starting on an
     * empty store bootstraps it.
     */
    kw_status (*bootstrap)(kw_store *s, const kw_account *a, const kw_user *u,
                           const char *password_hash, const kw_root_key *rk,
                           const uint8_t rk_hash[KW_HASH_BYTES], uint32_t pepper_version,
                           const kw_audit *au);
} kw_store_ops;

struct kw_store {
    const kw_store_ops *ops;
};

/*
 * Opens the store named by url: "sqlite:PATH" (PATH created with mode 0600
 * when missing), or "postgres://..." / "postgresql://..." (a libpq
 * connection URI; the database must exist, keyward creates its tables). On success *out is owned by
 * the caller, who releases it with out->ops->close(out). On failure *out is NULL and err says why.
 */
kw_status kw_store_open(const char *url, kw_store **out, kw_error *err);

/* The database path of a "sqlite:PATH" URL; NULL for any other URL or an empty PATH. */
const char *kw_store_sqlite_path(const char *url);

/* The SQLite backend (store/sqlite.c). */
kw_status kw_store_sqlite_open(const char *path, kw_store **out, kw_error *err);

/*
 * The PostgreSQL backend (store/postgres.c): url is a postgres:// or
 * postgresql:// URI. KW_ERR_INVALID when it is malformed,
 * KW_ERR_UNAVAILABLE when the server cannot be reached; err never repeats
 * the URL, which may hold a password.
 */
kw_status kw_store_postgres_open(const char *url, kw_store **out, kw_error *err);

#endif
