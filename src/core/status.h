/*
 * status.h - the one error type of keyward.
 *
 * Every fallible function returns a kw_status. The HTTP layer maps it to a
 * status code and the CLI to an exit code, each in exactly one place. A
 * kw_error carries the status together with one human sentence that names
 * the offending field; the sentence never contains a secret.
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
} kw_status;

#define KW_ERROR_MESSAGE_MAX 256

typedef struct {
    kw_status status;
    char message[KW_ERROR_MESSAGE_MAX];
} kw_error;

/* The API's machine-readable code for a status ("invalid_request", ...). */
const char *kw_status_code(kw_status status);

/* A generic sentence for a status, used when no detail is known. */
const char *kw_status_text(kw_status status);

/*
 * Records status and a printf-style message in *err (err may be NULL) and
 * returns status, so that callers can write `return kw_error_set(...)`.
 */
kw_status kw_error_set(kw_error *err, kw_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets *err to KW_OK with an empty message. err may be NULL. */
void kw_error_clear(kw_error *err);

#endif
