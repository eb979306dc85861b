/*
 * postgres_conn.h - the PostgreSQL store's connections, their prepared
 * statements, and the transaction runner that retries what may safely be
 * retried; internal to src/store.
 *
 * Connections are lent by a pool (sql_pool.c) for one operation, so no
 * PGconn is ever used by two threads at once. Statements are prepared
 * (PQprepare) on a connection's first use of them; a connection that was
 * reset prepares them again.
 */
#ifndef KW_POSTGRES_CONN_H
#define KW_POSTGRES_CONN_H

#if defined(KW_LAYER_CORE)
#error "store/postgres_conn.h is in the store layer, which core must not include"
#endif

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "store/sql.h"
#include "store/sql_pool.h"

typedef struct {
    kw_sql_conn base; /* first: sql.h */
    PGconn *db;
    const char *const *sql; /* statement texts with $N placeholders, by index */
    bool prepared[KW_Q_COUNT];
    char sqlstate[6]; /* SQLSTATE of the last failed statement, "" if none */
    bool lost;        /* the last statement failed because the connection broke */
} kw_pg_conn;

/*
 * Opens a connection to the database named by url with the settings every
 * connection gets (timeouts, keepalives); NULL when the server does not
 * accept it. Also for a connection outside the pool (LISTEN, which must
 * outlive any one operation).
 */
PGconn *kw_pg_connect(const char *url);

/* Opens a pooled connection for driver with the statements sql (which outlive it). */
kw_status kw_pg_conn_open(const char *url, const kw_sql_driver *driver, const char *const *sql,
                          kw_sql_conn **out);
void kw_pg_conn_close(kw_sql_conn *c);

/* A pooled connection that broke is reconnected before it is lent again. */
kw_status kw_pg_conn_check(kw_pg_conn *c);

/* false for a connection still inside a transaction (a ROLLBACK failed): closed, not kept. */
bool kw_pg_conn_reusable(const kw_pg_conn *c);

/*
 * Runs statement q with params ($1, $2, ...): hashes travel as binary
 * bytea, integers and text as text. On KW_OK *out is the whole result
 * (the caller PQclears it). With `stream` the statement is only sent, in
 * single-row mode: the caller reads it with PQgetResult. On failure *out
 * is NULL and c->sqlstate and c->lost say why.
 */
kw_status kw_pg_query(kw_pg_conn *c, int q, const kw_sql_param *params, int count, bool stream,
                      PGresult **out);

/* Maps a result that failed (NULL too) on c to the store's status; notes why in c. */
kw_status kw_pg_failed(kw_pg_conn *c, const PGresult *res);

/* Runs one SQL text without parameters (BEGIN, migrations); *out as kw_pg_query. */
kw_status kw_pg_command(kw_pg_conn *c, const char *sql, PGresult **out);

/*
 * Runs body on a connection of pool (see kw_sql_driver.run). KW_SQL_WRITE
 * is one READ COMMITTED transaction (BEGIN ... COMMIT), and any status but
 * KW_OK rolls it back. In KW_SQL_READ and KW_SQL_WRITE, a serialization
 * failure or deadlock (SQLSTATE 40001, 40P01) is retried after a short
 * random pause, and a connection that broke before COMMIT was sent is
 * reset and the body run again, a bounded number of times in all. A
 * connection that broke during COMMIT is not retried (the outcome is
 * unknown) and gives KW_ERR_UNAVAILABLE. KW_SQL_SNAPSHOT is one REPEATABLE
 * READ READ ONLY transaction, run once.
 */
kw_status kw_pg_run(kw_sql_pool *pool, kw_sql_mode mode, kw_sql_body body, void *arg);

/* How many times, in this process, a body has been run again after a failure (for tests). */
uint64_t kw_pg_retries(void);

#endif
