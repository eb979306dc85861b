/*
 * keycache.h - verified keys kept in memory, so that verifying a key that
 * was seen recently needs neither a query nor a lock on the store.
 *
 * Correctness rests on epochs. The cache is told a token that changes
 * whenever anything commits to the store, by any process (the store's
 * change_token); a new token starts a new epoch, and an entry is served
 * only in the epoch it was filled in. A lookup that misses reads the store
 * after it has read the token, so an entry never holds data older than
 * its epoch. A delete therefore reaches every later verification: its
 * commit changes the token (and the service also ends the epoch itself).
 * Entries also expire after KW_KEYCACHE_TTL seconds, whatever the token.
 *
 * Only keys that were found are kept; unknown keys always go to the store.
 * Safe to use from many threads.
 */
#ifndef KW_KEYCACHE_H
#define KW_KEYCACHE_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE)
#error "core/keycache.h is in the service layer, which core and store must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

#define KW_KEYCACHE_TTL 10

typedef struct kw_keycache kw_keycache;

/* A cache of about `entries` keys (rounded up to a power of two); NULL when out of memory. */
kw_keycache *kw_keycache_new(size_t entries);
void kw_keycache_free(kw_keycache *c);

/* Notes the store's current change token; returns the epoch to look up and fill in. */
uint64_t kw_keycache_sync(kw_keycache *c, uint64_t token);

/* Ends the current epoch: every entry filled so far is dropped. */
void kw_keycache_invalidate(kw_keycache *c);

/* Copies the key stored under hash in epoch into *out; false on a miss. */
bool kw_keycache_get(kw_keycache *c, const uint8_t hash[KW_HASH_BYTES], uint64_t epoch, int64_t now,
                     kw_key *out);

/* Stores key under hash for epoch (the one kw_keycache_sync gave before the store was read). */
void kw_keycache_put(kw_keycache *c, const uint8_t hash[KW_HASH_BYTES], uint64_t epoch, int64_t now,
                     const kw_key *key);

#endif
