/*
 * main.c - keyward's entry point: global options, the option parser every
 * command shares, and dispatch to the command handlers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli/cli.h"
#include "core/json.h"

/* Longer words are never echoed in messages: a key is at least 54 characters. */
#define ECHO_MAX 40

typedef int (*handler_fn)(kw_cli *cli, int argc, char **argv);

static const struct command {
    const char *group; /* "key"; or the command itself when name is NULL */
    const char *name;  /* "create" */
    handler_fn run;
    const char *summary;
} commands[] = {
    {"account", "create", kw_cli_account_create, "create an account"},
    {"account", "list", kw_cli_account_list, "list the accounts"},
    {"account", "show", kw_cli_account_show, "show an account"},
    {"key", "create", kw_cli_key_create, "create a key and print it once"},
    {"key", "list", kw_cli_key_list, "list the keys of an account"},
    {"key", "show", kw_cli_key_show, "show a key"},
    {"key", "update", kw_cli_key_update,
     "rename, disable or enable a key, set its expiry or metadata"},
    {"key", "roll", kw_cli_key_roll, "replace a key, keeping the old one for a grace period"},
    {"key", "delete", kw_cli_key_delete, "delete a key permanently"},
    {"key", "revoke-all", kw_cli_key_revoke_all, "delete every key of an account (or environment)"},
    {"key", "verify", kw_cli_key_verify, "verify a key read from stdin"},
    {"user", "add", kw_cli_user_add, "add a console user to an account"},
    {"root-key", "create", kw_cli_root_key_create, "create a root key and print it once"},
    {"root-key", "list", kw_cli_root_key_list, "list the root keys"},
    {"root-key", "delete", kw_cli_root_key_delete, "delete a root key"},
    {"audit", "list", kw_cli_audit_list, "list the audit log, newest first"},
    {"migrate", NULL, kw_cli_migrate, "apply schema migrations and print the version"},
    {"serve", NULL, kw_cli_serve, "run the HTTP API and the web console"},
    {"backup", NULL, kw_cli_backup, "copy the SQLite database to a file, online"},
    {"restore", NULL, kw_cli_restore, "replace the SQLite database with a backup"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char global_help[] =
    "Global options (also settable as KEYWARD_DATA_DIR, KEYWARD_STORE, ... or in the\n"
    "config file; a flag beats a variable, which beats the file):\n"
    "  --data-dir DIR                 database and pepper file (default ./var)\n"
    "  --store URL                    sqlite:PATH or postgres://... (overrides --data-dir)\n"
    "  --config FILE                  config file of `key = value` lines\n"
    "  --pepper-file FILE             pepper file (default DIR/pepper, mode 0600)\n"
    "  --key-prefix PREFIX            prefix of new keys (default kw)\n"
    "  --max-keys-per-account N       active keys an account may hold (default 25)\n"
    "  --json                         print one JSON document\n"
    "  -h, --help                     show help\n"
    "The pepper itself can only come from KEYWARD_PEPPER, never from a flag.\n";

static void print_usage(FILE *f, const kw_cli_spec *spec)
{
    fprintf(f, "usage: keyward %s\n", spec->usage);
}

int kw_cli_usage_error(const kw_cli_spec *spec, const char *fmt, ...)
{
    va_list ap;
    fputs("keyward: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (spec)
        print_usage(stderr, spec);
    return KW_CLI_EXIT_USAGE;
}

/*
 * true when a word the user typed may be repeated in a message: short
 * printable ASCII, so neither a secret nor terminal control sequences.
 */
static bool echoable(const char *s, size_t len)
{
    if (len > ECHO_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return false;
    return true;
}

/* The option of table named by arg ("--name" or "--name=value"), or NULL. */
static const kw_cli_opt *find_opt(const kw_cli_opt *table, const char *arg)
{
    const char *name = arg + 2;
    size_t len = strcspn(name, "=");
    for (; table && table->name; table++)
        if (strlen(table->name) == len && strncmp(table->name, name, len) == 0)
            return table;
    return NULL;
}

/* A positional argument too many; never echoed, it may be a misplaced secret. */
static int unexpected_argument(const kw_cli_spec *spec)
{
    if (spec->args_hint)
        return kw_cli_usage_error(spec, "unexpected argument: %s", spec->args_hint);
    return kw_cli_usage_error(spec, "unexpected argument");
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/*
 * The parser behind kw_cli_parse. When next is not NULL, parsing stops at
 * the first positional argument, whose index is stored in *next (argc if
 * none); otherwise positional arguments fill spec->args.
 */
static int parse(kw_cli *cli, const kw_cli_spec *spec, int argc, char **argv, int *next)
{
    const kw_cli_opt globals[] = {
        {"data-dir", &cli->flag[KW_CLI_DATA_DIR], NULL, false},
        {"store", &cli->flag[KW_CLI_STORE], NULL, false},
        {"config", &cli->flag[KW_CLI_CONFIG], NULL, false},
        {"pepper-file", &cli->flag[KW_CLI_PEPPER_FILE], NULL, false},
        {"key-prefix", &cli->flag[KW_CLI_KEY_PREFIX], NULL, false},
        {"max-keys-per-account", &cli->flag[KW_CLI_MAX_KEYS], NULL, false},
        {"json", NULL, &cli->json, false},
        {NULL, NULL, NULL, false},
    };
    bool seen[32] = {false};
    size_t npos = 0;
    int i;

    for (i = 1; i < argc && !next && strcmp(argv[i], "--") != 0; i++) {
        if (is_help(argv[i])) {
            print_usage(stdout, spec);
            printf("\n%s\n%s", spec->help, global_help);
            return KW_CLI_EXIT_OK;
        }
    }
    for (i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0') {
            if (next)
                break;
            if (npos == spec->nargs)
                return unexpected_argument(spec);
            spec->args[npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            if (next) {
                i++;
                break;
            }
            if ((size_t)(argc - i - 1) > spec->nargs - npos)
                return unexpected_argument(spec);
            while (++i < argc)
                spec->args[npos++] = argv[i];
            break;
        }
        const kw_cli_opt *opt = arg[1] == '-' ? find_opt(spec->opts, arg) : NULL;
        if (opt && (size_t)(opt - spec->opts) < sizeof seen)
            seen[opt - spec->opts] = true;
        if (!opt && arg[1] == '-')
            opt = find_opt(globals, arg);
        if (!opt) {
            size_t len = strcspn(arg, "=");
            if (echoable(arg, len))
                return kw_cli_usage_error(spec, "unknown option %.*s", (int)len, arg);
            return kw_cli_usage_error(spec, "unknown option");
        }
        const char *eq = strchr(arg, '=');
        if (opt->flag) {
            if (eq)
                return kw_cli_usage_error(spec, "option --%s takes no value", opt->name);
            *opt->flag = true;
        } else if (eq) {
            *opt->value = eq + 1;
        } else if (i + 1 < argc) {
            *opt->value = argv[++i];
        } else {
            return kw_cli_usage_error(spec, "option --%s needs a value", opt->name);
        }
    }
    if (next) {
        *next = i;
        return KW_CLI_RUN;
    }
    for (const kw_cli_opt *o = spec->opts; o && o->name; o++)
        if (o->required && !seen[o - spec->opts])
            return kw_cli_usage_error(spec, "missing --%s", o->name);
    if (npos < spec->nargs)
        return kw_cli_usage_error(spec, "missing %s", spec->arg_names[npos]);
    return KW_CLI_RUN;
}

int kw_cli_parse(kw_cli *cli, const kw_cli_spec *spec, int argc, char **argv)
{
    return parse(cli, spec, argc, argv, NULL);
}

int kw_cli_begin(kw_cli *cli, const kw_cli_spec *spec, int argc, char **argv, kw_service **svc)
{
    int rc = parse(cli, spec, argc, argv, NULL);
    if (rc == KW_CLI_RUN && (rc = kw_cli_open(cli, svc)) == KW_CLI_EXIT_OK)
        rc = KW_CLI_RUN;
    return rc;
}

static void print_commands(FILE *f, const char *group)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (group && strcmp(c->group, group) != 0)
            continue;
        char name[32];
        snprintf(name, sizeof name, "%s%s%s", c->group, c->name ? " " : "", c->name ? c->name : "");
        fprintf(f, "  %-18s %s\n", name, c->summary);
    }
}

static const kw_cli_spec top_spec = {
    .usage = "[GLOBAL OPTIONS] COMMAND [ARGS]",
    .help = "keyward issues, verifies and revokes API keys.",
};

static void print_top_help(FILE *f)
{
    print_usage(f, &top_spec);
    fprintf(f, "\n%s\n\nCommands:\n", top_spec.help);
    print_commands(f, NULL);
    fprintf(f, "\n%s\nRun 'keyward COMMAND --help' for the options of a command.\n", global_help);
}

static bool group_exists(const char *group)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].group, group) == 0)
            return true;
    return false;
}

/* Prints the unknown command word unless it could be a secret. */
static int unknown_command(const char *group, const char *word)
{
    if (!echoable(word, strlen(word)))
        kw_cli_errorf("unknown command; run 'keyward --help'");
    else if (group)
        kw_cli_errorf("unknown command '%s %s'; run 'keyward %s --help'", group, word, group);
    else
        kw_cli_errorf("unknown command '%s'; run 'keyward --help'", word);
    return KW_CLI_EXIT_USAGE;
}

/*
 * Runs the command named at argv[0] (and argv[1] for grouped commands),
 * handing it argv from its own name on. `help` makes it print its help.
 */
static int dispatch(kw_cli *cli, int argc, char **argv, bool help)
{
    const char *group = argv[0];
    if (!group_exists(group))
        return unknown_command(NULL, group);
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->group, group) == 0 && !c->name) {
            char *help_argv[] = {argv[0], "--help", NULL};
            return help ? c->run(cli, 2, help_argv) : c->run(cli, argc, argv);
        }
    }
    if (argc < 2 || is_help(argv[1])) {
        FILE *f = argc < 2 && !help ? stderr : stdout;
        if (f == stderr)
            kw_cli_errorf("'%s' needs a command", group);
        fprintf(f, "usage: keyward %s COMMAND [ARGS]\n\nCommands:\n", group);
        print_commands(f, group);
        return f == stderr ? KW_CLI_EXIT_USAGE : KW_CLI_EXIT_OK;
    }
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const struct command *c = &commands[i];
        if (strcmp(c->group, group) == 0 && strcmp(c->name, argv[1]) == 0) {
            char *help_argv[] = {argv[1], "--help", NULL};
            return help ? c->run(cli, 2, help_argv) : c->run(cli, argc - 1, argv + 1);
        }
    }
    return unknown_command(group, argv[1]);
}

static int run(kw_cli *cli, int argc, char **argv)
{
    bool version = false;
    const kw_cli_opt top_opts[] = {
        {"version", NULL, &version, false},
        {NULL, NULL, NULL, false},
    };
    kw_cli_spec spec = top_spec;
    spec.opts = top_opts;
    int next = argc;

    for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (is_help(argv[i])) {
            print_top_help(stdout);
            return KW_CLI_EXIT_OK;
        }
    }
    int rc = parse(cli, &spec, argc, argv, &next);
    if (rc != KW_CLI_RUN)
        return rc;
    if (version) {
        printf("keyward %s\n", KW_VERSION);
        return KW_CLI_EXIT_OK;
    }
    if (next >= argc) {
        kw_cli_errorf("missing command");
        print_top_help(stderr);
        return KW_CLI_EXIT_USAGE;
    }
    if (strcmp(argv[next], "help") == 0) {
        if (next + 1 >= argc) {
            print_top_help(stdout);
            return KW_CLI_EXIT_OK;
        }
        return dispatch(cli, argc - next - 1, argv + next + 1, true);
    }
    return dispatch(cli, argc - next, argv + next, false);
}

int main(int argc, char **argv)
{
    kw_json_init();
    if (sodium_init() < 0) {
        kw_cli_errorf("cannot initialise libsodium");
        return KW_CLI_EXIT_FAIL;
    }
    kw_cli cli;
    int rc = kw_cli_init(&cli);
    if (rc == KW_CLI_EXIT_OK)
        rc = run(&cli, argc, argv);
    kw_cli_cleanup(&cli);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        kw_cli_errorf("cannot write to standard output");
        if (rc == KW_CLI_EXIT_OK)
            rc = KW_CLI_EXIT_FAIL;
    }
    return rc;
}
