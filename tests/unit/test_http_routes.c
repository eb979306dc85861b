/*
 * The route table: matching, parameters, 405 hints, and agreement with the
 * OpenAPI document served at /openapi.json (every served route is
 * documented and every documented route is served).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "http/assets.h"
#include "http/http_internal.h"

static int match(const char *method, const char *path, char *buf, const char *params[2],
                 char *allow)
{
    snprintf(buf, 256, "%s", path);
    return kw_http_route_match(method, buf, params, allow, 64);
}

static void test_matches_templates_and_splits_parameters(void **state)
{
    (void)state;
    char buf[256], allow[64];
    const char *params[2];
    int r = match("DELETE", "/v1/accounts/acc_1/keys/key_2", buf, params, allow);
    assert_true(r >= 0);
    assert_string_equal(kw_http_route_info_at((size_t)r)->pattern,
                        "/v1/accounts/{account_id}/keys/{key_id}");
    assert_string_equal(params[0], "acc_1");
    assert_string_equal(params[1], "key_2");

    r = match("GET", "/v1/accounts/acc_1", buf, params, allow);
    assert_true(r >= 0);
    assert_string_equal(params[0], "acc_1");
    assert_null(params[1]);

    /* HEAD is answered by the GET route. */
    assert_true(match("HEAD", "/healthz", buf, params, allow) >= 0);
}

static void test_unknown_paths_and_wrong_methods(void **state)
{
    (void)state;
    char buf[256], allow[64];
    const char *params[2];
    const char *unknown[] = {"/v1/accounts/",
                             "/v1/accounts//keys",
                             "/v1/accounts/a/keys/",
                             "/v1/accounts/a/keys/b/c",
                             "/healthz/",
                             "//healthz",
                             "/v2/auth",
                             ""};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_int_equal(match("GET", unknown[i], buf, params, allow), -1);
        assert_string_equal(allow, "");
    }
    assert_int_equal(match("PUT", "/v1/accounts/a/keys/b", buf, params, allow), -1);
    assert_string_equal(allow, "GET, HEAD, PATCH, DELETE");
    assert_int_equal(match("GET", "/v1/keys/verify", buf, params, allow), -1);
    assert_string_equal(allow, "POST");
}

/* A literal segment wins over a parameter: /keys/revoke is never the key "revoke". */
static void test_literal_segment_beats_parameter(void **state)
{
    (void)state;
    char buf[256], allow[64];
    const char *params[2];
    int r = match("POST", "/v1/accounts/acc_1/keys/revoke", buf, params, allow);
    assert_true(r >= 0);
    assert_string_equal(kw_http_route_info_at((size_t)r)->pattern,
                        "/v1/accounts/{account_id}/keys/revoke");
    assert_string_equal(params[0], "acc_1");
    assert_null(params[1]);
    assert_int_equal(match("GET", "/v1/accounts/acc_1/keys/revoke", buf, params, allow), -1);
    assert_string_equal(allow, "POST");
    assert_int_equal(match("DELETE", "/v1/accounts/acc_1/keys/revoke", buf, params, allow), -1);
    assert_string_equal(allow, "POST");
    /* Another id is a key as before, and its PATCH and roll are routes. */
    r = match("PATCH", "/v1/accounts/acc_1/keys/key_2", buf, params, allow);
    assert_true(r >= 0);
    assert_string_equal(params[1], "key_2");
    r = match("POST", "/v1/accounts/acc_1/keys/key_2/roll", buf, params, allow);
    assert_true(r >= 0);
    assert_string_equal(params[1], "key_2");
    assert_int_equal(match("PUT", "/v1/accounts/a/keys/b", buf, params, allow), -1);
    assert_string_equal(allow, "GET, HEAD, PATCH, DELETE");
}

static json_t *openapi(void)
{
    const kw_asset *a = kw_asset_find("openapi.json");
    assert_non_null(a);
    json_error_t err;
    json_t *doc = json_loadb((const char *)a->data, a->len, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        fail_msg("openapi.json: %s at line %d", err.text, err.line);
    return doc;
}

static void lower(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
    out[i] = '\0';
}

static void test_every_served_route_is_documented(void **state)
{
    (void)state;
    json_t *doc = openapi();
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    json_t *paths = json_object_get(doc, "paths");
    for (size_t i = 0; i < kw_http_route_count(); i++) {
        const kw_http_route_info *info = kw_http_route_info_at(i);
        char method[16];
        lower(info->method, method, sizeof method);
        json_t *op = json_object_get(json_object_get(paths, info->pattern), method);
        if (!op)
            fail_msg("%s %s is served but not documented", info->method, info->pattern);
    }
    json_decref(doc);
}

static void test_every_documented_route_is_served(void **state)
{
    (void)state;
    static const char *const methods[] = {"get",   "put",  "post",    "delete",
                                          "patch", "head", "options", "trace"};
    json_t *doc = openapi();
    const char *path;
    json_t *item;
    size_t documented = 0;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            if (!json_object_get(item, methods[m]))
                continue;
            documented++;
            bool served = false;
            for (size_t i = 0; i < kw_http_route_count(); i++) {
                const kw_http_route_info *info = kw_http_route_info_at(i);
                char method[16];
                lower(info->method, method, sizeof method);
                served =
                    served || (strcmp(info->pattern, path) == 0 && strcmp(method, methods[m]) == 0);
            }
            if (!served)
                fail_msg("%s %s is documented but not served", methods[m], path);
        }
    }
    assert_int_equal(documented, kw_http_route_count());
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_templates_and_splits_parameters),
        cmocka_unit_test(test_unknown_paths_and_wrong_methods),
        cmocka_unit_test(test_literal_segment_beats_parameter),
        cmocka_unit_test(test_every_served_route_is_documented),
        cmocka_unit_test(test_every_documented_route_is_served),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
