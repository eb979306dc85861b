/*
 * cmd_key.c - `keyward key create | list | show | update | roll | delete |
 * revoke-all | verify`.
 *
 * The plaintext of a key exists in this process twice at most: in the
 * buffer kw_service_key_create fills (printed once, then wiped) and in the
 * buffer `key verify` reads from stdin (wiped right after verifying).
 */
#include <stdio.h>

#include <sodium.h>

#include "cli/cli.h"
#include "core/json.h"
#include "core/timefmt.h"
#include "core/validate.h"

static const char *const key_fields[] = {
    "id",         "account_id", "name",   "environment", "masked",    "created_at", "last_used_at",
    "expires_at", "enabled",    "status", "rolled_from", "rolled_to", "metadata",   NULL,
};
static const char *const key_columns[] = {
    "id",         "name",         "environment", "masked", "status",
    "created_at", "last_used_at", "expires_at",  NULL,
};

/* --metadata's JSON text checked and made compact; returns the exit code on failure, or 0. */
static int parse_metadata(const char *text, char out[KW_METADATA_BUFSZ])
{
    kw_error err;
    out[0] = '\0';
    if (text && kw_validate_metadata(text, out, &err) != KW_OK)
        return kw_cli_fail(&err);
    return 0;
}

int kw_cli_key_create(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *name = NULL, *env = NULL, *expires = NULL, *expires_in = NULL,
               *metadata_text = NULL;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {"name", &name, NULL, true},
        {"env", &env, NULL, false},
        {"expires-at", &expires, NULL, false},
        {"expires-in", &expires_in, NULL, false},
        {"metadata", &metadata_text, NULL, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key create --account ACC --name NAME [--env ENV] [--expires-at TIME | "
                 "--expires-in SECONDS] [--metadata JSON]",
        .help = "Creates a key named NAME in account ACC, in environment ENV (default\n"
                "production), expiring at TIME (RFC 3339, such as 2027-01-01T00:00:00Z;\n"
                "default never; a time that has passed is refused) or SECONDS from now,\n"
                "with metadata JSON (an object of at most 16 string, number or boolean\n"
                "members, 1 KiB at most), returned by every valid verification. Prints the\n"
                "key and, on a line of its own, its secret: the only time it is ever shown.\n"
                "With --json: {\"key\": {...}, \"secret\": \"...\"}.",
        .opts = opts,
    };
    int64_t expires_at = KW_TIME_NONE;
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    if (expires && expires_in)
        return kw_cli_usage_error(&spec, "give --expires-at or --expires-in, not both");
    kw_error err;
    if (expires && kw_time_parse(expires, "expires_at", &expires_at, &err) != KW_OK)
        return kw_cli_fail(&err);
    long seconds = 0;
    if (expires_in &&
        !kw_cli_parse_int(expires_in, 1, (long)(KW_TIME_MAX - kw_time_now()), &seconds)) {
        kw_error_set(&err, KW_ERR_INVALID,
                     "--expires-in must be a whole number of seconds from 1 to the end of year "
                     "9999");
        return kw_cli_fail(&err);
    }
    char metadata[KW_METADATA_BUFSZ];
    if ((rc = parse_metadata(metadata_text, metadata)) != 0)
        return rc;
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;
    if (expires_in)
        expires_at = kw_service_now(svc) + seconds;

    const kw_key_spec ks = {
        .name = name, .environment = env, .expires_at = expires_at, .metadata = metadata};
    char secret[KW_KEY_BUFSZ];
    kw_key k;
    if (kw_service_key_create_spec(svc, "cli", account, &ks, &k, secret, &err) != KW_OK) {
        sodium_memzero(secret, sizeof secret);
        kw_service_close(svc);
        return kw_cli_fail(&err);
    }
    rc = kw_cli_emit_created(cli, kw_json_key_created(&k, secret), "key", key_fields, secret, k.id);
    kw_service_close(svc);
    return rc;
}

int kw_cli_key_roll(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *grace_text = NULL, *args[1], *const names[] = {"KEY_ID"};
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {"grace", &grace_text, NULL, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key roll --account ACC KEY_ID [--grace SECONDS]",
        .help = "Replaces the key KEY_ID of account ACC with a new key of the same name,\n"
                "environment and metadata, and makes the old key expire SECONDS from now\n"
                "(default 86400, at most 2592000; 0 ends it at once). Prints the new key and,\n"
                "on a line of its own, its secret: the only time it is ever shown. An\n"
                "expired, disabled or already rolled key is refused.\n"
                "With --json: {\"key\": {...}, \"secret\": \"...\", \"previous\": {...}}.",
        .opts = opts,
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_error err;
    long grace = KW_ROLL_GRACE_DEFAULT_S;
    if (grace_text && !kw_cli_parse_int(grace_text, 0, KW_ROLL_GRACE_MAX_S, &grace)) {
        kw_error_set(&err, KW_ERR_INVALID, "--grace must be an integer from 0 to %d",
                     KW_ROLL_GRACE_MAX_S);
        return kw_cli_fail(&err);
    }
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;
    char secret[KW_KEY_BUFSZ];
    kw_key k, previous;
    if (kw_service_key_roll(svc, "cli", account, args[0], grace, &k, secret, &previous, &err) !=
        KW_OK) {
        sodium_memzero(secret, sizeof secret);
        kw_service_close(svc);
        return kw_cli_fail(&err);
    }
    json_t *doc = kw_json_key_created(&k, secret);
    if (doc && json_object_set_new(doc, "previous", kw_json_key(&previous)) != 0) {
        json_decref(doc);
        doc = NULL;
    }
    rc = kw_cli_emit_created(cli, doc, "key", key_fields, secret, k.id);
    kw_service_close(svc);
    return rc;
}

/* Prints key k when st is KW_OK, else the error; the command's exit code. */
static int emit_key(kw_cli *cli, kw_status st, const kw_key *k, kw_error *err)
{
    if (st != KW_OK)
        return kw_cli_fail(err);
    json_t *doc = kw_json_key(k);
    int rc = kw_cli_emit_object(cli, doc, key_fields);
    json_decref(doc);
    return rc;
}

int kw_cli_key_update(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *name = NULL, *expires = NULL, *metadata_text = NULL,
               *args[1], *const names[] = {"KEY_ID"};
    bool enable = false, disable = false, no_expiry = false, no_metadata = false;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {"name", &name, NULL, false},
        {"enable", NULL, &enable, false},
        {"disable", NULL, &disable, false},
        {"expires-at", &expires, NULL, false},
        {"no-expiry", NULL, &no_expiry, false},
        {"metadata", &metadata_text, NULL, false},
        {"no-metadata", NULL, &no_metadata, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key update --account ACC KEY_ID [--name NAME] [--enable | --disable]\n"
                 "       [--expires-at TIME | --no-expiry] [--metadata JSON | --no-metadata]",
        .help = "Changes the key KEY_ID of account ACC: its name, whether it verifies\n"
                "(--disable: every verification answers DISABLED until --enable), its\n"
                "expiry (a time in the future, or none) and its metadata (a JSON object,\n"
                "or none). Prints the key as it now is; never its secret.",
        .opts = opts,
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    if (enable && disable)
        return kw_cli_usage_error(&spec, "give --enable or --disable, not both");
    if (expires && no_expiry)
        return kw_cli_usage_error(&spec, "give --expires-at or --no-expiry, not both");
    if (metadata_text && no_metadata)
        return kw_cli_usage_error(&spec, "give --metadata or --no-metadata, not both");
    if (!name && !enable && !disable && !expires && !no_expiry && !metadata_text && !no_metadata)
        return kw_cli_usage_error(&spec, "nothing to change: give at least one option");
    kw_key_patch patch = {
        .has_name = name != NULL,
        .name = name,
        .has_enabled = enable || disable,
        .enabled = enable,
        .has_expires_at = expires || no_expiry,
        .expires_at = KW_TIME_NONE,
        .has_metadata = metadata_text || no_metadata,
    };
    kw_error err;
    if (expires && kw_time_parse(expires, "expires_at", &patch.expires_at, &err) != KW_OK)
        return kw_cli_fail(&err);
    char metadata[KW_METADATA_BUFSZ];
    if ((rc = parse_metadata(metadata_text, metadata)) != 0)
        return rc;
    patch.metadata = metadata;
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;
    if (expires && patch.expires_at <= kw_service_now(svc)) {
        kw_service_close(svc);
        kw_error_set(&err, KW_ERR_INVALID, "expires_at must be in the future");
        return kw_cli_fail(&err);
    }
    kw_key k;
    rc = emit_key(cli, kw_service_key_update(svc, "cli", account, args[0], &patch, &k, &err), &k,
                  &err);
    kw_service_close(svc);
    return rc;
}

int kw_cli_key_revoke_all(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *env = NULL;
    bool yes = false;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {"env", &env, NULL, false},
        {"yes", NULL, &yes, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key revoke-all --account ACC [--env ENV] --yes",
        .help = "Deletes every key of account ACC (only those of environment ENV with\n"
                "--env) permanently: every application using one loses access at once.\n"
                "Refused without --yes. With --json: {\"revoked\": N}.",
        .opts = opts,
    };
    static const char *const fields[] = {"revoked", NULL};
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_error err;
    if (!yes) {
        kw_error_set(&err, KW_ERR_INVALID,
                     "revoke-all deletes keys for good: add --yes to confirm; nothing was changed");
        return kw_cli_fail(&err);
    }
    if (env && kw_validate_environment(env, &err) != KW_OK)
        return kw_cli_fail(&err);
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;
    int revoked = 0;
    if (kw_service_key_revoke_all(svc, "cli", account, env, &revoked, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = json_pack("{s:i}", "revoked", revoked);
        rc = kw_cli_emit_object(cli, doc, fields);
        json_decref(doc);
    }
    kw_service_close(svc);
    return rc;
}

int kw_cli_key_list(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key list --account ACC",
        .help = "Lists the keys of account ACC, newest first, with how many of its slots are\n"
                "in use. Never shows a secret.",
        .opts = opts,
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_key_list list = {0};
    kw_error err;
    if (kw_service_key_list(svc, account, &list, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = kw_json_key_list(&list);
        rc = kw_cli_emit_table(cli, doc, "keys", key_columns, "no keys");
        if (rc == KW_CLI_EXIT_OK && !cli->json)
            printf("\n%d of %d active keys in use\n", list.active_count, list.key_limit);
        json_decref(doc);
        kw_key_list_free(&list);
    }
    kw_service_close(svc);
    return rc;
}

int kw_cli_key_show(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *args[1], *const names[] = {"KEY_ID"};
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key show --account ACC KEY_ID",
        .help = "Prints the key KEY_ID (key_...) of account ACC. Never shows its secret.",
        .opts = opts,
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_key k;
    kw_error err;
    rc = emit_key(cli, kw_service_key_get(svc, account, args[0], &k, &err), &k, &err);
    kw_service_close(svc);
    return rc;
}

int kw_cli_key_delete(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *args[1], *const names[] = {"KEY_ID"};
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key delete --account ACC KEY_ID",
        .help = "Deletes the key KEY_ID of account ACC permanently: any application using it\n"
                "loses access immediately. With --json: {\"id\": \"key_...\", \"deleted\": true}.",
        .opts = opts,
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    static const char *const fields[] = {"id", "deleted", NULL};
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_error err;
    if (kw_service_key_delete(svc, "cli", account, args[0], &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = json_pack("{s:s, s:b}", "id", args[0], "deleted", 1);
        rc = kw_cli_emit_object(cli, doc, fields);
        json_decref(doc);
    }
    kw_service_close(svc);
    return rc;
}

int kw_cli_key_verify(kw_cli *cli, int argc, char **argv)
{
    const char *env = NULL;
    const kw_cli_opt opts[] = {
        {"env", &env, NULL, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key verify [--env ENV] < KEYFILE",
        .help = "Reads a key from stdin (one trailing newline ignored) and prints the\n"
                "verification: valid, code (VALID, MALFORMED, NOT_FOUND, EXPIRED,\n"
                "ENVIRONMENT_MISMATCH, DISABLED) and, when valid, the key's account, id,\n"
                "name, environment and metadata. With --env, a key of another environment\n"
                "is refused.\n"
                "Exits 0 when the key is valid, 1 when it is not.",
        .opts = opts,
        .args_hint = "the key is read from stdin, never from the command line",
    };
    static const char *const fields[] = {
        "valid", "code", "account_id", "key_id", "name", "environment", "metadata", NULL,
    };
    kw_error err;
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    if (env && kw_validate_environment(env, &err) != KW_OK)
        return kw_cli_fail(&err);
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;

    char key[256]; /* room for any valid key, its newline, and then some */
    size_t len;
    kw_verify_result res;
    kw_status st =
        kw_cli_read_secret("key", "paste the key and press Enter", key, sizeof key, &len, &err);
    if (st == KW_OK)
        st = kw_service_key_verify(svc, key, len, env, &res, &err);
    sodium_memzero(key, sizeof key);
    if (st != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = kw_json_verify_result(&res);
        rc = kw_cli_emit_object(cli, doc, fields);
        json_decref(doc);
        if (rc == KW_CLI_EXIT_OK && res.code != KW_VERIFY_VALID)
            rc = KW_CLI_EXIT_FAIL;
    }
    kw_service_close(svc);
    return rc;
}
