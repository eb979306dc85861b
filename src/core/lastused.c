/*
 * lastused.c - an open-addressing table of id -> newest use time, in
 * shards with a mutex each: verifications on different threads rarely
 * wait for one another, even when one of them is preempted holding a lock.
 */
#include "core/lastused.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_SLOTS 64
#define SHARDS        16

typedef struct {
    pthread_mutex_t mu;
    kw_touch *slots; /* id[0] == '\0' marks a free slot */
    size_t cap;      /* a power of two */
    size_t count;
} shard;

struct kw_lastused {
    shard shards[SHARDS];
};

static size_t hash_id(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static kw_touch *find_slot(kw_touch *slots, size_t cap, const char *id)
{
    size_t i = hash_id(id) & (cap - 1);
    while (slots[i].id[0] && strcmp(slots[i].id, id) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* Doubles the table; keeps it at most half full so probes stay short. */
static int grow(shard *lu)
{
    size_t cap = lu->cap * 2;
    kw_touch *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < lu->cap; i++)
        if (lu->slots[i].id[0])
            *find_slot(slots, cap, lu->slots[i].id) = lu->slots[i];
    free(lu->slots);
    lu->slots = slots;
    lu->cap = cap;
    return 0;
}

kw_lastused *kw_lastused_new(void)
{
    kw_lastused *lu = calloc(1, sizeof *lu);
    if (!lu)
        return NULL;
    for (size_t i = 0; i < SHARDS; i++) {
        shard *sh = &lu->shards[i];
        sh->slots = calloc(INITIAL_SLOTS, sizeof *sh->slots);
        sh->cap = INITIAL_SLOTS;
        pthread_mutex_init(&sh->mu, NULL);
        if (!sh->slots) {
            kw_lastused_free(lu);
            return NULL;
        }
    }
    return lu;
}

void kw_lastused_free(kw_lastused *lu)
{
    if (!lu)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_destroy(&lu->shards[i].mu);
        free(lu->shards[i].slots);
    }
    free(lu);
}

int kw_lastused_note(kw_lastused *lu, const char *id, int64_t t)
{
    size_t len = strlen(id);
    if (len >= KW_ID_BUFSZ)
        return -1;
    /* The top bits pick the shard; find_slot uses the low ones. */
    shard *sh = &lu->shards[hash_id(id) >> 60 & (SHARDS - 1)];
    int rc = 0;
    pthread_mutex_lock(&sh->mu);
    if ((sh->count + 1) * 2 > sh->cap && grow(sh) != 0) {
        rc = -1;
    } else {
        kw_touch *slot = find_slot(sh->slots, sh->cap, id);
        if (!slot->id[0]) {
            memcpy(slot->id, id, len + 1);
            slot->at = t;
            sh->count++;
        } else if (t > slot->at) {
            slot->at = t;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return rc;
}

size_t kw_lastused_take(kw_lastused *lu, kw_touch **out)
{
    *out = NULL;
    kw_touch *items = NULL;
    size_t n = 0;
    for (size_t i = 0; i < SHARDS; i++) {
        shard *sh = &lu->shards[i];
        pthread_mutex_lock(&sh->mu);
        kw_touch *grown = sh->count ? realloc(items, (n + sh->count) * sizeof *items) : items;
        if (grown) { /* out of memory: this shard keeps its entries for the next take */
            items = grown;
            for (size_t j = 0; j < sh->cap && sh->count; j++) {
                if (sh->slots[j].id[0]) {
                    items[n++] = sh->slots[j];
                    sh->slots[j].id[0] = '\0';
                    sh->count--;
                }
            }
        }
        pthread_mutex_unlock(&sh->mu);
    }
    *out = items;
    return n;
}
