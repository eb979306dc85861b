/*
 * sqlite_pool.c - a pool of SQLite connections with prepared statements.
 */
#include "store/sqlite_pool.h"
#include "store/sqlite_schema.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/model.h"

#define BUSY_TIMEOUT_MS    5000
#define CHECKPOINT_WAIT_US 100000 /* how long kw_sqlite_checkpoint waits for readers */
#define CHECKPOINT_POLL_US 100

enum { TX_BEGIN, TX_COMMIT, TX_ROLLBACK };

static const char *const tx_sql[3] = {"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"};

struct kw_sqlite_pool {
    pthread_mutex_t lock;
    pthread_cond_t released;
    const char *const *sql;
    int count;
    int size;
    kw_sqlite_conn **idle; /* size slots */
    int idle_count;
    int open_count; /* idle + in use + being opened */
    char path[];
};

static void conn_close(kw_sqlite_pool *p, kw_sqlite_conn *c)
{
    for (int i = 0; c->stmt && i < p->count; i++)
        sqlite3_finalize(c->stmt[i]);
    for (int i = 0; i < 3; i++)
        sqlite3_finalize(c->tx[i]);
    sqlite3_close(c->db);
    free(c->stmt);
    free(c);
}

/*
 * Switching a new database to WAL takes an exclusive lock, and when several
 * connections race to do it SQLite answers SQLITE_BUSY at once rather than
 * call the busy handler: retry for up to the busy timeout ourselves.
 */
static int set_wal(sqlite3 *db)
{
    for (int waited = 0;; waited += 10) {
        int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if ((rc & 0xff) != SQLITE_BUSY || waited >= BUSY_TIMEOUT_MS)
            return rc;
        sqlite3_sleep(10);
    }
}

/* Opens one connection with the settings every connection needs. */
static int conn_open(kw_sqlite_pool *p, kw_sqlite_conn **out)
{
    kw_sqlite_conn *c = calloc(1, sizeof *c);
    if (!c)
        return SQLITE_NOMEM;
    c->sql = p->sql;
    c->stmt = calloc((size_t)p->count, sizeof *c->stmt);
    int rc = c->stmt ? SQLITE_OK : SQLITE_NOMEM;
    if (rc == SQLITE_OK)
        rc =
            sqlite3_open_v2(p->path, &c->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
        rc = set_wal(c->db);
    }
    if (rc == SQLITE_OK) {
        /* secure_delete: a deleted key's hash is overwritten, not left in a free page.
         * cache_size: lookups find their pages in memory rather than read(2)
         * them (up to 64 MiB per connection). */
        rc = sqlite3_exec(c->db,
                          "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
                          "PRAGMA secure_delete=ON; PRAGMA cache_size=-65536;",
                          NULL, NULL, NULL);
    }
    for (int i = 0; i < 3 && rc == SQLITE_OK; i++)
        rc = sqlite3_prepare_v3(c->db, tx_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->tx[i], NULL);
    if (rc != SQLITE_OK) {
        conn_close(p, c);
        return rc;
    }
    *out = c;
    return SQLITE_OK;
}

int kw_sqlite_pool_open(const char *path, const char *const *sql, int count, int size,
                        kw_sqlite_pool **out)
{
    *out = NULL;
    size_t len = strlen(path);
    kw_sqlite_pool *p = calloc(1, sizeof *p + len + 1);
    if (!p)
        return SQLITE_NOMEM;
    p->idle = calloc((size_t)size, sizeof *p->idle);
    if (!p->idle) {
        free(p);
        return SQLITE_NOMEM;
    }
    memcpy(p->path, path, len + 1);
    p->sql = sql;
    p->count = count;
    p->size = size;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->released, NULL);
    int rc = conn_open(p, &p->idle[0]);
    if (rc != SQLITE_OK) {
        kw_sqlite_pool_close(p);
        return rc;
    }
    p->idle_count = p->open_count = 1;
    *out = p;
    return SQLITE_OK;
}

void kw_sqlite_pool_close(kw_sqlite_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->idle_count; i++)
        conn_close(p, p->idle[i]);
    pthread_cond_destroy(&p->released);
    pthread_mutex_destroy(&p->lock);
    free(p->idle);
    free(p);
}

/* Takes an idle connection, or opens one while the pool has room, or waits. */
kw_status kw_sqlite_acquire(kw_sqlite_pool *p, kw_sqlite_conn **out)
{
    pthread_mutex_lock(&p->lock);
    while (p->idle_count == 0 && p->open_count == p->size)
        pthread_cond_wait(&p->released, &p->lock);
    if (p->idle_count > 0) {
        *out = p->idle[--p->idle_count];
        pthread_mutex_unlock(&p->lock);
        return KW_OK;
    }
    p->open_count++; /* reserve the slot; opening happens outside the lock */
    pthread_mutex_unlock(&p->lock);
    int rc = conn_open(p, out);
    if (rc == SQLITE_OK)
        return KW_OK;
    pthread_mutex_lock(&p->lock);
    p->open_count--;
    pthread_cond_signal(&p->released);
    pthread_mutex_unlock(&p->lock);
    return kw_sqlite_status(rc);
}

/* Gives c back (or closes it when it is unusable) and wakes one waiter. */
void kw_sqlite_release(kw_sqlite_pool *p, kw_sqlite_conn *c)
{
    pthread_mutex_lock(&p->lock);
    if (c->broken) {
        p->open_count--;
        conn_close(p, c);
    } else {
        p->idle[p->idle_count++] = c;
    }
    pthread_cond_signal(&p->released);
    pthread_mutex_unlock(&p->lock);
}

static int bind_args(sqlite3_stmt *st, const char *fmt, va_list ap)
{
    int rc = SQLITE_OK;
    for (int i = 1; rc == SQLITE_OK && fmt[i - 1]; i++) {
        switch (fmt[i - 1]) {
        case 't':
            rc = sqlite3_bind_text(st, i, va_arg(ap, const char *), -1, SQLITE_STATIC);
            break;
        case 'i':
            rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
            break;
        case 'o': {
            int64_t v = va_arg(ap, int64_t);
            rc = v == KW_TIME_NONE ? sqlite3_bind_null(st, i) : sqlite3_bind_int64(st, i, v);
            break;
        }
        case 'h':
            rc =
                sqlite3_bind_blob(st, i, va_arg(ap, const uint8_t *), KW_HASH_BYTES, SQLITE_STATIC);
            break;
        default:
            rc = SQLITE_MISUSE;
        }
    }
    return rc;
}

/* Binds and steps st (NULL when it could not be prepared, as prepare_rc says). */
static int vrun(sqlite3_stmt *st, int prepare_rc, const char *fmt, va_list ap)
{
    int rc = prepare_rc == SQLITE_OK ? bind_args(st, fmt, ap) : prepare_rc;
    return rc == SQLITE_OK ? sqlite3_step(st) : rc;
}

/* Statement q of c, prepared on first use; *out is NULL on failure. */
static int prepare(kw_sqlite_conn *c, int q, sqlite3_stmt **out)
{
    int rc = SQLITE_OK;
    if (!c->stmt[q])
        rc = sqlite3_prepare_v3(c->db, c->sql[q], -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL);
    *out = c->stmt[q];
    return rc;
}

int kw_sqlite_vrun(kw_sqlite_conn *c, int q, sqlite3_stmt **out, const char *fmt, va_list ap)
{
    int rc = prepare(c, q, out);
    return vrun(*out, rc, fmt, ap);
}

int kw_sqlite_run(kw_sqlite_conn *c, int q, sqlite3_stmt **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = kw_sqlite_vrun(c, q, out, fmt, ap);
    va_end(ap);
    return rc;
}

void kw_sqlite_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

kw_status kw_sqlite_exec(kw_sqlite_conn *c, int q, const char *fmt, ...)
{
    sqlite3_stmt *st;
    int rc = prepare(c, q, &st);
    va_list ap;
    va_start(ap, fmt);
    rc = vrun(st, rc, fmt, ap);
    va_end(ap);
    kw_sqlite_done(st);
    return kw_sqlite_status(rc);
}

/* Steps one of the transaction statements; SQLite's result code. */
static int tx(kw_sqlite_conn *c, int which)
{
    int rc = sqlite3_step(c->tx[which]);
    sqlite3_reset(c->tx[which]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

kw_status kw_sqlite_begin(kw_sqlite_conn *c)
{
    return kw_sqlite_status(tx(c, TX_BEGIN));
}

/*
 * A connection that cannot leave its transaction is marked broken, so that
 * kw_sqlite_release closes it rather than lend it out mid-transaction.
 */
kw_status kw_sqlite_end(kw_sqlite_conn *c, kw_status status)
{
    if (status == KW_OK) {
        status = kw_sqlite_status(tx(c, TX_COMMIT));
        if (status == KW_OK)
            return KW_OK;
    }
    /* SQLite may have rolled back by itself (after an I/O error, for example). */
    if (!sqlite3_get_autocommit(c->db) && tx(c, TX_ROLLBACK) != SQLITE_OK)
        c->broken = true;
    return status;
}

/*
 * One try at emptying the WAL, without waiting for anyone: a PASSIVE
 * checkpoint copies what no reader still needs and takes no writer lock;
 * only when it has copied every frame does a TRUNCATE checkpoint follow,
 * which holds the writer lock just long enough to see that no reader still
 * reads the WAL and to cut it.
 */
static int try_checkpoint(sqlite3 *db)
{
    int log = -1, copied = -1;
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
    if (rc == SQLITE_OK && log != copied)
        rc = SQLITE_BUSY;
    if (rc == SQLITE_OK)
        rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    return rc;
}

/*
 * The waiting is done here, between tries, and not by SQLite's busy
 * handler: a FULL or TRUNCATE checkpoint holds the writer lock while its
 * busy handler waits, so every writer would wait with it; and the handler's
 * sleeps (1, 2, 5, ... 100 ms) lose to readers that keep arriving, which
 * hold their locks for microseconds, for the whole busy timeout.
 */
kw_status kw_sqlite_checkpoint(kw_sqlite_conn *c, bool wait)
{
    sqlite3_busy_handler(c->db, NULL, NULL);
    int rc = try_checkpoint(c->db);
    for (long waited = 0; wait && (rc & 0xff) == SQLITE_BUSY && waited < CHECKPOINT_WAIT_US;
         waited += CHECKPOINT_POLL_US) {
        struct timespec pause = {0, CHECKPOINT_POLL_US * 1000L};
        nanosleep(&pause, NULL);
        rc = try_checkpoint(c->db);
    }
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    return kw_sqlite_status(rc);
}
