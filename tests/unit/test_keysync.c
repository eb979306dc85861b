/*
 * Verification from memory, with two nodes (two services) on one store:
 * repeated and forged keys never reach the store, a create or delete on
 * one node is answered by the other from memory on the very next call
 * (and so are a disable, a metadata change, a roll and a revoke),
 * unrelated writes drop nothing, a pruned feed forces a reload, a store
 * with more keys than the index may hold is answered by the store, and (on
 * PostgreSQL) a change waits for a silent node's lease, and no longer.
 * Runs on SQLite (token mode) and again on PostgreSQL (lease mode).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "core/keyfmt.h"
#include "core/service.h"
#include "core/service_internal.h" /* white box: the store, to prune and to fake a node */
#include "testutil.h"

typedef struct {
    char *dir;
    kw_service *a;
    kw_service *b;
    kw_account acc;
    kw_account other;
} fixture;

static kw_service *open_node(const char *dir, int max_keys)
{
    kw_config cfg;
    tu_config(&cfg, dir);
    cfg.node = true;
    cfg.verify_cache_entries = max_keys;
    kw_service *svc = NULL;
    kw_error err;
    if (kw_service_open(&cfg, &svc, &err) != KW_OK) {
        fprintf(stderr, "kw_service_open: %s\n", err.message);
        return NULL;
    }
    return svc;
}

static int setup_nodes(void **state, int max_keys)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    kw_error err;
    f->a = open_node(f->dir, max_keys);
    f->b = f->a ? open_node(f->dir, max_keys) : NULL;
    if (!f->b || kw_service_account_create(f->a, "test", "Acme", &f->acc, &err) != KW_OK ||
        kw_service_account_create(f->a, "test", "Other", &f->other, &err) != KW_OK)
        return -1;
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_nodes(state, 4194304);
}

static int setup_small(void **state)
{
    return setup_nodes(state, 5);
}

static int teardown(void **state)
{
    fixture *f = *state;
    kw_service_close(f->a);
    kw_service_close(f->b);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static kw_index_stats stats(kw_service *svc)
{
    kw_index_stats s;
    kw_service_index_stats(svc, &s);
    return s;
}

/* On PostgreSQL a node answers from memory once it holds its first lease. */
static void wait_ready(kw_service *svc)
{
    for (int i = 0; i < 500; i++) {
        kw_index_stats s = stats(svc);
        if (s.ready && (!s.leases || s.lease_held))
            return;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("the node never became ready");
}

static kw_verify_code verify(kw_service *svc, const char *key)
{
    kw_verify_result r;
    kw_error err;
    assert_int_equal(kw_service_key_verify(svc, key, strlen(key), NULL, &r, &err), KW_OK);
    return r.code;
}

static void create(kw_service *svc, const kw_account *acc, const char *name, kw_key *k,
                   char secret[KW_KEY_BUFSZ])
{
    kw_error err;
    assert_int_equal(
        kw_service_key_create(svc, "test", acc->id, name, NULL, KW_TIME_NONE, k, secret, &err),
        KW_OK);
}

static void test_repeated_verifications_never_reach_the_store(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    create(f->a, &f->acc, "CRM", &k, secret);
    wait_ready(f->a);
    uint64_t before = stats(f->a).store_lookups;
    for (int i = 0; i < 200; i++)
        assert_int_equal(verify(f->a, secret), KW_VERIFY_VALID);
    kw_index_stats s = stats(f->a);
    assert_int_equal(s.store_lookups, before);
    assert_true(s.hits >= 200);
    assert_int_equal(s.entries, 1);
    sodium_memzero(secret, sizeof secret);
}

static void test_forged_keys_never_reach_the_store(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    create(f->a, &f->acc, "CRM", &k, secret);
    wait_ready(f->a);
    uint64_t before = stats(f->a).store_lookups;
    for (int i = 0; i < 300; i++) {
        /* Well-formed, with a correct checksum, and stored nowhere. */
        char forged[KW_KEY_BUFSZ];
        assert_true(kw_keyfmt_generate("kw", i % 2 ? "staging" : "production", forged));
        assert_int_equal(verify(f->a, forged), KW_VERIFY_NOT_FOUND);
    }
    assert_int_equal(stats(f->a).store_lookups, before);
    sodium_memzero(secret, sizeof secret);
}

static void test_a_change_on_one_node_is_answered_by_the_other_from_memory(void **state)
{
    fixture *f = *state;
    wait_ready(f->a);
    wait_ready(f->b);
    kw_error err;
    for (int round = 0; round < 20; round++) {
        kw_key k;
        char secret[KW_KEY_BUFSZ];
        kw_service *maker = round % 2 ? f->a : f->b;
        kw_service *other = round % 2 ? f->b : f->a;
        create(maker, &f->acc, "Rotating", &k, secret);
        uint64_t lookups = stats(other).store_lookups;
        /* The create has returned: the other node knows the key at once. */
        assert_int_equal(verify(other, secret), KW_VERIFY_VALID);
        assert_int_equal(kw_service_key_delete(maker, "test", f->acc.id, k.id, &err), KW_OK);
        /* The delete has returned: no node answers VALID any more. */
        assert_int_equal(verify(other, secret), KW_VERIFY_NOT_FOUND);
        assert_int_equal(verify(maker, secret), KW_VERIFY_NOT_FOUND);
        /* ... and from memory, not because it fell back to the store. On
         * PostgreSQL the write waited until the other node applied it. */
        assert_int_equal(stats(other).store_lookups, lookups);
        sodium_memzero(secret, sizeof secret);
    }
}

static void test_unrelated_writes_drop_nothing(void **state)
{
    fixture *f = *state;
    enum { KEYS = 10 };
    kw_key k[KEYS];
    char secret[KEYS][KW_KEY_BUFSZ];
    for (int i = 0; i < KEYS; i++)
        create(f->a, &f->acc, "Steady", &k[i], secret[i]);
    wait_ready(f->a);
    for (int i = 0; i < KEYS; i++)
        assert_int_equal(verify(f->a, secret[i]), KW_VERIFY_VALID);
    kw_index_stats before = stats(f->a);

    /* Writes that cannot change an answer: last-used times, a session, a
     * root key, an account; and one key created in another account. */
    kw_error err;
    assert_int_equal(kw_service_flush_last_used(f->a), KW_OK);
    kw_user u;
    assert_int_equal(kw_service_user_add(f->b, "test", f->acc.id, "ops@example.com",
                                         "correct horse battery", 21, &u, &err),
                     KW_OK);
    kw_session sess;
    char token[KW_SESSION_TOKEN_BUFSZ], csrf[KW_SESSION_TOKEN_BUFSZ];
    assert_int_equal(kw_service_session_create(f->b, "ops@example.com", "correct horse battery", 21,
                                               &sess, token, csrf, &err),
                     KW_OK);
    kw_root_key rk;
    char rk_secret[KW_KEY_BUFSZ];
    assert_int_equal(kw_service_root_key_create(f->b, "test", "Deploy", &rk, rk_secret, &err),
                     KW_OK);
    kw_account acc;
    assert_int_equal(kw_service_account_create(f->b, "test", "Third", &acc, &err), KW_OK);
    kw_key elsewhere;
    char elsewhere_secret[KW_KEY_BUFSZ];
    create(f->b, &f->other, "Elsewhere", &elsewhere, elsewhere_secret);

    for (int i = 0; i < KEYS; i++)
        assert_int_equal(verify(f->a, secret[i]), KW_VERIFY_VALID);
    assert_int_equal(verify(f->a, elsewhere_secret), KW_VERIFY_VALID);
    kw_index_stats after = stats(f->a);
    /* Exactly one change reached the index: the other account's key. */
    assert_int_equal(after.invalidations, before.invalidations + 1);
    assert_int_equal(after.reloads, before.reloads);
    assert_int_equal(after.store_lookups, before.store_lookups);
    assert_int_equal(after.entries, KEYS + 1);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(rk_secret, sizeof rk_secret);
    sodium_memzero(elsewhere_secret, sizeof elsewhere_secret);
    sodium_memzero(token, sizeof token);
}

static void test_a_pruned_feed_makes_a_node_reload(void **state)
{
    fixture *f = *state;
    kw_key keep, gone;
    char keep_secret[KW_KEY_BUFSZ], gone_secret[KW_KEY_BUFSZ];
    create(f->a, &f->acc, "Keep", &keep, keep_secret);
    create(f->a, &f->acc, "Gone", &gone, gone_secret);
    wait_ready(f->b);
    assert_int_equal(verify(f->b, gone_secret), KW_VERIFY_VALID);
    uint64_t reloads = stats(f->b).reloads;

    /* Node b is paused (no lookups; on PostgreSQL its lease may lapse)
     * while changes happen and the feed is pruned past them. */
    kw_error err;
    assert_int_equal(kw_service_key_delete(f->a, "test", f->acc.id, gone.id, &err), KW_OK);
    kw_key later;
    char later_secret[KW_KEY_BUFSZ];
    create(f->a, &f->acc, "Later", &later, later_secret);
    create(f->a, &f->acc, "Latest", &later, later_secret);
    kw_store *store = f->a->store;
    assert_int_equal(store->ops->feed_prune(store, kw_service_now(f->a) + 3600), KW_OK);

    /* On SQLite node b reads the feed only when it verifies, so it finds
     * the gap now. On PostgreSQL its feed thread applied each change as it
     * was notified, before the prune: no gap to find, the answers below
     * must be exact all the same (catch_up is the same code either way). */
    if (!stats(f->b).leases) {
        verify(f->b, keep_secret);
        assert_true(stats(f->b).reloads > reloads);
    }
    wait_ready(f->b);
    assert_int_equal(verify(f->b, gone_secret), KW_VERIFY_NOT_FOUND);
    assert_int_equal(verify(f->b, keep_secret), KW_VERIFY_VALID);
    assert_int_equal(verify(f->b, later_secret), KW_VERIFY_VALID);
    sodium_memzero(keep_secret, sizeof keep_secret);
    sodium_memzero(gone_secret, sizeof gone_secret);
    sodium_memzero(later_secret, sizeof later_secret);
}

static int64_t elapsed_ms(const struct timespec *since);

/* setup_small: the index may hold 5 keys; the sixth makes the store answer. */
static void test_more_keys_than_the_index_holds_are_answered_by_the_store(void **state)
{
    fixture *f = *state;
    kw_key k[6];
    char secret[6][KW_KEY_BUFSZ];
    for (int i = 0; i < 6; i++)
        create(f->b, &f->acc, "Many", &k[i], secret[i]);
    uint64_t before = stats(f->a).store_lookups;
    for (int i = 0; i < 6; i++)
        assert_int_equal(verify(f->a, secret[i]), KW_VERIFY_VALID);
    kw_index_stats s = stats(f->a);
    assert_true(s.overflow);
    assert_false(s.ready);
    assert_int_equal(s.store_lookups, before + 6);
    /* On PostgreSQL the overflowed nodes gave their leases back: a change
     * does not wait a lease for nodes that no longer answer from memory. */
    kw_error err;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_int_equal(kw_service_key_delete(f->b, "test", f->acc.id, k[0].id, &err), KW_OK);
    assert_true(elapsed_ms(&start) < 1000);
    assert_int_equal(verify(f->a, secret[0]), KW_VERIFY_NOT_FOUND);
    sodium_memzero(secret, sizeof secret);
}

/* Keys answered from memory keep their last-used time in the index entry,
 * and the flush writes it like any other. */
static void test_last_used_of_keys_answered_from_memory_is_written(void **state)
{
    fixture *f = *state;
    kw_key k, other;
    char secret[KW_KEY_BUFSZ], other_secret[KW_KEY_BUFSZ];
    create(f->a, &f->acc, "Used", &k, secret);
    create(f->a, &f->acc, "Unused", &other, other_secret);
    wait_ready(f->a);
    uint64_t lookups = stats(f->a).store_lookups;
    assert_int_equal(verify(f->a, secret), KW_VERIFY_VALID);
    assert_int_equal(stats(f->a).store_lookups, lookups); /* from memory */
    kw_error err;
    assert_int_equal(kw_service_flush_last_used(f->a), KW_OK);
    kw_key got;
    assert_int_equal(kw_service_key_get(f->b, f->acc.id, k.id, &got, &err), KW_OK);
    assert_int_not_equal(got.last_used_at, KW_TIME_NONE);
    assert_true(got.last_used_at >= k.created_at);
    assert_int_equal(kw_service_key_get(f->b, f->acc.id, other.id, &got, &err), KW_OK);
    assert_int_equal(got.last_used_at, KW_TIME_NONE);
    /* Taken once: a second flush writes nothing new, and a delete in between
     * loses nothing it should keep. */
    assert_int_equal(kw_service_flush_last_used(f->a), KW_OK);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(other_secret, sizeof other_secret);
}

static int64_t elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/*
 * PostgreSQL: a node that holds a lease but applies nothing (frozen, or
 * cut off) holds a delete back until its lease ends, and no longer.
 */
static void test_a_silent_node_delays_a_change_by_one_lease_at_most(void **state)
{
    fixture *f = *state;
    kw_store *store = f->a->store;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    create(f->a, &f->acc, "CRM", &k, secret);
    kw_error err;
    if (!store->ops->node_renew) {
        /* SQLite: no leases; every process sees the commit counter, so a
         * change never waits for anyone. */
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        assert_int_equal(kw_service_key_delete(f->a, "test", f->acc.id, k.id, &err), KW_OK);
        assert_true(elapsed_ms(&start) < 500);
        assert_int_equal(verify(f->b, secret), KW_VERIFY_NOT_FOUND);
        sodium_memzero(secret, sizeof secret);
        return;
    }
    int64_t head = 0;
    assert_int_equal(store->ops->feed_head(store, &head), KW_OK);
    /* A node that has applied everything so far, then goes silent. */
    assert_int_equal(store->ops->node_renew(store, "node_silent", head, 1000, &head), KW_OK);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_int_equal(kw_service_key_delete(f->a, "test", f->acc.id, k.id, &err), KW_OK);
    int64_t took = elapsed_ms(&start);
    /* It waited for the silent node's lease (about 1 s), not for the
     * service's own 2 s bound, and not forever. */
    assert_true(took >= 900);
    assert_true(took < 1900);
    /* A lease is never granted to a node behind the head. */
    assert_int_equal(store->ops->node_renew(store, "node_silent", head, 1000, &head),
                     KW_ERR_CONFLICT);
    assert_int_equal(store->ops->node_leave(store, "node_silent"), KW_OK);
    assert_int_equal(verify(f->b, secret), KW_VERIFY_NOT_FOUND);
    sodium_memzero(secret, sizeof secret);
}

/* The key lifecycle's changes on node A, answered by node B from memory on its next call. */

static kw_verify_result verify_full(kw_service *svc, const char *key)
{
    kw_verify_result r;
    kw_error err;
    assert_int_equal(kw_service_key_verify(svc, key, strlen(key), NULL, &r, &err), KW_OK);
    return r;
}

static void test_lifecycle_changes_reach_the_other_node(void **state)
{
    fixture *f = *state;
    wait_ready(f->a);
    wait_ready(f->b);
    kw_key k, out;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    create(f->a, &f->acc, "Lifecycle", &k, secret);
    assert_int_equal(verify(f->b, secret), KW_VERIFY_VALID);
    kw_index_stats before = stats(f->b);

    /* Disable, then enable. */
    kw_key_patch off = {.has_enabled = true, .enabled = false};
    assert_int_equal(kw_service_key_update(f->a, "test", f->acc.id, k.id, &off, &out, &err), KW_OK);
    assert_int_equal(verify(f->b, secret), KW_VERIFY_DISABLED);
    kw_key_patch on = {.has_enabled = true, .enabled = true};
    assert_int_equal(kw_service_key_update(f->a, "test", f->acc.id, k.id, &on, &out, &err), KW_OK);
    assert_int_equal(verify(f->b, secret), KW_VERIFY_VALID);

    /* Metadata. */
    kw_key_patch meta = {.has_metadata = true, .metadata = "{\"plan\":\"pro\",\"seats\":5}"};
    assert_int_equal(kw_service_key_update(f->a, "test", f->acc.id, k.id, &meta, &out, &err),
                     KW_OK);
    kw_verify_result r = verify_full(f->b, secret);
    assert_int_equal(r.code, KW_VERIFY_VALID);
    assert_string_equal(r.key.metadata, "{\"plan\":\"pro\",\"seats\":5}");

    /* Roll: the new key verifies on B at once, the old one through its grace. */
    kw_key fresh, previous;
    char new_secret[KW_KEY_BUFSZ];
    assert_int_equal(kw_service_key_roll(f->a, "test", f->acc.id, k.id, 3600, &fresh, new_secret,
                                         &previous, &err),
                     KW_OK);
    r = verify_full(f->b, new_secret);
    assert_int_equal(r.code, KW_VERIFY_VALID);
    assert_string_equal(r.key.rolled_from, k.id);
    assert_string_equal(r.key.metadata, "{\"plan\":\"pro\",\"seats\":5}");
    r = verify_full(f->b, secret);
    assert_int_equal(r.code, KW_VERIFY_VALID);
    assert_string_equal(r.key.rolled_to, fresh.id);

    /* Revoke all: neither verifies anywhere. */
    int revoked = 0;
    assert_int_equal(kw_service_key_revoke_all(f->a, "test", f->acc.id, NULL, &revoked, &err),
                     KW_OK);
    assert_int_equal(revoked, 2);
    assert_int_equal(verify(f->b, secret), KW_VERIFY_NOT_FOUND);
    assert_int_equal(verify(f->b, new_secret), KW_VERIFY_NOT_FOUND);

    /* Every answer came from B's memory. */
    kw_index_stats after = stats(f->b);
    assert_int_equal(after.store_lookups, before.store_lookups);
    assert_true(after.hits >= before.hits + 7);
    assert_int_equal(after.entries, 0);
    sodium_memzero(secret, sizeof secret);
    sodium_memzero(new_secret, sizeof new_secret);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_repeated_verifications_never_reach_the_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_forged_keys_never_reach_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_change_on_one_node_is_answered_by_the_other_from_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrelated_writes_drop_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_pruned_feed_makes_a_node_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_used_of_keys_answered_from_memory_is_written,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_more_keys_than_the_index_holds_are_answered_by_the_store, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_a_silent_node_delays_a_change_by_one_lease_at_most,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle_changes_reach_the_other_node, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
