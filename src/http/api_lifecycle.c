/*
 * api_lifecycle.c - the key lifecycle of the management API: roll, update
 * (rename, enable or disable, expiry, metadata), revoke all, and the
 * account's audit log, paged. Authorisation is the server's (root key or
 * console session), as for the other key routes.
 */
#include "http/http_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/json.h"
#include "core/timefmt.h"
#include "core/validate.h"

bool kw_http_metadata(kw_http_req *req, const json_t *value, char out[KW_METADATA_BUFSZ])
{
    out[0] = '\0';
    if (!value || json_is_null(value))
        return true;
    /* The member count is checked before the text is made: a huge object is refused cheaply. */
    if (json_object_size(value) > KW_METADATA_MEMBERS) {
        char message[96];
        snprintf(message, sizeof message, "\"metadata\" has more than %d members.",
                 KW_METADATA_MEMBERS);
        kw_http_reply_error(req, 400, message);
        return false;
    }
    char *text = json_dumps(value, JSON_COMPACT);
    if (!text) {
        kw_http_reply_error(req, 500, "Out of memory.");
        return false;
    }
    kw_error err;
    kw_status st = kw_validate_metadata(text, out, &err);
    kw_json_free(text);
    if (st != KW_OK) {
        out[0] = '\0';
        kw_http_reply_failure(req, &err);
        return false;
    }
    return true;
}

bool kw_http_expiry(kw_http_req *req, const char *text, int64_t *out)
{
    kw_error err;
    if (kw_time_parse(text, "expires_at", out, &err) != KW_OK) {
        kw_http_reply_failure(req, &err);
        return false;
    }
    if (*out <= kw_service_now(req->srv->svc)) {
        kw_http_reply_error(req, 400, "expires_at must be in the future.");
        return false;
    }
    return true;
}

/*
 * Checks the path's ids (the account's, and the key's when the route has
 * one) before the body: a request with a bad id is told about the id.
 */
static bool path_ids_ok(kw_http_req *req, bool has_key)
{
    kw_error err;
    if (kw_validate_id(req->param[0], "acc", "account id", &err) != KW_OK ||
        (has_key && kw_validate_id(req->param[1], "key", "key id", &err) != KW_OK)) {
        kw_http_reply_failure(req, &err);
        return false;
    }
    return true;
}

/* ---- PATCH /v1/accounts/{account_id}/keys/{key_id} ---- */

void kw_http_key_update(kw_http_req *req)
{
    static const kw_http_field fields[] = {
        {"name", KW_FIELD_STRING, false},
        {"enabled", KW_FIELD_BOOLEAN, false},
        {"expires_at", KW_FIELD_STRING_OR_NULL, false},
        {"metadata", KW_FIELD_OBJECT_OR_NULL, false},
        {NULL, 0, false},
    };
    if (!path_ids_ok(req, true))
        return;
    json_t *body = kw_http_read_json(req, fields);
    if (!body)
        return;
    kw_key_patch patch;
    memset(&patch, 0, sizeof patch);
    char metadata[KW_METADATA_BUFSZ] = "";
    const json_t *v;
    if (json_object_size(body) == 0) {
        kw_http_reply_error(req, 400,
                            "The request body must change at least one of name, enabled, "
                            "expires_at and metadata.");
        goto done;
    }
    if ((v = json_object_get(body, "name")) != NULL) {
        patch.has_name = true;
        patch.name = json_string_value(v);
    }
    if ((v = json_object_get(body, "enabled")) != NULL) {
        patch.has_enabled = true;
        patch.enabled = json_is_true(v);
    }
    if ((v = json_object_get(body, "expires_at")) != NULL) {
        patch.has_expires_at = true;
        patch.expires_at = KW_TIME_NONE; /* null: never expires */
        if (json_is_string(v) && !kw_http_expiry(req, json_string_value(v), &patch.expires_at))
            goto done;
    }
    if ((v = json_object_get(body, "metadata")) != NULL) {
        if (!kw_http_metadata(req, v, metadata))
            goto done;
        patch.has_metadata = true;
        patch.metadata = metadata; /* "": cleared */
    }
    kw_key key;
    kw_error err;
    if (kw_service_key_update(req->srv->svc, req->actor, req->param[0], req->param[1], &patch, &key,
                              &err) == KW_OK)
        kw_http_reply_json(req, 200, kw_json_key(&key));
    else
        kw_http_reply_failure(req, &err);
done:
    json_decref(body);
}

/* ---- POST /v1/accounts/{account_id}/keys/{key_id}/roll ---- */

void kw_http_key_roll(kw_http_req *req)
{
    static const kw_http_field fields[] = {
        {"grace_seconds", KW_FIELD_INTEGER, false},
        {NULL, 0, false},
    };
    if (!path_ids_ok(req, true))
        return;
    json_t *body = kw_http_read_json(req, fields);
    if (!body)
        return;
    json_int_t grace = KW_ROLL_GRACE_DEFAULT_S;
    const json_t *v = json_object_get(body, "grace_seconds");
    if (v)
        grace = json_integer_value(v);
    json_decref(body);
    if (grace < 0 || grace > KW_ROLL_GRACE_MAX_S) {
        char message[96];
        snprintf(message, sizeof message, "\"grace_seconds\" must be an integer from 0 to %d.",
                 KW_ROLL_GRACE_MAX_S);
        kw_http_reply_error(req, 400, message);
        return;
    }
    kw_key key, previous;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    if (kw_service_key_roll(req->srv->svc, req->actor, req->param[0], req->param[1], (int64_t)grace,
                            &key, secret, &previous, &err) != KW_OK) {
        sodium_memzero(secret, sizeof secret);
        kw_http_reply_failure(req, &err);
        return;
    }
    json_t *doc = kw_json_key_created(&key, secret);
    sodium_memzero(secret, sizeof secret);
    if (doc && json_object_set_new(doc, "previous", kw_json_key(&previous)) != 0) {
        json_decref(doc);
        doc = NULL;
    }
    if (doc)
        kw_http_reply_json(req, 201, doc);
    else
        kw_http_reply_error(req, 500,
                            "The key was rolled but the new key could not be shown; delete the "
                            "new key and create another before the old one expires.");
}

/* ---- POST /v1/accounts/{account_id}/keys/revoke ---- */

void kw_http_key_revoke_all(kw_http_req *req)
{
    static const kw_http_field fields[] = {
        {"environment", KW_FIELD_STRING_OR_NULL, false},
        {NULL, 0, false},
    };
    if (!path_ids_ok(req, false))
        return;
    json_t *body = kw_http_read_json(req, fields);
    if (!body)
        return;
    const char *env = kw_http_string(body, "environment");
    kw_error err;
    int revoked = 0;
    bool ok = (!env || kw_validate_environment(env, &err) == KW_OK) &&
              kw_service_key_revoke_all(req->srv->svc, req->actor, req->param[0], env, &revoked,
                                        &err) == KW_OK;
    if (ok)
        kw_http_reply_json(req, 200, json_pack("{s:i}", "revoked", revoked));
    else
        kw_http_reply_failure(req, &err);
    json_decref(body);
}

/* ---- GET /v1/accounts/{account_id}/audit ---- */

/* The JSON of one entry as this route shows it. */
static json_t *audit_entry(const kw_audit_entry *e)
{
    json_t *doc = kw_json_audit_entry(e);
    /* The page is one account's: its id is in the path already; seq is the cursor's business. */
    if (doc) {
        json_object_del(doc, "seq");
        json_object_del(doc, "account_id");
    }
    return doc;
}

void kw_http_audit_page(kw_http_req *req)
{
    static const char *const allowed[] = {"limit", "cursor", NULL};
    bool bad;
    const char *limit_text = kw_http_query(req, "limit", allowed, &bad);
    if (bad)
        return;
    const char *cursor = kw_http_query(req, "cursor", allowed, &bad);
    if (bad)
        return;
    long limit = 50;
    if (limit_text) {
        char *end = NULL;
        errno = 0;
        limit = strtol(limit_text, &end, 10);
        if (errno || end == limit_text || *end || limit_text[0] == '+' || limit_text[0] == '-' ||
            limit < 1 || limit > KW_AUDIT_PAGE_MAX) {
            char message[64];
            snprintf(message, sizeof message, "limit must be an integer from 1 to %d.",
                     KW_AUDIT_PAGE_MAX);
            kw_http_reply_error(req, 400, message);
            return;
        }
    }
    int64_t before = 0;
    if (cursor && !kw_json_audit_cursor_parse(req->param[0], cursor, &before)) {
        kw_http_reply_error(req, 400,
                            "cursor is not a cursor of this account's audit log; use the "
                            "next_cursor of a previous page.");
        return;
    }
    kw_audit_list list = {0};
    int64_t next = 0;
    kw_error err;
    if (kw_service_audit_page(req->srv->svc, req->param[0], before, (size_t)limit, &list, &next,
                              &err) != KW_OK) {
        kw_http_reply_failure(req, &err);
        return;
    }
    json_t *entries = json_array();
    for (size_t i = 0; entries && i < list.count; i++) {
        if (json_array_append_new(entries, audit_entry(&list.items[i])) != 0) {
            json_decref(entries);
            entries = NULL;
        }
    }
    kw_audit_list_free(&list);
    json_t *next_cursor = json_null();
    if (next > 0) {
        char text[KW_AUDIT_CURSOR_BUFSZ];
        kw_json_audit_cursor(req->param[0], next, text);
        next_cursor = json_string(text);
    }
    if (!entries) {
        json_decref(next_cursor);
        kw_http_reply_error(req, 500, "Out of memory.");
        return;
    }
    kw_http_reply_json(req, 200,
                       json_pack("{s:o, s:o}", "entries", entries, "next_cursor", next_cursor));
}
