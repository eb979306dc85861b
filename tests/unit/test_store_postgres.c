/*
 * test_store_postgres.c - the PostgreSQL backend through the store
 * interface: the shared store cases, then what only a server can do to
 * it: concurrent migrations and bootstraps, an audit log the database
 * itself protects, connections killed under it, a server that goes away
 * and comes back, and a deadlock it must retry. Then the change feed
 * (the cases test_store_sqlite.c runs too) and what only this backend
 * has: node leases and the feed's wake-up.
 *
 * Needs KEYWARD_TEST_STORE_URL (scripts/pg.sh); without it every case is
 * skipped. The stop/start case also needs KEYWARD_TEST_PG_CTL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/postgres_conn.h"
#include "store/store.h"
#include "store_cases.h"
#include "testutil.h"

#define NOW            ((int64_t)1700000000)
#define SCHEMA_VERSION 5

typedef struct {
    kw_store *store; /* first: store_cases.h */
    char *dir;
    const char *url;
} fixture;

static const kw_audit cli_audit = {.at = NOW, .actor = "cli", .action = "test"};

static kw_store *open_store(const char *url)
{
    kw_store *s = NULL;
    kw_error err = {0};
    kw_status st = kw_store_open(url, &s, &err);
    if (st != KW_OK)
        fprintf(stderr, "kw_store_open: %s\n", err.message);
    assert_int_equal(st, KW_OK);
    return s;
}

static void migrate(kw_store *s)
{
    int version = 0;
    kw_error err;
    assert_int_equal(s->ops->migrate(s, &version, &err), KW_OK);
    assert_int_equal(version, SCHEMA_VERSION);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    f->url = tu_store_url(f->dir);
    f->store = open_store(f->url);
    migrate(f->store);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    f->store->ops->close(f->store);
    tu_rmtree(f->dir); /* drops the database */
    free(f->dir);
    free(f);
    return 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void make_hash(uint8_t hash[KW_HASH_BYTES], int n)
{
    for (int i = 0; i < KW_HASH_BYTES; i++)
        hash[i] = (uint8_t)(n * 37 + i);
}

static kw_status add_key(kw_store *s, const char *id, int n)
{
    kw_key k = {.created_at = NOW,
                .last_used_at = KW_TIME_NONE,
                .expires_at = KW_TIME_NONE,
                .name = "n",
                .environment = "production",
                .masked = "m"};
    snprintf(k.id, sizeof k.id, "%s", id);
    snprintf(k.account_id, sizeof k.account_id, "acc_a");
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, n);
    return s->ops->key_insert(s, &k, hash, 1, 25, NOW, &cli_audit, NULL);
}

static void *on_migrate(void *arg)
{
    kw_store *s = open_store(arg);
    int version = 0;
    kw_error err;
    kw_status st = s->ops->migrate(s, &version, &err);
    s->ops->close(s);
    return (void *)(intptr_t)(st == KW_OK && version == SCHEMA_VERSION);
}

static void test_concurrent_migrations_on_a_new_database(void **state)
{
    (void)state;
    for (int round = 0; round < 3; round++) {
        char *dir = tu_tempdir();
        const char *url = tu_store_url(dir);
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_create(&t[i], NULL, on_migrate, (void *)url), 0);
        for (int i = 0; i < 4; i++) {
            void *ok;
            pthread_join(t[i], &ok);
            assert_true(ok != NULL);
        }
        assert_string_equal(tu_pg_exec(url, "SELECT count(*) FROM api_keys"), "");
        assert_string_equal(
            tu_pg_exec(url, "DO $$BEGIN IF (SELECT count(*) FROM schema_migrations) <> 5 "
                            "THEN RAISE EXCEPTION 'versions'; END IF; END$$"),
            "");
        tu_rmtree(dir);
        free(dir);
    }
}

typedef struct {
    const char *url;
    int n;
    kw_status status;
} bootstrap_job;

static void *on_bootstrap(void *arg)
{
    bootstrap_job *job = arg;
    kw_store *s = open_store(job->url);
    kw_account a = {.name = "Default", .created_at = NOW};
    kw_user u = {.email = "admin@localhost", .created_at = NOW};
    kw_root_key rk = {
        .name = "first", .masked = "m", .created_at = NOW, .last_used_at = KW_TIME_NONE};
    snprintf(a.id, sizeof a.id, "acc_%d", job->n);
    snprintf(u.id, sizeof u.id, "usr_%d", job->n);
    snprintf(u.account_id, sizeof u.account_id, "acc_%d", job->n);
    snprintf(rk.id, sizeof rk.id, "rk_%d", job->n);
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, job->n);
    job->status = s->ops->bootstrap(s, &a, &u, "$argon2id$stub", &rk, hash, 1, &cli_audit);
    s->ops->close(s);
    return NULL;
}

static void test_one_of_many_nodes_bootstraps(void **state)
{
    fixture *f = *state;
    enum { NODES = 8 };
    pthread_t t[NODES];
    bootstrap_job jobs[NODES];
    for (int i = 0; i < NODES; i++) {
        jobs[i] = (bootstrap_job){.url = f->url, .n = i};
        assert_int_equal(pthread_create(&t[i], NULL, on_bootstrap, &jobs[i]), 0);
    }
    int ok = 0, conflict = 0;
    for (int i = 0; i < NODES; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].status == KW_OK;
        conflict += jobs[i].status == KW_ERR_CONFLICT;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, NODES - 1);
    kw_account_list accounts;
    assert_int_equal(f->store->ops->account_list(f->store, &accounts), KW_OK);
    assert_int_equal(accounts.count, 1);
    kw_account_list_free(&accounts);
    assert_int_equal(sc_audit_count(f->store), 3);
}

static void test_audit_log_is_append_only(void **state)
{
    fixture *f = *state;
    sc_add_account(f->store, "acc_a");
    assert_string_equal(tu_pg_exec(f->url, "UPDATE audit_log SET actor = 'x'"), "P0001");
    assert_string_equal(tu_pg_exec(f->url, "DELETE FROM audit_log"), "P0001");
    assert_string_equal(tu_pg_exec(f->url, "TRUNCATE audit_log"), "P0001");
    assert_int_equal(sc_audit_count(f->store), 1);
}

/* Fills the pool: 8 threads hold a connection each for a moment. */
static void *on_ping(void *arg)
{
    kw_store *s = arg;
    for (int i = 0; i < 20; i++)
        if (s->ops->ping(s) != KW_OK)
            return NULL;
    return arg;
}

static void test_killed_connections_are_replaced_and_retried(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, on_ping, s), 0);
    for (int i = 0; i < 8; i++) {
        void *ok;
        pthread_join(t[i], &ok);
        assert_non_null(ok);
    }
    const char *kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()";
    for (int round = 0; round < 3; round++) {
        assert_string_equal(tu_pg_exec(f->url, kill), "");
        char id[16];
        snprintf(id, sizeof id, "key_%d", round);
        assert_int_equal(add_key(s, id, round), KW_OK); /* a write, once */
        assert_string_equal(tu_pg_exec(f->url, kill), "");
        kw_key k;
        assert_int_equal(s->ops->key_get(s, "acc_a", id, &k), KW_OK); /* a read */
    }
    kw_key_list list;
    assert_int_equal(s->ops->key_list(s, "acc_a", NOW, &list), KW_OK);
    assert_int_equal(list.count, 3);
    kw_key_list_free(&list);
    assert_int_equal(sc_audit_count(s), 1 + 3);
}

/* Runs the cluster's pg_ctl with `action`; its output goes to the server log. */
static void pg_ctl(const char *action)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", getenv("KEYWARD_TEST_PG_CTL"), action);
    assert_int_equal(system(cmd), 0);
}

static void test_server_down_is_unavailable_then_recovers(void **state)
{
    fixture *f = *state;
    if (!getenv("KEYWARD_TEST_PG_CTL"))
        skip();
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_before", 1), KW_OK);
    assert_int_equal(s->ops->feed_wait(s, 10), KW_OK); /* a listening connection */
    pg_ctl("stop -m fast");

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kw_account a;
    kw_touch touch = {"key_before", NOW + 99};
    assert_int_equal(s->ops->ping(s), KW_ERR_UNAVAILABLE);
    assert_int_equal(add_key(s, "key_during", 2), KW_ERR_UNAVAILABLE);
    assert_int_equal(s->ops->account_get(s, "acc_a", &a), KW_ERR_UNAVAILABLE);
    assert_int_equal(s->ops->touch(s, &touch, 1), KW_ERR_UNAVAILABLE);
    uint8_t session[KW_HASH_BYTES];
    make_hash(session, 7);
    kw_session found;
    assert_int_equal(s->ops->session_insert(s, session, "usr_x", NOW, NOW + 60, NULL),
                     KW_ERR_UNAVAILABLE);
    assert_int_equal(s->ops->session_find(s, session, &found), KW_ERR_UNAVAILABLE);
    assert_int_equal(s->ops->session_touch(s, session, NOW + 1), KW_ERR_UNAVAILABLE);
    assert_int_equal(s->ops->session_delete(s, session, NULL), KW_ERR_UNAVAILABLE);
    assert_true(seconds_since(&t0) < 5.0); /* promptly: refused, not timed out */
    /* The feed's wake-up says so too, after a pause rather than at once. */
    for (int i = 0; i < 2; i++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(s->ops->feed_wait(s, 1000), KW_ERR_UNAVAILABLE);
        assert_true(seconds_since(&t0) >= 0.2);
    }

    pg_ctl("start");
    assert_int_equal(s->ops->feed_wait(s, 10), KW_OK);
    /* The same handle, no reopening: broken connections reconnect on use. */
    assert_int_equal(s->ops->ping(s), KW_OK);
    assert_int_equal(s->ops->account_get(s, "acc_a", &a), KW_OK);
    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_during", &k), KW_ERR_NOT_FOUND);
    assert_int_equal(add_key(s, "key_after", 3), KW_OK);
    assert_int_equal(sc_audit_count(s), 1 + 2);
}

static void test_unreachable_server_fails_fast_at_open(void **state)
{
    (void)state;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kw_store *s = NULL;
    kw_error err = {0};
    assert_int_equal(kw_store_open("postgresql://kw:hunter2@127.0.0.1:1/kw", &s, &err),
                     KW_ERR_UNAVAILABLE);
    assert_null(s);
    assert_null(strstr(err.message, "hunter2"));
    assert_true(seconds_since(&t0) < 5.0);
}

typedef struct {
    kw_store *store;
    kw_status status;
} touch_job;

static void *on_touch(void *arg)
{
    touch_job *job = arg;
    kw_touch items[2] = {{"key_1", NOW + 100}, {"rk_1", NOW + 200}};
    job->status = job->store->ops->touch(job->store, items, 2);
    return NULL;
}

/*
 * Waits until one of the store's connections (application_name keyward)
 * waits for a lock, as monitor sees it; fails the test after 10 s.
 */
static void wait_for_a_lock_wait(PGconn *monitor)
{
    for (int i = 0; i < 1000; i++) {
        PGresult *res =
            PQexec(monitor, "SELECT count(*) FROM pg_stat_activity WHERE "
                            "application_name = 'keyward' AND wait_event_type = 'Lock'");
        assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
        bool waiting = strcmp(PQgetvalue(res, 0, 0), "0") != 0;
        PQclear(res);
        if (waiting)
            return;
        usleep(10 * 1000);
    }
    fail_msg("the store's transaction never waited for the lock");
}

/*
 * A deadlock the store loses: touch locks key_1, then waits for rk_1,
 * which another session holds; that session then asks for key_1. Its
 * deadlock_timeout is 10 s, the store's 1 s, so the store's transaction
 * is the one aborted (40P01), and it must be run again, exactly once, and
 * win. The other session asks only once the store's transaction is seen
 * waiting, so the cycle is there every time.
 */
static void test_a_deadlock_is_retried(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_1", 1), KW_OK);
    kw_root_key rk = {
        .id = "rk_1", .name = "r", .masked = "m", .created_at = NOW, .last_used_at = KW_TIME_NONE};
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 9);
    assert_int_equal(s->ops->root_key_insert(s, &rk, hash, 1, &cli_audit), KW_OK);

    PGconn *other = PQconnectdb(f->url), *monitor = PQconnectdb(f->url);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    assert_int_equal(PQstatus(monitor), CONNECTION_OK);
    PGresult *res = PQexec(other, "SET deadlock_timeout = '10s'; BEGIN; "
                                  "UPDATE root_keys SET name = name WHERE id = 'rk_1'");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);

    uint64_t retries = kw_pg_retries();
    touch_job job = {.store = s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, on_touch, &job), 0);
    wait_for_a_lock_wait(monitor); /* the touch holds key_1 and waits for rk_1 */
    res = PQexec(other, "UPDATE api_keys SET name = name WHERE id = 'key_1'");
    /* Succeeds only because the store's transaction was chosen and rolled back. */
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQclear(PQexec(other, "COMMIT"));
    pthread_join(t, NULL);
    PQfinish(other);
    PQfinish(monitor);
    assert_int_equal(job.status, KW_OK);
    assert_int_equal(kw_pg_retries() - retries, 1);

    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_1", &k), KW_OK);
    assert_int_equal(k.last_used_at, NOW + 100);
    kw_root_key found;
    assert_int_equal(s->ops->root_key_find(s, hash, 1, &found), KW_OK);
    assert_int_equal(found.last_used_at, NOW + 200);
}

/* Runs sql as an operator would; asserts that it succeeded. */
static void raw_ok(const fixture *f, const char *sql)
{
    assert_string_equal(tu_pg_exec(f->url, sql), "");
}

/*
 * A key hash as an SQL literal, and SCAN_KEYS keys inserted behind the
 * store's back: in index order, and without the two indexes a scan does
 * not use, so that building them takes seconds (the database is this
 * test's own). Read as one result they would take some 50 MiB; a million
 * (the size the scan is meant for) pass too, but take a minute to insert
 * on a busy machine.
 */
#define SCAN_KEYS      200000
#define SCAN_RSS_LIMIT (24L * 1024 * 1024)
#define OLD_HASH       "'\\x0101010101010101010101010101010101010101010101010101010101010101'::bytea"
#define MANY_KEYS                                                                                  \
    "DROP INDEX api_keys_hash; DROP INDEX api_keys_account; "                                      \
    "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, pepper_version, "       \
    "created_at) SELECT 'key_' || lpad(g::text, 7, '0'), 'acc_a', 'n', 'production', 'm', "        \
    "decode(lpad(to_hex(g), 64, '0'), 'hex'), 1, 1700000000 FROM generate_series(1, 200000) g"

/* ---- the change feed (store.h): the same cases as test_store_BACKEND.c runs ---- */

/* The feed's table has no column a deleted key's hash could stay in. */
static void test_the_feed_table_holds_no_hash(void **state)
{
    fixture *f = *state;
    assert_string_equal(
        tu_pg_exec(f->url, "DO $$BEGIN IF (SELECT string_agg(column_name, ',' ORDER BY "
                           "ordinal_position) FROM information_schema.columns WHERE table_name = "
                           "'key_changes' AND table_schema = current_schema()) <> 'seq,at,key_id' "
                           "THEN RAISE EXCEPTION 'columns'; END IF; END$$"),
        "");
}

/* For the shared key-scan case: a key from before the feed existed. */
static void insert_old_key(void **state)
{
    raw_ok(*state, "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, "
                   "pepper_version, created_at) VALUES ('key_old', 'acc_a', 'old', 'production', "
                   "'m', " OLD_HASH ", 1, 1700000000)");
}

/* Many keys are scanned as a stream: memory does not grow with them. */
static void test_key_scan_of_many_keys(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    raw_ok(f, MANY_KEYS);
    sc_scan_many(s, SCAN_KEYS, SCAN_RSS_LIMIT);
}

/* ---- node leases and the feed's wake-up (PostgreSQL only) ---- */

static int behind(kw_store *s, int64_t seq)
{
    int n = -1;
    assert_int_equal(s->ops->nodes_behind(s, seq, &n), KW_OK);
    return n;
}

/* A lease is granted only to a node that has applied the head. */
static void test_node_renew_refuses_a_node_behind(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    int64_t head = -1;
    assert_int_equal(s->ops->node_renew(s, "node_a", 0, 60000, &head), KW_OK);
    assert_int_equal(head, 0);
    assert_int_equal(sc_feed_key(s, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(behind(s, 1), 1);
    head = -1;
    assert_int_equal(s->ops->node_renew(s, "node_a", 0, 60000, &head), KW_ERR_CONFLICT);
    assert_int_equal(head, 1);
    assert_int_equal(behind(s, 1), 1); /* the old lease stands, still behind */
    assert_int_equal(s->ops->node_renew(s, "node_a", 1, 60000, &head), KW_OK);
    assert_int_equal(head, 1);
    assert_int_equal(behind(s, 1), 0);
    assert_int_equal(behind(s, 2), 1);
    assert_string_equal(tu_pg_exec(f->url, "DO $$BEGIN IF (SELECT applied_seq FROM nodes "
                                           "WHERE id = 'node_a') <> 1 OR (SELECT renewed_at "
                                           "FROM nodes WHERE id = 'node_a') < 1700000000 "
                                           "THEN RAISE EXCEPTION 'lease'; END IF; END$$"),
                        "");
}

typedef struct {
    kw_store *store;
    int64_t applied;
    int64_t head;
    kw_status status;
    volatile int done;
} renew_job;

static void *on_renew(void *arg)
{
    renew_job *job = arg;
    job->status =
        job->store->ops->node_renew(job->store, "node_a", job->applied, 60000, &job->head);
    job->done = 1;
    return NULL;
}

/*
 * A change that is being committed holds the head: a renewal waits for
 * it, then sees its position and refuses, so no writer can miss a node
 * that took its lease in between.
 */
static void test_node_renew_waits_for_a_change_in_flight(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    PGconn *writer = PQconnectdb(f->url);
    assert_int_equal(PQstatus(writer), CONNECTION_OK);
    PGresult *res = PQexec(writer, "BEGIN; UPDATE feed_head SET seq = seq + 1");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    renew_job job = {.store = s, .applied = 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, on_renew, &job), 0);
    usleep(300 * 1000);
    assert_false(job.done); /* waiting for the writer's lock */
    PQclear(PQexec(writer, "COMMIT"));
    pthread_join(t, NULL);
    PQfinish(writer);
    assert_int_equal(job.status, KW_ERR_CONFLICT);
    assert_int_equal(job.head, 1);
    assert_int_equal(behind(s, 1), 0); /* nothing was granted */
}

/* Only leases that have not ended count, by the database's clock; a node that left never does. */
static void test_nodes_behind_counts_live_leases_only(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    int64_t head;
    assert_int_equal(s->ops->node_renew(s, "node_short", 0, 300, &head), KW_OK);
    assert_int_equal(s->ops->node_renew(s, "node_long", 0, 60000, &head), KW_OK);
    assert_int_equal(s->ops->node_renew(s, "node_gone", 0, 60000, &head), KW_OK);
    assert_int_equal(sc_feed_key(s, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(behind(s, 1), 3);
    assert_int_equal(behind(s, 0), 0); /* all have applied position 0 */
    assert_int_equal(s->ops->node_leave(s, "node_gone"), KW_OK);
    assert_int_equal(s->ops->node_leave(s, "node_gone"), KW_OK); /* leaving twice is fine */
    assert_int_equal(behind(s, 1), 2);
    usleep(500 * 1000); /* node_short's lease ends */
    assert_int_equal(behind(s, 1), 1);
    assert_int_equal(s->ops->node_renew(s, "node_long", 1, 60000, &head), KW_OK);
    assert_int_equal(behind(s, 1), 0);
}

static double ms_between(const struct timespec *t0, const struct timespec *t1)
{
    return (double)(t1->tv_sec - t0->tv_sec) * 1e3 + (double)(t1->tv_nsec - t0->tv_nsec) / 1e6;
}

/* The wait of s for up to timeout_ms: its status, and in *ms how long it took. */
static kw_status timed_wait(kw_store *s, int timeout_ms, double *ms)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kw_status status = s->ops->feed_wait(s, timeout_ms);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    *ms = ms_between(&t0, &t1);
    return status;
}

/*
 * A commit of a change on another node's store wakes a waiting node at
 * once; with no change the wait runs its time. A listening connection
 * that is killed is reported, then opened again.
 */
static void test_feed_wait_is_woken_by_a_commit(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store, *other = open_store(f->url);
    sc_add_account(s, "acc_a");
    double ms;
    assert_int_equal(timed_wait(s, 200, &ms), KW_OK); /* listens from here on */
    assert_true(ms >= 150);
    assert_int_equal(sc_feed_key(other, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(timed_wait(s, 5000, &ms), KW_OK);
    assert_true(ms < 2000);
    assert_int_equal(timed_wait(s, 200, &ms), KW_OK); /* that one was consumed */
    assert_true(ms >= 150);
    /* Writes outside the feed notify nobody. */
    sc_add_account(other, "acc_b");
    assert_int_equal(timed_wait(s, 200, &ms), KW_OK);
    assert_true(ms >= 150);

    assert_string_equal(tu_pg_exec(f->url, "SELECT pg_terminate_backend(pid) FROM "
                                           "pg_stat_activity WHERE datname = current_database() "
                                           "AND query LIKE 'LISTEN%'"),
                        "");
    kw_status status = KW_OK;
    for (int i = 0; i < 5 && status == KW_OK; i++)
        status = timed_wait(s, 1000, &ms);
    assert_int_equal(status, KW_ERR_UNAVAILABLE);
    assert_int_equal(timed_wait(s, 50, &ms), KW_OK); /* a new connection */
    assert_int_equal(other->ops->key_delete(other, "acc_a", "key_1", &sc_feed_audit, NULL), KW_OK);
    assert_int_equal(timed_wait(s, 5000, &ms), KW_OK);
    assert_true(ms < 2000);
    other->ops->close(other);
}

/* "Never" is stored as NULL, and the epoch as the number 0. */
static void test_absent_times_are_stored_as_null(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    kw_key k = {.created_at = NOW,
                .last_used_at = KW_TIME_NONE,
                .expires_at = 0,
                .id = "key_epoch",
                .account_id = "acc_a",
                .name = "n",
                .environment = "production",
                .masked = "m"};
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 1);
    assert_int_equal(s->ops->key_insert(s, &k, hash, 1, 25, NOW, &cli_audit, NULL), KW_OK);
    assert_int_equal(add_key(s, "key_never", 2), KW_OK);
    PGconn *raw = PQconnectdb(f->url);
    assert_int_equal(PQstatus(raw), CONNECTION_OK);
    PGresult *res = PQexec(raw, "SELECT id, coalesce(expires_at::text, 'null'), "
                                "coalesce(last_used_at::text, 'null') FROM api_keys ORDER BY id");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 2);
    assert_string_equal(PQgetvalue(res, 0, 0), "key_epoch");
    assert_string_equal(PQgetvalue(res, 0, 1), "0");
    assert_string_equal(PQgetvalue(res, 0, 2), "null");
    assert_string_equal(PQgetvalue(res, 1, 0), "key_never");
    assert_string_equal(PQgetvalue(res, 1, 1), "null");
    assert_string_equal(PQgetvalue(res, 1, 2), "null");
    PQclear(res);
    PQfinish(raw);
}

int main(void)
{
    if (!tu_pg_server()) {
        printf("1..0 # SKIP KEYWARD_TEST_STORE_URL is not set (see scripts/pg.sh)\n");
        return 0;
    }
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest own[] = {
        cmocka_unit_test(test_concurrent_migrations_on_a_new_database),
        T(test_one_of_many_nodes_bootstraps),
        T(test_audit_log_is_append_only),
        T(test_killed_connections_are_replaced_and_retried),
        T(test_server_down_is_unavailable_then_recovers),
        cmocka_unit_test(test_unreachable_server_fails_fast_at_open),
        T(test_a_deadlock_is_retried),
        T(test_absent_times_are_stored_as_null),
        T(test_the_feed_table_holds_no_hash),
        T(test_key_scan_of_many_keys),
        T(test_node_renew_refuses_a_node_behind),
        T(test_node_renew_waits_for_a_change_in_flight),
        T(test_nodes_behind_counts_live_leases_only),
        T(test_feed_wait_is_woken_by_a_commit),
    };
#undef T
    struct CMUnitTest tests[sizeof own / sizeof own[0] + SC_CASES_MAX];
    size_t n = sizeof own / sizeof own[0];
    memcpy(tests, own, sizeof own);
    n += sc_cases(tests + n, setup, teardown, insert_old_key);
    return _cmocka_run_group_tests("store_postgres", tests, n, NULL, NULL);
}
