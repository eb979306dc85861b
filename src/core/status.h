/*
 * status.h - the one error type of keyward.
 *
 * Every fallible function returns a kw_status. One table (status.c) gives
 * each status its API code, a generic sentence, its HTTP status and its CLI
 * exit code; the HTTP layer and the CLI read it and keep no mapping of
 * their own. A kw_error carries the status together with one human
 * sentence that names the offending field; the sentence never contains a
 * secret.
 */
#ifndef KW_STATUS_H
#define KW_STATUS_H

typedef enum {
    KW_OK = 0,
    KW_ERR_INVALID,      /* bad input: a field, a path parameter, a value */
    KW_ERR_NOT_FOUND,    /* no such object, or not visible to the caller */
    KW_ERR_LIMIT,        /* the account already holds its maximum of active keys */
    KW_ERR_CONFLICT,     /* a unique value (e.g. a user's email) is taken */
    KW_ERR_UNAUTHORIZED, /* no credential, or one that is not valid */
    KW_ERR_FORBIDDEN,    /* valid credential, not allowed here */
    KW_ERR_UNAVAILABLE,  /* the store is unreachable or busy past its timeout */
    KW_ERR_INTERNAL,     /* a bug or an unexpected store failure */
    KW_ERR_KEY_STATE,    /* the key's state refuses the change (roll an expired,
                            rolled or disabled key) */
    KW_STATUS_COUNT      /* not a status: how many there are */
} kw_status;

/*
 * The CLI's exit codes, as docs/operations.md and the man page list them:
 * 0 done; 1 refused (bad input, not found, the key limit, an invalid key, a
 * store failure); 2 wrong usage (unknown command or option, a missing or
 * extra argument, a bad setting).
 */
#define KW_CLI_EXIT_OK    0
#define KW_CLI_EXIT_FAIL  1
#define KW_CLI_EXIT_USAGE 2

/* What a status becomes for each caller; status.c holds one row per status. */
typedef struct {
    const char *code;     /* the API's machine-readable code ("invalid_request", ...) */
    const char *text;     /* a generic sentence, used when no detail is known */
    unsigned http_status; /* the HTTP API's answer (200, 400, ...) */
    int exit_code;        /* the CLI's (KW_CLI_EXIT_OK or KW_CLI_EXIT_FAIL) */
} kw_status_row;

/* The row of status; a value outside the enum gets KW_ERR_INTERNAL's row. */
const kw_status_row *kw_status_info(kw_status status);

#define KW_ERROR_MESSAGE_MAX 256

typedef struct {
    kw_status status;
    char message[KW_ERROR_MESSAGE_MAX];
} kw_error;

/* Shorthands for the fields of kw_status_info(status). */
const char *kw_status_code(kw_status status);
const char *kw_status_text(kw_status status);
unsigned kw_status_http(kw_status status);
int kw_status_exit_code(kw_status status);

/*
 * Records status and a printf-style message in *err (err may be NULL) and
 * returns status, so that callers can write `return kw_error_set(...)`.
 */
kw_status kw_error_set(kw_error *err, kw_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets *err to KW_OK with an empty message. err may be NULL. */
void kw_error_clear(kw_error *err);

#endif
