#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lastused.h"

static void test_keeps_the_newest_time_per_id(void **state)
{
    (void)state;
    kw_lastused *lu = kw_lastused_new();
    assert_non_null(lu);
    kw_lastused_note(lu, "key_a", 10);
    kw_lastused_note(lu, "key_a", 30);
    kw_lastused_note(lu, "key_a", 20);
    kw_lastused_note(lu, "rk_b", 5);
    kw_touch *items;
    size_t n = kw_lastused_take(lu, &items);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i].id, "key_a") == 0)
            assert_int_equal(items[i].at, 30);
        else
            assert_int_equal(items[i].at, 5);
    }
    free(items);
    assert_int_equal(kw_lastused_take(lu, &items), 0);
    assert_null(items);
    kw_lastused_free(lu);
}

static void test_grows_past_its_first_size(void **state)
{
    (void)state;
    kw_lastused *lu = kw_lastused_new();
    for (int i = 0; i < 5000; i++) {
        char id[32];
        snprintf(id, sizeof id, "key_%d", i);
        assert_int_equal(kw_lastused_note(lu, id, i), 0);
        assert_int_equal(kw_lastused_note(lu, id, i), 0);
    }
    kw_touch *items;
    size_t n = kw_lastused_take(lu, &items);
    assert_int_equal(n, 5000);
    long long sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += items[i].at;
    assert_int_equal(sum, 4999LL * 5000 / 2);
    free(items);
    kw_lastused_free(lu);
}

static void test_overlong_id_is_refused(void **state)
{
    (void)state;
    kw_lastused *lu = kw_lastused_new();
    char id[64];
    memset(id, 'k', sizeof id - 1);
    id[63] = '\0';
    assert_int_equal(kw_lastused_note(lu, id, 1), -1);
    kw_lastused_free(lu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keeps_the_newest_time_per_id),
        cmocka_unit_test(test_grows_past_its_first_size),
        cmocka_unit_test(test_overlong_id_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
