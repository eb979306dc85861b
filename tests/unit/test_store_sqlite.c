/*
 * test_store_sqlite.c - the SQLite backend on its own, through the store
 * interface (and raw sqlite3 where the test must look behind it).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store.h"
#include "store_cases.h"
#include "testutil.h"

#define NOW            ((int64_t)1700000000)
#define SCHEMA_VERSION 3

typedef struct {
    kw_store *store; /* first: store_cases.h */
    char *dir;
    char path[4096];
} fixture;

static kw_store *open_store(const char *path)
{
    char url[4200];
    snprintf(url, sizeof url, "sqlite:%s", path);
    kw_store *s = NULL;
    kw_error err = {0};
    kw_status st = kw_store_open(url, &s, &err);
    if (st != KW_OK)
        fprintf(stderr, "kw_store_open: %s\n", err.message);
    assert_int_equal(st, KW_OK);
    return s;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    snprintf(f->path, sizeof f->path, "%s/keyward.db", f->dir);
    f->store = open_store(f->path);
    int version = 0;
    kw_error err;
    assert_int_equal(f->store->ops->migrate(f->store, &version, &err), KW_OK);
    assert_int_equal(version, SCHEMA_VERSION);
    *state = f;
    return 0;
}

/* Every test ends with the database intact. */
static int teardown(void **state)
{
    fixture *f = *state;
    f->store->ops->close(f->store);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Runs sql on the file directly, as an operator with the sqlite3 shell would. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static void test_migrate_is_idempotent(void **state)
{
    fixture *f = *state;
    int version = 0;
    kw_error err;
    assert_int_equal(f->store->ops->migrate(f->store, &version, &err), KW_OK);
    assert_int_equal(version, SCHEMA_VERSION);
    kw_store *again = open_store(f->path);
    assert_int_equal(again->ops->migrate(again, &version, &err), KW_OK);
    assert_int_equal(version, SCHEMA_VERSION);
    again->ops->close(again);
    assert_int_equal(f->store->ops->ping(f->store), KW_OK);
}

static void *migrate_thread(void *arg)
{
    const char *path = arg;
    kw_store *s = open_store(path);
    int version = 0;
    kw_error err;
    kw_status st = s->ops->migrate(s, &version, &err);
    s->ops->close(s);
    return (void *)(intptr_t)(st == KW_OK && version == SCHEMA_VERSION);
}

static void test_concurrent_migrations_on_a_new_file(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++) {
        char *dir = tu_tempdir();
        char path[4096];
        snprintf(path, sizeof path, "%s/keyward.db", dir);
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            assert_int_equal(pthread_create(&t[i], NULL, migrate_thread, path), 0);
        for (int i = 0; i < 4; i++) {
            void *ok;
            pthread_join(t[i], &ok);
            assert_true(ok != NULL);
        }
        assert_int_equal(raw_exec(path, "SELECT * FROM api_keys"), SQLITE_OK);
        tu_rmtree(dir);
        free(dir);
    }
}

static void test_database_file_is_private(void **state)
{
    fixture *f = *state;
    sc_add_account(f->store, "acc_a");
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", f->path);
    assert_int_equal(stat(wal, &st), 0); /* WAL mode is on */
    assert_int_equal(st.st_mode & 077, 0);
}

static void test_store_urls(void **state)
{
    (void)state;
    kw_store sentinel;
    kw_store *s = &sentinel; /* a failed open must set *out to NULL */
    kw_error err = {0};
    /* Nothing listens on port 1; a malformed URL is refused before connecting. */
    assert_int_equal(kw_store_open("postgres://u:secret@127.0.0.1:1/kw", &s, &err),
                     KW_ERR_UNAVAILABLE);
    assert_null(s);
    assert_non_null(strstr(err.message, "PostgreSQL"));
    assert_null(strstr(err.message, "secret"));
    assert_int_equal(kw_store_open("postgresql://u:%zzsecret@127.0.0.1:1/kw", &s, &err),
                     KW_ERR_INVALID);
    assert_null(strstr(err.message, "secret"));
    assert_int_equal(kw_store_open("mysql://u:secret@db/kw", &s, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "\"mysql\""));
    assert_null(strstr(err.message, "secret"));
    assert_int_equal(kw_store_open("u secret@db", &s, &err), KW_ERR_INVALID);
    assert_null(strstr(err.message, "secret"));
    assert_int_equal(kw_store_open("sqlite:", &s, &err), KW_ERR_INVALID);
    assert_int_equal(kw_store_open("sqlite:/nonexistent-dir/x/keyward.db", &s, &err),
                     KW_ERR_UNAVAILABLE);
    assert_null(s);
}

static void test_audit_log_is_append_only(void **state)
{
    fixture *f = *state;
    sc_add_account(f->store, "acc_a");
    assert_int_equal(raw_exec(f->path, "UPDATE audit_log SET actor = 'x'"), SQLITE_CONSTRAINT);
    assert_int_equal(raw_exec(f->path, "DELETE FROM audit_log"), SQLITE_CONSTRAINT);
    assert_int_equal(sc_audit_count(f->store), 1);

    kw_audit_list log;
    assert_int_equal(f->store->ops->audit_list(f->store, NULL, 0, &log), KW_OK);
    assert_int_equal(log.count, 0);
    kw_audit_list_free(&log);
}

/* The text of the first column of the first row sql answers, into out. */
static void raw_text(const char *path, const char *sql, char *out, size_t size)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    snprintf(out, size, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Inserts key `id` of acc_a with hash byte `n`, expiring at expires_at. */
static void insert_key(kw_store *s, const char *id, int n, int64_t expires_at)
{
    kw_key k = {.created_at = NOW, .last_used_at = KW_TIME_NONE, .expires_at = expires_at};
    snprintf(k.id, sizeof k.id, "%s", id);
    snprintf(k.account_id, sizeof k.account_id, "acc_a");
    snprintf(k.name, sizeof k.name, "n");
    snprintf(k.environment, sizeof k.environment, "production");
    snprintf(k.masked, sizeof k.masked, "m");
    uint8_t hash[KW_HASH_BYTES];
    memset(hash, n, sizeof hash);
    kw_audit au = {.at = NOW, .actor = "cli", .action = "test"};
    assert_int_equal(s->ops->key_insert(s, &k, hash, 1, 25, NOW, &au), KW_OK);
}

/* "Never" is stored as NULL, and the epoch as the number 0. */
static void test_absent_times_are_stored_as_null(void **state)
{
    fixture *f = *state;
    sc_add_account(f->store, "acc_a");
    insert_key(f->store, "key_never", 1, KW_TIME_NONE);
    insert_key(f->store, "key_epoch", 2, 0);
    char got[64];
    raw_text(f->path,
             "SELECT typeof(expires_at) || ',' || typeof(last_used_at) FROM api_keys "
             "WHERE id = 'key_never'",
             got, sizeof got);
    assert_string_equal(got, "null,null");
    raw_text(f->path,
             "SELECT typeof(expires_at) || ',' || expires_at FROM api_keys WHERE id = 'key_epoch'",
             got, sizeof got);
    assert_string_equal(got, "integer,0");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest own[] = {
        T(test_migrate_is_idempotent),
        cmocka_unit_test(test_concurrent_migrations_on_a_new_file),
        T(test_database_file_is_private),
        cmocka_unit_test(test_store_urls),
        T(test_audit_log_is_append_only),
        T(test_absent_times_are_stored_as_null),
    };
#undef T
    struct CMUnitTest tests[sizeof own / sizeof own[0] + SC_CASES_MAX];
    size_t n = sizeof own / sizeof own[0];
    memcpy(tests, own, sizeof own);
    n += sc_cases(tests + n, setup, teardown);
    return _cmocka_run_group_tests("store_sqlite", tests, n, NULL, NULL);
}
