/*
 * sql_pool.c - a pool of a driver's connections.
 */
#include "store/sql_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct kw_sql_pool {
    pthread_mutex_t lock;
    pthread_cond_t released;
    const kw_sql_pool_ops *ops;
    void *ctx;
    int size;
    int wait_s;
    kw_sql_conn **idle; /* size slots */
    int idle_count;
    int open_count; /* idle + in use + being opened */
};

kw_status kw_sql_pool_open(const kw_sql_pool_ops *ops, void *ctx, int size, int wait_s,
                           kw_sql_pool **out)
{
    *out = NULL;
    kw_sql_pool *p = calloc(1, sizeof *p);
    if (!p)
        return KW_ERR_INTERNAL;
    p->idle = calloc((size_t)size, sizeof *p->idle);
    if (!p->idle) {
        free(p);
        return KW_ERR_INTERNAL;
    }
    p->ops = ops;
    p->ctx = ctx;
    p->size = size;
    p->wait_s = wait_s;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->released, NULL);
    kw_status status = ops->open(ctx, &p->idle[0]);
    if (status != KW_OK) {
        kw_sql_pool_close(p);
        return status;
    }
    p->idle_count = p->open_count = 1;
    *out = p;
    return KW_OK;
}

void kw_sql_pool_close(kw_sql_pool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->idle_count; i++)
        p->ops->close(p->idle[i]);
    pthread_cond_destroy(&p->released);
    pthread_mutex_destroy(&p->lock);
    free(p->idle);
    free(p);
}

/* Frees a slot whose connection is not coming back, and wakes a waiter. */
static void drop_slot(kw_sql_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->open_count--;
    pthread_cond_signal(&p->released);
    pthread_mutex_unlock(&p->lock);
}

/* Waits for a connection to be given back; false when wait_s passed first. */
static bool wait_released(kw_sql_pool *p, const struct timespec *until)
{
    if (p->wait_s == 0)
        return pthread_cond_wait(&p->released, &p->lock) == 0;
    return pthread_cond_timedwait(&p->released, &p->lock, until) != ETIMEDOUT;
}

kw_status kw_sql_pool_acquire(kw_sql_pool *p, kw_sql_conn **out)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += p->wait_s;
    pthread_mutex_lock(&p->lock);
    while (p->idle_count == 0 && p->open_count == p->size)
        if (!wait_released(p, &until)) {
            pthread_mutex_unlock(&p->lock);
            return KW_ERR_UNAVAILABLE;
        }
    if (p->idle_count > 0) {
        kw_sql_conn *c = p->idle[--p->idle_count];
        pthread_mutex_unlock(&p->lock);
        kw_status status = p->ops->check ? p->ops->check(p->ctx, c) : KW_OK;
        if (status != KW_OK) {
            kw_sql_pool_release(p, c);
            return status;
        }
        *out = c;
        return KW_OK;
    }
    p->open_count++; /* reserve the slot; opening happens outside the lock */
    pthread_mutex_unlock(&p->lock);
    kw_status status = p->ops->open(p->ctx, out);
    if (status != KW_OK)
        drop_slot(p);
    return status;
}

void kw_sql_pool_release(kw_sql_pool *p, kw_sql_conn *c)
{
    if (p->ops->keep && !p->ops->keep(c)) {
        p->ops->close(c);
        drop_slot(p);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->idle[p->idle_count++] = c;
    pthread_cond_signal(&p->released);
    pthread_mutex_unlock(&p->lock);
}
