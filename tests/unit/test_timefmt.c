#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/timefmt.h"

static void test_format(void **state)
{
    (void)state;
    char buf[KW_TIME_BUFSZ];
    kw_time_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    kw_time_format(1795741323, buf);
    assert_string_equal(buf, "2026-11-27T01:02:03Z");
}

static void test_parse(void **state)
{
    (void)state;
    int64_t t;
    assert_true(kw_time_parse("2026-11-27T01:02:03Z", &t));
    assert_int_equal(t, 1795741323);
    assert_true(kw_time_parse("2026-11-27T02:02:03.123+01:00", &t));
    assert_int_equal(t, 1795741323);
    assert_true(kw_time_parse("2024-02-29T00:00:00Z", &t));
    const char *bad[] = {"",
                         "2026-11-27",
                         "2026-11-27 01:02:03Z",
                         "2026-13-01T00:00:00Z",
                         "2025-02-29T00:00:00Z",
                         "2026-11-27T01:02:03",
                         "2026-11-27T24:00:00Z",
                         "2026-11-27T01:02:03+0100",
                         "2026-11-27T01:02:03Zjunk",
                         NULL};
    for (const char **b = bad; *b; b++)
        assert_false(kw_time_parse(*b, &t));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
