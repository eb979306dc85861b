/*
 * sqlite_backup.c - online backups of the SQLite store and their restore.
 *
 * The copy is always made with SQLite's backup API, never by copying
 * bytes: in WAL mode the latest commits live in the -wal file and the
 * wal-index, which only SQLite reads correctly, and the API copies the
 * pages of one read snapshot, so the result is consistent even while
 * keyward serve writes.
 */
#include "store/sqlite_backup.h"
#include "store/sqlite_schema.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGES_PER_STEP 256   /* 1 MiB of 4 KiB pages per read transaction */
#define BUSY_SLEEP_MS  10    /* pause before retrying a step that found the source busy */
#define BUSY_LIMIT_MS  30000 /* then give up */
#define MAX_RESTARTS   4     /* restarts before the rest is copied in one step */
#define TARGET_WAIT_MS 2000  /* restore: how long another process may hold the target */

/* The files SQLite may keep beside a database, named by these suffixes. */
static const char *const sidecars[] = {"-wal", "-shm", "-journal"};
#define SIDECAR_COUNT (sizeof sidecars / sizeof sidecars[0])

/* A restorable database has these tables (schema version 1 on). */
static const char keyward_tables_sql[] =
    "SELECT (SELECT count(*) FROM pragma_table_info('schema_migrations') "
    "        WHERE name IN ('version', 'applied_at')) = 2 "
    "   AND (SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
    "        ('accounts', 'api_keys', 'root_keys', 'users', 'audit_log')) = 5";

/* Whether a keyward database holds anything an operator would miss. */
static const char keyward_data_sql[] =
    "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM api_keys) "
    "OR EXISTS (SELECT 1 FROM root_keys) OR EXISTS (SELECT 1 FROM users) "
    "OR EXISTS (SELECT 1 FROM audit_log)";

/* The directory part of path ("." when there is none) in dir. */
static void dir_of(const char *path, char dir[PATH_MAX])
{
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n == 0) {
        memcpy(dir, ".", 2);
        return;
    }
    if (n >= PATH_MAX)
        n = PATH_MAX - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
}

/*
 * path with its directory resolved (which must exist): two names of one
 * place give the same string. false when the directory cannot be resolved.
 */
static bool canonical(const char *path, char out[PATH_MAX])
{
    char dir[PATH_MAX], real[PATH_MAX];
    dir_of(path, dir);
    if (!realpath(dir, real))
        return false;
    const char *slash = strrchr(path, '/');
    int n = snprintf(out, PATH_MAX, "%s/%s", real, slash ? slash + 1 : path);
    return n > 0 && n < PATH_MAX;
}

/* true when `file` names the database at db_path or one of its sidecar files. */
static bool is_database_file(const char *file, const char *db_path)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (!canonical(file, a) || !canonical(db_path, b))
        return false;
    size_t n = strlen(b);
    if (strncmp(a, b, n) != 0)
        return false;
    if (a[n] == '\0')
        return true;
    for (size_t i = 0; i < SIDECAR_COUNT; i++)
        if (strcmp(a + n, sidecars[i]) == 0)
            return true;
    return false;
}

/* Runs a query of one integer into *out (0 when it yields no row); an SQLite result code. */
static int query_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    *out = 0;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            *out = sqlite3_column_int64(st, 0);
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Runs a query of one text value and compares it with want: SQLITE_OK, or `otherwise`. */
static int query_is(sqlite3 *db, const char *sql, const char *want, int otherwise)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, 0);
            rc = v && strcmp((const char *)v, want) == 0 ? SQLITE_OK : otherwise;
        } else if (rc == SQLITE_DONE) {
            rc = otherwise;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* SQLITE_OK when PRAGMA integrity_check finds nothing wrong, SQLITE_CORRUPT when it does. */
static int check_integrity(sqlite3 *db)
{
    return query_is(db, "PRAGMA integrity_check(1)", "ok", SQLITE_CORRUPT);
}

/* true for the result codes of a file that is not an intact database. */
static bool damaged(int rc)
{
    return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB;
}

/* The schema version of a database (0 when it has no schema_migrations table). */
static int read_version(sqlite3 *db, int *version)
{
    int64_t v = 0;
    int rc = query_int(db,
                       "SELECT count(*) FROM sqlite_master "
                       "WHERE type = 'table' AND name = 'schema_migrations'",
                       &v);
    if (rc == SQLITE_OK && v)
        rc = query_int(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", &v);
    *version = v < 0 || v > INT32_MAX ? INT32_MAX : (int)v;
    return rc;
}

/* Opens the database at path with flags and this module's busy timeout. */
static int open_db(const char *path, int flags, int busy_ms, sqlite3 **db)
{
    int rc = sqlite3_open_v2(path, db, flags, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(*db, busy_ms);
    if (rc != SQLITE_OK) {
        sqlite3_close(*db);
        *db = NULL;
    }
    return rc;
}

/* The temporary file that becomes the target once it is complete. */
typedef struct {
    char path[PATH_MAX]; /* "" when there is none (any more) */
    sqlite3 *db;         /* open on path while it is being filled */
} staged;

/* Removes the staged file and whatever SQLite kept beside it. */
static void staged_discard(staged *s)
{
    if (s->db)
        sqlite3_close(s->db);
    s->db = NULL;
    if (!s->path[0])
        return;
    unlink(s->path);
    for (size_t i = 0; i < SIDECAR_COUNT; i++) {
        char side[PATH_MAX + 16];
        snprintf(side, sizeof side, "%s%s", s->path, sidecars[i]);
        unlink(side);
    }
    s->path[0] = '\0';
}

/*
 * Creates a new, empty file "<target>.tmp-XXXXXX" beside target with
 * O_CREAT|O_EXCL and mode 0600 whatever the umask (it will hold key
 * hashes), and opens it with SQLite. On failure the caller still calls
 * staged_discard.
 */
static kw_status staged_open(staged *s, const char *target, kw_error *err)
{
    s->db = NULL;
    s->path[0] = '\0';
    char tmpl[PATH_MAX];
    int n = snprintf(tmpl, sizeof tmpl, "%s.tmp-XXXXXX", target);
    if (n < 0 || n >= (int)sizeof tmpl)
        return kw_error_set(err, KW_ERR_INVALID, "The path %s is too long.", target);
    int fd = mkostemp(tmpl, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        char dir[PATH_MAX];
        dir_of(target, dir);
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot create a file in %s: %s.", dir,
                            strerror(e));
    }
    memcpy(s->path, tmpl, sizeof tmpl);
    int e = fchmod(fd, 0600) == 0 ? 0 : errno;
    close(fd);
    if (e)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot set the mode of %s: %s.", s->path,
                            strerror(e));
    int rc = open_db(s->path, SQLITE_OPEN_READWRITE, KW_SQLITE_BUSY_MS, &s->db);
    if (rc != SQLITE_OK)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot open %s: %s.", s->path,
                            sqlite3_errstr(rc));
    return KW_OK;
}

/*
 * Copies the database behind src into the staged file, PAGES_PER_STEP
 * pages per step. Each step is a read transaction of its own and nothing
 * is held between steps, so writers of the source are never held up (in
 * WAL mode a reader does not block them anyway). A step that finds the
 * source busy is retried after a short sleep, for up to BUSY_LIMIT_MS. A
 * commit by another connection makes the next step start the copy over;
 * after MAX_RESTARTS of those the rest is copied in one step, that is in
 * one read snapshot, which a busy server could otherwise keep restarting
 * for ever. The copy is then switched out of WAL mode, so that it is one
 * self-contained file, and checked with PRAGMA integrity_check. Returns an
 * SQLite result code: SQLITE_CORRUPT when the check found damage.
 */
static int staged_fill(staged *s, sqlite3 *src, int *restarts)
{
    *restarts = 0;
    sqlite3_backup *b = sqlite3_backup_init(s->db, "main", src, "main");
    if (!b)
        return sqlite3_errcode(s->db);
    int rc, pages = PAGES_PER_STEP, left = -1, busy_ms = 0;
    for (;;) {
        rc = sqlite3_backup_step(b, pages);
        if (rc == SQLITE_DONE)
            break;
        if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
            if (busy_ms >= BUSY_LIMIT_MS)
                break;
            sqlite3_sleep(BUSY_SLEEP_MS);
            busy_ms += BUSY_SLEEP_MS;
            continue;
        }
        if (rc != SQLITE_OK)
            break;
        /* After a restart the copy is back near its start: more pages are left. */
        int now_left = sqlite3_backup_remaining(b);
        if (left >= 0 && now_left >= left && ++*restarts >= MAX_RESTARTS)
            pages = -1;
        left = now_left;
    }
    int finished = sqlite3_backup_finish(b);
    rc = rc == SQLITE_DONE ? finished : rc;
    if (rc == SQLITE_OK)
        rc = query_is(s->db, "PRAGMA journal_mode=DELETE", "delete", SQLITE_ERROR);
    if (rc == SQLITE_OK)
        rc = check_integrity(s->db);
    return rc;
}

/* fsyncs the directory of path, so that a rename in it survives a crash. 0 or an errno. */
static int sync_dir(const char *path)
{
    char dir[PATH_MAX];
    dir_of(path, dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int e = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return e;
}

/*
 * Closes the staged file, fsyncs it, renames it over target and fsyncs the
 * directory. *bytes receives its size. On failure before the rename the
 * caller's staged_discard removes it.
 */
static kw_status staged_commit(staged *s, const char *target, int64_t *bytes, kw_error *err)
{
    int rc = sqlite3_close(s->db);
    s->db = NULL;
    if (rc != SQLITE_OK)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot close %s: %s.", s->path,
                            sqlite3_errstr(rc));
    struct stat st = {0};
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    int e = 0;
    if (fd < 0 || fsync(fd) != 0 || fstat(fd, &st) != 0)
        e = errno ? errno : EIO;
    if (fd >= 0)
        close(fd);
    if (e)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot write %s to disk: %s.", s->path,
                            strerror(e));
    *bytes = (int64_t)st.st_size;
    if (rename(s->path, target) != 0)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot rename %s to %s: %s.", s->path, target,
                            strerror(errno));
    s->path[0] = '\0';
    if ((e = sync_dir(target)) != 0)
        return kw_error_set(err, KW_ERR_UNAVAILABLE,
                            "%s was written, but its directory could not be synced: %s.", target,
                            strerror(e));
    return KW_OK;
}

/* The error of a copy that failed with SQLite result code rc; `file` was not changed. */
static kw_status copy_failed(int rc, const char *from, const char *file, kw_error *err)
{
    if (damaged(rc))
        return kw_error_set(err, KW_ERR_INTERNAL,
                            "The copy of %s fails SQLite's integrity check (the database is "
                            "damaged); %s was not changed.",
                            from, file);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "%s stayed busy for %d s; %s was not changed.",
                            from, BUSY_LIMIT_MS / 1000, file);
    return kw_error_set(err, kw_sqlite_status(rc) == KW_OK ? KW_ERR_INTERNAL : kw_sqlite_status(rc),
                        "Cannot copy %s: %s; %s was not changed.", from, sqlite3_errstr(rc), file);
}

kw_status kw_sqlite_backup(const char *db_path, const char *file, kw_sqlite_copy_info *info,
                           kw_error *err)
{
    memset(info, 0, sizeof *info);
    kw_error_clear(err);
    struct stat st;
    if (stat(db_path, &st) != 0)
        return errno == ENOENT
                   ? kw_error_set(err, KW_ERR_NOT_FOUND, "There is no database at %s.", db_path)
                   : kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot read %s: %s.", db_path,
                                  strerror(errno));
    if (!S_ISREG(st.st_mode))
        return kw_error_set(err, KW_ERR_INVALID, "%s is not a database file.", db_path);
    if (stat(file, &st) == 0 && S_ISDIR(st.st_mode))
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s is a directory; name the backup file, as in %s/keyward.db.", file,
                            file);
    /* The rename would replace whatever is there: never a device or a pipe. */
    if (lstat(file, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
        return kw_error_set(err, KW_ERR_INVALID, "%s exists and is not a regular file.", file);
    if (is_database_file(file, db_path))
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s is the database itself or one of its files; back up to another "
                            "path.",
                            file);

    /* Read-write, as every connection to a WAL database should be, but never created. */
    sqlite3 *src = NULL;
    int rc = open_db(db_path, SQLITE_OPEN_READWRITE, KW_SQLITE_BUSY_MS, &src);
    if (rc != SQLITE_OK)
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot open %s: %s.", db_path,
                            sqlite3_errstr(rc));
    staged s;
    kw_status status = staged_open(&s, file, err);
    if (status == KW_OK && (rc = staged_fill(&s, src, &info->restarts)) != SQLITE_OK)
        status = copy_failed(rc, db_path, file, err);
    if (status == KW_OK && (rc = read_version(s.db, &info->schema_version)) != SQLITE_OK)
        status = copy_failed(rc, db_path, file, err);
    if (status == KW_OK)
        status = staged_commit(&s, file, &info->bytes, err);
    staged_discard(&s);
    sqlite3_close(src);
    return status;
}

kw_status kw_sqlite_backup_check(const char *file, int *version, kw_error *err)
{
    *version = 0;
    kw_error_clear(err);
    struct stat st;
    if (stat(file, &st) != 0)
        return errno == ENOENT ? kw_error_set(err, KW_ERR_INVALID, "There is no file %s.", file)
                               : kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot read %s: %s.", file,
                                              strerror(errno));
    if (!S_ISREG(st.st_mode))
        return kw_error_set(err, KW_ERR_INVALID, "%s is not a regular file.", file);
    sqlite3 *db = NULL;
    int64_t objects = 0, is_keyward = 0;
    /* The first read of the schema tells a database from any other file. */
    int rc = open_db(file, SQLITE_OPEN_READONLY, KW_SQLITE_BUSY_MS, &db);
    if (rc == SQLITE_OK)
        rc = query_int(db, "SELECT count(*) FROM sqlite_master", &objects);
    if (rc == SQLITE_OK)
        rc = check_integrity(db);
    if (rc == SQLITE_OK)
        rc = query_int(db, keyward_tables_sql, &is_keyward);
    if (rc == SQLITE_OK && is_keyward)
        rc = read_version(db, version);
    kw_status status = KW_OK;
    if ((rc & 0xff) == SQLITE_NOTADB)
        status = kw_error_set(err, KW_ERR_INVALID, "%s is not a SQLite database.", file);
    else if (damaged(rc))
        status = kw_error_set(err, KW_ERR_INVALID,
                              "%s fails SQLite's integrity check: it is damaged and cannot be "
                              "restored.",
                              file);
    else if (rc != SQLITE_OK)
        status =
            kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot read %s: %s.", file, sqlite3_errstr(rc));
    else if (!is_keyward || *version < 1)
        status = kw_error_set(err, KW_ERR_INVALID,
                              "%s is a SQLite database, but not a keyward database.", file);
    else if (*version > kw_sqlite_schema_latest())
        status = kw_error_set(err, KW_ERR_INVALID,
                              "%s has schema version %d, newer than this build of keyward "
                              "knows (%d); restore it with a newer keyward.",
                              file, *version, kw_sqlite_schema_latest());
    sqlite3_close(db);
    return status;
}

/*
 * Takes the database at path for a restore: in exclusive locking mode, a
 * lock no other connection can share, which *old holds until
 * release_target. keyward serve keeps its connections, and with them a
 * shared lock, open for as long as it runs, so a running server is found
 * here (after TARGET_WAIT_MS, which lets a short CLI command finish), and
 * none can start until the restore is done. Refuses, unless force, a
 * database that holds data (a file with tables that are not keyward's
 * counts) and a file SQLite cannot read; forced past the latter, *old is
 * NULL. A missing file is fine: *replaced says whether there was one.
 */
static kw_status hold_target(const char *path, bool force, sqlite3 **old, bool *replaced,
                             kw_error *err)
{
    *old = NULL;
    *replaced = false;
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? KW_OK
                               : kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot read %s: %s.", path,
                                              strerror(errno));
    if (!S_ISREG(st.st_mode))
        return kw_error_set(err, KW_ERR_INVALID, "%s is not a regular file.", path);
    *replaced = true;
    sqlite3 *db = NULL;
    int64_t tables = 0, keyward = 0, data = 0;
    int rc = open_db(path, SQLITE_OPEN_READWRITE, TARGET_WAIT_MS, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table'", &tables);
    if (rc == SQLITE_OK && tables)
        rc = query_int(db, keyward_tables_sql, &keyward);
    if (rc == SQLITE_OK && keyward)
        rc = query_int(db, keyward_data_sql, &data);
    else if (rc == SQLITE_OK && tables)
        data = 1;
    kw_status status = KW_OK;
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
        status = kw_error_set(err, KW_ERR_UNAVAILABLE,
                              "%s is in use by another process (is keyward serve running?); "
                              "stop it before restoring.",
                              path);
    else if (damaged(rc) && !force)
        status = kw_error_set(err, KW_ERR_CONFLICT,
                              "%s exists and is not a readable SQLite database; restore with "
                              "--force to replace it.",
                              path);
    else if (rc != SQLITE_OK && !damaged(rc))
        status =
            kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot open %s: %s.", path, sqlite3_errstr(rc));
    else if (data && !force)
        status = kw_error_set(err, KW_ERR_CONFLICT,
                              "%s already holds data; restore with --force to replace it (back "
                              "it up first if you may need it).",
                              path);
    if (status == KW_OK && rc == SQLITE_OK)
        *old = db;
    else
        sqlite3_close(db);
    return status;
}

/*
 * Lets go of the database taken by hold_target, checkpointed (closing it
 * also removes its WAL), and removes any -wal, -shm or -journal file still
 * beside it: after the rename SQLite would apply them to the new file.
 */
static kw_status release_target(const char *path, sqlite3 **old, kw_error *err)
{
    if (*old) {
        sqlite3_exec(*old, "ROLLBACK; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        sqlite3_close(*old);
        *old = NULL;
    }
    for (size_t i = 0; i < SIDECAR_COUNT; i++) {
        char side[PATH_MAX + 16];
        snprintf(side, sizeof side, "%s%s", path, sidecars[i]);
        if (unlink(side) != 0 && errno != ENOENT)
            return kw_error_set(err, KW_ERR_UNAVAILABLE,
                                "Cannot remove %s: %s; the database was not replaced.", side,
                                strerror(errno));
    }
    return KW_OK;
}

kw_status kw_sqlite_restore(const char *file, const char *db_path, bool force,
                            kw_sqlite_copy_info *info, kw_error *err)
{
    memset(info, 0, sizeof *info);
    kw_error_clear(err);
    if (is_database_file(file, db_path))
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s is the database itself or one of its files, not a backup.", file);
    kw_status status = kw_sqlite_backup_check(file, &info->backup_schema_version, err);
    sqlite3 *old = NULL;
    if (status == KW_OK)
        status = hold_target(db_path, force, &old, &info->replaced, err);
    if (status != KW_OK)
        return status;

    sqlite3 *src = NULL;
    staged s;
    status = staged_open(&s, db_path, err);
    int rc = SQLITE_OK;
    if (status == KW_OK &&
        (rc = open_db(file, SQLITE_OPEN_READONLY, KW_SQLITE_BUSY_MS, &src)) == SQLITE_OK)
        rc = staged_fill(&s, src, &info->restarts);
    if (status == KW_OK && rc != SQLITE_OK)
        status = copy_failed(rc, file, db_path, err);
    if (status == KW_OK)
        status = kw_sqlite_migrate(s.db, &info->schema_version, err);
    if (status == KW_OK)
        status = release_target(db_path, &old, err);
    if (status == KW_OK)
        status = staged_commit(&s, db_path, &info->bytes, err);
    staged_discard(&s);
    sqlite3_close(src);
    if (old) {
        sqlite3_exec(old, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(old);
    }
    return status;
}
