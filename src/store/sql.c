/*
 * sql.c - the store's operations, once for every SQL database (see sql.h).
 *
 * Each operation is a body that its driver runs on a connection: reads on
 * their own, mutations in one KW_SQL_WRITE transaction with their audit
 * entry. A driver may run a body again after a transient failure (a
 * PostgreSQL serialization failure, deadlock or dropped connection), so
 * bodies only read their arguments and overwrite their results, and only
 * the last run counts; a failure changes nothing.
 *
 * Checks that must still hold when a mutation writes are made under a lock
 * every writer respects. On SQLite that is the write lock every KW_SQL_WRITE
 * transaction takes first (BEGIN IMMEDIATE); on PostgreSQL, whose
 * transactions are READ COMMITTED, the dialect's locks: the account's row
 * for the key limit, a table lock for the first-run bootstrap, and the
 * feed head's row for the order of changes.
 */
#include "store/sql.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/timefmt.h"

#define KEY_COLS KW_SQL_KEY_COLS
#define KEY_COLS_K                                                                                 \
    "k.id, k.account_id, k.name, k.environment, k.masked, k.created_at, k.last_used_at, "          \
    "k.expires_at, k.enabled, k.rolled_from, k.rolled_to, k.metadata"
#define ROOT_COLS KW_SQL_ROOT_COLS
#define AUDIT_COLS                                                                                 \
    "SELECT seq, at, actor, action, account_id, key_id, key_name, source_ip FROM audit_log "
/* A session's audit entry: the user acts, for its account (?1 at, ?2 action, ?3 source_ip). */
#define SESSION_AUDIT                                                                              \
    "INSERT INTO audit_log(at, actor, action, account_id, source_ip) SELECT CAST(?1 AS BIGINT), "  \
    "'user:' || u.id, CAST(?2 AS TEXT), u.account_id, CAST(?3 AS TEXT) "
#define SESSION_COLS                                                                               \
    "SELECT u.id, u.account_id, u.email, u.created_at, s.created_at, s.last_seen_at, "             \
    "s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id "

/* The statements every dialect shares: KW_Q_PING up to the dialect's own. */
static const char *const common_sql[KW_Q_ACCOUNT_LIST] = {
    [KW_Q_PING] = "SELECT 1",
    [KW_Q_AUDIT_INSERT] = "INSERT INTO audit_log(at, actor, action, account_id, key_id, key_name, "
                          "source_ip) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [KW_Q_AUDIT_ALL] = AUDIT_COLS "ORDER BY seq DESC LIMIT ?1",
    [KW_Q_AUDIT_ACCOUNT] = AUDIT_COLS "WHERE account_id = ?1 ORDER BY seq DESC LIMIT ?2",
    [KW_Q_ACCOUNT_INSERT] = "INSERT INTO accounts(id, name, created_at) VALUES (?1, ?2, ?3)",
    [KW_Q_ACCOUNT_EXISTS] = "SELECT 1 FROM accounts WHERE id = ?1",
    [KW_Q_ACCOUNT_GET] = "SELECT id, name, created_at FROM accounts WHERE id = ?1",
    [KW_Q_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys WHERE account_id = ?1 ORDER BY seq DESC",
    [KW_Q_KEY_GET] = "SELECT " KEY_COLS " FROM api_keys WHERE id = ?1 AND account_id = ?2",
    /* RETURNING: a row that a concurrent delete took first is not found. */
    [KW_Q_KEY_DELETE] = "DELETE FROM api_keys WHERE id = ?1 AND account_id = ?2 RETURNING name",
    [KW_Q_KEY_FIND] = "SELECT " KEY_COLS " FROM api_keys WHERE hash = ?1 AND pepper_version = ?2",
    [KW_Q_ROOT_INSERT] = "INSERT INTO root_keys(id, name, masked, hash, pepper_version, "
                         "created_at, last_used_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [KW_Q_ROOT_DELETE] = "DELETE FROM root_keys WHERE id = ?1 RETURNING name",
    [KW_Q_ROOT_FIND] =
        "SELECT " ROOT_COLS " FROM root_keys WHERE hash = ?1 AND pepper_version = ?2",
    [KW_Q_USER_INSERT] = "INSERT INTO users(id, account_id, email, password_hash, created_at) "
                         "VALUES (?1, ?2, ?3, ?4, ?5)",
    [KW_Q_PEPPER_CHECK_INSERT] = "INSERT INTO pepper_checks(version, check_value, created_at) "
                                 "VALUES (?1, ?2, ?3) ON CONFLICT (version) DO NOTHING",
    [KW_Q_PEPPER_CHECK_SAME] =
        "SELECT CAST(check_value = ?2 AS INTEGER) FROM pepper_checks WHERE version = ?1",
    [KW_Q_KEY_COUNT_ACTIVE] =
        "SELECT count(*) FROM api_keys WHERE expires_at IS NULL OR expires_at > ?1",
    [KW_Q_SESSION_PURGE] = "DELETE FROM sessions WHERE expires_at <= ?1",
    [KW_Q_SESSION_INSERT] =
        "INSERT INTO sessions(hash, user_id, created_at, last_seen_at, expires_at) "
        "VALUES (?1, ?2, ?3, ?3, ?4)",
    [KW_Q_SESSION_FIND] = SESSION_COLS "WHERE s.hash = ?1",
    /* Raises last_seen_at only: a touch that arrives late never lowers it. */
    [KW_Q_SESSION_TOUCH] =
        "UPDATE sessions SET last_seen_at = ?2 WHERE hash = ?1 AND last_seen_at < ?2",
    [KW_Q_SESSION_DELETE] = "DELETE FROM sessions WHERE hash = ?1",
    [KW_Q_STORE_EMPTY] = "SELECT CAST(NOT EXISTS (SELECT 1 FROM accounts) AND "
                         "NOT EXISTS (SELECT 1 FROM root_keys) AS INTEGER)",
    [KW_Q_FEED_APPEND] = "INSERT INTO key_changes(seq, at, key_id) VALUES (?1, ?2, ?3)",
    [KW_Q_FEED_HEAD] = "SELECT seq FROM feed_head WHERE one = 1",
    [KW_Q_FEED_PRUNE] = "DELETE FROM key_changes WHERE at < ?1 "
                        "AND seq < (SELECT seq FROM feed_head WHERE one = 1)",
    [KW_Q_KEY_SCAN] = "SELECT " KEY_COLS ", hash, pepper_version FROM api_keys",
    /* The key's columns first, as in KW_Q_KEY_SCAN (all NULL when it is
     * gone), then the change's own: the feed holds no hash. */
    [KW_Q_CHANGES_SINCE] = "SELECT " KEY_COLS_K ", k.hash, k.pepper_version, c.seq, c.key_id "
                           "FROM key_changes c LEFT JOIN api_keys k ON k.id = c.key_id "
                           "WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2",
    [KW_Q_NODE_LEAVE] = "DELETE FROM nodes WHERE id = ?1",
    /* Served by audit_log_account (account_id, seq). */
    [KW_Q_AUDIT_PAGE] = AUDIT_COLS "WHERE account_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
    /* The log's delete trigger lets only rows older than this bound go. */
    [KW_Q_AUDIT_PRUNE_BOUND] = "UPDATE audit_prune SET before_at = ?1 WHERE one = 1",
    [KW_Q_AUDIT_PRUNE] = "DELETE FROM audit_log WHERE at < ?1",
    [KW_Q_KEY_UPDATE] = "UPDATE api_keys SET name = ?3, enabled = ?4, expires_at = ?5, "
                        "metadata = ?6 WHERE id = ?1 AND account_id = ?2",
    [KW_Q_KEY_ROLLED] =
        "UPDATE api_keys SET expires_at = ?3, rolled_to = ?4 WHERE id = ?1 AND account_id = ?2",
    /* NULL ?2: every environment. */
    [KW_Q_KEY_REVOKE] = "DELETE FROM api_keys WHERE account_id = ?1 AND "
                        "environment = coalesce(CAST(?2 AS TEXT), environment) RETURNING id, name",
    /* The key a deleted key had replaced may be rolled again. */
    [KW_Q_KEY_UNROLL] = "UPDATE api_keys SET rolled_to = NULL WHERE account_id = ?1 AND "
                        "rolled_to = ?2 RETURNING id",
    [KW_Q_SESSION_AUDIT] = SESSION_AUDIT "FROM users u WHERE u.id = ?4",
    [KW_Q_SESSION_END_AUDIT] =
        SESSION_AUDIT "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = ?4",
};

/* Where each of the dialect's statements is, in the order of KW_Q_ACCOUNT_LIST on. */
static const size_t dialect_field[KW_Q_COUNT - KW_Q_ACCOUNT_LIST] = {
    offsetof(kw_sql_dialect, account_list), offsetof(kw_sql_dialect, account_lock),
    offsetof(kw_sql_dialect, key_insert),   offsetof(kw_sql_dialect, root_list),
    offsetof(kw_sql_dialect, key_touch),    offsetof(kw_sql_dialect, root_touch),
    offsetof(kw_sql_dialect, user_find),    offsetof(kw_sql_dialect, bootstrap_lock),
    offsetof(kw_sql_dialect, feed_bump),    offsetof(kw_sql_dialect, feed_lock),
    offsetof(kw_sql_dialect, node_renew),   offsetof(kw_sql_dialect, nodes_behind),
};

const char *kw_sql_statement(const kw_sql_dialect *d, int q)
{
    if (q < 0 || q >= KW_Q_COUNT)
        return NULL;
    if (q < KW_Q_ACCOUNT_LIST)
        return common_sql[q];
    const char *field = (const char *)d + dialect_field[q - KW_Q_ACCOUNT_LIST];
    return *(const char *const *)(const void *)field;
}

typedef struct {
    kw_store base;
    const kw_sql_driver *driver;
    void *db;
} sql_store;

#define STORE(base) ((sql_store *)(base))

/* ---- statements and their rows ---- */

/*
 * Fills p from the arguments after fmt, one per character: 't' const char *
 * (NULL binds NULL), 'i' int64_t, 'o' an optional time (int64_t) where
 * KW_TIME_NONE binds NULL, 'h' a KW_HASH_BYTES byte hash. Returns the
 * number of parameters, -1 for a format this file got wrong.
 */
static int vparams(kw_sql_param *p, const char *fmt, va_list ap)
{
    int n = 0;
    for (const char *f = fmt; *f; f++, n++) {
        if (n == KW_SQL_MAX_PARAMS)
            return -1;
        kw_sql_param *x = &p[n];
        memset(x, 0, sizeof *x);
        switch (*f) {
        case 't':
            x->text = va_arg(ap, const char *);
            x->type = x->text ? KW_SQL_TEXT : KW_SQL_NULL;
            break;
        case 'i':
        case 'o':
            x->num = va_arg(ap, int64_t);
            x->type = *f == 'o' && x->num == KW_TIME_NONE ? KW_SQL_NULL : KW_SQL_INT;
            break;
        case 'h':
            x->bytes = va_arg(ap, const uint8_t *);
            x->type = KW_SQL_HASH;
            break;
        default:
            return -1;
        }
    }
    return n;
}

/* Statement q with the arguments after fmt (see vparams); on KW_OK, pass rows to done. */
static kw_status query(kw_sql_conn *c, int q, kw_sql_rows *rows, const char *fmt, ...)
{
    kw_sql_param p[KW_SQL_MAX_PARAMS];
    va_list ap;
    va_start(ap, fmt);
    int n = vparams(p, fmt, ap);
    va_end(ap);
    return n < 0 ? KW_ERR_INTERNAL : c->driver->query(c, q, p, n, false, rows);
}

/* Row readers: fill one record from the current row; false when a value does not fit. */
typedef bool (*row_reader)(const kw_sql_rows *r, void *item);

/*
 * Reads the first row of rows (KW_OK from query) into out: KW_ERR_NOT_FOUND
 * when there is none. Finishes with rows.
 */
static kw_status read_one(kw_sql_rows *rows, row_reader read, void *out)
{
    kw_status status = KW_OK;
    if (!rows->row)
        status = KW_ERR_NOT_FOUND;
    else if (!read(rows, out))
        status = KW_ERR_INTERNAL;
    rows->conn->driver->done(rows);
    return status;
}

/*
 * Reads every row into a new heap array of elem-sized records: *items
 * (NULL when empty) and *count, which the caller frees. On failure both
 * are NULL/0. Finishes with rows.
 */
static kw_status read_all(kw_sql_rows *rows, row_reader read, size_t elem, void **items,
                          size_t *count)
{
    const kw_sql_driver *d = rows->conn->driver;
    char *array = NULL;
    size_t n = 0, cap = 0;
    kw_status status = KW_OK;
    while (status == KW_OK && rows->row) {
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
        if (!read(rows, array + n * elem)) {
            status = KW_ERR_INTERNAL;
            break;
        }
        n++;
        status = d->next(rows);
    }
    d->done(rows);
    if (status != KW_OK) {
        free(array);
        array = NULL;
        n = 0;
    }
    *items = array;
    *count = n;
    return status;
}

/*
 * Runs statement q for its effect; *changed (when not NULL) receives the
 * rows it changed. A statement the dialect has no text for is skipped.
 */
static kw_status exec(kw_sql_conn *c, int q, int64_t *changed, const char *fmt, ...)
{
    if (changed)
        *changed = 0;
    if (!kw_sql_statement(c->driver->dialect, q))
        return KW_OK;
    kw_sql_param p[KW_SQL_MAX_PARAMS];
    va_list ap;
    va_start(ap, fmt);
    int n = vparams(p, fmt, ap);
    va_end(ap);
    kw_sql_rows rows;
    kw_status status = n < 0 ? KW_ERR_INTERNAL : c->driver->query(c, q, p, n, false, &rows);
    if (status != KW_OK)
        return status;
    if (changed)
        *changed = rows.changed;
    c->driver->done(&rows);
    return KW_OK;
}

/*
 * Copies text column col into dst (size bytes); NULL gives "". Returns
 * false when the stored value does not fit: a record is never silently
 * truncated.
 */
static bool col_text(const kw_sql_rows *r, int col, char *dst, size_t size)
{
    dst[0] = '\0';
    if (r->conn->driver->is_null(r, col))
        return true;
    size_t n = 0;
    const char *text = r->conn->driver->text(r, col, &n);
    if (!text || n >= size)
        return false;
    memcpy(dst, text, n);
    dst[n] = '\0';
    return true;
}

static int64_t col_int(const kw_sql_rows *r, int col)
{
    return r->conn->driver->integer(r, col);
}

/* An optional time column: NULL reads as KW_TIME_NONE (absent). */
static int64_t col_time(const kw_sql_rows *r, int col)
{
    return r->conn->driver->is_null(r, col) ? KW_TIME_NONE : col_int(r, col);
}

/* A text column of a record: its column, and where its buffer is in the record. */
typedef struct {
    int col;
    size_t offset;
    size_t size;
} text_col;

#define TEXT(type, field, col)                                                                     \
    {                                                                                              \
        col, offsetof(type, field), sizeof(((type *)0)->field)                                     \
    }

/* Reads the text columns of a record (see col_text); false when one does not fit. */
static bool read_texts(const kw_sql_rows *r, void *record, const text_col *cols, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!col_text(r, cols[i].col, (char *)record + cols[i].offset, cols[i].size))
            return false;
    return true;
}

#define READ_TEXTS(r, record, cols)                                                                \
    read_texts((r), (record), (cols), sizeof(cols) / sizeof((cols)[0]))

static const text_col account_texts[] = {TEXT(kw_account, id, 0), TEXT(kw_account, name, 1)};

static bool read_account(const kw_sql_rows *r, void *item)
{
    kw_account *a = item;
    memset(a, 0, sizeof *a);
    a->created_at = col_int(r, 2);
    return READ_TEXTS(r, a, account_texts);
}

static const text_col key_texts[] = {TEXT(kw_key, id, 0),         TEXT(kw_key, account_id, 1),
                                     TEXT(kw_key, name, 2),       TEXT(kw_key, environment, 3),
                                     TEXT(kw_key, masked, 4),     TEXT(kw_key, rolled_from, 9),
                                     TEXT(kw_key, rolled_to, 10), TEXT(kw_key, metadata, 11)};

/* The columns of KEY_COLS, and those that follow them in a key's row. */
enum { KEY_COL_COUNT = 12, COL_HASH = KEY_COL_COUNT, COL_PEPPER, COL_SEQ, COL_CHANGE_ID };

static bool read_key(const kw_sql_rows *r, void *item)
{
    kw_key *k = item;
    memset(k, 0, sizeof *k);
    k->created_at = col_int(r, 5);
    k->last_used_at = col_time(r, 6);
    k->expires_at = col_time(r, 7);
    k->enabled = col_int(r, 8) != 0;
    return READ_TEXTS(r, k, key_texts);
}

/* A key with its hash: KEY_COLS, then hash and pepper_version. */
static bool read_key_row(const kw_sql_rows *r, void *item)
{
    kw_key_row *row = item;
    memset(row, 0, sizeof *row);
    if (!read_key(r, &row->key) || !r->conn->driver->hash(r, COL_HASH, row->hash))
        return false;
    row->pepper_version = (uint32_t)col_int(r, COL_PEPPER);
    return true;
}

/*
 * A row of KW_Q_CHANGES_SINCE: the key as it is now, or, when it is gone
 * (its columns NULL), only the id the change names it by.
 */
static bool read_change(const kw_sql_rows *r, void *item)
{
    kw_key_change *ch = item;
    memset(ch, 0, sizeof *ch);
    ch->seq = col_int(r, COL_SEQ);
    ch->present = !r->conn->driver->is_null(r, 0);
    if (ch->present)
        return read_key_row(r, &ch->row);
    return col_text(r, COL_CHANGE_ID, ch->row.key.id, sizeof ch->row.key.id);
}

static const text_col root_key_texts[] = {TEXT(kw_root_key, id, 0), TEXT(kw_root_key, name, 1),
                                          TEXT(kw_root_key, masked, 2)};

static bool read_root_key(const kw_sql_rows *r, void *item)
{
    kw_root_key *rk = item;
    memset(rk, 0, sizeof *rk);
    rk->created_at = col_int(r, 3);
    rk->last_used_at = col_time(r, 4);
    return READ_TEXTS(r, rk, root_key_texts);
}

static const text_col audit_texts[] = {
    TEXT(kw_audit_entry, actor, 2),      TEXT(kw_audit_entry, action, 3),
    TEXT(kw_audit_entry, account_id, 4), TEXT(kw_audit_entry, key_id, 5),
    TEXT(kw_audit_entry, key_name, 6),   TEXT(kw_audit_entry, source_ip, 7)};

static bool read_audit(const kw_sql_rows *r, void *item)
{
    kw_audit_entry *e = item;
    memset(e, 0, sizeof *e);
    e->seq = col_int(r, 0);
    e->at = col_int(r, 1);
    return READ_TEXTS(r, e, audit_texts);
}

static const text_col session_texts[] = {TEXT(kw_session, user.id, 0),
                                         TEXT(kw_session, user.account_id, 1),
                                         TEXT(kw_session, user.email, 2)};

static bool read_session(const kw_sql_rows *r, void *item)
{
    kw_session *s = item;
    memset(s, 0, sizeof *s);
    s->user.created_at = col_int(r, 3);
    s->created_at = col_int(r, 4);
    s->last_seen_at = col_int(r, 5);
    s->expires_at = col_int(r, 6);
    return READ_TEXTS(r, s, session_texts);
}

/* The one integer a query answers. */
static bool read_int(const kw_sql_rows *r, void *item)
{
    *(int64_t *)item = col_int(r, 0);
    return true;
}

/* A revoked key: what the audit entry and the feed name it by. */
typedef struct {
    char id[KW_ID_BUFSZ];
    char name[KW_NAME_BUFSZ];
} revoked_key;

static bool read_revoked(const kw_sql_rows *r, void *item)
{
    revoked_key *k = item;
    return col_text(r, 0, k->id, sizeof k->id) && col_text(r, 1, k->name, sizeof k->name);
}

/* What a delete's RETURNING gives back: the name, for the audit entry (KW_NAME_BUFSZ bytes). */
static bool read_deleted_name(const kw_sql_rows *r, void *item)
{
    return col_text(r, 0, item, KW_NAME_BUFSZ);
}

/* A key id (KW_ID_BUFSZ bytes), as an UPDATE's RETURNING gives it back. */
static bool read_key_id(const kw_sql_rows *r, void *item)
{
    return col_text(r, 0, item, KW_ID_BUFSZ);
}

/* ---- reads ---- */

/* A statement and its parameters, kept so that the driver may run it again. */
typedef struct {
    int q;
    kw_sql_param params[KW_SQL_MAX_PARAMS];
    int count;
    row_reader read;
    void *out;   /* lookup: the one row */
    size_t elem; /* list: all rows, elem bytes each */
    void **items;
    size_t *rows;
} call;

static kw_status on_lookup(kw_sql_conn *c, void *arg)
{
    call *a = arg;
    kw_sql_rows rows;
    kw_status status = c->driver->query(c, a->q, a->params, a->count, false, &rows);
    return status == KW_OK ? read_one(&rows, a->read, a->out) : status;
}

static kw_status on_list(kw_sql_conn *c, void *arg)
{
    call *a = arg;
    kw_sql_rows rows;
    kw_status status = c->driver->query(c, a->q, a->params, a->count, false, &rows);
    return status == KW_OK ? read_all(&rows, a->read, a->elem, a->items, a->rows) : status;
}

/*
 * Runs point lookup q with the arguments after fmt (see vparams) and reads
 * its row into out: KW_ERR_NOT_FOUND when there is none.
 */
static kw_status lookup(kw_store *base, int q, row_reader read, void *out, const char *fmt, ...)
{
    call a = {.q = q, .read = read, .out = out};
    va_list ap;
    va_start(ap, fmt);
    a.count = vparams(a.params, fmt, ap);
    va_end(ap);
    if (a.count < 0)
        return KW_ERR_INTERNAL;
    return STORE(base)->driver->run(STORE(base)->db, KW_SQL_READ, on_lookup, &a);
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
    call a = {.q = q, .read = read, .elem = elem, .items = items, .rows = count};
    va_list ap;
    va_start(ap, fmt);
    a.count = vparams(a.params, fmt, ap);
    va_end(ap);
    if (a.count < 0)
        return KW_ERR_INTERNAL;
    return STORE(base)->driver->run(STORE(base)->db, KW_SQL_READ, on_list, &a);
}

/* ---- the bodies of mutations ---- */

/*
 * The arguments of every mutation; each body reads the fields it needs,
 * and writes only seq (its result), so that it can be run again.
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
    const char *id;              /* a key's, root key's or node's; a session's user */
    const char *touch[2];        /* JSON batches of last-used times: keys, root keys */
    const char *environment;     /* key_revoke's filter; NULL: all */
    const kw_key_update *update; /* key_update's changes */
    int64_t grace_s;             /* key_roll's */
    kw_key *out;                 /* out: the key changed (key_update), the new key (key_roll) */
    kw_key *previous;            /* out: the rolled key */
    int64_t count;               /* out: rows changed (key_revoke, audit_prune) */
    int64_t seq;                 /* out: a change's position, or the feed head */
} change;

/* An optional text column's value: "" binds NULL. */
static const char *opt_text(const char *s)
{
    return s && s[0] ? s : NULL;
}

/* Appends the audit entry of the change being made, inside its transaction. */
static kw_status audit(kw_sql_conn *c, const kw_audit *au, const char *action,
                       const char *account_id, const char *key_id, const char *key_name)
{
    return exec(c, KW_Q_AUDIT_INSERT, NULL, "itttttt", au->at, au->actor,
                action ? action : au->action, account_id, key_id, key_name, au->source_ip);
}

/* KW_OK when statement q (KW_Q_ACCOUNT_EXISTS or _LOCK) finds account id. */
static kw_status account_check(kw_sql_conn *c, int q, const char *id)
{
    kw_sql_rows rows;
    kw_status status = query(c, q, &rows, "t", id);
    if (status != KW_OK)
        return status;
    status = rows.row ? KW_OK : KW_ERR_NOT_FOUND;
    c->driver->done(&rows);
    return status;
}

/*
 * Appends a change of key key_id to the feed, inside the mutation's
 * transaction, and gives its position in *seq. The head's update (the
 * dialect's feed_bump) holds every other writer of a change until commit,
 * so positions are contiguous and in commit order. The entry names the key
 * by its id alone: it outlives the key, and a deleted key's hash must not.
 */
static kw_status feed_append(kw_sql_conn *c, int64_t at, const char *key_id, int64_t *seq)
{
    kw_sql_rows rows;
    kw_status status = query(c, KW_Q_FEED_BUMP, &rows, "");
    if (status == KW_OK)
        status = read_one(&rows, read_int, seq);
    if (status == KW_ERR_NOT_FOUND) /* the migration seeds the head: never missing */
        status = KW_ERR_INTERNAL;
    if (status == KW_OK)
        status = exec(c, KW_Q_FEED_APPEND, NULL, "iit", *seq, at, key_id);
    return status;
}

static kw_status on_account_insert(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    const kw_account *a = m->account;
    kw_status status = exec(c, KW_Q_ACCOUNT_INSERT, NULL, "tti", a->id, a->name, a->created_at);
    return status == KW_OK ? audit(c, m->au, NULL, a->id, NULL, NULL) : status;
}

/* Inserts k with m's hash when the account holds fewer than `limit` keys unexpired at m->now. */
static kw_status insert_key(kw_sql_conn *c, const change *m, const kw_key *k, int64_t limit)
{
    int64_t inserted = 0;
    kw_status status =
        exec(c, KW_Q_KEY_INSERT, &inserted, "ttttthiiooitttii", k->id, k->account_id, k->name,
             k->environment, k->masked, m->hash, m->pepper_version, k->created_at, k->last_used_at,
             k->expires_at, (int64_t)(k->enabled ? 1 : 0), opt_text(k->rolled_from),
             opt_text(k->rolled_to), opt_text(k->metadata), m->now, limit);
    return status == KW_OK && inserted == 0 ? KW_ERR_LIMIT : status;
}

/*
 * The account's lock, then the insert whose limit check counts under it:
 * no other writer, in any process or node, can slip a key in between.
 */
static kw_status on_key_insert(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    const kw_key *k = m->key;
    kw_status status = account_check(c, KW_Q_ACCOUNT_LOCK, k->account_id);
    if (status == KW_OK)
        status = insert_key(c, m, k, m->limit);
    if (status == KW_OK)
        status = audit(c, m->au, NULL, k->account_id, k->id, k->name);
    return status == KW_OK ? feed_append(c, m->au->at, k->id, &m->seq) : status;
}

/* Reads key id of account_id into *out (inside the caller's transaction). */
static kw_status read_key_in(kw_sql_conn *c, const char *account_id, const char *id, kw_key *out)
{
    kw_sql_rows rows;
    kw_status status = query(c, KW_Q_KEY_GET, &rows, "tt", id, account_id);
    return status == KW_OK ? read_one(&rows, read_key, out) : status;
}

/* Writes k's changeable columns: name, enabled, expiry and metadata. */
static kw_status write_key(kw_sql_conn *c, const kw_key *k)
{
    return exec(c, KW_Q_KEY_UPDATE, NULL, "tttiot", k->id, k->account_id, k->name,
                (int64_t)(k->enabled ? 1 : 0), k->expires_at, opt_text(k->metadata));
}

/*
 * Under the account's lock (which every change of its keys takes), the
 * row is read, changed here and written back whole; then its audit entry
 * and its feed change, so every node re-reads the row.
 */
static kw_status on_key_update(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    const kw_key_update *u = m->update;
    kw_key *k = m->out;
    kw_status status = account_check(c, KW_Q_ACCOUNT_LOCK, m->account_id);
    if (status == KW_OK)
        status = read_key_in(c, m->account_id, m->id, k);
    if (status != KW_OK)
        return status;
    if (u->name)
        snprintf(k->name, sizeof k->name, "%s", u->name);
    if (u->enabled >= 0)
        k->enabled = u->enabled != 0;
    if (u->set_expires_at)
        k->expires_at = u->expires_at;
    if (u->set_metadata) {
        const char *metadata = u->metadata ? u->metadata : "";
        if (strlen(metadata) >= sizeof k->metadata) /* never stored cut short */
            return KW_ERR_INVALID;
        memcpy(k->metadata, metadata, strlen(metadata) + 1);
    }
    status = write_key(c, k);
    if (status == KW_OK) /* *out as stored, not as patched here */
        status = read_key_in(c, m->account_id, m->id, k);
    if (status == KW_OK)
        status = audit(c, m->au, NULL, k->account_id, k->id, k->name);
    return status == KW_OK ? feed_append(c, m->au->at, k->id, &m->seq) : status;
}

/* The expiry a roll gives the new key: the old key's lifetime again, from now. */
static int64_t rolled_expiry(const kw_key *old, int64_t now)
{
    if (old->expires_at == KW_TIME_NONE)
        return KW_TIME_NONE;
    int64_t lifetime = old->expires_at - old->created_at;
    if (lifetime < 1)
        lifetime = 1;
    return lifetime > KW_TIME_MAX - now ? KW_TIME_MAX : now + lifetime;
}

/*
 * The state check and both writes under the account's lock: two rolls of
 * one key, or a roll and a disable, cannot both pass it. The new key takes
 * what it inherits from the old row as read here, not as the caller saw it.
 */
static kw_status on_key_roll(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    kw_key *old = m->previous, *k = m->out;
    kw_status status = account_check(c, KW_Q_ACCOUNT_LOCK, m->account_id);
    if (status == KW_OK)
        status = read_key_in(c, m->account_id, m->id, old);
    if (status != KW_OK)
        return status;
    if (!kw_key_active(old, m->now) || !old->enabled || old->rolled_to[0])
        return KW_ERR_KEY_STATE;
    *k = *m->key;
    snprintf(k->account_id, sizeof k->account_id, "%s", old->account_id);
    snprintf(k->name, sizeof k->name, "%s", old->name);
    snprintf(k->environment, sizeof k->environment, "%s", old->environment);
    snprintf(k->metadata, sizeof k->metadata, "%s", old->metadata);
    snprintf(k->rolled_from, sizeof k->rolled_from, "%s", old->id);
    k->rolled_to[0] = '\0';
    k->enabled = true;
    k->expires_at = rolled_expiry(old, m->now);
    status = insert_key(c, m, k, INT64_MAX);
    int64_t grace_end = m->now + m->grace_s;
    if (old->expires_at == KW_TIME_NONE || old->expires_at > grace_end)
        old->expires_at = grace_end;
    snprintf(old->rolled_to, sizeof old->rolled_to, "%s", k->id);
    if (status == KW_OK)
        status = exec(c, KW_Q_KEY_ROLLED, NULL, "ttot", old->id, old->account_id, old->expires_at,
                      old->rolled_to);
    if (status == KW_OK)
        status = audit(c, m->au, NULL, old->account_id, old->id, old->name);
    if (status == KW_OK)
        status = feed_append(c, m->au->at, old->id, &m->seq);
    return status == KW_OK ? feed_append(c, m->au->at, k->id, &m->seq) : status;
}

/*
 * Under the account's lock, which every key insert takes too: an insert
 * that committed first is deleted here, one that waited for the lock
 * comes after and stays. Each key then gets its audit entry and its feed
 * change; the driver is told that hashes were removed.
 */
static kw_status on_key_revoke(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    m->count = 0;
    m->seq = 0;
    kw_status status = account_check(c, KW_Q_ACCOUNT_LOCK, m->account_id);
    kw_sql_rows rows;
    if (status == KW_OK)
        status = query(c, KW_Q_KEY_REVOKE, &rows, "tt", m->account_id, m->environment);
    if (status != KW_OK)
        return status;
    void *items = NULL;
    size_t n = 0;
    status = read_all(&rows, read_revoked, sizeof(revoked_key), &items, &n);
    const revoked_key *keys = items;
    for (size_t i = 0; i < n && status == KW_OK; i++) {
        status = audit(c, m->au, NULL, m->account_id, keys[i].id, keys[i].name);
        if (status == KW_OK)
            status = feed_append(c, m->au->at, keys[i].id, &m->seq);
    }
    free(items);
    if (status == KW_OK)
        m->count = (int64_t)n;
    c->erased = c->erased || (status == KW_OK && n > 0);
    return status;
}

/*
 * The bound first, which the log's delete trigger reads: only rows older
 * than it may go, and only inside this transaction, which puts the bound
 * back to the smallest time before it commits.
 */
static kw_status on_audit_prune(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    kw_status status = exec(c, KW_Q_AUDIT_PRUNE_BOUND, NULL, "i", m->now);
    if (status == KW_OK)
        status = exec(c, KW_Q_AUDIT_PRUNE, &m->count, "i", m->now);
    return status == KW_OK ? exec(c, KW_Q_AUDIT_PRUNE_BOUND, NULL, "i", (int64_t)INT64_MIN)
                           : status;
}

/*
 * After the delete of a key that replaced another by a roll: the old key
 * (still in its grace period, or expired) is no longer rolled, so it may be
 * rolled again, and its change goes to the feed like any other.
 */
static kw_status unroll(kw_sql_conn *c, change *m)
{
    char id[KW_ID_BUFSZ];
    kw_sql_rows rows;
    kw_status status = query(c, KW_Q_KEY_UNROLL, &rows, "tt", m->account_id, m->id);
    if (status == KW_OK)
        status = read_one(&rows, read_key_id, id);
    if (status == KW_ERR_NOT_FOUND)
        return KW_OK; /* it replaced none */
    return status == KW_OK ? feed_append(c, m->au->at, id, &m->seq) : status;
}

/*
 * Deletes a key (account_id set) or a root key and records it: the audit
 * entry and, for a key, the change in the feed. The driver is told that
 * the transaction removed a hash.
 */
static kw_status on_key_delete(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    char name[KW_NAME_BUFSZ];
    kw_sql_rows rows;
    kw_status status = m->account_id ? query(c, KW_Q_KEY_DELETE, &rows, "tt", m->id, m->account_id)
                                     : query(c, KW_Q_ROOT_DELETE, &rows, "t", m->id);
    if (status == KW_OK)
        status = read_one(&rows, read_deleted_name, name);
    if (status == KW_OK)
        status = audit(c, m->au, NULL, m->account_id, m->id, name);
    if (status == KW_OK && m->account_id) /* root keys are not in the feed */
        status = feed_append(c, m->au->at, m->id, &m->seq);
    if (status == KW_OK && m->account_id)
        status = unroll(c, m);
    c->erased = c->erased || status == KW_OK;
    return status;
}

static kw_status on_touch(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = KW_OK;
    if (m->touch[0])
        status = exec(c, KW_Q_KEY_TOUCH, NULL, "t", m->touch[0]);
    if (status == KW_OK && m->touch[1])
        status = exec(c, KW_Q_ROOT_TOUCH, NULL, "t", m->touch[1]);
    return status;
}

static kw_status insert_root_key(kw_sql_conn *c, const change *m, const char *action)
{
    const kw_root_key *rk = m->root_key;
    kw_status status = exec(c, KW_Q_ROOT_INSERT, NULL, "ttthiio", rk->id, rk->name, rk->masked,
                            m->hash, m->pepper_version, rk->created_at, rk->last_used_at);
    return status == KW_OK ? audit(c, m->au, action, NULL, rk->id, rk->name) : status;
}

static kw_status on_root_key_insert(kw_sql_conn *c, void *arg)
{
    return insert_root_key(c, arg, NULL);
}

/* The audit entry names the account only: never the password hash. */
static kw_status insert_user(kw_sql_conn *c, const change *m, const char *action)
{
    const kw_user *u = m->user;
    kw_status status = exec(c, KW_Q_USER_INSERT, NULL, "tttti", u->id, u->account_id, u->email,
                            m->password_hash, u->created_at);
    return status == KW_OK ? audit(c, m->au, action, u->account_id, NULL, NULL) : status;
}

static kw_status on_user_insert(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = account_check(c, KW_Q_ACCOUNT_EXISTS, m->user->account_id);
    return status == KW_OK ? insert_user(c, m, NULL) : status;
}

/* A mismatch inserted nothing, and the transaction is rolled back anyway. */
static kw_status on_pepper_check(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status =
        exec(c, KW_Q_PEPPER_CHECK_INSERT, NULL, "ihi", m->pepper_version, m->hash, m->now);
    kw_sql_rows rows;
    int64_t same = 0;
    if (status == KW_OK)
        status = query(c, KW_Q_PEPPER_CHECK_SAME, &rows, "ih", m->pepper_version, m->hash);
    if (status == KW_OK)
        status = read_one(&rows, read_int, &same);
    if (status == KW_ERR_NOT_FOUND) /* inserted or already there: a row must exist */
        status = KW_ERR_INTERNAL;
    return status == KW_OK && !same ? KW_ERR_CONFLICT : status;
}

/* The purge of ended sessions, then the insert and its audit entry: one transaction. */
static kw_status on_session_insert(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = exec(c, KW_Q_SESSION_PURGE, NULL, "i", m->now);
    if (status == KW_OK)
        status = exec(c, KW_Q_SESSION_INSERT, NULL, "htii", m->hash, m->id, m->now, m->expires_at);
    if (status == KW_OK && m->au)
        status = exec(c, KW_Q_SESSION_AUDIT, NULL, "ittt", m->au->at, m->au->action,
                      m->au->source_ip, m->id);
    return status;
}

static kw_status on_session_touch(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    return exec(c, KW_Q_SESSION_TOUCH, NULL, "hi", m->hash, m->now);
}

/*
 * A session that a concurrent delete took first is not found (and its
 * audit entry, written first while the user is still known, rolls back).
 */
static kw_status on_session_delete(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    int64_t deleted = 0;
    kw_status status = KW_OK;
    if (m->au)
        status = exec(c, KW_Q_SESSION_END_AUDIT, NULL, "itth", m->au->at, m->au->action,
                      m->au->source_ip, m->hash);
    if (status == KW_OK)
        status = exec(c, KW_Q_SESSION_DELETE, &deleted, "h", m->hash);
    return status == KW_OK && deleted == 0 ? KW_ERR_NOT_FOUND : status;
}

/*
 * The dialect's lock (none on SQLite, whose write lock is already held)
 * makes of several nodes bootstrapping at once one go first; the others
 * then find the store in use.
 */
static kw_status on_bootstrap(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    kw_status status = exec(c, KW_Q_BOOTSTRAP_LOCK, NULL, "");
    kw_sql_rows rows;
    int64_t empty = 0;
    if (status == KW_OK)
        status = query(c, KW_Q_STORE_EMPTY, &rows, "");
    if (status == KW_OK)
        status = read_one(&rows, read_int, &empty);
    if (status == KW_OK && !empty)
        status = KW_ERR_CONFLICT;
    const kw_account *a = m->account;
    if (status == KW_OK)
        status = exec(c, KW_Q_ACCOUNT_INSERT, NULL, "tti", a->id, a->name, a->created_at);
    if (status == KW_OK)
        status = audit(c, m->au, "account.create", a->id, NULL, NULL);
    if (status == KW_OK)
        status = insert_user(c, m, "user.add");
    return status == KW_OK ? insert_root_key(c, m, "root_key.create") : status;
}

/* Entries hold no hash, so a prune erases nothing that must leave the files. */
static kw_status on_feed_prune(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    return exec(c, KW_Q_FEED_PRUNE, NULL, "i", m->now);
}

/*
 * The head in share mode first: a writer's feed_bump waits for this
 * transaction, or this waits for the writer's commit and then reads its
 * position. So a lease is granted only to a node that has applied every
 * change committed before it, and no change commits until it is granted.
 */
static kw_status on_node_renew(kw_sql_conn *c, void *arg)
{
    change *m = arg;
    kw_sql_rows rows;
    kw_status status = query(c, KW_Q_FEED_LOCK, &rows, "");
    if (status == KW_OK)
        status = read_one(&rows, read_int, &m->seq);
    if (status == KW_ERR_NOT_FOUND)
        status = KW_ERR_INTERNAL;
    if (status == KW_OK && m->seq > m->limit)
        status = KW_ERR_CONFLICT; /* rolled back: nothing granted */
    if (status == KW_OK)
        status = exec(c, KW_Q_NODE_RENEW, NULL, "tii", m->id, m->limit, m->expires_at);
    return status;
}

static kw_status on_node_leave(kw_sql_conn *c, void *arg)
{
    const change *m = arg;
    return exec(c, KW_Q_NODE_LEAVE, NULL, "t", m->id);
}

/* Runs a mutation's body in a KW_SQL_WRITE transaction. */
static kw_status mutate(kw_store *base, kw_sql_body body, change *m)
{
    return STORE(base)->driver->run(STORE(base)->db, KW_SQL_WRITE, body, m);
}

/* ---- the operations ---- */

static void op_close(kw_store *base)
{
    if (!base)
        return;
    STORE(base)->driver->close(STORE(base)->db);
    free(base);
}

typedef struct {
    int *version;
    kw_error *err;
    bool ran;
} migration;

static kw_status on_migrate(kw_sql_conn *c, void *arg)
{
    migration *m = arg;
    m->ran = true;
    return c->driver->migrate(c, m->version, m->err);
}

/* Each step is a transaction of its own, taken by the driver's migrate. */
static kw_status op_migrate(kw_store *base, int *version, kw_error *err)
{
    migration m = {.version = version, .err = err};
    kw_status status = STORE(base)->driver->run(STORE(base)->db, KW_SQL_READ, on_migrate, &m);
    if (status != KW_OK && !m.ran)
        return kw_error_set(err, status, "Could not connect to the database.");
    return status;
}

static kw_status on_ping(kw_sql_conn *c, void *arg)
{
    (void)arg;
    return exec(c, KW_Q_PING, NULL, "");
}

static kw_status op_ping(kw_store *base)
{
    return STORE(base)->driver->run(STORE(base)->db, KW_SQL_READ, on_ping, NULL);
}

static kw_status op_account_insert(kw_store *base, const kw_account *a, const kw_audit *au)
{
    change m = {.au = au, .account = a};
    return mutate(base, on_account_insert, &m);
}

static kw_status op_account_get(kw_store *base, const char *id, kw_account *out)
{
    return lookup(base, KW_Q_ACCOUNT_GET, read_account, out, "t", id);
}

static kw_status op_account_list(kw_store *base, kw_account_list *out)
{
    void *items;
    kw_status status = list_rows(base, KW_Q_ACCOUNT_LIST, read_account, sizeof *out->items, &items,
                                 &out->count, "");
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
    kw_status status = mutate(base, on_key_insert, &m);
    if (status == KW_OK && seq)
        *seq = m.seq;
    return status;
}

/* active_count is counted from the rows read, so it agrees with the list. */
static kw_status op_key_list(kw_store *base, const char *account_id, int64_t now, kw_key_list *out)
{
    memset(out, 0, sizeof *out);
    void *items;
    kw_status status = list_rows(base, KW_Q_KEY_LIST, read_key, sizeof *out->items, &items,
                                 &out->count, "t", account_id);
    out->items = items;
    for (size_t i = 0; i < out->count; i++)
        if (kw_key_active(&out->items[i], now))
            out->active_count++;
    return status;
}

static kw_status op_key_get(kw_store *base, const char *account_id, const char *key_id, kw_key *out)
{
    return lookup(base, KW_Q_KEY_GET, read_key, out, "tt", key_id, account_id);
}

static kw_status op_key_delete(kw_store *base, const char *account_id, const char *key_id,
                               const kw_audit *au, int64_t *seq)
{
    change m = {.au = au, .account_id = account_id, .id = key_id};
    kw_status status = mutate(base, on_key_delete, &m);
    if (status == KW_OK && seq)
        *seq = m.seq;
    return status;
}

static kw_status op_key_update(kw_store *base, const char *account_id, const char *key_id,
                               const kw_key_update *u, const kw_audit *au, kw_key *out,
                               int64_t *seq)
{
    change m = {.au = au, .account_id = account_id, .id = key_id, .update = u, .out = out};
    kw_status status = mutate(base, on_key_update, &m);
    if (status == KW_OK && seq)
        *seq = m.seq;
    return status;
}

static kw_status op_key_roll(kw_store *base, const char *account_id, const char *key_id,
                             const kw_key *k, const uint8_t hash[KW_HASH_BYTES],
                             uint32_t pepper_version, int64_t now, int64_t grace_s,
                             const kw_audit *au, kw_key *new_key, kw_key *previous, int64_t *seq)
{
    change m = {.au = au,
                .account_id = account_id,
                .id = key_id,
                .key = k,
                .hash = hash,
                .pepper_version = pepper_version,
                .now = now,
                .grace_s = grace_s,
                .out = new_key,
                .previous = previous};
    kw_status status = mutate(base, on_key_roll, &m);
    if (status == KW_OK && seq)
        *seq = m.seq;
    return status;
}

static kw_status op_key_revoke(kw_store *base, const char *account_id, const char *environment,
                               const kw_audit *au, int *count, int64_t *seq)
{
    change m = {.au = au, .account_id = account_id, .environment = environment};
    kw_status status = mutate(base, on_key_revoke, &m);
    *count = status == KW_OK ? (int)m.count : 0;
    if (status == KW_OK && seq)
        *seq = m.seq;
    return status;
}

static kw_status op_key_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                             uint32_t pepper_version, kw_key *out)
{
    return lookup(base, KW_Q_KEY_FIND, read_key, out, "hi", hash, (int64_t)pepper_version);
}

/* A JSON array of [id, at] pairs, the one parameter of a touch statement. */
typedef struct {
    char *text;
    size_t len;
} batch;

/* Room for count items; false when out of memory (free with batch_free either way). */
static bool batch_init(batch *b, size_t count)
{
    /* An id character takes at most 6 ("\u001f"); the brackets, quotes and time under 32. */
    b->text = malloc(count * (6 * KW_ID_BUFSZ + 32) + 2);
    if (!b->text)
        return false;
    memcpy(b->text, "[", 2);
    b->len = 1;
    return true;
}

/* Adds ["id",at], the id escaped so that none can break out of its string. */
static void batch_add(batch *b, const kw_touch *t)
{
    char *p = b->text + b->len;
    if (b->len > 1)
        *p++ = ',';
    *p++ = '[';
    *p++ = '"';
    for (size_t i = 0; i < KW_ID_BUFSZ && t->id[i]; i++) {
        unsigned char ch = (unsigned char)t->id[i];
        if (ch < 0x20) {
            p += sprintf(p, "\\u%04x", ch);
            continue;
        }
        if (ch == '"' || ch == '\\')
            *p++ = '\\';
        *p++ = (char)ch;
    }
    p += sprintf(p, "\",%lld]", (long long)t->at);
    b->len = (size_t)(p - b->text);
}

/* Closes the array; NULL when nothing was added (the statement is skipped). */
static const char *batch_close(batch *b)
{
    memcpy(b->text + b->len, "]", 2);
    return b->len > 1 ? b->text : NULL;
}

/*
 * One transaction and two statements for the whole batch, however many
 * keys were used: the ids and their times travel in one JSON parameter
 * each, and the newest time of an id listed twice wins.
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
        change m = {.touch = {batch_close(&keys), batch_close(&roots)}};
        status = m.touch[0] || m.touch[1] ? mutate(base, on_touch, &m) : KW_OK;
    }
    free(keys.text);
    free(roots.text);
    return status;
}

static kw_status op_root_key_insert(kw_store *base, const kw_root_key *rk,
                                    const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                                    const kw_audit *au)
{
    change m = {.au = au, .root_key = rk, .hash = hash, .pepper_version = pepper_version};
    return mutate(base, on_root_key_insert, &m);
}

static kw_status op_root_key_list(kw_store *base, kw_root_key_list *out)
{
    void *items;
    kw_status status =
        list_rows(base, KW_Q_ROOT_LIST, read_root_key, sizeof *out->items, &items, &out->count, "");
    out->items = items;
    return status;
}

static kw_status op_root_key_delete(kw_store *base, const char *id, const kw_audit *au)
{
    change m = {.au = au, .id = id};
    return mutate(base, on_key_delete, &m);
}

static kw_status op_root_key_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                  uint32_t pepper_version, kw_root_key *out)
{
    return lookup(base, KW_Q_ROOT_FIND, read_root_key, out, "hi", hash, (int64_t)pepper_version);
}

static kw_status op_user_insert(kw_store *base, const kw_user *u, const char *password_hash,
                                const kw_audit *au)
{
    change m = {.au = au, .user = u, .password_hash = password_hash};
    return mutate(base, on_user_insert, &m);
}

typedef struct {
    const char *email;
    kw_user *out;
    char *password_hash;
    size_t hash_size;
} user_query;

static const text_col user_texts[] = {TEXT(kw_user, id, 0), TEXT(kw_user, account_id, 1),
                                      TEXT(kw_user, email, 2)};

/* The stored password hash is wiped from the caller's buffer when the row does not fit. */
static kw_status on_user_find(kw_sql_conn *c, void *arg)
{
    user_query *a = arg;
    kw_sql_rows rows;
    kw_status status = query(c, KW_Q_USER_FIND, &rows, "t", a->email);
    if (status != KW_OK)
        return status;
    if (!rows.row) {
        status = KW_ERR_NOT_FOUND;
    } else {
        kw_user *u = a->out;
        memset(u, 0, sizeof *u);
        u->created_at = col_int(&rows, 3);
        if (!READ_TEXTS(&rows, u, user_texts) ||
            !col_text(&rows, 4, a->password_hash, a->hash_size)) {
            memset(a->password_hash, 0, a->hash_size);
            status = KW_ERR_INTERNAL;
        }
    }
    c->driver->done(&rows);
    return status;
}

static kw_status op_user_find_by_email(kw_store *base, const char *email, kw_user *out,
                                       char *password_hash, size_t hash_size)
{
    user_query a = {email, out, password_hash, hash_size};
    return STORE(base)->driver->run(STORE(base)->db, KW_SQL_READ, on_user_find, &a);
}

static kw_status op_audit_list(kw_store *base, const char *account_id, size_t limit,
                               kw_audit_list *out)
{
    int64_t n = limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
    size_t elem = sizeof *out->items;
    void *items;
    kw_status status =
        account_id ? list_rows(base, KW_Q_AUDIT_ACCOUNT, read_audit, elem, &items, &out->count,
                               "ti", account_id, n)
                   : list_rows(base, KW_Q_AUDIT_ALL, read_audit, elem, &items, &out->count, "i", n);
    out->items = items;
    return status;
}

static kw_status op_audit_page(kw_store *base, const char *account_id, int64_t before_seq,
                               size_t limit, kw_audit_list *out)
{
    int64_t n = limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
    void *items;
    kw_status status =
        list_rows(base, KW_Q_AUDIT_PAGE, read_audit, sizeof *out->items, &items, &out->count, "tii",
                  account_id, before_seq > 0 ? before_seq : INT64_MAX, n);
    out->items = items;
    return status;
}

static kw_status op_audit_prune(kw_store *base, int64_t before_time, int64_t *removed)
{
    change m = {.now = before_time};
    kw_status status = mutate(base, on_audit_prune, &m);
    *removed = status == KW_OK ? m.count : 0;
    return status;
}

static kw_status op_pepper_check(kw_store *base, uint32_t version,
                                 const uint8_t check[KW_HASH_BYTES])
{
    change m = {.hash = check, .pepper_version = version, .now = (int64_t)time(NULL)};
    return mutate(base, on_pepper_check, &m);
}

static kw_status op_key_count_active(kw_store *base, int64_t now, int64_t *count)
{
    return lookup(base, KW_Q_KEY_COUNT_ACTIVE, read_int, count, "i", now);
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
    return mutate(base, on_bootstrap, &m);
}

static kw_status op_change_token(kw_store *base, uint64_t *token)
{
    return STORE(base)->driver->change_token(STORE(base)->db, token);
}

static kw_status op_session_insert(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                   const char *user_id, int64_t now, int64_t expires_at,
                                   const kw_audit *au)
{
    change m = {.au = au, .hash = hash, .id = user_id, .now = now, .expires_at = expires_at};
    return mutate(base, on_session_insert, &m);
}

static kw_status op_session_find(kw_store *base, const uint8_t hash[KW_HASH_BYTES], kw_session *out)
{
    return lookup(base, KW_Q_SESSION_FIND, read_session, out, "h", hash);
}

static kw_status op_session_touch(kw_store *base, const uint8_t hash[KW_HASH_BYTES], int64_t at)
{
    change m = {.hash = hash, .now = at};
    return mutate(base, on_session_touch, &m);
}

static kw_status op_session_delete(kw_store *base, const uint8_t hash[KW_HASH_BYTES],
                                   const kw_audit *au)
{
    change m = {.au = au, .hash = hash};
    return mutate(base, on_session_delete, &m);
}

static kw_status op_feed_head(kw_store *base, int64_t *head)
{
    return lookup(base, KW_Q_FEED_HEAD, read_int, head, "");
}

typedef struct {
    kw_key_row_fn fn;
    void *ctx;
    int64_t head;
} scan;

/* The head, then the rows as a stream: a million keys are never held at once. */
static kw_status on_key_scan(kw_sql_conn *c, void *arg)
{
    scan *a = arg;
    const kw_sql_driver *d = c->driver;
    kw_sql_rows rows;
    kw_status status = query(c, KW_Q_FEED_HEAD, &rows, "");
    if (status == KW_OK)
        status = read_one(&rows, read_int, &a->head);
    if (status == KW_ERR_NOT_FOUND)
        status = KW_ERR_INTERNAL;
    if (status == KW_OK)
        status = d->query(c, KW_Q_KEY_SCAN, NULL, 0, true, &rows);
    if (status != KW_OK)
        return status;
    while (status == KW_OK && rows.row) {
        kw_key_row row;
        status = read_key_row(&rows, &row) ? a->fn(a->ctx, &row) : KW_ERR_INTERNAL;
        if (status == KW_OK)
            status = d->next(&rows);
    }
    d->done(&rows);
    return status;
}

/* One snapshot for the head and the rows; never run twice, as fn has seen rows. */
static kw_status op_key_scan(kw_store *base, kw_key_row_fn fn, void *ctx, int64_t *head)
{
    scan a = {.fn = fn, .ctx = ctx};
    kw_status status = STORE(base)->driver->run(STORE(base)->db, KW_SQL_SNAPSHOT, on_key_scan, &a);
    if (status == KW_OK)
        *head = a.head;
    return status;
}

static kw_status op_changes_since(kw_store *base, int64_t after, size_t limit,
                                  kw_key_change_list *out)
{
    int64_t n = limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
    void *items;
    kw_status status = list_rows(base, KW_Q_CHANGES_SINCE, read_change, sizeof *out->items, &items,
                                 &out->count, "ii", after, n);
    out->items = items;
    return status;
}

static kw_status op_feed_prune(kw_store *base, int64_t before)
{
    change m = {.now = before};
    return mutate(base, on_feed_prune, &m);
}

static kw_status op_node_renew(kw_store *base, const char *node_id, int64_t applied, int lease_ms,
                               int64_t *head)
{
    change m = {.id = node_id, .limit = applied, .expires_at = lease_ms};
    kw_status status = mutate(base, on_node_renew, &m);
    if (status == KW_OK || status == KW_ERR_CONFLICT)
        *head = m.seq;
    return status;
}

static kw_status op_nodes_behind(kw_store *base, int64_t seq, int *count)
{
    int64_t n = 0;
    kw_status status = lookup(base, KW_Q_NODES_BEHIND, read_int, &n, "i", seq);
    if (status == KW_OK)
        *count = n > INT32_MAX ? INT32_MAX : (int)n;
    return status;
}

static kw_status op_node_leave(kw_store *base, const char *node_id)
{
    change m = {.id = node_id};
    return mutate(base, on_node_leave, &m);
}

static kw_status op_feed_wait(kw_store *base, int timeout_ms)
{
    return STORE(base)->driver->feed_wait(STORE(base)->db, timeout_ms);
}

/* What every SQL store has; the two tables below add what one driver offers. */
#define COMMON_OPS                                                                                 \
    .close = op_close, .migrate = op_migrate, .ping = op_ping,                                     \
    .account_insert = op_account_insert, .account_get = op_account_get,                            \
    .account_list = op_account_list, .key_insert = op_key_insert, .key_list = op_key_list,         \
    .key_get = op_key_get, .key_delete = op_key_delete, .key_update = op_key_update,               \
    .key_roll = op_key_roll, .key_revoke = op_key_revoke, .key_find = op_key_find,                 \
    .touch = op_touch, .root_key_insert = op_root_key_insert, .root_key_list = op_root_key_list,   \
    .root_key_delete = op_root_key_delete, .root_key_find = op_root_key_find,                      \
    .user_insert = op_user_insert, .user_find_by_email = op_user_find_by_email,                    \
    .pepper_check = op_pepper_check, .audit_list = op_audit_list, .audit_page = op_audit_page,     \
    .audit_prune = op_audit_prune, .session_insert = op_session_insert,                            \
    .session_find = op_session_find, .session_touch = op_session_touch,                            \
    .session_delete = op_session_delete, .key_count_active = op_key_count_active,                  \
    .feed_head = op_feed_head, .key_scan = op_key_scan, .changes_since = op_changes_since,         \
    .feed_prune = op_feed_prune, .bootstrap = op_bootstrap

/* A store whose nodes share its files (SQLite): the change token. */
static const kw_store_ops token_ops = {
    COMMON_OPS,
    .change_token = op_change_token,
};

/* A store over the network (PostgreSQL): node leases and the feed's wake-up. */
static const kw_store_ops lease_ops = {
    COMMON_OPS,
    .node_renew = op_node_renew,
    .nodes_behind = op_nodes_behind,
    .node_leave = op_node_leave,
    .feed_wait = op_feed_wait,
};

long long kw_sql_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

kw_status kw_sql_store_open(const kw_sql_driver *driver, void *db, kw_store **out, kw_error *err)
{
    *out = NULL;
    sql_store *s = calloc(1, sizeof *s);
    if (!s) {
        driver->close(db);
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    }
    s->base.ops = driver->change_token ? &token_ops : &lease_ops;
    s->driver = driver;
    s->db = db;
    *out = &s->base;
    return KW_OK;
}
