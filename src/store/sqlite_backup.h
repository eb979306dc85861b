/*
 * sqlite_backup.h - backups of the SQLite store, made while keyward serve
 * keeps running, and their restore.
 *
 * Both write their file the same way: a temporary file beside the target,
 * created with mode 0600, is filled with SQLite's online backup API, taken
 * out of WAL mode (so it is one self-contained file), checked with PRAGMA
 * integrity_check, fsync'd and renamed over the target, and then the
 * directory is fsync'd. On any failure the temporary file is removed and
 * the target is left as it was.
 *
 * Neither touches the pepper: the database holds only keyed hashes, and a
 * backup without the pepper it was made with verifies no key.
 */
#ifndef KW_SQLITE_BACKUP_H
#define KW_SQLITE_BACKUP_H

#if defined(KW_LAYER_CORE)
#error "store/sqlite_backup.h is in the store layer, which core must not include"
#endif

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

/* What a backup or a restore wrote. */
typedef struct {
    int schema_version;        /* of the file written (restore: after migrating it) */
    int backup_schema_version; /* restore: of the backup, before migrating */
    int64_t bytes;             /* size of the file written */
    bool replaced;             /* restore: there was a database at the target */
    int restarts;              /* backup: times a commit made the copy start over */
} kw_sqlite_copy_info;

/*
 * Copies the database at db_path to `file`, online: other connections and
 * processes keep reading and writing db_path meanwhile. The copy is a
 * consistent snapshot that holds every transaction committed before the
 * call. An existing `file` is replaced only once the copy is complete and
 * intact. KW_ERR_NOT_FOUND when there is no database at db_path;
 * KW_ERR_INVALID when `file` is a directory, another file that is not a
 * regular one, or one of the database's own files; KW_ERR_INTERNAL when the copy fails its
 * integrity check; KW_ERR_UNAVAILABLE for I/O failures and a database that stays busy.
 */
kw_status kw_sqlite_backup(const char *db_path, const char *file, kw_sqlite_copy_info *info,
                           kw_error *err);

/*
 * Checks, without changing it, that `file` can be restored: a SQLite
 * database that passes PRAGMA integrity_check, with keyward's tables and a
 * schema version from 1 to the one this build knows, which *version
 * receives. Otherwise KW_ERR_INVALID, with a sentence that names the file
 * and what is wrong with it.
 */
kw_status kw_sqlite_backup_check(const char *file, int *version, kw_error *err);

/*
 * Replaces the database at db_path (whose directory must exist) with the
 * backup in `file`, migrated to this build's schema. Refuses, changing
 * nothing: a `file` kw_sqlite_backup_check refuses (KW_ERR_INVALID); a
 * database that another connection or process has open, such as a running
 * keyward serve (KW_ERR_UNAVAILABLE); and, unless `force`, a database that
 * holds data or that SQLite cannot read (KW_ERR_CONFLICT). The old
 * database's -wal, -shm and -journal files are removed before the new file
 * takes its name, so that none of them is ever applied to it.
 */
kw_status kw_sqlite_restore(const char *file, const char *db_path, bool force,
                            kw_sqlite_copy_info *info, kw_error *err);

#endif
