/*
 * sqlite_pool.h - a pool of SQLite connections to one database file, each
 * with its own cache of prepared statements; internal to src/store.
 *
 * A thread takes a connection for the length of one operation and gives it
 * back, so no sqlite3 handle is ever used by two threads at once (they are
 * opened NOMUTEX). Statements are named by their index in the SQL table
 * given to kw_sqlite_pool_open, prepared on a connection's first use and
 * kept until the pool closes.
 */
#ifndef KW_SQLITE_POOL_H
#define KW_SQLITE_POOL_H

#if defined(KW_LAYER_CORE)
#error "store/sqlite_pool.h is in the store layer, which core must not include"
#endif

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>

#include "core/status.h"

typedef struct kw_sqlite_pool kw_sqlite_pool;

typedef struct {
    sqlite3 *db;
    const char *const *sql; /* the pool's SQL table */
    sqlite3_stmt **stmt;    /* one slot per entry of the pool's SQL table */
    sqlite3_stmt *tx[3];    /* BEGIN IMMEDIATE, COMMIT, ROLLBACK */
    bool broken;            /* stuck inside a transaction: closed instead of reused */
} kw_sqlite_conn;

/*
 * Creates a pool of at most `size` connections to the database at path,
 * for statements sql[0 .. count - 1] (the table must outlive the pool).
 * Opens the first connection at once so that an unusable path fails here.
 * Returns an SQLite result code; on SQLITE_OK *out is the caller's
 * (kw_sqlite_pool_close).
 */
int kw_sqlite_pool_open(const char *path, const char *const *sql, int count, int size,
                        kw_sqlite_pool **out);

/* Closes every connection; none may be in use. */
void kw_sqlite_pool_close(kw_sqlite_pool *p);

/*
 * Takes a connection for the calling thread, waiting while all are in use.
 * Every KW_OK is paired with one kw_sqlite_release.
 */
kw_status kw_sqlite_acquire(kw_sqlite_pool *p, kw_sqlite_conn **out);
void kw_sqlite_release(kw_sqlite_pool *p, kw_sqlite_conn *c);

/*
 * Runs statement q with the arguments after fmt bound to parameters 1, 2,
 * ..., one per character of fmt: 't' const char * (NULL binds NULL), 'i'
 * int64_t, 'o' an optional time (int64_t) where KW_TIME_NONE binds NULL, 'h' a
 * KW_HASH_BYTES byte hash. Values are not copied. Steps once and returns
 * SQLITE_ROW, SQLITE_DONE or an error code; *out receives the statement (or
 * NULL), which the caller reads and then hands to kw_sqlite_done.
 */
int kw_sqlite_run(kw_sqlite_conn *c, int q, sqlite3_stmt **out, const char *fmt, ...);
int kw_sqlite_vrun(kw_sqlite_conn *c, int q, sqlite3_stmt **out, const char *fmt, va_list ap);

/* Resets st and drops its references to the caller's values. NULL is fine. */
void kw_sqlite_done(sqlite3_stmt *st);

/* kw_sqlite_run for a statement run for its effect: KW_OK when it completed. */
kw_status kw_sqlite_exec(kw_sqlite_conn *c, int q, const char *fmt, ...);

/* Opens a write transaction: BEGIN IMMEDIATE, waiting up to the busy timeout. */
kw_status kw_sqlite_begin(kw_sqlite_conn *c);

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
