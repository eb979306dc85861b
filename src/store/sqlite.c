/*
 * sqlite.c - the SQLite driver of the SQL store (sql.c).
 *
 * Each operation takes a connection from the store's pool for its
 * duration, so a store handle may be shared by many threads. Every
 * mutation runs in one BEGIN IMMEDIATE transaction: the write lock is
 * taken before the first read, so the checks a mutation makes (does the
 * account exist, is it under its key limit) still hold when it writes, in
 * this process and in any other that opens the same file. A key scan reads
 * in one deferred transaction, whose snapshot its first read takes.
 *
 * A delete removes the hash from the files, not only from the table. Every
 * connection runs with secure_delete, so the delete zeroes the freed cells
 * in the new versions of its pages; but older frames in the WAL (the
 * insert, last-used updates) and the database file itself still hold the
 * hash. So a transaction that removed a hash (a delete of a key or root
 * key; the change feed names keys by id only, so nothing else holds one),
 * once committed, checkpoints (kw_sqlite_checkpoint): every frame is copied into the
 * database file and the WAL is cut to zero bytes, without making readers
 * or writers wait. It has committed already, so when the checkpoint gives
 * up (a reader held an old snapshot for 0.1 s: a backup step, a machine
 * starved of CPU) the store owes it, and tries it again after its later
 * commits of any change (the next key, the next batch of last-used times),
 * at most once a second and without waiting; closing the last connection
 * also checkpoints and removes the WAL.
 */
#include "store/store.h"
#include "store/sql.h"
#include "store/sql_pool.h"
#include "store/sqlite_conn.h"
#include "store/sqlite_schema.h"
#include "store/sqlite_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define POOL_SIZE     8
#define OWED_RETRY_MS 1000 /* how often a commit may retry an owed checkpoint, without waiting */

/* Rows of (id, at) from the JSON array [[id, at], ...] of a touch. */
#define TOUCH_PAIRS                                                                                \
    "SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at "                 \
    "FROM json_each(?1)"

/*
 * What SQLite says in its own words. Every mutation already holds the
 * write lock, so the locks other databases need are plain reads here,
 * and node leases do not exist (the change token serves instead).
 */
static const kw_sql_dialect sqlite_dialect = {
    .account_list = "SELECT id, name, created_at FROM accounts ORDER BY rowid",
    .account_lock = "SELECT 1 FROM accounts WHERE id = ?1",
    .key_insert = KW_SQL_KEY_INSERT("?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14",
                                    "?2", "?15", "?16"),
    .root_list = "SELECT " KW_SQL_ROOT_COLS " FROM root_keys ORDER BY rowid DESC",
    .key_touch = KW_SQL_TOUCH("api_keys", TOUCH_PAIRS),
    .root_touch = KW_SQL_TOUCH("root_keys", TOUCH_PAIRS),
    /* email is declared COLLATE NOCASE, so = compares case-insensitively. */
    .user_find =
        "SELECT id, account_id, email, created_at, password_hash FROM users WHERE email = ?1",
    .bootstrap_lock = NULL,
    .feed_bump = "UPDATE feed_head SET seq = seq + 1 WHERE one = 1 RETURNING seq",
    .feed_lock = NULL,
    .node_renew = NULL,
    .nodes_behind = NULL,
};

typedef struct {
    kw_sql_pool *pool;
    kw_sqlite_watch *watch;        /* NULL: no change token, no verification cache */
    atomic_bool checkpoint_owed;   /* a checkpoint gave up: retry after commits */
    atomic_llong checkpoint_tried; /* when it was last tried, CLOCK_MONOTONIC ms */
    int open_rc;                   /* why the last connection could not be opened */
    char path[];
} sqlite_db;

static const kw_sql_driver sqlite_driver;

static kw_status pool_open(void *ctx, kw_sql_conn **out)
{
    sqlite_db *d = ctx;
    int rc = kw_sqlite_conn_open(d->path, &sqlite_driver, out);
    if (rc != SQLITE_OK)
        d->open_rc = rc;
    return kw_sqlite_status(rc);
}

static bool pool_keep(const kw_sql_conn *c)
{
    return !((const kw_sqlite_conn *)c)->broken;
}

static const kw_sql_pool_ops pool_ops = {
    .open = pool_open,
    .close = kw_sqlite_conn_close,
    .keep = pool_keep,
};

/*
 * Runs the checkpoint that removes hashes from the files (above): after a
 * commit that removed one (`erased`), waiting a little for readers; after
 * any other commit only when an earlier one gave up, at most once per
 * OWED_RETRY_MS and without waiting, so that a long reader (a backup) does
 * not slow every write down. Remembers it as owed while it does not
 * complete.
 */
static void settle_checkpoint(sqlite_db *d, kw_sqlite_conn *c, bool erased)
{
    long long now = kw_sql_monotonic_ms();
    if (!erased && (!atomic_load(&d->checkpoint_owed) ||
                    now - atomic_load(&d->checkpoint_tried) < OWED_RETRY_MS))
        return;
    atomic_store(&d->checkpoint_tried, now);
    atomic_store(&d->checkpoint_owed, kw_sqlite_checkpoint(c, erased) != KW_OK);
}

static kw_status drv_run(void *db, kw_sql_mode mode, kw_sql_body body, void *arg)
{
    sqlite_db *d = db;
    kw_sql_conn *base;
    kw_status status = kw_sql_pool_acquire(d->pool, &base);
    if (status != KW_OK)
        return status;
    kw_sqlite_conn *c = (kw_sqlite_conn *)base;
    c->base.erased = false;
    if (mode == KW_SQL_READ) {
        status = body(base, arg);
    } else {
        status = kw_sqlite_begin(c, mode == KW_SQL_WRITE);
        if (status == KW_OK)
            status = body(base, arg);
        status = kw_sqlite_end(c, status);
        if (status == KW_OK && mode == KW_SQL_WRITE)
            settle_checkpoint(d, c, c->base.erased);
    }
    kw_sql_pool_release(d->pool, base);
    return status;
}

static int bind(sqlite3_stmt *st, const kw_sql_param *params, int count)
{
    int rc = SQLITE_OK;
    for (int i = 0; rc == SQLITE_OK && i < count; i++) {
        const kw_sql_param *p = &params[i];
        switch (p->type) {
        case KW_SQL_TEXT:
            rc = sqlite3_bind_text(st, i + 1, p->text, -1, SQLITE_STATIC);
            break;
        case KW_SQL_INT:
            rc = sqlite3_bind_int64(st, i + 1, p->num);
            break;
        case KW_SQL_HASH:
            rc = sqlite3_bind_blob(st, i + 1, p->bytes, KW_HASH_BYTES, SQLITE_STATIC);
            break;
        default:
            rc = sqlite3_bind_null(st, i + 1);
        }
    }
    return rc;
}

/* Resets the statement and drops its references to the caller's values. */
static void drv_done(kw_sql_rows *r)
{
    sqlite3_stmt *st = r->res;
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    r->res = NULL;
    r->row = false;
}

/* Takes in the result of a step: a row, the end (and what changed), or an error. */
static kw_status stepped(kw_sql_rows *r, int rc)
{
    r->row = rc == SQLITE_ROW;
    if (rc == SQLITE_DONE)
        r->changed = sqlite3_changes64(((kw_sqlite_conn *)r->conn)->db);
    return kw_sqlite_status(rc);
}

/* SQLite reads rows as they are stepped: every query streams. */
static kw_status drv_query(kw_sql_conn *base, int q, const kw_sql_param *params, int count,
                           bool stream, kw_sql_rows *out)
{
    (void)stream;
    memset(out, 0, sizeof *out);
    out->conn = base;
    sqlite3_stmt *st;
    int rc = kw_sqlite_prepare((kw_sqlite_conn *)base, q, &st);
    out->res = st;
    if (rc == SQLITE_OK)
        rc = bind(st, params, count);
    kw_status status = rc == SQLITE_OK ? stepped(out, sqlite3_step(st)) : kw_sqlite_status(rc);
    if (status != KW_OK)
        drv_done(out);
    return status;
}

static kw_status drv_next(kw_sql_rows *r)
{
    return stepped(r, sqlite3_step(r->res));
}

static bool drv_is_null(const kw_sql_rows *r, int col)
{
    return sqlite3_column_type(r->res, col) == SQLITE_NULL;
}

static int64_t drv_integer(const kw_sql_rows *r, int col)
{
    return sqlite3_column_int64(r->res, col);
}

static const char *drv_text(const kw_sql_rows *r, int col, size_t *len)
{
    const char *text = (const char *)sqlite3_column_text(r->res, col);
    *len = (size_t)sqlite3_column_bytes(r->res, col);
    return text;
}

static bool drv_hash(const kw_sql_rows *r, int col, uint8_t out[KW_HASH_BYTES])
{
    if (sqlite3_column_bytes(r->res, col) != KW_HASH_BYTES)
        return false;
    memcpy(out, sqlite3_column_blob(r->res, col), KW_HASH_BYTES);
    return true;
}

static kw_status drv_migrate(kw_sql_conn *c, int *version, kw_error *err)
{
    return kw_sqlite_migrate(((kw_sqlite_conn *)c)->db, version, err);
}

static void drv_close(void *db)
{
    sqlite_db *d = db;
    if (!d)
        return;
    kw_sqlite_watch_close(d->watch);
    kw_sql_pool_close(d->pool);
    free(d);
}

static kw_status drv_change_token(void *db, uint64_t *token)
{
    sqlite_db *d = db;
    if (!d->watch)
        return KW_ERR_UNAVAILABLE;
    *token = kw_sqlite_watch_token(d->watch);
    return KW_OK;
}

static const kw_sql_driver sqlite_driver = {
    KW_SQL_DRIVER_FUNCTIONS(drv),
    .dialect = &sqlite_dialect,
    .change_token = drv_change_token,
};

/*
 * Creates the database file with mode 0600 before SQLite opens it (SQLite
 * gives its -wal and -shm files the same mode), and takes group and other
 * access away from an existing file: it holds key hashes.
 */
static kw_status create_private(const char *path, kw_error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Could not open the database file: %s.",
                            strerror(errno));
    struct stat st;
    kw_status status = KW_OK;
    if (fstat(fd, &st) != 0 || ((st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) != 0))
        status = kw_error_set(err, KW_ERR_UNAVAILABLE,
                              "The database file is accessible to other users and its mode "
                              "could not be set to 0600: %s.",
                              strerror(errno));
    close(fd);
    return status;
}

kw_status kw_store_sqlite_open(const char *path, kw_store **out, kw_error *err)
{
    *out = NULL;
    /* Each pooled connection would get its own empty in-memory database. */
    if (!path || !*path || strcmp(path, ":memory:") == 0)
        return kw_error_set(err, KW_ERR_INVALID, "The SQLite store needs a file path.");
    kw_status status = create_private(path, err);
    if (status != KW_OK)
        return status;
    size_t len = strlen(path);
    sqlite_db *d = calloc(1, sizeof *d + len + 1);
    if (!d)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    memcpy(d->path, path, len + 1);
    atomic_init(&d->checkpoint_owed, false);
    atomic_init(&d->checkpoint_tried, 0);
    d->open_rc = SQLITE_NOMEM;
    status = kw_sql_pool_open(&pool_ops, d, POOL_SIZE, 0, &d->pool);
    if (status != KW_OK) {
        int rc = d->open_rc;
        free(d);
        return kw_error_set(err, status, "Could not open the database: %s.", sqlite3_errstr(rc));
    }
    d->watch = kw_sqlite_watch_open(path);
    return kw_sql_store_open(&sqlite_driver, d, out, err);
}
