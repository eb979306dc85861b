/*
 * test_sqlite_backup.c - backups of the SQLite store and their restore:
 * the copy is consistent while another connection writes, private,
 * self-contained and written atomically; a restore refuses what it cannot
 * restore and what it must not overwrite, changing nothing then.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store/sqlite_backup.h"
#include "store/sqlite_schema.h"
#include "store/store.h"
#include "store_cases.h"
#include "testutil.h"

#define PATHSZ 4096

/* A fresh temp dir with the paths the tests use in it. */
typedef struct {
    char *dir;
    char db[PATHSZ];     /* a keyward database */
    char backup[PATHSZ]; /* where backups go */
    char target[PATHSZ]; /* where restores go */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    snprintf(f->db, sizeof f->db, "%s/keyward.db", f->dir);
    snprintf(f->backup, sizeof f->backup, "%s/backup.db", f->dir);
    snprintf(f->target, sizeof f->target, "%s/restored.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* Opens the store at path, migrated. */
static kw_store *open_store(const char *path)
{
    char url[PATHSZ + 8];
    snprintf(url, sizeof url, "sqlite:%s", path);
    kw_store *s = NULL;
    kw_error err;
    assert_int_equal(kw_store_open(url, &s, &err), KW_OK);
    int version;
    assert_int_equal(s->ops->migrate(s, &version, &err), KW_OK);
    return s;
}

/* Creates a keyward database at path holding the accounts named in ids (NULL-terminated). */
static void make_db(const char *path, const char *const *ids)
{
    kw_store *s = open_store(path);
    for (; ids && *ids; ids++)
        sc_add_account(s, *ids);
    s->ops->close(s);
}

static sqlite3 *raw_open(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = raw_open(path);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static int64_t count_account(const char *path, const char *id)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM accounts WHERE id = '%s'", id);
    return raw_int(path, sql);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* The number of entries of dir, besides . and .. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static bool exists_sidecar(const char *path, const char *suffix)
{
    char p[PATHSZ + 16];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return exists(p);
}

/*
 * Damages the database at path the way integrity_check finds and
 * quick_check does not: an index whose definition no longer matches its
 * entries.
 */
static void damage(const char *path)
{
    raw_exec(path, "CREATE TABLE filler(a, b); CREATE INDEX filler_a ON filler(a);"
                   "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)"
                   " INSERT INTO filler SELECT i, -i FROM n;"
                   "PRAGMA writable_schema=ON;"
                   "UPDATE sqlite_master SET sql = 'CREATE INDEX filler_a ON filler(b)'"
                   " WHERE name = 'filler_a';");
}

static void test_backup_is_a_private_self_contained_copy(void **state)
{
    fixture *f = *state;
    static const char *const ids[] = {"acc_a", "acc_b", NULL};
    make_db(f->db, ids);
    /* Open, as a running server's would be, and with a WAL. */
    kw_store *live = open_store(f->db);
    sc_add_account(live, "acc_c");
    assert_true(exists_sidecar(f->db, "-wal"));

    mode_t old = umask(0277); /* the file's mode must not depend on the umask */
    kw_sqlite_copy_info info;
    kw_error err;
    kw_status st = kw_sqlite_backup(f->db, f->backup, &info, &err);
    umask(old);
    assert_int_equal(st, KW_OK);
    live->ops->close(live);

    struct stat sb;
    assert_int_equal(stat(f->backup, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(info.bytes, sb.st_size);
    assert_int_equal(info.schema_version, kw_sqlite_schema_latest());
    /* Not in WAL mode (header bytes 18 and 19 are 1): the file is the whole backup. */
    size_t len;
    unsigned char *bytes = tu_read_file(f->backup, &len);
    assert_true(len > 100);
    assert_int_equal(bytes[18], 1);
    assert_int_equal(bytes[19], 1);
    free(bytes);
    assert_false(exists_sidecar(f->backup, "-wal"));
    assert_false(exists_sidecar(f->backup, "-journal"));
    /* The commit still in the live WAL is in the copy. */
    assert_int_equal(count_account(f->backup, "acc_c"), 1);
    assert_int_equal(raw_int(f->backup, "SELECT count(*) FROM accounts"), 3);
    /* The database, its WAL and shm files (if any), and the backup: no temp file. */
    assert_int_equal(dir_entries(f->dir),
                     2 + exists_sidecar(f->db, "-wal") + exists_sidecar(f->db, "-shm"));
}

/* ---- a backup while another connection keeps committing ---- */

#define FILLER_ROWS    4000 /* about 1000 pages: several steps of the copy */
#define WRITER_SECONDS 30

typedef struct {
    const char *path;
    atomic_long committed; /* rows committed so far; row ids are 1..committed */
    atomic_bool stop;
    atomic_bool timed_out; /* the writer ran out of time before being stopped */
} writer;

static void *on_write(void *arg)
{
    writer *w = arg;
    sqlite3 *db = raw_open(w->path);
    sqlite3_stmt *st;
    sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
    sqlite3_prepare_v2(db, "INSERT INTO seq(id) VALUES (?1)", -1, &st, NULL);
    time_t until = time(NULL) + WRITER_SECONDS;
    for (long id = 1; !atomic_load(&w->stop); id++) {
        if (time(NULL) > until) {
            atomic_store(&w->timed_out, true);
            break;
        }
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) != SQLITE_DONE)
            break;
        sqlite3_reset(st);
        atomic_store(&w->committed, id);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return NULL;
}

static void test_backup_while_another_connection_writes(void **state)
{
    fixture *f = *state;
    make_db(f->db, NULL);
    raw_exec(f->db, "CREATE TABLE seq(id INTEGER PRIMARY KEY);"
                    "CREATE TABLE filler(v BLOB);"
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)"
                    " INSERT INTO filler SELECT randomblob(900) FROM n;");
    writer w = {.path = f->db};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, on_write, &w), 0);
    while (atomic_load(&w.committed) < 50)
        usleep(1000);
    long before = atomic_load(&w.committed);
    kw_sqlite_copy_info info;
    kw_error err;
    kw_status st = kw_sqlite_backup(f->db, f->backup, &info, &err);
    /* Finished while the writer was still committing: never starved by restarts. */
    bool starved = atomic_load(&w.timed_out);
    atomic_store(&w.stop, true);
    pthread_join(t, NULL);
    assert_int_equal(st, KW_OK);
    assert_false(starved);
    assert_true(info.restarts > 0); /* the writer did make the copy start over */

    /* Every row committed before the backup began is in it, and the copy is
     * one snapshot: the rows 1..N, no gap, and an intact file. */
    int64_t n = raw_int(f->backup, "SELECT count(*) FROM seq");
    assert_true(n >= before);
    assert_int_equal(raw_int(f->backup, "SELECT coalesce(max(id), 0) FROM seq"), n);
    assert_int_equal(raw_int(f->backup, "SELECT count(*) FROM filler"), FILLER_ROWS);
    int version;
    assert_int_equal(kw_sqlite_backup_check(f->backup, &version, &err), KW_OK);
}

static void test_failed_backup_leaves_the_file_untouched(void **state)
{
    fixture *f = *state;
    kw_sqlite_copy_info info;
    kw_error err;
    write_file(f->backup, "the previous backup");

    assert_int_equal(kw_sqlite_backup(f->db, f->backup, &info, &err), KW_ERR_NOT_FOUND);
    assert_non_null(strstr(err.message, "no database"));

    make_db(f->db, NULL);
    damage(f->db);
    int before = dir_entries(f->dir);
    assert_int_equal(kw_sqlite_backup(f->db, f->backup, &info, &err), KW_ERR_INTERNAL);
    assert_non_null(strstr(err.message, "integrity check"));
    size_t len;
    unsigned char *bytes = tu_read_file(f->backup, &len);
    assert_int_equal(len, strlen("the previous backup"));
    assert_memory_equal(bytes, "the previous backup", len);
    free(bytes);
    assert_int_equal(dir_entries(f->dir), before); /* the temp file is gone */

    char path[PATHSZ + 32];
    snprintf(path, sizeof path, "%s/missing/backup.db", f->dir);
    assert_int_equal(kw_sqlite_backup(f->db, path, &info, &err), KW_ERR_UNAVAILABLE);
    assert_int_equal(kw_sqlite_backup(f->db, f->dir, &info, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "directory"));
    snprintf(path, sizeof path, "%s/fifo", f->dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(kw_sqlite_backup(f->db, path, &info, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "not a regular file"));
    unlink(path);
    /* The live database or its WAL, named one way or another. */
    snprintf(path, sizeof path, "%s/../%s/keyward.db-wal", f->dir, strrchr(f->dir, '/') + 1);
    assert_int_equal(kw_sqlite_backup(f->db, path, &info, &err), KW_ERR_INVALID);
    assert_int_equal(kw_sqlite_backup(f->db, f->db, &info, &err), KW_ERR_INVALID);
    assert_int_equal(dir_entries(f->dir), before);
}

static void test_check_refuses_what_cannot_be_restored(void **state)
{
    fixture *f = *state;
    int version = -1;
    kw_error err;
    char path[PATHSZ + 32];

    snprintf(path, sizeof path, "%s/nothing.db", f->dir);
    assert_int_equal(kw_sqlite_backup_check(path, &version, &err), KW_ERR_INVALID);
    assert_int_equal(kw_sqlite_backup_check(f->dir, &version, &err), KW_ERR_INVALID);

    snprintf(path, sizeof path, "%s/text.db", f->dir);
    write_file(path, "keyward backup? no, a text file that is long enough to have a header\n");
    assert_int_equal(kw_sqlite_backup_check(path, &version, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "not a SQLite database"));

    snprintf(path, sizeof path, "%s/other.db", f->dir);
    raw_exec(path, "CREATE TABLE schema_migrations(version TEXT PRIMARY KEY);"
                   "INSERT INTO schema_migrations VALUES ('20240101120000');");
    assert_int_equal(kw_sqlite_backup_check(path, &version, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "not a keyward database"));

    make_db(f->db, NULL);
    assert_int_equal(kw_sqlite_backup_check(f->db, &version, &err), KW_OK);
    assert_int_equal(version, kw_sqlite_schema_latest());

    char sql[160];
    snprintf(sql, sizeof sql, "INSERT INTO schema_migrations VALUES (%d, 0)",
             kw_sqlite_schema_latest() + 1);
    raw_exec(f->db, sql);
    assert_int_equal(kw_sqlite_backup_check(f->db, &version, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "newer than this build"));

    snprintf(path, sizeof path, "%s/damaged.db", f->dir);
    make_db(path, NULL);
    damage(path);
    assert_int_equal(kw_sqlite_backup_check(path, &version, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "integrity check"));
}

static void test_restore_overwrites_data_only_with_force(void **state)
{
    fixture *f = *state;
    static const char *const a[] = {"acc_a", NULL}, *const b[] = {"acc_b", NULL};
    kw_sqlite_copy_info info;
    kw_error err;
    make_db(f->db, a);
    assert_int_equal(kw_sqlite_backup(f->db, f->backup, &info, &err), KW_OK);

    /* Into a new place. */
    mode_t old = umask(0277);
    kw_status st = kw_sqlite_restore(f->backup, f->target, false, &info, &err);
    umask(old);
    assert_int_equal(st, KW_OK);
    assert_false(info.replaced);
    assert_int_equal(info.schema_version, kw_sqlite_schema_latest());
    assert_int_equal(count_account(f->target, "acc_a"), 1);
    struct stat sb;
    assert_int_equal(stat(f->target, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(info.bytes, sb.st_size);

    /* Over a database that holds data: only with --force. */
    unlink(f->target);
    make_db(f->target, b);
    int before = dir_entries(f->dir);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, false, &info, &err), KW_ERR_CONFLICT);
    assert_non_null(strstr(err.message, "--force"));
    assert_int_equal(count_account(f->target, "acc_b"), 1);
    assert_int_equal(dir_entries(f->dir), before);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, true, &info, &err), KW_OK);
    assert_true(info.replaced);
    assert_int_equal(count_account(f->target, "acc_a"), 1);
    assert_int_equal(count_account(f->target, "acc_b"), 0);

    /* Over an empty keyward database: no need. */
    unlink(f->target);
    make_db(f->target, NULL);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, false, &info, &err), KW_OK);
    assert_true(info.replaced);
    assert_int_equal(count_account(f->target, "acc_a"), 1);

    /* Over a file that is not a database, or not keyward's: only with --force. */
    write_file(f->target, "not a database, but someone's file all the same\n");
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, false, &info, &err), KW_ERR_CONFLICT);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, true, &info, &err), KW_OK);
    unlink(f->target);
    raw_exec(f->target, "CREATE TABLE notes(text TEXT)");
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, false, &info, &err), KW_ERR_CONFLICT);
    assert_int_equal(raw_int(f->target, "SELECT count(*) FROM sqlite_master"), 1);

    /* Not onto the database itself. */
    assert_int_equal(kw_sqlite_restore(f->db, f->db, true, &info, &err), KW_ERR_INVALID);
}

static void test_restore_refuses_a_database_in_use(void **state)
{
    fixture *f = *state;
    static const char *const a[] = {"acc_a", NULL}, *const b[] = {"acc_b", NULL};
    kw_sqlite_copy_info info;
    kw_error err;
    make_db(f->db, a);
    assert_int_equal(kw_sqlite_backup(f->db, f->backup, &info, &err), KW_OK);
    make_db(f->target, b);
    kw_store *live = open_store(f->target); /* as keyward serve holds it */
    int before = dir_entries(f->dir);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, true, &info, &err),
                     KW_ERR_UNAVAILABLE);
    assert_non_null(strstr(err.message, "in use"));
    assert_int_equal(dir_entries(f->dir), before);
    assert_int_equal(live->ops->ping(live), KW_OK);
    sc_add_account(live, "acc_c"); /* the store is still usable */
    live->ops->close(live);
    assert_int_equal(count_account(f->target, "acc_c"), 1);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, true, &info, &err), KW_OK);
    assert_int_equal(count_account(f->target, "acc_a"), 1);
    assert_int_equal(count_account(f->target, "acc_c"), 0);
}

static void test_restore_migrates_an_older_schema(void **state)
{
    fixture *f = *state;
    static const char *const a[] = {"acc_a", NULL};
    kw_sqlite_copy_info info;
    kw_error err;
    make_db(f->db, a);
    assert_int_equal(kw_sqlite_backup(f->db, f->backup, &info, &err), KW_OK);
    /* What a backup of schema version 1 looks like. */
    raw_exec(f->backup, "DROP TRIGGER audit_log_no_delete; DROP TABLE audit_prune;"
                        "DROP INDEX audit_log_at; ALTER TABLE audit_log DROP COLUMN source_ip;"
                        "ALTER TABLE api_keys DROP COLUMN enabled;"
                        "ALTER TABLE api_keys DROP COLUMN rolled_from;"
                        "ALTER TABLE api_keys DROP COLUMN rolled_to;"
                        "ALTER TABLE api_keys DROP COLUMN metadata;"
                        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
                        "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
                        "DROP TABLE nodes; DROP TABLE feed_head; DROP TABLE key_changes;"
                        "DROP TABLE sessions; DROP TABLE pepper_checks;"
                        "DELETE FROM schema_migrations WHERE version > 1;");
    int version;
    assert_int_equal(kw_sqlite_backup_check(f->backup, &version, &err), KW_OK);
    assert_int_equal(version, 1);
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, false, &info, &err), KW_OK);
    assert_int_equal(info.backup_schema_version, 1);
    assert_int_equal(info.schema_version, kw_sqlite_schema_latest());
    assert_int_equal(raw_int(f->target, "SELECT max(version) FROM schema_migrations"),
                     kw_sqlite_schema_latest());
    assert_int_equal(raw_int(f->target, "SELECT count(*) FROM sessions"), 0);
    assert_int_equal(count_account(f->target, "acc_a"), 1);
}

/*
 * Leaves a -wal full of committed pages beside path, as a process killed
 * while it had the database open does.
 */
static void leave_wal(const char *path, const char *account)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sqlite3 *db;
        char sql[256];
        snprintf(sql, sizeof sql,
                 "PRAGMA wal_autocheckpoint=0; INSERT INTO accounts VALUES ('%s', 'x', 0);"
                 "UPDATE accounts SET name = 'from the stale WAL';",
                 account);
        if (sqlite3_open(path, &db) != SQLITE_OK ||
            sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            _exit(1);
        _exit(0); /* without closing: the WAL stays */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_restore_removes_a_stale_wal(void **state)
{
    fixture *f = *state;
    static const char *const a[] = {"acc_a", NULL}, *const b[] = {"acc_b", NULL};
    kw_sqlite_copy_info info;
    kw_error err;
    make_db(f->db, a);
    assert_int_equal(kw_sqlite_backup(f->db, f->backup, &info, &err), KW_OK);

    /* A target whose WAL holds commits, and whose main file was then lost:
     * only --force replaces it, and its WAL must not outlive it. */
    make_db(f->target, b);
    leave_wal(f->target, "acc_stale");
    assert_true(exists_sidecar(f->target, "-wal"));
    write_file(f->target, "lost");
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, false, &info, &err), KW_ERR_CONFLICT);
    assert_true(exists_sidecar(f->target, "-wal"));
    assert_int_equal(kw_sqlite_restore(f->backup, f->target, true, &info, &err), KW_OK);
    assert_false(exists_sidecar(f->target, "-wal"));
    assert_false(exists_sidecar(f->target, "-shm"));
    assert_int_equal(count_account(f->target, "acc_a"), 1);
    assert_int_equal(raw_int(f->target, "SELECT count(*) FROM accounts"), 1);
    int version;
    assert_int_equal(kw_sqlite_backup_check(f->target, &version, &err), KW_OK);

    /* The same with a readable target: its WAL is checkpointed and removed. */
    make_db(f->db, NULL);
    leave_wal(f->db, "acc_stale");
    assert_int_equal(kw_sqlite_restore(f->backup, f->db, true, &info, &err), KW_OK);
    assert_false(exists_sidecar(f->db, "-wal"));
    assert_int_equal(count_account(f->db, "acc_stale"), 0);
    assert_int_equal(count_account(f->db, "acc_a"), 1);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_backup_is_a_private_self_contained_copy),
        T(test_backup_while_another_connection_writes),
        T(test_failed_backup_leaves_the_file_untouched),
        T(test_check_refuses_what_cannot_be_restored),
        T(test_restore_overwrites_data_only_with_force),
        T(test_restore_refuses_a_database_in_use),
        T(test_restore_migrates_an_older_schema),
        T(test_restore_removes_a_stale_wal),
    };
#undef T
    return cmocka_run_group_tests_name("sqlite_backup", tests, NULL, NULL);
}
