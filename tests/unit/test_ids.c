#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include <sodium.h>

#include "core/ids.h"

static void test_ids_have_their_kind_and_are_distinct(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    char a[KW_ID_BUFSZ], b[KW_ID_BUFSZ];
    kw_id_new("key", a);
    kw_id_new("key", b);
    assert_int_equal(strlen(a), 4 + KW_ID_RANDOM_CHARS);
    assert_memory_equal(a, "key_", 4);
    assert_string_not_equal(a, b);
    assert_true(kw_id_valid(a, "key"));
    assert_false(kw_id_valid(a, "acc"));
    assert_false(kw_id_valid(a, "ke"));
    kw_id_new("rk", a);
    assert_true(kw_id_valid(a, "rk"));
    assert_false(kw_id_valid(NULL, "rk"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_have_their_kind_and_are_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
