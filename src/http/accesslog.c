/*
 * accesslog.c - the access log, written in batches.
 *
 * Each server thread appends its lines to a buffer of its own (under a
 * mutex that only the flusher ever contends for), and a flusher thread
 * writes every buffer out every 100 ms: one write(2) per batch instead of
 * one per request, and request threads never queue on the log file's
 * lock. A full buffer is written at once by the thread that filled it.
 * Lines reach the file at most 100 ms late, and all of them are written
 * before kw_accesslog_free returns.
 */
#include "http/accesslog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUF_BYTES   32768
#define FLUSH_EVERY 100 /* ms */

typedef struct buffer {
    pthread_mutex_t mu;
    size_t len;
    struct buffer *next;
    char data[BUF_BYTES];
} buffer;

struct kw_accesslog {
    int fd;
    unsigned long id;   /* tells this log from an earlier one at the same address */
    pthread_mutex_t mu; /* guards buffers, stopping */
    pthread_cond_t cv;
    buffer *buffers;
    bool stopping;
    pthread_t flusher;
};

static atomic_ulong last_id;

/* The calling thread's buffer, and the id of the log it belongs to. */
static __thread buffer *mine;
static __thread unsigned long mine_owner;

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n <= 0)
            return; /* a log that cannot be written must not stop the server */
        data += n;
        len -= (size_t)n;
    }
}

/* Writes b out; the caller holds b->mu. */
static void drain(const kw_accesslog *log, buffer *b)
{
    write_all(log->fd, b->data, b->len);
    b->len = 0;
}

static void drain_all(kw_accesslog *log)
{
    pthread_mutex_lock(&log->mu);
    for (buffer *b = log->buffers; b; b = b->next) {
        pthread_mutex_lock(&b->mu);
        drain(log, b);
        pthread_mutex_unlock(&b->mu);
    }
    pthread_mutex_unlock(&log->mu);
}

static void *flusher(void *arg)
{
    kw_accesslog *log = arg;
    pthread_mutex_lock(&log->mu);
    while (!log->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += FLUSH_EVERY * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&log->cv, &log->mu, &until);
        pthread_mutex_unlock(&log->mu);
        drain_all(log);
        pthread_mutex_lock(&log->mu);
    }
    pthread_mutex_unlock(&log->mu);
    return NULL;
}

kw_accesslog *kw_accesslog_new(int fd)
{
    kw_accesslog *log = calloc(1, sizeof *log);
    if (!log)
        return NULL;
    log->fd = fd;
    log->id = atomic_fetch_add(&last_id, 1) + 1;
    pthread_mutex_init(&log->mu, NULL);
    pthread_cond_init(&log->cv, NULL);
    if (pthread_create(&log->flusher, NULL, flusher, log) != 0) {
        pthread_cond_destroy(&log->cv);
        pthread_mutex_destroy(&log->mu);
        free(log);
        return NULL;
    }
    return log;
}

void kw_accesslog_free(kw_accesslog *log)
{
    if (!log)
        return;
    pthread_mutex_lock(&log->mu);
    log->stopping = true;
    pthread_cond_signal(&log->cv);
    pthread_mutex_unlock(&log->mu);
    pthread_join(log->flusher, NULL);
    drain_all(log);
    for (buffer *b = log->buffers, *next; b; b = next) {
        next = b->next;
        pthread_mutex_destroy(&b->mu);
        free(b);
    }
    pthread_cond_destroy(&log->cv);
    pthread_mutex_destroy(&log->mu);
    free(log);
}

/* The calling thread's buffer in log, made on first use; NULL when out of memory. */
static buffer *thread_buffer(kw_accesslog *log)
{
    if (mine && mine_owner == log->id)
        return mine;
    buffer *b = malloc(sizeof *b);
    if (!b)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    b->len = 0;
    pthread_mutex_lock(&log->mu);
    b->next = log->buffers;
    log->buffers = b;
    pthread_mutex_unlock(&log->mu);
    mine = b;
    mine_owner = log->id;
    return b;
}

void kw_accesslog_line(kw_accesslog *log, const char *line, size_t len)
{
    buffer *b = thread_buffer(log);
    if (!b || len > BUF_BYTES) {
        write_all(log->fd, line, len);
        return;
    }
    pthread_mutex_lock(&b->mu);
    if (b->len + len > BUF_BYTES)
        drain(log, b);
    memcpy(b->data + b->len, line, len);
    b->len += len;
    pthread_mutex_unlock(&b->mu);
}
