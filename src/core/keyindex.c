/*
 * keyindex.c - the complete in-memory index of keys (see keyindex.h).
 *
 * A key's HMAC is uniformly random: its first byte picks a shard, its
 * bytes 8 to 15 the home slot within the shard's open-addressing table
 * (linear probing; a removal shifts later entries of the run back, so no
 * tombstones accumulate under churn).
 */
#include "core/keyindex.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define SHARDS       256
#define MIN_CAPACITY 16

/* The strings an entry keeps, in this order; an empty one costs its NUL. */
enum {
    F_ID,
    F_ACCOUNT,
    F_NAME,
    F_ENVIRONMENT,
    F_MASKED,
    F_ROLLED_FROM,
    F_ROLLED_TO,
    F_METADATA,
    FIELDS
};

/*
 * The fixed part stays at 80 bytes with the lifecycle's fields: the eight
 * lengths and the size fit in the room four 16-bit lengths and a size_t
 * took, enabled in the padding after them.
 */
typedef struct {
    uint8_t hash[KW_HASH_BYTES];
    uint32_t pepper_version;
    uint16_t len[FIELDS];
    uint16_t size; /* of this allocation: every kw_key string together is far below 64 KiB */
    bool enabled;
    int64_t created_at;
    int64_t expires_at;
    int64_t used_at; /* the newest verification not yet taken; KW_TIME_NONE: none */
    char text[];     /* the FIELDS strings, each followed by its NUL */
} entry;

_Static_assert(sizeof(kw_key) < UINT16_MAX, "an entry's size must fit its 16-bit size");

typedef struct {
    pthread_mutex_t mu;
    entry **slots;
    size_t mask; /* capacity - 1; 0 while slots is NULL */
    size_t count;
    size_t entry_bytes;
} shard;

struct kw_keyindex {
    shard shards[SHARDS];
    atomic_size_t count; /* the sum of the shards' counts, read without their locks */
    /* The same entries by key id, for removals named by id. Only the one
     * writer uses it, so it needs no lock. */
    entry **ids;
    size_t id_mask; /* capacity - 1; 0 while ids is NULL */
    size_t id_count;
};

kw_keyindex *kw_keyindex_new(void)
{
    kw_keyindex *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    for (size_t i = 0; i < SHARDS; i++)
        pthread_mutex_init(&x->shards[i].mu, NULL);
    return x;
}

static void release(entry *e)
{
    /* Names and ids are not secrets and the hash is keyed, but nothing of
     * a key needs to outlive its entry. */
    sodium_memzero(e, e->size);
    free(e);
}

static void shard_clear(shard *sh)
{
    for (size_t i = 0; sh->slots && i <= sh->mask; i++)
        if (sh->slots[i])
            release(sh->slots[i]);
    free(sh->slots);
    sh->slots = NULL;
    sh->mask = 0;
    sh->count = 0;
    sh->entry_bytes = 0;
}

void kw_keyindex_free(kw_keyindex *x)
{
    if (!x)
        return;
    for (size_t i = 0; i < SHARDS; i++) {
        shard_clear(&x->shards[i]);
        pthread_mutex_destroy(&x->shards[i].mu);
    }
    free(x->ids);
    free(x);
}

void kw_keyindex_clear(kw_keyindex *x)
{
    free(x->ids);
    x->ids = NULL;
    x->id_mask = 0;
    x->id_count = 0;
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&x->shards[i].mu);
        atomic_fetch_sub(&x->count, x->shards[i].count);
        shard_clear(&x->shards[i]);
        pthread_mutex_unlock(&x->shards[i].mu);
    }
}

static shard *shard_of(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES])
{
    return &x->shards[hash[0]];
}

static size_t home_of(const shard *sh, const uint8_t hash[KW_HASH_BYTES])
{
    uint64_t h;
    memcpy(&h, hash + 8, sizeof h);
    return (size_t)h & sh->mask;
}

static bool same(const entry *e, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version)
{
    return e->pepper_version == pepper_version && sodium_memcmp(e->hash, hash, KW_HASH_BYTES) == 0;
}

/* The slot holding (hash, version), or the empty slot ending its probe run. */
static size_t probe(const shard *sh, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version)
{
    size_t i = home_of(sh, hash);
    while (sh->slots[i] && !same(sh->slots[i], hash, pepper_version))
        i = (i + 1) & sh->mask;
    return i;
}

/* Doubles the shard's table (or makes its first); false when out of memory. */
static bool grow(shard *sh)
{
    size_t old_capacity = sh->slots ? sh->mask + 1 : 0;
    size_t capacity = old_capacity ? old_capacity * 2 : MIN_CAPACITY;
    entry **slots = calloc(capacity, sizeof *slots);
    if (!slots)
        return false;
    entry **old = sh->slots;
    sh->slots = slots;
    sh->mask = capacity - 1;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i])
            sh->slots[probe(sh, old[i]->hash, old[i]->pepper_version)] = old[i];
    free(old);
    return true;
}

/* ---- the id table: FNV-1a of the id, linear probing, backward-shift removal ---- */

static size_t id_home(const kw_keyindex *x, const char *id)
{
    uint64_t h = 14695981039346656037u;
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211u;
    return (size_t)h & x->id_mask;
}

/* The slot holding id, or the empty slot ending its probe run. */
static size_t id_probe(const kw_keyindex *x, const char *id)
{
    size_t i = id_home(x, id);
    while (x->ids[i] && strcmp(x->ids[i]->text, id) != 0)
        i = (i + 1) & x->id_mask;
    return i;
}

static entry *id_find(const kw_keyindex *x, const char *id)
{
    return x->ids ? x->ids[id_probe(x, id)] : NULL;
}

static bool id_grow(kw_keyindex *x)
{
    size_t old_capacity = x->ids ? x->id_mask + 1 : 0;
    size_t capacity = old_capacity ? old_capacity * 2 : MIN_CAPACITY * SHARDS;
    entry **ids = calloc(capacity, sizeof *ids);
    if (!ids)
        return false;
    entry **old = x->ids;
    x->ids = ids;
    x->id_mask = capacity - 1;
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i])
            x->ids[id_probe(x, old[i]->text)] = old[i];
    free(old);
    return true;
}

/* Points the slot of e's id (its first string) at e. */
static bool id_put(kw_keyindex *x, entry *e)
{
    if ((!x->ids || (x->id_count + 1) * 2 > x->id_mask + 1) && !id_grow(x))
        return false;
    size_t i = id_probe(x, e->text);
    if (!x->ids[i])
        x->id_count++;
    x->ids[i] = e;
    return true;
}

/* Forgets e's id, if its slot still points at e. */
static void id_remove(kw_keyindex *x, const entry *e)
{
    if (!x->ids)
        return;
    size_t hole = id_probe(x, e->text);
    if (x->ids[hole] != e)
        return;
    x->ids[hole] = NULL;
    x->id_count--;
    for (size_t i = (hole + 1) & x->id_mask; x->ids[i]; i = (i + 1) & x->id_mask) {
        size_t home = id_home(x, x->ids[i]->text);
        if (((i - home) & x->id_mask) >= ((i - hole) & x->id_mask)) {
            x->ids[hole] = x->ids[i];
            x->ids[i] = NULL;
            hole = i;
        }
    }
}

static entry *make_entry(const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                         const kw_key *key)
{
    const char *field[FIELDS] = {
        [F_ID] = key->id,
        [F_ACCOUNT] = key->account_id,
        [F_NAME] = key->name,
        [F_ENVIRONMENT] = key->environment,
        [F_MASKED] = key->masked,
        [F_ROLLED_FROM] = key->rolled_from,
        [F_ROLLED_TO] = key->rolled_to,
        [F_METADATA] = key->metadata,
    };
    size_t len[FIELDS];
    size_t text = 0;
    for (int f = 0; f < FIELDS; f++) {
        len[f] = strlen(field[f]);
        text += len[f] + 1;
    }
    size_t size = sizeof(entry) + text;
    entry *e = malloc(size);
    if (!e)
        return NULL;
    memcpy(e->hash, hash, KW_HASH_BYTES);
    e->pepper_version = pepper_version;
    e->created_at = key->created_at;
    e->expires_at = key->expires_at;
    e->enabled = key->enabled;
    e->used_at = KW_TIME_NONE;
    e->size = (uint16_t)size; /* under sizeof(entry) + sizeof(kw_key) */
    char *p = e->text;
    for (int f = 0; f < FIELDS; f++) {
        /* Every field's buffer in kw_key is far below 64 KiB. */
        e->len[f] = (uint16_t)len[f];
        memcpy(p, field[f], len[f] + 1);
        p += len[f] + 1;
    }
    return e;
}

/* Takes (hash, version)'s entry out of its shard; NULL when there is none. */
static entry *shard_take(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version)
{
    shard *sh = shard_of(x, hash);
    pthread_mutex_lock(&sh->mu);
    entry *e = NULL;
    size_t hole = sh->slots ? probe(sh, hash, pepper_version) : 0;
    if (sh->slots && sh->slots[hole]) {
        e = sh->slots[hole];
        sh->entry_bytes -= e->size;
        sh->slots[hole] = NULL;
        sh->count--;
        atomic_fetch_sub(&x->count, 1);
        /* Backward shift: an entry after the hole moves into it when its
         * home is not between the hole and itself (cyclically), so every
         * entry stays reachable from its home without a tombstone. */
        for (size_t i = (hole + 1) & sh->mask; sh->slots[i]; i = (i + 1) & sh->mask) {
            size_t home = home_of(sh, sh->slots[i]->hash);
            if (((i - home) & sh->mask) >= ((i - hole) & sh->mask)) {
                sh->slots[hole] = sh->slots[i];
                sh->slots[i] = NULL;
                hole = i;
            }
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return e;
}

bool kw_keyindex_remove(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version)
{
    entry *e = shard_take(x, hash, pepper_version);
    if (!e)
        return false;
    id_remove(x, e);
    release(e);
    return true;
}

bool kw_keyindex_remove_id(kw_keyindex *x, const char *key_id)
{
    const entry *e = id_find(x, key_id);
    return e && kw_keyindex_remove(x, e->hash, e->pepper_version);
}

bool kw_keyindex_put(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                     const kw_key *key)
{
    entry *e = make_entry(hash, pepper_version, key);
    if (!e)
        return false;
    /* The same id under another hash is the same key: the index holds one
     * entry per key. */
    const entry *same_id = id_find(x, e->text);
    if (same_id && !same(same_id, hash, pepper_version))
        kw_keyindex_remove(x, same_id->hash, same_id->pepper_version);
    if (!id_put(x, e)) {
        release(e);
        return false;
    }
    shard *sh = shard_of(x, hash);
    pthread_mutex_lock(&sh->mu);
    entry *old = NULL;
    bool ok = (sh->slots && (sh->count + 1) * 2 <= sh->mask + 1) || grow(sh);
    if (ok) {
        size_t i = probe(sh, hash, pepper_version);
        old = sh->slots[i];
        if (old) {
            sh->entry_bytes -= old->size;
            e->used_at = old->used_at; /* a changed key keeps its pending use */
        } else {
            sh->count++;
            atomic_fetch_add(&x->count, 1);
        }
        sh->slots[i] = e;
        sh->entry_bytes += e->size;
    }
    pthread_mutex_unlock(&sh->mu);
    if (!ok) {
        id_remove(x, e);
        release(e);
        return false;
    }
    if (old) {
        /* Its id's slot points at e already, unless the id changed. */
        if (strcmp(old->text, e->text) != 0)
            id_remove(x, old);
        release(old);
    }
    return true;
}

static void copy_out(const entry *e, kw_key *out)
{
    char *dst[FIELDS] = {
        [F_ID] = out->id,
        [F_ACCOUNT] = out->account_id,
        [F_NAME] = out->name,
        [F_ENVIRONMENT] = out->environment,
        [F_MASKED] = out->masked,
        [F_ROLLED_FROM] = out->rolled_from,
        [F_ROLLED_TO] = out->rolled_to,
        [F_METADATA] = out->metadata,
    };
    const char *p = e->text;
    for (int f = 0; f < FIELDS; f++) {
        memcpy(dst[f], p, (size_t)e->len[f] + 1);
        p += e->len[f] + 1;
    }
    out->created_at = e->created_at;
    out->expires_at = e->expires_at;
    out->enabled = e->enabled;
    out->last_used_at = KW_TIME_NONE;
}

bool kw_keyindex_get(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES], uint32_t pepper_version,
                     kw_key *out)
{
    shard *sh = shard_of(x, hash);
    pthread_mutex_lock(&sh->mu);
    const entry *e = sh->slots ? sh->slots[probe(sh, hash, pepper_version)] : NULL;
    if (e)
        copy_out(e, out);
    pthread_mutex_unlock(&sh->mu);
    return e != NULL;
}

bool kw_keyindex_mark_used(kw_keyindex *x, const uint8_t hash[KW_HASH_BYTES],
                           uint32_t pepper_version, int64_t at)
{
    shard *sh = shard_of(x, hash);
    pthread_mutex_lock(&sh->mu);
    entry *e = sh->slots ? sh->slots[probe(sh, hash, pepper_version)] : NULL;
    if (e && (e->used_at == KW_TIME_NONE || at > e->used_at))
        e->used_at = at;
    pthread_mutex_unlock(&sh->mu);
    return e != NULL;
}

size_t kw_keyindex_take_used(kw_keyindex *x, kw_touch **out)
{
    size_t n = 0, cap = 0;
    kw_touch *items = NULL;
    for (size_t i = 0; i < SHARDS; i++) {
        shard *sh = &x->shards[i];
        pthread_mutex_lock(&sh->mu);
        for (size_t j = 0; sh->slots && j <= sh->mask; j++) {
            entry *e = sh->slots[j];
            if (!e || e->used_at == KW_TIME_NONE)
                continue;
            if (n == cap) {
                size_t more = cap ? cap * 2 : 256;
                kw_touch *grown = realloc(items, more * sizeof *items);
                if (!grown)
                    break; /* the rest stays marked for the next take */
                items = grown;
                cap = more;
            }
            snprintf(items[n].id, sizeof items[n].id, "%s", e->text);
            items[n].at = e->used_at;
            e->used_at = KW_TIME_NONE;
            n++;
        }
        pthread_mutex_unlock(&sh->mu);
    }
    *out = items;
    return n;
}

size_t kw_keyindex_count(kw_keyindex *x)
{
    return atomic_load(&x->count);
}

size_t kw_keyindex_bytes(kw_keyindex *x)
{
    size_t n = sizeof *x + (x->ids ? (x->id_mask + 1) * sizeof(entry *) : 0);
    for (size_t i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&x->shards[i].mu);
        n += x->shards[i].entry_bytes;
        if (x->shards[i].slots)
            n += (x->shards[i].mask + 1) * sizeof(entry *);
        pthread_mutex_unlock(&x->shards[i].mu);
    }
    return n;
}
