/*
 * cmd_backup.c - `keyward backup FILE` and `keyward restore FILE`: online
 * backups of the SQLite store and their restore (store/sqlite_backup.h).
 *
 * Neither opens the key service, which would load (or create) the pepper
 * and migrate the database: a backup must change nothing, and a restore
 * must work on a data directory whose database is missing, damaged or in
 * need of --force. They only resolve the settings (kw_cli_resolve).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "store/sqlite_backup.h"
#include "store/store.h"

/* Where the selected store keeps its database and the pepper. */
typedef struct {
    kw_config_paths paths; /* the store URL and the pepper file ("" for KEYWARD_PEPPER) */
    const char *db;        /* the SQLite database file, within paths.store_url */
    const char *pepper;    /* paths.pepper_file */
    const char *data_dir;  /* to be created by a restore when db is in it */
    bool in_data_dir;      /* db is DATA_DIR/keyward.db (no --store) */
} location;

/*
 * Fills *loc from the settings, as every command resolves them. Returns 0;
 * 2 for a bad setting; 1 when the store is not SQLite (the URL is never
 * echoed: it may hold a password).
 */
static int locate(kw_cli *cli, const char *command, location *loc)
{
    int rc = kw_cli_resolve(cli);
    if (rc != KW_CLI_EXIT_OK)
        return rc;
    kw_error err;
    if (kw_config_resolve_paths(&cli->cfg, &loc->paths, &err) != KW_OK)
        return kw_cli_fail(&err);
    const char *url = loc->paths.store_url;
    loc->db = kw_store_sqlite_path(url);
    loc->pepper = loc->paths.pepper_file;
    loc->data_dir = cli->cfg.data_dir;
    loc->in_data_dir = !cli->cfg.store_url;
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        kw_cli_errorf("%s works on the SQLite store only; back up and restore PostgreSQL with "
                      "pg_dump and pg_restore (docs/postgres.md, \"Backup and restore\")",
                      command);
        return KW_CLI_EXIT_FAIL;
    }
    if (!loc->db) {
        kw_cli_errorf("the store URL must be sqlite:PATH (or postgres://...)");
        return KW_CLI_EXIT_FAIL;
    }
    return KW_CLI_EXIT_OK;
}

/* The pepper file for a JSON document: its path, or null when KEYWARD_PEPPER holds it. */
static json_t *pepper_json(const location *loc)
{
    return loc->pepper[0] ? json_string(loc->pepper) : json_null();
}

/* Prints doc (--json) or the human line; releases doc. Returns the exit code. */
static int emit(const kw_cli *cli, json_t *doc, const char *line)
{
    int rc = KW_CLI_EXIT_OK;
    if (!doc) {
        kw_cli_errorf("out of memory");
        rc = KW_CLI_EXIT_FAIL;
    } else if (cli->json) {
        rc = kw_cli_print_json(doc);
    } else {
        puts(line);
    }
    json_decref(doc);
    return rc;
}

int kw_cli_backup(kw_cli *cli, int argc, char **argv)
{
    const char *args[1], *const names[] = {"FILE"};
    const kw_cli_spec spec = {
        .usage = "backup FILE",
        .help = "Copies the SQLite database to FILE while keyward serve keeps running (SQLite's\n"
                "online backup API: a consistent snapshot that holds every change committed\n"
                "before the backup began). The copy is checked with PRAGMA integrity_check,\n"
                "written with mode 0600 and renamed over FILE only when complete, so FILE is\n"
                "either left as it was or a whole backup. The pepper is NOT in the backup:\n"
                "keep a copy of the pepper file too, apart from the backup; without it no key\n"
                "in the backup verifies. PostgreSQL stores are backed up with pg_dump\n"
                "(docs/postgres.md). With --json: {\"path\", \"database\", \"schema_version\",\n"
                "\"bytes\", \"pepper_file\", \"pepper_included\": false}.",
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    location loc;
    if ((rc = locate(cli, "backup", &loc)) != KW_CLI_EXIT_OK)
        return rc;
    kw_sqlite_copy_info info;
    kw_error err;
    if (kw_sqlite_backup(loc.db, args[0], &info, &err) != KW_OK)
        return kw_cli_fail(&err);
    char line[2 * PATH_MAX + 64];
    snprintf(line, sizeof line, "backed up %s to %s (schema v%d, %lld bytes)", loc.db, args[0],
             info.schema_version, (long long)info.bytes);
    rc = emit(cli,
              json_pack("{s:s, s:s, s:i, s:I, s:o, s:b}", "path", args[0], "database", loc.db,
                        "schema_version", info.schema_version, "bytes", (json_int_t)info.bytes,
                        "pepper_file", pepper_json(&loc), "pepper_included", 0),
              line);
    if (loc.pepper[0])
        kw_cli_errorf("the pepper is not in the backup: keep a copy of %s too, stored apart from "
                      "the backup; without the same pepper no key in the backup verifies.",
                      loc.pepper);
    else
        kw_cli_errorf("the pepper is not in the backup: keep a copy of the keyring you give in "
                      "KEYWARD_PEPPER too, stored apart from the backup; without the same "
                      "pepper no key in the backup verifies.");
    return rc;
}

int kw_cli_restore(kw_cli *cli, int argc, char **argv)
{
    bool force = false;
    const kw_cli_opt opts[] = {
        {"force", NULL, &force, false},
        {NULL, NULL, NULL, false},
    };
    const char *args[1], *const names[] = {"FILE"};
    const kw_cli_spec spec = {
        .usage = "restore [--force] FILE",
        .help = "Replaces the SQLite database with the backup in FILE (made by `keyward backup`).\n"
                "FILE must be an intact keyward database of a schema this build knows; an\n"
                "older one is migrated. Stop keyward serve first: a database that another\n"
                "process has open is refused. A database that already holds data (or that\n"
                "SQLite cannot read) is replaced only with --force. The copy is written with\n"
                "mode 0600 and renamed into place when complete. The pepper is not restored:\n"
                "put the pepper file the backup was made with in place; with another pepper\n"
                "no restored key verifies. Keys deleted since the backup are back: delete them\n"
                "again. With --json: {\"path\", \"backup\", \"schema_version\",\n"
                "\"backup_schema_version\", \"bytes\", \"replaced\", \"pepper_file\",\n"
                "\"pepper_included\": false}.",
        .opts = opts,
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    location loc;
    if ((rc = locate(cli, "restore", &loc)) != KW_CLI_EXIT_OK)
        return rc;
    kw_sqlite_copy_info info;
    kw_error err;
    int version;
    /* The backup is checked before the data directory is created. */
    if (kw_sqlite_backup_check(args[0], &version, &err) != KW_OK)
        return kw_cli_fail(&err);
    if (loc.in_data_dir && mkdir(loc.data_dir, 0700) != 0 && errno != EEXIST) {
        kw_cli_errorf("cannot create data directory %s: %s", loc.data_dir, strerror(errno));
        return KW_CLI_EXIT_FAIL;
    }
    if (kw_sqlite_restore(args[0], loc.db, force, &info, &err) != KW_OK)
        return kw_cli_fail(&err);
    char line[2 * PATH_MAX + 96], migrated[48] = "";
    if (info.backup_schema_version != info.schema_version)
        snprintf(migrated, sizeof migrated, ", migrated to v%d", info.schema_version);
    snprintf(line, sizeof line, "restored %s %s %s (schema v%d%s)", args[0],
             info.replaced ? "over the database at" : "to", loc.db, info.backup_schema_version,
             migrated);
    rc = emit(cli,
              json_pack("{s:s, s:s, s:i, s:i, s:I, s:b, s:o, s:b}", "path", loc.db, "backup",
                        args[0], "schema_version", info.schema_version, "backup_schema_version",
                        info.backup_schema_version, "bytes", (json_int_t)info.bytes, "replaced",
                        info.replaced, "pepper_file", pepper_json(&loc), "pepper_included", 0),
              line);
    struct stat st;
    if (loc.pepper[0] && stat(loc.pepper, &st) == 0)
        kw_cli_errorf("the pepper is not in the backup: %s must be the pepper file the backup was "
                      "made with; with another pepper no restored key verifies.",
                      loc.pepper);
    else if (loc.pepper[0])
        kw_cli_errorf("the pepper is not in the backup: before starting keyward, put the pepper "
                      "file the backup was made with at %s (mode 0600); with another pepper no "
                      "restored key verifies.",
                      loc.pepper);
    else
        kw_cli_errorf("the pepper is not in the backup: give keyward the keyring the backup was "
                      "made with in KEYWARD_PEPPER; with another pepper no restored key "
                      "verifies.");
    kw_cli_errorf("keys deleted since the backup was made are back: delete them again.");
    return rc;
}
