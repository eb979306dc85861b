/*
 * A process killed with SIGKILL in the middle of a stream of creates
 * leaves a database that passes PRAGMA integrity_check, in which every key
 * whose secret had been handed out still verifies. One killed in the middle
 * of a revoke-all leaves every key or none of them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "core/service.h"
#include "testutil.h"

enum { ROUNDS = 6, MAX_KEYS = 2000 };

static char secrets[MAX_KEYS][KW_KEY_BUFSZ];
static int nsecrets;

/* The child: create keys forever, handing out each secret once committed. */
static void child(const char *dir, const char *account_id, int out)
{
    kw_config cfg;
    kw_service *svc;
    kw_error err;
    tu_config(&cfg, dir);
    cfg.max_keys_per_account = 100000;
    if (kw_service_open(&cfg, &svc, &err) != KW_OK)
        _exit(1);
    for (;;) {
        kw_key k;
        char line[KW_KEY_BUFSZ + 1];
        if (kw_service_key_create(svc, "test", account_id, "stream", NULL, KW_TIME_NONE, &k, line,
                                  &err) != KW_OK)
            _exit(2);
        size_t n = strlen(line);
        line[n++] = '\n';
        if (write(out, line, n) != (ssize_t)n)
            _exit(3);
    }
}

/* Reads whole lines from fd until EOF into secrets[]. */
static void collect(FILE *in)
{
    char line[256];
    while (fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n')
            break; /* a line cut by the kill was never handed out */
        line[n - 1] = '\0';
        if (nsecrets < MAX_KEYS)
            memcpy(secrets[nsecrets++], line, n);
    }
}

static void test_sigkill_mid_stream_loses_nothing_handed_out(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    char account_id[KW_ID_BUFSZ];
    {
        kw_config cfg;
        kw_service *svc;
        kw_account acc;
        kw_error err;
        tu_config(&cfg, dir);
        assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
        assert_int_equal(kw_service_account_create(svc, "test", "Crashy", &acc, &err), KW_OK);
        memcpy(account_id, acc.id, sizeof account_id);
        kw_service_close(svc); /* no connection crosses the fork */
    }
    srand((unsigned)time(NULL));
    nsecrets = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child(dir, account_id, fds[1]);
        }
        close(fds[1]);
        FILE *in = fdopen(fds[0], "r");
        /* Let some keys through, then kill at a random moment. */
        int want = 5 + rand() % 40, got = 0;
        char line[256];
        while (got < want && fgets(line, sizeof line, in)) {
            size_t n = strlen(line);
            line[n - 1] = '\0';
            memcpy(secrets[nsecrets++], line, n);
            got++;
        }
        usleep((useconds_t)(rand() % 3000));
        kill(pid, SIGKILL);
        collect(in);
        fclose(in);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        assert_int_equal(got, want);
    }

    char path[4200];
    snprintf(path, sizeof path, "%s/keyward.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);

    kw_config cfg;
    kw_service *svc;
    kw_error err;
    tu_config(&cfg, dir);
    cfg.max_keys_per_account = 100000;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    for (int i = 0; i < nsecrets; i++) {
        kw_verify_result r;
        assert_int_equal(kw_service_key_verify(svc, secrets[i], strlen(secrets[i]), NULL, &r, &err),
                         KW_OK);
        assert_int_equal(r.code, KW_VERIFY_VALID);
    }
    kw_key_list list;
    assert_int_equal(kw_service_key_list(svc, account_id, &list, &err), KW_OK);
    assert_true(list.count >= (size_t)nsecrets);
    /* At most one create per round was committed but never handed out. */
    assert_true(list.count <= (size_t)nsecrets + ROUNDS);
    kw_key_list_free(&list);
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

enum { REVOKE_ROUNDS = 8, REVOKE_KEYS = 60 };

/* The child: says it starts, revokes every key of the account, says it is done. */
static void revoking_child(const char *dir, const char *account_id, int out)
{
    kw_config cfg;
    kw_service *svc;
    kw_error err;
    tu_config(&cfg, dir);
    if (kw_service_open(&cfg, &svc, &err) != KW_OK)
        _exit(1);
    int revoked = 0;
    if (write(out, "go\n", 3) != 3 ||
        kw_service_key_revoke_all(svc, "test", account_id, NULL, &revoked, &err) != KW_OK)
        _exit(2);
    if (write(out, "done\n", 5) != 5)
        _exit(3);
    pause();
    _exit(0);
}

static size_t key_count(const char *dir, const char *account_id)
{
    kw_config cfg;
    kw_service *svc;
    kw_error err;
    kw_key_list list;
    tu_config(&cfg, dir);
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    assert_int_equal(kw_service_key_list(svc, account_id, &list, &err), KW_OK);
    size_t n = list.count;
    kw_key_list_free(&list);
    kw_service_close(svc);
    return n;
}

static void test_sigkill_mid_revoke_all_leaves_all_or_nothing(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    char account_id[KW_ID_BUFSZ];
    kw_config cfg;
    kw_service *svc;
    kw_error err;
    tu_config(&cfg, dir);
    cfg.max_keys_per_account = REVOKE_KEYS;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    kw_account acc;
    assert_int_equal(kw_service_account_create(svc, "test", "Revoked", &acc, &err), KW_OK);
    memcpy(account_id, acc.id, sizeof account_id);
    kw_service_close(svc);
    srand((unsigned)time(NULL));
    int none = 0, all = 0;
    for (int round = 0; round < REVOKE_ROUNDS; round++) {
        /* Refill the account (no connection crosses the fork). */
        assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
        for (size_t n = key_count(dir, account_id); n < REVOKE_KEYS; n++) {
            kw_key k;
            char secret[KW_KEY_BUFSZ];
            assert_int_equal(kw_service_key_create(svc, "test", account_id, "doomed", "staging",
                                                   KW_TIME_NONE, &k, secret, &err),
                             KW_OK);
            sodium_memzero(secret, sizeof secret);
        }
        kw_service_close(svc);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            revoking_child(dir, account_id, fds[1]);
        }
        close(fds[1]);
        FILE *in = fdopen(fds[0], "r");
        char line[16];
        assert_non_null(fgets(line, sizeof line, in));
        assert_string_equal(line, "go\n");
        /* Rounds spread from before the transaction to after its commit. */
        usleep((useconds_t)(round * 1500 + rand() % 1500));
        kill(pid, SIGKILL);
        fclose(in);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFSIGNALED(status));
        size_t left = key_count(dir, account_id);
        if (left != 0 && left != REVOKE_KEYS)
            fail_msg("round %d: a killed revoke-all left %zu of %d keys", round, left, REVOKE_KEYS);
        left == 0 ? none++ : all++;
    }
    print_message("revoke-all killed %d times: %d left every key, %d none\n", REVOKE_ROUNDS, all,
                  none);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_mid_stream_loses_nothing_handed_out),
        cmocka_unit_test(test_sigkill_mid_revoke_all_leaves_all_or_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
