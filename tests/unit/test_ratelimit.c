/*
 * The sign-in limits: a slot is taken before the password is checked, so
 * that any number of parallel attempts gets at most `limit` slots per key
 * and window; slots given back and forgotten keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "http/ratelimit.h"

static void test_takes_up_to_the_limit_then_says_how_long_to_wait(void **state)
{
    (void)state;
    kw_ratelimit *rl = kw_ratelimit_new(3, 900);
    assert_non_null(rl);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kw_ratelimit_take(rl, "email:a@example.com", 1000 + i), 0);
    assert_int_equal(kw_ratelimit_take(rl, "email:a@example.com", 1010), 890);
    assert_int_equal(kw_ratelimit_take(rl, "email:a@example.com", 1899), 1);
    /* Refused attempts took nothing: the next window has all its slots. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(kw_ratelimit_take(rl, "email:a@example.com", 1900), 0);
    assert_true(kw_ratelimit_take(rl, "email:a@example.com", 1900) > 0);
    /* Another key has slots of its own. */
    assert_int_equal(kw_ratelimit_take(rl, "email:b@example.com", 1900), 0);
    kw_ratelimit_free(rl);
}

static void test_a_slot_given_back_can_be_taken_again(void **state)
{
    (void)state;
    kw_ratelimit *rl = kw_ratelimit_new(2, 900);
    assert_int_equal(kw_ratelimit_take(rl, "addr:192.0.2.1", 100), 0);
    assert_int_equal(kw_ratelimit_take(rl, "addr:192.0.2.1", 101), 0);
    assert_true(kw_ratelimit_take(rl, "addr:192.0.2.1", 102) > 0);
    kw_ratelimit_give_back(rl, "addr:192.0.2.1", 101);
    assert_int_equal(kw_ratelimit_take(rl, "addr:192.0.2.1", 103), 0);
    assert_true(kw_ratelimit_take(rl, "addr:192.0.2.1", 104) > 0);
    /* A slot of a window that has ended is not given to the next one. */
    assert_int_equal(kw_ratelimit_take(rl, "addr:192.0.2.1", 1000), 0);
    assert_int_equal(kw_ratelimit_take(rl, "addr:192.0.2.1", 1001), 0);
    kw_ratelimit_give_back(rl, "addr:192.0.2.1", 104);
    assert_true(kw_ratelimit_take(rl, "addr:192.0.2.1", 1002) > 0);
    /* Giving back for an unknown key changes nothing. */
    kw_ratelimit_give_back(rl, "addr:198.51.100.1", 1002);
    kw_ratelimit_free(rl);
}

static void test_reset_forgets_a_key(void **state)
{
    (void)state;
    kw_ratelimit *rl = kw_ratelimit_new(1, 900);
    assert_int_equal(kw_ratelimit_take(rl, "email:a@example.com", 5), 0);
    assert_true(kw_ratelimit_take(rl, "email:a@example.com", 6) > 0);
    kw_ratelimit_reset(rl, "email:a@example.com");
    assert_int_equal(kw_ratelimit_take(rl, "email:a@example.com", 7), 0);
    kw_ratelimit_free(rl);
}

static void test_a_full_table_reuses_the_oldest_window(void **state)
{
    (void)state;
    kw_ratelimit *rl = kw_ratelimit_new(1, 900);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "email:%d@example.com", i);
        assert_int_equal(kw_ratelimit_take(rl, key, 100 + i / 1000), 0);
    }
    /* The newest keys are still counted. */
    assert_true(kw_ratelimit_take(rl, "email:4999@example.com", 200) > 0);
    kw_ratelimit_free(rl);
}

#define RACERS 16

typedef struct {
    kw_ratelimit *rl;
    atomic_int *go;
    atomic_int *granted;
} racer;

static void *on_race(void *arg)
{
    racer *r = arg;
    while (!atomic_load(r->go))
        ;
    for (int i = 0; i < 10; i++)
        if (kw_ratelimit_take(r->rl, "email:target@example.com", 50) == 0)
            atomic_fetch_add(r->granted, 1);
    return NULL;
}

static void test_parallel_attempts_get_no_more_than_the_limit(void **state)
{
    (void)state;
    kw_ratelimit *rl = kw_ratelimit_new(5, 900);
    atomic_int go = 0, granted = 0;
    pthread_t threads[RACERS];
    racer r = {rl, &go, &granted};
    for (int i = 0; i < RACERS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, on_race, &r), 0);
    atomic_store(&go, 1);
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(atomic_load(&granted), 5);
    kw_ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_takes_up_to_the_limit_then_says_how_long_to_wait),
        cmocka_unit_test(test_a_slot_given_back_can_be_taken_again),
        cmocka_unit_test(test_reset_forgets_a_key),
        cmocka_unit_test(test_a_full_table_reuses_the_oldest_window),
        cmocka_unit_test(test_parallel_attempts_get_no_more_than_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
