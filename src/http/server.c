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
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/json.h"
#include "http/accesslog.h"
#include "http/clientaddr.h"
#include "http/hashpool.h"
#include "http/ratelimit.h"
#include "core/timefmt.h"

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

/*
 * One JSON line per request: when, who, method, route template, status,
 * latency. Never the path (it may name objects), a header or the body.
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
        cached_second = wall.tv_sec;
    }
    char client[INET6_ADDRSTRLEN];
    kw_http_client_address(req, client, sizeof client);
    const kw_http_route_info *info = kw_http_route_info_at(req->route);
    unsigned long long us = ns / 1000;
    char line[512];
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%.19s.%03ldZ\",\"client\":\"%s\",\"method\":\"%s\","
                     "\"route\":\"%s\",\"status\":%u,\"ms\":%llu.%03llu}\n",
                     cached_when, wall.tv_nsec / 1000000, client, method_label(req->method),
                     info ? info->pattern : "unmatched", req->status, us / 1000, us % 1000);
    if (n > 0 && (size_t)n < sizeof line)
        kw_accesslog_line(req->srv->log, line, (size_t)n);
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

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char message[256];
    vsnprintf(message, sizeof message, fmt, ap);
    message[strcspn(message, "\r\n")] = '\0';
    kw_http_event(cls, "httpd", message);
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
    if (req->response)
        MHD_destroy_response(req->response);
    free(req->path);
    free(req);
}

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

/* Queues the reply the handler left (500 if it left none), with the common headers. */
static enum MHD_Result send_reply(kw_http_req *req)
{
    if (!req->response) {
        kw_http_reply_error(req, 500, "An internal error occurred.");
        if (!req->response)
            return MHD_NO; /* out of memory: drop the connection */
    }
    struct MHD_Response *resp = req->response;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (atomic_load(&req->srv->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return MHD_queue_response(req->conn, req->status, resp);
}

/*
 * The first call: headers are complete. Returns false after leaving a
 * reply that ends the request early (limits), true to go on.
 */
static bool begin(kw_http_req *req, const char *url, char *allow, size_t allow_size)
{
    const kw_http_options *o = &req->srv->opt;
    size_t header_bytes = 0;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, sum_header, &header_bytes);
    size_t url_bytes = strlen(url);
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, sum_header, &url_bytes);
    if (url_bytes > o->max_header_bytes) {
        kw_http_reply_error(req, 414, "The request URI is too long.");
        return false;
    }
    if (header_bytes + url_bytes > o->max_header_bytes) {
        kw_http_reply_error(req, 431, "The request headers are too large.");
        return false;
    }
    req->path = strdup(url);
    if (!req->path)
        return false;
    int route = kw_http_route_match(req->method, req->path, req->param, allow, allow_size);
    req->route = route < 0 ? NO_ROUTE : (size_t)route;
    const char *length = kw_http_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (length) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(length, &end, 10);
        if (errno == 0 && *end == '\0' && n <= o->max_body_bytes)
            req->body_expected = (size_t)n;
        if (errno == 0 && *end == '\0' && n > o->max_body_bytes) {
            char message[96];
            snprintf(message, sizeof message, "The request body is larger than %zu bytes.",
                     o->max_body_bytes);
            kw_http_reply_error(req, 413, message);
            return false;
        }
    }
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
    if (route->auth == KW_AUTH_ROOT && !kw_http_authorize(req))
        return;
    route->handler(req);
}

typedef struct {
    kw_http_req req;
    char allow[64];
} request_state;

/*
 * Accept policy: once stopping, a new connection is closed at once, so a
 * load balancer retries it on another node instead of waiting in this
 * one's backlog. (MHD_quiesce_daemon would leave it there, and with a
 * thread pool on epoll it races the workers removing the listening socket
 * from their epoll sets: libmicrohttpd 0.9.75 aborts when it loses.)
 */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)addr;
    (void)addrlen;
    const kw_http_server *srv = cls;
    return atomic_load(&srv->draining) ? MHD_NO : MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    kw_http_server *srv = cls;
    request_state *state = *con_cls;
    if (state && state->req.deferred) { /* resumed: its reply is ready */
        state->req.deferred = false;
        return send_reply(&state->req);
    }
    if (!state) {
        state = calloc(1, sizeof *state);
        if (!state)
            return MHD_NO;
        kw_http_req *req = &state->req;
        req->conn = conn;
        req->srv = srv;
        req->method = method;
        req->route = NO_ROUTE;
        req->start_ns = now_ns();
        *con_cls = state;
        atomic_fetch_add(&srv->in_flight, 1);
        if (!begin(req, url, state->allow, sizeof state->allow))
            return send_reply(req);
        return MHD_YES;
    }
    kw_http_req *req = &state->req;
    if (req->status) { /* answered early: drop the rest of the body */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        collect(req, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    dispatch(req, state->allow);
    if (req->deferred) /* another thread replies, then resumes it */
        return MHD_YES;
    return send_reply(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    kw_http_server *srv = cls;
    request_state *state = *con_cls;
    if (!state)
        return;
    kw_http_req *req = &state->req;
    if (req->status) {
        uint64_t ns = now_ns() - req->start_ns;
        kw_http_metrics_request(srv->metrics, req->route, req->status, ns);
        access_log(req, ns);
    }
    free_request(req);
    *con_cls = NULL;
    atomic_fetch_sub(&srv->in_flight, 1);
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

/* Frees what kw_http_start allocated besides the daemon, and srv. */
static void free_parts(kw_http_server *srv)
{
    kw_http_metrics_free(srv->metrics);
    kw_accesslog_free(srv->log);
    kw_ratelimit_free(srv->signin_by_email);
    kw_ratelimit_free(srv->signin_by_addr);
    kw_hashpool_free(srv->hashpool);
    kw_proxies_free(srv->trusted_proxies);
    free(srv);
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 256 ? (unsigned)n : 1;
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
    srv->metrics = kw_http_metrics_new();
    srv->log = o->access_log_fd >= 0 ? kw_accesslog_new(o->access_log_fd) : NULL;
    srv->signin_by_email = kw_ratelimit_new(o->signin_failures_per_email, o->signin_window_s);
    srv->signin_by_addr = kw_ratelimit_new(o->signin_failures_per_addr, o->signin_window_s);
    srv->hashpool = kw_hashpool_new(o->password_check_threads, o->password_check_queue,
                                    o->password_checks_per_s);
    if (!srv->metrics || (o->access_log_fd >= 0 && !srv->log) || !srv->signin_by_email ||
        !srv->signin_by_addr || !srv->hashpool) {
        free_parts(srv);
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory.");
    }
    st = kw_proxies_parse(o->trusted_proxies, &srv->trusted_proxies, err);
    if (st != KW_OK) {
        free_parts(srv);
        return st;
    }
    /* Suspend and resume: sign-ins wait for their password check off the server threads. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_TURBO | MHD_ALLOW_SUSPEND_RESUME |
                     (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    /* Room for the request line and headers, plus the buffer body chunks are read into. */
    size_t memory = o->max_header_bytes * 2 + 16384;
    srv->daemon = MHD_start_daemon(
        flags, 0, on_accept, srv, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, srv->opt.threads,
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        o->max_connections_per_ip, MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        free_parts(srv);
        return kw_error_set(err, KW_ERR_UNAVAILABLE, "Cannot listen on %s: %s.", o->listen,
                            errno ? strerror(errno) : "the address is not available");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : 0;
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

uint16_t kw_http_port(const kw_http_server *srv)
{
    return srv->port;
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
    kw_http_event(srv, "stopping", "finishing requests in flight");
    uint64_t deadline = now_ns() + (uint64_t)srv->opt.shutdown_grace_s * 1000000000u;
    while (atomic_load(&srv->in_flight) > 0 && now_ns() < deadline) {
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    /* Sign-ins still waiting for a password check get 503 and are resumed:
     * libmicrohttpd refuses to stop with a request suspended. */
    kw_hashpool_stop(srv->hashpool);
    MHD_stop_daemon(srv->daemon);
    kw_accesslog_free(srv->log);
    srv->log = NULL;
    kw_http_event(srv, "stopped", "all connections closed");
    free_parts(srv);
}
