/*
 * ops.c - what operators and tools read: health, metrics, the OpenAPI
 * document, and the page at "/".
 */
#include "http/http_internal.h"

#include <string.h>

#include "http/assets.h"

const kw_asset *kw_asset_find(const char *name)
{
    for (size_t i = 0; i < kw_asset_count; i++)
        if (strcmp(kw_assets[i].name, name) == 0)
            return &kw_assets[i];
    return NULL;
}

void kw_http_healthz(kw_http_req *req)
{
    static const char ok[] = "{\"status\":\"ok\"}";
    if (kw_service_ping(req->srv->svc) == KW_OK)
        kw_http_reply_static(req, 200, "application/json", ok, sizeof ok - 1);
    else
        kw_http_reply_error(req, 503, "The store is unavailable.");
}

void kw_http_metrics_page(kw_http_req *req)
{
    int64_t active = -1;
    kw_error err;
    if (kw_service_key_count_active(req->srv->svc, &active, &err) != KW_OK)
        active = -1;
    kw_index_stats index;
    kw_service_index_stats(req->srv->svc, &index);
    size_t len = 0;
    char *text = kw_http_metrics_render(req->srv->metrics, active, &index, &len);
    if (text)
        kw_http_reply_owned(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    else
        kw_http_reply_error(req, 500, "Out of memory.");
}

static void reply_asset(kw_http_req *req, const char *name, const char *content_type)
{
    const kw_asset *a = kw_asset_find(name);
    if (a)
        kw_http_reply_static(req, 200, content_type, a->data, a->len);
    else
        kw_http_reply_error(req, 404, "Not found.");
}

void kw_http_openapi(kw_http_req *req)
{
    reply_asset(req, "openapi.json", "application/json");
}
