/*
 * postgres_conn.c - the PostgreSQL store's connections, statements and
 * retrying transaction runner.
 */
#include "store/postgres_conn.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/model.h"

#define MAX_ATTEMPTS 4 /* runs of one operation, retries included */

/*
 * Settings every connection gets. A URL that sets one of them wins: it is
 * expanded after these. connect_timeout and the TCP timeouts bound how
 * long an unreachable server can hold a request; lock_timeout and
 * statement_timeout bound how long a busy one can.
 */
static const char *const conn_keys[] = {"connect_timeout",
                                        "application_name",
                                        "client_encoding",
                                        "keepalives",
                                        "keepalives_idle",
                                        "keepalives_interval",
                                        "keepalives_count",
                                        "tcp_user_timeout",
                                        "options",
                                        "dbname",
                                        NULL};
static const char *const conn_values[] = {"3",
                                          "keyward",
                                          "UTF8",
                                          "1",
                                          "10",
                                          "3",
                                          "3",
                                          "10000",
                                          "-c lock_timeout=5000 -c statement_timeout=30000",
                                          NULL /* the URL */,
                                          NULL};

static atomic_ullong retries;

/*
 * Maps an SQLSTATE ("" when none) to the store's status: lost connections,
 * connection and resource errors, lock and statement timeouts,
 * serialization failures and deadlocks are KW_ERR_UNAVAILABLE; a unique
 * violation is KW_ERR_CONFLICT; anything else KW_ERR_INTERNAL.
 */
static kw_status pg_status(const char *sqlstate, bool lost)
{
    if (lost)
        return KW_ERR_UNAVAILABLE;
    if (!sqlstate || !*sqlstate)
        return KW_ERR_INTERNAL;
    if (strcmp(sqlstate, "23505") == 0) /* unique_violation */
        return KW_ERR_CONFLICT;
    /* 08 connection exception, 53 insufficient resources, 57P0x shutdown or
     * crash, 57014 statement timeout, 55P03 lock timeout, 40001 and 40P01
     * once their retries are spent. */
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
        strncmp(sqlstate, "57P0", 4) == 0 || strcmp(sqlstate, "57014") == 0 ||
        strcmp(sqlstate, "55P03") == 0 || strcmp(sqlstate, "40001") == 0 ||
        strcmp(sqlstate, "40P01") == 0)
        return KW_ERR_UNAVAILABLE;
    return KW_ERR_INTERNAL;
}

/* The store never writes to stderr: server notices are dropped. */
static void on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

PGconn *kw_pg_connect(const char *url)
{
    const char *values[sizeof conn_keys / sizeof conn_keys[0]];
    memcpy(values, conn_values, sizeof values);
    values[sizeof values / sizeof values[0] - 2] = url;
    PGconn *db = PQconnectdbParams(conn_keys, values, 1);
    if (!db || PQstatus(db) != CONNECTION_OK) {
        PQfinish(db);
        return NULL;
    }
    PQsetNoticeReceiver(db, on_notice, NULL); /* kept across PQreset */
    return db;
}

kw_status kw_pg_conn_open(const char *url, const kw_sql_driver *driver, const char *const *sql,
                          kw_sql_conn **out)
{
    *out = NULL;
    kw_pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return KW_ERR_INTERNAL;
    c->base.driver = driver;
    c->sql = sql;
    c->db = kw_pg_connect(url);
    if (!c->db) {
        free(c);
        return KW_ERR_UNAVAILABLE;
    }
    *out = &c->base;
    return KW_OK;
}

void kw_pg_conn_close(kw_sql_conn *base)
{
    kw_pg_conn *c = (kw_pg_conn *)base;
    if (c)
        PQfinish(c->db);
    free(c);
}

/* Reconnects c after its connection broke; its statements must be prepared again. */
static kw_status conn_reset(kw_pg_conn *c)
{
    memset(c->prepared, 0, sizeof c->prepared);
    PQreset(c->db);
    return PQstatus(c->db) == CONNECTION_OK ? KW_OK : KW_ERR_UNAVAILABLE;
}

kw_status kw_pg_conn_check(kw_pg_conn *c)
{
    return PQstatus(c->db) == CONNECTION_OK ? KW_OK : conn_reset(c);
}

bool kw_pg_conn_reusable(const kw_pg_conn *c)
{
    PGTransactionStatusType tx = PQtransactionStatus(c->db);
    return tx == PQTRANS_IDLE || tx == PQTRANS_UNKNOWN;
}

kw_status kw_pg_failed(kw_pg_conn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    c->lost = PQstatus(c->db) != CONNECTION_OK;
    return pg_status(c->sqlstate, c->lost);
}

/* Hands a finished result to the caller or frees it. */
static kw_status finish(kw_pg_conn *c, PGresult *res, PGresult **out)
{
    ExecStatusType rs = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
        kw_status status = kw_pg_failed(c, res);
        PQclear(res);
        return status;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return KW_OK;
}

/* Prepares statement q on c unless it already is; its name is "kw<q>". */
static kw_status prepare(kw_pg_conn *c, int q, const char *name)
{
    if (c->prepared[q])
        return KW_OK;
    if (!c->sql[q])
        return KW_ERR_INTERNAL;
    kw_status status = finish(c, PQprepare(c->db, name, c->sql[q], 0, NULL), NULL);
    c->prepared[q] = status == KW_OK;
    return status;
}

kw_status kw_pg_query(kw_pg_conn *c, int q, const kw_sql_param *params, int count, bool stream,
                      PGresult **out)
{
    *out = NULL;
    if (q < 0 || q >= KW_Q_COUNT || count > KW_SQL_MAX_PARAMS)
        return KW_ERR_INTERNAL;
    char name[16];
    snprintf(name, sizeof name, "kw%d", q);
    kw_status status = prepare(c, q, name);
    if (status != KW_OK)
        return status;
    const char *values[KW_SQL_MAX_PARAMS];
    int lengths[KW_SQL_MAX_PARAMS], formats[KW_SQL_MAX_PARAMS];
    char numbers[KW_SQL_MAX_PARAMS][24];
    for (int i = 0; i < count; i++) {
        const kw_sql_param *p = &params[i];
        lengths[i] = formats[i] = 0;
        values[i] = NULL;
        if (p->type == KW_SQL_TEXT) {
            values[i] = p->text;
        } else if (p->type == KW_SQL_INT) {
            snprintf(numbers[i], sizeof numbers[i], "%" PRId64, p->num);
            values[i] = numbers[i];
        } else if (p->type == KW_SQL_HASH) {
            values[i] = (const char *)p->bytes;
            lengths[i] = KW_HASH_BYTES;
            formats[i] = 1;
        }
    }
    if (!stream)
        return finish(c, PQexecPrepared(c->db, name, count, values, lengths, formats, 0), out);
    if (!PQsendQueryPrepared(c->db, name, count, values, lengths, formats, 0) ||
        !PQsetSingleRowMode(c->db))
        return kw_pg_failed(c, NULL);
    return KW_OK;
}

kw_status kw_pg_command(kw_pg_conn *c, const char *sql, PGresult **out)
{
    if (out)
        *out = NULL;
    return finish(c, PQexec(c->db, sql), out);
}

/* true for the failures that a fresh attempt of the whole transaction may cure. */
static bool transient(const kw_pg_conn *c)
{
    return strcmp(c->sqlstate, "40001") == 0 || strcmp(c->sqlstate, "40P01") == 0;
}

/* A short random pause, longer with each attempt, so that retrying rivals drift apart. */
static void backoff(int attempt)
{
    uint32_t ms = 1 + randombytes_uniform(10U * (uint32_t)attempt);
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Rolls back what a failed body left open; false when the connection broke. */
static bool roll_back(kw_pg_conn *c)
{
    bool lost = c->lost || PQstatus(c->db) != CONNECTION_OK;
    if (!lost && PQtransactionStatus(c->db) != PQTRANS_IDLE) {
        /* On failure ROLLBACK can only fail by losing the connection. */
        PQclear(PQexec(c->db, "ROLLBACK"));
        lost = PQstatus(c->db) != CONNECTION_OK;
    }
    return !lost;
}

/*
 * The retrying loop. `tx` wraps body in BEGIN/COMMIT. After a failure: a
 * lost connection is reset, and the whole body run again unless COMMIT had
 * been sent; 40001/40P01 are rolled back and run again.
 */
static kw_status run_attempts(kw_pg_conn *c, kw_sql_body body, void *arg, bool tx)
{
    kw_status status;
    for (int attempt = 1;; attempt++) {
        c->sqlstate[0] = '\0';
        c->lost = false;
        c->base.erased = false;
        bool committing = false;
        status = tx ? kw_pg_command(c, "BEGIN", NULL) : KW_OK;
        if (status == KW_OK)
            status = body(&c->base, arg);
        if (status == KW_OK && tx) {
            committing = true;
            status = kw_pg_command(c, "COMMIT", NULL);
        }
        if (status == KW_OK)
            return KW_OK;
        bool lost = !roll_back(c);
        bool again = lost ? !committing : transient(c);
        if (attempt == MAX_ATTEMPTS || !again)
            return lost ? KW_ERR_UNAVAILABLE : status;
        if (lost && conn_reset(c) != KW_OK)
            return KW_ERR_UNAVAILABLE;
        if (!lost)
            backoff(attempt);
        atomic_fetch_add(&retries, 1);
    }
}

/* One snapshot, run once: the body has handed rows to its caller by the time it could fail. */
static kw_status run_snapshot(kw_pg_conn *c, kw_sql_body body, void *arg)
{
    c->sqlstate[0] = '\0';
    c->lost = false;
    kw_status status = kw_pg_command(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL);
    if (status == KW_OK)
        status = body(&c->base, arg);
    if (status == KW_OK)
        return kw_pg_command(c, "COMMIT", NULL);
    return roll_back(c) ? status : KW_ERR_UNAVAILABLE;
}

kw_status kw_pg_run(kw_sql_pool *pool, kw_sql_mode mode, kw_sql_body body, void *arg)
{
    kw_sql_conn *base;
    kw_status status = kw_sql_pool_acquire(pool, &base);
    if (status != KW_OK)
        return status;
    kw_pg_conn *c = (kw_pg_conn *)base;
    status = mode == KW_SQL_SNAPSHOT ? run_snapshot(c, body, arg)
                                     : run_attempts(c, body, arg, mode == KW_SQL_WRITE);
    kw_sql_pool_release(pool, base);
    return status;
}

uint64_t kw_pg_retries(void)
{
    return atomic_load(&retries);
}
