/*
 * ratelimit.c - attempt counters in a fixed-size table (see ratelimit.h).
 *
 * The table holds ENTRIES keys; when it is full, a key whose window has
 * passed is reused, else the one whose window started first. Counters are
 * per node: behind a load balancer with N nodes an address gets up to N
 * times the limit, which still turns guessing into a trickle.
 */
#include "http/ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRIES 4096
#define KEY_MAX 300

typedef struct {
    char key[KEY_MAX]; /* "" marks a free entry */
    int64_t window_start;
    unsigned count;
} entry;

struct kw_ratelimit {
    pthread_mutex_t mu;
    unsigned limit;
    unsigned window_s;
    entry entries[ENTRIES];
};

kw_ratelimit *kw_ratelimit_new(unsigned limit, unsigned window_s)
{
    kw_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->limit = limit;
    rl->window_s = window_s;
    pthread_mutex_init(&rl->mu, NULL);
    return rl;
}

void kw_ratelimit_free(kw_ratelimit *rl)
{
    if (!rl)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

/* The entry of key, or NULL; the caller holds rl->mu. */
static entry *find(kw_ratelimit *rl, const char *key)
{
    for (size_t i = 0; i < ENTRIES; i++)
        if (rl->entries[i].key[0] && strcmp(rl->entries[i].key, key) == 0)
            return &rl->entries[i];
    return NULL;
}

unsigned kw_ratelimit_take(kw_ratelimit *rl, const char *key, int64_t now)
{
    unsigned wait = 0;
    pthread_mutex_lock(&rl->mu);
    entry *e = find(rl, key);
    if (!e) {
        /* A free or expired entry, else the one whose window started first. */
        e = &rl->entries[0];
        for (size_t i = 0; i < ENTRIES; i++) {
            entry *c = &rl->entries[i];
            if (!c->key[0] || now >= c->window_start + rl->window_s) {
                e = c;
                break;
            }
            if (c->window_start < e->window_start)
                e = c;
        }
        snprintf(e->key, sizeof e->key, "%s", key);
        e->window_start = now;
        e->count = 0;
    } else if (now >= e->window_start + rl->window_s) {
        e->window_start = now;
        e->count = 0;
    }
    if (e->count < rl->limit)
        e->count++;
    else
        wait = (unsigned)(e->window_start + rl->window_s - now);
    pthread_mutex_unlock(&rl->mu);
    return wait;
}

void kw_ratelimit_give_back(kw_ratelimit *rl, const char *key, int64_t taken_at)
{
    pthread_mutex_lock(&rl->mu);
    entry *e = find(rl, key);
    /* A window that started after taken_at is a later one: not the slot's. */
    if (e && e->count > 0 && e->window_start <= taken_at)
        e->count--;
    pthread_mutex_unlock(&rl->mu);
}

void kw_ratelimit_reset(kw_ratelimit *rl, const char *key)
{
    pthread_mutex_lock(&rl->mu);
    entry *e = find(rl, key);
    if (e)
        memset(e, 0, sizeof *e);
    pthread_mutex_unlock(&rl->mu);
}
