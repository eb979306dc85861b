/*
 * The key limit under concurrent creates: from threads sharing one
 * service, from threads each with its own connection, and from processes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/service.h"
#include "testutil.h"

enum { THREADS = 16, PER_THREAD = 10, LIMIT = 25 };

typedef struct {
    const char *dir;
    kw_service *shared; /* NULL: open a service of its own */
    const char *account_id;
    pthread_barrier_t *start;
    int created;
    int limited;
    int other;
    char secrets[PER_THREAD][KW_KEY_BUFSZ];
} worker;

static void *on_worker(void *arg)
{
    worker *w = arg;
    kw_service *svc = w->shared;
    kw_error err;
    if (!svc) {
        kw_config cfg;
        tu_config(&cfg, w->dir);
        if (kw_service_open(&cfg, &svc, &err) != KW_OK) {
            w->other = PER_THREAD;
            pthread_barrier_wait(w->start);
            return NULL;
        }
    }
    pthread_barrier_wait(w->start);
    for (int i = 0; i < PER_THREAD; i++) {
        kw_key k;
        char secret[KW_KEY_BUFSZ];
        kw_status st = kw_service_key_create(svc, "test", w->account_id, "racer", NULL,
                                             KW_TIME_NONE, &k, secret, &err);
        if (st == KW_OK)
            memcpy(w->secrets[w->created++], secret, KW_KEY_BUFSZ);
        else if (st == KW_ERR_LIMIT)
            w->limited++;
        else
            w->other++;
    }
    if (!w->shared)
        kw_service_close(svc);
    return NULL;
}

static void race(int shared)
{
    char *dir;
    kw_service *svc = tu_service(&dir);
    kw_account acc;
    kw_error err;
    assert_int_equal(kw_service_account_create(svc, "test", "Racers", &acc, &err), KW_OK);

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    static worker w[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i] = (worker){
            .dir = dir, .shared = shared ? svc : NULL, .account_id = acc.id, .start = &start};
        pthread_create(&t[i], NULL, on_worker, &w[i]);
    }
    int created = 0, limited = 0, other = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        created += w[i].created;
        limited += w[i].limited;
        other += w[i].other;
    }
    pthread_barrier_destroy(&start);
    assert_int_equal(other, 0);
    assert_int_equal(created, LIMIT);
    assert_int_equal(limited, THREADS * PER_THREAD - LIMIT);

    /* Every success verifies; every refusal created nothing. */
    for (int i = 0; i < THREADS; i++) {
        for (int j = 0; j < w[i].created; j++) {
            kw_verify_result r;
            assert_int_equal(kw_service_key_verify(svc, w[i].secrets[j], strlen(w[i].secrets[j]),
                                                   NULL, &r, &err),
                             KW_OK);
            assert_int_equal(r.code, KW_VERIFY_VALID);
        }
    }
    kw_key_list list;
    assert_int_equal(kw_service_key_list(svc, acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, LIMIT);
    kw_key_list_free(&list);
    kw_audit_list log;
    assert_int_equal(kw_service_audit_list(svc, acc.id, 1000, &log, &err), KW_OK);
    assert_int_equal(log.count, LIMIT + 1); /* the creates and account.create */
    kw_audit_list_free(&log);

    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

static void test_threads_sharing_one_service(void **state)
{
    (void)state;
    race(1);
}

static void test_threads_each_with_their_own_connection(void **state)
{
    (void)state;
    race(0);
}

static void test_processes(void **state)
{
    (void)state;
    char *dir;
    kw_service *svc = tu_service(&dir);
    kw_account acc;
    kw_error err;
    assert_int_equal(kw_service_account_create(svc, "test", "Forked", &acc, &err), KW_OK);
    /* No SQLite connection may cross a fork: close ours first. */
    kw_service_close(svc);
    enum { PROCS = 6 };
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        assert_true(pids[p] >= 0);
        if (pids[p] == 0) {
            kw_config cfg;
            kw_service *mine;
            tu_config(&cfg, dir);
            if (kw_service_open(&cfg, &mine, &err) != KW_OK)
                _exit(100);
            int created = 0;
            for (int i = 0; i < PER_THREAD; i++) {
                kw_key k;
                char secret[KW_KEY_BUFSZ];
                kw_status st = kw_service_key_create(mine, "test", acc.id, "proc", NULL,
                                                     KW_TIME_NONE, &k, secret, &err);
                if (st == KW_OK)
                    created++;
                else if (st != KW_ERR_LIMIT)
                    _exit(101);
            }
            kw_service_close(mine);
            _exit(created);
        }
    }
    int total = 0;
    for (int p = 0; p < PROCS; p++) {
        int status;
        waitpid(pids[p], &status, 0);
        assert_true(WIFEXITED(status));
        assert_true(WEXITSTATUS(status) <= PER_THREAD);
        total += WEXITSTATUS(status);
    }
    assert_int_equal(total, LIMIT);
    kw_config cfg;
    tu_config(&cfg, dir);
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(svc, acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, LIMIT);
    kw_key_list_free(&list);
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_sharing_one_service),
        cmocka_unit_test(test_threads_each_with_their_own_connection),
        cmocka_unit_test(test_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
