/*
 * postgres_pool.c - a pool of libpq connections with prepared statements,
 * and the retrying transaction runner.
 */
#include "store/postgres_pool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/model.h"

#define ACQUIRE_WAIT_S 10 /* longest wait for a free connection */
#define MAX_ATTEMPTS   4  /* runs of one operation, retries included */
#define MAX_PARAMS     16

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

struct kw_pg_pool {
    pthread_mutex_t lock;
    pthread_cond_t released;
    const char *const *sql;
    int count;
    int size;
    kw_pg_conn **idle; /* size slots */
    int idle_count;
    int open_count; /* idle + in use + being opened */
    size_t url_len;
    char url[];
};

kw_status kw_pg_status(const char *sqlstate, bool lost)
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

static void conn_close(kw_pg_conn *c)
{
    if (!c)
        return;
    PQfinish(c->db);
    free(c->prepared);
    free(c);
}

/* The store never writes to stderr: server notices are dropped. */
static void on_notice(void *arg, const PGresult *res)
{
    (void)arg;
    (void)res;
}

PGconn *kw_pg_connect(kw_pg_pool *p)
{
    const char *values[sizeof conn_keys / sizeof conn_keys[0]];
    memcpy(values, conn_values, sizeof values);
    values[sizeof values / sizeof values[0] - 2] = p->url;
    PGconn *db = PQconnectdbParams(conn_keys, values, 1);
    if (!db || PQstatus(db) != CONNECTION_OK) {
        PQfinish(db);
        return NULL;
    }
    PQsetNoticeReceiver(db, on_notice, NULL); /* kept across PQreset */
    return db;
}

/* Opens one connection; KW_ERR_UNAVAILABLE when the server does not accept it. */
static kw_status conn_open(kw_pg_pool *p, kw_pg_conn **out)
{
    *out = NULL;
    kw_pg_conn *c = calloc(1, sizeof *c);
    if (!c)
        return KW_ERR_INTERNAL;
    c->sql = p->sql;
    c->prepared = calloc((size_t)p->count, sizeof *c->prepared);
    if (!c->prepared) {
        free(c);
        return KW_ERR_INTERNAL;
    }
    c->db = kw_pg_connect(p);
    if (!c->db) {
        conn_close(c);
        return KW_ERR_UNAVAILABLE;
    }
    *out = c;
    return KW_OK;
}

/* Reconnects c after its connection broke; its statements must be prepared again. */
static kw_status conn_reset(kw_pg_conn *c, int count)
{
    memset(c->prepared, 0, (size_t)count * sizeof *c->prepared);
    PQreset(c->db);
    return PQstatus(c->db) == CONNECTION_OK ? KW_OK : KW_ERR_UNAVAILABLE;
}

kw_status kw_pg_pool_open(const char *url, const char *const *sql, int count, int size,
                          kw_pg_pool **out, kw_error *err)
{
    *out = NULL;
    if (!PQisthreadsafe())
        return kw_error_set(err, KW_ERR_INTERNAL, "libpq was built without thread safety.");
    if (sodium_init() < 0) /* for the random retry pauses */
        return kw_error_set(err, KW_ERR_INTERNAL, "libsodium could not be initialised.");
    size_t len = strlen(url);
    kw_pg_pool *p = calloc(1, sizeof *p + len + 1);
    if (!p)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    p->idle = calloc((size_t)size, sizeof *p->idle);
    if (!p->idle) {
        free(p);
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    }
    memcpy(p->url, url, len + 1);
    p->url_len = len;
    p->sql = sql;
    p->count = count;
    p->size = size;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->released, NULL);

    /* Parse first: a malformed URL is the operator's to fix, not an outage. */
    char *parse_error = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &parse_error);
    PQconninfoFree(opts);
    if (!opts) {
        PQfreemem(parse_error); /* may quote part of the URL: never shown */
        kw_pg_pool_close(p);
        return kw_error_set(err, KW_ERR_INVALID, "The PostgreSQL store URL is malformed.");
    }
    kw_status status = conn_open(p, &p->idle[0]);
    if (status != KW_OK) {
        kw_pg_pool_close(p);
        return kw_error_set(err, status,
                            "Could not connect to the PostgreSQL server named by the store URL.");
    }
    p->idle_count = p->open_count = 1;
    *out = p;
    return KW_OK;
}

void kw_pg_pool_close(kw_pg_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->idle_count; i++)
        conn_close(p->idle[i]);
    pthread_cond_destroy(&p->released);
    pthread_mutex_destroy(&p->lock);
    sodium_memzero(p->url, p->url_len); /* it may hold a password */
    free(p->idle);
    free(p);
}

/* Frees a pool slot that is not coming back and wakes a waiter. */
static void drop_slot(kw_pg_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->open_count--;
    pthread_cond_signal(&p->released);
    pthread_mutex_unlock(&p->lock);
}

kw_status kw_pg_acquire(kw_pg_pool *p, kw_pg_conn **out)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ACQUIRE_WAIT_S;
    pthread_mutex_lock(&p->lock);
    while (p->idle_count == 0 && p->open_count == p->size)
        if (pthread_cond_timedwait(&p->released, &p->lock, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&p->lock);
            return KW_ERR_UNAVAILABLE;
        }
    if (p->idle_count > 0) {
        kw_pg_conn *c = p->idle[--p->idle_count];
        pthread_mutex_unlock(&p->lock);
        /* A connection that broke earlier is reconnected before use. */
        if (PQstatus(c->db) != CONNECTION_OK && conn_reset(c, p->count) != KW_OK) {
            kw_pg_release(p, c);
            return KW_ERR_UNAVAILABLE;
        }
        *out = c;
        return KW_OK;
    }
    p->open_count++; /* reserve the slot; connecting happens outside the lock */
    pthread_mutex_unlock(&p->lock);
    kw_status status = conn_open(p, out);
    if (status != KW_OK)
        drop_slot(p);
    return status;
}

/*
 * Gives c back and wakes one waiter. A connection still inside a
 * transaction (a ROLLBACK that failed) is closed rather than lent out;
 * a broken one is kept and reconnected on its next use.
 */
void kw_pg_release(kw_pg_pool *p, kw_pg_conn *c)
{
    PGTransactionStatusType tx = PQtransactionStatus(c->db);
    if (tx != PQTRANS_IDLE && tx != PQTRANS_UNKNOWN) {
        conn_close(c);
        drop_slot(p);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->idle[p->idle_count++] = c;
    pthread_cond_signal(&p->released);
    pthread_mutex_unlock(&p->lock);
}

/* Records why res (NULL possible) failed on c; returns the mapped status. */
static kw_status failed(kw_pg_conn *c, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(c->sqlstate, sizeof c->sqlstate, "%s", state ? state : "");
    c->lost = PQstatus(c->db) != CONNECTION_OK;
    return kw_pg_status(c->sqlstate, c->lost);
}

/* Hands a finished result to the caller or frees it. */
static kw_status finish(kw_pg_conn *c, PGresult *res, PGresult **out, int64_t *rows)
{
    ExecStatusType rs = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK) {
        kw_status status = failed(c, res);
        PQclear(res);
        return status;
    }
    if (rows)
        *rows = strtoll(PQcmdTuples(res), NULL, 10);
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
    PGresult *res = PQprepare(c->db, name, c->sql[q], 0, NULL);
    kw_status status = finish(c, res, NULL, NULL);
    c->prepared[q] = status == KW_OK;
    return status;
}

kw_status kw_pg_vrun(kw_pg_conn *c, int q, PGresult **out, int64_t *rows, const char *fmt,
                     va_list ap)
{
    if (out)
        *out = NULL;
    char name[16];
    snprintf(name, sizeof name, "kw%d", q);
    kw_status status = prepare(c, q, name);
    if (status != KW_OK)
        return status;
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS], formats[MAX_PARAMS];
    char numbers[MAX_PARAMS][24];
    int n = 0;
    for (; fmt[n]; n++) {
        if (n == MAX_PARAMS)
            return KW_ERR_INTERNAL;
        lengths[n] = formats[n] = 0;
        switch (fmt[n]) {
        case 't':
            values[n] = va_arg(ap, const char *);
            break;
        case 'i':
        case 'o': {
            int64_t v = va_arg(ap, int64_t);
            snprintf(numbers[n], sizeof numbers[n], "%" PRId64, v);
            values[n] = fmt[n] == 'o' && v == KW_TIME_NONE ? NULL : numbers[n];
            break;
        }
        case 'h':
            values[n] = (const char *)va_arg(ap, const uint8_t *);
            lengths[n] = KW_HASH_BYTES;
            formats[n] = 1;
            break;
        default:
            return KW_ERR_INTERNAL;
        }
    }
    PGresult *res = PQexecPrepared(c->db, name, n, values, lengths, formats, 0);
    return finish(c, res, out, rows);
}

kw_status kw_pg_run(kw_pg_conn *c, int q, PGresult **out, int64_t *rows, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kw_status status = kw_pg_vrun(c, q, out, rows, fmt, ap);
    va_end(ap);
    return status;
}

kw_status kw_pg_command(kw_pg_conn *c, const char *sql, PGresult **out)
{
    if (out)
        *out = NULL;
    return finish(c, PQexec(c->db, sql), out, NULL);
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

/*
 * The loop both runners share. `tx` wraps body in BEGIN/COMMIT. After a
 * failure: a lost connection is reset, and the whole body run again unless
 * COMMIT had been sent; 40001/40P01 are rolled back and run again.
 */
static kw_status run_attempts(kw_pg_pool *p, kw_pg_body body, void *arg, bool tx)
{
    kw_pg_conn *c;
    kw_status status = kw_pg_acquire(p, &c);
    if (status != KW_OK)
        return status;
    for (int attempt = 1;; attempt++) {
        c->sqlstate[0] = '\0';
        c->lost = false;
        bool committing = false;
        status = tx ? kw_pg_command(c, "BEGIN", NULL) : KW_OK;
        if (status == KW_OK)
            status = body(c, arg);
        if (status == KW_OK && tx) {
            committing = true;
            status = kw_pg_command(c, "COMMIT", NULL);
        }
        if (status == KW_OK)
            break;
        bool lost = c->lost || PQstatus(c->db) != CONNECTION_OK;
        if (!lost && PQtransactionStatus(c->db) != PQTRANS_IDLE) {
            /* On failure ROLLBACK can only fail by losing the connection. */
            PGresult *res = PQexec(c->db, "ROLLBACK");
            PQclear(res);
            lost = PQstatus(c->db) != CONNECTION_OK;
        }
        bool again = lost ? !committing : transient(c);
        if (attempt == MAX_ATTEMPTS || !again) {
            if (lost)
                status = KW_ERR_UNAVAILABLE;
            break;
        }
        if (lost && conn_reset(c, p->count) != KW_OK) {
            status = KW_ERR_UNAVAILABLE;
            break;
        }
        if (!lost)
            backoff(attempt);
    }
    kw_pg_release(p, c);
    return status;
}

kw_status kw_pg_transact(kw_pg_pool *p, kw_pg_body body, void *arg)
{
    return run_attempts(p, body, arg, true);
}

kw_status kw_pg_read(kw_pg_pool *p, kw_pg_body body, void *arg)
{
    return run_attempts(p, body, arg, false);
}
