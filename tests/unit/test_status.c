#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "core/status.h"

/*
 * The size of the table is checked when status.c compiles; a status in the
 * middle of the enum without a row would still leave a zeroed row, which
 * this test refuses.
 */
static void test_every_status_has_a_filled_row(void **state)
{
    (void)state;
    for (int st = 0; st < KW_STATUS_COUNT; st++) {
        const kw_status_row *row = kw_status_info((kw_status)st);
        assert_non_null(row->code);
        assert_true(strlen(row->code) > 0);
        assert_non_null(row->text);
        assert_true(strlen(row->text) > 0);
        if (st == KW_OK) {
            assert_int_equal(row->http_status, 200);
            assert_int_equal(row->exit_code, KW_CLI_EXIT_OK);
        } else {
            assert_in_range(row->http_status, 400, 599);
            assert_int_equal(row->exit_code, KW_CLI_EXIT_FAIL);
        }
        for (int other = 0; other < st; other++)
            assert_string_not_equal(row->code, kw_status_code((kw_status)other));
    }
}

/*
 * The rows as src/http/openapi.json lists the codes with their HTTP status
 * and docs/operations.md the exit codes.
 */
static void test_the_documented_mappings(void **state)
{
    (void)state;
    static const struct {
        kw_status st;
        const char *code;
        unsigned http;
    } want[] = {
        {KW_ERR_INVALID, "invalid_request", 400},   {KW_ERR_NOT_FOUND, "not_found", 404},
        {KW_ERR_LIMIT, "key_limit_reached", 409},   {KW_ERR_CONFLICT, "conflict", 409},
        {KW_ERR_UNAUTHORIZED, "unauthorized", 401}, {KW_ERR_FORBIDDEN, "forbidden", 403},
        {KW_ERR_UNAVAILABLE, "unavailable", 503},   {KW_ERR_INTERNAL, "internal", 500},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_string_equal(kw_status_code(want[i].st), want[i].code);
        assert_int_equal(kw_status_http(want[i].st), want[i].http);
        assert_int_equal(kw_status_exit_code(want[i].st), KW_CLI_EXIT_FAIL);
    }
    assert_int_equal(kw_status_exit_code(KW_OK), KW_CLI_EXIT_OK);
}

static void test_an_unknown_status_reads_as_internal(void **state)
{
    (void)state;
    assert_ptr_equal(kw_status_info(KW_STATUS_COUNT), kw_status_info(KW_ERR_INTERNAL));
    assert_ptr_equal(kw_status_info((kw_status)-1), kw_status_info(KW_ERR_INTERNAL));
    assert_int_equal(kw_status_http((kw_status)1000), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_status_has_a_filled_row),
        cmocka_unit_test(test_the_documented_mappings),
        cmocka_unit_test(test_an_unknown_status_reads_as_internal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
