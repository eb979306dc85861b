/*
 * cmd_account.c - `keyward account create | list | show`.
 */
#include "cli/cli.h"
#include "core/json.h"

static const char *const account_fields[] = {"id", "name", "key_limit", "created_at", NULL};

int kw_cli_account_create(kw_cli *cli, int argc, char **argv)
{
    const char *args[1], *const names[] = {"NAME"};
    const kw_cli_spec spec = {
        .usage = "account create NAME",
        .help = "Creates an account named NAME (1 to 100 characters) and prints it.",
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_account a;
    kw_error err;
    if (kw_service_account_create(svc, "cli", args[0], &a, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = kw_json_account(&a);
        rc = kw_cli_emit_object(cli, doc, account_fields);
        json_decref(doc);
    }
    kw_service_close(svc);
    return rc;
}

int kw_cli_account_list(kw_cli *cli, int argc, char **argv)
{
    const kw_cli_spec spec = {
        .usage = "account list",
        .help = "Lists every account. With --json: {\"accounts\": [...]}.",
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_account_list list = {0};
    kw_error err;
    if (kw_service_account_list(svc, &list, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *items = json_array();
        for (size_t i = 0; items && i < list.count; i++)
            json_array_append_new(items, kw_json_account(&list.items[i]));
        json_t *doc = json_pack("{s:o}", "accounts", items);
        rc = kw_cli_emit_table(cli, doc, "accounts", account_fields, "no accounts");
        json_decref(doc);
        kw_account_list_free(&list);
    }
    kw_service_close(svc);
    return rc;
}

int kw_cli_account_show(kw_cli *cli, int argc, char **argv)
{
    const char *args[1], *const names[] = {"ACCOUNT_ID"};
    const kw_cli_spec spec = {
        .usage = "account show ACCOUNT_ID",
        .help = "Prints the account with id ACCOUNT_ID (acc_...).",
        .args = args,
        .arg_names = names,
        .nargs = 1,
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_account a;
    kw_error err;
    if (kw_service_account_get(svc, args[0], &a, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *doc = kw_json_account(&a);
        rc = kw_cli_emit_object(cli, doc, account_fields);
        json_decref(doc);
    }
    kw_service_close(svc);
    return rc;
}
