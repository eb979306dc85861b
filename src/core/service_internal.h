/*
 * service_internal.h - the key service's state, shared by service.c
 * (lifecycle, accounts, keys) and service_access.c (root keys, users,
 * audit). Not for use outside src/core.
 */
#ifndef KW_SERVICE_INTERNAL_H
#define KW_SERVICE_INTERNAL_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE)
#error "core/service_internal.h is in the service layer, which core and store must not include"
#endif

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/keysync.h"
#include "core/lastused.h"
#include "core/pepper.h"
#include "core/service.h"
#include "store/store.h"

struct kw_service {
    kw_store *store;
    kw_pepper *pepper;
    char prefix[KW_PREFIX_MAX + 1];
    int max_keys;
    int interval_ms;
    int session_idle_s;
    int session_absolute_s;
    int audit_retention_days;
    int64_t audit_pruned_at; /* when the flusher last pruned the audit log; 0: never */
    int schema_version;
    int64_t (*clock)(void);

    kw_lastused *lastused;
    kw_keysync *sync; /* the verification index and the change feed */
    atomic_uint_fast64_t store_lookups;
    pthread_t flusher;
    bool flusher_running;
    bool stopping;
    pthread_mutex_t mu; /* guards stopping, with cv */
    pthread_cond_t cv;
};

/*
 * Writes a fresh key of `environment` into secret, its masked form into
 * masked and its hash under the current pepper into hash; returns the
 * pepper version the hash was made with. The caller wipes secret.
 */
uint32_t kw_service_mint(const kw_service *svc, const char *environment, char secret[KW_KEY_BUFSZ],
                         char masked[KW_MASKED_BUFSZ], uint8_t hash[KW_HASH_BYTES]);

/*
 * The audit record of a change made now on this thread: at, actor and
 * action, and the client address kw_service_set_source_ip gave this
 * thread (NULL when none).
 */
kw_audit kw_service_audit(int64_t at, const char *actor, const char *action);

/* Maps a store failure to a caller-safe sentence (no internals). */
kw_status kw_service_store_error(kw_status st, const char *what, kw_error *err);

#endif
