#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/json.h"
#include "core/json_internal.h"

static void test_key_object_has_the_api_fields_and_no_secret(void **state)
{
    (void)state;
    kw_key k = {.id = "key_1",
                .account_id = "acc_1",
                .name = "Production CRM",
                .environment = "production",
                .masked = "kw_production_AbCd\xe2\x80\xa6WxYz",
                .created_at = 1795741323,
                .last_used_at = KW_TIME_NONE,
                .expires_at = KW_TIME_NONE,
                .enabled = true,
                .rolled_from = "key_0",
                .metadata = "{\"plan\":\"pro\"}"};
    json_t *j = kw_json_key(&k);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "key_1");
    assert_string_equal(json_string_value(json_object_get(j, "created_at")),
                        "2026-11-27T01:02:03Z");
    assert_true(json_is_null(json_object_get(j, "last_used_at")));
    assert_true(json_is_null(json_object_get(j, "expires_at")));
    assert_null(json_object_get(j, "secret"));
    assert_null(json_object_get(j, "hash"));
    assert_true(json_is_true(json_object_get(j, "enabled")));
    assert_non_null(json_string_value(json_object_get(j, "status")));
    assert_string_equal(json_string_value(json_object_get(j, "rolled_from")), "key_0");
    assert_true(json_is_null(json_object_get(j, "rolled_to")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "metadata"), "plan")),
                        "pro");
    assert_int_equal(json_object_size(j), 13);
    json_decref(j);
}

static void test_invalid_verification_carries_no_ids(void **state)
{
    (void)state;
    kw_verify_result r = {.code = KW_VERIFY_NOT_FOUND};
    json_t *j = kw_json_verify_result(&r);
    assert_int_equal(json_object_size(j), 2);
    assert_true(json_is_false(json_object_get(j, "valid")));
    assert_string_equal(json_string_value(json_object_get(j, "code")), "NOT_FOUND");
    json_decref(j);

    r.code = KW_VERIFY_VALID;
    strcpy(r.key.id, "key_1");
    strcpy(r.key.account_id, "acc_1");
    strcpy(r.key.environment, "staging");
    j = kw_json_verify_result(&r);
    assert_true(json_is_true(json_object_get(j, "valid")));
    assert_string_equal(json_string_value(json_object_get(j, "environment")), "staging");
    json_decref(j);
}

/* The hand-written verification text must equal jansson's, byte for byte. */
static void test_verify_text_equals_the_jansson_document(void **state)
{
    (void)state;
    static const char *const names[] = {
        "Production CRM",
        "quote \" and \\ backslash",
        "tab\tnew\nline\rcr\bbs\fff",
        "ctl \x01\x1f end",
        "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x94\x91",
        "/slash/",
        "x",
    };
    /* Metadata as kw_validate_metadata stores it: jansson's compact text. */
    static const char *const metadata[] = {
        "",
        "{\"plan\":\"pro\",\"seats\":12,\"beta\":true,\"ratio\":0.5}",
        "{\"note\":\"caf\xc3\xa9 \\\" \\n\"}",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0] * 3; i++) {
        for (int code = KW_VERIFY_VALID; code <= KW_VERIFY_DISABLED; code++) {
            kw_verify_result r = {.code = (kw_verify_code)code};
            strcpy(r.key.metadata, metadata[i % 3]);
            strcpy(r.key.id, "key_0gbstme5UF9UtDAA3P3okK");
            strcpy(r.key.account_id, "acc_7iDswA1EEaIgOSt9pioEJR");
            strcpy(r.key.name, names[i / 3]);
            strcpy(r.key.environment, "staging");
            json_t *doc = kw_json_verify_result(&r);
            char *want = json_dumps(doc, JSON_COMPACT);
            char got[1024];
            size_t n = kw_json_verify_text(&r, got, sizeof got);
            assert_string_equal(got, want);
            assert_int_equal(n, strlen(want));
            /* Too small a buffer is refused, never truncated. */
            assert_int_equal(kw_json_verify_text(&r, got, n), 0);
            kw_json_free(want);
            json_decref(doc);
        }
    }
}

static void test_wiping_allocator_round_trips(void **state)
{
    (void)state;
    kw_json_init();
    json_t *j = kw_json_key_created(&(kw_key){.id = "key_1"}, "kw_production_secret");
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(strstr(s, "\"secret\":\"kw_production_secret\""));
    kw_json_free(s);
    json_decref(j);
}

/* What the releases of test_wiping_allocator_wipes_what_it_frees saw. */
static struct {
    size_t blocks;
    size_t bytes;
    size_t nonzero; /* bytes that were not wiped */
    size_t longest;
} seen;

static void look_then_free(void *block, const void *data, size_t len)
{
    const unsigned char *p = data;
    seen.blocks++;
    seen.bytes += len;
    for (size_t i = 0; i < len; i++)
        seen.nonzero += p[i] != 0;
    if (len > seen.longest)
        seen.longest = len;
    free(block);
}

/* Every block jansson frees, the secret's copies among them, is zero when released. */
static void test_wiping_allocator_wipes_what_it_frees(void **state)
{
    (void)state;
    static const char secret[] = "kw_production_0gbstme5UF9UtDAA3P3okKsecretsecretsecretsecret";
    kw_json_init();
    kw_json_set_release(look_then_free);
    memset(&seen, 0, sizeof seen);
    json_t *j = kw_json_key_created(&(kw_key){.id = "key_1"}, secret);
    assert_non_null(j);
    char *s = json_dumps(j, JSON_COMPACT);
    assert_non_null(s);
    size_t dumped = strlen(s) + 1;
    assert_non_null(strstr(s, secret));
    kw_json_free(s);
    json_decref(j);
    kw_json_set_release(NULL);
    /* The dump went through the release, and so did the document's blocks. */
    assert_true(seen.longest >= dumped);
    assert_true(seen.blocks >= 3);
    assert_true(seen.bytes >= dumped + sizeof secret);
    assert_int_equal(seen.nonzero, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_object_has_the_api_fields_and_no_secret),
        cmocka_unit_test(test_invalid_verification_carries_no_ids),
        cmocka_unit_test(test_verify_text_equals_the_jansson_document),
        cmocka_unit_test(test_wiping_allocator_round_trips),
        cmocka_unit_test(test_wiping_allocator_wipes_what_it_frees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
