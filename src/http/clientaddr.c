/*
 * clientaddr.c - the client's address behind trusted proxies (see
 * clientaddr.h), and kw_http_client_address, which the access log and the
 * sign-in limits use.
 *
 * A list header is split into its elements left to right (only to find
 * where quoted strings end), keeping the last MAX_HOPS; then the elements
 * are read from the right. A client can add any number of entries of its
 * own on the left: they are never read, and never make the header
 * unreadable, unless the proxies themselves are more than MAX_HOPS deep.
 */
#include "http/clientaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http_internal.h"

#define MAX_HOPS 32 /* proxies read from the right, at most */
#define NODE_MAX 64 /* a Forwarded node, unquoted: "[IPv6]:port" fits */

typedef struct {
    kw_ip net;
    unsigned bits; /* of the 128 */
} range;

struct kw_proxies {
    size_t count;
    range ranges[];
};

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ---- addresses ---- */

bool kw_ip_parse(const char *s, size_t len, kw_ip *out)
{
    char text[KW_IP_TEXT_BUFSZ];
    if (len == 0 || len >= sizeof text || memchr(s, '\0', len))
        return false;
    memcpy(text, s, len);
    text[len] = '\0';
    if (memchr(text, ':', len))
        return inet_pton(AF_INET6, text, out->b) == 1;
    memcpy(out->b, v4_mapped, sizeof v4_mapped);
    return inet_pton(AF_INET, text, out->b + 12) == 1;
}

bool kw_ip_from_sockaddr(const struct sockaddr *sa, kw_ip *out)
{
    if (sa->sa_family == AF_INET) {
        memcpy(out->b, v4_mapped, sizeof v4_mapped);
        memcpy(out->b + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->b, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

void kw_ip_format(const kw_ip *ip, char out[KW_IP_TEXT_BUFSZ])
{
    bool v4 = memcmp(ip->b, v4_mapped, sizeof v4_mapped) == 0;
    if (!inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? ip->b + 12 : ip->b, out, KW_IP_TEXT_BUFSZ))
        snprintf(out, KW_IP_TEXT_BUFSZ, "unknown");
}

/* ---- the trusted ranges ---- */

static void mask(kw_ip *ip, unsigned bits)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        ip->b[i] &= (uint8_t)(0xff00u >> keep);
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* One entry, "ADDRESS" or "ADDRESS/BITS", into *r. */
static bool parse_range(const char *s, size_t len, range *r)
{
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    if (!kw_ip_parse(s, alen, &r->net))
        return false;
    bool v4 = !memchr(s, ':', alen);
    unsigned max = v4 ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        const char *d = slash + 1;
        size_t dlen = len - alen - 1;
        if (dlen == 0 || dlen > 3 || (dlen > 1 && d[0] == '0'))
            return false;
        bits = 0;
        for (size_t i = 0; i < dlen; i++) {
            if (d[i] < '0' || d[i] > '9')
                return false;
            bits = bits * 10 + (unsigned)(d[i] - '0');
        }
        if (bits > max)
            return false;
    }
    r->bits = v4 ? 96 + bits : bits;
    mask(&r->net, r->bits);
    return true;
}

kw_status kw_proxies_parse(const char *list, kw_proxies **out, kw_error *err)
{
    *out = NULL;
    const char *p = list ? list : "";
    while (is_space(*p))
        p++;
    if (!*p)
        return KW_OK;
    size_t n = 1;
    for (const char *c = p; *c; c++)
        n += *c == ',';
    kw_proxies *px = calloc(1, sizeof *px + n * sizeof px->ranges[0]);
    if (!px)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    for (size_t entry = 1;; entry++) {
        size_t len = strcspn(p, ",");
        const char *start = p, *end = p + len;
        while (start < end && is_space(*start))
            start++;
        while (end > start && is_space(end[-1]))
            end--;
        if (start == end || !parse_range(start, (size_t)(end - start), &px->ranges[px->count])) {
            kw_proxies_free(px);
            return kw_error_set(err, KW_ERR_INVALID,
                                "trusted_proxies: entry %zu is not an IP address or a CIDR range "
                                "(like 10.0.0.0/8 or fd00::/8).",
                                entry);
        }
        px->count++;
        if (!p[len])
            break;
        p += len + 1;
    }
    *out = px;
    return KW_OK;
}

void kw_proxies_free(kw_proxies *proxies)
{
    free(proxies);
}

bool kw_proxies_trust(const kw_proxies *proxies, const kw_ip *ip)
{
    if (!proxies)
        return false;
    for (size_t i = 0; i < proxies->count; i++) {
        kw_ip masked = *ip;
        mask(&masked, proxies->ranges[i].bits);
        if (memcmp(masked.b, proxies->ranges[i].net.b, sizeof masked.b) == 0)
            return true;
    }
    return false;
}

/* ---- the headers ---- */

/* The last MAX_HOPS non-empty elements of a list header, trimmed. */
typedef struct {
    const char *at[MAX_HOPS];
    size_t len[MAX_HOPS];
    size_t total; /* elements in the whole list; element i is at [i % MAX_HOPS] */
} hops;

/*
 * Splits list at its commas (not those inside quoted strings when quoted is
 * set). False when a quoted string does not end.
 */
static bool split(const char *list, bool quoted, hops *h)
{
    h->total = 0;
    const char *p = list;
    for (;;) {
        const char *start = p;
        bool in_quotes = false;
        while (*p && (in_quotes || *p != ',')) {
            if (quoted && *p == '"')
                in_quotes = !in_quotes;
            else if (in_quotes && *p == '\\' && p[1])
                p++;
            p++;
        }
        if (in_quotes)
            return false;
        const char *end = p;
        while (start < end && is_space(*start))
            start++;
        while (end > start && is_space(end[-1]))
            end--;
        if (end > start) {
            h->at[h->total % MAX_HOPS] = start;
            h->len[h->total % MAX_HOPS] = (size_t)(end - start);
            h->total++;
        }
        if (!*p)
            return true;
        p++;
    }
}

/* RFC 7230 tchar: what a token is made of. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 7239 obfnode / obfport characters after the "_". */
static bool obfuscated(const char *s, size_t n)
{
    if (n < 2 || s[0] != '_')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

static bool is_port(const char *s, size_t n)
{
    if (obfuscated(s, n))
        return true;
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
}

typedef enum {
    NODE_BAD,    /* not a node */
    NODE_IP,     /* an address, maybe with a port */
    NODE_HIDDEN, /* "unknown" or an obfuscated name: a hop that names no address */
} node_kind;

/*
 * One hop: IPv4 or "[IPv6]", each with an optional ":port", "unknown" or an
 * obfuscated "_name". bare_ipv6 also allows an IPv6 address without
 * brackets (and then without a port), as X-Forwarded-For writes it.
 */
static node_kind parse_node(const char *s, size_t n, bool bare_ipv6, kw_ip *ip)
{
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return NODE_BAD;
        size_t alen = (size_t)(close - s - 1), rest = n - alen - 2;
        if (rest > 0 && !(close[1] == ':' && is_port(close + 2, rest - 1)))
            return NODE_BAD;
        if (!memchr(s + 1, ':', alen))
            return NODE_BAD; /* "[192.0.2.1]" */
        return kw_ip_parse(s + 1, alen, ip) ? NODE_IP : NODE_BAD;
    }
    const char *colon = memchr(s, ':', n);
    if (colon && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)))
        return bare_ipv6 && kw_ip_parse(s, n, ip) ? NODE_IP : NODE_BAD;
    size_t hlen = colon ? (size_t)(colon - s) : n;
    if (colon && !is_port(colon + 1, n - hlen - 1))
        return NODE_BAD;
    if ((hlen == 7 && strncasecmp(s, "unknown", 7) == 0) || obfuscated(s, hlen))
        return NODE_HIDDEN;
    if (hlen == 0 || strspn(s, "0123456789.") < hlen)
        return NODE_BAD;
    return kw_ip_parse(s, hlen, ip) ? NODE_IP : NODE_BAD;
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && is_space(*p))
        p++;
    return p;
}

/*
 * The for= node of one Forwarded element ("for=192.0.2.1;proto=https"),
 * unquoted into node. False when the element is malformed, or has no or
 * two for= parameters.
 */
static bool forwarded_for(const char *s, size_t n, char node[NODE_MAX], size_t *node_len)
{
    const char *p = s, *end = s + n;
    bool found = false;
    while ((p = skip_space(p, end)) < end) {
        if (*p == ';') { /* an empty pair */
            p++;
            continue;
        }
        const char *name = p;
        while (p < end && is_tchar(*p))
            p++;
        bool is_for = p - name == 3 && strncasecmp(name, "for", 3) == 0;
        if (p == name || p >= end || *p != '=' || (is_for && found))
            return false;
        p++;
        size_t len = 0;
        if (p < end && *p == '"') {
            for (p++; p < end && *p != '"'; p++) {
                if (*p == '\\' && ++p >= end)
                    return false;
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                    return false;
                if (is_for && len + 1 >= NODE_MAX)
                    return false;
                if (is_for)
                    node[len++] = *p;
            }
            if (p >= end)
                return false;
            p++;
        } else {
            const char *value = p;
            while (p < end && is_tchar(*p))
                p++;
            len = (size_t)(p - value);
            if (len == 0 || (is_for && len >= NODE_MAX))
                return false;
            if (is_for)
                memcpy(node, value, len);
        }
        if (is_for) {
            found = true;
            *node_len = len;
        }
        p = skip_space(p, end);
        if (p < end && *p != ';')
            return false;
        if (p < end)
            p++;
    }
    return found;
}

/*
 * The client a list header names, read from the right: true with *client,
 * or false when the header cannot tell (then *client is meaningless).
 */
static bool walk(const kw_proxies *proxies, const char *list, bool forwarded, kw_ip *client)
{
    hops h;
    if (!split(list, forwarded, &h) || h.total == 0)
        return false;
    size_t first = h.total > MAX_HOPS ? h.total - MAX_HOPS : 0;
    for (size_t i = h.total; i-- > first;) {
        const char *s = h.at[i % MAX_HOPS];
        size_t n = h.len[i % MAX_HOPS];
        node_kind kind;
        if (forwarded) {
            char node[NODE_MAX];
            size_t len = 0;
            kind =
                forwarded_for(s, n, node, &len) ? parse_node(node, len, false, client) : NODE_BAD;
        } else {
            kind = parse_node(s, n, true, client);
        }
        if (kind != NODE_IP)
            return false;
        if (!kw_proxies_trust(proxies, client))
            return true;
    }
    /* Every hop is a trusted proxy: the leftmost one is the client, if we saw it. */
    return first == 0;
}

kw_ip kw_client_ip(const kw_proxies *proxies, const kw_ip *peer, const char *xff,
                   const char *forwarded)
{
    if ((!xff && !forwarded) || !kw_proxies_trust(proxies, peer))
        return *peer;
    kw_ip by_xff, by_forwarded;
    bool xff_ok = xff && walk(proxies, xff, false, &by_xff);
    bool forwarded_ok = forwarded && walk(proxies, forwarded, true, &by_forwarded);
    if (xff && forwarded) /* a proxy may pass one of them on from the client unchanged */
        return xff_ok && forwarded_ok && memcmp(&by_xff, &by_forwarded, sizeof by_xff) == 0 ? by_xff
                                                                                            : *peer;
    return xff_ok ? by_xff : forwarded_ok ? by_forwarded : *peer;
}

/* ---- the request's client ---- */

typedef struct {
    const char *name;
    char *text; /* the values joined with ", "; NULL: none yet */
    size_t len;
    bool failed; /* out of memory */
} joined;

static enum MHD_Result on_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    joined *j = cls;
    if (strcasecmp(key, j->name) != 0 || j->failed)
        return MHD_YES;
    size_t add = strlen(value ? value : "");
    char *grown = realloc(j->text, j->len + add + 3);
    if (!grown) {
        j->failed = true;
        return MHD_NO;
    }
    if (j->text) {
        memcpy(grown + j->len, ", ", 2);
        j->len += 2;
    }
    memcpy(grown + j->len, value ? value : "", add);
    j->len += add;
    grown[j->len] = '\0';
    j->text = grown;
    return MHD_YES;
}

/* Every request header called name, joined; NULL when absent. *failed when out of memory. */
static char *header_list(const kw_http_req *req, const char *name, bool *failed)
{
    joined j = {name, NULL, 0, false};
    if (MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name))
        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, on_header, &j);
    if (j.failed) {
        free(j.text);
        *failed = true;
        return NULL;
    }
    return j.text;
}

void kw_http_client_address(const kw_http_req *req, char *out, size_t size)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    kw_ip peer, client;
    if (!info || !info->client_addr || !kw_ip_from_sockaddr(info->client_addr, &peer)) {
        snprintf(out, size, "unknown");
        return;
    }
    client = peer;
    const kw_proxies *proxies = req->srv->trusted_proxies;
    if (kw_proxies_trust(proxies, &peer)) {
        bool failed = false;
        char *xff = header_list(req, "X-Forwarded-For", &failed);
        char *forwarded = header_list(req, "Forwarded", &failed);
        if (!failed)
            client = kw_client_ip(proxies, &peer, xff, forwarded);
        free(xff);
        free(forwarded);
    }
    char text[KW_IP_TEXT_BUFSZ];
    kw_ip_format(&client, text);
    snprintf(out, size, "%s", text);
}
