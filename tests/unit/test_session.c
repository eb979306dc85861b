/*
 * Console sessions through the service: tokens, CSRF tokens, idle and
 * absolute expiry (on a clock the test moves), sign-out.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/service.h"
#include "testutil.h"

static int64_t now_s = 1795741323;

static int64_t test_clock(void)
{
    return now_s;
}

typedef struct {
    char *dir;
    kw_service *svc;
} fixture;

#define PASSWORD "correct horse battery"

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    kw_config cfg;
    tu_config(&cfg, f->dir);
    cfg.clock = test_clock;
    cfg.session_idle_s = 600;
    cfg.session_absolute_s = 3600;
    kw_error err;
    if (kw_service_open(&cfg, &f->svc, &err) != KW_OK)
        return -1;
    kw_account acc;
    kw_user u;
    if (kw_service_account_create(f->svc, "test", "Acme", &acc, &err) != KW_OK ||
        kw_service_user_add(f->svc, "test", acc.id, "ada@example.com", PASSWORD, strlen(PASSWORD),
                            &u, &err) != KW_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kw_service_close(f->svc);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void sign_in(fixture *f, char token[KW_SESSION_TOKEN_BUFSZ],
                    char csrf[KW_SESSION_TOKEN_BUFSZ])
{
    kw_session s;
    kw_error err;
    assert_int_equal(kw_service_session_create(f->svc, "Ada@Example.com", PASSWORD,
                                               strlen(PASSWORD), &s, token, csrf, &err),
                     KW_OK);
    assert_string_equal(s.user.email, "ada@example.com");
}

static kw_status get(fixture *f, const char *token)
{
    kw_session s;
    kw_error err;
    return kw_service_session_get(f->svc, token, strlen(token), &s, NULL, &err);
}

static void test_tokens_and_csrf(void **state)
{
    fixture *f = *state;
    char token[KW_SESSION_TOKEN_BUFSZ], csrf[KW_SESSION_TOKEN_BUFSZ];
    char token2[KW_SESSION_TOKEN_BUFSZ], csrf2[KW_SESSION_TOKEN_BUFSZ];
    sign_in(f, token, csrf);
    sign_in(f, token2, csrf2);
    assert_int_equal(strlen(token), 47);
    assert_memory_equal(token, "kws_", 4);
    assert_string_not_equal(token, token2);
    assert_string_not_equal(csrf, csrf2);
    assert_true(kw_service_session_csrf_ok(f->svc, token, strlen(token), csrf));
    assert_false(kw_service_session_csrf_ok(f->svc, token, strlen(token), csrf2));
    assert_false(kw_service_session_csrf_ok(f->svc, token, strlen(token), NULL));
    assert_false(kw_service_session_csrf_ok(f->svc, token, strlen(token), ""));
    /* GET gives the same CSRF token back */
    kw_session s;
    char again[KW_SESSION_TOKEN_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_session_get(f->svc, token, strlen(token), &s, again, &err), KW_OK);
    assert_string_equal(again, csrf);
    /* wrong passwords, garbage and look-alike tokens */
    char t[KW_SESSION_TOKEN_BUFSZ], c[KW_SESSION_TOKEN_BUFSZ];
    assert_int_equal(
        kw_service_session_create(f->svc, "ada@example.com", "wrong password!", 15, &s, t, c, &err),
        KW_ERR_UNAUTHORIZED);
    assert_string_equal(t, "");
    char forged[KW_SESSION_TOKEN_BUFSZ];
    strcpy(forged, token);
    forged[10] = forged[10] == 'A' ? 'B' : 'A';
    assert_int_equal(get(f, forged), KW_ERR_UNAUTHORIZED);
    assert_int_equal(get(f, "kws_short"), KW_ERR_UNAUTHORIZED);
    assert_int_equal(get(f, ""), KW_ERR_UNAUTHORIZED);
}

static void test_idle_and_absolute_expiry(void **state)
{
    fixture *f = *state;
    char token[KW_SESSION_TOKEN_BUFSZ], csrf[KW_SESSION_TOKEN_BUFSZ];
    int64_t start = now_s;
    sign_in(f, token, csrf);
    /* used every 500 s: never idle for 600 s ... */
    for (int i = 1; i <= 6; i++) {
        now_s = start + 500 * i;
        assert_int_equal(get(f, token), KW_OK);
    }
    /* ... but over after an hour in any case */
    now_s = start + 3600;
    assert_int_equal(get(f, token), KW_ERR_UNAUTHORIZED);

    sign_in(f, token, csrf);
    now_s += 599;
    assert_int_equal(get(f, token), KW_OK);
    now_s += 600;
    assert_int_equal(get(f, token), KW_ERR_UNAUTHORIZED);
    /* an ended session stays ended */
    now_s -= 1000;
    assert_int_equal(get(f, token), KW_ERR_UNAUTHORIZED);
}

static void test_sign_out(void **state)
{
    fixture *f = *state;
    char token[KW_SESSION_TOKEN_BUFSZ], csrf[KW_SESSION_TOKEN_BUFSZ];
    sign_in(f, token, csrf);
    kw_error err;
    assert_int_equal(kw_service_session_delete(f->svc, token, strlen(token), &err), KW_OK);
    assert_int_equal(get(f, token), KW_ERR_UNAUTHORIZED);
    assert_int_equal(kw_service_session_delete(f->svc, token, strlen(token), &err),
                     KW_ERR_UNAUTHORIZED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tokens_and_csrf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_and_absolute_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_out, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
