/*
 * status.c - the one table of what each kw_status becomes: the API's code, a
 * generic sentence, the HTTP status and the CLI exit code. The HTTP layer
 * and the CLI map statuses through it only.
 */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

/* Designated rows, so that each status names its own; a status without a
 * row would leave a zeroed one, which tests/unit/test_status.c refuses. */
static const kw_status_row rows[] = {
    [KW_OK] = {"ok", "OK.", 200, KW_CLI_EXIT_OK},
    [KW_ERR_INVALID] = {"invalid_request", "The request is not valid.", 400, KW_CLI_EXIT_FAIL},
    [KW_ERR_NOT_FOUND] = {"not_found", "Not found.", 404, KW_CLI_EXIT_FAIL},
    [KW_ERR_LIMIT] = {"key_limit_reached", "The account already has its maximum of active keys.",
                      409, KW_CLI_EXIT_FAIL},
    [KW_ERR_CONFLICT] = {"conflict", "That value is already in use.", 409, KW_CLI_EXIT_FAIL},
    [KW_ERR_UNAUTHORIZED] = {"unauthorized", "A valid credential is required.", 401,
                             KW_CLI_EXIT_FAIL},
    [KW_ERR_FORBIDDEN] = {"forbidden", "This credential is not allowed to do that.", 403,
                          KW_CLI_EXIT_FAIL},
    [KW_ERR_UNAVAILABLE] = {"unavailable", "The store is unavailable; nothing was changed.", 503,
                            KW_CLI_EXIT_FAIL},
    [KW_ERR_INTERNAL] = {"internal", "An internal error occurred.", 500, KW_CLI_EXIT_FAIL},
    [KW_ERR_KEY_STATE] = {"key_state", "The key cannot be changed that way in its present state.",
                          409, KW_CLI_EXIT_FAIL},
};

/* A status added to the enum without a row here fails the build. */
_Static_assert(sizeof rows / sizeof rows[0] == KW_STATUS_COUNT, "a kw_status has no row in rows[]");

const kw_status_row *kw_status_info(kw_status status)
{
    if ((unsigned)status >= KW_STATUS_COUNT)
        return &rows[KW_ERR_INTERNAL];
    return &rows[status];
}

const char *kw_status_code(kw_status status)
{
    return kw_status_info(status)->code;
}

const char *kw_status_text(kw_status status)
{
    return kw_status_info(status)->text;
}

unsigned kw_status_http(kw_status status)
{
    return kw_status_info(status)->http_status;
}

int kw_status_exit_code(kw_status status)
{
    return kw_status_info(status)->exit_code;
}

kw_status kw_error_set(kw_error *err, kw_status status, const char *fmt, ...)
{
    if (err) {
        err->status = status;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

void kw_error_clear(kw_error *err)
{
    if (err) {
        err->status = KW_OK;
        err->message[0] = '\0';
    }
}
