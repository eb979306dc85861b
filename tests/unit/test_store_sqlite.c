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
#define SCHEMA_VERSION 4

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

static const kw_audit feed_audit = {.at = NOW, .actor = "cli", .action = "test"};

/* A hash of its own for each n below 2^24. */
static void feed_hash(uint8_t hash[KW_HASH_BYTES], int n)
{
    memset(hash, 0x5C, KW_HASH_BYTES);
    hash[0] = (uint8_t)(n >> 16);
    hash[1] = (uint8_t)(n >> 8);
    hash[2] = (uint8_t)n;
}

/* Inserts key `id` of acc_a with hash n and pepper version 2, its change recorded at `at`. */
static kw_status feed_key(kw_store *s, const char *id, int n, int64_t at, int64_t *seq)
{
    kw_key k = {.created_at = NOW,
                .last_used_at = KW_TIME_NONE,
                .expires_at = NOW + 3600,
                .account_id = "acc_a",
                .name = "feed",
                .environment = "staging",
                .masked = "m"};
    snprintf(k.id, sizeof k.id, "%s", id);
    uint8_t hash[KW_HASH_BYTES];
    feed_hash(hash, n);
    kw_audit au = feed_audit;
    au.at = at;
    return s->ops->key_insert(s, &k, hash, 2, 1000000, NOW, &au, seq);
}

static int64_t feed_head(kw_store *s)
{
    int64_t head = -1;
    assert_int_equal(s->ops->feed_head(s, &head), KW_OK);
    return head;
}

/* Every change after `after` (at most 100000): the caller frees items. */
static kw_key_change_list feed_since(kw_store *s, int64_t after)
{
    kw_key_change_list list = {0};
    assert_int_equal(s->ops->changes_since(s, after, 100000, &list), KW_OK);
    return list;
}

enum { FEED_WRITERS = 4, FEED_KEYS = 30 };

typedef struct {
    kw_store *store;
    int thread;
    int n;
    int64_t seq[2 * FEED_KEYS];
    char id[2 * FEED_KEYS][KW_ID_BUFSZ];
    bool deleted[2 * FEED_KEYS];
    int failures;
} feed_writer;

static void *on_feed_write(void *arg)
{
    feed_writer *w = arg;
    for (int i = 0; i < FEED_KEYS; i++) {
        char id[KW_ID_BUFSZ];
        snprintf(id, sizeof id, "key_w%d_%d", w->thread, i);
        int64_t seq = 0;
        if (feed_key(w->store, id, w->thread * 1000 + i, NOW, &seq) != KW_OK) {
            w->failures++;
            continue;
        }
        snprintf(w->id[w->n], KW_ID_BUFSZ, "%s", id);
        w->seq[w->n++] = seq;
        if (i % 3 == 0) {
            if (w->store->ops->key_delete(w->store, "acc_a", id, &feed_audit, &seq) != KW_OK) {
                w->failures++;
                continue;
            }
            snprintf(w->id[w->n], KW_ID_BUFSZ, "%s", id);
            w->deleted[w->n] = true;
            w->seq[w->n++] = seq;
        }
    }
    return NULL;
}

typedef struct {
    kw_store *store;
    volatile int *stop;
    long reads;
    int gaps;
} feed_reader;

/* A reader never sees position N + 1 before N: the feed it reads has no hole. */
static void *on_feed_read(void *arg)
{
    feed_reader *r = arg;
    while (!*r->stop) {
        kw_key_change_list list = {0};
        if (r->store->ops->changes_since(r->store, 0, 100000, &list) != KW_OK) {
            r->gaps++;
            continue;
        }
        for (size_t i = 0; i < list.count; i++)
            if (list.items[i].seq != (int64_t)i + 1)
                r->gaps++;
        free(list.items);
        r->reads++;
    }
    return NULL;
}

/*
 * Writers on several threads: every change gets its own position, the
 * positions are 1..N without a hole at every moment a reader looks, and
 * each names the key its writer was told.
 */
static void test_feed_positions_are_contiguous_across_writers(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    assert_int_equal(feed_head(s), 0);
    static feed_writer w[FEED_WRITERS];
    pthread_t t[FEED_WRITERS], rt;
    volatile int stop = 0;
    feed_reader r = {.store = s, .stop = &stop};
    assert_int_equal(pthread_create(&rt, NULL, on_feed_read, &r), 0);
    for (int i = 0; i < FEED_WRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].store = s;
        w[i].thread = i;
        assert_int_equal(pthread_create(&t[i], NULL, on_feed_write, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < FEED_WRITERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
        total += w[i].n;
    }
    stop = 1;
    pthread_join(rt, NULL);
    assert_int_equal(r.gaps, 0);
    assert_true(r.reads > 0);
    assert_int_equal(feed_head(s), total);

    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, total);
    for (int i = 0; i < FEED_WRITERS; i++)
        for (int j = 0; j < w[i].n; j++) {
            int64_t seq = w[i].seq[j];
            assert_true(seq >= 1 && seq <= total);
            const kw_key_change *ch = &list.items[seq - 1];
            assert_int_equal(ch->seq, seq);
            assert_string_equal(ch->row.key.id, w[i].id[j]);
            /* A deleted key is gone in its insert's entry too: the state is now's. */
            bool gone = w[i].deleted[j] || (j + 1 < w[i].n && w[i].deleted[j + 1]);
            assert_int_equal(ch->present, !gone);
        }
    free(list.items);
}

/*
 * A create and a delete append one change each; a refused create or
 * delete, and every write that cannot change a verification answer,
 * append none.
 */
static void test_only_key_changes_enter_the_feed(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    kw_user u = {.id = "usr_a", .account_id = "acc_a", .email = "a@example.com", .created_at = NOW};
    assert_int_equal(s->ops->user_insert(s, &u, "$argon2id$stub", &feed_audit), KW_OK);
    assert_int_equal(feed_head(s), 0);
    int64_t seq = 0;
    assert_int_equal(feed_key(s, "key_1", 1, NOW, &seq), KW_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(feed_head(s), 1);

    kw_touch touch[2] = {{"key_1", NOW + 5}, {"rk_1", NOW + 5}};
    assert_int_equal(s->ops->touch(s, touch, 2), KW_OK);
    kw_root_key rk = {
        .id = "rk_1", .name = "r", .masked = "m", .created_at = NOW, .last_used_at = KW_TIME_NONE};
    uint8_t hash[KW_HASH_BYTES];
    feed_hash(hash, 900);
    assert_int_equal(s->ops->root_key_insert(s, &rk, hash, 2, &feed_audit), KW_OK);
    assert_int_equal(s->ops->touch(s, touch, 2), KW_OK);
    assert_int_equal(s->ops->root_key_delete(s, "rk_1", &feed_audit), KW_OK);
    feed_hash(hash, 901);
    assert_int_equal(s->ops->session_insert(s, hash, "usr_a", NOW, NOW + 60), KW_OK);
    assert_int_equal(s->ops->session_touch(s, hash, NOW + 1), KW_OK);
    assert_int_equal(s->ops->session_delete(s, hash), KW_OK);
    sc_add_account(s, "acc_b");
    feed_hash(hash, 902);
    assert_int_equal(s->ops->pepper_check(s, 2, hash), KW_OK);
    seq = -7;
    assert_int_equal(feed_key(s, "key_1", 2, NOW, &seq), KW_ERR_CONFLICT); /* same id */
    assert_int_equal(feed_key(s, "key_2", 1, NOW, &seq), KW_ERR_CONFLICT); /* same hash */
    assert_int_equal(s->ops->key_delete(s, "acc_b", "key_1", &feed_audit, &seq), KW_ERR_NOT_FOUND);
    assert_int_equal(seq, -7); /* untouched when nothing was recorded */
    assert_int_equal(feed_head(s), 1);

    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_1", &feed_audit, &seq), KW_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(feed_head(s), 2);
    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, 2);
    free(list.items);
}

/*
 * Each change comes with its key's state now: the whole record, hash
 * included, or only its id when the key is gone: the feed holds no hash
 * to give back.
 */
static void test_changes_since_reports_present_and_gone(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    assert_int_equal(feed_key(s, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(feed_key(s, "key_2", 2, NOW, NULL), KW_OK);
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_1", &feed_audit, NULL), KW_OK);
    kw_touch touch = {"key_2", NOW + 9};
    assert_int_equal(s->ops->touch(s, &touch, 1), KW_OK);

    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, 3);
    uint8_t h2[KW_HASH_BYTES];
    feed_hash(h2, 2);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(list.items[i].seq, (int64_t)i + 1);
    /* key_1: created, then deleted; both entries say it is gone, by its id alone. */
    static const kw_key_row gone = {.key.id = "key_1"};
    for (size_t i = 0; i < 3; i += 2) {
        assert_false(list.items[i].present);
        assert_memory_equal(&list.items[i].row, &gone, sizeof gone);
    }
    const kw_key_row *row = &list.items[1].row;
    assert_true(list.items[1].present);
    assert_memory_equal(row->hash, h2, KW_HASH_BYTES);
    assert_int_equal(row->pepper_version, 2);
    assert_string_equal(row->key.id, "key_2");
    assert_string_equal(row->key.account_id, "acc_a");
    assert_string_equal(row->key.name, "feed");
    assert_string_equal(row->key.environment, "staging");
    assert_string_equal(row->key.masked, "m");
    assert_int_equal(row->key.created_at, NOW);
    assert_int_equal(row->key.expires_at, NOW + 3600);
    assert_int_equal(row->key.last_used_at, NOW + 9);
    free(list.items);

    /* After a position, and at most `limit`. */
    assert_int_equal(s->ops->changes_since(s, 1, 1, &list), KW_OK);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].seq, 2);
    free(list.items);
    list = feed_since(s, 3);
    assert_int_equal(list.count, 0);
    free(list.items);
}

/* Pruning removes old entries, never the newest, and leaves a gap a reader can see. */
static void test_feed_prune_leaves_a_visible_gap(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    assert_int_equal(feed_key(s, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(feed_key(s, "key_2", 2, NOW + 1, NULL), KW_OK);
    assert_int_equal(feed_key(s, "key_3", 3, NOW + 10, NULL), KW_OK);
    assert_int_equal(feed_key(s, "key_4", 4, NOW + 20, NULL), KW_OK);
    assert_int_equal(s->ops->feed_prune(s, NOW), KW_OK); /* before NOW: nothing */
    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, 4);
    free(list.items);

    assert_int_equal(s->ops->feed_prune(s, NOW + 10), KW_OK);
    list = feed_since(s, 0);
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].seq, 3); /* not 0 + 1: scan again */
    free(list.items);
    list = feed_since(s, 2); /* a reader at 2 missed nothing */
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].seq, 3);
    free(list.items);

    assert_int_equal(s->ops->feed_prune(s, NOW + 1000), KW_OK);
    list = feed_since(s, 0);
    assert_int_equal(list.count, 1); /* the newest stays */
    assert_int_equal(list.items[0].seq, 4);
    free(list.items);
    assert_int_equal(feed_head(s), 4);
    int64_t seq = 0;
    assert_int_equal(feed_key(s, "key_5", 5, NOW + 30, &seq), KW_OK);
    assert_int_equal(seq, 5); /* positions go on from the head */
}

typedef struct {
    kw_store *store;
    volatile int *stop;
    volatile int written;
    volatile int failures;
} scan_writer;

static void *on_scan_write(void *arg)
{
    scan_writer *w = arg;
    while (!*w->stop && w->written < 5000) {
        char id[KW_ID_BUFSZ];
        snprintf(id, sizeof id, "key_s%d", w->written);
        if (feed_key(w->store, id, 10000 + w->written, NOW, NULL) == KW_OK)
            w->written++;
        else
            w->failures++;
    }
    return NULL;
}

typedef struct {
    long rows;
    long stop_after; /* 0: never */
    bool slow;
    bool hash_ok;
} scan_count;

static kw_status on_scan_row(void *ctx, const kw_key_row *row)
{
    scan_count *c = ctx;
    c->rows++;
    if (row->pepper_version == 2) {
        uint8_t want[KW_HASH_BYTES];
        feed_hash(want, 10000 + atoi(row->key.id + 5));
        c->hash_ok = c->hash_ok && memcmp(want, row->hash, KW_HASH_BYTES) == 0;
    }
    if (c->slow && c->rows < 20) {
        struct timespec pause = {0, 5000000L}; /* writers commit meanwhile */
        nanosleep(&pause, NULL);
    }
    return c->stop_after && c->rows >= c->stop_after ? KW_ERR_INTERNAL : KW_OK;
}

/*
 * A scan sees the rows and the head of one moment while writers go on: a
 * key from before the feed existed (inserted behind the store's back) is
 * read like any other, and every other row is one change of the feed.
 */
static void test_key_scan_is_one_snapshot(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    raw_ok(f, "INSERT INTO api_keys(id, account_id, name, environment, masked, hash, "
              "pepper_version, created_at) VALUES ('key_old', 'acc_a', 'old', 'production', "
              "'m', " OLD_HASH ", 1, 1700000000)");
    volatile int stop = 0;
    scan_writer w = {.store = s, .stop = &stop};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, on_scan_write, &w), 0);
    while (w.written < 20 && !w.failures) {
        struct timespec pause = {0, 1000000L};
        nanosleep(&pause, NULL);
    }
    int moved = 0;
    for (int round = 0; round < 10; round++) {
        scan_count c = {.slow = true, .hash_ok = true};
        int64_t head = -1;
        assert_int_equal(s->ops->key_scan(s, on_scan_row, &c, &head), KW_OK);
        assert_int_equal(c.rows, head + 1);
        assert_true(c.hash_ok);
        moved += feed_head(s) > head;
    }
    stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(w.failures, 0);
    assert_true(moved > 0); /* the writer did commit during scans */

    scan_count c = {.stop_after = 3};
    int64_t head = -1;
    assert_int_equal(s->ops->key_scan(s, on_scan_row, &c, &head), KW_ERR_INTERNAL);
    assert_int_equal(c.rows, 3);
    assert_int_equal(head, -1);
}

/* The resident set of this process in bytes (0 when unknown). */
static long resident_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

typedef struct {
    long rows;
    long base;
    long peak;
} big_scan;

static kw_status on_big_row(void *ctx, const kw_key_row *row)
{
    (void)row;
    big_scan *b = ctx;
    if (++b->rows % 10000 == 0) {
        long grown = resident_bytes() - b->base;
        if (grown > b->peak)
            b->peak = grown;
    }
    return KW_OK;
}

/* Many keys are scanned as a stream: memory does not grow with them. */
static void test_key_scan_of_many_keys(void **state)
{
    fixture *f = *state;
    kw_store *s = f->store;
    sc_add_account(s, "acc_a");
    raw_ok(f, MANY_KEYS);
    big_scan b = {.base = resident_bytes()};
    int64_t head = -1;
    assert_int_equal(s->ops->key_scan(s, on_big_row, &b, &head), KW_OK);
    assert_int_equal(b.rows, SCAN_KEYS);
    assert_int_equal(head, 0);
    fprintf(stderr, "# scan of %d keys: resident set grew by at most %ld KiB\n", SCAN_KEYS,
            b.peak / 1024);
#ifndef __SANITIZE_ADDRESS__ /* its quarantine keeps freed batches resident */
    assert_true(b.peak < SCAN_RSS_LIMIT);
#endif
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
        T(test_feed_positions_are_contiguous_across_writers),
        T(test_only_key_changes_enter_the_feed),
        T(test_changes_since_reports_present_and_gone),
        T(test_feed_prune_leaves_a_visible_gap),
        T(test_key_scan_is_one_snapshot),
        T(test_key_scan_of_many_keys),
    };
#undef T
    struct CMUnitTest tests[sizeof own / sizeof own[0] + SC_CASES_MAX];
    size_t n = sizeof own / sizeof own[0];
    memcpy(tests, own, sizeof own);
    n += sc_cases(tests + n, setup, teardown);
    return _cmocka_run_group_tests("store_sqlite", tests, n, NULL, NULL);
}
