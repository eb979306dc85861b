/*
 * reply.c - building responses. A kw_status becomes an HTTP status and an
 * error code through the table of core/status.c; the statuses of HTTP
 * itself that no kw_status stands for (405, 413, ...) get their codes here.
 */
#include "http/http_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

static const struct {
    unsigned status;
    const char *code;
} http_only_codes[] = {
    {405, "method_not_allowed"}, {408, "request_timeout"},
    {411, "length_required"},    {413, "payload_too_large"},
    {414, "uri_too_long"},       {415, "unsupported_media_type"},
    {429, "rate_limited"},       {431, "headers_too_large"},
    {501, "not_implemented"},    {505, "http_version_not_supported"},
};

const char *kw_http_error_code(unsigned status)
{
    /* The first status of the table with this HTTP status: 409 is
     * KW_ERR_LIMIT's key_limit_reached (a conflict replies through
     * kw_http_reply_failure, which knows its status). */
    for (int st = KW_OK + 1; st < KW_STATUS_COUNT; st++)
        if (kw_status_http((kw_status)st) == status)
            return kw_status_code((kw_status)st);
    for (size_t i = 0; i < sizeof http_only_codes / sizeof http_only_codes[0]; i++)
        if (http_only_codes[i].status == status)
            return http_only_codes[i].code;
    return kw_status_code(KW_ERR_INTERNAL);
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
    /* A failure reported as KW_OK is a bug: it is answered as one. */
    kw_status st = err->status == KW_OK ? KW_ERR_INTERNAL : err->status;
    const kw_status_row *row = kw_status_info(st);
    const char *message = err->message[0] ? err->message : row->text;
    json_t *doc = json_pack("{s:{s:s, s:s}}", "error", "code", row->code, "message", message);
    reply_text(req, row->http_status, doc);
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
