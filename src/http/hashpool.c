/*
 * hashpool.c - the password-check threads (see hashpool.h).
 *
 * One mutex guards the queue (a FIFO list), the budget and the stopping
 * flag; the threads sleep on a condition variable until a job or the stop
 * arrives, and, when the budget is spent, until it allows the next job.
 * The budget is a token bucket: per_second tokens a second, holding at
 * most per_second.
 * Each thread lowers itself to SCHED_IDLE when it starts: the kernel then
 * runs it only on a CPU that has nothing else to run, and preempts it the
 * moment a server thread wakes up. Where that is refused, the thread runs at
 * normal priority and the pool still keeps the hashing off the server
 * threads.
 */
#include "http/hashpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

struct kw_hashpool {
    pthread_mutex_t mu; /* guards everything below but the thread list */
    pthread_cond_t wake;
    kw_hashpool_job *head, *tail;
    size_t waiting;
    size_t cap;
    unsigned per_second; /* the budget; 0: none */
    uint64_t tat;        /* see take_token (ns, CLOCK_MONOTONIC) */
    bool stopping;
    bool stopped; /* kw_hashpool_stop has run */
    unsigned nthreads;
    pthread_t threads[];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Takes the budget's permission for one job (GCRA, the token bucket kept as
 * one time: `tat`, when the bucket will be full again). The caller holds
 * pool->mu. Returns 0, or the time (ns) before which no job may start.
 */
static uint64_t take_token(kw_hashpool *pool)
{
    if (pool->per_second == 0)
        return 0;
    uint64_t now = now_ns(), step = 1000000000u / pool->per_second;
    uint64_t burst = (uint64_t)(pool->per_second - 1) * step; /* how far tat may run ahead */
    uint64_t tat = pool->tat > now ? pool->tat : now;
    if (tat - now > burst)
        return tat - burst;
    pool->tat = tat + step;
    return 0;
}

static void *on_thread(void *arg)
{
    kw_hashpool *pool = arg;
    pthread_setname_np(pthread_self(), "password-check");
#ifdef SCHED_IDLE
    struct sched_param idle = {0};
    (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
#endif
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->head && !pool->stopping)
            pthread_cond_wait(&pool->wake, &pool->mu);
        if (pool->stopping)
            break;
        uint64_t until = take_token(pool);
        if (until) { /* over budget: sleep (a stop wakes us) and look again */
            struct timespec ts = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
            pthread_cond_timedwait(&pool->wake, &pool->mu, &ts);
            continue;
        }
        kw_hashpool_job *job = pool->head;
        pool->head = job->next;
        if (!pool->head)
            pool->tail = NULL;
        pool->waiting--;
        pthread_mutex_unlock(&pool->mu);
        job->next = NULL;
        job->run(job, false);
        pthread_mutex_lock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

kw_hashpool *kw_hashpool_new(unsigned threads, unsigned queue_cap, unsigned per_second)
{
    if (threads == 0)
        threads = 1;
    kw_hashpool *pool = calloc(1, sizeof *pool + threads * sizeof(pthread_t));
    if (!pool)
        return NULL;
    pool->cap = queue_cap ? queue_cap : 1;
    pool->per_second = per_second;
    pthread_mutex_init(&pool->mu, NULL);
    /* The budget's deadlines are CLOCK_MONOTONIC times: wall-clock steps do not move them. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->wake, &attr);
    pthread_condattr_destroy(&attr);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, on_thread, pool) != 0) {
            kw_hashpool_free(pool);
            return NULL;
        }
        pool->nthreads++;
    }
    return pool;
}

kw_hashpool_result kw_hashpool_submit(kw_hashpool *pool, kw_hashpool_job *job)
{
    kw_hashpool_result result = KW_HASHPOOL_QUEUED;
    pthread_mutex_lock(&pool->mu);
    if (pool->stopping) {
        result = KW_HASHPOOL_STOPPED;
    } else if (pool->waiting >= pool->cap) {
        result = KW_HASHPOOL_FULL;
    } else {
        job->next = NULL;
        if (pool->tail)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
        pool->waiting++;
        pthread_cond_signal(&pool->wake);
    }
    pthread_mutex_unlock(&pool->mu);
    return result;
}

void kw_hashpool_stop(kw_hashpool *pool)
{
    pthread_mutex_lock(&pool->mu);
    bool already = pool->stopped;
    pool->stopping = true;
    pool->stopped = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    if (already)
        return;
    for (unsigned i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    /* No thread is left and no submit gets in: the queue is ours. */
    pthread_mutex_lock(&pool->mu);
    kw_hashpool_job *job = pool->head;
    pool->head = pool->tail = NULL;
    pool->waiting = 0;
    pthread_mutex_unlock(&pool->mu);
    while (job) {
        kw_hashpool_job *next = job->next;
        job->next = NULL;
        job->run(job, true);
        job = next;
    }
}

void kw_hashpool_free(kw_hashpool *pool)
{
    if (!pool)
        return;
    kw_hashpool_stop(pool);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

size_t kw_hashpool_waiting(kw_hashpool *pool)
{
    pthread_mutex_lock(&pool->mu);
    size_t n = pool->waiting;
    pthread_mutex_unlock(&pool->mu);
    return n;
}
