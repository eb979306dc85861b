/*
 * http_internal.h - what the files of src/http share: the request being
 * answered, the route table, the reply helpers and the metrics. Not for
 * use outside src/http.
 *
 * A handler reads the request (kw_http_header, kw_http_read_json), calls
 * the service and leaves exactly one reply with a kw_http_reply_* function;
 * server.c queues it, logs the request and counts it.
 */
#ifndef KW_HTTP_INTERNAL_H
#define KW_HTTP_INTERNAL_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/http_internal.h is in the http layer, which core, store and service must not include"
#endif

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "core/model.h"
#include "core/service.h"
#include "http/http.h"

#define KW_HTTP_MAX_PARAMS   2
#define KW_HTTP_FLIGHT_SLOTS 8
#define KW_HTTP_VERIFY_CODES 6 /* kw_verify_code values */

typedef struct kw_http_req kw_http_req;
typedef void (*kw_http_handler)(kw_http_req *req);

typedef enum {
    KW_AUTH_NONE, /* public: verification, health, documents */
    KW_AUTH_ROOT, /* management: a root key */
} kw_http_auth;

typedef struct {
    kw_http_route_info info;
    kw_http_handler handler;
    kw_http_auth auth;
    bool json_body; /* POST with a JSON object body */
} kw_http_route;

/* routes.c: the table; index kw_http_route_count() stands for "no route". */
const kw_http_route *kw_http_route_at(size_t i);

/*
 * Finds the route for method and path. Returns its index and fills params
 * (pointers into path, which it modifies) when one matches; else returns
 * -1 and sets *allow to a comma-separated list of the methods the path
 * does have ("" when the path is unknown).
 */
int kw_http_route_match(const char *method, char *path, const char *params[KW_HTTP_MAX_PARAMS],
                        char *allow, size_t allow_size);

/* ---- metrics.c ---- */

typedef struct kw_http_metrics kw_http_metrics;

kw_http_metrics *kw_http_metrics_new(void);
void kw_http_metrics_free(kw_http_metrics *m);
/* Counts one answered request of route (kw_http_route_count(): none). */
void kw_http_metrics_request(kw_http_metrics *m, size_t route, unsigned status, uint64_t ns);
void kw_http_metrics_verify(kw_http_metrics *m, kw_verify_code code);

typedef enum {
    KW_PASSWORD_CHECKED,  /* a password was checked (argon2id) */
    KW_PASSWORD_REJECTED, /* a sign-in got 503: the password-check queue was full */
    KW_PASSWORD_EVENT_COUNT
} kw_password_event;

void kw_http_metrics_password(kw_http_metrics *m, kw_password_event event);
/* The Prometheus text exposition; caller frees. active_keys < 0: unknown. */
/* index may be NULL (no index figures are shown). */
char *kw_http_metrics_render(const kw_http_metrics *m, int64_t active_keys,
                             const kw_index_stats *index, size_t *len);

/* ---- the server, as handlers see it ---- */

struct kw_http_server {
    struct MHD_Daemon *daemon;
    kw_service *svc;
    kw_http_options opt;
    kw_http_metrics *metrics;
    struct kw_accesslog *log; /* NULL: access log off */
    struct kw_ratelimit *signin_by_email;
    struct kw_ratelimit *signin_by_addr;
    struct kw_gate *gate;
    struct kw_conntrack *conns;
    struct kw_http_noise *noise;        /* rate-limits log lines about refused connections */
    struct kw_hashpool *hashpool;       /* password checks, off the server threads */
    struct kw_proxies *trusted_proxies; /* NULL: none */
    /*
     * Verifications that find no valid key always get the same answer:
     * one response for each such code, made at start and shared by every
     * request that gets it (reply.c). [KW_VERIFY_VALID] stays NULL.
     */
    struct MHD_Response *verify_shared[KW_HTTP_VERIFY_CODES];
    char verify_text[KW_HTTP_VERIFY_CODES][64];
    char url[128];
    uint16_t port;
    struct {
        atomic_int n;
        char pad[64 - sizeof(atomic_int)]; /* one cache line each */
    } in_flight[KW_HTTP_FLIGHT_SLOTS];     /* requests begun and not ended, by thread (server.c) */
    atomic_bool draining;
};

struct kw_http_req {
    struct MHD_Connection *conn;
    kw_http_server *srv;
    const char *method;
    const char *raw_target;   /* the request target as it arrived, query included */
    size_t raw_target_len;    /* its length up to the first NUL, if any */
    bool target_ok;           /* the target was of visible ASCII, as it arrived */
    bool too_many_params;     /* more than KW_FRAMING_MAX_PARAMS query parameters */
    bool begun;               /* the head has been checked */
    const char *content_type; /* its first Content-Type value, once begun (NULL: none) */
    bool close_connection;    /* answer with Connection: close */
    size_t route;             /* index into the table, or kw_http_route_count() */
    char *path;               /* a copy, split by kw_http_route_match: path_buf or malloc'd */
    char path_buf[96];
    const char *param[KW_HTTP_MAX_PARAMS];
    char *body; /* wiped when freed: it may hold a key */
    size_t body_len;
    size_t body_cap;      /* bytes allocated at body */
    size_t body_expected; /* Content-Length, when announced */
    bool body_too_large;
    uint64_t start_ns;
    char actor[KW_ACTOR_BUFSZ]; /* who acts, for the audit log */
    unsigned status;
    struct MHD_Response *response;
    bool response_shared; /* response is one of the server's: never changed or destroyed here */
    bool deferred;        /* kw_http_suspend'ed: the reply comes from another thread */
    /* Room for a short reply body that lives as long as the request (not copied). */
    char reply_text[320];
};

/* A request header's value, or NULL. */
const char *kw_http_header(const kw_http_req *req, const char *name);

/*
 * For a handler whose reply takes long to make: suspends the request, so
 * that the server thread goes on with other connections when the handler
 * returns. Another thread then leaves the reply (kw_http_reply_*) and calls
 * kw_http_resume, after which it must not touch req again: the server
 * sends the reply and frees req. Every suspended request must be resumed,
 * also when the server stops.
 */
void kw_http_suspend(kw_http_req *req);
void kw_http_resume(kw_http_req *req);

/* ---- reply.c ---- */

/* Replies with doc (stolen) as JSON. The text is wiped when sent: it may hold a secret. */
void kw_http_reply_json(kw_http_req *req, unsigned status, json_t *doc);
/* The error code of an HTTP status ("invalid_request" for 400). */
const char *kw_http_error_code(unsigned status);
/* Replies {"error": {"code", "message"}} with the code of the HTTP status. */
void kw_http_reply_error(kw_http_req *req, unsigned status, const char *message);
/* Replies with the HTTP status and message of a service failure. */
void kw_http_reply_failure(kw_http_req *req, const kw_error *err);
/* Replies with no body. */
void kw_http_reply_empty(kw_http_req *req, unsigned status);
/* Replies with a static body (not copied) of the given content type. */
void kw_http_reply_static(kw_http_req *req, unsigned status, const char *content_type,
                          const void *body, size_t len);
/* Replies with a copy of body, of the given content type. */
void kw_http_reply_copy(kw_http_req *req, unsigned status, const char *content_type,
                        const void *body, size_t len);
/* Replies with a heap body (taken; freed with free) of the given content type. */
void kw_http_reply_owned(kw_http_req *req, unsigned status, const char *content_type, char *body,
                         size_t len);
/* Adds a header to the reply already made. */
void kw_http_reply_header(kw_http_req *req, const char *name, const char *value);
/* The headers every answer carries; server.c adds them when it sends a reply. */
void kw_http_common_headers(struct MHD_Response *resp);
/* Makes the shared verification answers (false: out of memory), and frees them. */
bool kw_http_shared_replies_new(kw_http_server *srv);
void kw_http_shared_replies_free(kw_http_server *srv);
/* Replies 200 with the shared answer of code (not KW_VERIFY_VALID); false if there is none. */
bool kw_http_reply_verify_shared(kw_http_req *req, kw_verify_code code);
/* Gives req a response of its own in place of a shared one, to change it. */
void kw_http_reply_unshare(kw_http_req *req);

/* ---- body.c ---- */

typedef enum {
    KW_FIELD_STRING,         /* a JSON string */
    KW_FIELD_STRING_OR_NULL, /* a string, or null for "absent" */
    KW_FIELD_INTEGER,        /* a JSON integer (not 1.0, not "1") */
    KW_FIELD_BOOLEAN,        /* true or false */
    KW_FIELD_OBJECT_OR_NULL, /* an object, or null */
} kw_field_type;

typedef struct {
    const char *name; /* NULL ends a list */
    kw_field_type type;
    bool required;
} kw_http_field;

/*
 * Parses the request body as a JSON object whose members are all among
 * fields and of their types. Returns the object (caller json_decref's), or
 * NULL after replying 415 (not application/json) or 400 (not UTF-8, not
 * JSON, duplicate, unknown, missing or mistyped member).
 */
json_t *kw_http_read_json(kw_http_req *req, const kw_http_field *fields);

/* The most fields a route reads with kw_http_read_values. */
#define KW_HTTP_MAX_FIELDS 4

typedef struct {
    const char *value; /* NULL when absent or null */
    size_t len;
    bool present; /* the member is there, also when null */
} kw_http_value;

/*
 * kw_http_read_json for the hot paths: the same checks and replies, with
 * the values of fields in values (in the order of fields). A plain body is
 * read in place, without a tree; any other goes through the JSON parser,
 * and *doc is then the object the values point into (caller json_decref's;
 * NULL otherwise). Returns false after replying.
 */
bool kw_http_read_values(kw_http_req *req, const kw_http_field *fields, kw_http_value *values,
                         json_t **doc);

/* A string member of a checked body, or NULL when absent or null. */
const char *kw_http_string(const json_t *body, const char *name);

/*
 * The query parameter name (as sent: never unescaped), or NULL. Replies
 * 400 and sets *bad when the query has a parameter not among allowed
 * (NULL-terminated) or one of them twice.
 */
const char *kw_http_query(kw_http_req *req, const char *name, const char *const *allowed,
                          bool *bad);

/* ---- handlers (api.c, ops.c) ---- */

void kw_http_account_create(kw_http_req *req);
void kw_http_account_get(kw_http_req *req);
void kw_http_key_create(kw_http_req *req);
void kw_http_key_list(kw_http_req *req);
void kw_http_key_get(kw_http_req *req);
void kw_http_key_delete(kw_http_req *req);
void kw_http_key_update(kw_http_req *req);
void kw_http_key_roll(kw_http_req *req);
void kw_http_key_revoke_all(kw_http_req *req);
void kw_http_audit_page(kw_http_req *req);
void kw_http_key_verify(kw_http_req *req);
void kw_http_auth_request(kw_http_req *req);
void kw_http_healthz(kw_http_req *req);
void kw_http_metrics_page(kw_http_req *req);
void kw_http_openapi(kw_http_req *req);
void kw_http_console_page(kw_http_req *req);
void kw_http_console_asset(kw_http_req *req);

/*
 * api_lifecycle.c: a metadata member (an object, or null for none) as the
 * compact text the service takes ("" for none), and an expires_at string
 * as a time in the future. false after replying 400.
 */
bool kw_http_metadata(kw_http_req *req, const json_t *value, char out[KW_METADATA_BUFSZ]);
bool kw_http_expiry(kw_http_req *req, const char *text, int64_t *out);

/* Authorises a management request (401/403/404/503 replied when it returns false). */
bool kw_http_authorize(kw_http_req *req);

/* ---- session.c ---- */

void kw_http_session_create(kw_http_req *req);
void kw_http_session_get(kw_http_req *req);
void kw_http_session_delete(kw_http_req *req);
/* The session cookie's value, or NULL. */
const char *kw_http_session_cookie(const kw_http_req *req);
/* kw_http_authorize for a request that carries a session cookie. */
bool kw_http_session_authorize(kw_http_req *req);

/* ---- clientaddr.c ---- */

/*
 * The client's address as text: the peer's, or the one trusted proxies
 * name (see clientaddr.h); "unknown" when it cannot be told.
 */
void kw_http_client_address(const kw_http_req *req, char *out, size_t size);

#endif
