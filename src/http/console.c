/*
 * console.c - the web console's pages and assets, built into the binary
 * (tools/embed.c). Every page of the console is the same document; its
 * script renders the page the address names, so a reload or a shared link
 * keeps the admin where they were.
 */
#include "http/http_internal.h"

#include <string.h>

#include "http/assets.h"

/* No inline script or style, nothing from elsewhere, never inside a frame. */
static const char csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

static void security_headers(kw_http_req *req)
{
    kw_http_reply_header(req, "Content-Security-Policy", csp);
    kw_http_reply_header(req, "X-Frame-Options", "DENY");
    kw_http_reply_header(req, "Referrer-Policy", "no-referrer");
    kw_http_reply_header(req, "Cross-Origin-Opener-Policy", "same-origin");
}

void kw_http_console_page(kw_http_req *req)
{
    const kw_asset *a = kw_asset_find("index.html");
    if (!a) {
        kw_http_reply_error(req, 404, "There is nothing at this address.");
        return;
    }
    kw_http_reply_static(req, 200, "text/html; charset=utf-8", a->data, a->len);
    security_headers(req);
}

static const char *content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL;
}

void kw_http_console_asset(kw_http_req *req)
{
    /* Only the built-in assets/ files: the name is looked up, never opened. */
    char name[128];
    const char *type = content_type(req->param[0]);
    size_t n = strlen(req->param[0]);
    const kw_asset *a = NULL;
    if (type && n + sizeof "assets/" <= sizeof name) {
        memcpy(name, "assets/", sizeof "assets/" - 1);
        memcpy(name + sizeof "assets/" - 1, req->param[0], n + 1);
        a = kw_asset_find(name);
    }
    if (!a) {
        kw_http_reply_error(req, 404, "There is nothing at this address.");
        return;
    }
    kw_http_reply_static(req, 200, type, a->data, a->len);
    security_headers(req);
}
