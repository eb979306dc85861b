#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/base62.h"

static void test_zero_is_all_zero_digits(void **state)
{
    (void)state;
    uint8_t zero[4] = {0};
    char out[6];
    assert_true(kw_base62_encode(zero, sizeof zero, out, sizeof out));
    assert_memory_equal(out, "000000", 6);
}

static void test_known_values(void **state)
{
    (void)state;
    uint8_t v61[1] = {61}, v62[1] = {62}, max32[4] = {0xff, 0xff, 0xff, 0xff};
    char out[6];
    assert_true(kw_base62_encode(v61, 1, out, 2));
    assert_memory_equal(out, "0z", 2);
    assert_true(kw_base62_encode(v62, 1, out, 2));
    assert_memory_equal(out, "10", 2);
    assert_true(kw_base62_encode(max32, 4, out, 6));
    uint64_t back;
    assert_true(kw_base62_decode_u64(out, 6, &back));
    assert_int_equal(back, 0xffffffffu);
}

static void test_too_narrow_is_refused(void **state)
{
    (void)state;
    uint8_t v62[1] = {62};
    char out[1];
    assert_false(kw_base62_encode(v62, 1, out, 1));
}

static void test_256_bits_fit_in_43_digits(void **state)
{
    (void)state;
    uint8_t max[32];
    memset(max, 0xff, sizeof max);
    char out[43];
    assert_true(kw_base62_encode(max, sizeof max, out, sizeof out));
    assert_false(kw_base62_encode(max, sizeof max, out, 42));
}

static void test_decode_rejects_bad_input(void **state)
{
    (void)state;
    uint64_t v;
    assert_false(kw_base62_decode_u64("ab_c", 4, &v));
    assert_false(kw_base62_decode_u64("", 0, &v));
    assert_false(kw_base62_decode_u64("12345678901", 11, &v));
    assert_true(kw_base62_decode_u64("zz", 2, &v));
    assert_int_equal(v, 62 * 62 - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_is_all_zero_digits),
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_too_narrow_is_refused),
        cmocka_unit_test(test_256_bits_fit_in_43_digits),
        cmocka_unit_test(test_decode_rejects_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
