/*
 * keyindex.h - every stored key in memory, by the keyed hash of its secret.
 *
 * The index is complete: it holds every key of the store (expired ones
 * too), so a hash it does not hold belongs to no key, and a forged key
 * costs a verification no query at all. It knows nothing of freshness:
 * core/keysync.h decides when its answers may be served and applies the
 * store's change feed to it.
 *
 * Each key takes one allocation sized to its strings (about 150 bytes for
 * a typical key) plus a pointer slot in each of two tables kept at most
 * half full.
 * The table is split into shards by the hash's first byte, each with its
 * own mutex held only to compare hashes and copy one record, and each
 * growing on its own, so a lookup never waits for a whole-table resize.
 * A second table finds entries by key id, for the change feed, which names
 * a deleted key by its id only (its hash never outlives the key).
 *
 * Lookups are safe from any number of threads at any time; changes
 * (put, remove, clear) must come from one thread at a time.
 */
#ifndef KW_KEYINDEX_H
#define KW_KEYINDEX_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE)
#error "core/keyindex.h is in the service layer, which core and store must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

typedef struct kw_keyindex kw_keyindex;

/* An empty index; NULL when out of memory. */
kw_keyindex *kw_keyindex_new(void);
void kw_keyindex_free(kw_keyindex *x);

/*
 * Adds key under (hash, pepper_version), or replaces the key held there.
 * Only what a verification answers is kept: id, account, name,
 * environment, masked form, creation and expiry, enabled, the roll's
 * links and the metadata (never last_used_at).
 * False when out of memory (the index then no longer holds that key).
 */
bool kw_keyindex_put(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                     const kw_key *key);

/* Removes the key held under (hash, pepper_version); true when there was one. */
bool kw_keyindex_remove(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version);

/* Removes the key whose id is key_id; true when there was one. */
bool kw_keyindex_remove_id(kw_keyindex *x, const char *key_id);

/* Copies the key held under (hash, pepper_version) into *out; false when there is none. */
bool kw_keyindex_get(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                     kw_key *out);

/*
 * Notes that the key under (hash, pepper_version) verified at `at` (the
 * later of two times is kept): its last-used time lives in the entry the
 * lookup has just read, so noting it costs no other memory access. False
 * when the index holds no such key.
 */
bool kw_keyindex_mark_used(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES],
                           uint32_t pepper_version, int64_t at);

/*
 * Moves every noted time into a new array *out (the caller frees it) and
 * returns how many there are; the marks are cleared.
 */
size_t kw_keyindex_take_used(kw_keyindex *x, kw_touch **out);

/* Removes every key. */
void kw_keyindex_clear(kw_keyindex *x);

/* How many keys the index holds, and the bytes it uses for them (entries and tables). */
size_t kw_keyindex_count(kw_keyindex *x);
size_t kw_keyindex_bytes(kw_keyindex *x);

#endif
