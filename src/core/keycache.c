/*
 * keycache.c - a set-associative table of verified keys (see keycache.h).
 *
 * A key's HMAC is uniformly random, so its first eight bytes pick a set of
 * WAYS slots; a new entry takes a slot of its own key, an empty or stale
 * one, or else the oldest. Sets are guarded by a few hundred striped
 * mutexes, held only to compare hashes and copy one record.
 */
#include "core/keycache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define STRIPES 256
#define WAYS    4

typedef struct {
    uint8_t hash[KW_HASH_BYTES];
    uint64_t epoch; /* 0: empty */
    int64_t filled_at;
    kw_key key;
} slot;

struct kw_keycache {
    slot *slots;
    size_t set_mask; /* sets - 1; a set is WAYS consecutive slots */
    atomic_uint_fast64_t epoch;
    atomic_uint_fast64_t token;
    pthread_mutex_t sync; /* orders epoch changes */
    pthread_mutex_t stripes[STRIPES];
};

kw_keycache *kw_keycache_new(size_t entries)
{
    size_t n = 64; /* slots */
    while (n < entries && n < ((size_t)1 << 30))
        n *= 2;
    kw_keycache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->slots = calloc(n, sizeof *c->slots);
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->set_mask = n / WAYS - 1;
    atomic_init(&c->epoch, 1);
    atomic_init(&c->token, 0);
    pthread_mutex_init(&c->sync, NULL);
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&c->stripes[i], NULL);
    return c;
}

void kw_keycache_free(kw_keycache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_destroy(&c->stripes[i]);
    pthread_mutex_destroy(&c->sync);
    /* Names and ids are not secrets, but there is no reason to leave them behind. */
    sodium_memzero(c->slots, (c->set_mask + 1) * WAYS * sizeof *c->slots);
    free(c->slots);
    free(c);
}

uint64_t kw_keycache_sync(kw_keycache *c, uint64_t token)
{
    if (atomic_load(&c->token) != token) {
        pthread_mutex_lock(&c->sync);
        if (atomic_load(&c->token) != token) {
            atomic_fetch_add(&c->epoch, 1);
            atomic_store(&c->token, token);
        }
        pthread_mutex_unlock(&c->sync);
    }
    return atomic_load(&c->epoch);
}

void kw_keycache_invalidate(kw_keycache *c)
{
    pthread_mutex_lock(&c->sync);
    atomic_fetch_add(&c->epoch, 1);
    pthread_mutex_unlock(&c->sync);
}

static size_t set_of(const kw_keycache *c, const uint8_t hash[KW_HASH_BYTES])
{
    uint64_t h;
    memcpy(&h, hash, sizeof h);
    return (size_t)h & c->set_mask;
}

bool kw_keycache_get(kw_keycache *c, const uint8_t hash[KW_HASH_BYTES], uint64_t epoch, int64_t now,
                     kw_key *out)
{
    size_t set = set_of(c, hash);
    slot *s = &c->slots[set * WAYS];
    pthread_mutex_t *mu = &c->stripes[set % STRIPES];
    bool hit = false;
    pthread_mutex_lock(mu);
    for (int w = 0; w < WAYS && !hit; w++) {
        hit = s[w].epoch == epoch && now >= s[w].filled_at &&
              now - s[w].filled_at < KW_KEYCACHE_TTL &&
              sodium_memcmp(s[w].hash, hash, KW_HASH_BYTES) == 0;
        if (hit)
            *out = s[w].key;
    }
    pthread_mutex_unlock(mu);
    return hit;
}

void kw_keycache_put(kw_keycache *c, const uint8_t hash[KW_HASH_BYTES], uint64_t epoch, int64_t now,
                     const kw_key *key)
{
    /* An entry filled in an epoch that has already ended would never be served. */
    if (epoch != atomic_load(&c->epoch))
        return;
    size_t set = set_of(c, hash);
    slot *s = &c->slots[set * WAYS];
    pthread_mutex_t *mu = &c->stripes[set % STRIPES];
    pthread_mutex_lock(mu);
    /* This key's own slot, else an empty or stale one, else the oldest. */
    int pick = 0;
    for (int w = 0; w < WAYS; w++) {
        if (s[w].epoch == epoch && memcmp(s[w].hash, hash, KW_HASH_BYTES) == 0) {
            pick = w;
            break;
        }
        if (s[pick].epoch == epoch && (s[w].epoch != epoch || s[w].filled_at < s[pick].filled_at))
            pick = w;
    }
    memcpy(s[pick].hash, hash, KW_HASH_BYTES);
    s[pick].epoch = epoch;
    s[pick].filled_at = now;
    s[pick].key = *key;
    pthread_mutex_unlock(mu);
}
