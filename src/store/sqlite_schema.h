/*
 * sqlite_schema.h - the SQLite backend's schema migrations, error mapping
 * and busy timeout, internal to src/store.
 */
#ifndef KW_SQLITE_SCHEMA_H
#define KW_SQLITE_SCHEMA_H

#if defined(KW_LAYER_CORE)
#error "store/sqlite_schema.h is in the store layer, which core must not include"
#endif

#include <sqlite3.h>

#include "core/status.h"

/*
 * How long any connection of the backend (the store's, the change token's,
 * a backup's) waits for a lock another connection holds.
 */
#define KW_SQLITE_BUSY_MS 5000

/*
 * Maps an SQLite result code (primary or extended) to the store's status:
 * busy, locked, I/O and open failures are KW_ERR_UNAVAILABLE, a unique or
 * primary key violation is KW_ERR_CONFLICT, anything else KW_ERR_INTERNAL.
 * SQLITE_OK, SQLITE_ROW and SQLITE_DONE are KW_OK.
 */
kw_status kw_sqlite_status(int rc);

/* The schema version this build knows; a database beyond it is refused. */
int kw_sqlite_schema_latest(void);

/*
 * Applies every migration step the database behind db lacks, each in its
 * own BEGIN IMMEDIATE transaction, so that several processes may migrate
 * the same file at once: the loser of the race finds the step recorded and
 * skips it. On KW_OK *version holds the resulting schema version. On
 * failure the failing step is rolled back and err holds a plain sentence.
 */
kw_status kw_sqlite_migrate(sqlite3 *db, int *version, kw_error *err);

#endif
