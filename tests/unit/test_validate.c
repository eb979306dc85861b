#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/validate.h"

static void test_utf8(void **state)
{
    (void)state;
    assert_true(kw_utf8_valid("plain", 5));
    assert_true(kw_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91", 9)); /* é € 🔑 */
    assert_false(kw_utf8_valid("\xc3", 1));                                /* truncated */
    assert_false(kw_utf8_valid("\xc0\xaf", 2));                            /* overlong */
    assert_false(kw_utf8_valid("\xe0\x80\xaf", 3));                        /* overlong */
    assert_false(kw_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate */
    assert_false(kw_utf8_valid("\xf4\x90\x80\x80", 4));                    /* > U+10FFFF */
    assert_false(kw_utf8_valid("\xff", 1));
    assert_false(kw_utf8_valid("a\x80", 2));
}

static void test_names_are_trimmed(void **state)
{
    (void)state;
    char out[KW_NAME_BUFSZ];
    kw_error err;
    assert_int_equal(kw_validate_name("  Production CRM \t", "name", out, &err), KW_OK);
    assert_string_equal(out, "Production CRM");
    assert_int_equal(kw_validate_name("Caf\xc3\xa9 \xf0\x9f\x94\x91", "name", out, &err), KW_OK);
}

static void test_bad_names_are_refused_with_the_field_named(void **state)
{
    (void)state;
    char out[KW_NAME_BUFSZ];
    kw_error err;
    char long_name[102];
    memset(long_name, 'a', 101);
    long_name[101] = '\0';
    const char *bad[] = {"",
                         "   ",
                         "\t\n",
                         long_name,
                         "a\x01"
                         "b",
                         "a\x7f",
                         "a\xc2\x85"
                         "b",
                         "a\xe2\x80\xae"
                         "b",
                         "bad\xff",
                         "\xc0\xaf",
                         NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(kw_validate_name(*b, "name", out, &err), KW_ERR_INVALID);
        assert_int_equal(err.status, KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "name"));
    }
    assert_int_equal(kw_validate_name(NULL, "name", out, &err), KW_ERR_INVALID);
}

static void test_one_hundred_characters_are_allowed(void **state)
{
    (void)state;
    char out[KW_NAME_BUFSZ], hundred[101], wide[401];
    kw_error err;
    memset(hundred, 'x', 100);
    hundred[100] = '\0';
    assert_int_equal(kw_validate_name(hundred, "name", out, &err), KW_OK);
    for (int i = 0; i < 100; i++)
        memcpy(wide + 4 * i, "\xf0\x9f\x94\x91", 4); /* 100 four-byte characters */
    wide[400] = '\0';
    assert_int_equal(kw_validate_name(wide, "name", out, &err), KW_OK);
    assert_string_equal(out, wide);
}

static void test_environments(void **state)
{
    (void)state;
    kw_error err;
    assert_int_equal(kw_validate_environment("production", &err), KW_OK);
    assert_int_equal(kw_validate_environment("staging", &err), KW_OK);
    assert_int_equal(kw_validate_environment("dev2", &err), KW_OK);
    const char *bad[] = {"", "Prod", "1abc", "pro-d", "abcdefghijklmnopq", "root", "a b", NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(kw_validate_environment(*b, &err), KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "environment"));
    }
    assert_int_equal(kw_validate_environment(NULL, &err), KW_ERR_INVALID);
}

static void test_emails(void **state)
{
    (void)state;
    char out[KW_EMAIL_BUFSZ];
    kw_error err;
    assert_int_equal(kw_validate_email("Admin@Example.COM", out, &err), KW_OK);
    assert_string_equal(out, "admin@example.com");
    assert_int_equal(kw_validate_email("admin@localhost", out, &err), KW_OK);
    const char *bad[] = {"",        "a",         "@x.com", "a@",     "a@b@c",
                         "a b@c.d", "a@b_c.com", "a@.com", "a@com.", "\xc3\xa9@x.com",
                         NULL};
    for (const char **b = bad; *b; b++)
        assert_int_equal(kw_validate_email(*b, out, &err), KW_ERR_INVALID);
}

static void test_ids(void **state)
{
    (void)state;
    kw_error err;
    assert_int_equal(kw_validate_id("acc_0123456789abcdefghijKL", "acc", "account id", &err),
                     KW_OK);
    assert_int_equal(kw_validate_id("key_0123456789abcdefghijKL", "acc", "account id", &err),
                     KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "account id"));
    assert_int_equal(kw_validate_id("acc_short", "acc", "account id", &err), KW_ERR_INVALID);
    assert_int_equal(kw_validate_id("acc_0123456789abcdefghij_L", "acc", "account id", &err),
                     KW_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_names_are_trimmed),
        cmocka_unit_test(test_bad_names_are_refused_with_the_field_named),
        cmocka_unit_test(test_one_hundred_characters_are_allowed),
        cmocka_unit_test(test_environments),
        cmocka_unit_test(test_emails),
        cmocka_unit_test(test_ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
