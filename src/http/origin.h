/*
 * origin.h - is a request's Origin the console's own?
 *
 * An origin is a scheme, a host and a port (RFC 6454). Both sides are
 * parsed and compared part by part: the scheme and the host without regard
 * to case, the port as a number, where an absent port is the scheme's
 * default (80 for http, 443 for https). Anything else in an Origin header
 * (a path, a trailing slash, user info, a query, "null") makes it match
 * nothing, so no prefix or suffix of a string can pass for the console.
 */
#ifndef KW_ORIGIN_H
#define KW_ORIGIN_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/origin.h is in the http layer, which core, store and service must not include"
#endif

#include <stdbool.h>

/*
 * True when origin, an Origin header's value, is the console's: the origin
 * of public_url when it is set (not NULL or ""), else the Host header's host
 * and port with origin's own scheme (the server cannot tell which scheme a
 * proxy in front of it was reached by). False when any of them is NULL or
 * malformed.
 */
bool kw_origin_matches(const char *origin, const char *public_url, const char *host);

/* True when url is http:// or https://, a host and maybe a port and a path: a usable public_url. */
bool kw_origin_url_ok(const char *url);

#endif
