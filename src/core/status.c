/*
 * status.c - turns a kw_status into the API's code and a generic sentence.
 * This is the one place where statuses become text.
 */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
    const char *code;
    const char *text;
} status_names[] = {
    [KW_OK] = {"ok", "OK."},
    [KW_ERR_INVALID] = {"invalid_request", "The request is not valid."},
    [KW_ERR_NOT_FOUND] = {"not_found", "Not found."},
    [KW_ERR_LIMIT] = {"key_limit_reached", "The account already has its maximum of active keys."},
    [KW_ERR_CONFLICT] = {"conflict", "That value is already in use."},
    [KW_ERR_UNAUTHORIZED] = {"unauthorized", "A valid credential is required."},
    [KW_ERR_FORBIDDEN] = {"forbidden", "This credential is not allowed to do that."},
    [KW_ERR_UNAVAILABLE] = {"unavailable", "The store is unavailable; nothing was changed."},
    [KW_ERR_INTERNAL] = {"internal", "An internal error occurred."},
};

const char *kw_status_code(kw_status status)
{
    if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
        return "internal";
    return status_names[status].code;
}

const char *kw_status_text(kw_status status)
{
    if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
        return status_names[KW_ERR_INTERNAL].text;
    return status_names[status].text;
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
