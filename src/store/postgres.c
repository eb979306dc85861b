/*
 * postgres.c - the PostgreSQL backend of the store, for one node or many.
 *
 * Each operation is a body run by postgres_pool.c on a pooled connection:
 * reads on their own, mutations inside one transaction with their audit
 * entry. The pool retries serialization failures, deadlocks and dropped
 * connections, so every body can be run more than once and only the last
 * run counts; a failure changes nothing.
 *
 * Checks that must still hold when a mutation writes are made under a lock
 * every node respects: the key limit under the account's row lock (SELECT
 * ... FOR UPDATE), the first-run bootstrap under a table lock. The
 * transactions are READ COMMITTED, so the statement after a lock wait sees
 * what the holder of the lock committed.
 */
#include "store/store.h"
#include "store/postgres_pool.h"
#include "store/postgres_schema.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define POOL_SIZE           8
#define SCAN_BATCH          "10000" /* rows of a key scan fetched at a time */
#define FEED_CHANNEL        "keyward_feed"
#define UNAVAILABLE_WAIT_MS 500 /* how long feed_wait pauses when it cannot listen */

enum {
    Q_PING,
    Q_AUDIT_INSERT,
    Q_AUDIT_ALL,
    Q_AUDIT_ACCOUNT,
    Q_ACCOUNT_INSERT,
    Q_ACCOUNT_EXISTS,
    Q_ACCOUNT_LOCK,
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
    Q_FEED_BUMP,
    Q_FEED_APPEND,
    Q_FEED_HEAD,
    Q_FEED_LOCK,
    Q_FEED_PRUNE,
    Q_CHANGES_SINCE,
    Q_NODE_RENEW,
    Q_NODES_BEHIND,
    Q_NODE_LEAVE,
    Q_COUNT
};

#define KEY_COLS "id, account_id, name, environment, masked, created_at, last_used_at, expires_at"
#define KEY_COLS_K                                                                                 \
    "k.id, k.account_id, k.name, k.environment, k.masked, k.created_at, k.last_used_at, "          \
    "k.expires_at"
/* The database's clock in milliseconds: the one clock every node's lease is measured by. */
#define CLOCK_MS   "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
#define ROOT_COLS  "id, name, masked, created_at, last_used_at"
#define AUDIT_COLS "SELECT seq, at, actor, action, account_id, key_id, key_name FROM audit_log "
/* Raises last_used_at to the newest time given per id (GREATEST): never lowers it. */
#define TOUCH(table)                                                                               \
    "UPDATE " table " AS k SET last_used_at = t.at "                                               \
    "FROM (SELECT id, max(at) AS at FROM unnest($1::text[], $2::bigint[]) AS u(id, at) "           \
    "GROUP BY id) AS t WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.at)"

static const char *const query_sql[Q_COUNT] = {
    [Q_PING] = "SELECT 1",
    [Q_AUDIT_INSERT] = "INSERT INTO audit_log(at, actor, action, account_id, key_id, key_name) "
                       "VALUES ($1, $2, $3, $4, $5, $6)",
    [Q_AUDIT_ALL] = AUDIT_COLS "ORDER BY seq DESC LIMIT $1",
    [Q_AUDIT_ACCOUNT] = AUDIT_COLS "WHERE account_id = $1 ORDER BY seq DESC LIMIT $2",
    [Q_ACCOUNT_INSERT] = "INSERT INTO accounts(id, name, created_at) VALUES ($1, $2, $3)",
    [Q_ACCOUNT_EXISTS] = "SELECT 1 FROM accounts WHERE id = $1",
    /* Held until commit: every node's key inserts for the account queue here. */
    [Q_ACCOUNT_LOCK] = "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
    [Q_ACCOUNT_GET] = "SELECT id, name, created_at FROM accounts WHERE id = $1",
    [Q_ACCOUNT_LIST] = "SELECT id, name, created_at FROM accounts ORDER BY seq",
    /* Run under Q_ACCOUNT_LOCK: the count sees every key committed before it. */
    [Q_KEY_INSERT] = "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, "
                     "pepper_version, created_at, last_used_at, expires_at) "
                     "SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::bytea, "
                     "$7::bigint, $8::bigint, $9::bigint, $10::bigint "
                     "WHERE (SELECT count(*) FROM api_keys WHERE account_id = $2::text "
                     "AND (expires_at IS NULL OR expires_at > $11::bigint)) < $12::bigint",
    [Q_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys WHERE account_id = $1 ORDER BY seq DESC",
    [Q_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys WHERE id = $1 AND account_id = $2",
    [Q_KEY_DELETE] = "DELETE FROM api_keys WHERE id = $1 AND account_id = $2 "
                     "RETURNING name, hash, pepper_version",
    [Q_KEY_FIND] = "SELECT " KEY_COLS " FROM api_keys WHERE hash = $1 AND pepper_version = $2",
    [Q_KEY_TOUCH] = TOUCH("api_keys"),
    [Q_ROOT_INSERT] = "INSERT INTO root_keys(id, name, masked, hash, pepper_version, created_at, "
                      "last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    [Q_ROOT_LIST] = "SELECT " ROOT_COLS " FROM root_keys ORDER BY seq DESC",
    [Q_ROOT_DELETE] = "DELETE FROM root_keys WHERE id = $1 RETURNING name",
    [Q_ROOT_FIND] = "SELECT " ROOT_COLS " FROM root_keys WHERE hash = $1 AND pepper_version = $2",
    [Q_ROOT_TOUCH] = TOUCH("root_keys"),
    [Q_USER_INSERT] = "INSERT INTO users(id, account_id, email, password_hash, created_at) "
                      "VALUES ($1, $2, $3, $4, $5)",
    /* lower(email) is the unique index: one user per email, whatever its case. */
    [Q_USER_FIND] = "SELECT id, account_id, email, created_at, password_hash FROM users "
                    "WHERE lower(email) = lower($1)",
    [Q_PEPPER_CHECK_INSERT] = "INSERT INTO pepper_checks(version, check_value, created_at) "
                              "VALUES ($1, $2, extract(epoch FROM now())::bigint) "
                              "ON CONFLICT (version) DO NOTHING",
    [Q_PEPPER_CHECK_GET] = "SELECT check_value = $2::bytea FROM pepper_checks WHERE version = $1",
    [Q_KEY_COUNT_ACTIVE] =
        "SELECT count(*) FROM api_keys WHERE expires_at IS NULL OR expires_at > $1",
    [Q_SESSION_PURGE] = "DELETE FROM sessions WHERE expires_at <= $1",
    [Q_SESSION_INSERT] =
        "INSERT INTO sessions(hash, user_id, created_at, last_seen_at, expires_at) "
        "VALUES ($1, $2, $3, $3, $4)",
    [Q_SESSION_FIND] = "SELECT u.id, u.account_id, u.email, u.created_at, s.created_at, "
                       "s.last_seen_at, s.expires_at FROM sessions s JOIN users u ON u.id = "
                       "s.user_id WHERE s.hash = $1",
    /* Raises last_seen_at only: a touch that arrives late never lowers it. */
    [Q_SESSION_TOUCH] =
        "UPDATE sessions SET last_seen_at = $2 WHERE hash = $1 AND last_seen_at < $2",
    [Q_SESSION_DELETE] = "DELETE FROM sessions WHERE hash = $1",
    [Q_STORE_EMPTY] = "SELECT NOT EXISTS (SELECT 1 FROM accounts) AND "
                      "NOT EXISTS (SELECT 1 FROM root_keys)",
    /* The row lock on the head orders every change, on every node, until
     * commit; the notification is delivered at commit, to every listener. */
    [Q_FEED_BUMP] = "UPDATE feed_head SET seq = seq + 1 WHERE one = 1 "
                    "RETURNING seq, pg_notify('" FEED_CHANNEL "', '')",
    [Q_FEED_APPEND] = "INSERT INTO key_changes(seq, at, key_id, hash, pepper_version) "
                      "VALUES ($1, $2, $3, $4, $5)",
    [Q_FEED_HEAD] = "SELECT seq FROM feed_head WHERE one = 1",
    /* Conflicts with Q_FEED_BUMP: no change commits while a lease is granted. */
    [Q_FEED_LOCK] = "SELECT seq FROM feed_head WHERE one = 1 FOR SHARE",
    [Q_FEED_PRUNE] = "DELETE FROM key_changes WHERE at < $1 "
                     "AND seq < (SELECT seq FROM feed_head WHERE one = 1)",
    /* Key columns first, as in a key scan, then the change's own. */
    [Q_CHANGES_SINCE] = "SELECT " KEY_COLS_K ", c.hash, c.pepper_version, c.seq, c.key_id "
                        "FROM key_changes c LEFT JOIN api_keys k ON k.id = c.key_id "
                        "WHERE c.seq > $1 ORDER BY c.seq LIMIT $2",
    [Q_NODE_RENEW] = "INSERT INTO nodes(id, applied_seq, lease_until_ms, renewed_at) "
                     "VALUES ($1, $2, " CLOCK_MS " + $3, "
                     "extract(epoch FROM clock_timestamp())::bigint) "
                     "ON CONFLICT (id) DO UPDATE SET applied_seq = excluded.applied_seq, "
                     "lease_until_ms = excluded.lease_until_ms, renewed_at = excluded.renewed_at",
    [Q_NODES_BEHIND] =
        "SELECT count(*) FROM nodes WHERE lease_until_ms > " CLOCK_MS " AND applied_seq < $1",
    [Q_NODE_LEAVE] = "DELETE FROM nodes WHERE id = $1",
};

/* The rows of a key scan, read through a cursor (see op_key_scan). */
#define KEY_SCAN_SQL "SELECT " KEY_COLS ", hash, pepper_version FROM api_keys"

typedef struct {
    kw_store base;
    kw_pg_pool *pool;
    PGconn *listener; /* feed_wait's own connection, LISTENing; NULL until needed */
} pg_store;

#define POOL(base) (((pg_store *)(base))->pool)

/*
 * Copies text column col of row into dst (size bytes); NULL gives "".
 * Returns false when the stored value does not fit: a record is never
 * silently truncated.
 */
static bool col_text(const PGresult *res, int row, int col, char *dst, size_t size)
{
    dst[0] = '\0';
    if (PQgetisnull(res, row, col))
        return true;
    size_t n = (size_t)PQgetlength(res, row, col);
    if (n >= size)
        return false;
    memcpy(dst, PQgetvalue(res, row, col), n + 1);
    return true;
}

/* An integer column (never NULL). */
static int64_t col_int(const PGresult *res, int row, int col)
{
    return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

/* An optional time column: NULL reads as KW_TIME_NONE (absent). */
static int64_t col_time(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? KW_TIME_NONE : col_int(res, row, col);
}

/*
 * A bytea column of KW_HASH_BYTES bytes into out: the hex form ("\x...")
 * that servers send by default, or whatever else bytea_output makes them.
 */
static bool col_hash(const PGresult *res, int row, int col, uint8_t out[KW_HASH_BYTES])
{
    if (PQgetisnull(res, row, col))
        return false;
    const char *v = PQgetvalue(res, row, col);
    size_t len = (size_t)PQgetlength(res, row, col), n = 0;
    if (len >= 2 && v[0] == '\\' && v[1] == 'x')
        return sodium_hex2bin(out, KW_HASH_BYTES, v + 2, len - 2, NULL, &n, NULL) == 0 &&
               n == KW_HASH_BYTES;
    unsigned char *bin = PQunescapeBytea((const unsigned char *)v, &n);
    bool ok = bin && n == KW_HASH_BYTES;
    if (ok)
        memcpy(out, bin, KW_HASH_BYTES);
    PQfreemem(bin);
    return ok;
}

/* Row readers: fill one record from a row; false when a value does not fit. */
typedef bool (*row_reader)(const PGresult *res, int row, void *item);

static bool read_account(const PGresult *res, int row, void *item)
{
    kw_account *a = item;
    memset(a, 0, sizeof *a);
    a->created_at = col_int(res, row, 2);
    return col_text(res, row, 0, a->id, sizeof a->id) &&
           col_text(res, row, 1, a->name, sizeof a->name);
}

static bool read_key(const PGresult *res, int row, void *item)
{
    kw_key *k = item;
    memset(k, 0, sizeof *k);
    k->created_at = col_int(res, row, 5);
    k->last_used_at = col_time(res, row, 6);
    k->expires_at = col_time(res, row, 7);
    return col_text(res, row, 0, k->id, sizeof k->id) &&
           col_text(res, row, 1, k->account_id, sizeof k->account_id) &&
           col_text(res, row, 2, k->name, sizeof k->name) &&
           col_text(res, row, 3, k->environment, sizeof k->environment) &&
           col_text(res, row, 4, k->masked, sizeof k->masked);
}

static bool read_root_key(const PGresult *res, int row, void *item)
{
    kw_root_key *rk = item;
    memset(rk, 0, sizeof *rk);
    rk->created_at = col_int(res, row, 3);
    rk->last_used_at = col_time(res, row, 4);
    return col_text(res, row, 0, rk->id, sizeof rk->id) &&
           col_text(res, row, 1, rk->name, sizeof rk->name) &&
           col_text(res, row, 2, rk->masked, sizeof rk->masked);
}

static bool read_audit(const PGresult *res, int row, void *item)
{
    kw_audit_entry *e = item;
    memset(e, 0, sizeof *e);
    e->seq = col_int(res, row, 0);
    e->at = col_int(res, row, 1);
    return col_text(res, row, 2, e->actor, sizeof e->actor) &&
           col_text(res, row, 3, e->action, sizeof e->action) &&
           col_text(res, row, 4, e->account_id, sizeof e->account_id) &&
           col_text(res, row, 5, e->key_id, sizeof e->key_id) &&
           col_text(res, row, 6, e->key_name, sizeof e->key_name);
}

static bool read_session(const PGresult *res, int row, void *item)
{
    kw_session *s = item;
    memset(s, 0, sizeof *s);
    s->user.created_at = col_int(res, row, 3);
    s->created_at = col_int(res, row, 4);
    s->last_seen_at = col_int(res, row, 5);
    s->expires_at = col_int(res, row, 6);
    return col_text(res, row, 0, s->user.id, sizeof s->user.id) &&
           col_text(res, row, 1, s->user.account_id, sizeof s->user.account_id) &&
           col_text(res, row, 2, s->user.email, sizeof s->user.email);
}

/* A key with its hash: KEY_COLS, then hash and pepper_version. */
static bool read_key_row(const PGresult *res, int row, void *item)
{
    kw_key_row *r = item;
    memset(r, 0, sizeof *r);
    if (!read_key(res, row, &r->key) || !col_hash(res, row, 8, r->hash))
        return false;
    r->pepper_version = (uint32_t)col_int(res, row, 9);
    return true;
}

/* A row of Q_CHANGES_SINCE: the key's columns are NULL when it is gone. */
static bool read_change(const PGresult *res, int row, void *item)
{
    kw_key_change *ch = item;
    memset(ch, 0, sizeof *ch);
    if (!read_key_row(res, row, &ch->row))
        return false;
    ch->seq = col_int(res, row, 10);
    ch->present = !PQgetisnull(res, row, 0);
    return ch->present || col_text(res, row, 11, ch->row.key.id, sizeof ch->row.key.id);
}

/* What a delete's RETURNING gives back: the name, and for a key its hash. */
typedef struct {
    char name[KW_NAME_BUFSZ];
    uint8_t hash[KW_HASH_BYTES];
    int64_t pepper_version;
} deleted_row;

static bool read_deleted(const PGresult *res, int row, void *item)
{
    deleted_row *d = item;
    memset(d, 0, sizeof *d);
    if (PQnfields(res) > 1) {
        if (!col_hash(res, row, 1, d->hash))
            return false;
        d->pepper_version = col_int(res, row, 2);
    }
    return col_text(res, row, 0, d->name, sizeof d->name);
}

/* The one integer or boolean ('t' is 1) a query answers. */
static bool read_int(const PGresult *res, int row, void *item)
{
    const char *v = PQgetvalue(res, row, 0);
    *(int64_t *)item = strcmp(v, "t") == 0 ? 1 : strtoll(v, NULL, 10);
    return true;
}

/* Reads the first row of res into out (KW_ERR_NOT_FOUND when none); frees res. */
static kw_status read_one(PGresult *res, row_reader read, void *out)
{
    kw_status status = KW_OK;
    if (PQntuples(res) == 0)
        status = KW_ERR_NOT_FOUND;
    else if (!read(res, 0, out))
        status = KW_ERR_INTERNAL;
    PQclear(res);
    return status;
}

/*
 * A query and its arguments, kept so that the pool may run it again: each
 * run copies ap. Reads fill either out (one row) or items/count (all).
 */
typedef struct {
    int q;
    row_reader read;
    void *out;
    size_t elem;
    void **items;
    size_t *count;
    const char *fmt;
    va_list ap;
} query;

static kw_status on_lookup(kw_pg_conn *c, void *arg)
{
    query *a = arg;
    va_list ap;
    va_copy(ap, a->ap);
    PGresult *res;
    kw_status status = kw_pg_vrun(c, a->q, &res, NULL, a->fmt, ap);
    va_end(ap);
    return status == KW_OK ? read_one(res, a->read, a->out) : status;
}

/* Reads every row into a new heap array of elem-sized records (NULL when empty). */
static kw_status on_list(kw_pg_conn *c, void *arg)
{
    query *a = arg;
    va_list ap;
    va_copy(ap, a->ap);
    PGresult *res;
    kw_status status = kw_pg_vrun(c, a->q, &res, NULL, a->fmt, ap);
    va_end(ap);
    if (status != KW_OK)
        return status;
    int n = PQntuples(res);
    char *array = n > 0 ? calloc((size_t)n, a->elem) : NULL;
    if (n > 0 && !array)
        status = KW_ERR_INTERNAL;
    for (int i = 0; i < n && status == KW_OK; i++)
        if (!a->read(res, i, array + (size_t)i * a->elem))
            status = KW_ERR_INTERNAL;
    PQclear(res);
    if (status != KW_OK) {
        free(array);
        return status;
    }
    *a->items = array;
    *a->count = (size_t)n;
    return KW_OK;
}

/*
 * Runs point lookup q with the arguments after fmt (as kw_pg_run) and reads
 * its row into out: KW_ERR_NOT_FOUND when there is none.
 */
static kw_status lookup(kw_store *base, int q, row_reader read, void *out, const char *fmt, ...)
{
    query a = {.q = q, .read = read, .out = out, .fmt = fmt};
    va_start(a.ap, fmt);
    kw_status status = kw_pg_read(POOL(base), on_lookup, &a);
    va_end(a.ap);
    return status;
}

/*
 * Runs query q with the arguments after fmt and reads all its rows into a
 * new heap array: *items (NULL when empty) and *count, which the caller
 * frees. On failure both are NULL/0.
 */
static kw_status list_rows(kw_store *base, int q, row_reader read, size_t elem, void **items,
                           size_t *count, const char *fmt, ...)
{
    *items = NULL;
    *count = 0;
    query a = {.q = q, .read = read, .elem = elem, .items = items, .count = count, .fmt = fmt};
    va_start(a.ap, fmt);
    kw_status status = kw_pg_read(POOL(base), on_list, &a);
    va_end(a.ap);
    return status;
}

/* Appends the audit entry of the change being made, inside its transaction. */
static kw_status audit(kw_pg_conn *c, const kw_audit *au, const char *action,
                       const char *account_id, const char *key_id, const char *key_name)
{
    return kw_pg_run(c, Q_AUDIT_INSERT, NULL, NULL, "ittttt", au->at, au->actor,
                     action ? action : au->action, account_id, key_id, key_name);
}

/* KW_OK when account id exists (and, for Q_ACCOUNT_LOCK, is now locked). */
static kw_status account_check(kw_pg_conn *c, int q, const char *id)
{
    int64_t rows = 0;
    kw_status status = kw_pg_run(c, q, NULL, &rows, "t", id);
    return status == KW_OK && rows == 0 ? KW_ERR_NOT_FOUND : status;
}

/*
 * The arguments of every mutation; each body reads the fields it needs.
 * Bodies may run more than once (see kw_pg_transact), so they only read
 * their arguments.
 */
typedef struct {
    const kw_audit *au;
    const kw_account *account;
    const kw_key *key;
    const kw_root_key *root_key;
    const kw_user *user;
    const char *password_hash;
    const uint8_t *hash;
    int64_t pepper_version;
    int64_t limit;
    int64_t now;
    int64_t expires_at;
    const char *account_id;
    const char *id;            /* a key's or root key's; a session's user */
    const char *key_arrays[4]; /* touch: key ids, key times, root ids, root times */
    int64_t seq;               /* out: the position of the change in the feed */
} change;

/*
 * Appends a change of key key_id to the feed, inside the mutation's
 * transaction, and gives its position in *seq. The head's row lock,
 * held until commit, makes positions contiguous and in commit order.
 */
static kw_status feed_append(kw_pg_conn *c, int64_t at, const char *key_id,
                             const uint8_t hash[KW_HASH_BYTES], int64_t pepper_version,
                             int64_t *seq)
{
    PGresult *res;
    kw_status status = kw_pg_run(c, Q_FEED_BUMP, &res, NULL, "");
    if (status == KW_OK)
        status = read_one(res, read_int, seq);
    if (status == KW_ERR_NOT_FOUND) /* the migration seeds the head: never missing */
        status = KW_ERR_INTERNAL;
    if (status == KW_OK)
        status = kw_pg_run(c, Q_FEED_APPEND, NULL, NULL, "iithi", *seq, at, key_id, hash,
                           pepper_version);
    return status;
}

static kw_status on_account_insert(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    const kw_account *a = m->account;
    kw_status status =
        kw_pg_run(c, Q_ACCOUNT_INSERT, NULL, NULL, "tti", a->id, a->name, a->created_at);
    return status == KW_OK ? audit(c, m->au, NULL, a->id, NULL, NULL) : status;
}

/* The account's row lock, then the insert that counts under it. */
static kw_status on_key_insert(kw_pg_conn *c, void *arg)
{
    change *m = arg;
    const kw_key *k = m->key;
    kw_status status = account_check(c, Q_ACCOUNT_LOCK, k->account_id);
    int64_t rows = 0;
    if (status == KW_OK)
        status = kw_pg_run(c, Q_KEY_INSERT, NULL, &rows, "ttttthiiooii", k->id, k->account_id,
                           k->name, k->environment, k->masked, m->hash, m->pepper_version,
                           k->created_at, k->last_used_at, k->expires_at, m->now, m->limit);
    if (status == KW_OK && rows == 0)
        status = KW_ERR_LIMIT;
    if (status == KW_OK)
        status = audit(c, m->au, NULL, k->account_id, k->id, k->name);
    return status == KW_OK ? feed_append(c, m->au->at, k->id, m->hash, m->pepper_version, &m->seq)
                           : status;
}

/* DELETE ... RETURNING: a row that a concurrent delete took first is not found. */
static kw_status on_key_delete(kw_pg_conn *c, void *arg)
{
    change *m = arg;
    deleted_row gone;
    PGresult *res;
    kw_status status = m->account_id
                           ? kw_pg_run(c, Q_KEY_DELETE, &res, NULL, "tt", m->id, m->account_id)
                           : kw_pg_run(c, Q_ROOT_DELETE, &res, NULL, "t", m->id);
    if (status == KW_OK)
        status = read_one(res, read_deleted, &gone);
    if (status == KW_OK)
        status = audit(c, m->au, NULL, m->account_id, m->id, gone.name);
    if (status == KW_OK && m->account_id) /* root keys are not in the feed */
        status = feed_append(c, m->au->at, m->id, gone.hash, gone.pepper_version, &m->seq);
    return status;
}

static kw_status on_touch(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = KW_OK;
    if (m->key_arrays[0])
        status = kw_pg_run(c, Q_KEY_TOUCH, NULL, NULL, "tt", m->key_arrays[0], m->key_arrays[1]);
    if (status == KW_OK && m->key_arrays[2])
        status = kw_pg_run(c, Q_ROOT_TOUCH, NULL, NULL, "tt", m->key_arrays[2], m->key_arrays[3]);
    return status;
}

static kw_status insert_root_key(kw_pg_conn *c, const change *m, const char *action)
{
    const kw_root_key *rk = m->root_key;
    kw_status status =
        kw_pg_run(c, Q_ROOT_INSERT, NULL, NULL, "ttthiio", rk->id, rk->name, rk->masked, m->hash,
                  m->pepper_version, rk->created_at, rk->last_used_at);
    return status == KW_OK ? audit(c, m->au, action, NULL, rk->id, rk->name) : status;
}

static kw_status on_root_key_insert(kw_pg_conn *c, void *arg)
{
    return insert_root_key(c, arg, NULL);
}

static kw_status insert_user(kw_pg_conn *c, const change *m, const char *action)
{
    const kw_user *u = m->user;
    kw_status status = kw_pg_run(c, Q_USER_INSERT, NULL, NULL, "tttti", u->id, u->account_id,
                                 u->email, m->password_hash, u->created_at);
    return status == KW_OK ? audit(c, m->au, action, u->account_id, NULL, NULL) : status;
}

/* The audit entry names the account only: never the password hash. */
static kw_status on_user_insert(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = account_check(c, Q_ACCOUNT_EXISTS, m->user->account_id);
    return status == KW_OK ? insert_user(c, m, NULL) : status;
}

/* A mismatch inserted nothing, and the transaction is rolled back anyway. */
static kw_status on_pepper_check(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status =
        kw_pg_run(c, Q_PEPPER_CHECK_INSERT, NULL, NULL, "ih", m->pepper_version, m->hash);
    PGresult *res;
    int64_t same = 0;
    if (status == KW_OK)
        status = kw_pg_run(c, Q_PEPPER_CHECK_GET, &res, NULL, "ih", m->pepper_version, m->hash);
    if (status == KW_OK)
        status = read_one(res, read_int, &same);
    if (status == KW_ERR_NOT_FOUND) /* inserted or already there: a row must exist */
        status = KW_ERR_INTERNAL;
    return status == KW_OK && !same ? KW_ERR_CONFLICT : status;
}

/* The purge of ended sessions, then the insert: one transaction. */
static kw_status on_session_insert(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = kw_pg_run(c, Q_SESSION_PURGE, NULL, NULL, "i", m->now);
    if (status == KW_OK)
        status = kw_pg_run(c, Q_SESSION_INSERT, NULL, NULL, "htii", m->hash, m->id, m->now,
                           m->expires_at);
    return status;
}

static kw_status on_session_touch(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    return kw_pg_run(c, Q_SESSION_TOUCH, NULL, NULL, "hi", m->hash, m->now);
}

/* A session that a concurrent delete took first is not found. */
static kw_status on_session_delete(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    int64_t rows = 0;
    kw_status status = kw_pg_run(c, Q_SESSION_DELETE, NULL, &rows, "h", m->hash);
    return status == KW_OK && rows == 0 ? KW_ERR_NOT_FOUND : status;
}

/*
 * SHARE ROW EXCLUSIVE conflicts with itself and with every insert, so of
 * several nodes bootstrapping at once one goes first and the others then
 * find the store in use; readers are not blocked.
 */
static kw_status on_bootstrap(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status =
        kw_pg_command(c, "LOCK TABLE accounts, root_keys IN SHARE ROW EXCLUSIVE MODE", NULL);
    PGresult *res;
    int64_t empty = 0;
    if (status == KW_OK)
        status = kw_pg_run(c, Q_STORE_EMPTY, &res, NULL, "");
    if (status == KW_OK)
        status = read_one(res, read_int, &empty);
    if (status == KW_OK && !empty)
        status = KW_ERR_CONFLICT;
    const kw_account *a = m->account;
    if (status == KW_OK)
        status = kw_pg_run(c, Q_ACCOUNT_INSERT, NULL, NULL, "tti", a->id, a->name, a->created_at);
    if (status == KW_OK)
        status = audit(c, m->au, "account.create", a->id, NULL, NULL);
    if (status == KW_OK)
        status = insert_user(c, m, "user.add");
    return status == KW_OK ? insert_root_key(c, m, "root_key.create") : status;
}

/* ---- the operations ---- */

static kw_status op_migrate(kw_store *base, int *version, kw_error *err)
{
    kw_pg_conn *c;
    kw_status status = kw_pg_acquire(POOL(base), &c);
    if (status != KW_OK)
        return kw_error_set(err, status, "Could not connect to the PostgreSQL server.");
    status = kw_pg_migrate(c, version, err);
    kw_pg_release(POOL(base), c);
    return status;
}

static kw_status on_ping(kw_pg_conn *c, void *arg)
{
    (void)arg;
    return kw_pg_run(c, Q_PING, NULL, NULL, "");
}

static kw_status op_ping(kw_store *base)
{
    return kw_pg_read(POOL(base), on_ping, NULL);
}

static kw_status op_account_insert(kw_store *base, const kw_account *a, const kw_audit *au)
{
    change m = {.au = au, .account = a};
    return kw_pg_transact(POOL(base), on_account_insert, &m);
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

static kw_status op_key_insert(kw_store *base, const kw_key *k, const uint8_t hash[KW_HASH_BYTES],
                               uint32_t pepper_version, int limit, int64_t now, const kw_audit *au,
                               int64_t *seq)
{
    change m = {.au = au,
                .key = k,
                .hash = hash,
                .pepper_version = pepper_version,
                .limit = limit,
                .now = now};
    kw_status status = kw_pg_transact(POOL(base), on_key_insert, &m);
    if (status == KW_OK && seq)
        *seq = m.seq;
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

static kw_status op_key_delete(kw_store *base, const char *account_id, const char *key_id,
                               const kw_audit *au, int64_t *seq)
{
    change m = {.au = au, .account_id = account_id, .id = key_id};
    kw_status status = kw_pg_transact(POOL(base), on_key_delete, &m);
    if (status == KW_OK && seq)
        *seq = m.seq;
    return status;
}

static kw_status op_key_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                             uint32_t pepper_version, kw_key *out)
{
    return lookup(base, Q_KEY_FIND, read_key, out, "hi", hash, (int64_t)pepper_version);
}

/* The array literals of one touch statement: "{\"key_a\",...}" and "{1700000000,...}". */
typedef struct {
    char *ids;
    char *ats;
    size_t ids_len;
    size_t ats_len;
} batch;

/* Room for count items; false when out of memory (free with batch_free either way). */
static bool batch_init(batch *b, size_t count)
{
    b->ids = malloc(count * (2 * KW_ID_BUFSZ + 3) + 2);
    b->ats = malloc(count * 22 + 2);
    if (!b->ids || !b->ats)
        return false;
    memcpy(b->ids, "{", 2);
    memcpy(b->ats, "{", 2);
    b->ids_len = b->ats_len = 1;
    return true;
}

/* Adds an id, quoted with " and \ escaped so that none can break out of its element. */
static void batch_add(batch *b, const kw_touch *t)
{
    char *p = b->ids + b->ids_len;
    if (b->ids_len > 1)
        *p++ = ',';
    *p++ = '"';
    for (size_t i = 0; i < KW_ID_BUFSZ && t->id[i]; i++) {
        if (t->id[i] == '"' || t->id[i] == '\\')
            *p++ = '\\';
        *p++ = t->id[i];
    }
    *p++ = '"';
    b->ids_len = (size_t)(p - b->ids);
    b->ats_len +=
        (size_t)sprintf(b->ats + b->ats_len, "%s%lld", b->ats_len > 1 ? "," : "", (long long)t->at);
}

/* Closes both literals; NULL ids when nothing was added (the statement is skipped). */
static void batch_close(batch *b, const char **ids, const char **ats)
{
    memcpy(b->ids + b->ids_len, "}", 2);
    memcpy(b->ats + b->ats_len, "}", 2);
    *ids = b->ids_len > 1 ? b->ids : NULL;
    *ats = b->ats;
}

static void batch_free(batch *b)
{
    free(b->ids);
    free(b->ats);
}

/*
 * One transaction and two statements for the whole batch, however many
 * keys were used: the ids and their times travel in two array parameters.
 */
static kw_status op_touch(kw_store *base, const kw_touch *items, size_t count)
{
    if (count == 0)
        return KW_OK;
    batch keys = {0}, roots = {0};
    kw_status status = KW_ERR_INTERNAL;
    if (batch_init(&keys, count) && batch_init(&roots, count)) {
        for (size_t i = 0; i < count; i++)
            if (strncmp(items[i].id, "key_", 4) == 0)
                batch_add(&keys, &items[i]);
            else if (strncmp(items[i].id, "rk_", 3) == 0)
                batch_add(&roots, &items[i]);
        change m = {0};
        batch_close(&keys, &m.key_arrays[0], &m.key_arrays[1]);
        batch_close(&roots, &m.key_arrays[2], &m.key_arrays[3]);
        status =
            m.key_arrays[0] || m.key_arrays[2] ? kw_pg_transact(POOL(base), on_touch, &m) : KW_OK;
    }
    batch_free(&keys);
    batch_free(&roots);
    return status;
}

static kw_status op_root_key_insert(kw_store *base, const kw_root_key *rk,
                                    const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                                    const kw_audit *au)
{
    change m = {.au = au, .root_key = rk, .hash = hash, .pepper_version = pepper_version};
    return kw_pg_transact(POOL(base), on_root_key_insert, &m);
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
    change m = {.au = au, .id = id};
    return kw_pg_transact(POOL(base), on_key_delete, &m);
}

static kw_status op_root_key_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                  uint32_t pepper_version, kw_root_key *out)
{
    return lookup(base, Q_ROOT_FIND, read_root_key, out, "hi", hash, (int64_t)pepper_version);
}

static kw_status op_user_insert(kw_store *base, const kw_user *u, const char *password_hash,
                                const kw_audit *au)
{
    change m = {.au = au, .user = u, .password_hash = password_hash};
    return kw_pg_transact(POOL(base), on_user_insert, &m);
}

typedef struct {
    const char *email;
    kw_user *out;
    char *password_hash;
    size_t hash_size;
} user_query;

static kw_status on_user_find(kw_pg_conn *c, void *arg)
{
    user_query *a = arg;
    PGresult *res;
    kw_status status = kw_pg_run(c, Q_USER_FIND, &res, NULL, "t", a->email);
    if (status != KW_OK)
        return status;
    if (PQntuples(res) == 0) {
        status = KW_ERR_NOT_FOUND;
    } else {
        kw_user *u = a->out;
        memset(u, 0, sizeof *u);
        u->created_at = col_int(res, 0, 3);
        if (!col_text(res, 0, 0, u->id, sizeof u->id) ||
            !col_text(res, 0, 1, u->account_id, sizeof u->account_id) ||
            !col_text(res, 0, 2, u->email, sizeof u->email) ||
            !col_text(res, 0, 4, a->password_hash, a->hash_size)) {
            memset(a->password_hash, 0, a->hash_size);
            status = KW_ERR_INTERNAL;
        }
    }
    PQclear(res);
    return status;
}

static kw_status op_user_find_by_email(kw_store *base, const char *email, kw_user *out,
                                       char *password_hash, size_t hash_size)
{
    user_query a = {email, out, password_hash, hash_size};
    return kw_pg_read(POOL(base), on_user_find, &a);
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
    change m = {.hash = check, .pepper_version = version};
    return kw_pg_transact(POOL(base), on_pepper_check, &m);
}

static kw_status op_key_count_active(kw_store *base, int64_t now, int64_t *count)
{
    return lookup(base, Q_KEY_COUNT_ACTIVE, read_int, count, "i", now);
}

static kw_status op_bootstrap(kw_store *base, const kw_account *a, const kw_user *u,
                              const char *password_hash, const kw_root_key *rk,
                              const uint8_t rk_hash[KW_HASH_BYTES], uint32_t pepper_version,
                              const kw_audit *au)
{
    change m = {.au = au,
                .account = a,
                .user = u,
                .password_hash = password_hash,
                .root_key = rk,
                .hash = rk_hash,
                .pepper_version = pepper_version};
    return kw_pg_transact(POOL(base), on_bootstrap, &m);
}

static kw_status op_session_insert(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                   const char *user_id, int64_t now, int64_t expires_at)
{
    change m = {.hash = hash, .id = user_id, .now = now, .expires_at = expires_at};
    return kw_pg_transact(POOL(base), on_session_insert, &m);
}

static kw_status op_session_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES], kw_session *out)
{
    return lookup(base, Q_SESSION_FIND, read_session, out, "h", hash);
}

static kw_status op_session_touch(kw_store *base, const uint8_t hash[KW_HASH_BYTES], int64_t at)
{
    change m = {.hash = hash, .now = at};
    return kw_pg_transact(POOL(base), on_session_touch, &m);
}

static kw_status op_session_delete(kw_store *base, const uint8_t hash[KW_HASH_BYTES])
{
    change m = {.hash = hash};
    return kw_pg_transact(POOL(base), on_session_delete, &m);
}

static kw_status op_feed_head(kw_store *base, int64_t *head)
{
    return lookup(base, Q_FEED_HEAD, read_int, head, "");
}

/* Ends the scan's transaction: commits when status is KW_OK, else rolls back. */
static kw_status scan_end(kw_pg_conn *c, kw_status status)
{
    if (status == KW_OK)
        return kw_pg_command(c, "COMMIT", NULL);
    if (PQstatus(c->db) == CONNECTION_OK && PQtransactionStatus(c->db) != PQTRANS_IDLE)
        PQclear(PQexec(c->db, "ROLLBACK"));
    return status;
}

/*
 * The head and the rows are read in one REPEATABLE READ snapshot, the rows
 * through a cursor SCAN_BATCH at a time: a million keys are never one
 * result in memory. Not retried, unlike the other reads: fn has seen rows
 * by the time a connection could break, so the caller starts again.
 */
static kw_status op_key_scan(kw_store *base, kw_key_row_fn fn, void *ctx, int64_t *head)
{
    kw_pg_conn *c;
    kw_status status = kw_pg_acquire(POOL(base), &c);
    if (status != KW_OK)
        return status;
    int64_t at = 0;
    PGresult *res;
    status = kw_pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL);
    if (status == KW_OK)
        status = kw_pg_run(c, Q_FEED_HEAD, &res, NULL, "");
    if (status == KW_OK)
        status = read_one(res, read_int, &at);
    if (status == KW_ERR_NOT_FOUND)
        status = KW_ERR_INTERNAL;
    if (status == KW_OK)
        status = kw_pg_command(c, "DECLARE kw_scan NO SCROLL CURSOR FOR " KEY_SCAN_SQL, NULL);
    for (int n = -1; status == KW_OK && n != 0;) {
        status = kw_pg_command(c, "FETCH " SCAN_BATCH " FROM kw_scan", &res);
        if (status != KW_OK)
            break;
        n = PQntuples(res);
        for (int i = 0; i < n && status == KW_OK; i++) {
            kw_key_row row;
            status = read_key_row(res, i, &row) ? fn(ctx, &row) : KW_ERR_INTERNAL;
        }
        PQclear(res);
    }
    status = scan_end(c, status);
    kw_pg_release(POOL(base), c);
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

static kw_status on_feed_prune(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    return kw_pg_run(c, Q_FEED_PRUNE, NULL, NULL, "i", m->now);
}

static kw_status op_feed_prune(kw_store *base, int64_t before)
{
    change m = {.now = before};
    return kw_pg_transact(POOL(base), on_feed_prune, &m);
}

/*
 * The head in share mode first: a writer's Q_FEED_BUMP waits for this
 * transaction, or this waits for the writer's commit and then reads its
 * position. So a lease is granted only to a node that has applied every
 * change committed before it, and no change commits until it is granted.
 */
static kw_status on_node_renew(kw_pg_conn *c, void *arg)
{
    change *m = arg;
    PGresult *res;
    kw_status status = kw_pg_run(c, Q_FEED_LOCK, &res, NULL, "");
    if (status == KW_OK)
        status = read_one(res, read_int, &m->seq);
    if (status == KW_ERR_NOT_FOUND)
        status = KW_ERR_INTERNAL;
    if (status == KW_OK && m->seq > m->limit)
        status = KW_ERR_CONFLICT; /* rolled back: nothing granted */
    if (status == KW_OK)
        status = kw_pg_run(c, Q_NODE_RENEW, NULL, NULL, "tii", m->id, m->limit, m->expires_at);
    return status;
}

static kw_status op_node_renew(kw_store *base, const char *node_id, int64_t applied, int lease_ms,
                               int64_t *head)
{
    change m = {.id = node_id, .limit = applied, .expires_at = lease_ms};
    kw_status status = kw_pg_transact(POOL(base), on_node_renew, &m);
    if (status == KW_OK || status == KW_ERR_CONFLICT)
        *head = m.seq;
    return status;
}

static kw_status op_nodes_behind(kw_store *base, int64_t seq, int *count)
{
    int64_t n = 0;
    kw_status status = lookup(base, Q_NODES_BEHIND, read_int, &n, "i", seq);
    if (status == KW_OK)
        *count = n > INT32_MAX ? INT32_MAX : (int)n;
    return status;
}

static kw_status on_node_leave(kw_pg_conn *c, void *arg)
{
    const change *m = arg;
    return kw_pg_run(c, Q_NODE_LEAVE, NULL, NULL, "t", m->id);
}

static kw_status op_node_leave(kw_store *base, const char *node_id)
{
    change m = {.id = node_id};
    return kw_pg_transact(POOL(base), on_node_leave, &m);
}

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Drops the listening connection; the next feed_wait opens another. */
static kw_status listener_lost(pg_store *s, int timeout_ms)
{
    PQfinish(s->listener);
    s->listener = NULL;
    pause_ms(timeout_ms < UNAVAILABLE_WAIT_MS ? timeout_ms : UNAVAILABLE_WAIT_MS);
    return KW_ERR_UNAVAILABLE;
}

/* Frees every notification received so far; true when there was one. */
static bool drain_notifies(PGconn *db)
{
    bool any = false;
    for (PGnotify *n; (n = PQnotifies(db)) != NULL; any = true)
        PQfreemem(n);
    return any;
}

/*
 * The listening connection is not a pooled one: LISTEN lasts as long as
 * its session, and a pooled connection serves other operations between
 * waits. It is opened on the first call and again after it broke; while
 * the server cannot be reached, each call pauses before it answers
 * KW_ERR_UNAVAILABLE, so a caller in a loop does not spin.
 */
static kw_status op_feed_wait(kw_store *base, int timeout_ms)
{
    pg_store *s = (pg_store *)base;
    if (timeout_ms < 0)
        timeout_ms = 0;
    if (!s->listener) {
        s->listener = kw_pg_connect(s->pool);
        if (!s->listener)
            return listener_lost(s, timeout_ms);
        PGresult *res = PQexec(s->listener, "LISTEN " FEED_CHANNEL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok)
            return listener_lost(s, timeout_ms);
    }
    /* Until a notification or the end of the time: other traffic (a
     * server's parting error before it closes) is consumed and waited past. */
    struct timespec now, until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long end_ms = (long long)until.tv_sec * 1000 + until.tv_nsec / 1000000 + timeout_ms;
    for (;;) {
        if (drain_notifies(s->listener))
            return KW_OK;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long left = end_ms - ((long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
        if (left <= 0)
            return KW_OK;
        struct pollfd pfd = {.fd = PQsocket(s->listener), .events = POLLIN};
        int ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            return KW_OK; /* an early return is allowed */
        if (ready < 0 || (ready > 0 && !PQconsumeInput(s->listener)) ||
            PQstatus(s->listener) != CONNECTION_OK)
            return listener_lost(s, timeout_ms);
    }
}

static void op_close(kw_store *base)
{
    if (!base)
        return;
    PQfinish(((pg_store *)base)->listener);
    kw_pg_pool_close(POOL(base));
    free(base);
}

static const kw_store_ops postgres_ops = {
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
    .session_insert = op_session_insert,
    .session_find = op_session_find,
    .session_touch = op_session_touch,
    .session_delete = op_session_delete,
    .key_count_active = op_key_count_active,
    .feed_head = op_feed_head,
    .key_scan = op_key_scan,
    .changes_since = op_changes_since,
    .feed_prune = op_feed_prune,
    .node_renew = op_node_renew,
    .nodes_behind = op_nodes_behind,
    .node_leave = op_node_leave,
    .feed_wait = op_feed_wait,
    .bootstrap = op_bootstrap,
};

kw_status kw_store_postgres_open(const char *url, kw_store **out, kw_error *err)
{
    *out = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    kw_status status = kw_pg_pool_open(url, query_sql, Q_COUNT, POOL_SIZE, &s->pool, err);
    if (status != KW_OK) {
        free(s);
        return status;
    }
    s->base.ops = &postgres_ops;
    *out = &s->base;
    return KW_OK;
}
