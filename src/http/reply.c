/*
 * reply.c - building responses. This is the one place where a kw_status
 * becomes an HTTP status and where an HTTP status gets its error code.
 */
#include "http/http_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

static const struct {
    unsigned status;
    const char *code;
} error_codes[] = {
    {400, "invalid_request"},
    {401, "unauthorized"},
    {403, "forbidden"},
    {404, "not_found"},
    {405, "method_not_allowed"},
    {409, "key_limit_reached"},
    {413, "payload_too_large"},
    {414, "uri_too_long"},
    {415, "unsupported_media_type"},
    {429, "rate_limited"},
    {431, "headers_too_large"},
    {500, "internal"},
    {503, "unavailable"},
    {408, "request_timeout"},
    {411, "length_required"},
    {501, "not_implemented"},
    {505, "http_version_not_supported"},
};

const char *kw_http_error_code(unsigned status)
{
    for (size_t i = 0; i < sizeof error_codes / sizeof error_codes[0]; i++)
        if (error_codes[i].status == status)
            return error_codes[i].code;
    return "internal";
}

static unsigned http_status(kw_status st)
{
    switch (st) {
    case KW_OK:
        return 200;
    case KW_ERR_INVALID:
        return 400;
    case KW_ERR_NOT_FOUND:
        return 404;
    case KW_ERR_LIMIT:
    case KW_ERR_CONFLICT:
        return 409;
    case KW_ERR_UNAUTHORIZED:
        return 401;
    case KW_ERR_FORBIDDEN:
        return 403;
    case KW_ERR_UNAVAILABLE:
        return 503;
    case KW_ERR_INTERNAL:
        break;
    }
    return 500;
}

/* Makes resp the reply; on NULL (out of memory) the server answers 500 itself. */
static void set_reply(kw_http_req *req, unsigned status, struct MHD_Response *resp,
                      const char *content_type)
{
    if (req->response && !req->response_shared)
        MHD_destroy_response(req->response);
    req->response_shared = false;
    req->response = resp;
    req->status = status;
    if (resp && content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
}

static void reply_text(kw_http_req *req, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    struct MHD_Response *resp =
        text ? MHD_create_response_from_buffer_with_free_callback(strlen(text), text, kw_json_free)
             : NULL;
    if (text && !resp)
        kw_json_free(text);
    set_reply(req, status, resp, "application/json");
}

void kw_http_reply_json(kw_http_req *req, unsigned status, json_t *doc)
{
    reply_text(req, status, doc);
}

void kw_http_reply_error(kw_http_req *req, unsigned status, const char *message)
{
    json_t *doc = json_pack("{s:{s:s, s:s}}", "error", "code", kw_http_error_code(status),
                            "message", message);
    reply_text(req, status, doc);
}

void kw_http_reply_failure(kw_http_req *req, const kw_error *err)
{
    unsigned status = http_status(err->status);
    const char *code =
        err->status == KW_ERR_CONFLICT ? kw_status_code(err->status) : kw_http_error_code(status);
    const char *message = err->message[0] ? err->message : kw_status_text(err->status);
    json_t *doc = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message", message);
    reply_text(req, status, doc);
}

void kw_http_reply_empty(kw_http_req *req, unsigned status)
{
    set_reply(req, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT), NULL);
}

void kw_http_reply_static(kw_http_req *req, unsigned status, const char *content_type,
                          const void *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
    set_reply(req, status, resp, content_type);
}

void kw_http_reply_copy(kw_http_req *req, unsigned status, const char *content_type,
                        const void *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    set_reply(req, status, resp, content_type);
}

void kw_http_reply_owned(kw_http_req *req, unsigned status, const char *content_type, char *body,
                         size_t len)
{
    struct MHD_Response *resp =
        body ? MHD_create_response_from_buffer_with_free_callback(len, body, free) : NULL;
    if (body && !resp)
        free(body);
    set_reply(req, status, resp, content_type);
}

void kw_http_reply_header(kw_http_req *req, const char *name, const char *value)
{
    if (req->response_shared)
        kw_http_reply_unshare(req);
    if (req->response)
        MHD_add_response_header(req->response, name, value);
}

void kw_http_common_headers(struct MHD_Response *resp)
{
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
}

/* ---- shared answers ---- */

/*
 * libmicrohttpd counts the references to a response, so one response can
 * be queued by any number of requests on any thread; it is freed when the
 * server drops its own reference, after libmicrohttpd has stopped. That
 * saves the allocations of a response and of its headers, which are most
 * of what answering costs keyward once the verification is done (and
 * answering keys that are not valid is what a client guessing keys costs).
 */
bool kw_http_shared_replies_new(kw_http_server *srv)
{
    for (unsigned c = 0; c < KW_HTTP_VERIFY_CODES; c++) {
        if (c == KW_VERIFY_VALID)
            continue;
        kw_verify_result r;
        memset(&r, 0, sizeof r);
        r.code = (kw_verify_code)c;
        size_t len = kw_json_verify_text(&r, srv->verify_text[c], sizeof srv->verify_text[c]);
        struct MHD_Response *resp =
            len ? MHD_create_response_from_buffer(len, srv->verify_text[c], MHD_RESPMEM_PERSISTENT)
                : NULL;
        if (!resp || MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                             "application/json") != MHD_YES) {
            if (resp)
                MHD_destroy_response(resp);
            return false;
        }
        kw_http_common_headers(resp);
        srv->verify_shared[c] = resp;
    }
    return true;
}

void kw_http_shared_replies_free(kw_http_server *srv)
{
    for (unsigned c = 0; c < KW_HTTP_VERIFY_CODES; c++) {
        if (srv->verify_shared[c])
            MHD_destroy_response(srv->verify_shared[c]);
        srv->verify_shared[c] = NULL;
    }
}

bool kw_http_reply_verify_shared(kw_http_req *req, kw_verify_code code)
{
    if ((unsigned)code >= KW_HTTP_VERIFY_CODES || !req->srv->verify_shared[code])
        return false;
    set_reply(req, 200, NULL, NULL);
    req->response = req->srv->verify_shared[code];
    req->response_shared = true;
    return true;
}

void kw_http_reply_unshare(kw_http_req *req)
{
    const kw_http_server *srv = req->srv;
    for (unsigned c = 0; c < KW_HTTP_VERIFY_CODES; c++)
        if (req->response_shared && req->response == srv->verify_shared[c])
            kw_http_reply_static(req, req->status, "application/json", srv->verify_text[c],
                                 strlen(srv->verify_text[c]));
}
