/*
 * keysync.h - keeps a node's key index (core/keyindex.h) exact, and makes
 * a change wait until every node has it.
 *
 * The index is loaded from one snapshot of the store (key_scan) and then
 * follows the store's change feed: every mutation that can change a
 * verification answer appends (position, key) in its own transaction, and
 * the node applies exactly those keys, in order. Nothing else that is
 * written (last-used times, sessions, audit entries) drops anything.
 *
 * When the index may answer depends on the store:
 *
 * - Token mode (SQLite: the store has change_token). Every lookup reads
 *   the token, a few memory loads; when it has moved since the index last
 *   caught up, the lookup first reads the feed (one indexed query, usually
 *   empty). Any commit of any process on the machine moves the token, so
 *   a lookup that starts after a commit has returned always sees it.
 *
 * - Lease mode (PostgreSQL: node_renew and friends). A feed thread wakes
 *   on each notification (LISTEN/NOTIFY) or every lease/4, applies the
 *   feed and renews the node's lease with the position it has applied.
 *   The index answers only while the lease holds by this node's monotonic
 *   clock; otherwise the service asks the store. A writer, after its
 *   commit, waits (kw_keysync_settle) until every node with a live lease
 *   has applied its change, or until any lease that was live at its
 *   commit must have ended: a lease is never granted to a node that is
 *   behind the feed head (the grant holds the head row in share mode, so
 *   no change commits in between). A node that is frozen, slow or cut off
 *   from the database therefore delays a change by at most one lease; it
 *   never answers from an index that misses an acknowledged change.
 *
 * docs/cluster.md describes the protocol, its failure cases and bounds.
 */
#ifndef KW_KEYSYNC_H
#define KW_KEYSYNC_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE)
#error "core/keysync.h is in the service layer, which core and store must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "store/store.h"

typedef struct kw_keysync kw_keysync;

typedef struct {
    bool index;             /* keep the index (a serving node); false: settle only */
    size_t max_keys;        /* past this many keys the index stops answering */
    int lease_ms;           /* lease mode: the lease each renewal asks for */
    int feed_retention_s;   /* feed entries older than this are pruned */
    int64_t (*clock)(void); /* Unix seconds; NULL: the system clock */
} kw_keysync_config;

/* What /metrics shows of the index and its feed. */
typedef struct {
    bool index;      /* an index is kept */
    bool leases;     /* lease mode (else token mode) */
    bool ready;      /* the index holds every key (not loading, not past max_keys) */
    bool overflow;   /* the store held more than max_keys keys: the store answers */
    bool lease_held; /* lease mode: the lease holds now */
    int64_t lease_remaining_ms;
    size_t entries;
    size_t bytes;
    uint64_t hits;            /* lookups the index answered (found or not) */
    uint64_t misses;          /* lookups left to the store */
    uint64_t invalidations;   /* changes applied to the index */
    uint64_t reloads;         /* full loads from a snapshot */
    uint64_t renewals;        /* lease mode: leases granted */
    int64_t applied;          /* the feed position the index reflects */
    int64_t head;             /* the newest feed position this node has seen */
    int64_t caught_up_ms_ago; /* since the index last was known current */
} kw_keysync_stats;

/*
 * Loads the index (when cfg->index) and, in lease mode, starts the feed
 * thread and takes the first lease. The store must outlive the result.
 * On success *out is owned by the caller (kw_keysync_close).
 */
kw_status kw_keysync_open(kw_store *store, const kw_keysync_config *cfg, kw_keysync **out,
                          kw_error *err);

/* Stops the feed thread, gives the lease back and frees the index. */
void kw_keysync_close(kw_keysync *ks);

/*
 * Looks (hash, pepper_version) up: KW_OK with *out filled when the index
 * holds the key, KW_ERR_NOT_FOUND when no key has that hash, and
 * KW_ERR_UNAVAILABLE when the index may not answer now (none kept, still
 * loading, lease lapsed, feed unreadable): the caller asks the store.
 */
kw_status kw_keysync_lookup(kw_keysync *ks, const uint8_t hash[KW_HASH_BYTES],
                            uint32_t pepper_version, kw_key *out);

/*
 * Last-used times of keys the index answered for: noted in their entries
 * (false when the index does not hold the key: the caller notes it
 * elsewhere), taken by the service's flush timer.
 */
bool kw_keysync_mark_used(kw_keysync *ks, const uint8_t hash[KW_HASH_BYTES],
                          uint32_t pepper_version, int64_t at);
size_t kw_keysync_take_used(kw_keysync *ks, kw_touch **out);

/*
 * Called after a mutation committed change `seq`: returns once no node can
 * answer from an index that lacks it (lease mode; at once in token mode).
 * Waits at most one lease and a margin, even with the database down.
 */
void kw_keysync_settle(kw_keysync *ks, int64_t seq);

/* Periodic upkeep (the service's flush timer): prunes the feed now and then. */
void kw_keysync_maintain(kw_keysync *ks);

void kw_keysync_stats_get(kw_keysync *ks, kw_keysync_stats *out);

#endif
