/*
 * origin.c - comparing origins part by part (see origin.h).
 */
#include "http/origin.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

#define HOST_MAX 255

typedef struct {
    unsigned port;    /* 0: absent, the scheme's default */
    bool https;       /* the scheme, when there is one */
    size_t host_len;  /* bytes at host */
    const char *host; /* not NUL-terminated; "[...]" for IPv6 */
} origin;

/* A host as an origin has it: a name or IPv4 address, or an IPv6 literal in brackets. */
static size_t host_length(const char *s)
{
    if (s[0] == '[') {
        size_t n = 1 + strspn(s + 1, "0123456789abcdefABCDEF:.");
        return s[n] == ']' && n > 2 ? n + 1 : 0;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");
}

/* ":PORT" (1 to 65535, no sign, no leading zero) at s; the number of bytes read, 0 if none. */
static size_t port_length(const char *s, unsigned *port)
{
    if (s[0] != ':')
        return 0;
    size_t n = strspn(s + 1, "0123456789");
    if (n == 0 || n > 5 || s[1] == '0')
        return 0;
    unsigned v = 0;
    for (size_t i = 1; i <= n; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    if (v > 65535)
        return 0;
    *port = v;
    return n + 1;
}

/*
 * "HOST[:PORT]" at s into o. Returns where it ended (at a '/' when
 * path_ok, else at the NUL), or NULL when malformed.
 */
static const char *parse_authority(const char *s, origin *o, bool path_ok)
{
    o->host = s;
    o->host_len = host_length(s);
    o->port = 0;
    if (o->host_len == 0 || o->host_len > HOST_MAX)
        return NULL;
    s += o->host_len;
    if (*s == ':') {
        size_t n = port_length(s, &o->port);
        if (n == 0)
            return NULL;
        s += n;
    }
    if (*s == '\0' || (path_ok && *s == '/'))
        return s;
    return NULL;
}

/* "SCHEME://HOST[:PORT]" (and a path, when path_ok) into o. */
static bool parse_origin(const char *s, origin *o, bool path_ok)
{
    if (strncasecmp(s, "http://", 7) == 0) {
        o->https = false;
        s += 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        o->https = true;
        s += 8;
    } else {
        return false;
    }
    return parse_authority(s, o, path_ok) != NULL;
}

static unsigned effective_port(const origin *o, bool https)
{
    return o->port ? o->port : https ? 443 : 80;
}

static bool same_host(const origin *a, const origin *b)
{
    return a->host_len == b->host_len && strncasecmp(a->host, b->host, a->host_len) == 0;
}

bool kw_origin_matches(const char *origin_text, const char *public_url, const char *host)
{
    origin o, want;
    if (!origin_text || !parse_origin(origin_text, &o, false))
        return false;
    if (public_url && *public_url) {
        if (!parse_origin(public_url, &want, true))
            return false;
    } else {
        /* The Host header: the host and port the request was sent to. */
        if (!host || !parse_authority(host, &want, false))
            return false;
        want.https = o.https;
    }
    return o.https == want.https && same_host(&o, &want) &&
           effective_port(&o, o.https) == effective_port(&want, want.https);
}

bool kw_origin_url_ok(const char *url)
{
    origin o;
    return url && parse_origin(url, &o, true);
}
