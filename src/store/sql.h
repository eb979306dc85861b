/*
 * sql.h - the SQL store over a driver; internal to src/store.
 *
 * Every store operation is written once, in sql.c: its statements, their
 * parameters, how its rows are read and which transaction it runs in. A
 * driver (sqlite.c, postgres.c) brings the connections, runs transactions
 * and statements, reads columns and maps its errors to kw_status; its
 * dialect supplies the few statements whose text must differ.
 *
 * Statements are written with ?1, ?2, ... placeholders, which SQLite reads
 * as they are and the PostgreSQL driver rewrites to $1, $2, ...
 */
#ifndef KW_SQL_H
#define KW_SQL_H

#if defined(KW_LAYER_CORE)
#error "store/sql.h is in the store layer, which core must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/status.h"
#include "store/store.h"

/* The statements, by index: those of every dialect, then the dialect's own. */
enum {
    KW_Q_PING,
    KW_Q_AUDIT_INSERT,
    KW_Q_AUDIT_ALL,
    KW_Q_AUDIT_ACCOUNT,
    KW_Q_ACCOUNT_INSERT,
    KW_Q_ACCOUNT_EXISTS,
    KW_Q_ACCOUNT_GET,
    KW_Q_KEY_LIST,
    KW_Q_KEY_GET,
    KW_Q_KEY_DELETE,
    KW_Q_KEY_FIND,
    KW_Q_ROOT_INSERT,
    KW_Q_ROOT_DELETE,
    KW_Q_ROOT_FIND,
    KW_Q_USER_INSERT,
    KW_Q_PEPPER_CHECK_INSERT,
    KW_Q_PEPPER_CHECK_SAME,
    KW_Q_KEY_COUNT_ACTIVE,
    KW_Q_SESSION_PURGE,
    KW_Q_SESSION_INSERT,
    KW_Q_SESSION_FIND,
    KW_Q_SESSION_TOUCH,
    KW_Q_SESSION_DELETE,
    KW_Q_STORE_EMPTY,
    KW_Q_FEED_APPEND,
    KW_Q_FEED_HEAD,
    KW_Q_FEED_PRUNE,
    KW_Q_KEY_SCAN,
    KW_Q_CHANGES_SINCE,
    KW_Q_NODE_LEAVE,
    KW_Q_AUDIT_PAGE,
    KW_Q_AUDIT_PRUNE_BOUND,
    KW_Q_AUDIT_PRUNE,
    KW_Q_KEY_UPDATE,
    KW_Q_KEY_ROLLED,
    KW_Q_KEY_REVOKE,
    KW_Q_KEY_UNROLL,
    KW_Q_SESSION_AUDIT,
    KW_Q_SESSION_END_AUDIT,
    /* kw_sql_dialect, in the order of its fields */
    KW_Q_ACCOUNT_LIST,
    KW_Q_ACCOUNT_LOCK,
    KW_Q_KEY_INSERT,
    KW_Q_ROOT_LIST,
    KW_Q_KEY_TOUCH,
    KW_Q_ROOT_TOUCH,
    KW_Q_USER_FIND,
    KW_Q_BOOTSTRAP_LOCK,
    KW_Q_FEED_BUMP,
    KW_Q_FEED_LOCK,
    KW_Q_NODE_RENEW,
    KW_Q_NODES_BEHIND,
    KW_Q_COUNT
};

/*
 * The statements whose text differs between databases, with the
 * parameters sql.c binds to them. NULL where a dialect needs none (the
 * statement is skipped) or has no such operation (node leases).
 */
typedef struct {
    const char *account_list; /* all accounts, oldest first */
    const char
        *account_lock;      /* ?1 id: a row when it exists, locked to the end of the transaction */
    const char *key_insert; /* ?1..?14 the key, ?15 now, ?16 limit: inserts only under the limit */
    const char *root_list;  /* all root keys, newest first */
    const char *key_touch;  /* ?1 JSON [[id, at], ...]: raises last_used_at, never lowers it */
    const char *root_touch; /* the same for root keys */
    const char *user_find;  /* ?1 email, compared case-insensitively */
    const char *bootstrap_lock; /* serializes first runs across nodes */
    const char *feed_bump;      /* advances the feed head, returns it */
    const char *feed_lock;      /* the head, held against feed_bump to the end */
    const char *node_renew;     /* ?1 node, ?2 applied, ?3 lease in ms */
    const char *nodes_behind;   /* ?1 seq: live leases behind it */
} kw_sql_dialect;

/* Columns and statements that the dialects write out in their own words. */
#define KW_SQL_KEY_COLS                                                                            \
    "id, account_id, name, environment, masked, created_at, last_used_at, expires_at, enabled, "   \
    "rolled_from, rolled_to, metadata"
#define KW_SQL_ROOT_COLS "id, name, masked, created_at, last_used_at"
/* The key insert that checks the limit itself: values, then the account, now and the limit. */
#define KW_SQL_KEY_INSERT(values, account, now, limit)                                             \
    "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, pepper_version, "       \
    "created_at, last_used_at, expires_at, enabled, rolled_from, rolled_to, metadata) "            \
    "SELECT " values " WHERE (SELECT count(*) FROM "                                               \
    "api_keys WHERE account_id = " account " AND (expires_at IS NULL OR expires_at > " now         \
    ")) < " limit
/* Raises last_used_at of table to the newest time `pairs` (rows of id, at) give an id. */
#define KW_SQL_TOUCH(table, pairs)                                                                 \
    "UPDATE " table " AS k SET last_used_at = t.at FROM (SELECT id, max(at) AS at FROM (" pairs    \
    ") AS p GROUP BY id) AS t WHERE k.id = t.id AND (k.last_used_at IS NULL OR "                   \
    "k.last_used_at < t.at)"

/* The text of statement q in dialect d (NULL: none). */
const char *kw_sql_statement(const kw_sql_dialect *d, int q);

/* A parameter of a statement; values are not copied. */
typedef enum { KW_SQL_NULL, KW_SQL_TEXT, KW_SQL_INT, KW_SQL_HASH } kw_sql_type;

typedef struct {
    kw_sql_type type;
    const char *text;     /* KW_SQL_TEXT */
    int64_t num;          /* KW_SQL_INT */
    const uint8_t *bytes; /* KW_SQL_HASH: KW_HASH_BYTES bytes */
} kw_sql_param;

#define KW_SQL_MAX_PARAMS 16

typedef struct kw_sql_driver kw_sql_driver;

/*
 * What every driver's connection begins with: the driver, and whether the
 * transaction under way removed a hash (a delete), which a driver may
 * have to make leave its files after the commit.
 */
typedef struct {
    const kw_sql_driver *driver;
    bool erased;
} kw_sql_conn;

/* The rows a statement answers, read one at a time; the fields are the driver's. */
typedef struct {
    kw_sql_conn *conn;
    void *res;       /* the driver's statement or result */
    int index;       /* the current row within res, where res holds several */
    int count;       /* rows in res */
    bool row;        /* a row is current */
    bool streamed;   /* rows come one at a time from the server */
    int64_t changed; /* rows a statement without rows changed */
} kw_sql_rows;

/* How a body runs (see kw_sql_driver.run). */
typedef enum {
    KW_SQL_READ,     /* statements on their own, no transaction */
    KW_SQL_WRITE,    /* one transaction that takes the write lock first */
    KW_SQL_SNAPSHOT, /* one read-only transaction on one snapshot, never run twice */
} kw_sql_mode;

/* The statements of an operation on c: KW_OK or the status to return (and roll back). */
typedef kw_status (*kw_sql_body)(kw_sql_conn *c, void *arg);

struct kw_sql_driver {
    const kw_sql_dialect *dialect;
    /*
     * Runs body on a connection of db, in `mode`, committing when it
     * returns KW_OK. A body in KW_SQL_READ or KW_SQL_WRITE may be run
     * again after a failure the driver knows to be transient, so it only
     * reads its arguments and overwrites its results.
     */
    kw_status (*run)(void *db, kw_sql_mode mode, kw_sql_body body, void *arg);
    /*
     * Runs statement q with params; on KW_OK *out is on its first row, if
     * any (out->row), and must be passed to done. `stream`: the rows may
     * be many, read them from the server as they are read here. q must
     * have a text in the dialect.
     */
    kw_status (*query)(kw_sql_conn *c, int q, const kw_sql_param *params, int count, bool stream,
                       kw_sql_rows *out);
    kw_status (*next)(kw_sql_rows *r); /* moves to the next row, if any */
    void (*done)(kw_sql_rows *r);
    bool (*is_null)(const kw_sql_rows *r, int col);
    int64_t (*integer)(const kw_sql_rows *r, int col); /* a boolean is 0 or 1 */
    const char *(*text)(const kw_sql_rows *r, int col, size_t *len);
    bool (*hash)(const kw_sql_rows *r, int col, uint8_t out[KW_HASH_BYTES]);

    /* Applies pending schema migrations on c; returns the resulting version. */
    kw_status (*migrate)(kw_sql_conn *c, int *version, kw_error *err);
    void (*close)(void *db);
    /* Exactly one of these two is set: the store's change token, or its wake-up. */
    kw_status (*change_token)(void *db, uint64_t *token);
    kw_status (*feed_wait)(void *db, int timeout_ms);
};

/*
 * The functions a driver defines with these names, prefix_run and so on,
 * for its kw_sql_driver; it adds the dialect and its change token or
 * wake-up.
 */
#define KW_SQL_DRIVER_FUNCTIONS(prefix)                                                            \
    .run = prefix##_run, .query = prefix##_query, .next = prefix##_next, .done = prefix##_done,    \
    .is_null = prefix##_is_null, .integer = prefix##_integer, .text = prefix##_text,               \
    .hash = prefix##_hash, .migrate = prefix##_migrate, .close = prefix##_close

/* CLOCK_MONOTONIC in milliseconds. */
long long kw_sql_monotonic_ms(void);

/*
 * A store over driver and its database db (which the store now owns and
 * closes with driver->close). On failure db is closed and *out is NULL.
 */
kw_status kw_sql_store_open(const kw_sql_driver *driver, void *db, kw_store **out, kw_error *err);

#endif
