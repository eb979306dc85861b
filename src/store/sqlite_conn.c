/*
 * sqlite_conn.c - one SQLite connection, its statements and checkpoints.
 */
#include "store/sqlite_conn.h"
#include "store/sqlite_schema.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECKPOINT_WAIT_US 100000 /* how long kw_sqlite_checkpoint waits for readers */
#define CHECKPOINT_POLL_US 100

enum { TX_WRITE, TX_READ, TX_COMMIT, TX_ROLLBACK };

static const char *const tx_sql[4] = {"BEGIN IMMEDIATE", "BEGIN", "COMMIT", "ROLLBACK"};

void kw_sqlite_conn_close(kw_sql_conn *base)
{
    kw_sqlite_conn *c = (kw_sqlite_conn *)base;
    for (int i = 0; c && i < KW_Q_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    for (int i = 0; c && i < 4; i++)
        sqlite3_finalize(c->tx[i]);
    if (c)
        sqlite3_close(c->db);
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
        if ((rc & 0xff) != SQLITE_BUSY || waited >= KW_SQLITE_BUSY_MS)
            return rc;
        sqlite3_sleep(10);
    }
}

int kw_sqlite_conn_open(const char *path, const kw_sql_driver *driver, kw_sql_conn **out)
{
    *out = NULL;
    kw_sqlite_conn *c = calloc(1, sizeof *c);
    if (!c)
        return SQLITE_NOMEM;
    c->base.driver = driver;
    int rc = sqlite3_open_v2(
        path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(c->db, 1);
        sqlite3_busy_timeout(c->db, KW_SQLITE_BUSY_MS);
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
    for (int i = 0; i < 4 && rc == SQLITE_OK; i++)
        rc = sqlite3_prepare_v3(c->db, tx_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->tx[i], NULL);
    if (rc != SQLITE_OK) {
        kw_sqlite_conn_close(&c->base);
        return rc;
    }
    *out = &c->base;
    return SQLITE_OK;
}

int kw_sqlite_prepare(kw_sqlite_conn *c, int q, sqlite3_stmt **out)
{
    int rc = SQLITE_OK;
    if (!c->stmt[q]) {
        const char *sql = kw_sql_statement(c->base.driver->dialect, q);
        rc = sql ? sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL)
                 : SQLITE_MISUSE;
    }
    *out = c->stmt[q];
    return rc;
}

/* Steps one of the transaction statements; SQLite's result code. */
static int tx(kw_sqlite_conn *c, int which)
{
    int rc = sqlite3_step(c->tx[which]);
    sqlite3_reset(c->tx[which]);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

kw_status kw_sqlite_begin(kw_sqlite_conn *c, bool write)
{
    return kw_sqlite_status(tx(c, write ? TX_WRITE : TX_READ));
}

/*
 * A connection that cannot leave its transaction is marked broken, so that
 * the pool closes it rather than lend it out mid-transaction.
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
    sqlite3_busy_timeout(c->db, KW_SQLITE_BUSY_MS);
    return kw_sqlite_status(rc);
}
