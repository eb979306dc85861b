/*
 * sqlite_schema.c - versioned schema migrations of the SQLite backend.
 *
 * Migration N is steps[N - 1]; a step, once released, is never edited:
 * later changes are new steps. schema_migrations records each applied step
 * with its time, so the version of a database is its highest row.
 */
#include "store/sqlite_schema.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static const char *const steps[] = {
    /* 1: the initial schema. No column ever holds a plaintext key or password. */
    "CREATE TABLE accounts ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE api_keys ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  id TEXT NOT NULL UNIQUE,"
    "  account_id TEXT NOT NULL REFERENCES accounts(id),"
    "  name TEXT NOT NULL,"
    "  environment TEXT NOT NULL,"
    "  masked TEXT NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  pepper_version INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  last_used_at INTEGER,"
    "  expires_at INTEGER);"
    "CREATE UNIQUE INDEX api_keys_hash ON api_keys(hash);"
    "CREATE INDEX api_keys_account ON api_keys(account_id, seq);"
    "CREATE TABLE root_keys ("
    "  id TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  masked TEXT NOT NULL,"
    "  hash BLOB NOT NULL UNIQUE,"
    "  pepper_version INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  last_used_at INTEGER);"
    "CREATE TABLE users ("
    "  id TEXT PRIMARY KEY,"
    "  account_id TEXT NOT NULL REFERENCES accounts(id),"
    "  email TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    "  password_hash TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE audit_log ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  account_id TEXT,"
    "  key_id TEXT,"
    "  key_name TEXT);"
    "CREATE INDEX audit_log_account ON audit_log(account_id, seq);"
    /* Append-only: the log is evidence, so not even the service may rewrite it. */
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
    /* 2: a check value per pepper version, HMAC(pepper, constant): it tells
     * whether a node was given the pepper this database was made with,
     * without revealing the pepper or allowing a key to be tested. */
    "CREATE TABLE pepper_checks ("
    "  version INTEGER PRIMARY KEY,"
    "  check_value BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL);",
    /* 3: console sessions, by the keyed hash of their token (never the token). */
    "CREATE TABLE sessions ("
    "  hash BLOB PRIMARY KEY,"
    "  user_id TEXT NOT NULL REFERENCES users(id),"
    "  created_at INTEGER NOT NULL,"
    "  last_seen_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL);"
    "CREATE INDEX sessions_expiry ON sessions(expires_at);",
    /* 4: the change feed and the node leases (see store.h). feed_head is the
     * one row every writer of a change updates, so positions are handed out
     * in commit order; keys from before this step are in api_keys, which a
     * node scans before it reads the feed. A change names its key by id
     * only: a hash kept here would outlive the key's delete, which must
     * leave no hash in the files. */
    "CREATE TABLE key_changes ("
    "  seq INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  key_id TEXT NOT NULL);"
    "CREATE INDEX key_changes_at ON key_changes(at);"
    "CREATE TABLE feed_head ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  seq INTEGER NOT NULL);"
    "INSERT INTO feed_head(one, seq) VALUES (1, 0);"
    "CREATE TABLE nodes ("
    "  id TEXT PRIMARY KEY,"
    "  applied_seq INTEGER NOT NULL,"
    "  lease_until_ms INTEGER NOT NULL,"
    "  renewed_at INTEGER NOT NULL);",
    /* 5: the key lifecycle. A key may be disabled, linked to the key that
     * replaced it or that it replaced by a roll (ids; NULL none), and carry
     * metadata (a JSON object's text; NULL none); rows from before keep
     * working, enabled. An audit entry records the client's address (NULL
     * unknown) and is paged per account by seq (audit_log_account). The
     * log stays append-only but for its retention: a row may be deleted
     * only when it is older than the bound the prune has just recorded in
     * audit_prune, in its own transaction (store.h: audit_prune). */
    "ALTER TABLE api_keys ADD COLUMN enabled INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE api_keys ADD COLUMN rolled_from TEXT;"
    "ALTER TABLE api_keys ADD COLUMN rolled_to TEXT;"
    "ALTER TABLE api_keys ADD COLUMN metadata TEXT;"
    "ALTER TABLE audit_log ADD COLUMN source_ip TEXT;"
    "CREATE INDEX audit_log_at ON audit_log(at);"
    "CREATE TABLE audit_prune ("
    "  one INTEGER PRIMARY KEY CHECK (one = 1),"
    "  before_at INTEGER NOT NULL);"
    "INSERT INTO audit_prune(one, before_at) VALUES (1, -9223372036854775807 - 1);"
    "DROP TRIGGER audit_log_no_delete;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    "  WHEN old.at >= (SELECT before_at FROM audit_prune WHERE one = 1)"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
};

#define STEP_COUNT ((int)(sizeof steps / sizeof steps[0]))

kw_status kw_sqlite_status(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return KW_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
        return KW_ERR_UNAVAILABLE;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return KW_ERR_CONFLICT;
        return KW_ERR_INTERNAL;
    default:
        return KW_ERR_INTERNAL;
    }
}

int kw_sqlite_schema_latest(void)
{
    return STEP_COUNT;
}

/* Reads the highest applied version into *version (0 for a new database). */
static int read_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int64_t v = sqlite3_column_int64(st, 0);
            *version = v > INT32_MAX ? INT32_MAX : (int)v;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Records migration `version` as applied now. */
static int record_version(sqlite3 *db, int version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "INSERT INTO schema_migrations(version, applied_at) VALUES (?1, ?2)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, version);
        sqlite3_bind_int64(st, 2, (int64_t)time(NULL));
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/*
 * Applies step `version` unless another process did so since we looked;
 * the version is re-read under the write lock, which makes the check and
 * the change one atomic unit. Rolls back on any failure.
 */
static int apply_step(sqlite3 *db, int version)
{
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return rc;
    int current = 0;
    rc = read_version(db, &current);
    if (rc == SQLITE_OK && current < version) {
        rc = sqlite3_exec(db, steps[version - 1], NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            rc = record_version(db, version);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

kw_status kw_sqlite_migrate(sqlite3 *db, int *version, kw_error *err)
{
    int rc = sqlite3_exec(db,
                          "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
                          NULL, NULL, NULL);
    int current = 0;
    if (rc == SQLITE_OK)
        rc = read_version(db, &current);
    if (rc != SQLITE_OK)
        return kw_error_set(err, kw_sqlite_status(rc), "Could not read the schema version.");
    if (current > STEP_COUNT)
        return kw_error_set(err, KW_ERR_INTERNAL,
                            "The database schema (version %d) is newer than this build of "
                            "keyward (version %d).",
                            current, STEP_COUNT);
    for (int v = current + 1; v <= STEP_COUNT; v++) {
        rc = apply_step(db, v);
        if (rc != SQLITE_OK)
            return kw_error_set(err, kw_sqlite_status(rc), "Schema migration %d failed.", v);
    }
    rc = read_version(db, version);
    if (rc != SQLITE_OK)
        return kw_error_set(err, kw_sqlite_status(rc), "Could not read the schema version.");
    return KW_OK;
}
