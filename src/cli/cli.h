/*
 * cli.h - what the files of the command line share: the invocation context,
 * the table-driven option parser, settings resolution and output helpers.
 *
 * A command handler receives argv starting at its own name ("create" for
 * `keyward key create ...`), parses it with kw_cli_parse against a spec of
 * its options, opens the service with kw_cli_open, prints with the
 * kw_cli_emit_* helpers and returns the process exit code.
 */
#ifndef KW_CLI_H
#define KW_CLI_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE) ||              \
    defined(KW_LAYER_HTTP)
#error "cli/cli.h is in the cli layer, which no library may include"
#endif

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "core/service.h"

/* The exit codes, KW_CLI_EXIT_OK, _FAIL and _USAGE, are in core/status.h. */
#define KW_CLI_RUN (-1) /* kw_cli_parse: go on and run the command */

/* The settings, in the order of the table in config.c. */
typedef enum {
    KW_CLI_DATA_DIR,
    KW_CLI_STORE,
    KW_CLI_CONFIG,
    KW_CLI_PEPPER_FILE,
    KW_CLI_KEY_PREFIX,
    KW_CLI_MAX_KEYS,
    KW_CLI_LAST_USED_INTERVAL,
    KW_CLI_VERIFY_CACHE,
    KW_CLI_NODE_LEASE,
    KW_CLI_SESSION_IDLE,
    KW_CLI_SESSION_ABSOLUTE,
    KW_CLI_AUDIT_RETENTION,
    /* serve's own settings */
    KW_CLI_LISTEN,
    KW_CLI_THREADS,
    KW_CLI_MAX_BODY_BYTES,
    KW_CLI_MAX_HEADER_BYTES,
    KW_CLI_MAX_CONNECTIONS,
    KW_CLI_MAX_CONNECTIONS_PER_IP,
    KW_CLI_IDLE_TIMEOUT,
    KW_CLI_REQUEST_HEAD_TIMEOUT,
    KW_CLI_WAITING_PER_IP,
    KW_CLI_ACCESS_LOG,
    KW_CLI_SECURE_COOKIES,
    KW_CLI_PUBLIC_URL,
    KW_CLI_PASSWORD_CHECK_THREADS,
    KW_CLI_PASSWORD_CHECK_QUEUE,
    KW_CLI_PASSWORD_CHECKS_PER_S,
    KW_CLI_TRUSTED_PROXIES,
    KW_CLI_SETTING_COUNT
} kw_cli_setting;

typedef struct {
    const char *flag[KW_CLI_SETTING_COUNT]; /* as given on the command line, or NULL */
    char *file[KW_CLI_SETTING_COUNT];       /* as read from the config file (owned), or NULL */
    bool json;                              /* --json: print one JSON document */
    bool node;                              /* the command serves verifications (kw_config.node) */
    char *pepper;  /* KEYWARD_PEPPER, taken out of the environment at start; wiped */
    kw_config cfg; /* filled by kw_cli_open; points into the strings above */
} kw_cli;

/* One option of a command: --name VALUE (value != NULL) or a --name flag. */
typedef struct {
    const char *name;   /* without the dashes; NULL ends a table */
    const char **value; /* receives the argument */
    bool *flag;         /* set when the flag is given */
    bool required;
} kw_cli_opt;

typedef struct {
    const char *usage;            /* "key show --account ACC KEY_ID" */
    const char *help;             /* what the command does, for --help */
    const kw_cli_opt *opts;       /* the command's own options, or NULL */
    const char **args;            /* receives the positional arguments */
    const char *const *arg_names; /* their names, for "missing KEY_ID" */
    size_t nargs;                 /* how many are required (and allowed) */
    const char *args_hint;        /* appended to "unexpected argument", or NULL */
} kw_cli_spec;

/* main.c */

/*
 * Parses argv[1..argc) against spec's options plus the global options
 * (which may thus follow the command). Returns KW_CLI_RUN when the command
 * should run, 0 after printing --help, or 2 after printing a usage error.
 * A positional argument or option value is never echoed in a message: it
 * might be a secret typed in the wrong place.
 */
int kw_cli_parse(kw_cli *cli, const kw_cli_spec *spec, int argc, char **argv);

/*
 * kw_cli_parse, then kw_cli_open: returns KW_CLI_RUN with *svc open (the
 * caller closes it), or the exit code to return.
 */
int kw_cli_begin(kw_cli *cli, const kw_cli_spec *spec, int argc, char **argv, kw_service **svc);

/* Prints "keyward: <message>" and the usage line of spec to stderr; returns 2. */
int kw_cli_usage_error(const kw_cli_spec *spec, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* config.c */

/*
 * Clears *cli and takes KEYWARD_PEPPER out of the environment (wiping it
 * there). Returns 0, or 1 after printing why the pepper could not be kept.
 */
int kw_cli_init(kw_cli *cli);

/* Wipes the pepper and frees what *cli owns. */
void kw_cli_cleanup(kw_cli *cli);

/*
 * Resolves the settings (flag, then environment variable, then config
 * file, then default) into cli->cfg, without opening anything: for the
 * commands that must not load the pepper or migrate the store. Returns 0,
 * or 2 after printing which setting is wrong.
 */
int kw_cli_resolve(kw_cli *cli);

/*
 * kw_cli_resolve, then opens the service. The pepper copy
 * is wiped as soon as the service has loaded it. Returns 0 with *svc owned
 * by the caller (kw_service_close), or the exit code after printing why:
 * 2 for a bad setting, 1 when the service refused to open.
 */
int kw_cli_open(kw_cli *cli, kw_service **svc);

/*
 * The value of a setting once kw_cli_resolve has resolved them (flag, then
 * environment variable, then config file), or NULL when unset. Integer
 * settings have been range-checked by then.
 */
const char *kw_cli_setting_value(const kw_cli *cli, kw_cli_setting setting);

/*
 * Parses the whole of s as a decimal integer in [min, max]. Returns false
 * for anything else (empty, trailing characters, out of range).
 */
bool kw_cli_parse_int(const char *s, long min, long max, long *out);

/* output.c */

/* Prints "keyward: <message>" to stderr. */
void kw_cli_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Prints err's message (never a secret) to stderr; returns the exit code of
 * its status (core/status.h), KW_OK counting as an internal error.
 */
int kw_cli_fail(const kw_error *err);

/*
 * Prints doc as one JSON document on stdout, bypassing stdio so that no
 * copy lingers in its buffer; the text is wiped after writing. doc is
 * borrowed. Returns 0, or 1 when it could not be written.
 */
int kw_cli_print_json(const json_t *doc);

/* Prints the named members of obj as aligned "field: value" lines (absent ones skipped). */
void kw_cli_print_fields(const json_t *obj, const char *const *fields);

/* With --json prints doc; otherwise prints the named fields of doc. Returns the exit code. */
int kw_cli_emit_object(const kw_cli *cli, const json_t *doc, const char *const *fields);

/*
 * With --json prints doc; otherwise prints the array doc[member] as a table
 * with one column per field, or the line `empty` when it has no items.
 * Returns the exit code.
 */
int kw_cli_emit_table(const kw_cli *cli, const json_t *doc, const char *member,
                      const char *const *fields, const char *empty);

/*
 * Writes s and a newline to stdout with write(2), after flushing stdio,
 * so that the secret is never copied into a stdio buffer. Returns 0 or 1.
 */
int kw_cli_print_secret(const char *s);

/*
 * Shows a newly created key or root key once: with --json the document
 * {"<member>": {...}, "secret": "..."}, else the member's `fields` and the
 * secret on a line of its own, then a warning on stderr that it is shown
 * only this time. doc may be NULL (out of memory): then nothing is shown
 * and the message asks to delete object id `id`. Wipes `secret` (of
 * KW_KEY_BUFSZ bytes) and releases doc in every case. Returns the exit code.
 */
int kw_cli_emit_created(const kw_cli *cli, json_t *doc, const char *member,
                        const char *const *fields, char *secret, const char *id);

/*
 * Reads a secret (`what` names it in messages) from stdin with read(2)
 * into buf: until end of input, or until the end of the first line when
 * stdin is a terminal (then without echo, after printing `prompt`, if not
 * NULL, to stderr). One trailing "\n" or "\r\n" is dropped and buf is
 * NUL-terminated. Returns KW_OK with *len, or KW_ERR_INVALID when the
 * input does not fit in size - 1 bytes (buf is then wiped). The caller
 * wipes buf.
 */
kw_status kw_cli_read_secret(const char *what, const char *prompt, char *buf, size_t size,
                             size_t *len, kw_error *err);

/* The commands (cmd_*.c). */
int kw_cli_account_create(kw_cli *cli, int argc, char **argv);
int kw_cli_account_list(kw_cli *cli, int argc, char **argv);
int kw_cli_account_show(kw_cli *cli, int argc, char **argv);
int kw_cli_key_create(kw_cli *cli, int argc, char **argv);
int kw_cli_key_list(kw_cli *cli, int argc, char **argv);
int kw_cli_key_show(kw_cli *cli, int argc, char **argv);
int kw_cli_key_update(kw_cli *cli, int argc, char **argv);
int kw_cli_key_roll(kw_cli *cli, int argc, char **argv);
int kw_cli_key_delete(kw_cli *cli, int argc, char **argv);
int kw_cli_key_revoke_all(kw_cli *cli, int argc, char **argv);
int kw_cli_key_verify(kw_cli *cli, int argc, char **argv);
int kw_cli_root_key_create(kw_cli *cli, int argc, char **argv);
int kw_cli_root_key_list(kw_cli *cli, int argc, char **argv);
int kw_cli_root_key_delete(kw_cli *cli, int argc, char **argv);
int kw_cli_user_add(kw_cli *cli, int argc, char **argv);
int kw_cli_migrate(kw_cli *cli, int argc, char **argv);
int kw_cli_audit_list(kw_cli *cli, int argc, char **argv);
int kw_cli_serve(kw_cli *cli, int argc, char **argv);
int kw_cli_backup(kw_cli *cli, int argc, char **argv);
int kw_cli_restore(kw_cli *cli, int argc, char **argv);

#endif
