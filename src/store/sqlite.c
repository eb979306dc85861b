/*
 * sqlite.c - the SQLite backend of the store.
 *
 * Each operation takes a connection from the store's pool (sqlite_pool.c)
 * for its duration, so a store handle may be shared by many threads.
 *
 * Every mutation runs in one BEGIN IMMEDIATE transaction: the write lock
 * is taken before the first read, so the checks a mutation makes (does the
 * account exist, is it under its key limit) still hold when it writes, in
 * this process and in any other that opens the same file.
 */
#include "store/store.h"
#include "store/sqlite_pool.h"
#include "store/sqlite_schema.h"
#include "store/sqlite_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_SIZE 8

enum {
    Q_PING,
    Q_AUDIT_INSERT,
    Q_AUDIT_ALL,
    Q_AUDIT_ACCOUNT,
    Q_ACCOUNT_INSERT,
    Q_ACCOUNT_EXISTS,
    Q_ACCOUNT_GET,
    Q_ACCOUNT_LIST,
    Q_KEY_INSERT,
    Q_KEY_LIST,
    Q_KEY_GET,
    Q_KEY_DELETE,
    Q_KEY_FIND,
    Q_KEY_TOUCH,
    Q_ROOT_INSERT,
    Q_ROOT_LIST,
    Q_ROOT_DELETE,
    Q_ROOT_FIND,
    Q_ROOT_TOUCH,
    Q_USER_INSERT,
    Q_USER_FIND,
    Q_PEPPER_CHECK_INSERT,
    Q_PEPPER_CHECK_GET,
    Q_KEY_COUNT_ACTIVE,
    Q_SESSION_PURGE,
    Q_SESSION_INSERT,
    Q_SESSION_FIND,
    Q_SESSION_TOUCH,
    Q_SESSION_DELETE,
    Q_STORE_EMPTY,
    Q_READ_BEGIN,
    Q_FEED_BUMP,
    Q_FEED_APPEND,
    Q_FEED_HEAD,
    Q_FEED_PRUNE,
    Q_KEY_SCAN,
    Q_CHANGES_SINCE,
    Q_COUNT
};

#define KEY_COLS "id, account_id, name, environment, masked, created_at, last_used_at, expires_at"
#define KEY_COLS_K                                                                                 \
    "k.id, k.account_id, k.name, k.environment, k.masked, k.created_at, k.last_used_at, "          \
    "k.expires_at"
#define ROOT_COLS  "id, name, masked, created_at, last_used_at"
#define AUDIT_COLS "SELECT seq, at, actor, action, account_id, key_id, key_name FROM audit_log "

static const char *const query_sql[Q_COUNT] = {
    [Q_PING] = "SELECT 1",
    [Q_AUDIT_INSERT] = "INSERT INTO audit_log(at, actor, action, account_id, key_id, key_name) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_AUDIT_ALL] = AUDIT_COLS "ORDER BY seq DESC LIMIT ?1",
    [Q_AUDIT_ACCOUNT] = AUDIT_COLS "WHERE account_id = ?1 ORDER BY seq DESC LIMIT ?2",
    [Q_ACCOUNT_INSERT] = "INSERT INTO accounts(id, name, created_at) VALUES (?1, ?2, ?3)",
    [Q_ACCOUNT_EXISTS] = "SELECT 1 FROM accounts WHERE id = ?1",
    [Q_ACCOUNT_GET] = "SELECT id, name, created_at FROM accounts WHERE id = ?1",
    [Q_ACCOUNT_LIST] = "SELECT id, name, created_at FROM accounts ORDER BY rowid",
    /* The limit check and the insert are one statement inside the write lock. */
    [Q_KEY_INSERT] = "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, "
                     "pepper_version, created_at, last_used_at, expires_at) "
                     "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 "
                     "WHERE (SELECT count(*) FROM api_keys WHERE account_id = ?2 "
                     "AND (expires_at IS NULL OR expires_at > ?11)) < ?12",
    [Q_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys WHERE account_id = ?1 ORDER BY seq DESC",
    [Q_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1 AND account_id = ?2",
    [Q_KEY_DELETE] = "DELETE FROM api_keys WHERE id = ?1 AND account_id = ?2 "
                     "RETURNING name, hash, pepper_version",
    [Q_KEY_FIND] = "SELECT " KEY_COLS " FROM api_keys WHERE hash = ?1 AND pepper_version = ?2",
    [Q_KEY_TOUCH] = "UPDATE api_keys SET last_used_at = ?2 "
                    "WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
    [Q_ROOT_INSERT] = "INSERT INTO root_keys(id, name, masked, hash, pepper_version, created_at, "
                      "last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [Q_ROOT_LIST] = "SELECT " ROOT_COLS " FROM root_keys ORDER BY rowid DESC",
    [Q_ROOT_DELETE] = "DELETE FROM root_keys WHERE id = ?1 RETURNING name",
    [Q_ROOT_FIND] = "SELECT " ROOT_COLS " FROM root_keys WHERE hash = ?1 AND pepper_version = ?2",
    [Q_ROOT_TOUCH] = "UPDATE root_keys SET last_used_at = ?2 "
                     "WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
    [Q_USER_INSERT] = "INSERT INTO users(id, account_id, email, password_hash, created_at) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    /* email is declared COLLATE NOCASE, so = compares case-insensitively. */
    [Q_USER_FIND] =
        "SELECT id, account_id, email, created_at, password_hash FROM users WHERE email = ?1",
    [Q_PEPPER_CHECK_INSERT] = "INSERT OR IGNORE INTO pepper_checks(version, check_value, "
                              "created_at) VALUES (?1, ?2, strftime('%s', 'now'))",
    [Q_PEPPER_CHECK_GET] = "SELECT check_value FROM pepper_checks WHERE version = ?1",
    [Q_KEY_COUNT_ACTIVE] =
        "SELECT count(*) FROM api_keys WHERE expires_at IS NULL OR expires_at > ?1",
    [Q_SESSION_PURGE] = "DELETE FROM sessions WHERE expires_at <= ?1",
    [Q_SESSION_INSERT] =
        "INSERT INTO sessions(hash, user_id, created_at, last_seen_at, expires_at) "
        "VALUES (?1, ?2, ?3, ?3, ?4)",
    [Q_SESSION_FIND] = "SELECT u.id, u.account_id, u.email, u.created_at, s.created_at, "
                       "s.last_seen_at, s.expires_at FROM sessions s JOIN users u ON u.id = "
                       "s.user_id WHERE s.hash = ?1",
    [Q_SESSION_TOUCH] =
        "UPDATE sessions SET last_seen_at = ?2 WHERE hash = ?1 AND last_seen_at < ?2",
    [Q_SESSION_DELETE] = "DELETE FROM sessions WHERE hash = ?1",
    [Q_STORE_EMPTY] = "SELECT NOT EXISTS (SELECT 1 FROM accounts) AND "
                      "NOT EXISTS (SELECT 1 FROM root_keys)",
    /* Deferred: the snapshot is taken by the first read and kept to the end. */
    [Q_READ_BEGIN] = "BEGIN",
    /* The feed head's row is the lock that orders every change. */
    [Q_FEED_BUMP] = "UPDATE feed_head SET seq = seq + 1 WHERE one = 1 RETURNING seq",
    [Q_FEED_APPEND] = "INSERT INTO key_changes(seq, at, key_id, hash, pepper_version) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [Q_FEED_HEAD] = "SELECT seq FROM feed_head WHERE one = 1",
    [Q_FEED_PRUNE] = "DELETE FROM key_changes WHERE at < ?1 "
                     "AND seq < (SELECT seq FROM feed_head WHERE one = 1)",
    [Q_KEY_SCAN] = "SELECT " KEY_COLS ", hash, pepper_version FROM api_keys",
    /* Key columns first, as in Q_KEY_SCAN, then the change's own. */
    [Q_CHANGES_SINCE] = "SELECT " KEY_COLS_K ", c.hash, c.pepper_version, c.seq, c.key_id "
                        "FROM key_changes c LEFT JOIN api_keys k ON k.id = c.key_id "
                        "WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2",
};

typedef struct {
    kw_store base;
    kw_sqlite_pool *pool;
    kw_sqlite_watch *watch;        /* NULL: no change token, no verification cache */
    atomic_bool checkpoint_owed;   /* a delete's checkpoint gave up: retry after commits */
    atomic_llong checkpoint_tried; /* when it was last tried, CLOCK_MONOTONIC ms */
} sqlite_store;

/* How often a commit may retry an owed checkpoint, without waiting. */
#define OWED_RETRY_MS 1000

/*
 * Copies text column i of st into dst (size bytes); NULL gives "". Returns
 * false when the stored value does not fit: a record is never silently
 * truncated.
 */
static bool col_text(sqlite3_stmt *st, int i, char *dst, size_t size)
{
    dst[0] = '\0';
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return true;
    const unsigned char *text = sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (!text || n >= size)
        return false;
    memcpy(dst, text, n);
    dst[n] = '\0';
    return true;
}

/* An optional time column: NULL reads as KW_TIME_NONE (absent). */
static int64_t col_time(sqlite3_stmt *st, int i)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? KW_TIME_NONE : sqlite3_column_int64(st, i);
}

/* Row readers: fill one record from the current row; false when a value does not fit. */
typedef bool (*row_reader)(sqlite3_stmt *st, void *item);

static bool read_account(sqlite3_stmt *st, void *item)
{
    kw_account *a = item;
    memset(a, 0, sizeof *a);
    a->created_at = sqlite3_column_int64(st, 2);
    return col_text(st, 0, a->id, sizeof a->id) && col_text(st, 1, a->name, sizeof a->name);
}

static bool read_key(sqlite3_stmt *st, void *item)
{
    kw_key *k = item;
    memset(k, 0, sizeof *k);
    k->created_at = sqlite3_column_int64(st, 5);
    k->last_used_at = col_time(st, 6);
    k->expires_at = col_time(st, 7);
    return col_text(st, 0, k->id, sizeof k->id) &&
           col_text(st, 1, k->account_id, sizeof k->account_id) &&
           col_text(st, 2, k->name, sizeof k->name) &&
           col_text(st, 3, k->environment, sizeof k->environment) &&
           col_text(st, 4, k->masked, sizeof k->masked);
}

static bool read_root_key(sqlite3_stmt *st, void *item)
{
    kw_root_key *rk = item;
    memset(rk, 0, sizeof *rk);
    rk->created_at = sqlite3_column_int64(st, 3);
    rk->last_used_at = col_time(st, 4);
    return col_text(st, 0, rk->id, sizeof rk->id) && col_text(st, 1, rk->name, sizeof rk->name) &&
           col_text(st, 2, rk->masked, sizeof rk->masked);
}

static bool read_audit(sqlite3_stmt *st, void *item)
{
    kw_audit_entry *e = item;
    memset(e, 0, sizeof *e);
    e->seq = sqlite3_column_int64(st, 0);
    e->at = sqlite3_column_int64(st, 1);
    return col_text(st, 2, e->actor, sizeof e->actor) &&
           col_text(st, 3, e->action, sizeof e->action) &&
           col_text(st, 4, e->account_id, sizeof e->account_id) &&
           col_text(st, 5, e->key_id, sizeof e->key_id) &&
           col_text(st, 6, e->key_name, sizeof e->key_name);
}

/* A key with its hash: KEY_COLS, then hash and pepper_version. */
static bool read_key_row(sqlite3_stmt *st, void *item)
{
    kw_key_row *r = item;
    memset(r, 0, sizeof *r);
    if (!read_key(st, &r->key) || sqlite3_column_bytes(st, 8) != KW_HASH_BYTES)
        return false;
    memcpy(r->hash, sqlite3_column_blob(st, 8), KW_HASH_BYTES);
    r->pepper_version = (uint32_t)sqlite3_column_int64(st, 9);
    return true;
}

/* A row of Q_CHANGES_SINCE: the key's columns are NULL when it is gone. */
static bool read_change(sqlite3_stmt *st, void *item)
{
    kw_key_change *ch = item;
    memset(ch, 0, sizeof *ch);
    if (!read_key_row(st, &ch->row))
        return false;
    ch->seq = sqlite3_column_int64(st, 10);
    ch->present = sqlite3_column_type(st, 0) != SQLITE_NULL;
    return ch->present || col_text(st, 11, ch->row.key.id, sizeof ch->row.key.id);
}

/* Reads the one integer a counting query answers. */
static bool read_count(sqlite3_stmt *st, void *item)
{
    *(int64_t *)item = sqlite3_column_int64(st, 0);
    return true;
}

/*
 * Reads a point lookup whose first step returned rc: the one row into *out,
 * KW_ERR_NOT_FOUND when there is none. Finishes with st.
 */
static kw_status read_one(sqlite3_stmt *st, int rc, row_reader read, void *out)
{
    kw_status status = kw_sqlite_status(rc);
    if (rc == SQLITE_DONE)
        status = KW_ERR_NOT_FOUND;
    else if (rc == SQLITE_ROW && !read(st, out))
        status = KW_ERR_INTERNAL;
    kw_sqlite_done(st);
    return status;
}

/*
 * Reads every row of st, whose first step returned rc, into a new heap
 * array of elem-sized records: *items (NULL when empty) and *count, which
 * the caller frees. On failure both are NULL/0. Finishes with st.
 */
static kw_status read_all(sqlite3_stmt *st, int rc, row_reader read, size_t elem, void **items,
                          size_t *count)
{
    char *array = NULL;
    size_t n = 0, cap = 0;
    kw_status status = KW_OK;
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        if (n == cap) {
            size_t more = cap ? cap * 2 : 16;
            char *grown = realloc(array, more * elem);
            if (!grown) {
                status = KW_ERR_INTERNAL;
                break;
            }
            array = grown;
            cap = more;
        }
        if (!read(st, array + n * elem)) {
            status = KW_ERR_INTERNAL;
            break;
        }
        n++;
    }
    if (status == KW_OK && rc != SQLITE_DONE)
        status = kw_sqlite_status(rc);
    kw_sqlite_done(st);
    if (status != KW_OK) {
        free(array);
        array = NULL;
        n = 0;
    }
    *items = array;
    *count = n;
    return status;
}

/* Appends the audit entry of the change being made, inside its transaction. */
static kw_status audit(kw_sqlite_conn *c, const kw_audit *au, const char *account_id,
                       const char *key_id, const char *key_name)
{
    return kw_sqlite_exec(c, Q_AUDIT_INSERT, "ittttt", au->at, au->actor, au->action, account_id,
                          key_id, key_name);
}

/* KW_OK when account `id` exists, KW_ERR_NOT_FOUND when it does not. */
static kw_status account_exists(kw_sqlite_conn *c, const char *id)
{
    sqlite3_stmt *st;
    int rc = kw_sqlite_run(c, Q_ACCOUNT_EXISTS, &st, "t", id);
    kw_sqlite_done(st);
    return rc == SQLITE_DONE ? KW_ERR_NOT_FOUND : kw_sqlite_status(rc);
}

/* What a delete's RETURNING gives back: the name, and for a key its hash. */
typedef struct {
    char name[KW_NAME_BUFSZ];
    uint8_t hash[KW_HASH_BYTES];
    int64_t pepper_version;
} deleted_row;

static bool read_deleted(sqlite3_stmt *st, void *item)
{
    deleted_row *d = item;
    memset(d, 0, sizeof *d);
    if (sqlite3_column_count(st) > 1) {
        if (sqlite3_column_bytes(st, 1) != KW_HASH_BYTES)
            return false;
        memcpy(d->hash, sqlite3_column_blob(st, 1), KW_HASH_BYTES);
        d->pepper_version = sqlite3_column_int64(st, 2);
    }
    return col_text(st, 0, d->name, sizeof d->name);
}

/*
 * Appends a change of key key_id to the feed, inside the mutation's
 * transaction, and gives its position in *seq. The UPDATE of the head
 * allocates it: BEGIN IMMEDIATE already orders every writer.
 */
static kw_status feed_append(kw_sqlite_conn *c, int64_t at, const char *key_id,
                             const uint8_t hash[KW_HASH_BYTES], int64_t pepper_version,
                             int64_t *seq)
{
    sqlite3_stmt *st;
    int rc = kw_sqlite_run(c, Q_FEED_BUMP, &st, "");
    kw_status status = read_one(st, rc, read_count, seq);
    if (status == KW_ERR_NOT_FOUND) /* the migration seeds the head: never missing */
        status = KW_ERR_INTERNAL;
    if (status == KW_OK)
        status = kw_sqlite_exec(c, Q_FEED_APPEND, "iithi", *seq, at, key_id, hash, pepper_version);
    return status;
}

#define STORE(base) (((sqlite_store *)(base))->pool)

/*
 * Runs point lookup q with the arguments after fmt (as kw_sqlite_run) and
 * reads its row into out: KW_ERR_NOT_FOUND when there is none.
 */
static kw_status lookup(kw_store *base, int q, row_reader read, void *out, const char *fmt, ...)
{
    kw_sqlite_conn *c;
    kw_status status = kw_sqlite_acquire(STORE(base), &c);
    if (status != KW_OK)
        return status;
    sqlite3_stmt *st;
    va_list ap;
    va_start(ap, fmt);
    int rc = kw_sqlite_vrun(c, q, &st, fmt, ap);
    va_end(ap);
    status = read_one(st, rc, read, out);
    kw_sqlite_release(STORE(base), c);
    return status;
}

/*
 * Runs query q with the arguments after fmt and reads all its rows into a
 * new heap array (*items, *count; see read_all).
 */
static kw_status list_rows(kw_store *base, int q, row_reader read, size_t elem, void **items,
                           size_t *count, const char *fmt, ...)
{
    *items = NULL;
    *count = 0;
    kw_sqlite_conn *c;
    kw_status status = kw_sqlite_acquire(STORE(base), &c);
    if (status != KW_OK)
        return status;
    sqlite3_stmt *st;
    va_list ap;
    va_start(ap, fmt);
    int rc = kw_sqlite_vrun(c, q, &st, fmt, ap);
    va_end(ap);
    status = read_all(st, rc, read, elem, items, count);
    kw_sqlite_release(STORE(base), c);
    return status;
}

/*
 * Opens a write transaction on a pooled connection: on KW_OK *c is in
 * BEGIN IMMEDIATE and must be passed to tx_close; on failure nothing is held.
 */
static kw_status tx_open(kw_store *base, kw_sqlite_conn **c)
{
    kw_status status = kw_sqlite_acquire(STORE(base), c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_begin(*c);
    if (status != KW_OK)
        kw_sqlite_release(STORE(base), *c);
    return status;
}

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Runs the checkpoint that removes deleted hashes from the files (see
 * delete_row): after a delete (`delete` true), waiting a little for
 * readers; after any other commit only when an earlier one gave up, at
 * most once per OWED_RETRY_MS and without waiting, so that a long reader
 * (a backup) does not slow every write down. Remembers it as owed while
 * it does not complete.
 */
static void settle_checkpoint(kw_store *base, kw_sqlite_conn *c, bool delete)
{
    sqlite_store *s = (sqlite_store *)base;
    long long now = monotonic_ms();
    if (!delete &&(!atomic_load(&s->checkpoint_owed) ||
                   now - atomic_load(&s->checkpoint_tried) < OWED_RETRY_MS))
        return;
    atomic_store(&s->checkpoint_tried, now);
    atomic_store(&s->checkpoint_owed, kw_sqlite_checkpoint(c, delete) != KW_OK);
}

/*
 * Commits when status is KW_OK, else rolls back; after a commit, runs a
 * checkpoint that a delete still owes; releases c; returns the final status.
 */
static kw_status tx_close(kw_store *base, kw_sqlite_conn *c, kw_status status)
{
    status = kw_sqlite_end(c, status);
    if (status == KW_OK)
        settle_checkpoint(base, c, false);
    kw_sqlite_release(STORE(base), c);
    return status;
}

/*
 * The operations below share one shape: take a connection, run the
 * statements, give it back. Mutations run between tx_open and tx_close,
 * their audit entry included.
 */

static kw_status op_migrate(kw_store *base, int *version, kw_error *err)
{
    kw_sqlite_conn *c;
    kw_status status = kw_sqlite_acquire(STORE(base), &c);
    if (status != KW_OK)
        return kw_error_set(err, status, "Could not open the database.");
    status = kw_sqlite_migrate(c->db, version, err);
    kw_sqlite_release(STORE(base), c);
    return status;
}

static kw_status op_ping(kw_store *base)
{
    kw_sqlite_conn *c;
    kw_status status = kw_sqlite_acquire(STORE(base), &c);
    if (status == KW_OK) {
        status = kw_sqlite_exec(c, Q_PING, "");
        kw_sqlite_release(STORE(base), c);
    }
    return status;
}

static kw_status op_account_insert(kw_store *base, const kw_account *a, const kw_audit *au)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_ACCOUNT_INSERT, "tti", a->id, a->name, a->created_at);
    if (status == KW_OK)
        status = audit(c, au, a->id, NULL, NULL);
    return tx_close(base, c, status);
}

static kw_status op_account_get(kw_store *base, const char *id, kw_account *out)
{
    return lookup(base, Q_ACCOUNT_GET, read_account, out, "t", id);
}

static kw_status op_account_list(kw_store *base, kw_account_list *out)
{
    void *items;
    kw_status status =
        list_rows(base, Q_ACCOUNT_LIST, read_account, sizeof *out->items, &items, &out->count, "");
    out->items = items;
    return status;
}

/*
 * The account check, the limit check and the insert happen under one write
 * lock, and the limit check is part of the INSERT itself: no other writer,
 * in any process, can slip a key in between.
 */
static kw_status op_key_insert(kw_store *base, const kw_key *k, const uint8_t hash[KW_HASH_BYTES],
                               uint32_t pepper_version, int limit, int64_t now, const kw_audit *au,
                               int64_t *seq)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = account_exists(c, k->account_id);
    if (status == KW_OK)
        status = kw_sqlite_exec(c, Q_KEY_INSERT, "ttttthiiooii", k->id, k->account_id, k->name,
                                k->environment, k->masked, hash, (int64_t)pepper_version,
                                k->created_at, k->last_used_at, k->expires_at, now, (int64_t)limit);
    if (status == KW_OK && sqlite3_changes(c->db) == 0)
        status = KW_ERR_LIMIT;
    if (status == KW_OK)
        status = audit(c, au, k->account_id, k->id, k->name);
    int64_t pos = 0;
    if (status == KW_OK)
        status = feed_append(c, au->at, k->id, hash, (int64_t)pepper_version, &pos);
    status = tx_close(base, c, status);
    if (status == KW_OK && seq)
        *seq = pos;
    return status;
}

/* active_count is counted from the rows read, so it agrees with the list. */
static kw_status op_key_list(kw_store *base, const char *account_id, int64_t now, kw_key_list *out)
{
    memset(out, 0, sizeof *out);
    void *items;
    kw_status status = list_rows(base, Q_KEY_LIST, read_key, sizeof *out->items, &items,
                                 &out->count, "t", account_id);
    out->items = items;
    for (size_t i = 0; i < out->count; i++)
        if (kw_key_active(&out->items[i], now))
            out->active_count++;
    return status;
}

static kw_status op_key_get(kw_store *base, const char *account_id, const char *key_id, kw_key *out)
{
    return lookup(base, Q_KEY_GET, read_key, out, "tt", key_id, account_id);
}

/*
 * A delete removes the hash from the files, not only from the table. Every
 * connection runs with secure_delete, so the delete zeroes the freed cells
 * in the new versions of its pages; but older frames in the WAL (the
 * insert, last-used updates) and the database file itself still hold the
 * hash. So the delete, once committed, checkpoints (kw_sqlite_checkpoint):
 * every frame is copied into the database file and the WAL is cut to zero
 * bytes, without making readers or writers wait. The delete has committed
 * already, so when the checkpoint gives up (a reader held an old snapshot
 * for 0.1 s: a backup step, a machine starved of CPU) the store owes it,
 * and tries it again after its later commits of any change (the next key,
 * the next batch of last-used times), at most once a second and without
 * waiting; closing the last connection also checkpoints and removes the
 * WAL.
 */
/*
 * Deletes a key (account_id set) or a root key (account_id NULL) and
 * records it, in one transaction: the audit entry and, for a key, the
 * change in the feed, whose position goes to *seq. Then checkpoints so
 * that the hash leaves the database and WAL files too (above); the feed
 * keeps the hash of a deleted key until feed_prune removes its entry,
 * which checkpoints in the same way.
 */
static kw_status delete_row(kw_store *base, const char *account_id, const char *id,
                            const kw_audit *au, int64_t *seq)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    deleted_row gone;
    sqlite3_stmt *st;
    int rc = account_id ? kw_sqlite_run(c, Q_KEY_DELETE, &st, "tt", id, account_id)
                        : kw_sqlite_run(c, Q_ROOT_DELETE, &st, "t", id);
    status = read_one(st, rc, read_deleted, &gone);
    if (status == KW_OK)
        status = audit(c, au, account_id, id, gone.name);
    int64_t pos = 0;
    if (status == KW_OK && account_id)
        status = feed_append(c, au->at, id, gone.hash, gone.pepper_version, &pos);
    status = kw_sqlite_end(c, status);
    if (status == KW_OK)
        settle_checkpoint(base, c, true);
    kw_sqlite_release(STORE(base), c);
    if (status == KW_OK && seq)
        *seq = pos;
    return status;
}

static kw_status op_key_delete(kw_store *base, const char *account_id, const char *key_id,
                               const kw_audit *au, int64_t *seq)
{
    return delete_row(base, account_id, key_id, au, seq);
}

static kw_status op_key_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                             uint32_t pepper_version, kw_key *out)
{
    return lookup(base, Q_KEY_FIND, read_key, out, "hi", hash, (int64_t)pepper_version);
}

/* One transaction for the whole batch: one fsync however many keys were used. */
static kw_status op_touch(kw_store *base, const kw_touch *items, size_t count)
{
    if (count == 0)
        return KW_OK;
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    for (size_t i = 0; i < count && status == KW_OK; i++) {
        const kw_touch *t = &items[i];
        if (strncmp(t->id, "key_", 4) == 0)
            status = kw_sqlite_exec(c, Q_KEY_TOUCH, "ti", t->id, t->at);
        else if (strncmp(t->id, "rk_", 3) == 0)
            status = kw_sqlite_exec(c, Q_ROOT_TOUCH, "ti", t->id, t->at);
    }
    return tx_close(base, c, status);
}

static kw_status op_root_key_insert(kw_store *base, const kw_root_key *rk,
                                    const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                                    const kw_audit *au)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_ROOT_INSERT, "ttthiio", rk->id, rk->name, rk->masked, hash,
                            (int64_t)pepper_version, rk->created_at, rk->last_used_at);
    if (status == KW_OK)
        status = audit(c, au, NULL, rk->id, rk->name);
    return tx_close(base, c, status);
}

static kw_status op_root_key_list(kw_store *base, kw_root_key_list *out)
{
    void *items;
    kw_status status =
        list_rows(base, Q_ROOT_LIST, read_root_key, sizeof *out->items, &items, &out->count, "");
    out->items = items;
    return status;
}

static kw_status op_root_key_delete(kw_store *base, const char *id, const kw_audit *au)
{
    return delete_row(base, NULL, id, au, NULL);
}

static kw_status op_root_key_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                  uint32_t pepper_version, kw_root_key *out)
{
    return lookup(base, Q_ROOT_FIND, read_root_key, out, "hi", hash, (int64_t)pepper_version);
}

/* The audit entry names the account only: never the password hash. */
static kw_status op_user_insert(kw_store *base, const kw_user *u, const char *password_hash,
                                const kw_audit *au)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = account_exists(c, u->account_id);
    if (status == KW_OK)
        status = kw_sqlite_exec(c, Q_USER_INSERT, "tttti", u->id, u->account_id, u->email,
                                password_hash, u->created_at);
    if (status == KW_OK)
        status = audit(c, au, u->account_id, NULL, NULL);
    return tx_close(base, c, status);
}

static kw_status op_user_find_by_email(kw_store *base, const char *email, kw_user *out,
                                       char *password_hash, size_t hash_size)
{
    kw_sqlite_conn *c;
    kw_status status = kw_sqlite_acquire(STORE(base), &c);
    if (status != KW_OK)
        return status;
    sqlite3_stmt *st;
    int rc = kw_sqlite_run(c, Q_USER_FIND, &st, "t", email);
    status = rc == SQLITE_DONE ? KW_ERR_NOT_FOUND : kw_sqlite_status(rc);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->created_at = sqlite3_column_int64(st, 3);
        if (!col_text(st, 0, out->id, sizeof out->id) ||
            !col_text(st, 1, out->account_id, sizeof out->account_id) ||
            !col_text(st, 2, out->email, sizeof out->email) ||
            !col_text(st, 4, password_hash, hash_size)) {
            memset(password_hash, 0, hash_size);
            status = KW_ERR_INTERNAL;
        }
    }
    kw_sqlite_done(st);
    kw_sqlite_release(STORE(base), c);
    return status;
}

static kw_status op_audit_list(kw_store *base, const char *account_id, size_t limit,
                               kw_audit_list *out)
{
    int64_t n = limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
    size_t elem = sizeof *out->items;
    void *items;
    kw_status status =
        account_id ? list_rows(base, Q_AUDIT_ACCOUNT, read_audit, elem, &items, &out->count, "ti",
                               account_id, n)
                   : list_rows(base, Q_AUDIT_ALL, read_audit, elem, &items, &out->count, "i", n);
    out->items = items;
    return status;
}

static kw_status op_pepper_check(kw_store *base, uint32_t version,
                                 const uint8_t check[KW_HASH_BYTES])
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_PEPPER_CHECK_INSERT, "ih", (int64_t)version, check);
    sqlite3_stmt *st = NULL;
    int rc = status == KW_OK ? kw_sqlite_run(c, Q_PEPPER_CHECK_GET, &st, "i", (int64_t)version)
                             : SQLITE_OK;
    if (status == KW_OK && rc != SQLITE_ROW)
        status = rc == SQLITE_DONE ? KW_ERR_INTERNAL : kw_sqlite_status(rc);
    else if (status == KW_OK && (sqlite3_column_bytes(st, 0) != KW_HASH_BYTES ||
                                 memcmp(sqlite3_column_blob(st, 0), check, KW_HASH_BYTES) != 0))
        status = KW_ERR_CONFLICT;
    kw_sqlite_done(st);
    /* A mismatch changed nothing; commit only a first-time insert. */
    return tx_close(base, c, status);
}

static kw_status op_key_count_active(kw_store *base, int64_t now, int64_t *count)
{
    return lookup(base, Q_KEY_COUNT_ACTIVE, read_count, count, "i", now);
}

static kw_status op_bootstrap(kw_store *base, const kw_account *a, const kw_user *u,
                              const char *password_hash, const kw_root_key *rk,
                              const uint8_t rk_hash[KW_HASH_BYTES], uint32_t pepper_version,
                              const kw_audit *au)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    sqlite3_stmt *st;
    int rc = kw_sqlite_run(c, Q_STORE_EMPTY, &st, "");
    int64_t empty = 0;
    status = read_one(st, rc, read_count, &empty);
    if (status == KW_OK && !empty)
        status = KW_ERR_CONFLICT;
    kw_audit step = *au;
    if (status == KW_OK) {
        status = kw_sqlite_exec(c, Q_ACCOUNT_INSERT, "tti", a->id, a->name, a->created_at);
        step.action = "account.create";
        if (status == KW_OK)
            status = audit(c, &step, a->id, NULL, NULL);
    }
    if (status == KW_OK) {
        status = kw_sqlite_exec(c, Q_USER_INSERT, "tttti", u->id, u->account_id, u->email,
                                password_hash, u->created_at);
        step.action = "user.add";
        if (status == KW_OK)
            status = audit(c, &step, u->account_id, NULL, NULL);
    }
    if (status == KW_OK) {
        status = kw_sqlite_exec(c, Q_ROOT_INSERT, "ttthiio", rk->id, rk->name, rk->masked, rk_hash,
                                (int64_t)pepper_version, rk->created_at, rk->last_used_at);
        step.action = "root_key.create";
        if (status == KW_OK)
            status = audit(c, &step, NULL, rk->id, rk->name);
    }
    return tx_close(base, c, status);
}

static kw_status op_change_token(kw_store *base, uint64_t *token)
{
    sqlite_store *s = (sqlite_store *)base;
    if (!s->watch)
        return KW_ERR_UNAVAILABLE;
    *token = kw_sqlite_watch_token(s->watch);
    return KW_OK;
}

static bool read_session(sqlite3_stmt *st, void *item)
{
    kw_session *s = item;
    memset(s, 0, sizeof *s);
    s->user.created_at = sqlite3_column_int64(st, 3);
    s->created_at = sqlite3_column_int64(st, 4);
    s->last_seen_at = sqlite3_column_int64(st, 5);
    s->expires_at = sqlite3_column_int64(st, 6);
    return col_text(st, 0, s->user.id, sizeof s->user.id) &&
           col_text(st, 1, s->user.account_id, sizeof s->user.account_id) &&
           col_text(st, 2, s->user.email, sizeof s->user.email);
}

static kw_status op_session_insert(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                   const char *user_id, int64_t now, int64_t expires_at)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_SESSION_PURGE, "i", now);
    if (status == KW_OK)
        status = kw_sqlite_exec(c, Q_SESSION_INSERT, "htii", hash, user_id, now, expires_at);
    return tx_close(base, c, status);
}

static kw_status op_session_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES], kw_session *out)
{
    return lookup(base, Q_SESSION_FIND, read_session, out, "h", hash);
}

static kw_status op_session_touch(kw_store *base, const uint8_t hash[KW_HASH_BYTES], int64_t at)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_SESSION_TOUCH, "hi", hash, at);
    return tx_close(base, c, status);
}

static kw_status op_session_delete(kw_store *base, const uint8_t hash[KW_HASH_BYTES])
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_SESSION_DELETE, "h", hash);
    if (status == KW_OK && sqlite3_changes(c->db) == 0)
        status = KW_ERR_NOT_FOUND;
    return tx_close(base, c, status);
}

static kw_status op_feed_head(kw_store *base, int64_t *head)
{
    return lookup(base, Q_FEED_HEAD, read_count, head, "");
}

/*
 * One read transaction: the head and the rows come from the snapshot its
 * first read takes, while writers go on committing to the WAL. The rows
 * are stepped one at a time, never all held.
 */
static kw_status op_key_scan(kw_store *base, kw_key_row_fn fn, void *ctx, int64_t *head)
{
    kw_sqlite_conn *c;
    kw_status status = kw_sqlite_acquire(STORE(base), &c);
    if (status != KW_OK)
        return status;
    int64_t at = 0;
    status = kw_sqlite_exec(c, Q_READ_BEGIN, "");
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_OK;
    if (status == KW_OK) {
        rc = kw_sqlite_run(c, Q_FEED_HEAD, &st, "");
        status = read_one(st, rc, read_count, &at);
    }
    if (status == KW_OK) {
        rc = kw_sqlite_run(c, Q_KEY_SCAN, &st, "");
        for (; rc == SQLITE_ROW && status == KW_OK; rc = sqlite3_step(st)) {
            kw_key_row row;
            status = read_key_row(st, &row) ? fn(ctx, &row) : KW_ERR_INTERNAL;
        }
        if (status == KW_OK && rc != SQLITE_DONE)
            status = kw_sqlite_status(rc);
        kw_sqlite_done(st);
    }
    status = kw_sqlite_end(c, status);
    kw_sqlite_release(STORE(base), c);
    if (status == KW_OK)
        *head = at;
    return status;
}

static kw_status op_changes_since(kw_store *base, int64_t after, size_t limit,
                                  kw_key_change_list *out)
{
    int64_t n = limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
    void *items;
    kw_status status = list_rows(base, Q_CHANGES_SINCE, read_change, sizeof *out->items, &items,
                                 &out->count, "ii", after, n);
    out->items = items;
    return status;
}

/* Pruned entries may hold hashes of deleted keys: checkpoint as a delete does. */
static kw_status op_feed_prune(kw_store *base, int64_t before)
{
    kw_sqlite_conn *c;
    kw_status status = tx_open(base, &c);
    if (status != KW_OK)
        return status;
    status = kw_sqlite_exec(c, Q_FEED_PRUNE, "i", before);
    bool pruned = status == KW_OK && sqlite3_changes(c->db) > 0;
    status = kw_sqlite_end(c, status);
    if (status == KW_OK)
        settle_checkpoint(base, c, pruned);
    kw_sqlite_release(STORE(base), c);
    return status;
}

static void op_close(kw_store *base)
{
    if (!base)
        return;
    kw_sqlite_watch_close(((sqlite_store *)base)->watch);
    kw_sqlite_pool_close(STORE(base));
    free(base);
}

static const kw_store_ops sqlite_ops = {
    .close = op_close,
    .migrate = op_migrate,
    .ping = op_ping,
    .account_insert = op_account_insert,
    .account_get = op_account_get,
    .account_list = op_account_list,
    .key_insert = op_key_insert,
    .key_list = op_key_list,
    .key_get = op_key_get,
    .key_delete = op_key_delete,
    .key_find = op_key_find,
    .touch = op_touch,
    .root_key_insert = op_root_key_insert,
    .root_key_list = op_root_key_list,
    .root_key_delete = op_root_key_delete,
    .root_key_find = op_root_key_find,
    .user_insert = op_user_insert,
    .user_find_by_email = op_user_find_by_email,
    .pepper_check = op_pepper_check,
    .audit_list = op_audit_list,
    .change_token = op_change_token,
    .session_insert = op_session_insert,
    .session_find = op_session_find,
    .session_touch = op_session_touch,
    .session_delete = op_session_delete,
    .key_count_active = op_key_count_active,
    .feed_head = op_feed_head,
    .key_scan = op_key_scan,
    .changes_since = op_changes_since,
    .feed_prune = op_feed_prune,
    .bootstrap = op_bootstrap,
};

/*
 * Creates the database file with mode 0600 before SQLite opens it (SQLite
 * gives its -wal and -shm files the same mode), and takes group and other
 * access away from an existing file: it holds key hashes.
 */
static kw_status create_private(const char *path, kw_error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Could not open the database file: %s.",
                            strerror(errno));
    struct stat st;
    kw_status status = KW_OK;
    if (fstat(fd, &st) != 0 || ((st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) != 0))
        status = kw_error_set(err, KW_ERR_UNAVAILABLE,
                              "The database file is accessible to other users and its mode "
                              "could not be set to 0600: %s.",
                              strerror(errno));
    close(fd);
    return status;
}

kw_status kw_store_sqlite_open(const char *path, kw_store **out, kw_error *err)
{
    *out = NULL;
    /* Each pooled connection would get its own empty in-memory database. */
    if (!path || !*path || strcmp(path, ":memory:") == 0)
        return kw_error_set(err, KW_ERR_INVALID, "The SQLite store needs a file path.");
    kw_status status = create_private(path, err);
    if (status != KW_OK)
        return status;
    sqlite_store *s = calloc(1, sizeof *s);
    if (!s)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    int rc = kw_sqlite_pool_open(path, query_sql, Q_COUNT, POOL_SIZE, &s->pool);
    if (rc != SQLITE_OK) {
        free(s);
        return kw_error_set(err, kw_sqlite_status(rc), "Could not open the database: %s.",
                            sqlite3_errstr(rc));
    }
    s->base.ops = &sqlite_ops;
    atomic_init(&s->checkpoint_owed, false);
    atomic_init(&s->checkpoint_tried, 0);
    s->watch = kw_sqlite_watch_open(path);
    *out = &s->base;
    return KW_OK;
}
