/*
 * cmd_misc.c - `keyward migrate` and `keyward audit list`.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "core/json.h"

int kw_cli_migrate(kw_cli *cli, int argc, char **argv)
{
    const kw_cli_spec spec = {
        .usage = "migrate",
        .help = "Applies pending schema migrations (serve does it too) and prints the schema\n"
                "version. With --json: {\"schema_version\": N}.",
    };
    static const char *const fields[] = {"schema_version", NULL};
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    json_t *doc = json_pack("{s:i}", "schema_version", kw_service_schema_version(svc));
    rc = kw_cli_emit_object(cli, doc, fields);
    json_decref(doc);
    kw_service_close(svc);
    return rc;
}

int kw_cli_audit_list(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *limit_text = NULL, *cursor = NULL;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, false},
        {"limit", &limit_text, NULL, false},
        {"cursor", &cursor, NULL, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "audit list [--account ACC [--cursor C]] [--limit N]",
        .help = "Lists the audit log, newest first: who changed what, when and from which\n"
                "address (at most N entries, default 50; only account ACC's with --account).\n"
                "With --account and N at most 200 the list is a page: it ends with the\n"
                "cursor of the next one, which --cursor C asks for.\n"
                "With --json: {\"entries\": [...]}, and \"next_cursor\" for a page.",
        .opts = opts,
    };
    static const char *const columns[] = {
        "at", "actor", "action", "account_id", "key_id", "key_name", "source_ip", NULL,
    };
    int rc = kw_cli_parse(cli, &spec, argc, argv);
    if (rc != KW_CLI_RUN)
        return rc;
    if (cursor && !account)
        return kw_cli_usage_error(&spec, "--cursor needs --account");
    long limit = 50;
    kw_error err;
    /* A bad value is bad input (exit 1), as for --expires-at; wrong usage
     * (exit 2) is an unknown option or a missing one (docs/operations.md). */
    if (limit_text &&
        !kw_cli_parse_int(limit_text, 1, cursor ? KW_AUDIT_PAGE_MAX : 10000, &limit)) {
        kw_error_set(&err, KW_ERR_INVALID, "--limit must be an integer from 1 to %d",
                     cursor ? KW_AUDIT_PAGE_MAX : 10000);
        return kw_cli_fail(&err);
    }
    int64_t before = 0;
    if (cursor && !kw_json_audit_cursor_parse(account, cursor, &before)) {
        kw_error_set(&err, KW_ERR_INVALID,
                     "--cursor is not a cursor of this account's audit log; use the one a "
                     "previous page printed");
        return kw_cli_fail(&err);
    }
    bool paged = account && limit <= KW_AUDIT_PAGE_MAX;
    kw_service *svc;
    if ((rc = kw_cli_open(cli, &svc)) != KW_CLI_EXIT_OK)
        return rc;
    kw_audit_list list = {0};
    int64_t next = 0;
    kw_status st =
        paged ? kw_service_audit_page(svc, account, before, (size_t)limit, &list, &next, &err)
              : kw_service_audit_list(svc, account, (size_t)limit, &list, &err);
    if (st != KW_OK) {
        rc = kw_cli_fail(&err);
    } else {
        json_t *items = json_array();
        for (size_t i = 0; items && i < list.count; i++)
            json_array_append_new(items, kw_json_audit_entry(&list.items[i]));
        json_t *doc = json_pack("{s:o}", "entries", items);
        char next_cursor[KW_AUDIT_CURSOR_BUFSZ] = "";
        if (paged && next > 0)
            kw_json_audit_cursor(account, next, next_cursor);
        if (doc && paged)
            json_object_set_new(doc, "next_cursor",
                                next_cursor[0] ? json_string(next_cursor) : json_null());
        rc = kw_cli_emit_table(cli, doc, "entries", columns, "no audit entries");
        if (rc == KW_CLI_EXIT_OK && !cli->json && next_cursor[0])
            printf("\nmore: keyward audit list --account %s --cursor %s\n", account, next_cursor);
        json_decref(doc);
        kw_audit_list_free(&list);
    }
    kw_service_close(svc);
    return rc;
}
