/*
 * service_session.c - console sessions: sign in with a password, a random
 * token in an HttpOnly cookie, and a CSRF token derived from it.
 *
 * The store keeps only HMAC(pepper, token), like a key. The CSRF token is
 * HMAC(pepper, "csrf:" || token): the server can recompute it from the
 * cookie on every request, so it is never stored, and it tells nothing
 * about the session token. A session ends when it has been idle for
 * session_idle_s or has lasted session_absolute_s, or when it is deleted.
 */
#include "core/service_internal.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/base62.h"

#define TOKEN_PREFIX "kws_"
#define CSRF_LABEL   "csrf:"
/* last_seen_at is written at most this often (seconds): idle expiry is that precise. */
#define TOUCH_EVERY 60

static void session_hash(const kw_service *svc, const char *token, size_t len,
                         uint8_t hash[KW_HASH_BYTES])
{
    kw_pepper_hash(svc->pepper, 0, token, len, hash);
}

static void csrf_of(const kw_service *svc, const char *token, size_t len,
                    char csrf[KW_SESSION_TOKEN_BUFSZ])
{
    char msg[sizeof CSRF_LABEL + KW_SESSION_TOKEN_BUFSZ];
    uint8_t mac[KW_HASH_BYTES];
    memcpy(msg, CSRF_LABEL, sizeof CSRF_LABEL - 1);
    memcpy(msg + sizeof CSRF_LABEL - 1, token, len);
    kw_pepper_hash(svc->pepper, 0, msg, sizeof CSRF_LABEL - 1 + len, mac);
    kw_base62_encode(mac, sizeof mac, csrf, 43);
    csrf[43] = '\0';
    sodium_memzero(msg, sizeof msg);
    sodium_memzero(mac, sizeof mac);
}

/* True when token has the shape of a session token (checked before any hashing). */
static bool token_shape(const char *token, size_t len)
{
    if (len != sizeof TOKEN_PREFIX - 1 + 43 || memcmp(token, TOKEN_PREFIX, 4) != 0)
        return false;
    for (size_t i = 4; i < len; i++)
        if (!kw_base62_is_digit(token[i]))
            return false;
    return true;
}

kw_status kw_service_session_create(kw_service *svc, const char *email, const char *password,
                                    size_t len, kw_session *out, char token[KW_SESSION_TOKEN_BUFSZ],
                                    char csrf[KW_SESSION_TOKEN_BUFSZ], kw_error *err)
{
    memset(out, 0, sizeof *out);
    token[0] = csrf[0] = '\0';
    kw_status st = kw_service_user_login(svc, email, password, len, &out->user, err);
    if (st != KW_OK)
        return st;
    uint8_t random[32];
    randombytes_buf(random, sizeof random);
    memcpy(token, TOKEN_PREFIX, sizeof TOKEN_PREFIX - 1);
    kw_base62_encode(random, sizeof random, token + 4, 43);
    token[4 + 43] = '\0';
    sodium_memzero(random, sizeof random);
    size_t tlen = strlen(token);

    uint8_t hash[KW_HASH_BYTES];
    session_hash(svc, token, tlen, hash);
    int64_t now = kw_service_now(svc);
    out->created_at = out->last_seen_at = now;
    out->expires_at = now + svc->session_absolute_s;
    /* Audited with the sign-in; a refused one is not, so a flood of
     * wrong passwords cannot grow the log. */
    kw_audit au = kw_service_audit(now, NULL, "session.create");
    st = svc->store->ops->session_insert(svc->store, hash, out->user.id, now, out->expires_at, &au);
    if (st != KW_OK) {
        sodium_memzero(token, KW_SESSION_TOKEN_BUFSZ);
        return kw_service_store_error(st, "signing in", err);
    }
    csrf_of(svc, token, tlen, csrf);
    return KW_OK;
}

kw_status kw_service_session_get(kw_service *svc, const char *token, size_t len, kw_session *out,
                                 char csrf[KW_SESSION_TOKEN_BUFSZ], kw_error *err)
{
    memset(out, 0, sizeof *out);
    if (csrf)
        csrf[0] = '\0';
    if (!token || !token_shape(token, len))
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "Sign in to continue.");
    uint8_t hash[KW_HASH_BYTES];
    session_hash(svc, token, len, hash);
    kw_status st = svc->store->ops->session_find(svc->store, hash, out);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "Sign in to continue.");
    if (st != KW_OK)
        return kw_service_store_error(st, "reading the session", err);
    int64_t now = kw_service_now(svc);
    if (now >= out->expires_at || now - out->last_seen_at >= svc->session_idle_s) {
        svc->store->ops->session_delete(svc->store, hash, NULL); /* ended, not signed out */
        memset(out, 0, sizeof *out);
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "The session has ended; sign in again.");
    }
    if (now - out->last_seen_at >= TOUCH_EVERY &&
        svc->store->ops->session_touch(svc->store, hash, now) == KW_OK)
        out->last_seen_at = now;
    if (csrf)
        csrf_of(svc, token, len, csrf);
    return KW_OK;
}

bool kw_service_session_csrf_ok(kw_service *svc, const char *token, size_t len,
                                const char *presented)
{
    if (!token || !presented || !token_shape(token, len) || strlen(presented) != 43)
        return false;
    char want[KW_SESSION_TOKEN_BUFSZ];
    csrf_of(svc, token, len, want);
    bool ok = sodium_memcmp(want, presented, 43) == 0;
    sodium_memzero(want, sizeof want);
    return ok;
}

kw_status kw_service_session_delete(kw_service *svc, const char *token, size_t len, kw_error *err)
{
    if (!token || !token_shape(token, len))
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "Sign in to continue.");
    uint8_t hash[KW_HASH_BYTES];
    session_hash(svc, token, len, hash);
    kw_audit au = kw_service_audit(kw_service_now(svc), NULL, "session.delete");
    kw_status st = svc->store->ops->session_delete(svc->store, hash, &au);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "Sign in to continue.");
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "signing out", err);
}
