/*
 * framing.c - the strict reading of a request head (RFC 9112 sections 2
 * to 6). Whatever a lenient reader could take two ways (two lengths, a
 * folded line, a byte that ends a C string) is refused, so that keyward
 * and any proxy in front of it always agree on where a request ends.
 */
#include "http/framing.h"

#include <stdint.h>
#include <string.h>

bool kw_framing_refuse(kw_framing_verdict *v, unsigned status, const char *message)
{
    v->status = status;
    v->message = message;
    return false;
}

/* Bit c of a 256-bit map, 32 bits a word. */
static bool in_map(const uint32_t map[8], unsigned char c)
{
    return (map[c >> 5] >> (c & 31)) & 1u;
}

/*
 * tchar of RFC 9110 section 5.6.2: the bytes of a method or a field name,
 * ALPHA, DIGIT and !#$%&'*+-.^_`|~ (a map: this runs for every byte of
 * every header name).
 */
static bool is_tchar(unsigned char c)
{
    static const uint32_t map[8] = {0x00000000, 0x03ff6cfa, 0xc7fffffe, 0x57ffffff, 0, 0, 0, 0};
    return in_map(map, c);
}

/* A byte a field value may hold: tab, space, visible ASCII, or obs-text. */
static bool is_value_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The bytes of a Host value (RFC 3986 authority without userinfo): ALPHA, DIGIT,
 * -._~!$&'()*+,;=:[]%. */
static bool is_host_byte(unsigned char c)
{
    static const uint32_t map[8] = {0x00000000, 0x2fff7ff2, 0xaffffffe, 0x47fffffe, 0, 0, 0, 0};
    return in_map(map, c);
}

bool kw_framing_token_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return len > 0;
}

static bool name_is(const kw_framing_field *f, const char *name)
{
    size_t n = strlen(name);
    if (f->name_len != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)f->name[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (c != (unsigned char)name[i])
            return false;
    }
    return true;
}

static bool value_is(const kw_framing_field *f, const char *value)
{
    kw_framing_field as_name = {f->value, f->value_len, NULL, 0};
    return name_is(&as_name, value);
}

size_t kw_framing_param_count(const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    if (!q)
        return 0;
    size_t n = 1;
    for (const char *p = q + 1; p < target + len; p++)
        n += *p == '&';
    return n;
}

bool kw_framing_target_ok(const char *target, size_t len)
{
    if (len == 1 && target[0] == '*')
        return true;
    if (len == 0 || target[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)target[i] <= 0x20 || (unsigned char)target[i] >= 0x7f)
            return false;
    return true;
}

static bool check_length(const kw_framing_field *f, const kw_framing_limits *lim,
                         kw_framing_verdict *v)
{
    if (f->value_len == 0 || f->value_len > 19)
        return kw_framing_refuse(v, 400, "The Content-Length header is not a length.");
    uint64_t n = 0;
    for (size_t i = 0; i < f->value_len; i++) {
        if (f->value[i] < '0' || f->value[i] > '9')
            return kw_framing_refuse(v, 400, "The Content-Length header is not a length.");
        n = n * 10 + (uint64_t)(f->value[i] - '0');
    }
    if (n > lim->max_body_bytes)
        return kw_framing_refuse(v, 413, "The request body is too large.");
    return true;
}

static bool check_host(const kw_framing_field *f, kw_framing_verdict *v)
{
    if (f->value_len == 0)
        return kw_framing_refuse(v, 400, "The Host header is empty.");
    for (size_t i = 0; i < f->value_len; i++)
        if (!is_host_byte((unsigned char)f->value[i]))
            return kw_framing_refuse(v, 400, "The Host header is not a host name.");
    return true;
}

bool kw_framing_check_fields(bool http10, const kw_framing_field *fields, size_t n,
                             const kw_framing_limits *lim, kw_framing_verdict *v)
{
    const kw_framing_field *length = NULL, *coding = NULL, *host = NULL;
    size_t lengths = 0, codings = 0, hosts = 0;
    if (n > KW_FRAMING_MAX_FIELDS)
        return kw_framing_refuse(v, 431, "The request has too many header fields.");
    for (size_t i = 0; i < n; i++) {
        const kw_framing_field *f = &fields[i];
        if (f->name_len == 0)
            return kw_framing_refuse(v, 400, "A header line has no name.");
        for (size_t k = 0; k < f->name_len; k++)
            if (!is_tchar((unsigned char)f->name[k]))
                return kw_framing_refuse(v, 400, "A header name holds a byte that is not allowed.");
        for (size_t k = 0; k < f->value_len; k++)
            if (!is_value_byte((unsigned char)f->value[k]))
                return kw_framing_refuse(v, 400, "A header value holds a control byte.");
        /* By length first: most fields are none of the three. */
        if (f->name_len == 14 && name_is(f, "content-length")) {
            length = f;
            lengths++;
        } else if (f->name_len == 17 && name_is(f, "transfer-encoding")) {
            coding = f;
            codings++;
        } else if (f->name_len == 4 && name_is(f, "host")) {
            host = f;
            hosts++;
        }
    }
    if (lengths > 1)
        return kw_framing_refuse(v, 400, "The request has more than one Content-Length header.");
    if (codings > 0) {
        if (http10)
            return kw_framing_refuse(v, 400, "Transfer-Encoding is not allowed in HTTP/1.0.");
        if (lengths > 0)
            return kw_framing_refuse(v, 400,
                                     "The request has both Content-Length and Transfer-Encoding.");
        if (codings > 1 || !value_is(coding, "chunked"))
            return kw_framing_refuse(v, 501,
                                     "The request's transfer coding is not supported: "
                                     "only chunked is.");
    }
    if (length && !check_length(length, lim, v))
        return false;
    if (hosts > 1)
        return kw_framing_refuse(v, 400, "The request has more than one Host header.");
    if (hosts == 0 && !http10)
        return kw_framing_refuse(v, 400, "An HTTP/1.1 request needs a Host header.");
    return !host || check_host(host, v);
}

/* ---- the raw head ---- */

typedef struct {
    const char *buf;
    size_t len;
    const kw_framing_limits *lim;
    kw_framing_verdict *v;
} scan;

/* The answer when the bytes ran out at i: wait for more, unless the head is already too long. */
static kw_head_state need_more(const scan *s, bool in_request_line)
{
    if (s->len <= s->lim->max_head_bytes)
        return KW_HEAD_INCOMPLETE;
    if (in_request_line)
        kw_framing_refuse(s->v, 414, "The request URI is too long.");
    else
        kw_framing_refuse(s->v, 431, "The request headers are too large.");
    return KW_HEAD_REFUSED;
}

static kw_head_state refused(const scan *s, unsigned status, const char *message)
{
    kw_framing_refuse(s->v, status, message);
    return KW_HEAD_REFUSED;
}

/* The request line "METHOD SP target SP HTTP/1.x CRLF"; *i ends past it. */
static kw_head_state scan_request_line(const scan *s, size_t *i, bool *http10)
{
    static const char malformed[] = "The request line is malformed.";
    const char *b = s->buf;
    size_t p = 0;
    while (p < s->len && is_tchar((unsigned char)b[p]))
        p++;
    if (p == s->len)
        return p > 32 ? refused(s, 400, malformed) : need_more(s, true);
    if (p == 0 || p > 32 || b[p] != ' ')
        return refused(s, 400, malformed);
    size_t target = ++p;
    while (p < s->len && (unsigned char)b[p] > 0x20 && (unsigned char)b[p] < 0x7f)
        p++;
    if (p == s->len)
        return need_more(s, true);
    if (b[p] != ' ')
        return refused(s, 400, "The request target holds a byte that is not allowed.");
    if (!kw_framing_target_ok(b + target, p - target))
        return refused(s, 400, "The request target must be a path starting with /.");
    if (kw_framing_param_count(b + target, p - target) > KW_FRAMING_MAX_PARAMS)
        return refused(s, 414, "The request has too many query parameters.");
    p++;
    static const char proto[] = "HTTP/";
    for (size_t k = 0; k < 5 && p + k < s->len; k++)
        if (b[p + k] != proto[k])
            return refused(s, 400, malformed);
    if (s->len - p < 10)
        return need_more(s, true);
    char major = b[p + 5], dot = b[p + 6], minor = b[p + 7];
    if (major < '0' || major > '9' || dot != '.' || minor < '0' || minor > '9')
        return refused(s, 400, malformed);
    if (b[p + 8] != '\r' || b[p + 9] != '\n')
        return refused(s, 400, "The request line must end with CRLF.");
    if (major != '1' || (minor != '0' && minor != '1'))
        return refused(s, 505, "keyward speaks HTTP/1.1 and HTTP/1.0.");
    *http10 = minor == '0';
    *i = p + 10;
    if (*i > s->lim->max_head_bytes)
        return refused(s, 414, "The request URI is too long.");
    return KW_HEAD_COMPLETE;
}

/* One header line at *i into *f; KW_HEAD_COMPLETE once the line is whole. */
static kw_head_state scan_field(const scan *s, size_t *i, kw_framing_field *f)
{
    const char *b = s->buf;
    size_t p = *i;
    if (b[p] == ' ' || b[p] == '\t')
        return refused(s, 400, "A header line starts with whitespace (obs-fold is not accepted).");
    size_t name = p;
    while (p < s->len && is_tchar((unsigned char)b[p]))
        p++;
    if (p == s->len)
        return need_more(s, false);
    if (b[p] != ':')
        return refused(s, 400,
                       p == name ? "A header line has no name."
                                 : "A header name holds a byte that is not allowed.");
    if (p == name)
        return refused(s, 400, "A header line has no name.");
    f->name = b + name;
    f->name_len = p - name;
    p++;
    while (p < s->len && (b[p] == ' ' || b[p] == '\t'))
        p++;
    size_t value = p;
    while (p < s->len && is_value_byte((unsigned char)b[p]))
        p++;
    if (p == s->len)
        return need_more(s, false);
    if (b[p] != '\r')
        return refused(s, 400, "A header value holds a control byte.");
    if (p + 1 == s->len)
        return need_more(s, false);
    if (b[p + 1] != '\n')
        return refused(s, 400, "A header value holds a control byte.");
    size_t end = p;
    while (end > value && (b[end - 1] == ' ' || b[end - 1] == '\t'))
        end--;
    f->value = b + value;
    f->value_len = end - value;
    /* RFC 9112 allows whitespace after a length, but libmicrohttpd refuses
     * it with a page of its own: refuse it here, in the API's format. */
    if (end != p && name_is(f, "content-length"))
        return refused(s, 400, "The Content-Length header is not a length.");
    *i = p + 2;
    return KW_HEAD_COMPLETE;
}

kw_head_state kw_framing_scan_head(const char *buf, size_t len, const kw_framing_limits *lim,
                                   size_t *head_len, kw_framing_verdict *v)
{
    scan s = {buf, len, lim, v};
    v->status = 0;
    v->message = NULL;
    bool http10 = false;
    size_t i = 0;
    kw_head_state st = scan_request_line(&s, &i, &http10);
    if (st != KW_HEAD_COMPLETE)
        return st;
    kw_framing_field fields[KW_FRAMING_MAX_FIELDS];
    size_t n = 0;
    for (;;) {
        if (i == len)
            return need_more(&s, false);
        if (buf[i] == '\r') {
            if (i + 1 == len)
                return need_more(&s, false);
            if (buf[i + 1] != '\n')
                return refused(&s, 400, "A header line holds a bare CR.");
            i += 2;
            break;
        }
        if (n == KW_FRAMING_MAX_FIELDS)
            return refused(&s, 431, "The request has too many header fields.");
        st = scan_field(&s, &i, &fields[n]);
        if (st != KW_HEAD_COMPLETE)
            return st;
        n++;
        if (i > lim->max_head_bytes)
            return refused(&s, 431, "The request headers are too large.");
    }
    if (i > lim->max_head_bytes)
        return refused(&s, 431, "The request headers are too large.");
    if (!kw_framing_check_fields(http10, fields, n, lim, v))
        return KW_HEAD_REFUSED;
    *head_len = i;
    return KW_HEAD_COMPLETE;
}
