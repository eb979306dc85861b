/*
 * routes.c - the route table of the HTTP API and the matching of a request
 * path against it. The table is the one list of what is served; the
 * OpenAPI document is checked against it by the tests.
 */
#include "http/http_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define ACCOUNT "/v1/accounts/{account_id}"
#define KEYS    ACCOUNT "/keys"
#define KEY     KEYS "/{key_id}"

static const kw_http_route routes[] = {
    {{"POST", "/v1/accounts"}, kw_http_account_create, KW_AUTH_ROOT, true},
    {{"GET", ACCOUNT}, kw_http_account_get, KW_AUTH_ROOT, false},
    {{"POST", KEYS}, kw_http_key_create, KW_AUTH_ROOT, true},
    {{"GET", KEYS}, kw_http_key_list, KW_AUTH_ROOT, false},
    {{"GET", KEY}, kw_http_key_get, KW_AUTH_ROOT, false},
    {{"PATCH", KEY}, kw_http_key_update, KW_AUTH_ROOT, true},
    {{"DELETE", KEY}, kw_http_key_delete, KW_AUTH_ROOT, false},
    {{"POST", KEY "/roll"}, kw_http_key_roll, KW_AUTH_ROOT, true},
    /* A literal segment wins over a parameter: /keys/revoke is never key id "revoke". */
    {{"POST", KEYS "/revoke"}, kw_http_key_revoke_all, KW_AUTH_ROOT, true},
    {{"GET", ACCOUNT "/audit"}, kw_http_audit_page, KW_AUTH_ROOT, false},
    {{"POST", "/v1/keys/verify"}, kw_http_key_verify, KW_AUTH_NONE, true},
    {{"GET", "/v1/auth"}, kw_http_auth_request, KW_AUTH_NONE, false},
    {{"POST", "/v1/session"}, kw_http_session_create, KW_AUTH_NONE, true},
    {{"GET", "/v1/session"}, kw_http_session_get, KW_AUTH_NONE, false},
    {{"DELETE", "/v1/session"}, kw_http_session_delete, KW_AUTH_NONE, false},
    {{"GET", "/healthz"}, kw_http_healthz, KW_AUTH_NONE, false},
    {{"GET", "/metrics"}, kw_http_metrics_page, KW_AUTH_NONE, false},
    {{"GET", "/openapi.json"}, kw_http_openapi, KW_AUTH_NONE, false},
    /* The web console: every page is the same document (console.c). */
    {{"GET", "/"}, kw_http_console_page, KW_AUTH_NONE, false},
    {{"GET", "/sign-in"}, kw_http_console_page, KW_AUTH_NONE, false},
    {{"GET", "/settings/integrations"}, kw_http_console_page, KW_AUTH_NONE, false},
    {{"GET", "/settings/integrations/api"}, kw_http_console_page, KW_AUTH_NONE, false},
    {{"GET", "/assets/{name}"}, kw_http_console_asset, KW_AUTH_NONE, false},
};

#define ROUTE_COUNT (sizeof routes / sizeof routes[0])

size_t kw_http_route_count(void)
{
    return ROUTE_COUNT;
}

const kw_http_route *kw_http_route_at(size_t i)
{
    return i < ROUTE_COUNT ? &routes[i] : NULL;
}

const kw_http_route_info *kw_http_route_info_at(size_t i)
{
    return i < ROUTE_COUNT ? &routes[i].info : NULL;
}

/*
 * Matches path against pattern segment by segment: "{name}" matches one
 * non-empty segment, which is recorded in starts/lens. Returns the number
 * of parameters on a match, -1 otherwise.
 */
static int match(const char *pattern, const char *path, const char *starts[KW_HTTP_MAX_PARAMS],
                 size_t lens[KW_HTTP_MAX_PARAMS])
{
    int n = 0;
    while (*pattern && *path) {
        if (*pattern == '{') {
            size_t len = strcspn(path, "/");
            if (len == 0 || n == KW_HTTP_MAX_PARAMS)
                return -1;
            starts[n] = path;
            lens[n++] = len;
            path += len;
            pattern = strchr(pattern, '}') + 1;
        } else if (*pattern++ != *path++) {
            return -1;
        }
    }
    return *pattern == '\0' && *path == '\0' ? n : -1;
}

/* The fewest parameters of any route whose pattern matches path (-1: none). */
static int fewest_params(const char *path)
{
    const char *starts[KW_HTTP_MAX_PARAMS];
    size_t lens[KW_HTTP_MAX_PARAMS];
    int fewest = -1;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        int n = match(routes[i].info.pattern, path, starts, lens);
        if (n >= 0 && (fewest < 0 || n < fewest))
            fewest = n;
    }
    return fewest;
}

int kw_http_route_match(const char *method, char *path, const char *params[KW_HTTP_MAX_PARAMS],
                        char *allow, size_t allow_size)
{
    const char *starts[KW_HTTP_MAX_PARAMS] = {NULL};
    size_t lens[KW_HTTP_MAX_PARAMS] = {0};
    size_t used = 0;
    int fewest = -1;
    allow[0] = '\0';
    for (size_t p = 0; p < KW_HTTP_MAX_PARAMS; p++)
        params[p] = NULL;
    /* HEAD is answered like GET, without the body. */
    const char *as = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        int n = match(routes[i].info.pattern, path, starts, lens);
        if (n < 0)
            continue;
        /*
         * The most literal patterns that match are the path's routes:
         * POST .../keys/revoke is a route, so GET .../keys/revoke is 405
         * (Allow: POST), not the key "revoke". Paths without parameters,
         * such as verification's, never need the second look.
         */
        if (n > 0) {
            if (fewest < 0)
                fewest = fewest_params(path);
            if (n > fewest)
                continue;
        }
        if (strcmp(routes[i].info.method, as) == 0) {
            /* Split the path in place: each parameter becomes a string. */
            for (int p = 0; p < n; p++) {
                char *param = path + (starts[p] - path);
                param[lens[p]] = '\0';
                params[p] = param;
            }
            return (int)i;
        }
        bool get = strcmp(routes[i].info.method, "GET") == 0;
        int w = snprintf(allow + used, allow_size - used, "%s%s%s", used ? ", " : "",
                         routes[i].info.method, get ? ", HEAD" : "");
        if (w > 0 && (size_t)w < allow_size - used)
            used += (size_t)w;
    }
    return -1;
}
