/*
 * session.c - the console's sessions over HTTP: sign in, who am I, sign
 * out, and what a session may do on the management routes.
 *
 * The session token travels only in the keyward_session cookie (HttpOnly,
 * SameSite=Strict, Path=/, Secure when configured). A state-changing
 * request made with it must carry the session's CSRF token in X-CSRF-Token
 * and an Origin of this server, or it gets 403. Sign-ins are counted per
 * email and per client address before the password is checked; past the
 * limit, 429. The check itself (argon2id) runs on the hash pool, never on
 * a server thread.
 */
#include "http/http_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/json.h"
#include "http/hashpool.h"
#include "http/origin.h"
#include "http/ratelimit.h"

#define COOKIE "keyward_session"
/* "email:" or "addr:" and the email or address: the key of a sign-in limit. */
#define LIMIT_KEY_BUFSZ 300
/* Retry-After when the server stops: another node (or this one, restarted) can answer. */
#define RETRY_STOPPING_S 1

const char *kw_http_session_cookie(const kw_http_req *req)
{
    return MHD_lookup_connection_value(req->conn, MHD_COOKIE_KIND, COOKIE);
}

/* True when the request's Origin is this server's (public_url, or the Host it was sent to). */
static bool same_origin(const kw_http_req *req)
{
    return kw_origin_matches(kw_http_header(req, "Origin"), req->srv->opt.public_origin,
                             kw_http_header(req, MHD_HTTP_HEADER_HOST));
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
static void limit_keys(const kw_http_req *req, const char *email, char by_email[LIMIT_KEY_BUFSZ],
                       char by_addr[LIMIT_KEY_BUFSZ])
{
    snprintf(by_email, LIMIT_KEY_BUFSZ, "email:%s", email);
    for (char *c = by_email; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    snprintf(by_addr, LIMIT_KEY_BUFSZ, "addr:");
    kw_http_client_address(req, by_addr + 5, LIMIT_KEY_BUFSZ - 5);
}

/*
 * Takes a slot of both counters before any password is checked, so that
 * parallel attempts cannot all pass a check made before the first of them
 * has failed. Returns 0, or the seconds to wait (then it holds no slot).
 */
static unsigned take_slots(kw_http_server *srv, const char *by_email, const char *by_addr,
                           int64_t now)
{
    unsigned wait = kw_ratelimit_take(srv->signin_by_email, by_email, now);
    if (wait)
        return wait;
    wait = kw_ratelimit_take(srv->signin_by_addr, by_addr, now);
    if (wait)
        kw_ratelimit_give_back(srv->signin_by_email, by_email, now);
    return wait;
}

/*
 * A sign-in waiting for its password check. The email and the password
 * follow the struct (password_len bytes and a NUL each); the whole
 * allocation is wiped when freed.
 */
typedef struct {
    kw_hashpool_job base; /* first: the pool's part */
    kw_http_req *req;
    int64_t taken_at; /* when the limit slots were taken */
    char by_email[LIMIT_KEY_BUFSZ], by_addr[LIMIT_KEY_BUFSZ];
    size_t size; /* of the allocation */
    size_t password_len;
    const char *email;
    const char *password;
} signin_job;

static void on_signin(kw_hashpool_job *base, bool stopping);

/* A job for req with copies of email and password (len bytes); NULL when out of memory. */
static signin_job *signin_job_new(kw_http_req *req, const char *email, const char *password,
                                  size_t len)
{
    size_t email_len = strlen(email);
    size_t size = sizeof(signin_job) + email_len + 1 + len + 1;
    signin_job *job = malloc(size);
    if (!job)
        return NULL;
    memset(job, 0, sizeof *job);
    job->base.run = on_signin;
    job->req = req;
    job->size = size;
    char *text = (char *)(job + 1);
    memcpy(text, email, email_len + 1);
    job->email = text;
    memcpy(text + email_len + 1, password, len);
    text[email_len + 1 + len] = '\0';
    job->password = text + email_len + 1;
    job->password_len = len;
    return job;
}

static void signin_job_free(signin_job *job)
{
    sodium_memzero(job, job->size);
    free(job);
}

/* The attempt did not count (no check ran, or it could not finish): its slots go back. */
static void give_back(kw_http_server *srv, const signin_job *job)
{
    kw_ratelimit_give_back(srv->signin_by_email, job->by_email, job->taken_at);
    kw_ratelimit_give_back(srv->signin_by_addr, job->by_addr, job->taken_at);
}

static void reply_retry(kw_http_req *req, unsigned status, const char *message, unsigned seconds)
{
    char retry[16];
    snprintf(retry, sizeof retry, "%u", seconds);
    kw_http_reply_error(req, status, message);
    kw_http_reply_header(req, MHD_HTTP_HEADER_RETRY_AFTER, retry);
}

/* Seconds until a full queue of password checks has drained at the budget's pace (at least 1). */
static unsigned retry_busy(const kw_http_server *srv)
{
    unsigned per_s = srv->opt.password_checks_per_s;
    unsigned queue = srv->opt.password_check_queue;
    return per_s && queue > per_s ? (queue + per_s - 1) / per_s : 1;
}

/* Checks the password and starts the session, on a pool thread; replies. */
static void check_password(kw_http_req *req, signin_job *job)
{
    kw_http_server *srv = req->srv;
    kw_session s;
    char token[KW_SESSION_TOKEN_BUFSZ], csrf[KW_SESSION_TOKEN_BUFSZ];
    kw_error err;
    kw_http_metrics_password(srv->metrics, KW_PASSWORD_CHECKED);
    /* The sign-in's audit entry records the client's address ("addr:<address>"). */
    const char *addr = job->by_addr + 5;
    kw_service_set_source_ip(strcmp(addr, "unknown") != 0 ? addr : NULL);
    kw_status st = kw_service_session_create(srv->svc, job->email, job->password, job->password_len,
                                             &s, token, csrf, &err);
    kw_service_set_source_ip(NULL);
    if (st == KW_OK) {
        kw_ratelimit_reset(srv->signin_by_email, job->by_email);
        kw_ratelimit_give_back(srv->signin_by_addr, job->by_addr, job->taken_at);
        reply_session(req, 200, &s, csrf);
        set_cookie(req, token, (long)(s.expires_at - s.created_at));
    } else {
        if (st != KW_ERR_UNAUTHORIZED) /* the store failed: no guess was made */
            give_back(srv, job);
        kw_http_reply_failure(req, &err);
    }
    sodium_memzero(token, sizeof token);
    sodium_memzero(csrf, sizeof csrf);
}

static void on_signin(kw_hashpool_job *base, bool stopping)
{
    signin_job *job = (signin_job *)(void *)base;
    kw_http_req *req = job->req;
    if (stopping) {
        give_back(req->srv, job);
        reply_retry(req, 503, "The server is stopping; sign in again.", RETRY_STOPPING_S);
    } else {
        check_password(req, job);
    }
    signin_job_free(job);
    kw_http_resume(req); /* req is the server's again from here */
}

/*
 * POST /v1/session. Everything cheap happens here, on the server thread:
 * the Origin, the body, the limits. The password check itself goes to the
 * hash pool, and the request waits suspended for its answer; when the
 * pool's queue is full the sign-in gets 503 with Retry-After at once,
 * without a check.
 */
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
    kw_http_server *srv = req->srv;
    const char *email = kw_http_string(body, "email");
    const json_t *password = json_object_get(body, "password");
    char by_email[LIMIT_KEY_BUFSZ], by_addr[LIMIT_KEY_BUFSZ];
    limit_keys(req, email, by_email, by_addr);
    int64_t now = kw_service_now(srv->svc);
    unsigned wait = take_slots(srv, by_email, by_addr, now);
    if (wait) {
        reply_retry(req, 429, "Too many failed sign-ins; try again later.", wait);
        json_decref(body);
        return;
    }
    signin_job *job =
        signin_job_new(req, email, json_string_value(password), json_string_length(password));
    json_decref(body); /* the wiping allocator clears the password */
    if (!job) {
        kw_ratelimit_give_back(srv->signin_by_email, by_email, now);
        kw_ratelimit_give_back(srv->signin_by_addr, by_addr, now);
        kw_http_reply_error(req, 500, "Out of memory.");
        return;
    }
    job->taken_at = now;
    memcpy(job->by_email, by_email, sizeof by_email);
    memcpy(job->by_addr, by_addr, sizeof by_addr);
    /* Suspended before it is queued: a pool thread may resume it at once. */
    kw_http_suspend(req);
    kw_hashpool_result queued = kw_hashpool_submit(srv->hashpool, &job->base);
    if (queued == KW_HASHPOOL_QUEUED)
        return;
    if (queued == KW_HASHPOOL_FULL) {
        kw_http_metrics_password(srv->metrics, KW_PASSWORD_REJECTED);
        reply_retry(req, 503, "Too many sign-ins are waiting; try again in a moment.",
                    retry_busy(srv));
    } else {
        reply_retry(req, 503, "The server is stopping; sign in again.", RETRY_STOPPING_S);
    }
    give_back(srv, job);
    signin_job_free(job);
    kw_http_resume(req);
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
