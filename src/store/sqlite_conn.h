/*
 * sqlite_conn.h - one SQLite connection of the store, with its prepared
 * statements, transactions and checkpoints; internal to src/store.
 *
 * A connection is used by one thread at a time (sql_pool.c lends it for
 * one operation), so it is opened NOMUTEX. Statements are prepared on a
 * connection's first use of them and kept until it closes.
 */
#ifndef KW_SQLITE_CONN_H
#define KW_SQLITE_CONN_H

#if defined(KW_LAYER_CORE)
#error "store/sqlite_conn.h is in the store layer, which core must not include"
#endif

#include <sqlite3.h>
#include <stdbool.h>

#include "core/status.h"
#include "store/sql.h"

typedef struct {
    kw_sql_conn base; /* first: sql.h */
    sqlite3 *db;
    sqlite3_stmt *stmt[KW_Q_COUNT]; /* prepared on first use */
    sqlite3_stmt *tx[4];            /* BEGIN IMMEDIATE, BEGIN, COMMIT, ROLLBACK */
    bool broken;                    /* stuck inside a transaction: closed instead of reused */
} kw_sqlite_conn;

/*
 * Opens a connection to the database at path for driver, with the
 * settings every connection needs (WAL, synchronous=FULL, secure_delete,
 * the busy timeout). Returns an SQLite result code; on SQLITE_OK *out is
 * the caller's (kw_sqlite_conn_close).
 */
int kw_sqlite_conn_open(const char *path, const kw_sql_driver *driver, kw_sql_conn **out);
void kw_sqlite_conn_close(kw_sql_conn *c);

/* Statement q of c, prepared from its dialect's text on first use; *out is NULL on failure. */
int kw_sqlite_prepare(kw_sqlite_conn *c, int q, sqlite3_stmt **out);

/*
 * Opens a transaction: BEGIN IMMEDIATE (`write`: the write lock first,
 * waiting up to the busy timeout) or BEGIN (a read whose snapshot is
 * taken by its first statement).
 */
kw_status kw_sqlite_begin(kw_sqlite_conn *c, bool write);

/*
 * Ends the transaction of kw_sqlite_begin: commits when status is KW_OK,
 * else rolls back so that nothing is half-written. Returns the final status.
 */
kw_status kw_sqlite_end(kw_sqlite_conn *c, kw_status status);

/*
 * Outside a transaction: copies every frame of the WAL into the database
 * file and truncates the WAL to zero bytes. When readers of older snapshots
 * or another writer are in the way it tries again every 0.1 ms, for at
 * most about 0.1 s, if `wait`, else not at all; then it gives up with
 * KW_ERR_UNAVAILABLE, having copied what it could. Neither readers nor
 * writers wait for it, except for the moment the WAL is cut.
 */
kw_status kw_sqlite_checkpoint(kw_sqlite_conn *c, bool wait);

#endif
