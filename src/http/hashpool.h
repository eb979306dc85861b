/*
 * hashpool.h - a few threads of their own for password checks.
 *
 * An argon2id check costs tens of milliseconds of CPU and 64 MiB of
 * memory. Run on a server thread it would hold that thread, and every
 * verification queued behind it, for as long; here it runs on one of a
 * small number of threads fed by a bounded queue. Two things keep a flood
 * of sign-ins from taking the CPU that verification needs: the threads run
 * at idle priority (SCHED_IDLE: a server thread that wakes up takes the CPU
 * from them at once), and a budget caps the jobs started per second (idle
 * priority alone does not cap what the process as a whole burns, and the
 * kernel weighs that against other processes' groups).
 */
#ifndef KW_HASHPOOL_H
#define KW_HASHPOOL_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/hashpool.h is in the http layer, which core, store and service must not include"
#endif

#include <stdbool.h>
#include <stddef.h>

typedef struct kw_hashpool kw_hashpool;
typedef struct kw_hashpool_job kw_hashpool_job;

/*
 * A job: embed it as the first member of a struct of your own. The pool
 * calls run exactly once for every job it accepted: on a pool thread with
 * stopping false, or, when the pool stops before the job's turn, on the
 * thread that stops it with stopping true (then the job must answer without
 * doing the expensive work). run owns the job from then on.
 */
struct kw_hashpool_job {
    void (*run)(kw_hashpool_job *job, bool stopping);
    kw_hashpool_job *next; /* the pool's */
};

typedef enum {
    KW_HASHPOOL_QUEUED,  /* accepted: run will be called */
    KW_HASHPOOL_FULL,    /* queue_cap jobs are waiting already; the job is still the caller's */
    KW_HASHPOOL_STOPPED, /* the pool is stopping; the job is still the caller's */
} kw_hashpool_result;

/*
 * Starts `threads` threads (at least 1) that take jobs in order from a queue
 * of at most queue_cap waiting jobs (at least 1), and start at most
 * per_second jobs a second on average, at most per_second at once (0: no
 * budget). Returns NULL when out of memory or when a thread cannot be
 * started.
 */
kw_hashpool *kw_hashpool_new(unsigned threads, unsigned queue_cap, unsigned per_second);

/* Queues job, unless the queue is full or the pool is stopping. Thread-safe. */
kw_hashpool_result kw_hashpool_submit(kw_hashpool *pool, kw_hashpool_job *job);

/*
 * Stops the pool: the jobs running finish, the threads are joined, and
 * every job still waiting is run with stopping true, on the calling
 * thread. Later submits get KW_HASHPOOL_STOPPED. Idempotent.
 */
void kw_hashpool_stop(kw_hashpool *pool);

/* kw_hashpool_stop, then frees the pool. NULL is ignored. */
void kw_hashpool_free(kw_hashpool *pool);

/* Jobs waiting for a thread right now. */
size_t kw_hashpool_waiting(kw_hashpool *pool);

#endif
