/*
 * keysync.c - the feed follower and the node lease (see keysync.h).
 *
 * One mutex (mu) orders everything that changes the index: loading it,
 * applying the feed. Lookups never take it, except in token mode when the
 * token has moved and the feed must be read first.
 */
#include "core/keysync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/ids.h"
#include "core/keyindex.h"
#include "core/timefmt.h"

/* Changes read from the feed per query while catching up. */
#define FEED_BATCH 1000
/* How often the feed is pruned, at most. */
#define PRUNE_EVERY_S 60
/* Renewals refused in a row (the head kept moving) before the thread pauses. */
#define RENEW_TRIES 8
/* After a failed store call the feed thread waits this long. */
#define RETRY_MS 100

struct kw_keysync {
    kw_store *store;
    kw_keyindex *index; /* NULL: settle only */
    size_t max_keys;
    bool leases;
    int lease_ms;
    int64_t margin_ns; /* the local lease ends this much before the database's */
    int feed_retention_s;
    int64_t (*clock)(void);
    char node_id[KW_ID_BUFSZ];

    pthread_mutex_t mu; /* orders loads and feed reads; guards loaded, last_prune */
    bool loaded;        /* the index was loaded once */
    bool overflow;      /* the store holds more than max_keys: the store answers */
    int64_t last_prune; /* Unix seconds */
    atomic_bool ready;  /* the index holds every key up to applied */
    atomic_int_fast64_t applied;
    atomic_int_fast64_t head;
    atomic_uint_fast64_t token;    /* token mode: the store token the index reflects */
    atomic_int_fast64_t deadline;  /* lease mode: monotonic ns the lease holds until; 0: none */
    atomic_int_fast64_t caught_up; /* monotonic ns the index was last known current */

    pthread_t thread;
    bool running;
    atomic_bool stopping;

    atomic_uint_fast64_t hits, misses, invalidations, reloads, renewals;
};

static int64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int64_t unix_now(const kw_keysync *ks)
{
    return ks->clock ? ks->clock() : kw_time_now();
}

/* ---- loading and following the feed (callers hold mu) ---- */

typedef struct {
    kw_keysync *ks;
    bool overflow;
} scan_ctx;

static kw_status on_scan_row(void *ctx, const kw_key_row *row)
{
    scan_ctx *sc = ctx;
    if (kw_keyindex_count(sc->ks->index) >= sc->ks->max_keys) {
        sc->overflow = true;
        return KW_ERR_LIMIT;
    }
    return kw_keyindex_put(sc->ks->index, row->hash, row->pepper_version, &row->key)
               ? KW_OK
               : KW_ERR_INTERNAL;
}

/* Loads the whole index from one snapshot; lookups go to the store meanwhile. */
static kw_status reload(kw_keysync *ks)
{
    atomic_store(&ks->ready, false);
    kw_keyindex_clear(ks->index);
    scan_ctx sc = {ks, false};
    int64_t head = 0;
    kw_status st = ks->store->ops->key_scan(ks->store, on_scan_row, &sc, &head);
    atomic_fetch_add(&ks->reloads, 1);
    if (st != KW_OK) {
        /* Past max_keys the index stays empty and every lookup goes to the
         * store, which is still exact; a partial index would not be. */
        kw_keyindex_clear(ks->index);
        ks->overflow = sc.overflow;
        return sc.overflow ? KW_OK : st;
    }
    atomic_store(&ks->applied, head);
    if (head > atomic_load(&ks->head))
        atomic_store(&ks->head, head);
    ks->loaded = true;
    atomic_store(&ks->ready, true);
    return KW_OK;
}

static void apply(kw_keysync *ks, const kw_key_change *c)
{
    const kw_key_row *r = &c->row;
    if (!c->present)
        kw_keyindex_remove_id(ks->index, r->key.id);
    else if (kw_keyindex_count(ks->index) >= ks->max_keys ||
             !kw_keyindex_put(ks->index, r->hash, r->pepper_version, &r->key)) {
        /* An index that misses a key may not answer at all: from now on
         * the store does (the log says why). */
        atomic_store(&ks->ready, false);
        ks->overflow = true;
    }
    atomic_fetch_add(&ks->invalidations, 1);
    atomic_store(&ks->applied, c->seq);
}

/* Applies every change after `applied`; reloads when the feed was pruned past it. */
static kw_status catch_up(kw_keysync *ks)
{
    if (ks->overflow)
        return KW_OK;
    if (!ks->loaded || !atomic_load(&ks->ready))
        return reload(ks);
    for (;;) {
        int64_t after = atomic_load(&ks->applied);
        kw_key_change_list list = {0};
        kw_status st = ks->store->ops->changes_since(ks->store, after, FEED_BATCH, &list);
        if (st != KW_OK)
            return st;
        bool gap = list.count > 0 && list.items[0].seq != after + 1;
        for (size_t i = 0; i < list.count && !gap; i++)
            apply(ks, &list.items[i]);
        size_t count = list.count;
        free(list.items);
        if (gap)
            return reload(ks);
        if (count > 0 && atomic_load(&ks->applied) > atomic_load(&ks->head))
            atomic_store(&ks->head, atomic_load(&ks->applied));
        if (count < FEED_BATCH)
            return KW_OK;
    }
}

/* ---- lease mode: the feed thread ---- */

static void *on_feed(void *arg)
{
    kw_keysync *ks = arg;
    int refused = 0;
    bool left = false;
    while (!atomic_load(&ks->stopping)) {
        pthread_mutex_lock(&ks->mu);
        kw_status st = ks->index ? catch_up(ks) : KW_OK;
        int64_t applied = atomic_load(&ks->applied);
        bool overflow = ks->overflow;
        pthread_mutex_unlock(&ks->mu);
        if (overflow) {
            /* The store answers for this node from now on: it gives its
             * lease back, so that no writer waits for it. */
            if (!left) {
                atomic_store(&ks->deadline, 0);
                left = ks->store->ops->node_leave(ks->store, ks->node_id) == KW_OK;
            }
            sleep_ms(ks->lease_ms / 4);
            continue;
        }
        if (st != KW_OK) {
            sleep_ms(RETRY_MS);
            continue;
        }
        /* The lease is counted from before the request: the database's
         * lease starts later, so the local one always ends first. */
        int64_t asked = monotonic_ns();
        int64_t head = 0;
        st = ks->store->ops->node_renew(ks->store, ks->node_id, applied, ks->lease_ms, &head);
        if (head > atomic_load(&ks->head))
            atomic_store(&ks->head, head);
        if (st == KW_OK) {
            refused = 0;
            atomic_store(&ks->deadline, asked + (int64_t)ks->lease_ms * 1000000 - ks->margin_ns);
            atomic_store(&ks->caught_up, asked);
            atomic_fetch_add(&ks->renewals, 1);
        } else if (st == KW_ERR_CONFLICT && ++refused < RENEW_TRIES) {
            continue; /* a change committed meanwhile: apply it and ask again */
        } else {
            refused = 0;
            sleep_ms(RETRY_MS);
            continue;
        }
        if (ks->store->ops->feed_wait(ks->store, ks->lease_ms / 4) != KW_OK)
            sleep_ms(RETRY_MS);
    }
    return NULL;
}

/* ---- the interface ---- */

kw_status kw_keysync_open(kw_store *store, const kw_keysync_config *cfg, kw_keysync **out,
                          kw_error *err)
{
    *out = NULL;
    kw_keysync *ks = calloc(1, sizeof *ks);
    if (!ks)
        return kw_error_set(err, KW_ERR_INTERNAL, "out of memory.");
    ks->store = store;
    ks->leases = !store->ops->change_token && store->ops->node_renew;
    ks->max_keys = cfg->max_keys;
    ks->lease_ms = cfg->lease_ms > 0 ? cfg->lease_ms : 2000;
    /* Clocks drift far less than 1 part in 20 over a lease; 10 ms covers
     * the time the lease check itself takes. */
    ks->margin_ns = (int64_t)ks->lease_ms * 1000000 / 20 + 10000000;
    ks->feed_retention_s = cfg->feed_retention_s > 0 ? cfg->feed_retention_s : 3600;
    ks->clock = cfg->clock;
    pthread_mutex_init(&ks->mu, NULL);
    kw_id_new("node", ks->node_id);
    kw_status st = KW_OK;
    if (cfg->index && cfg->max_keys > 0) {
        ks->index = kw_keyindex_new();
        if (!ks->index)
            st = kw_error_set(err, KW_ERR_INTERNAL, "out of memory.");
        if (st == KW_OK && ks->store->ops->change_token) {
            uint64_t token = 0;
            st = store->ops->change_token(store, &token);
            if (st == KW_OK)
                st = reload(ks);
            if (st == KW_OK)
                atomic_store(&ks->token, token);
            if (st != KW_OK)
                kw_error_set(err, st, "The keys could not be loaded into memory.");
        }
    }
    if (st == KW_OK && ks->index && ks->leases) {
        if (pthread_create(&ks->thread, NULL, on_feed, ks) == 0)
            ks->running = true;
        else
            st = kw_error_set(err, KW_ERR_INTERNAL, "cannot start the change feed reader.");
    }
    if (st != KW_OK) {
        kw_keysync_close(ks);
        return st;
    }
    *out = ks;
    return KW_OK;
}

void kw_keysync_close(kw_keysync *ks)
{
    if (!ks)
        return;
    if (ks->running) {
        atomic_store(&ks->stopping, true);
        pthread_join(ks->thread, NULL);
        /* Writers stop waiting for this node at once rather than at the
         * end of its lease. */
        atomic_store(&ks->deadline, 0);
        ks->store->ops->node_leave(ks->store, ks->node_id);
    }
    kw_keyindex_free(ks->index);
    pthread_mutex_destroy(&ks->mu);
    free(ks);
}

/* Token mode: reads the feed first when anything was committed since the last read. */
static bool token_current(kw_keysync *ks)
{
    uint64_t token = 0;
    if (ks->store->ops->change_token(ks->store, &token) != KW_OK)
        return false;
    if (token == atomic_load(&ks->token))
        return true;
    bool ok = true;
    pthread_mutex_lock(&ks->mu);
    if (token != atomic_load(&ks->token)) {
        /* The token was read before the feed: the feed shows at least
         * every commit the token stands for. */
        ok = catch_up(ks) == KW_OK;
        if (ok) {
            atomic_store(&ks->token, token);
            atomic_store(&ks->caught_up, monotonic_ns());
        }
    }
    pthread_mutex_unlock(&ks->mu);
    return ok;
}

kw_status kw_keysync_lookup(kw_keysync *ks, const uint8_t hash[KW_HASH_BYTES],
                            uint32_t pepper_version, kw_key *out)
{
    if (!ks || !ks->index)
        return KW_ERR_UNAVAILABLE;
    bool usable;
    if (ks->leases)
        usable = monotonic_ns() < atomic_load(&ks->deadline);
    else
        usable = token_current(ks);
    if (!usable || !atomic_load(&ks->ready)) {
        atomic_fetch_add(&ks->misses, 1);
        return KW_ERR_UNAVAILABLE;
    }
    bool found = kw_keyindex_get(ks->index, hash, pepper_version, out);
    /* The answer counts only if the lease still held after the lookup: then
     * the lookup ran while every acknowledged change was applied. */
    if ((ks->leases && monotonic_ns() >= atomic_load(&ks->deadline)) || !atomic_load(&ks->ready)) {
        atomic_fetch_add(&ks->misses, 1);
        return KW_ERR_UNAVAILABLE;
    }
    atomic_fetch_add(&ks->hits, 1);
    return found ? KW_OK : KW_ERR_NOT_FOUND;
}

bool kw_keysync_mark_used(kw_keysync *ks, const uint8_t hash[KW_HASH_BYTES],
                          uint32_t pepper_version, int64_t at)
{
    return ks && ks->index && kw_keyindex_mark_used(ks->index, hash, pepper_version, at);
}

size_t kw_keysync_take_used(kw_keysync *ks, kw_touch **out)
{
    *out = NULL;
    return ks && ks->index ? kw_keyindex_take_used(ks->index, out) : 0;
}

void kw_keysync_settle(kw_keysync *ks, int64_t seq)
{
    if (!ks || seq <= 0)
        return;
    if (!ks->leases) {
        /* Token mode needs no wait: every later lookup sees the commit.
         * Applying it now only keeps this node's figures current. */
        if (ks->index && ks->store->ops->change_token)
            token_current(ks);
        return;
    }
    /* Counted from after the commit: every lease live at the commit ends
     * within lease_ms of it, and none is granted afterwards without seq. */
    int64_t start = monotonic_ns();
    int64_t bound = start + (int64_t)ks->lease_ms * 1000000 + ks->margin_ns;
    int pause = 1;
    for (;;) {
        int behind = 1;
        if (ks->store->ops->nodes_behind(ks->store, seq, &behind) == KW_OK && behind == 0)
            return;
        int64_t left_ms = (bound - monotonic_ns()) / 1000000;
        if (left_ms <= 0)
            return;
        sleep_ms(pause < left_ms ? pause : (int)left_ms + 1);
        if (pause < 16)
            pause *= 2;
    }
}

void kw_keysync_maintain(kw_keysync *ks)
{
    if (!ks || !ks->index)
        return;
    int64_t now = unix_now(ks);
    pthread_mutex_lock(&ks->mu);
    bool due = now - ks->last_prune >= PRUNE_EVERY_S;
    if (due)
        ks->last_prune = now;
    pthread_mutex_unlock(&ks->mu);
    if (due)
        ks->store->ops->feed_prune(ks->store, now - ks->feed_retention_s);
}

void kw_keysync_stats_get(kw_keysync *ks, kw_keysync_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ks)
        return;
    int64_t now = monotonic_ns();
    out->index = ks->index != NULL;
    out->leases = ks->leases;
    out->ready = ks->index && atomic_load(&ks->ready);
    pthread_mutex_lock(&ks->mu);
    out->overflow = ks->overflow;
    pthread_mutex_unlock(&ks->mu);
    int64_t deadline = atomic_load(&ks->deadline);
    out->lease_held = ks->leases && now < deadline;
    out->lease_remaining_ms = out->lease_held ? (deadline - now) / 1000000 : 0;
    out->entries = ks->index ? kw_keyindex_count(ks->index) : 0;
    out->bytes = ks->index ? kw_keyindex_bytes(ks->index) : 0;
    out->hits = atomic_load(&ks->hits);
    out->misses = atomic_load(&ks->misses);
    out->invalidations = atomic_load(&ks->invalidations);
    out->reloads = atomic_load(&ks->reloads);
    out->renewals = atomic_load(&ks->renewals);
    out->applied = atomic_load(&ks->applied);
    out->head = atomic_load(&ks->head);
    int64_t caught_up = atomic_load(&ks->caught_up);
    out->caught_up_ms_ago = caught_up ? (now - caught_up) / 1000000 : -1;
}
