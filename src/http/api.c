/*
 * api.c - the handlers of the management API (root keys) and of key
 * verification, including the auth_request endpoint for proxies.
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "core/json.h"
#include "core/keyfmt.h"
#include "core/timefmt.h"

/*
 * The credential of an Authorization header "Bearer <token>" (scheme
 * case-insensitive), with its length; NULL when there is none.
 */
static const char *bearer(const kw_http_req *req, size_t *len)
{
    const char *value = kw_http_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!value || strncasecmp(value, "Bearer ", 7) != 0)
        return NULL;
    value += 7;
    while (*value == ' ')
        value++;
    *len = strlen(value);
    while (*len > 0 && value[*len - 1] == ' ')
        (*len)--;
    return *len ? value : NULL;
}

bool kw_http_authorize(kw_http_req *req)
{
    /* A root key when one is presented; else the console's session, if any. */
    if (!kw_http_header(req, MHD_HTTP_HEADER_AUTHORIZATION) && kw_http_session_cookie(req))
        return kw_http_session_authorize(req);
    size_t len = 0;
    const char *token = bearer(req, &len);
    if (!token) {
        kw_http_reply_error(req, 401,
                            "A root key (Authorization: Bearer <root key>) or a console session "
                            "is required.");
        return false;
    }
    kw_root_key rk;
    kw_error err;
    if (kw_service_root_key_authenticate(req->srv->svc, token, len, &rk, &err) != KW_OK) {
        kw_http_reply_failure(req, &err);
        return false;
    }
    snprintf(req->actor, sizeof req->actor, "root_key:%s", rk.id);
    return true;
}

/* ---- accounts ---- */

void kw_http_account_create(kw_http_req *req)
{
    static const kw_http_field fields[] = {{"name", KW_FIELD_STRING, true}, {NULL, 0, false}};
    json_t *body = kw_http_read_json(req, fields);
    if (!body)
        return;
    kw_account acc;
    kw_error err;
    if (kw_service_account_create(req->srv->svc, req->actor, kw_http_string(body, "name"), &acc,
                                  &err) == KW_OK)
        kw_http_reply_json(req, 201, kw_json_account(&acc));
    else
        kw_http_reply_failure(req, &err);
    json_decref(body);
}

void kw_http_account_get(kw_http_req *req)
{
    kw_account acc;
    kw_error err;
    if (kw_service_account_get(req->srv->svc, req->param[0], &acc, &err) == KW_OK)
        kw_http_reply_json(req, 200, kw_json_account(&acc));
    else
        kw_http_reply_failure(req, &err);
}

/* ---- keys ---- */

void kw_http_key_create(kw_http_req *req)
{
    static const kw_http_field fields[] = {
        {"name", KW_FIELD_STRING, true},
        {"environment", KW_FIELD_STRING, false},
        {"expires_at", KW_FIELD_STRING_OR_NULL, false},
        {"expires_in", KW_FIELD_INTEGER, false},
        {"metadata", KW_FIELD_OBJECT_OR_NULL, false},
        {NULL, 0, false},
    };
    json_t *body = kw_http_read_json(req, fields);
    if (!body)
        return;
    kw_error err;
    /* Absent and null both mean "never", which no time can be mistaken for. */
    int64_t expires_at = KW_TIME_NONE;
    const char *expiry = kw_http_string(body, "expires_at");
    const json_t *expires_in = json_object_get(body, "expires_in");
    char metadata[KW_METADATA_BUFSZ];
    if (expires_in && json_object_get(body, "expires_at")) {
        kw_http_reply_error(req, 400, "Give expires_at or expires_in, not both.");
        goto done;
    }
    if (expiry && kw_time_parse(expiry, "expires_at", &expires_at, &err) != KW_OK) {
        kw_http_reply_failure(req, &err);
        goto done;
    }
    if (expires_in) {
        int64_t now = kw_service_now(req->srv->svc);
        json_int_t s = json_integer_value(expires_in);
        if (s < 1 || s > KW_TIME_MAX - now) {
            kw_http_reply_error(req, 400,
                                "\"expires_in\" must be a whole number of seconds from 1 to "
                                "the end of year 9999.");
            goto done;
        }
        expires_at = now + (int64_t)s;
    }
    if (!kw_http_metadata(req, json_object_get(body, "metadata"), metadata))
        goto done;
    const kw_key_spec spec = {
        .name = kw_http_string(body, "name"),
        .environment = kw_http_string(body, "environment"),
        .expires_at = expires_at,
        .metadata = metadata,
    };
    kw_key key;
    char secret[KW_KEY_BUFSZ];
    if (kw_service_key_create_spec(req->srv->svc, req->actor, req->param[0], &spec, &key, secret,
                                   &err) == KW_OK) {
        json_t *doc = kw_json_key_created(&key, secret);
        sodium_memzero(secret, sizeof secret);
        if (doc)
            kw_http_reply_json(req, 201, doc);
        else
            kw_http_reply_error(req, 500,
                                "The key was created but could not be shown; delete it and "
                                "create another.");
    } else {
        sodium_memzero(secret, sizeof secret);
        kw_http_reply_failure(req, &err);
    }
done:
    json_decref(body);
}

void kw_http_key_list(kw_http_req *req)
{
    kw_key_list list;
    kw_error err;
    if (kw_service_key_list(req->srv->svc, req->param[0], &list, &err) == KW_OK) {
        kw_http_reply_json(req, 200, kw_json_key_list(&list));
        kw_key_list_free(&list);
    } else {
        kw_http_reply_failure(req, &err);
    }
}

void kw_http_key_get(kw_http_req *req)
{
    kw_key key;
    kw_error err;
    if (kw_service_key_get(req->srv->svc, req->param[0], req->param[1], &key, &err) == KW_OK)
        kw_http_reply_json(req, 200, kw_json_key(&key));
    else
        kw_http_reply_failure(req, &err);
}

void kw_http_key_delete(kw_http_req *req)
{
    kw_error err;
    if (kw_service_key_delete(req->srv->svc, req->actor, req->param[0], req->param[1], &err) ==
        KW_OK)
        kw_http_reply_empty(req, 204);
    else
        kw_http_reply_failure(req, &err);
}

/* ---- verification ---- */

/*
 * The hot path: the answer is rendered without building a JSON tree, into
 * the request itself, which outlives the response; an answer without a key
 * is always the same, and made once (reply.c).
 */
static void reply_verified(kw_http_req *req, const kw_verify_result *result)
{
    if (result->code != KW_VERIFY_VALID && kw_http_reply_verify_shared(req, result->code))
        return;
    size_t len = kw_json_verify_text(result, req->reply_text, sizeof req->reply_text);
    if (len) {
        kw_http_reply_static(req, 200, "application/json", req->reply_text, len);
        return;
    }
    char text[4096];
    len = kw_json_verify_text(result, text, sizeof text);
    if (len)
        kw_http_reply_copy(req, 200, "application/json", text, len);
    else
        kw_http_reply_json(req, 200, kw_json_verify_result(result));
}

void kw_http_key_verify(kw_http_req *req)
{
    static const kw_http_field fields[] = {
        {"key", KW_FIELD_STRING, true},
        {"environment", KW_FIELD_STRING_OR_NULL, false},
        {NULL, 0, false},
    };
    kw_http_value values[2];
    json_t *doc;
    if (!kw_http_read_values(req, fields, values, &doc))
        return;
    kw_verify_result result;
    kw_error err;
    if (kw_service_key_verify(req->srv->svc, values[0].value, values[0].len, values[1].value,
                              &result, &err) == KW_OK) {
        kw_http_metrics_verify(req->srv->metrics, result.code);
        reply_verified(req, &result);
    } else {
        kw_http_reply_failure(req, &err);
    }
    json_decref(doc);
}

void kw_http_auth_request(kw_http_req *req)
{
    const char *key = kw_http_header(req, "API-Key");
    size_t len = key ? strlen(key) : 0;
    if (!key)
        key = bearer(req, &len);
    if (!key) {
        kw_http_reply_error(req, 401, "An API key is required: API-Key: <key>.");
        return;
    }
    kw_verify_result result;
    kw_error err;
    if (kw_service_key_verify(req->srv->svc, key, len,
                              kw_http_header(req, "X-Keyward-Environment-Required"), &result,
                              &err) != KW_OK) {
        kw_http_reply_failure(req, &err);
        return;
    }
    kw_http_metrics_verify(req->srv->metrics, result.code);
    if (result.code == KW_VERIFY_VALID) {
        kw_http_reply_empty(req, 204);
        kw_http_reply_header(req, "X-Keyward-Account-Id", result.key.account_id);
        kw_http_reply_header(req, "X-Keyward-Key-Id", result.key.id);
        kw_http_reply_header(req, "X-Keyward-Environment", result.key.environment);
        if (result.key.metadata[0]) {
            /* Base64url: a header value the proxy passes on as it is (docs/nginx.md). */
            char encoded[sodium_base64_ENCODED_LEN(KW_METADATA_MAX,
                                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
            sodium_bin2base64(encoded, sizeof encoded, (const unsigned char *)result.key.metadata,
                              strlen(result.key.metadata),
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING);
            kw_http_reply_header(req, "X-Keyward-Metadata", encoded);
        }
    } else {
        /* A disabled key is refused like any other that is not valid; its code says why. */
        kw_http_reply_error(req, 401, "The API key is not valid.");
    }
    kw_http_reply_header(req, "X-Keyward-Code", kw_verify_code_name(result.code));
}
