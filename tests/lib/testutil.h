/*
 * testutil.h - helpers shared by the unit tests.
 */
#ifndef KW_TESTUTIL_H
#define KW_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/service.h"

/* A fresh private directory under $TMPDIR (or /tmp); the caller frees it. */
char *tu_tempdir(void);

/*
 * Removes a directory tree made by tu_tempdir, and drops the PostgreSQL
 * database tu_store_url made for it, if any.
 */
void tu_rmtree(const char *dir);

/*
 * Fills cfg with the defaults and a data dir of dir. When the tests run on
 * PostgreSQL (see tu_pg_server) the store is a database of its own for
 * dir, the same one for every call with that dir; else SQLite in dir.
 */
void tu_config(kw_config *cfg, const char *dir);

/*
 * The PostgreSQL server the tests run against: KEYWARD_TEST_STORE_URL, a
 * URL without database, path or query (postgresql://USER@HOST:PORT), as
 * scripts/pg.sh exports it. NULL when unset: the tests run on SQLite.
 */
const char *tu_pg_server(void);

/*
 * The store URL of a fresh PostgreSQL database that belongs to dir,
 * created (with a random name) on the first call for dir and dropped by
 * tu_rmtree(dir); the string lives until then. Aborts when there is no
 * server or the database cannot be created. Thread-safe.
 */
const char *tu_store_url(const char *dir);

/*
 * Runs sql on the database `url` names (NULL: the server's "postgres"
 * database), as an operator with psql would. Returns the SQLSTATE of the
 * failure ("" on success) in a static buffer of the calling thread.
 */
const char *tu_pg_exec(const char *url, const char *sql);

/* Opens a service on a fresh temp dir; *dir receives the dir (caller frees). */
kw_service *tu_service(char **dir);

/* Reads a whole file into a new buffer; *len receives its size. NULL if missing. */
unsigned char *tu_read_file(const char *path, size_t *len);

/* true when the needle occurs in the n bytes at hay. */
int tu_contains(const unsigned char *hay, size_t n, const char *needle);

#endif
