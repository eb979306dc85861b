/*
 * postgres_schema.h - the PostgreSQL backend's schema migrations, internal
 * to src/store.
 */
#ifndef KW_POSTGRES_SCHEMA_H
#define KW_POSTGRES_SCHEMA_H

#if defined(KW_LAYER_CORE)
#error "store/postgres_schema.h is in the store layer, which core must not include"
#endif

#include "core/status.h"
#include "store/postgres_conn.h"

/*
 * Applies every migration step the database lacks, each in its own
 * transaction that first takes a transaction-level advisory lock, so that
 * any number of nodes may start on the same database at once: the others
 * wait, then find the step recorded and skip it. On KW_OK *version holds
 * the resulting schema version. On failure the failing step is rolled back
 * and err holds a plain sentence.
 */
kw_status kw_pg_migrate(kw_pg_conn *c, int *version, kw_error *err);

#endif
