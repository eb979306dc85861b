/*
 * The in-memory key index: exact answers under insert, replace and remove
 * churn (removals shift probe runs back, which a wrong shift would break),
 * pepper versions kept apart, and lookups racing a writer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/keyindex.h"

static void key_of(unsigned n, kw_key *k)
{
    memset(k, 0, sizeof *k);
    snprintf(k->id, sizeof k->id, "key_%022u", n);
    snprintf(k->account_id, sizeof k->account_id, "acc_%022u", n % 7);
    snprintf(k->name, sizeof k->name, "Key number %u \xf0\x9f\x94\x91", n);
    snprintf(k->environment, sizeof k->environment, "%s", n % 2 ? "staging" : "production");
    snprintf(k->masked, sizeof k->masked, "kw_production_...%04u", n % 10000);
    k->created_at = 1700000000 + n;
    k->expires_at = n % 3 ? KW_TIME_NONE : 1800000000 + n;
    k->last_used_at = 1750000000; /* never kept: the index answers KW_TIME_NONE */
}

/* A hash like an HMAC: uniformly random, derived from n. */
static void hash_of(unsigned n, uint8_t hash[KW_HASH_BYTES])
{
    crypto_generichash(hash, KW_HASH_BYTES, (const unsigned char *)&n, sizeof n, NULL, 0);
}

static void assert_holds(kw_keyindex *x, unsigned n)
{
    uint8_t hash[KW_HASH_BYTES];
    hash_of(n, hash);
    kw_key want, got;
    key_of(n, &want);
    want.last_used_at = KW_TIME_NONE;
    assert_true(kw_keyindex_get(x, hash, 1, &got));
    assert_string_equal(got.id, want.id);
    assert_string_equal(got.account_id, want.account_id);
    assert_string_equal(got.name, want.name);
    assert_string_equal(got.environment, want.environment);
    assert_string_equal(got.masked, want.masked);
    assert_int_equal(got.created_at, want.created_at);
    assert_int_equal(got.expires_at, want.expires_at);
    assert_int_equal(got.last_used_at, KW_TIME_NONE);
}

static void assert_lacks(kw_keyindex *x, unsigned n)
{
    uint8_t hash[KW_HASH_BYTES];
    hash_of(n, hash);
    kw_key got;
    assert_false(kw_keyindex_get(x, hash, 1, &got));
}

static bool put(kw_keyindex *x, unsigned n)
{
    uint8_t hash[KW_HASH_BYTES];
    kw_key k;
    hash_of(n, hash);
    key_of(n, &k);
    return kw_keyindex_put(x, hash, 1, &k);
}

static bool drop(kw_keyindex *x, unsigned n)
{
    uint8_t hash[KW_HASH_BYTES];
    hash_of(n, hash);
    return kw_keyindex_remove(x, hash, 1);
}

/* As the change feed names a deleted key: by its id alone. */
static bool drop_id(kw_keyindex *x, unsigned n)
{
    kw_key k;
    key_of(n, &k);
    return kw_keyindex_remove_id(x, k.id);
}

static void test_put_get_remove(void **state)
{
    (void)state;
    kw_keyindex *x = kw_keyindex_new();
    assert_non_null(x);
    assert_lacks(x, 1);
    assert_false(drop(x, 1));
    assert_true(put(x, 1));
    assert_holds(x, 1);
    assert_int_equal(kw_keyindex_count(x), 1);
    /* Putting the same hash again replaces, it does not add. */
    assert_true(put(x, 1));
    assert_int_equal(kw_keyindex_count(x), 1);
    assert_true(drop(x, 1));
    assert_lacks(x, 1);
    assert_int_equal(kw_keyindex_count(x), 0);
    /* By id: the same key, found without its hash. */
    assert_true(put(x, 2));
    assert_false(drop_id(x, 3));
    assert_true(drop_id(x, 2));
    assert_lacks(x, 2);
    assert_false(drop_id(x, 2));
    assert_int_equal(kw_keyindex_count(x), 0);
    kw_keyindex_free(x);
}

/* One entry per key: the same id under a new hash replaces the old one. */
static void test_an_id_has_one_entry(void **state)
{
    (void)state;
    kw_keyindex *x = kw_keyindex_new();
    uint8_t first[KW_HASH_BYTES], second[KW_HASH_BYTES];
    hash_of(7, first);
    hash_of(8, second);
    kw_key k, got;
    key_of(7, &k);
    assert_true(kw_keyindex_put(x, first, 1, &k));
    assert_true(kw_keyindex_put(x, second, 1, &k));
    assert_int_equal(kw_keyindex_count(x), 1);
    assert_false(kw_keyindex_get(x, first, 1, &got));
    assert_true(kw_keyindex_get(x, second, 1, &got));
    assert_true(kw_keyindex_remove_id(x, k.id));
    assert_false(kw_keyindex_get(x, second, 1, &got));
    kw_keyindex_free(x);
}

static void test_replace_changes_the_answer(void **state)
{
    (void)state;
    kw_keyindex *x = kw_keyindex_new();
    uint8_t hash[KW_HASH_BYTES];
    hash_of(5, hash);
    kw_key k, got;
    key_of(5, &k);
    assert_true(kw_keyindex_put(x, hash, 1, &k));
    snprintf(k.name, sizeof k.name, "%s", "Renamed");
    k.expires_at = 1234;
    assert_true(kw_keyindex_put(x, hash, 1, &k));
    assert_true(kw_keyindex_get(x, hash, 1, &got));
    assert_string_equal(got.name, "Renamed");
    assert_int_equal(got.expires_at, 1234);
    kw_keyindex_free(x);
}

static void test_pepper_versions_are_distinct(void **state)
{
    (void)state;
    kw_keyindex *x = kw_keyindex_new();
    uint8_t hash[KW_HASH_BYTES];
    hash_of(9, hash);
    kw_key k, got;
    key_of(9, &k);
    assert_true(kw_keyindex_put(x, hash, 2, &k));
    assert_false(kw_keyindex_get(x, hash, 1, &got));
    assert_true(kw_keyindex_get(x, hash, 2, &got));
    assert_false(kw_keyindex_remove(x, hash, 1));
    assert_true(kw_keyindex_remove(x, hash, 2));
    kw_keyindex_free(x);
}

/* Many keys, then every other one removed: each survivor must stay
 * reachable through the shifted probe runs, each removed one gone. */
static void test_churn_keeps_every_answer_exact(void **state)
{
    (void)state;
    enum { N = 60000 };
    kw_keyindex *x = kw_keyindex_new();
    for (unsigned n = 0; n < N; n++)
        assert_true(put(x, n));
    assert_int_equal(kw_keyindex_count(x), N);
    size_t full = kw_keyindex_bytes(x);
    /* Half removed by hash, half of the rest by id: both tables' probe
     * runs shift. */
    for (unsigned n = 0; n < N; n += 2)
        assert_true(n % 4 ? drop(x, n) : drop_id(x, n));
    assert_int_equal(kw_keyindex_count(x), N / 2);
    assert_true(kw_keyindex_bytes(x) < full);
    for (unsigned n = 0; n < N; n++) {
        if (n % 2)
            assert_holds(x, n);
        else
            assert_lacks(x, n);
    }
    /* Put back and remove the others: the same again, the other way round. */
    for (unsigned n = 0; n < N; n += 2)
        assert_true(put(x, n));
    for (unsigned n = 1; n < N; n += 2)
        assert_true(n % 3 ? drop_id(x, n) : drop(x, n));
    for (unsigned n = 0; n < N; n++) {
        if (n % 2)
            assert_lacks(x, n);
        else
            assert_holds(x, n);
    }
    kw_keyindex_clear(x);
    assert_int_equal(kw_keyindex_count(x), 0);
    assert_lacks(x, 0);
    kw_keyindex_free(x);
}

typedef struct {
    kw_keyindex *x;
    atomic_bool stop;
    atomic_long wrong;
} race;

/* Keys 0..999 always stay; the writer churns 1000..1999 meanwhile. */
static void *reader(void *arg)
{
    race *r = arg;
    unsigned n = 0;
    while (!atomic_load(&r->stop)) {
        uint8_t hash[KW_HASH_BYTES];
        hash_of(n % 1000, hash);
        kw_key got;
        if (!kw_keyindex_get(r->x, hash, 1, &got) || got.created_at != 1700000000 + n % 1000)
            atomic_fetch_add(&r->wrong, 1);
        n++;
    }
    return NULL;
}

static void test_lookups_race_a_writer(void **state)
{
    (void)state;
    race r = {.x = kw_keyindex_new()};
    for (unsigned n = 0; n < 1000; n++)
        assert_true(put(r.x, n));
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, &r), 0);
    for (int round = 0; round < 20; round++) {
        for (unsigned n = 1000; n < 2000; n++)
            assert_true(put(r.x, n));
        for (unsigned n = 1000; n < 2000; n++)
            assert_true(drop(r.x, n));
    }
    atomic_store(&r.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.wrong), 0);
    assert_int_equal(kw_keyindex_count(r.x), 1000);
    kw_keyindex_free(r.x);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_remove),
        cmocka_unit_test(test_replace_changes_the_answer),
        cmocka_unit_test(test_pepper_versions_are_distinct),
        cmocka_unit_test(test_an_id_has_one_entry),
        cmocka_unit_test(test_churn_keeps_every_answer_exact),
        cmocka_unit_test(test_lookups_race_a_writer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
