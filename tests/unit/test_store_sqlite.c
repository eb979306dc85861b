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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "store_cases.h"
#include "testutil.h"

#define NOW            ((int64_t)1700000000)
#define SCHEMA_VERSION 5

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
    assert_int_equal(s->ops->key_insert(s, &k, hash, 1, 25, NOW, &au, NULL), KW_OK);
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

/* The whole file at path into a new buffer (*size bytes); NULL when it does not exist. */
static unsigned char *read_file(const char *path, size_t *size)
{
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n;
    do {
        cap += 1 << 16;
        buf = realloc(buf, cap);
        assert_non_null(buf);
        n = fread(buf + *size, 1, cap - *size, f);
        *size += n;
    } while (*size == cap);
    fclose(f);
    return buf;
}

static bool contains(const unsigned char *hay, size_t n, const void *needle, size_t len)
{
    for (size_t i = 0; i + len <= n; i++)
        if (memcmp(hay + i, needle, len) == 0)
            return true;
    return false;
}

/*
 * Where in the database's files (keyward.db, -wal, -shm) the hash stands,
 * raw or in hex of either case, as a mask: 1 the database, 2 the WAL, 4
 * the shared-memory index.
 */
static int hash_in_files(const char *db, const uint8_t hash[KW_HASH_BYTES])
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char lower[2 * KW_HASH_BYTES + 1], upper[2 * KW_HASH_BYTES + 1];
    for (int i = 0; i < KW_HASH_BYTES; i++) {
        snprintf(lower + 2 * i, 3, "%02x", hash[i]);
        snprintf(upper + 2 * i, 3, "%02X", hash[i]);
    }
    int where = 0;
    for (int i = 0; i < 3; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s%s", db, suffix[i]);
        size_t n;
        unsigned char *data = read_file(path, &n);
        if (data && (contains(data, n, hash, KW_HASH_BYTES) ||
                     contains(data, n, lower, 2 * KW_HASH_BYTES) ||
                     contains(data, n, upper, 2 * KW_HASH_BYTES)))
            where |= 1 << i;
        free(data);
    }
    return where;
}

/*
 * A deleted key's or root key's hash is gone from the database file, the
 * WAL and the shared-memory index by the time the delete returns, while
 * the store (and so its WAL) stays open, as in a running server. The
 * change feed still holds the key's create and delete then, by its id.
 */
static void test_deleted_hashes_leave_the_files(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    uint8_t key_hash[KW_HASH_BYTES], root_hash[KW_HASH_BYTES], kept_hash[KW_HASH_BYTES];
    for (int i = 0; i < KW_HASH_BYTES; i++) {
        key_hash[i] = (uint8_t)(i * 97 + 13);
        root_hash[i] = (uint8_t)(i * 89 + 7);
        kept_hash[i] = (uint8_t)(i * 71 + 3);
    }
    kw_audit au = {.at = NOW, .actor = "cli", .action = "test"};
    kw_key k = {.created_at = NOW, .last_used_at = KW_TIME_NONE, .expires_at = KW_TIME_NONE};
    snprintf(k.id, sizeof k.id, "key_gone");
    snprintf(k.account_id, sizeof k.account_id, "acc_a");
    snprintf(k.name, sizeof k.name, "gone");
    snprintf(k.environment, sizeof k.environment, "production");
    snprintf(k.masked, sizeof k.masked, "m");
    assert_int_equal(s->ops->key_insert(s, &k, key_hash, 1, 25, NOW, &au, NULL), KW_OK);
    snprintf(k.id, sizeof k.id, "key_kept");
    assert_int_equal(s->ops->key_insert(s, &k, kept_hash, 1, 25, NOW, &au, NULL), KW_OK);
    kw_root_key rk = {.id = "rk_gone",
                      .name = "ops",
                      .masked = "m",
                      .created_at = NOW,
                      .last_used_at = KW_TIME_NONE};
    assert_int_equal(s->ops->root_key_insert(s, &rk, root_hash, 1, &au), KW_OK);
    /* More versions of the same pages in the WAL: last-used updates, and reads. */
    kw_touch t[2] = {{.id = "key_gone", .at = NOW + 1}, {.id = "rk_gone", .at = NOW + 1}};
    assert_int_equal(s->ops->touch(s, t, 2), KW_OK);
    kw_key found;
    assert_int_equal(s->ops->key_find(s, key_hash, 1, &found), KW_OK);
    /* The scan finds what is there, or its silence below would prove nothing. */
    assert_true(hash_in_files(f->path, key_hash) != 0);
    assert_true(hash_in_files(f->path, root_hash) != 0);

    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_gone", &au, NULL), KW_OK);
    assert_int_equal(hash_in_files(f->path, key_hash), 0);
    assert_int_equal(s->ops->root_key_delete(s, "rk_gone", &au), KW_OK);
    assert_int_equal(hash_in_files(f->path, root_hash), 0);
    assert_int_equal(s->ops->key_find(s, key_hash, 1, &found), KW_ERR_NOT_FOUND);
    /* The feed names the deleted key, by its id only, in both its entries. */
    kw_key_change_list feed = {0};
    assert_int_equal(s->ops->changes_since(s, 0, 10, &feed), KW_OK);
    assert_int_equal(feed.count, 3);
    static const uint8_t zero[KW_HASH_BYTES];
    for (size_t i = 0; i < 3; i += 2) {
        assert_false(feed.items[i].present);
        assert_string_equal(feed.items[i].row.key.id, "key_gone");
        assert_memory_equal(feed.items[i].row.hash, zero, KW_HASH_BYTES);
    }
    free(feed.items);
    /* What was not deleted is still there, and still found. */
    assert_true(hash_in_files(f->path, kept_hash) != 0);
    assert_int_equal(s->ops->key_find(s, kept_hash, 1, &found), KW_OK);
    assert_string_equal(found.id, "key_kept");
}

/* A store retries an owed checkpoint at most once a second (OWED_RETRY_MS). */
static void sleep_past_the_retry_interval(void)
{
    struct timespec pause = {1, 100000000L};
    nanosleep(&pause, NULL);
}

/*
 * A reader that holds a snapshot from before the delete (an open read
 * transaction, as a backup step has) keeps the checkpoint from finishing:
 * the delete still succeeds after a short wait, and the hash goes with the
 * checkpoint that the store retries after a later commit, once that reader
 * is done.
 */
static void test_a_checkpoint_held_up_by_a_reader_is_made_later(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    uint8_t hash[KW_HASH_BYTES];
    memset(hash, 0x5A, sizeof hash);
    kw_audit au = {.at = NOW, .actor = "cli", .action = "test"};
    kw_key k = {.created_at = NOW,
                .last_used_at = KW_TIME_NONE,
                .expires_at = KW_TIME_NONE,
                .id = "key_held",
                .account_id = "acc_a",
                .name = "n",
                .environment = "production",
                .masked = "m"};
    assert_int_equal(s->ops->key_insert(s, &k, hash, 1, 25, NOW, &au, NULL), KW_OK);
    sqlite3 *reader;
    assert_int_equal(sqlite3_open(f->path, &reader), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM api_keys;", NULL, NULL, NULL), SQLITE_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_held", &au, NULL), KW_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2); /* a bounded wait, not the 5 s busy timeout */
    assert_true(hash_in_files(f->path, hash) != 0);
    assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(reader);
    sc_add_account(s, "acc_b"); /* within a second of the last try: not yet */
    assert_true(hash_in_files(f->path, hash) != 0);
    sleep_past_the_retry_interval();
    sc_add_account(s, "acc_c"); /* any commit */
    assert_int_equal(hash_in_files(f->path, hash), 0);
}

typedef struct {
    kw_store *store;
    const uint8_t *hash;
    volatile int *stop;
    long reads, failures;
    double worst_ms;
} reader_job;

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

/* Verifies one key in a loop, as the HTTP verification path does. */
static void *on_read(void *arg)
{
    reader_job *job = arg;
    while (!*job->stop) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        kw_key k;
        if (job->store->ops->key_find(job->store, job->hash, 1, &k) != KW_OK)
            job->failures++;
        double ms = ms_since(&t0);
        if (ms > job->worst_ms)
            job->worst_ms = ms;
        job->reads++;
    }
    return NULL;
}

/*
 * The checkpoint after each delete neither fails nor stalls verification
 * under concurrent readers (in this store and in a second one on the same
 * file, as a second process would be), and still empties the WAL.
 */
static void test_deletes_checkpoint_under_concurrent_readers(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store, *other = open_store(f->path);
    sc_add_account(s, "acc_a");
    uint8_t kept[KW_HASH_BYTES], gone[KW_HASH_BYTES];
    memset(kept, 0xA5, sizeof kept);
    kw_audit au = {.at = NOW, .actor = "cli", .action = "test"};
    kw_key k = {.created_at = NOW,
                .last_used_at = KW_TIME_NONE,
                .expires_at = KW_TIME_NONE,
                .id = "key_kept",
                .account_id = "acc_a",
                .name = "n",
                .environment = "production",
                .masked = "m"};
    assert_int_equal(s->ops->key_insert(s, &k, kept, 1, 1000, NOW, &au, NULL), KW_OK);

    volatile int stop = 0;
    reader_job jobs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (reader_job){.store = i % 2 ? other : s, .hash = kept, .stop = &stop};
        assert_int_equal(pthread_create(&threads[i], NULL, on_read, &jobs[i]), 0);
    }
    double worst_delete = 0, total_delete = 0;
    const int rounds = 50;
    int lingered = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < KW_HASH_BYTES; i++)
            gone[i] = (uint8_t)(r * 31 + i * 7 + 1);
        snprintf(k.id, sizeof k.id, "key_%d", r);
        assert_int_equal(s->ops->key_insert(s, &k, gone, 1, 1000, NOW, &au, NULL), KW_OK);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(s->ops->key_delete(s, "acc_a", k.id, &au, NULL), KW_OK);
        double ms = ms_since(&t0);
        total_delete += ms;
        if (ms > worst_delete)
            worst_delete = ms;
        lingered += hash_in_files(f->path, gone) != 0;
    }
    stop = 1;
    long reads = 0;
    double worst_read = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
        reads += jobs[i].reads;
        if (jobs[i].worst_ms > worst_read)
            worst_read = jobs[i].worst_ms;
    }
    fprintf(stderr,
            "# %d deletes with checkpoint: mean %.2f ms, worst %.2f ms, hash left behind %d "
            "times; %ld concurrent verifications, worst %.2f ms\n",
            rounds, total_delete / rounds, worst_delete, lingered, reads, worst_read);
    assert_true(reads > 0);
    /* A checkpoint that gave up under the load is owed, and made after the
     * next commit: then no deleted hash is left anywhere. */
    sleep_past_the_retry_interval();
    kw_touch t = {.id = "key_kept", .at = NOW + 1};
    assert_int_equal(s->ops->touch(s, &t, 1), KW_OK);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < KW_HASH_BYTES; i++)
            gone[i] = (uint8_t)(r * 31 + i * 7 + 1);
        assert_int_equal(hash_in_files(f->path, gone), 0);
    }
    other->ops->close(other);
}

/* Runs sql as an operator would; asserts that it succeeded. */
static void raw_ok(const fixture *f, const char *sql)
{
    assert_int_equal(raw_exec(f->path, sql), SQLITE_OK);
}

/*
 * A key hash as an SQL literal, and SCAN_KEYS keys inserted behind the
 * store's back, in index order so that building them takes seconds.
 * Reading them fills SQLite's page cache (up to 64 MiB a connection).
 */
#define SCAN_KEYS      200000
#define SCAN_RSS_LIMIT (128L * 1024 * 1024)
#define OLD_HASH       "X'0101010101010101010101010101010101010101010101010101010101010101'"
#define MANY_KEYS                                                                                  \
    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200000) "            \
    "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, pepper_version, "       \
    "created_at) SELECT printf('key_%07d', n), 'acc_a', 'n', 'production', 'm', "                  \
    "CAST(printf('%032d', n) AS BLOB), 1, 1700000000 FROM g"

/* SQLite has its change token instead of leases and wake-ups. */
static void test_no_node_leases(void **state)
{
    fixture *f = *state;
    const kw_store_ops *ops = f->store->ops;
    assert_non_null(ops->change_token);
    assert_null(ops->node_renew);
    assert_null(ops->nodes_behind);
    assert_null(ops->node_leave);
    assert_null(ops->feed_wait);
}

/* ---- the change feed (store.h): the same cases as test_store_BACKEND.c runs ---- */

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
        T(test_deleted_hashes_leave_the_files),
        T(test_a_checkpoint_held_up_by_a_reader_is_made_later),
        T(test_deletes_checkpoint_under_concurrent_readers),
        T(test_no_node_leases),
        T(test_key_scan_of_many_keys),
    };
#undef T
    struct CMUnitTest tests[sizeof own / sizeof own[0] + SC_CASES_MAX];
    size_t n = sizeof own / sizeof own[0];
    memcpy(tests, own, sizeof own);
    n += sc_cases(tests + n, setup, teardown, insert_old_key);
    return _cmocka_run_group_tests("store_sqlite", tests, n, NULL, NULL);
}
