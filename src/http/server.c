/*
 * server.c - the libmicrohttpd daemon: request lifecycle, limits, access
 * log, metrics and graceful shutdown.
 *
 * libmicrohttpd calls on_request at least twice per request: once when the
 * headers are in (we check limits and find the route), once per chunk of
 * body (we collect it, up to the limit), and once more with no data (we
 * run the handler and queue its reply). on_completed runs when the
 * response is sent or the connection dies: there we log, count and free.
 */
#include "http/http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/json.h"
#include "http/clientaddr.h"
#include "http/hashpool.h"
#include "core/timefmt.h"
#include "http/accesslog.h"
#include "http/conntrack.h"
#include "http/framing.h"
#include "http/gate.h"
#include "http/ratelimit.h"

#define NO_ROUTE kw_http_route_count()

void kw_http_options_defaults(kw_http_options *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:8080";
    o->threads = 0;
    o->max_body_bytes = 16384;
    o->max_header_bytes = 8192;
    o->max_connections = 4096;
    o->max_connections_per_ip = 256;
    o->idle_timeout_s = 30;
    o->request_head_timeout_s = 10;
    o->waiting_per_ip = 16;
    o->shutdown_grace_s = 10;
    o->access_log_fd = 2;
    o->signin_failures_per_email = 5;
    o->signin_failures_per_addr = 20;
    o->signin_window_s = 900;
    o->password_check_threads = 1;
    o->password_check_queue = 16;
    o->password_checks_per_s = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *kw_http_header(const kw_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

/* ---- access log ---- */

/* The request's method if it is a standard one, so that no client text reaches the log. */
static const char *method_label(const char *method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(method, known[i]) == 0)
            return known[i];
    return "OTHER";
}

/* ---- per connection ---- */

/* What is kept for each connection libmicrohttpd serves (its socket context). */
typedef struct {
    kw_conntrack_entry *deadline;
    /* The peer's address as text, made once: the access log's client when no proxy is trusted. */
    char peer[KW_IP_TEXT_BUFSZ];
} conn_state;

static conn_state *conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static kw_conntrack_entry *conn_entry(struct MHD_Connection *conn)
{
    conn_state *c = conn_of(conn);
    return c ? c->deadline : NULL;
}

/* ---- access log ---- */

/* Appends the NUL-terminated s at *p, if it fits before end. */
static bool put_text(char **p, const char *end, const char *s)
{
    size_t n = strlen(s);
    if (n > (size_t)(end - *p))
        return false;
    memcpy(*p, s, n);
    *p += n;
    return true;
}

/* Appends v in decimal, with at least `digits` digits (zeros in front). */
static bool put_number(char **p, const char *end, unsigned long long v, int digits)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || n < digits);
    if (n > end - *p)
        return false;
    while (n)
        *(*p)++ = tmp[--n];
    return true;
}

/*
 * One JSON line per request: when, who, method, route template, status,
 * latency. Never the path (it may name objects), a header or the body.
 * Every piece is a fixed text or an address, so nothing needs escaping.
 */
static void access_log(const kw_http_req *req, uint64_t ns)
{
    if (!req->srv->log)
        return;
    /* The formatted second, kept per thread: strftime once a second, not per request. */
    static __thread time_t cached_second = -1;
    static __thread char cached_when[KW_TIME_BUFSZ];
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    if (wall.tv_sec != cached_second) {
        kw_time_format(wall.tv_sec, cached_when);
        cached_when[19] = '\0'; /* the milliseconds go between the seconds and the Z */
        cached_second = wall.tv_sec;
    }
    char computed[INET6_ADDRSTRLEN];
    const char *client = computed;
    const conn_state *c = req->srv->trusted_proxies ? NULL : conn_of(req->conn);
    if (c && c->peer[0])
        client = c->peer;
    else
        kw_http_client_address(req, computed, sizeof computed);
    const kw_http_route_info *info = kw_http_route_info_at(req->route);
    unsigned long long us = ns / 1000;
    char line[512];
    char *p = line;
    const char *end = line + sizeof line;
    bool ok =
        put_text(&p, end, "{\"time\":\"") && put_text(&p, end, cached_when) &&
        put_text(&p, end, ".") &&
        put_number(&p, end, (unsigned long long)(wall.tv_nsec / 1000000), 3) &&
        put_text(&p, end, "Z\",\"client\":\"") && put_text(&p, end, client) &&
        put_text(&p, end, "\",\"method\":\"") && put_text(&p, end, method_label(req->method)) &&
        put_text(&p, end, "\",\"route\":\"") &&
        put_text(&p, end, info ? info->pattern : "unmatched") &&
        put_text(&p, end, "\",\"status\":") && put_number(&p, end, req->status, 1) &&
        put_text(&p, end, ",\"ms\":") && put_number(&p, end, us / 1000, 1) &&
        put_text(&p, end, ".") && put_number(&p, end, us % 1000, 3) && put_text(&p, end, "}\n");
    if (ok)
        kw_accesslog_line(req->srv->log, line, (size_t)(p - line));
}

/*
 * A JSON line about the server itself (start, stop, libmicrohttpd
 * messages), written to stderr at once, also when the access log is off.
 */
void kw_http_event(const kw_http_server *srv, const char *event, const char *detail)
{
    (void)srv;
    char when[KW_TIME_BUFSZ];
    kw_time_format(kw_time_now(), when);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "time", when, "event", event, "detail", detail);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text) {
        size_t n = strlen(text);
        text[n] = '\n';
        ssize_t w = write(STDERR_FILENO, text, n + 1);
        (void)w;
        text[n] = '\0';
        kw_json_free(text);
    }
}

/*
 * Malformed and cut-off connections are the client's doing: a flood of
 * them must not flood the log. One line a second at most, the first of
 * each second as it is, the rest counted in the next line.
 */
struct kw_http_noise {
    pthread_mutex_t lock;
    time_t second;
    unsigned suppressed;
};

static void note_noise(kw_http_server *srv, const char *event, const char *detail)
{
    struct kw_http_noise *n = srv->noise;
    time_t now = time(NULL);
    pthread_mutex_lock(&n->lock);
    bool log = now != n->second;
    unsigned suppressed = n->suppressed;
    if (log) {
        n->second = now;
        n->suppressed = 0;
    } else {
        n->suppressed++;
    }
    pthread_mutex_unlock(&n->lock);
    if (!log)
        return;
    char line[320];
    if (suppressed)
        snprintf(line, sizeof line, "%s (and %u more since the last line)", detail, suppressed);
    else
        snprintf(line, sizeof line, "%s", detail);
    kw_http_event(srv, event, line);
}

/* Logs the count of refusals left out, once their second is over (gate tick). */
static void flush_noise(kw_http_server *srv)
{
    struct kw_http_noise *n = srv->noise;
    time_t now = time(NULL);
    pthread_mutex_lock(&n->lock);
    unsigned suppressed = now != n->second ? n->suppressed : 0;
    if (suppressed)
        n->suppressed = 0;
    pthread_mutex_unlock(&n->lock);
    if (suppressed) {
        char line[96];
        snprintf(line, sizeof line, "%u more since the last line", suppressed);
        kw_http_event(srv, "refused", line);
    }
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char message[256];
    vsnprintf(message, sizeof message, fmt, ap);
    message[strcspn(message, "\r\n")] = '\0';
    note_noise(cls, "httpd", message);
}

/* ---- request lifecycle ---- */

void kw_http_suspend(kw_http_req *req)
{
    req->deferred = true;
    MHD_suspend_connection(req->conn);
}

void kw_http_resume(kw_http_req *req)
{
    MHD_resume_connection(req->conn);
}

static void free_request(kw_http_req *req)
{
    if (req->body) {
        sodium_memzero(req->body, req->body_len);
        free(req->body);
    }
    if (req->response && !req->response_shared)
        MHD_destroy_response(req->response);
    if (req->path != req->path_buf)
        free(req->path);
    free(req);
}

/* Queues the reply the handler left (500 if it left none), with the common headers. */
static enum MHD_Result send_reply(kw_http_req *req)
{
    bool close = req->close_connection || atomic_load(&req->srv->draining);
    if (req->response_shared) {
        if (!close) /* it has the common headers already */
            return MHD_queue_response(req->conn, req->status, req->response);
        kw_http_reply_unshare(req);
    }
    if (!req->response) {
        kw_http_reply_error(req, 500, "An internal error occurred.");
        if (!req->response)
            return MHD_NO; /* out of memory: drop the connection */
    }
    struct MHD_Response *resp = req->response;
    kw_http_common_headers(resp);
    if (close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return MHD_queue_response(req->conn, req->status, resp);
}

/* ---- the head of each request, as libmicrohttpd parsed it ---- */

typedef struct {
    kw_framing_field field[KW_FRAMING_MAX_FIELDS + 1];
    const char *raw_value[KW_FRAMING_MAX_FIELDS + 1]; /* where each value starts in the head */
    size_t raw_value_len[KW_FRAMING_MAX_FIELDS + 1];
    size_t n;
    size_t bytes; /* each name and value as stored, plus ": " and CRLF */
} parsed_fields;

static enum MHD_Result add_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                 size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    parsed_fields *l = cls;
    if (l->n == KW_FRAMING_MAX_FIELDS + 1)
        return MHD_NO;
    if (!value) {
        value = "";
        value_size = 0;
    }
    l->raw_value[l->n] = value;
    l->raw_value_len[l->n] = value_size;
    l->bytes += key_size + value_size + 4;
    while (value_size > 0 && (value[value_size - 1] == ' ' || value[value_size - 1] == '\t'))
        value_size--;
    l->field[l->n++] = (kw_framing_field){key, key_size, value, value_size};
    return MHD_YES;
}

/*
 * libmicrohttpd parses the head in place: the method, target, version and
 * each header name and value stay where they arrived, their separators
 * overwritten with NULs. So the head was exactly "METHOD SP target SP
 * version CRLF (name: value CRLF)* CRLF" when each piece starts where the
 * previous one ended plus its separator, and the last ends where the head
 * does (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE). A NUL inside a value or
 * the target (which cuts the C string short), a bare LF, an obs-fold
 * (which libmicrohttpd joins into the previous value) or extra spaces in
 * the request line all break that chain. Only addresses are compared,
 * never the bytes between them.
 */
static bool head_is_contiguous(const kw_http_req *req, const char *method, const char *version,
                               const parsed_fields *l)
{
    uintptr_t at = (uintptr_t)method + strlen(method) + 1;
    if (!req->raw_target || at != (uintptr_t)req->raw_target)
        return false;
    at += req->raw_target_len + 1;
    if (at != (uintptr_t)version)
        return false;
    at += strlen(version) + 2;
    for (size_t i = 0; i < l->n; i++) {
        const kw_framing_field *f = &l->field[i];
        if ((uintptr_t)f->name != at)
            return false;
        uintptr_t value = (uintptr_t)l->raw_value[i];
        if (value < at + f->name_len + 1 || value - at > f->name_len + 1 + 256)
            return false;
        at = value + l->raw_value_len[i] + 2;
    }
    const union MHD_ConnectionInfo *size =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    return size && at + 2 == (uintptr_t)method + size->header_size;
}

static bool refuse_head(kw_http_req *req, unsigned status, const char *message)
{
    kw_http_reply_error(req, status, message);
    req->close_connection = true;
    note_noise(req->srv, "refused", message);
    return false;
}

/*
 * The framing rules of framing.h, for every request (the gate has checked
 * the raw bytes of each connection's first one). Returns false after
 * leaving a reply that closes the connection; else sets *header_bytes to
 * the size of the header fields (names and values as libmicrohttpd keeps
 * them: the head holds no NUL, so that is also their length as strings).
 */
static bool check_head(kw_http_req *req, const char *method, const char *version,
                       size_t *header_bytes)
{
    const kw_http_options *o = &req->srv->opt;
    bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
    if (!http10 && strcmp(version, MHD_HTTP_VERSION_1_1) != 0)
        return refuse_head(req, 505, "keyward speaks HTTP/1.1 and HTTP/1.0.");
    size_t method_len = strlen(method);
    if (method_len > 32 || !kw_framing_token_ok(method, method_len))
        return refuse_head(req, 400, "The request line is malformed.");
    if (!req->target_ok)
        return refuse_head(req, 400, "The request target holds a byte that is not allowed.");
    if (req->too_many_params)
        return refuse_head(req, 414, "The request has too many query parameters.");
    parsed_fields l;
    l.n = 0;
    l.bytes = 0;
    MHD_get_connection_values_n(req->conn, MHD_HEADER_KIND, add_field, &l);
    if (l.n > KW_FRAMING_MAX_FIELDS)
        return refuse_head(req, 431, "The request has too many header fields.");
    kw_framing_limits limits = {o->max_header_bytes, o->max_body_bytes};
    kw_framing_verdict v = {0, NULL};
    if (!kw_framing_check_fields(http10, l.field, l.n, &limits, &v)) {
        if (v.status != 413)
            return refuse_head(req, v.status, v.message);
        char message[96];
        snprintf(message, sizeof message, "The request body is larger than %zu bytes.",
                 o->max_body_bytes);
        kw_http_reply_error(req, 413, message);
        req->close_connection = true;
        return false;
    }
    if (!head_is_contiguous(req, method, version, &l))
        return refuse_head(req, 400,
                           "The request head holds a byte or a line break that is not allowed.");
    *header_bytes = l.bytes;
    /* The first Content-Type, as kw_http_header would find it, for the body readers. */
    for (size_t i = 0; i < l.n; i++)
        if (l.field[i].name_len == 12 && strncasecmp(l.field[i].name, "Content-Type", 12) == 0) {
            req->content_type = l.raw_value[i];
            break;
        }
    return true;
}

/*
 * The first call: headers are complete. Returns false after leaving a
 * reply that ends the request early (limits), true to go on.
 */
static bool begin(kw_http_req *req, const char *url, const char *version, char *allow,
                  size_t allow_size)
{
    const kw_http_options *o = &req->srv->opt;
    size_t header_bytes = 0;
    if (!check_head(req, req->method, version, &header_bytes))
        return false;
    size_t url_bytes = req->raw_target_len;
    if (url_bytes > o->max_header_bytes) {
        kw_http_reply_error(req, 414, "The request URI is too long.");
        req->close_connection = true;
        return false;
    }
    if (header_bytes + url_bytes > o->max_header_bytes) {
        kw_http_reply_error(req, 431, "The request headers are too large.");
        req->close_connection = true;
        return false;
    }
    /* A copy to split: in the request itself when it fits, as API paths do. */
    size_t path_len = strlen(url);
    req->path = path_len < sizeof req->path_buf ? req->path_buf : malloc(path_len + 1);
    if (!req->path)
        return false;
    memcpy(req->path, url, path_len + 1);
    int route = kw_http_route_match(req->method, req->path, req->param, allow, allow_size);
    req->route = route < 0 ? NO_ROUTE : (size_t)route;
    const char *length = kw_http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length)
        req->body_expected = (size_t)strtoull(length, NULL, 10); /* checked by check_head */
    return true;
}

/* Collects a chunk of body, up to the limit; past it the rest is read and dropped. */
static void collect(kw_http_req *req, const char *data, size_t size)
{
    size_t limit = req->srv->opt.max_body_bytes;
    if (req->body_too_large || size > limit - req->body_len) {
        req->body_too_large = true;
        return;
    }
    if (req->body_len + size > req->body_cap) {
        /* The announced length at once; otherwise grow by doubling, up to the limit. */
        size_t cap = req->body_expected ? req->body_expected : 1024;
        while (cap < req->body_len + size)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        char *grown = malloc(cap);
        if (!grown) {
            req->body_too_large = true;
            return;
        }
        if (req->body) {
            memcpy(grown, req->body, req->body_len);
            sodium_memzero(req->body, req->body_len);
            free(req->body);
        }
        req->body = grown;
        req->body_cap = cap;
    }
    memcpy(req->body + req->body_len, data, size);
    req->body_len += size;
}

/* The last call: the whole request is in. Runs its handler. */
static void dispatch(kw_http_req *req, const char *allow)
{
    const kw_http_route *route = kw_http_route_at(req->route);
    if (!route) {
        if (allow[0]) {
            kw_http_reply_error(req, 405, "This method is not allowed here.");
            kw_http_reply_header(req, MHD_HTTP_HEADER_ALLOW, allow);
        } else {
            kw_http_reply_error(req, 404, "There is nothing at this address.");
        }
        return;
    }
    if (req->body_too_large) {
        char message[96];
        snprintf(message, sizeof message, "The request body is larger than %zu bytes.",
                 req->srv->opt.max_body_bytes);
        kw_http_reply_error(req, 413, message);
        return;
    }
    /*
     * Management requests (and signing out) record the client's address
     * in the audit entries of what they change; verification never
     * changes anything and keeps its hot path. Sign-ins check the password
     * on another thread, which sets it there (session.c).
     */
    bool audited = route->auth == KW_AUTH_ROOT || route->handler == kw_http_session_delete;
    if (audited) {
        char addr[KW_IP_TEXT_BUFSZ];
        kw_http_client_address(req, addr, sizeof addr);
        kw_service_set_source_ip(strcmp(addr, "unknown") != 0 ? addr : NULL);
    }
    if (route->auth != KW_AUTH_ROOT || kw_http_authorize(req))
        route->handler(req);
    if (audited)
        kw_service_set_source_ip(NULL);
}

typedef struct {
    kw_http_req req;
    char allow[64];
} request_state;

/*
 * Deadlines are checked four times a second (the gate's tick), so the
 * coarse clock, which is cheaper to read, is precise enough for them.
 */
static uint64_t coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t head_deadline(const kw_http_server *srv)
{
    return coarse_now_ns() + (uint64_t)srv->opt.request_head_timeout_s * 1000000000u;
}

/*
 * After an answer the connection may idle, as a proxy's pool of kept-alive
 * connections does, but the next request must have arrived whole within
 * the idle timeout: trickling bytes does not extend it.
 */
static uint64_t next_request_deadline(const kw_http_server *srv, uint64_t now)
{
    return now + (uint64_t)srv->opt.idle_timeout_s * 1000000000u;
}

/* Connections come and go: each gets a deadline entry (conntrack.h). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    kw_http_server *srv = cls;
    const union MHD_ConnectionInfo *peer =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (peer && peer->client_addr && srv->gate)
        kw_gate_served(srv->gate, peer->client_addr, sizeof(struct sockaddr_storage),
                       code == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_state *c = calloc(1, sizeof *c);
        if (c && fd)
            c->deadline = kw_conntrack_add(srv->conns, fd->connect_fd, head_deadline(srv));
        kw_ip ip;
        if (c && peer && peer->client_addr && kw_ip_from_sockaddr(peer->client_addr, &ip))
            kw_ip_format(&ip, c->peer);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_state *c = *socket_context;
        if (c) {
            kw_conntrack_remove(srv->conns, c->deadline);
            free(c);
        }
        *socket_context = NULL;
    }
}

/*
 * Requests in flight, for a graceful stop. Each server thread counts in a
 * slot (a cache line) of its own, so that the server threads do not pass
 * one cache line back and forth twice per request; a request may end on
 * another thread than it began (when libmicrohttpd stops), so a slot can
 * go below zero, and only the sum means anything.
 */
static void flight_add(kw_http_server *srv, int delta)
{
    static atomic_uint next_slot;
    static __thread unsigned slot = UINT_MAX;
    if (slot == UINT_MAX)
        slot = atomic_fetch_add(&next_slot, 1) % KW_HTTP_FLIGHT_SLOTS;
    atomic_fetch_add_explicit(&srv->in_flight[slot].n, delta, memory_order_relaxed);
}

static int flight_count(kw_http_server *srv)
{
    int n = 0;
    for (size_t i = 0; i < KW_HTTP_FLIGHT_SLOTS; i++)
        n += atomic_load(&srv->in_flight[i].n);
    return n;
}

/*
 * Called once the request line is read, before libmicrohttpd splits or
 * decodes the target: the request's state starts here, with the target as
 * it arrived (the head check in begin needs it).
 */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    kw_http_server *srv = cls;
    /* malloc and memset rather than calloc, which glibc serves without its per-thread cache. */
    request_state *state = malloc(sizeof *state);
    if (!state)
        return NULL;
    memset(state, 0, sizeof *state);
    kw_http_req *req = &state->req;
    req->conn = conn;
    req->srv = srv;
    req->route = NO_ROUTE;
    req->start_ns = now_ns();
    req->raw_target = uri;
    req->raw_target_len = uri ? strlen(uri) : 0;
    /* Checked now: libmicrohttpd splits the query in place after this call. */
    req->target_ok = uri && kw_framing_target_ok(uri, req->raw_target_len);
    if (uri && kw_framing_param_count(uri, req->raw_target_len) > KW_FRAMING_MAX_PARAMS) {
        /*
         * libmicrohttpd is about to store each parameter in the
         * connection's memory pool; when they do not fit, 0.9.75 leaves the
         * connection hanging without an answer. So end the query right
         * after its '?' in libmicrohttpd's own buffer (the text is writable:
         * it is the connection's read buffer), and answer 414 in begin().
         */
        char *q = memchr(uri, '?', req->raw_target_len);
        q[1] = '\0';
        req->too_many_params = true;
    }
    flight_add(srv, 1);
    return state;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    request_state *state = *con_cls;
    if (!state)
        return MHD_NO; /* out of memory in on_request_line */
    kw_http_req *req = &state->req;
    if (req->deferred) { /* resumed: its reply is ready */
        req->deferred = false;
        return send_reply(req);
    }
    if (!req->begun) {
        req->begun = true;
        req->method = method;
        /* The head is in: the body, if any, is due within the timeout too. */
        kw_conntrack_set_deadline(conn_entry(conn), head_deadline(req->srv));
        if (!begin(req, url, version, state->allow, sizeof state->allow))
            return send_reply(req);
        return MHD_YES;
    }
    if (req->status) { /* answered early: drop the rest of the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        collect(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    kw_conntrack_set_deadline(conn_entry(conn), 0); /* the request is whole */
    dispatch(req, state->allow);
    if (req->deferred) /* another thread replies, then resumes it */
        return MHD_YES;
    return send_reply(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    kw_http_server *srv = cls;
    request_state *state = *con_cls;
    if (!state)
        return;
    kw_http_req *req = &state->req;
    uint64_t now = now_ns();
    if (req->status) {
        uint64_t ns = now - req->start_ns;
        kw_http_metrics_request(srv->metrics, req->route, req->status, ns);
        access_log(req, ns);
    }
    kw_conntrack_set_deadline(conn_entry(conn), next_request_deadline(srv, now));
    free_request(req);
    *con_cls = NULL;
    flight_add(srv, -1);
}

/* ---- the gate's callbacks (its own thread) ---- */

static void gate_handoff(void *cls, int fd, const struct sockaddr *addr, socklen_t len)
{
    kw_http_server *srv = cls;
    if (MHD_add_connection(srv->daemon, fd, addr, len) != MHD_YES)
        note_noise(srv, "refused", "a connection was closed: the connection limit is reached");
}

static void gate_tick(void *cls, uint64_t now)
{
    kw_http_server *srv = cls;
    flush_noise(srv);
    unsigned cut = kw_conntrack_expire(srv->conns, now);
    if (cut)
        note_noise(srv, "refused", "a request did not arrive whole in time: connection closed");
}

static void gate_refused(void *cls, unsigned status, const char *message)
{
    char line[256];
    snprintf(line, sizeof line, "%u %s", status, message);
    note_noise(cls, "refused", status ? line : message);
}

void kw_http_add_connection(kw_http_server *srv, int fd, const struct sockaddr *addr, socklen_t len)
{
    kw_gate_add(srv->gate, fd, addr, len);
}

/* ---- start and stop ---- */

static kw_status parse_listen(const char *listen, struct sockaddr_storage *addr, socklen_t *len,
                              kw_error *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host)
        return kw_error_set(err, KW_ERR_INVALID,
                            "listen must be HOST:PORT, like 127.0.0.1:8080 or [::1]:8080.");
    const char *h = listen;
    size_t hlen = (size_t)(colon - listen);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 0 || port > 65535)
        return kw_error_set(err, KW_ERR_INVALID, "listen: the port must be 0 to 65535.");
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[8];
    snprintf(service, sizeof service, "%ld", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0 || !res)
        return kw_error_set(err, KW_ERR_INVALID, "listen: cannot resolve the host: %s.",
                            gai_strerror(rc));
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return KW_OK;
}

/*
 * Keeps the URL as the client sent it: routes and ids are plain ASCII, and
 * a decoded "%2F" or "%00" would otherwise split or cut a path segment and
 * reach another route than a proxy in front of keyward saw.
 */
static size_t keep_escaped(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

/* Frees what kw_http_start allocated besides the daemon and the gate, and srv. */
static void free_parts(kw_http_server *srv)
{
    kw_http_shared_replies_free(srv);
    kw_http_metrics_free(srv->metrics);
    kw_accesslog_free(srv->log);
    kw_ratelimit_free(srv->signin_by_email);
    kw_ratelimit_free(srv->signin_by_addr);
    kw_conntrack_free(srv->conns);
    if (srv->noise) {
        pthread_mutex_destroy(&srv->noise->lock);
        free(srv->noise);
    }
    kw_hashpool_free(srv->hashpool);
    kw_proxies_free(srv->trusted_proxies);
    free(srv);
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 256 ? (unsigned)n : 1;
}

/* The listening socket (non-blocking), bound to addr; -1 with *err set. */
static int open_listener(const char *listen_text, const struct sockaddr_storage *addr,
                         socklen_t len, kw_error *err)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0 &&
        bind(fd, (const struct sockaddr *)addr, len) == 0 && listen(fd, 1024) == 0)
        return fd;
    int e = errno;
    if (fd >= 0)
        close(fd);
    kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot listen on %s: %s.", listen_text, strerror(e));
    return -1;
}

static uint16_t bound_port(int fd)
{
    struct sockaddr_storage bound;
    memset(&bound, 0, sizeof bound);
    socklen_t len = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &len) != 0)
        return 0;
    if (bound.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
}

kw_status kw_http_start(kw_service *svc, const kw_http_options *o, kw_http_server **out,
                        kw_error *err)
{
    *out = NULL;
    struct sockaddr_storage addr = {0};
    socklen_t addr_len = 0;
    kw_status st = parse_listen(o->listen, &addr, &addr_len, err);
    if (st != KW_OK)
        return st;
    kw_http_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    srv->svc = svc;
    srv->opt = *o;
    if (srv->opt.threads == 0)
        srv->opt.threads = online_cpus();
    if (srv->opt.request_head_timeout_s == 0)
        srv->opt.request_head_timeout_s = 10;
    srv->metrics = kw_http_metrics_new();
    srv->log = o->access_log_fd >= 0 ? kw_accesslog_new(o->access_log_fd) : NULL;
    srv->signin_by_email = kw_ratelimit_new(o->signin_failures_per_email, o->signin_window_s);
    srv->signin_by_addr = kw_ratelimit_new(o->signin_failures_per_addr, o->signin_window_s);
    srv->conns = kw_conntrack_new();
    srv->noise = calloc(1, sizeof *srv->noise);
    if (srv->noise)
        pthread_mutex_init(&srv->noise->lock, NULL);
    srv->hashpool = kw_hashpool_new(o->password_check_threads, o->password_check_queue,
                                    o->password_checks_per_s);
    if (!srv->metrics || (o->access_log_fd >= 0 && !srv->log) || !srv->signin_by_email ||
        !srv->signin_by_addr || !srv->conns || !srv->noise || !srv->hashpool ||
        !kw_http_shared_replies_new(srv)) {
        free_parts(srv);
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    }
    st = kw_proxies_parse(o->trusted_proxies, &srv->trusted_proxies, err);
    if (st != KW_OK) {
        free_parts(srv);
        return st;
    }
    int listen_fd = open_listener(o->listen, &addr, addr_len, err);
    if (listen_fd < 0) {
        free_parts(srv);
        return err->status;
    }
    /*
     * libmicrohttpd does not listen: the gate accepts, and hands over each
     * connection once its first request head has been checked. Its own
     * strict mode (MHD_OPTION_STRICT_FOR_CLIENT) stays off: check_head
     * applies the same rules and more, and answers in keyward's format
     * where libmicrohttpd would send an HTML page. Suspend and resume:
     * sign-ins wait for their password check off the server threads.
     */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME;
    /* Room for the request line and headers, plus the buffer body chunks are read into. */
    size_t memory = o->max_header_bytes * 2 + 16384;
    srv->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_URI_LOG_CALLBACK,
        on_request_line, srv, MHD_OPTION_THREAD_POOL_SIZE, srv->opt.threads,
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        o->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        close(listen_fd);
        free_parts(srv);
        return kw_error_set(err, KW_ERR_INTERNAL, "Cannot start the HTTP server.");
    }
    srv->port = bound_port(listen_fd);
    unsigned waiting_max = o->max_connections / 2 ? o->max_connections / 2 : 1;
    kw_gate_options gate = {
        /* A connection that sends nothing is idle: the idle timeout applies too. */
        .head_timeout_s = srv->opt.request_head_timeout_s < o->idle_timeout_s
                              ? srv->opt.request_head_timeout_s
                              : o->idle_timeout_s,
        .waiting_per_peer = o->waiting_per_ip,
        .waiting_max = waiting_max,
        .max_per_peer = o->max_connections_per_ip,
        .limits = {o->max_header_bytes, o->max_body_bytes},
        .handoff = gate_handoff,
        .tick = gate_tick,
        .refused = gate_refused,
        .cls = srv,
    };
    st = kw_gate_start(listen_fd, &gate, &srv->gate, err);
    if (st != KW_OK) {
        MHD_stop_daemon(srv->daemon);
        free_parts(srv);
        return st;
    }
    char host[INET6_ADDRSTRLEN] = "127.0.0.1";
    if (addr.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
    bool any = strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0;
    snprintf(srv->url, sizeof srv->url,
             addr.ss_family == AF_INET6 && !any ? "http://[%s]:%u" : "http://%s:%u",
             any ? "127.0.0.1" : host, (unsigned)srv->port);
    *out = srv;
    return KW_OK;
}

void kw_http_ready(const kw_http_server *srv)
{
    kw_http_event(srv, "listening", srv->url);
}

const char *kw_http_url(const kw_http_server *srv)
{
    return srv->url;
}

void kw_http_stop(kw_http_server *srv)
{
    if (!srv)
        return;
    atomic_store(&srv->draining, true);
    /* New connections are closed at once, so a load balancer retries them elsewhere. */
    kw_gate_drain(srv->gate);
    kw_http_event(srv, "stopping", "finishing requests in flight");
    uint64_t deadline = now_ns() + (uint64_t)srv->opt.shutdown_grace_s * 1000000000u;
    while (flight_count(srv) > 0 && now_ns() < deadline) {
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    kw_gate_stop(srv->gate); /* no more handovers to libmicrohttpd */
    /* Sign-ins still waiting for a password check get 503 and are resumed:
     * libmicrohttpd refuses to stop with a request suspended. */
    kw_hashpool_stop(srv->hashpool);
    MHD_stop_daemon(srv->daemon);
    kw_gate_free(srv->gate); /* after: libmicrohttpd counts closed connections in it */
    kw_accesslog_free(srv->log);
    srv->log = NULL;
    kw_http_event(srv, "stopped", "all connections closed");
    free_parts(srv);
}
