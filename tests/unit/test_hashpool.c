/*
 * The password-check pool: jobs run in order on threads of their own at
 * idle priority, the queue is bounded, the budget paces the jobs, and a
 * stop runs every waiting job once with "stopping". Last, the server: sign-
 * ins waiting in the pool when it stops are answered or closed, and nothing
 * leaks (the sanitizer run checks that).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/hashpool.h"
#include "http/http_internal.h"
#include "testutil.h"

typedef struct {
    kw_hashpool_job base;
    int id;
    bool stopping;
    int ran; /* times run */
    pthread_t thread;
    int policy;
    atomic_int *order; /* where the next job writes its id */
    int *log;
} test_job;

static void on_job(kw_hashpool_job *base, bool stopping)
{
    test_job *j = (test_job *)(void *)base;
    j->stopping = stopping;
    j->thread = pthread_self();
    struct sched_param p;
    pthread_getschedparam(pthread_self(), &j->policy, &p);
    if (j->order)
        j->log[atomic_fetch_add(j->order, 1)] = j->id;
    __atomic_add_fetch(&j->ran, 1, __ATOMIC_RELEASE);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until every job has run once; fails after 30 s. */
static void wait_all(test_job *jobs, size_t n)
{
    double deadline = seconds() + 30;
    for (size_t i = 0; i < n; i++)
        while (__atomic_load_n(&jobs[i].ran, __ATOMIC_ACQUIRE) == 0) {
            if (seconds() > deadline)
                fail_msg("job %zu never ran", i);
            usleep(1000);
        }
}

static void test_runs_jobs_in_order_on_an_idle_priority_thread(void **state)
{
    (void)state;
    kw_hashpool *pool = kw_hashpool_new(1, 16, 0);
    assert_non_null(pool);
    test_job jobs[10];
    int log[10];
    atomic_int order = 0;
    for (int i = 0; i < 10; i++) {
        jobs[i] = (test_job){.base = {.run = on_job}, .id = i, .order = &order, .log = log};
        assert_int_equal(kw_hashpool_submit(pool, &jobs[i].base), KW_HASHPOOL_QUEUED);
    }
    wait_all(jobs, 10);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(log[i], i);
        assert_false(jobs[i].stopping);
        assert_false(pthread_equal(jobs[i].thread, pthread_self()));
#ifdef SCHED_IDLE
        assert_int_equal(jobs[i].policy, SCHED_IDLE);
#endif
    }
    kw_hashpool_free(pool);
    for (int i = 0; i < 10; i++)
        assert_int_equal(jobs[i].ran, 1);
}

/* A job that holds its thread until released. */
typedef struct {
    kw_hashpool_job base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, released;
} blocker;

static void on_blocker(kw_hashpool_job *base, bool stopping)
{
    (void)stopping;
    blocker *b = (blocker *)(void *)base;
    pthread_mutex_lock(&b->mu);
    b->started = true;
    pthread_cond_broadcast(&b->cv);
    while (!b->released)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static void blocker_init(blocker *b)
{
    memset(b, 0, sizeof *b);
    b->base.run = on_blocker;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
}

static void blocker_wait_started(blocker *b)
{
    pthread_mutex_lock(&b->mu);
    while (!b->started)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

static void blocker_release(blocker *b)
{
    pthread_mutex_lock(&b->mu);
    b->released = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static void blocker_destroy(blocker *b)
{
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

static void test_a_full_queue_refuses_jobs(void **state)
{
    (void)state;
    kw_hashpool *pool = kw_hashpool_new(1, 2, 0);
    blocker b;
    blocker_init(&b);
    assert_int_equal(kw_hashpool_submit(pool, &b.base), KW_HASHPOOL_QUEUED);
    blocker_wait_started(&b); /* running: no longer waiting */
    test_job jobs[3];
    for (int i = 0; i < 3; i++)
        jobs[i] = (test_job){.base = {.run = on_job}, .id = i};
    assert_int_equal(kw_hashpool_submit(pool, &jobs[0].base), KW_HASHPOOL_QUEUED);
    assert_int_equal(kw_hashpool_submit(pool, &jobs[1].base), KW_HASHPOOL_QUEUED);
    assert_int_equal(kw_hashpool_waiting(pool), 2);
    assert_int_equal(kw_hashpool_submit(pool, &jobs[2].base), KW_HASHPOOL_FULL);
    blocker_release(&b);
    wait_all(jobs, 2);
    assert_int_equal(jobs[2].ran, 0);
    assert_int_equal(kw_hashpool_submit(pool, &jobs[2].base), KW_HASHPOOL_QUEUED);
    wait_all(jobs + 2, 1);
    kw_hashpool_free(pool);
    blocker_destroy(&b);
}

#define PROBES 64

typedef struct {
    kw_hashpool *pool;
    blocker *b;
    test_job probes[PROBES];
    size_t queued; /* probes the pool took before it began to stop */
} stopper_arg;

/* Releases the blocker once the pool refuses jobs: its stop has begun. */
static void *on_wait_for_stop(void *arg)
{
    stopper_arg *s = arg;
    for (;;) {
        test_job *probe = &s->probes[s->queued];
        *probe = (test_job){.base = {.run = on_job}, .id = 99};
        kw_hashpool_result r = kw_hashpool_submit(s->pool, &probe->base);
        if (r == KW_HASHPOOL_STOPPED)
            break;
        if (r == KW_HASHPOOL_QUEUED && s->queued + 1 < PROBES)
            s->queued++;
    }
    blocker_release(s->b);
    return NULL;
}

static void test_stop_runs_the_waiting_jobs_with_stopping(void **state)
{
    (void)state;
    kw_hashpool *pool = kw_hashpool_new(1, 64, 0);
    blocker b;
    blocker_init(&b);
    assert_int_equal(kw_hashpool_submit(pool, &b.base), KW_HASHPOOL_QUEUED);
    blocker_wait_started(&b);
    test_job jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = (test_job){.base = {.run = on_job}, .id = i};
        assert_int_equal(kw_hashpool_submit(pool, &jobs[i].base), KW_HASHPOOL_QUEUED);
    }
    static stopper_arg s;
    memset(&s, 0, sizeof s);
    s.pool = pool;
    s.b = &b;
    pthread_t watcher;
    assert_int_equal(pthread_create(&watcher, NULL, on_wait_for_stop, &s), 0);
    kw_hashpool_stop(pool); /* waits for the running job, then runs the others here */
    pthread_join(watcher, NULL);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(jobs[i].ran, 1);
        assert_true(jobs[i].stopping);
        assert_true(pthread_equal(jobs[i].thread, pthread_self()));
    }
    /* Probes taken before the stop were run like the others; the refused one never. */
    for (size_t i = 0; i < s.queued; i++)
        assert_true(s.probes[i].ran == 1 && s.probes[i].stopping);
    assert_int_equal(s.probes[s.queued].ran, 0);
    test_job late = {.base = {.run = on_job}};
    assert_int_equal(kw_hashpool_submit(pool, &late.base), KW_HASHPOOL_STOPPED);
    kw_hashpool_stop(pool); /* idempotent */
    kw_hashpool_free(pool);
    assert_int_equal(late.ran, 0);
    blocker_destroy(&b);
}

static void test_the_budget_paces_the_jobs(void **state)
{
    (void)state;
    enum { PER_SECOND = 50, JOBS = 100 };
    kw_hashpool *pool = kw_hashpool_new(2, JOBS, PER_SECOND);
    test_job *jobs = calloc(JOBS, sizeof *jobs);
    double start = seconds();
    for (int i = 0; i < JOBS; i++) {
        jobs[i] = (test_job){.base = {.run = on_job}, .id = i};
        assert_int_equal(kw_hashpool_submit(pool, &jobs[i].base), KW_HASHPOOL_QUEUED);
    }
    wait_all(jobs, JOBS);
    double took = seconds() - start;
    /* PER_SECOND at once, then one every 1/PER_SECOND s: (JOBS - PER_SECOND) / PER_SECOND s. */
    if (took < 0.9 * (JOBS - PER_SECOND) / PER_SECOND)
        fail_msg("%d jobs at %d a second took only %.2f s", JOBS, PER_SECOND, took);
    kw_hashpool_free(pool);
    free(jobs);
}

/* ---- the server stopping with sign-ins in the pool ---- */

static int connect_to(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void send_sign_in(int fd, int i)
{
    char body[128], req[512];
    int n = snprintf(body, sizeof body,
                     "{\"email\":\"user%d@example.com\",\"password\":\"wrong password %d\"}", i, i);
    int m = snprintf(req, sizeof req,
                     "POST /v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     "application/json\r\nContent-Length: %d\r\n\r\n%s",
                     n, body);
    assert_int_equal(write(fd, req, (size_t)m), m);
}

static void test_stopping_server_answers_or_closes_waiting_sign_ins(void **state)
{
    (void)state;
    enum { SIGN_INS = 6 };
    char *dir;
    kw_service *svc = tu_service(&dir);
    kw_http_options o;
    kw_http_options_defaults(&o);
    o.listen = "127.0.0.1:0";
    o.threads = 1;
    o.access_log_fd = -1;
    o.shutdown_grace_s = 0;
    o.password_check_threads = 1;
    o.password_check_queue = 16;
    o.password_checks_per_s = 1; /* one check now, the others wait for the budget */
    kw_http_server *srv;
    kw_error err;
    assert_int_equal(kw_http_start(svc, &o, &srv, &err), KW_OK);
    int fds[SIGN_INS];
    for (int i = 0; i < SIGN_INS; i++) {
        fds[i] = connect_to(srv->port);
        send_sign_in(fds[i], i);
    }
    /* Wait until they are in: one being checked, the others waiting for the budget. */
    double deadline = seconds() + 2;
    while (kw_hashpool_waiting(srv->hashpool) < SIGN_INS - 1 && seconds() < deadline)
        usleep(1000);
    assert_true(kw_hashpool_waiting(srv->hashpool) >= 1);
    kw_http_stop(srv);
    for (int i = 0; i < SIGN_INS; i++) {
        /* An answer (401 for the one checked, 503 for the others) or a closed connection. */
        char buf[4096];
        ssize_t n = read(fds[i], buf, sizeof buf - 1);
        if (n < 0 && errno != ECONNRESET)
            fail_msg("sign-in %d: %s", i, strerror(errno));
        buf[n > 0 ? n : 0] = '\0';
        if (n > 0 && !strstr(buf, "HTTP/1.1 401") && !strstr(buf, "HTTP/1.1 503"))
            fail_msg("sign-in %d got: %.80s", i, buf);
        close(fds[i]);
    }
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_jobs_in_order_on_an_idle_priority_thread),
        cmocka_unit_test(test_a_full_queue_refuses_jobs),
        cmocka_unit_test(test_stop_runs_the_waiting_jobs_with_stopping),
        cmocka_unit_test(test_the_budget_paces_the_jobs),
        cmocka_unit_test(test_stopping_server_answers_or_closes_waiting_sign_ins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
