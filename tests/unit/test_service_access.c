/*
 * Root keys, console users and the audit log through the service.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/service.h"
#include "testutil.h"

typedef struct {
    char *dir;
    kw_service *svc;
    kw_account acc;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->svc = tu_service(&f->dir);
    kw_error err;
    if (kw_service_account_create(f->svc, "test", "Acme", &f->acc, &err) != KW_OK)
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

static void test_first_run_bootstraps_only_an_empty_store(void **state)
{
    (void)state;
    char *dir;
    kw_service *svc = tu_service(&dir);
    kw_account acc;
    kw_user user, signed_in;
    kw_root_key rk, authed;
    char password[KW_GENERATED_PASSWORD_LEN + 1];
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_bootstrap(svc, &acc, &user, password, &rk, secret, &err), KW_OK);
    assert_string_equal(acc.name, "Default");
    assert_string_equal(user.email, "admin@localhost");
    assert_string_equal(user.account_id, acc.id);
    assert_int_equal(strlen(password), KW_GENERATED_PASSWORD_LEN);
    assert_int_equal(
        kw_service_user_login(svc, "admin@localhost", password, strlen(password), &signed_in, &err),
        KW_OK);
    assert_int_equal(kw_service_root_key_authenticate(svc, secret, strlen(secret), &authed, &err),
                     KW_OK);
    assert_string_equal(authed.id, rk.id);

    /* A second start, or a second node, finds the store in use and adds nothing. */
    kw_account acc2;
    kw_user user2;
    kw_root_key rk2;
    char password2[KW_GENERATED_PASSWORD_LEN + 1];
    char secret2[KW_KEY_BUFSZ];
    assert_int_equal(kw_service_bootstrap(svc, &acc2, &user2, password2, &rk2, secret2, &err),
                     KW_ERR_CONFLICT);
    assert_string_equal(password2, "");
    assert_string_equal(secret2, "");
    kw_account_list accounts;
    assert_int_equal(kw_service_account_list(svc, &accounts, &err), KW_OK);
    assert_int_equal(accounts.count, 1);
    kw_account_list_free(&accounts);
    kw_root_key_list roots;
    assert_int_equal(kw_service_root_key_list(svc, &roots, &err), KW_OK);
    assert_int_equal(roots.count, 1);
    kw_root_key_list_free(&roots);

    int64_t active = -1;
    assert_int_equal(kw_service_key_count_active(svc, &active, &err), KW_OK);
    assert_int_equal(active, 0);
    kw_key key;
    assert_int_equal(
        kw_service_key_create(svc, "test", acc.id, "CRM", NULL, KW_TIME_NONE, &key, secret2, &err),
        KW_OK);
    assert_int_equal(kw_service_key_count_active(svc, &active, &err), KW_OK);
    assert_int_equal(active, 1);
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

static void test_root_key_lifecycle(void **state)
{
    fixture *f = *state;
    kw_root_key rk, who;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_root_key_create(f->svc, "cli", "backend", &rk, secret, &err),
                     KW_OK);
    assert_memory_equal(secret, "kw_root_", 8);
    assert_memory_equal(rk.id, "rk_", 3);
    assert_int_equal(kw_service_root_key_authenticate(f->svc, secret, strlen(secret), &who, &err),
                     KW_OK);
    assert_string_equal(who.id, rk.id);

    kw_root_key_list list;
    assert_int_equal(kw_service_root_key_list(f->svc, &list, &err), KW_OK);
    assert_int_equal(list.count, 1);
    assert_string_equal(list.items[0].masked, rk.masked);
    kw_root_key_list_free(&list);

    /* A root key is not an account key, and the other way round. */
    kw_verify_result r;
    assert_int_equal(kw_service_key_verify(f->svc, secret, strlen(secret), NULL, &r, &err), KW_OK);
    assert_int_equal(r.code, KW_VERIFY_NOT_FOUND);
    kw_key k;
    char key[KW_KEY_BUFSZ];
    assert_int_equal(
        kw_service_key_create(f->svc, "test", f->acc.id, "k", NULL, KW_TIME_NONE, &k, key, &err),
        KW_OK);
    assert_int_equal(kw_service_root_key_authenticate(f->svc, key, strlen(key), &who, &err),
                     KW_ERR_UNAUTHORIZED);

    assert_int_equal(kw_service_root_key_delete(f->svc, "cli", rk.id, &err), KW_OK);
    assert_int_equal(kw_service_root_key_authenticate(f->svc, secret, strlen(secret), &who, &err),
                     KW_ERR_UNAUTHORIZED);
    assert_int_equal(kw_service_root_key_delete(f->svc, "cli", rk.id, &err), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_service_root_key_delete(f->svc, "cli", "rk_bad", &err), KW_ERR_INVALID);
    assert_int_equal(kw_service_root_key_authenticate(f->svc, "garbage", 7, &who, &err),
                     KW_ERR_UNAUTHORIZED);
}

static void test_users_sign_in_with_argon2id_passwords(void **state)
{
    fixture *f = *state;
    kw_user u, who;
    kw_error err;
    const char *pw = "correct horse battery staple";
    assert_int_equal(kw_service_user_add(f->svc, "cli", f->acc.id, "Admin@Example.com", pw,
                                         strlen(pw), &u, &err),
                     KW_OK);
    assert_string_equal(u.email, "admin@example.com");
    assert_memory_equal(u.id, "usr_", 4);
    assert_int_equal(kw_service_user_login(f->svc, "admin@example.COM", pw, strlen(pw), &who, &err),
                     KW_OK);
    assert_string_equal(who.id, u.id);
    assert_string_equal(who.account_id, f->acc.id);

    kw_error wrong_pw, wrong_email;
    assert_int_equal(
        kw_service_user_login(f->svc, "admin@example.com", "wrong password!", 15, &who, &wrong_pw),
        KW_ERR_UNAUTHORIZED);
    assert_int_equal(
        kw_service_user_login(f->svc, "nobody@example.com", pw, strlen(pw), &who, &wrong_email),
        KW_ERR_UNAUTHORIZED);
    assert_string_equal(wrong_pw.message, wrong_email.message);
    assert_string_equal(who.id, "");

    assert_int_equal(kw_service_user_add(f->svc, "cli", f->acc.id, "ADMIN@example.com", pw,
                                         strlen(pw), &u, &err),
                     KW_ERR_CONFLICT);
    assert_int_equal(
        kw_service_user_add(f->svc, "cli", f->acc.id, "b@example.com", "short", 5, &u, &err),
        KW_ERR_INVALID);
    assert_null(strstr(err.message, "short"));
    assert_int_equal(kw_service_user_add(f->svc, "cli", "acc_0000000000000000000000",
                                         "c@example.com", pw, strlen(pw), &u, &err),
                     KW_ERR_NOT_FOUND);
    assert_int_equal(
        kw_service_user_add(f->svc, "cli", f->acc.id, "not an email", pw, strlen(pw), &u, &err),
        KW_ERR_INVALID);
}

static void test_audit_log_records_who_did_what_without_secrets(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_key_create(f->svc, "root_key:rk_x", f->acc.id, "Vendor A",
                                           "staging", KW_TIME_NONE, &k, secret, &err),
                     KW_OK);
    assert_int_equal(kw_service_key_delete(f->svc, "user:usr_y", f->acc.id, k.id, &err), KW_OK);
    kw_audit_list log;
    assert_int_equal(kw_service_audit_list(f->svc, NULL, 100, &log, &err), KW_OK);
    assert_int_equal(log.count, 3);
    assert_string_equal(log.items[0].action, "key.delete");
    assert_string_equal(log.items[0].actor, "user:usr_y");
    assert_string_equal(log.items[0].key_id, k.id);
    assert_string_equal(log.items[1].action, "key.create");
    assert_string_equal(log.items[1].actor, "root_key:rk_x");
    assert_string_equal(log.items[1].key_name, "Vendor A");
    assert_string_equal(log.items[2].action, "account.create");
    for (size_t i = 0; i < log.count; i++) {
        assert_null(strstr(log.items[i].key_name, secret + 16));
        assert_null(strstr(log.items[i].actor, secret + 16));
    }
    kw_audit_list_free(&log);
    assert_int_equal(kw_service_audit_list(f->svc, NULL, 0, &log, &err), KW_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_run_bootstraps_only_an_empty_store),
        cmocka_unit_test_setup_teardown(test_root_key_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_sign_in_with_argon2id_passwords, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_audit_log_records_who_did_what_without_secrets, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
