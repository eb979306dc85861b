/*
 * postgres_pool.h - a pool of libpq connections to one PostgreSQL database,
 * each with its own prepared statements, and the transaction runner that
 * retries what may safely be retried; internal to src/store.
 *
 * A thread takes a connection for the length of one operation and gives it
 * back, so no PGconn is ever used by two threads at once. Statements are
 * named by their index in the SQL table given to kw_pg_pool_open and
 * prepared (PQprepare) on a connection's first use of them; a connection
 * that was reset prepares them again.
 */
#ifndef KW_POSTGRES_POOL_H
#define KW_POSTGRES_POOL_H

#if defined(KW_LAYER_CORE)
#error "store/postgres_pool.h is in the store layer, which core must not include"
#endif

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

typedef struct kw_pg_pool kw_pg_pool;

typedef struct {
    PGconn *db;
    const char *const *sql; /* the pool's SQL table */
    bool *prepared;         /* one flag per entry of the pool's SQL table */
    char sqlstate[6];       /* SQLSTATE of the last failed statement, "" if none */
    bool lost;              /* the last statement failed because the connection broke */
} kw_pg_conn;

/*
 * Creates a pool of at most `size` connections to the database named by
 * url (a postgres:// or postgresql:// URL; the pool keeps a copy, wiped on
 * close) for statements sql[0 .. count - 1] (the table must outlive the
 * pool). Connects once at once so that a wrong URL or an unreachable
 * server fails here. On KW_OK *out is the caller's (kw_pg_pool_close); on
 * failure err holds a sentence that never repeats the URL.
 */
kw_status kw_pg_pool_open(const char *url, const char *const *sql, int count, int size,
                          kw_pg_pool **out, kw_error *err);

/*
 * Opens a connection of the caller's own, outside the pool, with the
 * pool's URL and settings (for LISTEN, which must outlive any one
 * operation). NULL when the server does not accept it; else the caller
 * PQfinishes it.
 */
PGconn *kw_pg_connect(kw_pg_pool *p);

/* Closes every connection; none may be in use. NULL is fine. */
void kw_pg_pool_close(kw_pg_pool *p);

/*
 * Takes a connection for the calling thread, waiting a bounded time while
 * all are in use, and reconnecting one that broke. KW_ERR_UNAVAILABLE when
 * the server cannot be reached. Every KW_OK is paired with one
 * kw_pg_release.
 */
kw_status kw_pg_acquire(kw_pg_pool *p, kw_pg_conn **out);
void kw_pg_release(kw_pg_pool *p, kw_pg_conn *c);

/*
 * Runs statement q with the arguments after fmt bound to $1, $2, ..., one
 * per character of fmt: 't' const char * (NULL binds NULL), 'i' int64_t,
 * 'o' an optional time (int64_t) where KW_TIME_NONE binds NULL, 'h' a KW_HASH_BYTES byte
 * hash (sent as binary bytea). On KW_OK *out (when not NULL) receives the
 * result, which the caller frees with PQclear, and *rows (when not NULL)
 * the number of rows the statement affected. On failure *out is NULL and
 * c->sqlstate and c->lost say why.
 */
kw_status kw_pg_run(kw_pg_conn *c, int q, PGresult **out, int64_t *rows, const char *fmt, ...);
kw_status kw_pg_vrun(kw_pg_conn *c, int q, PGresult **out, int64_t *rows, const char *fmt,
                     va_list ap);

/* Runs one SQL text without parameters (BEGIN, migrations); as kw_pg_run. */
kw_status kw_pg_command(kw_pg_conn *c, const char *sql, PGresult **out);

/* The body of an operation: its statements on c, KW_OK or the status to return. */
typedef kw_status (*kw_pg_body)(kw_pg_conn *c, void *arg);

/*
 * Runs body in one transaction (BEGIN ... COMMIT) on a pooled connection;
 * any status but KW_OK rolls it back. A serialization failure or deadlock
 * (SQLSTATE 40001, 40P01) is retried after a short random pause, and a
 * connection that broke before COMMIT was sent is reset and the body run
 * again, a bounded number of times in all: body must therefore be
 * repeatable. A connection that broke during COMMIT is not retried (the
 * outcome is unknown) and gives KW_ERR_UNAVAILABLE.
 */
kw_status kw_pg_transact(kw_pg_pool *p, kw_pg_body body, void *arg);

/* As kw_pg_transact without BEGIN/COMMIT, for reads (always safe to repeat). */
kw_status kw_pg_read(kw_pg_pool *p, kw_pg_body body, void *arg);

/*
 * Maps an SQLSTATE (NULL or "" when none) to the store's status: lost
 * connections, connection and resource errors, lock and statement
 * timeouts, serialization failures and deadlocks are KW_ERR_UNAVAILABLE; a
 * unique violation is KW_ERR_CONFLICT; anything else KW_ERR_INTERNAL.
 */
kw_status kw_pg_status(const char *sqlstate, bool lost);

#endif
