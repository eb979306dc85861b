/*
 * session.c - the console's sessions over HTTP: sign in, who am I, sign
 * out, and what a session may do on the management routes.
 *
 * The session token travels only in the keyward_session cookie (HttpOnly,
 * SameSite=Strict, Path=/, Secure when configured). A state-changing
 * request made with it must carry the session's CSRF token in X-CSRF-Token
 * and an Origin of this server, or it gets 403. Failed sign-ins are
 * counted per email and per client address; past the limit, 429.
 */
#include "http/http_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/json.h"
#include "http/ratelimit.h"

#define COOKIE "keyward_session"

const char *kw_http_session_cookie(const kw_http_req *req)
{
    return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, COOKIE);
}

/* True when the request's Origin is this server (public_url, or the Host it was sent to). */
static bool same_origin(const kw_http_req *req)
{
    const char *origin = kw_http_header(req, "Origin");
    if (!origin)
        return false;
    const char *public_origin = req->srv->opt.public_origin;
    if (public_origin && *public_origin)
        return strcmp(origin, public_origin) == 0;
    const char *host = kw_http_header(req, MHD_HTTP_HEADER_HOST);
    if (!host)
        return false;
    const char *rest = strncmp(origin, "http://", 7) == 0    ? origin + 7
                       : strncmp(origin, "https://", 8) == 0 ? origin + 8
                                                             : NULL;
    return rest && strcmp(rest, host) == 0;
}

/* A state-changing request with a session: 403 unless Origin and CSRF token match. */
static bool csrf_ok(kw_http_req *req, const char *token)
{
    if (!same_origin(req)) {
        kw_http_reply_error(req, 403, "The request did not come from this console (Origin).");
        return false;
    }
    if (!token || !kw_service_session_csrf_ok(req->srv->svc, token, strlen(token),
                                              kw_http_header(req, "X-CSRF-Token"))) {
        kw_http_reply_error(req, 403, "The X-CSRF-Token header is missing or wrong.");
        return false;
    }
    return true;
}

static bool state_changing(const kw_http_req *req)
{
    return strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
}

/*
 * The request's session into *s (and its CSRF token into csrf, if not
 * NULL); returns its cookie, or NULL after replying 401 (or 503).
 */
static const char *current_session(kw_http_req *req, kw_session *s,
                                   char csrf[KW_SESSION_TOKEN_BUFSZ])
{
    const char *token = kw_http_session_cookie(req);
    kw_error err;
    if (kw_service_session_get(req->srv->svc, token, token ? strlen(token) : 0, s, csrf, &err) ==
        KW_OK)
        return token;
    kw_http_reply_failure(req, &err);
    return NULL;
}

bool kw_http_session_authorize(kw_http_req *req)
{
    kw_session s;
    const char *token = current_session(req, &s, NULL);
    if (!token)
        return false;
    if (state_changing(req) && !csrf_ok(req, token))
        return false;
    /* A session reaches its own account only; any other is "not found". */
    const char *account = req->param[0];
    if (!account) {
        kw_http_reply_error(req, 403, "A console session cannot do that; use a root key.");
        return false;
    }
    if (strcmp(account, s.user.account_id) != 0) {
        kw_http_reply_error(req, 404, "Account not found.");
        return false;
    }
    snprintf(req->actor, sizeof req->actor, "user:%s", s.user.id);
    return true;
}

static void reply_session(kw_http_req *req, unsigned status, const kw_session *s, const char *csrf)
{
    kw_http_reply_json(req, status,
                       json_pack("{s:{s:s, s:s, s:s}, s:s}", "user", "id", s->user.id, "email",
                                 s->user.email, "account_id", s->user.account_id, "csrf_token",
                                 csrf));
}

static void set_cookie(kw_http_req *req, const char *token, long max_age)
{
    char cookie[256];
    snprintf(cookie, sizeof cookie, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld%s",
             token, max_age, req->srv->opt.secure_cookies ? "; Secure" : "");
    kw_http_reply_header(req, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    sodium_memzero(cookie, sizeof cookie);
}

/* "email:<address, lower case>" and "addr:<client address>": the two counters of a sign-in. */
static void limit_keys(const kw_http_req *req, const char *email, char by_email[300],
                       char by_addr[64])
{
    snprintf(by_email, 300, "email:%s", email);
    for (char *c = by_email; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    snprintf(by_addr, 64, "addr:");
    kw_http_client_address(req, by_addr + 5, 64 - 5);
}

void kw_http_session_create(kw_http_req *req)
{
    if (kw_http_header(req, "Origin") && !same_origin(req)) {
        kw_http_reply_error(req, 403, "Sign in from this console only (Origin).");
        return;
    }
    static const kw_http_field fields[] = {
        {"email", KW_FIELD_STRING, true},
        {"password", KW_FIELD_STRING, true},
        {NULL, 0, false},
    };
    json_t *body = kw_http_read_json(req, fields);
    if (!body)
        return;
    const char *email = kw_http_string(body, "email");
    const json_t *password = json_object_get(body, "password");
    char by_email[300], by_addr[64];
    limit_keys(req, email, by_email, by_addr);
    int64_t now = kw_service_now(req->srv->svc);
    unsigned wait = kw_ratelimit_wait(req->srv->signin_by_email, by_email, now);
    unsigned wait_addr = kw_ratelimit_wait(req->srv->signin_by_addr, by_addr, now);
    if (wait_addr > wait)
        wait = wait_addr;
    if (wait) {
        char retry[16];
        snprintf(retry, sizeof retry, "%u", wait);
        kw_http_reply_error(req, 429, "Too many failed sign-ins; try again later.");
        kw_http_reply_header(req, MHD_HTTP_HEADER_RETRY_AFTER, retry);
        json_decref(body);
        return;
    }
    kw_session s;
    char token[KW_SESSION_TOKEN_BUFSZ], csrf[KW_SESSION_TOKEN_BUFSZ];
    kw_error err;
    kw_status st = kw_service_session_create(req->srv->svc, email, json_string_value(password),
                                             json_string_length(password), &s, token, csrf, &err);
    if (st == KW_OK) {
        kw_ratelimit_reset(req->srv->signin_by_email, by_email);
        reply_session(req, 200, &s, csrf);
        set_cookie(req, token, (long)(s.expires_at - s.created_at));
    } else {
        if (st == KW_ERR_UNAUTHORIZED) {
            kw_ratelimit_fail(req->srv->signin_by_email, by_email, now);
            kw_ratelimit_fail(req->srv->signin_by_addr, by_addr, now);
        }
        kw_http_reply_failure(req, &err);
    }
    sodium_memzero(token, sizeof token);
    sodium_memzero(csrf, sizeof csrf);
    json_decref(body); /* the wiping allocator clears the password */
}

void kw_http_session_get(kw_http_req *req)
{
    kw_session s;
    char csrf[KW_SESSION_TOKEN_BUFSZ] = "";
    if (current_session(req, &s, csrf))
        reply_session(req, 200, &s, csrf);
    sodium_memzero(csrf, sizeof csrf);
}

void kw_http_session_delete(kw_http_req *req)
{
    kw_session s;
    kw_error err;
    const char *token = current_session(req, &s, NULL);
    if (!token || !csrf_ok(req, token))
        return;
    if (kw_service_session_delete(req->srv->svc, token, strlen(token), &err) != KW_OK) {
        kw_http_reply_failure(req, &err);
        return;
    }
    kw_http_reply_empty(req, 204);
    set_cookie(req, "", 0);
}
