/*
 * cmd_root_key.c - `keyward root-key create | list | delete`: the keys
 * that authorise the management API.
 */
#include <stdio.h>

#include <sodium.h>

#include "cli/cli.h"
#include "core/json.h"

static const char *const root_key_fields[] = {
    "id", "name", "masked", "created_at", "last_used_at", NULL,
};

int kw_cli_root_key_create(kw_cli *cli, int argc, char **argv)
{
    const char *name = NULL;
    const kw_cli_opt opts[] = {
        {"name", &name, NULL, true},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "root-key create --name NAME",
        .help = "Creates a root key, which may manage every account through the HTTP API.\n"
                "Prints it and, on a line of its own, its secret: the only time it is ever\n"
                "shown. With --json: {\"root_key\": {...}, \"secret\": \"...\"}.",
        .opts = opts,
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    char secret[KW_KEY_BUFSZ];
    kw_root_key rk;
    kw_error err;
    if (kw_service_root_key_create(svc, "cli", name, &rk, secret, &err) != KW_OK) {
        kw_service_close(svc);
        return kw_cli_fail(&err);
    }
    rc = kw_cli_emit_created(cli, kw_json_root_key_created(&rk, secret), "root_key",
                             root_key_fields, secret, rk.id);
    kw_service_close(svc);
    return rc;
}

int kw_cli_root_key_list(kw_cli *cli, int argc, char **argv)
{
    const kw_cli_spec spec = {
        .usage = "root-key list",
        .help = "Lists the root keys. Never shows a secret. With --json: {\"root_keys\": [...]}.",
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_root_key_list list = {0};
    kw_error err;
    if (kw_service_root_key_list(svc, &list, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *items = json_array();
        for (size_t i = 0; items && i < list.count; i++)
            json_array_append_new(items, kw_json_root_key(&list.items[i]));
        json_t *doc = json_pack("{s:o}", "root_keys", items);
        rc = kw_cli_emit_table(cli, doc, "root_keys", root_key_fields, "no root keys");
        json_decref(doc);
        kw_root_key_list_free(&list);
    }
    kw_service_close(svc);
    return rc;
}

int kw_cli_root_key_delete(kw_cli *cli, int argc, char **argv)
{
    const char *args[1], *const names[] = {"ID"};
    const kw_cli_spec spec = {
        .usage = "root-key delete ID",
        .help = "Deletes the root key ID (rk_...) permanently.\n"
                "With --json: {\"id\": \"rk_...\", \"deleted\": true}.",
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
    if (kw_service_root_key_delete(svc, "cli", args[0], &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = json_pack("{s:s, s:b}", "id", args[0], "deleted", 1);
        rc = kw_cli_emit_object(cli, doc, fields);
        json_decref(doc);
    }
    kw_service_close(svc);
    return rc;
}
