#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <regex.h>
#include <string.h>

#include <sodium.h>

#include "core/keyfmt.h"

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void test_generated_key_has_the_documented_shape(void **state)
{
    (void)state;
    char key[KW_KEY_BUFSZ];
    assert_true(kw_keyfmt_generate("kw", "production", key));
    assert_int_equal(strlen(key), strlen("kw_production_") + 43 + 6);
    regex_t re;
    assert_int_equal(regcomp(&re, "^kw_production_[A-Za-z0-9]{49}$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, key, 0, NULL, 0), 0);
    regfree(&re);
}

static void test_round_trip(void **state)
{
    (void)state;
    const char *envs[] = {"production", "staging", "a", "dev2", "abcdefghijklmnop"};
    for (size_t e = 0; e < sizeof envs / sizeof envs[0]; e++) {
        for (int i = 0; i < 200; i++) {
            char key[KW_KEY_BUFSZ];
            assert_true(kw_keyfmt_generate("kw", envs[e], key));
            kw_keyfmt_parts parts;
            assert_true(kw_keyfmt_parse(key, strlen(key), "kw", &parts));
            assert_int_equal(parts.prefix_len, 2);
            assert_int_equal(parts.environment_len, strlen(envs[e]));
            assert_memory_equal(parts.environment, envs[e], parts.environment_len);
        }
    }
}

static void test_keys_are_distinct(void **state)
{
    (void)state;
    char a[KW_KEY_BUFSZ], b[KW_KEY_BUFSZ];
    kw_keyfmt_generate("kw", "production", a);
    kw_keyfmt_generate("kw", "production", b);
    assert_string_not_equal(a, b);
}

/* Every single-character change of a valid key, to any character of the
 * key alphabet or a few others, is refused. */
static void test_every_single_character_change_is_refused(void **state)
{
    (void)state;
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_- .\x01\x80\xff";
    for (int round = 0; round < 5; round++) {
        char key[KW_KEY_BUFSZ];
        kw_keyfmt_generate(round % 2 ? "kw" : "acme", round % 2 ? "staging" : "production", key);
        size_t len = strlen(key);
        size_t tried = 0;
        for (size_t i = 0; i < len; i++) {
            for (const char *c = alphabet; *c; c++) {
                if (*c == key[i])
                    continue;
                char copy[KW_KEY_BUFSZ];
                memcpy(copy, key, len + 1);
                copy[i] = *c;
                assert_false(kw_keyfmt_parse(copy, len, NULL, NULL));
                tried++;
            }
        }
        assert_true(tried > len * 60);
    }
}

static void test_wrong_shapes_are_refused(void **state)
{
    (void)state;
    char key[KW_KEY_BUFSZ];
    kw_keyfmt_generate("kw", "production", key);
    size_t len = strlen(key);
    assert_false(kw_keyfmt_parse(key, len - 1, NULL, NULL)); /* truncated */
    char longer[KW_KEY_BUFSZ + 2];
    snprintf(longer, sizeof longer, "%sA", key);
    assert_false(kw_keyfmt_parse(longer, len + 1, NULL, NULL));
    assert_false(kw_keyfmt_parse("", 0, NULL, NULL));
    assert_false(kw_keyfmt_parse("kw_production_", 14, NULL, NULL));
    assert_false(kw_keyfmt_parse(NULL, 0, NULL, NULL));
    assert_false(kw_keyfmt_parse(key, len, "other", NULL)); /* another deployment's prefix */
    /* A NUL inside the counted bytes is not a key. */
    char with_nul[KW_KEY_BUFSZ];
    memcpy(with_nul, key, len + 1);
    with_nul[20] = '\0';
    assert_false(kw_keyfmt_parse(with_nul, len, NULL, NULL));
}

static void test_bad_prefix_or_environment_cannot_be_generated(void **state)
{
    (void)state;
    char key[KW_KEY_BUFSZ];
    assert_false(kw_keyfmt_generate("k", "production", key));
    assert_false(kw_keyfmt_generate("Kw", "production", key));
    assert_false(kw_keyfmt_generate("abcdefghijk", "production", key));
    assert_false(kw_keyfmt_generate("kw", "Prod", key));
    assert_false(kw_keyfmt_generate("kw", "abcdefghijklmnopq", key));
    assert_false(kw_keyfmt_generate("kw", "1abc", key));
    assert_false(kw_keyfmt_generate("kw", "", key));
    assert_true(kw_keyfmt_prefix_valid("kw"));
    assert_true(kw_keyfmt_prefix_valid("abcdefghij"));
}

static void test_mask_shows_prefix_environment_and_eight_characters(void **state)
{
    (void)state;
    char key[KW_KEY_BUFSZ], masked[KW_MASKED_BUFSZ];
    kw_keyfmt_generate("kw", "staging", key);
    size_t len = strlen(key);
    kw_keyfmt_mask(key, len, masked);
    char expect[KW_MASKED_BUFSZ];
    snprintf(expect, sizeof expect, "kw_staging_%.4s\xe2\x80\xa6%s", key + 11, key + len - 4);
    assert_string_equal(masked, expect);
    /* The masked form is not a key and holds no run of the secret longer than 4. */
    assert_false(kw_keyfmt_parse(masked, strlen(masked), NULL, NULL));
    char five[6];
    memcpy(five, key + 11, 5);
    five[5] = '\0';
    assert_null(strstr(masked, five));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generated_key_has_the_documented_shape),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_keys_are_distinct),
        cmocka_unit_test(test_every_single_character_change_is_refused),
        cmocka_unit_test(test_wrong_shapes_are_refused),
        cmocka_unit_test(test_bad_prefix_or_environment_cannot_be_generated),
        cmocka_unit_test(test_mask_shows_prefix_environment_and_eight_characters),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
