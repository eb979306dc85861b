/*
 * The verification cache: epochs, tokens, time-to-live, and through the
 * service, that a delete made by another connection (another process, on a
 * real deployment) is seen by the very next verification.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/keycache.h"
#include "core/service.h"
#include "testutil.h"

static void hash_of(uint8_t h[KW_HASH_BYTES], int n)
{
    memset(h, 0, KW_HASH_BYTES);
    h[0] = (uint8_t)n;
    h[31] = (uint8_t)(n * 7);
}

static void test_entries_live_in_their_epoch_only(void **state)
{
    (void)state;
    kw_keycache *c = kw_keycache_new(100);
    assert_non_null(c);
    uint8_t h[KW_HASH_BYTES], other[KW_HASH_BYTES];
    hash_of(h, 1);
    hash_of(other, 2);
    kw_key k = {.id = "key_1", .name = "CRM"}, got;
    uint64_t e = kw_keycache_sync(c, 42);
    assert_false(kw_keycache_get(c, h, e, 1000, &got));
    kw_keycache_put(c, h, e, 1000, &k);
    assert_true(kw_keycache_get(c, h, e, 1000, &got));
    assert_string_equal(got.id, "key_1");
    assert_false(kw_keycache_get(c, other, e, 1000, &got));

    /* The same token keeps the epoch; a new one ends it. */
    assert_int_equal(kw_keycache_sync(c, 42), e);
    uint64_t e2 = kw_keycache_sync(c, 43);
    assert_true(e2 != e);
    assert_false(kw_keycache_get(c, h, e2, 1000, &got));

    /* A fill read before the epoch ended is not kept. */
    kw_keycache_put(c, h, e, 1000, &k);
    assert_false(kw_keycache_get(c, h, e2, 1000, &got));

    kw_keycache_put(c, h, e2, 1000, &k);
    kw_keycache_invalidate(c);
    uint64_t e3 = kw_keycache_sync(c, 43);
    assert_true(e3 != e2);
    assert_false(kw_keycache_get(c, h, e3, 1000, &got));

    /* Entries expire after the time-to-live whatever the token says. */
    kw_keycache_put(c, h, e3, 1000, &k);
    assert_true(kw_keycache_get(c, h, e3, 1000 + KW_KEYCACHE_TTL - 1, &got));
    assert_false(kw_keycache_get(c, h, e3, 1000 + KW_KEYCACHE_TTL, &got));
    assert_false(kw_keycache_get(c, h, e3, 999, &got));
    kw_keycache_free(c);
}

/* Keys whose hashes pick the same set share it until it is full; then the oldest goes. */
static void test_a_set_holds_four_keys_and_drops_the_oldest(void **state)
{
    (void)state;
    kw_keycache *c = kw_keycache_new(64);
    uint64_t e = kw_keycache_sync(c, 1);
    uint8_t h[5][KW_HASH_BYTES];
    kw_key k = {.id = "key_x"}, got;
    for (int i = 0; i < 5; i++) {
        memset(h[i], 0, KW_HASH_BYTES);
        h[i][31] = (uint8_t)(i + 1); /* same first eight bytes: same set */
    }
    for (int i = 0; i < 4; i++)
        kw_keycache_put(c, h[i], e, 100 + i, &k);
    for (int i = 0; i < 4; i++)
        assert_true(kw_keycache_get(c, h[i], e, 105, &got));
    kw_keycache_put(c, h[4], e, 105, &k);
    assert_false(kw_keycache_get(c, h[0], e, 105, &got));
    for (int i = 1; i < 5; i++)
        assert_true(kw_keycache_get(c, h[i], e, 105, &got));
    /* Filling a key again reuses its own slot. */
    kw_keycache_put(c, h[4], e, 106, &k);
    for (int i = 1; i < 5; i++)
        assert_true(kw_keycache_get(c, h[i], e, 106, &got));
    kw_keycache_free(c);
}

/* Two services on one database stand for two processes (e.g. serve and the CLI). */
static void test_a_delete_elsewhere_is_seen_by_the_next_verification(void **state)
{
    (void)state;
    char *dir;
    kw_service *server = tu_service(&dir);
    kw_config cfg;
    tu_config(&cfg, dir);
    kw_service *cli = NULL;
    kw_error err;
    assert_int_equal(kw_service_open(&cfg, &cli, &err), KW_OK);

    kw_account acc;
    assert_int_equal(kw_service_account_create(server, "test", "Acme", &acc, &err), KW_OK);
    for (int round = 0; round < 20; round++) {
        kw_key key;
        char secret[KW_KEY_BUFSZ];
        assert_int_equal(kw_service_key_create(cli, "test", acc.id, "CRM", NULL, KW_TIME_NONE, &key,
                                               secret, &err),
                         KW_OK);
        kw_verify_result r;
        for (int i = 0; i < 3; i++) { /* fills the cache, then hits it */
            assert_int_equal(kw_service_key_verify(server, secret, strlen(secret), NULL, &r, &err),
                             KW_OK);
            assert_int_equal(r.code, KW_VERIFY_VALID);
        }
        assert_int_equal(kw_service_key_delete(cli, "test", acc.id, key.id, &err), KW_OK);
        assert_int_equal(kw_service_key_verify(server, secret, strlen(secret), NULL, &r, &err),
                         KW_OK);
        assert_int_equal(r.code, KW_VERIFY_NOT_FOUND);
    }
    kw_service_close(cli);
    kw_service_close(server);
    tu_rmtree(dir);
    free(dir);
}

static void test_a_delete_here_is_seen_by_the_next_verification(void **state)
{
    (void)state;
    char *dir;
    kw_service *svc = tu_service(&dir);
    kw_error err;
    kw_account acc;
    assert_int_equal(kw_service_account_create(svc, "test", "Acme", &acc, &err), KW_OK);
    kw_key key;
    char secret[KW_KEY_BUFSZ];
    assert_int_equal(
        kw_service_key_create(svc, "test", acc.id, "CRM", NULL, KW_TIME_NONE, &key, secret, &err),
        KW_OK);
    kw_verify_result r;
    assert_int_equal(kw_service_key_verify(svc, secret, strlen(secret), NULL, &r, &err), KW_OK);
    assert_int_equal(kw_service_key_verify(svc, secret, strlen(secret), NULL, &r, &err), KW_OK);
    assert_int_equal(r.code, KW_VERIFY_VALID);
    assert_int_equal(kw_service_key_delete(svc, "test", acc.id, key.id, &err), KW_OK);
    assert_int_equal(kw_service_key_verify(svc, secret, strlen(secret), NULL, &r, &err), KW_OK);
    assert_int_equal(r.code, KW_VERIFY_NOT_FOUND);
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entries_live_in_their_epoch_only),
        cmocka_unit_test(test_a_set_holds_four_keys_and_drops_the_oldest),
        cmocka_unit_test(test_a_delete_elsewhere_is_seen_by_the_next_verification),
        cmocka_unit_test(test_a_delete_here_is_seen_by_the_next_verification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
