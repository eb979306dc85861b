/*
 * cmd_user.c - `keyward user add`: a console user of an account.
 *
 * The password comes from stdin (never argv). When stdin is a terminal or
 * empty, a random password is generated and printed once.
 */
#include <stdio.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"
#include "core/json.h"

static const char *const user_fields[] = {"id", "email", "account_id", "created_at", NULL};

/*
 * Prints the new user, and the password when it was generated (then it is
 * the only time it is shown). Returns the exit code.
 */
static int print_user(const kw_cli *cli, const kw_user *u, const char *generated)
{
    json_t *doc = generated
                      ? json_pack("{s:o, s:s}", "user", kw_json_user(u), "password", generated)
                      : json_pack("{s:o}", "user", kw_json_user(u));
    int rc = KW_CLI_EXIT_OK;
    if (!doc) {
        kw_cli_errorf("out of memory");
        rc = KW_CLI_EXIT_FAIL;
    } else if (cli->json) {
        rc = kw_cli_print_json(doc);
    } else {
        kw_cli_print_fields(json_object_get(doc, "user"), user_fields);
        if (generated) {
            printf("\npassword: ");
            rc = kw_cli_print_secret(generated);
        }
    }
    json_decref(doc);
    if (rc == KW_CLI_EXIT_OK && generated)
        kw_cli_errorf("this is the only time the generated password is shown: store it now.");
    return rc;
}

int kw_cli_user_add(kw_cli *cli, int argc, char **argv)
{
    const char *account = NULL, *email = NULL;
    const kw_cli_opt opts[] = {
        {"account", &account, NULL, true},
        {"email", &email, NULL, true},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "user add --account ACC --email EMAIL < PASSWORD_FILE",
        .help = "Adds a console user to account ACC. The password (12 to 1024 bytes) is read\n"
                "from stdin, one trailing newline ignored. When stdin is a terminal or empty,\n"
                "a random password is generated and printed once.\n"
                "With --json: {\"user\": {...}} and, if generated, \"password\".",
        .opts = opts,
        .args_hint = "the password is read from stdin, never from the command line",
    };
    kw_service *svc;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;

    char password[KW_PASSWORD_MAX + 3]; /* the password, "\r\n" and a NUL */
    size_t len = 0;
    kw_error err;
    kw_status st = KW_OK;
    if (!isatty(STDIN_FILENO))
        st = kw_cli_read_secret("password", NULL, password, sizeof password, &len, &err);
    const bool generated = st == KW_OK && len == 0;
    if (generated) {
        kw_service_generate_password(password);
        len = KW_GENERATED_PASSWORD_LEN;
    }
    kw_user u;
    if (st == KW_OK)
        st = kw_service_user_add(svc, "cli", account, email, password, len, &u, &err);
    if (st != KW_OK)
        rc = kw_cli_fail(&err);
    else
        rc = print_user(cli, &u, generated ? password : NULL);
    sodium_memzero(password, sizeof password);
    kw_service_close(svc);
    return rc;
}
