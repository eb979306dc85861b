/*
 * sql_pool.h - a pool of a driver's connections to one database; internal
 * to src/store.
 *
 * A thread takes a connection for the length of one operation and gives it
 * back, so no connection is ever used by two threads at once. The driver
 * opens, checks and closes its connections through kw_sql_pool_ops.
 */
#ifndef KW_SQL_POOL_H
#define KW_SQL_POOL_H

#if defined(KW_LAYER_CORE)
#error "store/sql_pool.h is in the store layer, which core must not include"
#endif

#include <stdbool.h>

#include "core/status.h"
#include "store/sql.h"

typedef struct kw_sql_pool kw_sql_pool;

typedef struct {
    /* Opens a connection: KW_OK and *out, or the status to give the caller. */
    kw_status (*open)(void *ctx, kw_sql_conn **out);
    void (*close)(kw_sql_conn *c);
    /* Optional: makes an idle connection usable before it is lent (reconnects one that broke). */
    kw_status (*check)(void *ctx, kw_sql_conn *c);
    /* Optional: false when c, being given back, must be closed rather than lent again. */
    bool (*keep)(const kw_sql_conn *c);
} kw_sql_pool_ops;

/*
 * Creates a pool of at most `size` connections opened by ops with ctx
 * (both must outlive the pool) and opens the first at once, so that an
 * unusable database fails here with its status. wait_s bounds how long
 * kw_sql_pool_acquire waits for a free connection (0: no bound).
 */
kw_status kw_sql_pool_open(const kw_sql_pool_ops *ops, void *ctx, int size, int wait_s,
                           kw_sql_pool **out);

/* Closes every connection; none may be in use. NULL is fine. */
void kw_sql_pool_close(kw_sql_pool *p);

/*
 * Takes a connection for the calling thread: an idle one, a new one while
 * the pool has room, else waits. KW_ERR_UNAVAILABLE after wait_s. Every
 * KW_OK is paired with one kw_sql_pool_release.
 */
kw_status kw_sql_pool_acquire(kw_sql_pool *p, kw_sql_conn **out);
void kw_sql_pool_release(kw_sql_pool *p, kw_sql_conn *c);

#endif
