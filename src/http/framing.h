/*
 * framing.h - the strict reading of a request head (RFC 9112): where a
 * request ends, which bytes it may hold, and how its body is framed.
 *
 * Two callers share these rules. The gate (gate.c) checks the raw bytes of
 * the first request of each connection before libmicrohttpd sees them;
 * server.c checks every request again after libmicrohttpd has parsed it.
 * A refused head gets its status and message here; the caller answers it
 * and closes the connection, so nothing after it is read as a request.
 */
#ifndef KW_HTTP_FRAMING_H
#define KW_HTTP_FRAMING_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/framing.h is in the http layer, which core, store and service must not include"
#endif

#include <stdbool.h>
#include <stddef.h>

/* At most this many header fields in one request (431 beyond). */
#define KW_FRAMING_MAX_FIELDS 64
/* At most this many query parameters in one request target (414 beyond). */
#define KW_FRAMING_MAX_PARAMS 32

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* without the whitespace around it */
    size_t value_len;
} kw_framing_field;

typedef struct {
    unsigned status;     /* 0 while acceptable; else the HTTP status to answer */
    const char *message; /* static text for the error body */
} kw_framing_verdict;

typedef struct {
    size_t max_head_bytes; /* request line (414 past it) and whole head (431 past it) */
    size_t max_body_bytes; /* a larger Content-Length gets 413 */
} kw_framing_limits;

/* Sets *v to the refusal; returns false (for `return kw_framing_refuse(...)`). */
bool kw_framing_refuse(kw_framing_verdict *v, unsigned status, const char *message);

/*
 * The field rules: names are tokens, values hold no control byte but tab;
 * one Content-Length at most, of digits, within the body limit; a
 * Transfer-Encoding never with Content-Length nor in HTTP/1.0, and then
 * only "chunked" (501 for any other coding); exactly one Host in HTTP/1.1, at most one in HTTP/1.0,
 * of authority characters. Returns true when acceptable, else false with *v.
 */
bool kw_framing_check_fields(bool http10, const kw_framing_field *fields, size_t n,
                             const kw_framing_limits *lim, kw_framing_verdict *v);

/* True when s is a token (a method, a field name) of RFC 9110 section 5.6.2. */
bool kw_framing_token_ok(const char *s, size_t len);

/* The number of query parameters in target ('&'-separated, after its '?'). */
size_t kw_framing_param_count(const char *target, size_t len);

/* True when target is an origin-form request target of visible ASCII ("/..."), or "*". */
bool kw_framing_target_ok(const char *target, size_t len);

typedef enum {
    KW_HEAD_INCOMPLETE, /* no refusal yet, and the empty line has not come */
    KW_HEAD_COMPLETE,   /* *head_len bytes hold one acceptable head */
    KW_HEAD_REFUSED,    /* *v says why */
} kw_head_state;

/*
 * Reads the first len bytes of a connection as a request head: request
 * line, header lines each ended by CRLF (no bare CR or LF, no obs-fold),
 * then the empty line, within lim. Refuses as soon as the bytes so far
 * cannot start an acceptable head, so a bad head need not be finished.
 */
kw_head_state kw_framing_scan_head(const char *buf, size_t len, const kw_framing_limits *lim,
                                   size_t *head_len, kw_framing_verdict *v);

#endif
