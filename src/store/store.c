/*
 * store.c - picks the backend named by a store URL.
 */
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/*
 * Length of the scheme of url ("sqlite" in "sqlite:..."), 0 when it does not
 * start with one (RFC 3986: a letter, then letters, digits, "+", "-", ".").
 */
static size_t scheme_length(const char *url)
{
    size_t n = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");
    bool letter = (url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z');
    return letter && url[n] == ':' ? n : 0;
}

const char *kw_store_sqlite_path(const char *url)
{
    return url && strncmp(url, "sqlite:", 7) == 0 && url[7] ? url + 7 : NULL;
}

/*
 * Error messages name at most the scheme: the rest of a URL may carry a
 * user name and password.
 */
kw_status kw_store_open(const char *url, kw_store **out, kw_error *err)
{
    *out = NULL;
    if (!url || !*url)
        return kw_error_set(err, KW_ERR_INVALID, "The store URL is empty.");
    if (kw_store_sqlite_path(url))
        return kw_store_sqlite_open(kw_store_sqlite_path(url), out, err);
    if (strcmp(url, "sqlite:") == 0)
        return kw_error_set(err, KW_ERR_INVALID,
                            "The store URL \"sqlite:\" needs a path, as in sqlite:PATH.");
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
        return kw_store_postgres_open(url, out, err);
    size_t n = scheme_length(url);
    if (n == 0 || n > 32)
        return kw_error_set(err, KW_ERR_INVALID,
                            "The store URL has no scheme; use sqlite:PATH or postgres://HOST/DB.");
    return kw_error_set(err, KW_ERR_INVALID,
                        "The store URL scheme \"%.*s\" is not supported; use sqlite:PATH or "
                        "postgres://HOST/DB.",
                        (int)n, url);
}
