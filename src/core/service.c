/*
 * service.c - the key service: lifecycle, accounts and keys.
 */
#include "core/service_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/ids.h"
#include "core/keyfmt.h"
#include "core/timefmt.h"
#include "core/validate.h"

void kw_config_defaults(kw_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->data_dir = "./var";
    cfg->key_prefix = "kw";
    cfg->max_keys_per_account = 25;
    cfg->last_used_interval_ms = 5000;
    cfg->verify_cache_entries = 4194304;
    cfg->node_lease_ms = 2000;
    cfg->session_idle_s = 1800;
    cfg->session_absolute_s = 43200;
}

kw_status kw_config_resolve_paths(const kw_config *cfg, kw_config_paths *paths, kw_error *err)
{
    const char *dir = cfg->data_dir ? cfg->data_dir : "";
    int n = cfg->store_url
                ? snprintf(paths->store_url, sizeof paths->store_url, "%s", cfg->store_url)
                : snprintf(paths->store_url, sizeof paths->store_url, "sqlite:%s/keyward.db", dir);
    int p = cfg->pepper_file
                ? snprintf(paths->pepper_file, sizeof paths->pepper_file, "%s", cfg->pepper_file)
            : cfg->pepper
                ? snprintf(paths->pepper_file, sizeof paths->pepper_file, "%s", "")
                : snprintf(paths->pepper_file, sizeof paths->pepper_file, "%s/pepper", dir);
    if (n < 0 || (size_t)n >= sizeof paths->store_url || p < 0 ||
        (size_t)p >= sizeof paths->pepper_file)
        return kw_error_set(err, KW_ERR_INVALID,
                            "the path of the database or of the pepper file is too long.");
    return KW_OK;
}

/* The client address of the calling thread's requests (kw_service_set_source_ip); "" none. */
static _Thread_local char thread_source_ip[KW_SOURCE_IP_BUFSZ];

/* An address as a client address is written: hex digits, dots, colons, a zone. */
static bool source_ip_ok(const char *ip, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)ip[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '.' || c == ':' || c == '%' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* Anything that cannot be an address is dropped rather than cut or stored. */
void kw_service_set_source_ip(const char *ip)
{
    size_t n = ip ? strlen(ip) : 0;
    if (n == 0 || n >= sizeof thread_source_ip || !source_ip_ok(ip, n)) {
        thread_source_ip[0] = '\0';
        return;
    }
    memcpy(thread_source_ip, ip, n + 1);
}

kw_audit kw_service_audit(int64_t at, const char *actor, const char *action)
{
    return (kw_audit){.at = at,
                      .actor = actor,
                      .action = action,
                      .source_ip = thread_source_ip[0] ? thread_source_ip : NULL};
}

int64_t kw_service_now(const kw_service *svc)
{
    return svc->clock ? svc->clock() : kw_time_now();
}

kw_status kw_service_store_error(kw_status st, const char *what, kw_error *err)
{
    if (st == KW_ERR_UNAVAILABLE)
        return kw_error_set(err, st, "The store is unavailable (%s); nothing was changed.", what);
    return kw_error_set(err, KW_ERR_INTERNAL, "An internal error occurred (%s).", what);
}

/* Writes pending last-used times; on failure puts them back for next time. */
kw_status kw_service_flush_last_used(kw_service *svc)
{
    kw_touch *items, *indexed;
    size_t n = kw_lastused_take(svc->lastused, &items);
    size_t m = kw_keysync_take_used(svc->sync, &indexed);
    if (m > 0) {
        kw_touch *all = realloc(items, (n + m) * sizeof *all);
        if (all) {
            memcpy(all + n, indexed, m * sizeof *indexed);
            items = all;
            n += m;
        } else {
            /* Kept for the next flush rather than lost. */
            for (size_t i = 0; i < m; i++)
                kw_lastused_note(svc->lastused, indexed[i].id, indexed[i].at);
        }
    }
    free(indexed);
    if (n == 0) {
        free(items);
        return KW_OK;
    }
    kw_status st = svc->store->ops->touch(svc->store, items, n);
    if (st != KW_OK)
        for (size_t i = 0; i < n; i++)
            kw_lastused_note(svc->lastused, items[i].id, items[i].at);
    free(items);
    return st;
}

#define AUDIT_PRUNE_EVERY_S 3600
#define DAY_S               86400

/*
 * Hourly, with the feed's prune: removes audit entries older than the
 * retention (audit_retention_days; 0 keeps everything). Only the flusher
 * thread calls it. A failure is tried again at the next hour.
 */
static void prune_audit_when_due(kw_service *svc)
{
    if (svc->audit_retention_days <= 0)
        return;
    int64_t now = kw_service_now(svc);
    if (svc->audit_pruned_at != 0 && now - svc->audit_pruned_at < AUDIT_PRUNE_EVERY_S)
        return;
    svc->audit_pruned_at = now;
    int64_t removed = 0;
    kw_service_audit_prune(svc, now - (int64_t)svc->audit_retention_days * DAY_S, &removed, NULL);
}

static void *on_flush_timer(void *arg)
{
    kw_service *svc = arg;
    pthread_mutex_lock(&svc->mu);
    while (!svc->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        long ns = until.tv_nsec + (long)(svc->interval_ms % 1000) * 1000000L;
        until.tv_sec += svc->interval_ms / 1000 + ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        while (!svc->stopping && pthread_cond_timedwait(&svc->cv, &svc->mu, &until) != ETIMEDOUT)
            ;
        if (svc->stopping)
            break;
        pthread_mutex_unlock(&svc->mu);
        kw_service_flush_last_used(svc);
        kw_keysync_maintain(svc->sync);
        prune_audit_when_due(svc);
        pthread_mutex_lock(&svc->mu);
    }
    pthread_mutex_unlock(&svc->mu);
    return NULL;
}

static kw_status check_config(const kw_config *cfg, kw_error *err)
{
    if (!kw_keyfmt_prefix_valid(cfg->key_prefix))
        return kw_error_set(err, KW_ERR_INVALID,
                            "key prefix must be a lowercase label of 2 to 10 letters or digits, "
                            "starting with a letter.");
    if (cfg->max_keys_per_account < 1 || cfg->max_keys_per_account > 100000)
        return kw_error_set(err, KW_ERR_INVALID,
                            "max keys per account must be between 1 and 100000.");
    if (cfg->last_used_interval_ms < 10 || cfg->last_used_interval_ms > 3600000)
        return kw_error_set(err, KW_ERR_INVALID,
                            "last-used interval must be between 10 ms and one hour.");
    if (cfg->node_lease_ms < 100 || cfg->node_lease_ms > 60000)
        return kw_error_set(err, KW_ERR_INVALID,
                            "node lease must be between 100 ms and one minute.");
    if (cfg->audit_retention_days < 0 || cfg->audit_retention_days > KW_AUDIT_RETENTION_MAX_DAYS)
        return kw_error_set(err, KW_ERR_INVALID,
                            "audit retention must be between 0 (keep everything) and %d days.",
                            KW_AUDIT_RETENTION_MAX_DAYS);
    if (!cfg->data_dir && (!cfg->store_url || (!cfg->pepper_file && !cfg->pepper)))
        return kw_error_set(err, KW_ERR_INVALID, "a data directory is required.");
    return KW_OK;
}

/* Creates the data directory (mode 0700) if it is missing. */
static kw_status ensure_data_dir(const char *dir, kw_error *err)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return KW_OK;
    return kw_error_set(err, KW_ERR_UNAVAILABLE, "cannot create data directory %s: %s.", dir,
                        strerror(errno));
}

/*
 * Refuses a pepper that differs from the one the database was made with
 * (same version, other bytes): every key would fail to verify, and new keys
 * would be hashed under a secret the other nodes do not have.
 */
static kw_status check_pepper(kw_service *svc, kw_error *err)
{
    static const char label[] = "keyward pepper check v1";
    for (size_t i = 0; i < kw_pepper_count(svc->pepper); i++) {
        uint8_t check[KW_HASH_BYTES];
        uint32_t version = kw_pepper_version(svc->pepper, i);
        kw_pepper_hash(svc->pepper, i, label, sizeof label - 1, check);
        kw_status st = svc->store->ops->pepper_check(svc->store, version, check);
        if (st == KW_ERR_CONFLICT)
            return kw_error_set(err, KW_ERR_INVALID,
                                "The pepper (version %u) is not the one this database was "
                                "created with; refusing to start. Give keyward the original "
                                "pepper file or KEYWARD_PEPPER.",
                                (unsigned)version);
        if (st != KW_OK)
            return kw_service_store_error(st, "checking the pepper", err);
    }
    return KW_OK;
}

/* *empty: the store holds no account and no root key, so nothing hashed with a pepper. */
static kw_status store_is_empty(kw_store *store, bool *empty, kw_error *err)
{
    kw_account_list accounts = {0};
    kw_root_key_list root_keys = {0};
    kw_status st = store->ops->account_list(store, &accounts);
    if (st == KW_OK)
        st = store->ops->root_key_list(store, &root_keys);
    *empty = accounts.count == 0 && root_keys.count == 0;
    kw_account_list_free(&accounts);
    kw_root_key_list_free(&root_keys);
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "reading the store", err);
}

static kw_status open_parts(kw_service *svc, const kw_config *cfg, kw_error *err)
{
    kw_config_paths paths;
    kw_status st = kw_config_resolve_paths(cfg, &paths, err);
    bool need_dir = !cfg->store_url || (!cfg->pepper && !cfg->pepper_file);
    if (st == KW_OK && need_dir)
        st = ensure_data_dir(cfg->data_dir, err);
    if (st != KW_OK)
        return st;

    st = kw_store_open(paths.store_url, &svc->store, err);
    if (st == KW_OK)
        st = svc->store->ops->migrate(svc->store, &svc->schema_version, err);
    if (st != KW_OK)
        return st;

    /* Only the default file is created, and only for a store that holds
     * nothing hashed yet: a path the operator named must exist, or nodes
     * meant to share a pepper would each invent their own; and beside a
     * restored or copied database a new pepper would verify no key. */
    bool create = cfg->pepper_file == NULL && !cfg->pepper;
    if (create && access(paths.pepper_file, F_OK) != 0 && errno == ENOENT) {
        bool empty;
        st = store_is_empty(svc->store, &empty, err);
        if (st != KW_OK)
            return st;
        if (!empty)
            return kw_error_set(err, KW_ERR_INVALID,
                                "the pepper file %s is missing, and the database already holds "
                                "keys hashed with a pepper; put back the pepper file it was made "
                                "with (after a restore: the one its backup was made with). A new "
                                "pepper is created only for an empty database.",
                                paths.pepper_file);
    }
    st = kw_pepper_load(paths.pepper_file, cfg->pepper, create, &svc->pepper, err);
    return st == KW_OK ? check_pepper(svc, err) : st;
}

kw_status kw_service_open(const kw_config *cfg, kw_service **out, kw_error *err)
{
    *out = NULL;
    kw_error_clear(err);
    if (sodium_init() < 0)
        return kw_error_set(err, KW_ERR_INTERNAL, "libsodium could not be initialised.");
    kw_status st = check_config(cfg, err);
    if (st != KW_OK)
        return st;
    kw_service *svc = calloc(1, sizeof *svc);
    if (!svc)
        return kw_error_set(err, KW_ERR_INTERNAL, "out of memory.");
    snprintf(svc->prefix, sizeof svc->prefix, "%s", cfg->key_prefix);
    svc->max_keys = cfg->max_keys_per_account;
    svc->interval_ms = cfg->last_used_interval_ms;
    svc->session_idle_s = cfg->session_idle_s > 0 ? cfg->session_idle_s : 1800;
    svc->session_absolute_s = cfg->session_absolute_s > 0 ? cfg->session_absolute_s : 43200;
    svc->audit_retention_days = cfg->audit_retention_days;
    svc->clock = cfg->clock;
    pthread_mutex_init(&svc->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&svc->cv, &ca);
    pthread_condattr_destroy(&ca);

    svc->lastused = kw_lastused_new();
    st = svc->lastused ? open_parts(svc, cfg, err)
                       : kw_error_set(err, KW_ERR_INTERNAL, "out of memory.");
    if (st == KW_OK) {
        kw_keysync_config sc = {
            .index = cfg->node && cfg->verify_cache_entries > 0,
            .max_keys = cfg->verify_cache_entries > 0 ? (size_t)cfg->verify_cache_entries : 0,
            .lease_ms = cfg->node_lease_ms,
            .clock = cfg->clock,
        };
        st = kw_keysync_open(svc->store, &sc, &svc->sync, err);
    }
    if (st == KW_OK) {
        if (pthread_create(&svc->flusher, NULL, on_flush_timer, svc) == 0)
            svc->flusher_running = true;
        else
            st = kw_error_set(err, KW_ERR_INTERNAL, "cannot start the last-used writer.");
    }
    if (st != KW_OK) {
        kw_service_close(svc);
        return st;
    }
    *out = svc;
    return KW_OK;
}

void kw_service_close(kw_service *svc)
{
    if (!svc)
        return;
    if (svc->flusher_running) {
        pthread_mutex_lock(&svc->mu);
        svc->stopping = true;
        pthread_cond_signal(&svc->cv);
        pthread_mutex_unlock(&svc->mu);
        pthread_join(svc->flusher, NULL);
    }
    if (svc->store && svc->lastused)
        kw_service_flush_last_used(svc);
    kw_keysync_close(svc->sync);
    if (svc->store)
        svc->store->ops->close(svc->store);
    kw_lastused_free(svc->lastused);
    kw_pepper_free(svc->pepper);
    pthread_cond_destroy(&svc->cv);
    pthread_mutex_destroy(&svc->mu);
    free(svc);
}

void kw_service_index_stats(kw_service *svc, kw_index_stats *out)
{
    kw_keysync_stats ks;
    kw_keysync_stats_get(svc->sync, &ks);
    *out = (kw_index_stats){
        .index = ks.index,
        .leases = ks.leases,
        .ready = ks.ready,
        .overflow = ks.overflow,
        .lease_held = ks.lease_held,
        .lease_remaining_ms = ks.lease_remaining_ms,
        .entries = ks.entries,
        .bytes = ks.bytes,
        .hits = ks.hits,
        .misses = ks.misses,
        .store_lookups = atomic_load(&svc->store_lookups),
        .invalidations = ks.invalidations,
        .reloads = ks.reloads,
        .renewals = ks.renewals,
        .applied = ks.applied,
        .head = ks.head,
        .caught_up_ms_ago = ks.caught_up_ms_ago,
    };
}

int kw_service_schema_version(const kw_service *svc)
{
    return svc->schema_version;
}

kw_status kw_service_ping(kw_service *svc)
{
    return svc->store->ops->ping(svc->store);
}

uint32_t kw_service_mint(const kw_service *svc, const char *environment, char secret[KW_KEY_BUFSZ],
                         char masked[KW_MASKED_BUFSZ], uint8_t hash[KW_HASH_BYTES])
{
    kw_keyfmt_generate(svc->prefix, environment, secret);
    size_t len = strlen(secret);
    kw_keyfmt_mask(secret, len, masked);
    kw_pepper_hash(svc->pepper, 0, secret, len, hash);
    return kw_pepper_version(svc->pepper, 0);
}

/* ---- accounts ---- */

kw_status kw_service_account_create(kw_service *svc, const char *actor, const char *name,
                                    kw_account *out, kw_error *err)
{
    memset(out, 0, sizeof *out);
    kw_status st = kw_validate_name(name, "name", out->name, err);
    if (st != KW_OK)
        return st;
    kw_id_new("acc", out->id);
    out->created_at = kw_service_now(svc);
    out->key_limit = svc->max_keys;
    kw_audit au = kw_service_audit(out->created_at, actor, "account.create");
    st = svc->store->ops->account_insert(svc->store, out, &au);
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "creating the account", err);
}

kw_status kw_service_account_get(kw_service *svc, const char *account_id, kw_account *out,
                                 kw_error *err)
{
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    if (st != KW_OK)
        return st;
    st = svc->store->ops->account_get(svc->store, account_id, out);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, st, "Account not found.");
    if (st != KW_OK)
        return kw_service_store_error(st, "reading the account", err);
    out->key_limit = svc->max_keys;
    return KW_OK;
}

kw_status kw_service_account_list(kw_service *svc, kw_account_list *out, kw_error *err)
{
    kw_status st = svc->store->ops->account_list(svc->store, out);
    if (st != KW_OK)
        return kw_service_store_error(st, "listing accounts", err);
    for (size_t i = 0; i < out->count; i++)
        out->items[i].key_limit = svc->max_keys;
    return KW_OK;
}

/* ---- keys ---- */

/* KW_OK when a new key may expire at expires_at (KW_TIME_NONE: never). */
static kw_status check_expiry(int64_t expires_at, int64_t now, kw_error *err)
{
    if (expires_at == KW_TIME_NONE)
        return KW_OK;
    if (expires_at > KW_TIME_MAX)
        return kw_error_set(err, KW_ERR_INVALID,
                            "expires_at must be no later than 9999-12-31T23:59:59Z.");
    if (expires_at <= now) {
        char when[KW_TIME_BUFSZ];
        kw_time_format(expires_at, when);
        return kw_error_set(err, KW_ERR_INVALID,
                            "expires_at must be in the future; %s has already passed.", when);
    }
    return KW_OK;
}

/* Checks metadata (NULL or "": none) into out, compact. */
static kw_status check_metadata(const char *metadata, char out[KW_METADATA_BUFSZ], kw_error *err)
{
    out[0] = '\0';
    return metadata && metadata[0] ? kw_validate_metadata(metadata, out, err) : KW_OK;
}

kw_status kw_service_key_create(kw_service *svc, const char *actor, const char *account_id,
                                const char *name, const char *environment, int64_t expires_at,
                                kw_key *out, char secret[KW_KEY_BUFSZ], kw_error *err)
{
    kw_key_spec spec = {.name = name, .environment = environment, .expires_at = expires_at};
    return kw_service_key_create_spec(svc, actor, account_id, &spec, out, secret, err);
}

kw_status kw_service_key_create_spec(kw_service *svc, const char *actor, const char *account_id,
                                     const kw_key_spec *spec, kw_key *out,
                                     char secret[KW_KEY_BUFSZ], kw_error *err)
{
    memset(out, 0, sizeof *out);
    secret[0] = '\0';
    const char *environment = spec->environment ? spec->environment : "production";
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    if (st == KW_OK)
        st = kw_validate_name(spec->name, "name", out->name, err);
    if (st == KW_OK)
        st = kw_validate_environment(environment, err);
    if (st == KW_OK)
        st = check_metadata(spec->metadata, out->metadata, err);
    if (st != KW_OK)
        return st;
    int64_t now = kw_service_now(svc);
    st = check_expiry(spec->expires_at, now, err);
    if (st != KW_OK)
        return st;

    snprintf(out->account_id, sizeof out->account_id, "%s", account_id);
    snprintf(out->environment, sizeof out->environment, "%s", environment);
    out->created_at = now;
    out->last_used_at = KW_TIME_NONE;
    out->expires_at = spec->expires_at;
    out->enabled = true;
    kw_audit au = kw_service_audit(now, actor, "key.create");
    int64_t seq = 0;
    /* A hash collision is astronomically unlikely; one retry with a fresh
     * secret turns even that into a success. */
    for (int attempt = 0; attempt < 2; attempt++) {
        uint8_t hash[KW_HASH_BYTES];
        uint32_t version = kw_service_mint(svc, environment, secret, out->masked, hash);
        kw_id_new("key", out->id);
        st = svc->store->ops->key_insert(svc->store, out, hash, version, svc->max_keys, now, &au,
                                         &seq);
        if (st != KW_ERR_CONFLICT)
            break;
    }
    if (st == KW_OK) {
        /* The key verifies on every node once this returns. */
        kw_keysync_settle(svc->sync, seq);
        return KW_OK;
    }
    sodium_memzero(secret, KW_KEY_BUFSZ);
    switch (st) {
    case KW_ERR_LIMIT:
        return kw_error_set(err, st,
                            "This account already has %d active keys, the maximum; delete a key "
                            "before creating another.",
                            svc->max_keys);
    case KW_ERR_NOT_FOUND:
        return kw_error_set(err, st, "Account not found.");
    default:
        return kw_service_store_error(st, "creating the key", err);
    }
}

kw_status kw_service_key_list(kw_service *svc, const char *account_id, kw_key_list *out,
                              kw_error *err)
{
    memset(out, 0, sizeof *out);
    kw_account acc;
    kw_status st = kw_service_account_get(svc, account_id, &acc, err);
    if (st != KW_OK)
        return st;
    st = svc->store->ops->key_list(svc->store, account_id, kw_service_now(svc), out);
    if (st != KW_OK)
        return kw_service_store_error(st, "listing keys", err);
    out->key_limit = svc->max_keys;
    return KW_OK;
}

kw_status kw_service_key_get(kw_service *svc, const char *account_id, const char *key_id,
                             kw_key *out, kw_error *err)
{
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    if (st == KW_OK)
        st = kw_validate_id(key_id, "key", "key id", err);
    if (st != KW_OK)
        return st;
    st = svc->store->ops->key_get(svc->store, account_id, key_id, out);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, st, "Key not found.");
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "reading the key", err);
}

kw_status kw_service_key_delete(kw_service *svc, const char *actor, const char *account_id,
                                const char *key_id, kw_error *err)
{
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    if (st == KW_OK)
        st = kw_validate_id(key_id, "key", "key id", err);
    if (st != KW_OK)
        return st;
    kw_audit au = kw_service_audit(kw_service_now(svc), actor, "key.delete");
    int64_t seq = 0;
    st = svc->store->ops->key_delete(svc->store, account_id, key_id, &au, &seq);
    /* No node answers from memory without the delete once this returns. */
    if (st == KW_OK)
        kw_keysync_settle(svc->sync, seq);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, st, "Key not found.");
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "deleting the key", err);
}

/* ---- the key lifecycle ---- */

/* KW_OK when account_id and key_id are ids of their kinds. */
static kw_status check_key_ids(const char *account_id, const char *key_id, kw_error *err)
{
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    return st == KW_OK ? kw_validate_id(key_id, "key", "key id", err) : st;
}

/* The audit action of a patch: the one member it sets, or key.update for several. */
static const char *patch_action(const kw_key_patch *p)
{
    int set = p->has_name + p->has_enabled + p->has_expires_at + p->has_metadata;
    if (set > 1)
        return "key.update";
    if (p->has_name)
        return "key.rename";
    if (p->has_enabled)
        return p->enabled ? "key.enable" : "key.disable";
    return p->has_expires_at ? "key.expiry" : "key.metadata";
}

/* The whole patch checked into u (its strings in name and metadata) before anything is written. */
static kw_status check_patch(const kw_key_patch *p, int64_t now, kw_key_update *u,
                             char name[KW_NAME_BUFSZ], char metadata[KW_METADATA_BUFSZ],
                             kw_error *err)
{
    *u = (kw_key_update){.enabled = -1};
    if (!p->has_name && !p->has_enabled && !p->has_expires_at && !p->has_metadata)
        return kw_error_set(err, KW_ERR_INVALID,
                            "nothing to change: give name, enabled, expires_at or metadata.");
    kw_status st = KW_OK;
    if (p->has_name && (st = kw_validate_name(p->name, "name", name, err)) == KW_OK)
        u->name = name;
    if (st == KW_OK && p->has_expires_at && (st = check_expiry(p->expires_at, now, err)) == KW_OK) {
        u->set_expires_at = true;
        u->expires_at = p->expires_at;
    }
    if (st == KW_OK && p->has_metadata &&
        (st = check_metadata(p->metadata, metadata, err)) == KW_OK) {
        u->set_metadata = true;
        u->metadata = metadata;
    }
    if (p->has_enabled)
        u->enabled = p->enabled ? 1 : 0;
    return st;
}

kw_status kw_service_key_update(kw_service *svc, const char *actor, const char *account_id,
                                const char *key_id, const kw_key_patch *patch, kw_key *out,
                                kw_error *err)
{
    memset(out, 0, sizeof *out);
    kw_status st = check_key_ids(account_id, key_id, err);
    if (st != KW_OK)
        return st;
    int64_t now = kw_service_now(svc);
    char name[KW_NAME_BUFSZ], metadata[KW_METADATA_BUFSZ];
    kw_key_update u;
    st = check_patch(patch, now, &u, name, metadata, err);
    if (st != KW_OK)
        return st;
    kw_audit au = kw_service_audit(now, actor, patch_action(patch));
    int64_t seq = 0;
    st = svc->store->ops->key_update(svc->store, account_id, key_id, &u, &au, out, &seq);
    if (st == KW_OK) {
        /* Every node answers with the change once this returns. */
        kw_keysync_settle(svc->sync, seq);
        return KW_OK;
    }
    memset(out, 0, sizeof *out);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, st, "Key not found.");
    return kw_service_store_error(st, "changing the key", err);
}

kw_status kw_service_key_roll(kw_service *svc, const char *actor, const char *account_id,
                              const char *key_id, int64_t grace_s, kw_key *new_key,
                              char secret[KW_KEY_BUFSZ], kw_key *previous, kw_error *err)
{
    memset(new_key, 0, sizeof *new_key);
    memset(previous, 0, sizeof *previous);
    secret[0] = '\0';
    kw_status st = check_key_ids(account_id, key_id, err);
    if (st != KW_OK)
        return st;
    if (grace_s < 0 || grace_s > KW_ROLL_GRACE_MAX_S)
        return kw_error_set(err, KW_ERR_INVALID,
                            "grace period must be between 0 and %d seconds (30 days).",
                            KW_ROLL_GRACE_MAX_S);
    /* The environment is part of the secret; the store checks the rest
     * again under its lock, and takes name and metadata from the row. */
    kw_key old;
    st = kw_service_key_get(svc, account_id, key_id, &old, err);
    if (st != KW_OK)
        return st;
    int64_t now = kw_service_now(svc);
    kw_key k = {.created_at = now, .last_used_at = KW_TIME_NONE, .enabled = true};
    kw_audit au = kw_service_audit(now, actor, "key.roll");
    int64_t seq = 0;
    for (int attempt = 0; attempt < 2; attempt++) { /* see kw_service_key_create_spec */
        uint8_t hash[KW_HASH_BYTES];
        uint32_t version = kw_service_mint(svc, old.environment, secret, k.masked, hash);
        kw_id_new("key", k.id);
        st = svc->store->ops->key_roll(svc->store, account_id, key_id, &k, hash, version, now,
                                       grace_s, &au, new_key, previous, &seq);
        if (st != KW_ERR_CONFLICT)
            break;
    }
    if (st == KW_OK) {
        kw_keysync_settle(svc->sync, seq);
        return KW_OK;
    }
    sodium_memzero(secret, KW_KEY_BUFSZ);
    memset(new_key, 0, sizeof *new_key);
    memset(previous, 0, sizeof *previous);
    switch (st) {
    case KW_ERR_NOT_FOUND:
        return kw_error_set(err, st, "Key not found.");
    case KW_ERR_KEY_STATE:
        return kw_error_set(err, st,
                            "Only an enabled, unexpired key that was not rolled already can be "
                            "rolled.");
    default:
        return kw_service_store_error(st, "rolling the key", err);
    }
}

kw_status kw_service_key_revoke_all(kw_service *svc, const char *actor, const char *account_id,
                                    const char *environment, int *revoked, kw_error *err)
{
    *revoked = 0;
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    if (st == KW_OK && environment)
        st = kw_validate_environment(environment, err);
    if (st != KW_OK)
        return st;
    kw_audit au = kw_service_audit(kw_service_now(svc), actor, "key.revoke");
    int64_t seq = 0;
    st = svc->store->ops->key_revoke(svc->store, account_id, environment, &au, revoked, &seq);
    /* No node answers from memory with any of them once this returns. */
    if (st == KW_OK && seq > 0)
        kw_keysync_settle(svc->sync, seq);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, st, "Account not found.");
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "revoking keys", err);
}

kw_status kw_service_key_verify(kw_service *svc, const char *key, size_t len,
                                const char *required_env, kw_verify_result *out, kw_error *err)
{
    memset(out, 0, sizeof *out);
    out->code = KW_VERIFY_MALFORMED;
    if (required_env) {
        kw_status st = kw_validate_environment(required_env, err);
        if (st != KW_OK)
            return st;
    }
    kw_keyfmt_parts parts;
    if (!kw_keyfmt_parse(key, len, svc->prefix, &parts))
        return KW_OK;
    out->code = KW_VERIFY_NOT_FOUND;
    /* A root key is never an account's key: no need to look it up. */
    if (parts.environment_len == sizeof KW_ROOT_ENVIRONMENT - 1 &&
        memcmp(parts.environment, KW_ROOT_ENVIRONMENT, parts.environment_len) == 0)
        return KW_OK;
    /* The current pepper first; older versions only for keys made before a
     * rotation, so the common case costs one HMAC and one lookup in memory
     * (core/keysync.h), or in the store when memory may not answer. */
    int64_t now = kw_service_now(svc);
    kw_status st = KW_ERR_NOT_FOUND;
    uint8_t found_hash[KW_HASH_BYTES];
    uint32_t found_version = 0;
    bool from_index = false;
    for (size_t i = 0; i < kw_pepper_count(svc->pepper) && st == KW_ERR_NOT_FOUND; i++) {
        uint8_t hash[KW_HASH_BYTES];
        uint32_t version = kw_pepper_version(svc->pepper, i);
        kw_pepper_hash(svc->pepper, i, key, len, hash);
        st = kw_keysync_lookup(svc->sync, hash, version, &out->key);
        if (st == KW_OK) {
            memcpy(found_hash, hash, sizeof found_hash);
            found_version = version;
            from_index = true;
        } else if (st == KW_ERR_UNAVAILABLE) {
            atomic_fetch_add(&svc->store_lookups, 1);
            st = svc->store->ops->key_find(svc->store, hash, version, &out->key);
        }
    }
    if (st == KW_ERR_NOT_FOUND) {
        memset(&out->key, 0, sizeof out->key);
        return KW_OK;
    }
    if (st != KW_OK) {
        memset(&out->key, 0, sizeof out->key);
        return kw_service_store_error(st, "verifying the key", err);
    }
    if (required_env && strcmp(required_env, out->key.environment) != 0)
        out->code = KW_VERIFY_ENVIRONMENT_MISMATCH;
    else if (!kw_key_active(&out->key, now))
        out->code = KW_VERIFY_EXPIRED;
    else if (!out->key.enabled)
        out->code = KW_VERIFY_DISABLED;
    else
        out->code = KW_VERIFY_VALID;
    if (out->code != KW_VERIFY_VALID) {
        memset(&out->key, 0, sizeof out->key);
        return KW_OK;
    }
    /* A key the index answered for keeps its last-used time in its entry,
     * which the lookup has just read; the others go to the table. */
    if (!from_index || !kw_keysync_mark_used(svc->sync, found_hash, found_version, now))
        kw_lastused_note(svc->lastused, out->key.id, now);
    return KW_OK;
}
