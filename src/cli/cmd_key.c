/*
 * cmd_key.c - `keyward key create | list | show | delete | verify`.
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
    "id",         "account_id",   "name",       "environment", "masked",
    "created_at", "last_used_at", "expires_at", NULL,
};
static const char *const key_columns[] = {
    "id", "name", "environment", "masked", "created_at", "last_used_at", "expires_at", NULL,
};

int kw_cli_key_create(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *name = NULL, *env = NULL, *expires = NULL;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true}, {"name", &name, NULL, true},
        {"env", &env, NULL, false},        {"expires-at", &expires, NULL, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "key create --account ACC --name NAME [--env ENV] [--expires-at TIME]",
        .help = "Creates a key named NAME in account ACC, in environment ENV (default\n"
                "production), expiring at TIME (RFC 3339, such as 2027-01-01T00:00:00Z;\n"
                "default never; a time that has passed is refused). Prints the key and, on\n"
                "a line of its own, its secret: the only time it is ever shown.\n"
                "With --json: {\"key\": {...}, \"secret\": \"...\"}.",
        .opts = opts,
    };
    int64_t expires_at = KW_TIME_NONE;
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_error err;
    if (expires && kw_time_parse(expires, "expires_at", &expires_at, &err) != KW_OK)
        return kw_cli_fail(&err);
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;

    char secret[KW_KEY_BUFSZ];
    kw_key k;
    if (kw_service_key_create(svc, "cli", account, name, env, expires_at, &k, secret, &err) !=
        KW_OK) {
        kw_service_close(svc);
        return kw_cli_fail(&err);
    }
    rc = kw_cli_emit_created(cli, kw_json_key_created(&k, secret), "key", key_fields, secret, k.id);
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
    if (kw_service_key_get(svc, account, args[0], &k, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = kw_json_key(&k);
        rc = kw_cli_emit_object(cli, doc, key_fields);
        json_decref(doc);
    }
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
                "ENVIRONMENT_MISMATCH) and, when valid, the key's account, id, name and\n"
                "environment. With --env, a key of another environment is refused.\n"
                "Exits 0 when the key is valid, 1 when it is not.",
        .opts = opts,
        .args_hint = "the key is read from stdin, never from the command line",
    };
    static const char *const fields[] = {
        "valid", "code", "account_id", "key_id", "name", "environment", NULL,
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
