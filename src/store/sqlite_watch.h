/*
 * sqlite_watch.h - notices commits to a SQLite database in WAL mode, by any
 * process, without a query: the change token of the SQLite store.
 */
#ifndef KW_SQLITE_WATCH_H
#define KW_SQLITE_WATCH_H

#if defined(KW_LAYER_CORE)
#error "store/sqlite_watch.h is in the store layer, which core must not include"
#endif

#include <stdbool.h>
#include <stdint.h>

typedef struct kw_sqlite_watch kw_sqlite_watch;

/* Starts watching the database at path; NULL when it cannot be watched. */
kw_sqlite_watch *kw_sqlite_watch_open(const char *path);
void kw_sqlite_watch_close(kw_sqlite_watch *w);

/* A value that changes with every commit (see store.h, change_token). */
uint64_t kw_sqlite_watch_token(const kw_sqlite_watch *w);

#endif
