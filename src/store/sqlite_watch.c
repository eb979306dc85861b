/*
 * sqlite_watch.c - the change token of the SQLite store.
 *
 * In WAL mode every commit rewrites the WAL-index header at the start of
 * the database's "-shm" file, which all connections of all processes map
 * shared; its iChange field counts transactions (the documented WAL file
 * format: https://sqlite.org/walformat.html, "The WAL-Index Header"). A
 * reader decides what it sees from that header, so a commit is visible
 * exactly when the header changes. Mapping the header read-only gives a
 * token that costs a few memory loads.
 *
 * The watch holds a connection of its own for as long as it lives and asks
 * that connection's VFS for the mapping SQLite made itself (xShmMap of
 * region 0), so the header stays mapped and SQLite's own locks on the -shm
 * file stay intact: opening and closing that file here would drop every
 * POSIX lock this process holds on it. A torn read during a concurrent
 * commit only yields a token that differs, which merely ends a cache epoch
 * early.
 */
#include "store/sqlite_watch.h"
#include "store/sqlite_schema.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/* The first copy of the WAL-index header: 48 bytes, twelve 32-bit words. */
#define HEADER_WORDS 12
/* The size of a wal-index region, as SQLite maps them. */
#define REGION_BYTES 32768

struct kw_sqlite_watch {
    sqlite3 *db;
    const volatile uint32_t *header;
};

static bool in_wal_mode(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    bool wal = false;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *mode = sqlite3_column_text(st, 0);
        wal = mode && strcmp((const char *)mode, "wal") == 0;
    }
    sqlite3_finalize(st);
    return wal;
}

kw_sqlite_watch *kw_sqlite_watch_open(const char *path)
{
    kw_sqlite_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    /* Reading the schema makes the connection map the wal-index. */
    if (sqlite3_open_v2(path, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_busy_timeout(w->db, KW_SQLITE_BUSY_MS) != SQLITE_OK ||
        sqlite3_exec(w->db, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK ||
        !in_wal_mode(w->db)) {
        kw_sqlite_watch_close(w);
        return NULL;
    }
    sqlite3_file *file = NULL;
    volatile void *region = NULL;
    if (sqlite3_file_control(w->db, "main", SQLITE_FCNTL_FILE_POINTER, &file) == SQLITE_OK &&
        file && file->pMethods && file->pMethods->iVersion >= 2 && file->pMethods->xShmMap &&
        file->pMethods->xShmMap(file, 0, REGION_BYTES, 0, &region) == SQLITE_OK)
        w->header = region;
    if (!w->header) {
        kw_sqlite_watch_close(w);
        return NULL;
    }
    return w;
}

void kw_sqlite_watch_close(kw_sqlite_watch *w)
{
    if (!w)
        return;
    sqlite3_close(w->db); /* unmaps the header */
    free(w);
}

uint64_t kw_sqlite_watch_token(const kw_sqlite_watch *w)
{
    /* FNV-1a over the header words: iChange, mxFrame, salts and checksums. */
    uint64_t token = 0xcbf29ce484222325u;
    for (int i = 0; i < HEADER_WORDS; i++) {
        uint32_t word = __atomic_load_n(&w->header[i], __ATOMIC_ACQUIRE);
        token = (token ^ word) * 0x100000001b3u;
    }
    return token;
}
