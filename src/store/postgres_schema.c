/*
 * postgres_schema.c - versioned schema migrations of the PostgreSQL backend.
 *
 * The same tables, constraints and version numbers as the SQLite backend
 * (sqlite_schema.c), in PostgreSQL's types: hashes are bytea, times bigint
 * Unix seconds. Migration N is steps[N - 1]; a released step is never
 * edited: later changes are new steps. schema_migrations records each
 * applied step, so the version of a database is its highest row.
 */
#include "store/postgres_schema.h"

#include <stdio.h>
#include <stdlib.h>

/* The advisory lock that serializes migrations of one database ("kwschema"). */
#define MIGRATION_LOCK "7454300543453276517"

static const char *const steps[] = {
    /* 1: the initial schema. No column ever holds a plaintext key or password.
     * accounts and root_keys carry a seq for SQLite's insertion (rowid) order. */
    "CREATE TABLE accounts ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,"
    "  id text PRIMARY KEY,"
    "  name text NOT NULL,"
    "  created_at bigint NOT NULL);"
    "CREATE TABLE api_keys ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  id text NOT NULL UNIQUE,"
    "  account_id text NOT NULL REFERENCES accounts(id),"
    "  name text NOT NULL,"
    "  environment text NOT NULL,"
    "  masked text NOT NULL,"
    "  hash bytea NOT NULL CHECK (octet_length(hash) = 32),"
    "  pepper_version bigint NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  last_used_at bigint,"
    "  expires_at bigint);"
    "CREATE UNIQUE INDEX api_keys_hash ON api_keys(hash);"
    "CREATE INDEX api_keys_account ON api_keys(account_id, seq);"
    "CREATE TABLE root_keys ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,"
    "  id text PRIMARY KEY,"
    "  name text NOT NULL,"
    "  masked text NOT NULL,"
    "  hash bytea NOT NULL UNIQUE CHECK (octet_length(hash) = 32),"
    "  pepper_version bigint NOT NULL,"
    "  created_at bigint NOT NULL,"
    "  last_used_at bigint);"
    "CREATE TABLE users ("
    "  id text PRIMARY KEY,"
    "  account_id text NOT NULL REFERENCES accounts(id),"
    "  email text NOT NULL,"
    "  password_hash text NOT NULL,"
    "  created_at bigint NOT NULL);"
    /* SQLite's COLLATE NOCASE: one user per email, compared case-insensitively. */
    "CREATE UNIQUE INDEX users_email ON users(lower(email));"
    "CREATE TABLE audit_log ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  at bigint NOT NULL,"
    "  actor text NOT NULL,"
    "  action text NOT NULL,"
    "  account_id text,"
    "  key_id text,"
    "  key_name text);"
    "CREATE INDEX audit_log_account ON audit_log(account_id, seq);"
    /* Append-only: the log is evidence, so not even the service may rewrite it. */
    "CREATE FUNCTION keyward_audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    "  $$BEGIN RAISE EXCEPTION 'audit_log is append-only'; END$$;"
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
    "  FOR EACH ROW EXECUTE FUNCTION keyward_audit_log_append_only();"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    "  FOR EACH ROW EXECUTE FUNCTION keyward_audit_log_append_only();"
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log"
    "  FOR EACH STATEMENT EXECUTE FUNCTION keyward_audit_log_append_only();",
    /* 2: a check value per pepper version, HMAC(pepper, constant): it tells
     * whether a node was given the pepper this database was made with,
     * without revealing the pepper or allowing a key to be tested. */
    "CREATE TABLE pepper_checks ("
    "  version bigint PRIMARY KEY,"
    "  check_value bytea NOT NULL,"
    "  created_at bigint NOT NULL);",
    /* 3: console sessions, by the keyed hash of their token (never the token). */
    "CREATE TABLE sessions ("
    "  hash bytea PRIMARY KEY CHECK (octet_length(hash) = 32),"
    "  user_id text NOT NULL REFERENCES users(id),"
    "  created_at bigint NOT NULL,"
    "  last_seen_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL);"
    "CREATE INDEX sessions_expiry ON sessions(expires_at);",
    /* 4: the change feed and the node leases (see store.h). feed_head is the
     * one row every writer of a change updates, so positions are handed out
     * in commit order; keys from before this step are in api_keys, which a
     * node scans before it reads the feed. A change names its key by id
     * only, never by its hash, which must go with the key. Lease ends are
     * in milliseconds of the database's clock, the one clock every node
     * shares. */
    "CREATE TABLE key_changes ("
    "  seq bigint PRIMARY KEY,"
    "  at bigint NOT NULL,"
    "  key_id text NOT NULL);"
    "CREATE INDEX key_changes_at ON key_changes(at);"
    "CREATE TABLE feed_head ("
    "  one integer PRIMARY KEY CHECK (one = 1),"
    "  seq bigint NOT NULL);"
    "INSERT INTO feed_head(one, seq) VALUES (1, 0);"
    "CREATE TABLE nodes ("
    "  id text PRIMARY KEY,"
    "  applied_seq bigint NOT NULL,"
    "  lease_until_ms bigint NOT NULL,"
    "  renewed_at bigint NOT NULL);",
    /* 5: the key lifecycle (see the SQLite step 5): enabled, the roll's
     * links, metadata, the audit entry's source_ip, and the audit log's
     * retention: a row may be deleted only when it is older than the bound
     * the prune has just recorded, in its own transaction. TRUNCATE stays
     * refused. */
    "ALTER TABLE api_keys ADD COLUMN enabled boolean NOT NULL DEFAULT true;"
    "ALTER TABLE api_keys ADD COLUMN rolled_from text;"
    "ALTER TABLE api_keys ADD COLUMN rolled_to text;"
    "ALTER TABLE api_keys ADD COLUMN metadata text;"
    "ALTER TABLE audit_log ADD COLUMN source_ip text;"
    "CREATE INDEX audit_log_at ON audit_log(at);"
    "CREATE TABLE audit_prune ("
    "  one integer PRIMARY KEY CHECK (one = 1),"
    "  before_at bigint NOT NULL);"
    "INSERT INTO audit_prune(one, before_at) VALUES (1, -9223372036854775808);"
    "CREATE FUNCTION keyward_audit_log_retention() RETURNS trigger LANGUAGE plpgsql AS"
    "  $$BEGIN"
    "    IF OLD.at < (SELECT before_at FROM audit_prune WHERE one = 1) THEN RETURN OLD; END IF;"
    "    RAISE EXCEPTION 'audit_log is append-only';"
    "  END$$;"
    "DROP TRIGGER audit_log_no_delete ON audit_log;"
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
    "  FOR EACH ROW EXECUTE FUNCTION keyward_audit_log_retention();",
};

#define STEP_COUNT ((int)(sizeof steps / sizeof steps[0]))

/* Reads the highest applied version into *version (0 for a new database). */
static kw_status read_version(kw_pg_conn *c, int *version)
{
    PGresult *res;
    kw_status status =
        kw_pg_command(c, "SELECT coalesce(max(version), 0) FROM schema_migrations", &res);
    if (status != KW_OK)
        return status;
    long long v = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
    *version = v > STEP_COUNT + 1000 ? STEP_COUNT + 1000 : (int)v;
    PQclear(res);
    return KW_OK;
}

/*
 * One transaction: the lock, then the version, then (if still missing)
 * step `version` and its record. Concurrent CREATE TABLE IF NOT EXISTS can
 * collide in PostgreSQL's catalog, so even that runs under the lock.
 */
static kw_status apply_step(kw_pg_conn *c, int version, int *current)
{
    kw_status status = kw_pg_command(c, "BEGIN", NULL);
    if (status == KW_OK)
        status = kw_pg_command(c,
                               "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ");"
                               "CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "  version integer PRIMARY KEY, applied_at bigint NOT NULL)",
                               NULL);
    if (status == KW_OK)
        status = read_version(c, current);
    if (status == KW_OK && *current < version && version <= STEP_COUNT) {
        char record[128];
        snprintf(record, sizeof record,
                 "INSERT INTO schema_migrations(version, applied_at) "
                 "VALUES (%d, extract(epoch FROM now())::bigint)",
                 version);
        status = kw_pg_command(c, steps[version - 1], NULL);
        if (status == KW_OK)
            status = kw_pg_command(c, record, NULL);
        if (status == KW_OK)
            *current = version;
    }
    if (status == KW_OK)
        status = kw_pg_command(c, "COMMIT", NULL);
    if (status != KW_OK && PQtransactionStatus(c->db) != PQTRANS_IDLE)
        PQclear(PQexec(c->db, "ROLLBACK"));
    return status;
}

kw_status kw_pg_migrate(kw_pg_conn *c, int *version, kw_error *err)
{
    int current = 0;
    for (int v = 1;; v = current + 1) {
        kw_status status = apply_step(c, v, &current);
        if (status != KW_OK)
            return kw_error_set(err, status, "Schema migration %d failed.", v);
        if (current > STEP_COUNT)
            return kw_error_set(err, KW_ERR_INTERNAL,
                                "The database schema (version %d) is newer than this build of "
                                "keyward (version %d).",
                                current, STEP_COUNT);
        if (current == STEP_COUNT)
            break;
    }
    *version = current;
    return KW_OK;
}
