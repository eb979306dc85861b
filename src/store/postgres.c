/*
 * postgres.c - the PostgreSQL driver of the SQL store (sql.c), for one
 * node or many.
 *
 * Operations run on pooled connections through kw_pg_run
 * (postgres_conn.c), which retries serialization failures, deadlocks and
 * dropped connections. Transactions are READ COMMITTED: a statement after
 * a lock wait sees what the holder of the lock committed, which is what
 * the dialect's locks below rely on.
 *
 * Every node shares the database and nothing else: the change feed tells
 * a node what changed, a notification on FEED_CHANNEL tells it when, and
 * its lease (the nodes table, by the database's clock) tells writers
 * whom to wait for.
 */
#include "store/store.h"
#include "store/postgres_conn.h"
#include "store/postgres_schema.h"
#include "store/sql.h"
#include "store/sql_pool.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define POOL_SIZE           8
#define ACQUIRE_WAIT_S      10  /* longest wait for a free connection */
#define UNAVAILABLE_WAIT_MS 500 /* how long feed_wait pauses when it cannot listen */
#define FEED_CHANNEL        "keyward_feed"

/* The database's clock in milliseconds: the one clock every node's lease is measured by. */
#define CLOCK_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

/* Rows of (id, at) from the JSON array [[id, at], ...] of a touch. */
#define TOUCH_PAIRS                                                                                \
    "SELECT e->>0 AS id, (e->>1)::bigint AS at FROM jsonb_array_elements(?1::jsonb) AS e"

/*
 * What PostgreSQL says in its own words: the locks that make checks hold
 * across nodes (the account's row for the key limit, a table lock for the
 * first run, the feed head's row for the order of changes and for
 * leases), typed parameters where a bare one would be read as text, and
 * the node leases.
 */
static const kw_sql_dialect pg_dialect = {
    .account_list = "SELECT id, name, created_at FROM accounts ORDER BY seq",
    /* Held until commit: every node's key inserts for the account queue here. */
    .account_lock = "SELECT 1 FROM accounts WHERE id = ?1 FOR UPDATE",
    .key_insert = KW_SQL_KEY_INSERT("?1::text, ?2::text, ?3::text, ?4::text, ?5::text, "
                                    "?6::bytea, ?7::bigint, ?8::bigint, ?9::bigint, ?10::bigint, "
                                    "?11::boolean, ?12::text, ?13::text, ?14::text",
                                    "?2::text", "?15::bigint", "?16::bigint"),
    .root_list = "SELECT " KW_SQL_ROOT_COLS " FROM root_keys ORDER BY seq DESC",
    .key_touch = KW_SQL_TOUCH("api_keys", TOUCH_PAIRS),
    .root_touch = KW_SQL_TOUCH("root_keys", TOUCH_PAIRS),
    /* lower(email) is the unique index: one user per email, whatever its case. */
    .user_find = "SELECT id, account_id, email, created_at, password_hash FROM users "
                 "WHERE lower(email) = lower(?1)",
    /* Conflicts with itself and with every insert; readers are not blocked. */
    .bootstrap_lock = "LOCK TABLE accounts, root_keys IN SHARE ROW EXCLUSIVE MODE",
    /* The notification is delivered at commit, to every listener. */
    .feed_bump = "UPDATE feed_head SET seq = seq + 1 WHERE one = 1 "
                 "RETURNING seq, pg_notify('" FEED_CHANNEL "', '')",
    .feed_lock = "SELECT seq FROM feed_head WHERE one = 1 FOR SHARE",
    .node_renew = "INSERT INTO nodes(id, applied_seq, lease_until_ms, renewed_at) "
                  "VALUES (?1, ?2, " CLOCK_MS " + ?3, "
                  "extract(epoch FROM clock_timestamp())::bigint) "
                  "ON CONFLICT (id) DO UPDATE SET applied_seq = excluded.applied_seq, "
                  "lease_until_ms = excluded.lease_until_ms, renewed_at = excluded.renewed_at",
    .nodes_behind =
        "SELECT count(*) FROM nodes WHERE lease_until_ms > " CLOCK_MS " AND applied_seq < ?1",
};

typedef struct {
    kw_sql_pool *pool;
    char *sql[KW_Q_COUNT]; /* the dialect's statements with $N placeholders */
    PGconn *listener;      /* feed_wait's own connection, LISTENing; NULL until needed */
    size_t url_len;
    char url[];
} pg_db;

static const kw_sql_driver pg_driver;

static kw_status pool_open(void *ctx, kw_sql_conn **out)
{
    pg_db *d = ctx;
    return kw_pg_conn_open(d->url, &pg_driver, (const char *const *)d->sql, out);
}

static kw_status pool_check(void *ctx, kw_sql_conn *c)
{
    (void)ctx;
    return kw_pg_conn_check((kw_pg_conn *)c);
}

static bool pool_keep(const kw_sql_conn *c)
{
    return kw_pg_conn_reusable((const kw_pg_conn *)c);
}

static const kw_sql_pool_ops pool_ops = {
    .open = pool_open,
    .close = kw_pg_conn_close,
    .check = pool_check,
    .keep = pool_keep,
};

/* sql with ?N placeholders written $N, outside string literals; NULL when out of memory. */
static char *numbered(const char *sql)
{
    char *out = strdup(sql);
    bool quoted = false;
    for (char *p = out; p && *p; p++) {
        if (*p == '\'')
            quoted = !quoted;
        else if (!quoted && *p == '?' && p[1] >= '0' && p[1] <= '9')
            *p = '$';
    }
    return out;
}

static kw_status drv_run(void *db, kw_sql_mode mode, kw_sql_body body, void *arg)
{
    return kw_pg_run(((pg_db *)db)->pool, mode, body, arg);
}

/* Takes in the next result of a streamed statement: a row, the end, or a failure. */
static kw_status next_streamed(kw_sql_rows *r)
{
    kw_pg_conn *c = (kw_pg_conn *)r->conn;
    PQclear(r->res);
    r->res = PQgetResult(c->db);
    ExecStatusType rs = r->res ? PQresultStatus(r->res) : PGRES_FATAL_ERROR;
    r->index = 0;
    r->row = rs == PGRES_SINGLE_TUPLE;
    if (r->row)
        return KW_OK;
    if (rs == PGRES_TUPLES_OK) { /* the end: the statement is complete */
        PQclear(r->res);
        r->res = PQgetResult(c->db); /* NULL after the last result */
        PQclear(r->res);
        r->res = NULL;
        r->streamed = false;
        return KW_OK;
    }
    kw_status status = kw_pg_failed(c, r->res);
    for (PGresult *res; (res = PQgetResult(c->db)) != NULL;) /* the statement is over */
        PQclear(res);
    r->streamed = false;
    return status;
}

/*
 * Frees the result. A stream left unread is cancelled and drained, so the
 * connection can run the next statement.
 */
static void drv_done(kw_sql_rows *r)
{
    kw_pg_conn *c = (kw_pg_conn *)r->conn;
    PQclear(r->res);
    r->res = NULL;
    if (r->streamed) {
        PGcancel *cancel = PQgetCancel(c->db);
        char reason[256];
        if (cancel)
            PQcancel(cancel, reason, sizeof reason);
        PQfreeCancel(cancel);
        for (PGresult *res; (res = PQgetResult(c->db)) != NULL;)
            PQclear(res);
        r->streamed = false;
    }
    r->row = false;
}

static kw_status drv_query(kw_sql_conn *base, int q, const kw_sql_param *params, int count,
                           bool stream, kw_sql_rows *out)
{
    memset(out, 0, sizeof *out);
    out->conn = base;
    PGresult *res;
    kw_status status = kw_pg_query((kw_pg_conn *)base, q, params, count, stream, &res);
    if (status != KW_OK)
        return status;
    if (stream) {
        out->streamed = true;
        status = next_streamed(out);
        if (status != KW_OK)
            drv_done(out);
        return status;
    }
    out->res = res;
    out->count = PQntuples(res);
    out->row = out->count > 0;
    out->changed = strtoll(PQcmdTuples(res), NULL, 10);
    return KW_OK;
}

static kw_status drv_next(kw_sql_rows *r)
{
    if (r->streamed)
        return next_streamed(r);
    r->row = ++r->index < r->count;
    return KW_OK;
}

static bool drv_is_null(const kw_sql_rows *r, int col)
{
    return PQgetisnull(r->res, r->index, col);
}

static int64_t drv_integer(const kw_sql_rows *r, int col)
{
    const char *v = PQgetvalue(r->res, r->index, col);
    return strcmp(v, "t") == 0 ? 1 : strtoll(v, NULL, 10);
}

static const char *drv_text(const kw_sql_rows *r, int col, size_t *len)
{
    *len = (size_t)PQgetlength(r->res, r->index, col);
    return PQgetvalue(r->res, r->index, col);
}

/* The hex form ("\x...") that servers send by default, or whatever else bytea_output makes them. */
static bool drv_hash(const kw_sql_rows *r, int col, uint8_t out[KW_HASH_BYTES])
{
    if (drv_is_null(r, col))
        return false;
    size_t len, n = 0;
    const char *v = drv_text(r, col, &len);
    if (len >= 2 && v[0] == '\\' && v[1] == 'x')
        return sodium_hex2bin(out, KW_HASH_BYTES, v + 2, len - 2, NULL, &n, NULL) == 0 &&
               n == KW_HASH_BYTES;
    unsigned char *bin = PQunescapeBytea((const unsigned char *)v, &n);
    bool ok = bin && n == KW_HASH_BYTES;
    if (ok)
        memcpy(out, bin, KW_HASH_BYTES);
    PQfreemem(bin);
    return ok;
}

static kw_status drv_migrate(kw_sql_conn *c, int *version, kw_error *err)
{
    return kw_pg_migrate((kw_pg_conn *)c, version, err);
}

/* The URL is wiped: it may hold a password. */
static void drv_close(void *db)
{
    pg_db *d = db;
    if (d) {
        PQfinish(d->listener);
        kw_sql_pool_close(d->pool);
        for (int q = 0; q < KW_Q_COUNT; q++)
            free(d->sql[q]);
        sodium_memzero(d->url, d->url_len);
    }
    free(d);
}

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Drops the listening connection, which the next wait opens again, after a pause. */
static kw_status listener_lost(pg_db *d, int timeout_ms)
{
    PQfinish(d->listener);
    d->listener = NULL;
    pause_ms(timeout_ms < UNAVAILABLE_WAIT_MS ? timeout_ms : UNAVAILABLE_WAIT_MS);
    return KW_ERR_UNAVAILABLE;
}

/* Frees every notification received so far; true when there was one. */
static bool drain_notifies(PGconn *db)
{
    bool any = false;
    for (PGnotify *n; (n = PQnotifies(db)) != NULL; any = true)
        PQfreemem(n);
    return any;
}

/*
 * The listening connection is not a pooled one: LISTEN lasts as long as
 * its session, and a pooled connection serves other operations between
 * waits. It is opened on the first call and again after it broke; while
 * the server cannot be reached, each call pauses before it answers
 * KW_ERR_UNAVAILABLE, so a caller in a loop does not spin. Traffic that is
 * not a notification (a server's parting error before it closes) is
 * consumed and waited past.
 */
static kw_status drv_feed_wait(void *db, int timeout_ms)
{
    pg_db *d = db;
    if (timeout_ms < 0)
        timeout_ms = 0;
    if (!d->listener) {
        d->listener = kw_pg_connect(d->url);
        if (!d->listener)
            return listener_lost(d, timeout_ms);
        PGresult *res = PQexec(d->listener, "LISTEN " FEED_CHANNEL);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok)
            return listener_lost(d, timeout_ms);
    }
    long long end = kw_sql_monotonic_ms() + timeout_ms;
    for (;;) {
        if (drain_notifies(d->listener))
            return KW_OK;
        long long left = end - kw_sql_monotonic_ms();
        if (left <= 0)
            return KW_OK;
        struct pollfd pfd = {.fd = PQsocket(d->listener), .events = POLLIN};
        int ready = poll(&pfd, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            return KW_OK; /* an early return is allowed */
        if (ready < 0 || (ready > 0 && !PQconsumeInput(d->listener)) ||
            PQstatus(d->listener) != CONNECTION_OK)
            return listener_lost(d, timeout_ms);
    }
}

static const kw_sql_driver pg_driver = {
    KW_SQL_DRIVER_FUNCTIONS(drv),
    .dialect = &pg_dialect,
    .feed_wait = drv_feed_wait,
};

kw_status kw_store_postgres_open(const char *url, kw_store **out, kw_error *err)
{
    *out = NULL;
    if (!PQisthreadsafe())
        return kw_error_set(err, KW_ERR_INTERNAL, "libpq was built without thread safety.");
    if (sodium_init() < 0) /* for the random retry pauses */
        return kw_error_set(err, KW_ERR_INTERNAL, "libsodium could not be initialised.");
    /* Parse first: a malformed URL is the operator's to fix, not an outage. */
    char *parse_error = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &parse_error);
    PQconninfoFree(opts);
    if (!opts) {
        PQfreemem(parse_error); /* may quote part of the URL: never shown */
        return kw_error_set(err, KW_ERR_INVALID, "The PostgreSQL store URL is malformed.");
    }
    size_t len = strlen(url);
    pg_db *d = calloc(1, sizeof *d + len + 1);
    if (!d)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    memcpy(d->url, url, len + 1);
    d->url_len = len;
    kw_status status = KW_OK;
    for (int q = 0; q < KW_Q_COUNT && status == KW_OK; q++) {
        const char *sql = kw_sql_statement(&pg_dialect, q);
        if (sql && !(d->sql[q] = numbered(sql)))
            status = KW_ERR_INTERNAL;
    }
    if (status == KW_OK)
        status = kw_sql_pool_open(&pool_ops, d, POOL_SIZE, ACQUIRE_WAIT_S, &d->pool);
    if (status != KW_OK) {
        drv_close(d);
        return kw_error_set(
            err, status,
            status == KW_ERR_UNAVAILABLE
                ? "Could not connect to the PostgreSQL server named by the store URL."
                : "Out of memory.");
    }
    return kw_sql_store_open(&pg_driver, d, out, err);
}
