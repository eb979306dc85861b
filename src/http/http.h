/*
 * http.h - `keyward serve`: the HTTP API of src/http/openapi.json, on libmicrohttpd.
 *
 * The server is a thin face over the key service: it parses and checks
 * requests, authorises them, calls the service and renders its answers.
 * It runs its own threads (one epoll loop per thread) until kw_http_stop.
 */
#ifndef KW_HTTP_H
#define KW_HTTP_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/http.h is in the http layer, which core, store and service must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/service.h"
#include "core/status.h"

typedef struct kw_http_server kw_http_server;

typedef struct {
    const char *listen;                 /* "HOST:PORT" or "[V6]:PORT"; port 0 picks a free one */
    unsigned threads;                   /* event-loop threads; 0: one per online CPU */
    size_t max_body_bytes;              /* 16384: larger bodies get 413 */
    size_t max_header_bytes;            /* 8192: request line (414) and headers (431) */
    unsigned max_connections;           /* 4096 in all */
    unsigned max_connections_per_ip;    /* 256 per client address */
    unsigned idle_timeout_s;            /* 30: idle connections are closed */
    unsigned request_head_timeout_s;    /* 10: the first request's head must arrive within this
                                           long of accept, each body within this long of
                                           its head; a later request must arrive whole
                                           within idle_timeout_s of the previous answer */
    unsigned waiting_per_ip;            /* 8: connections per client (IPv4 address or IPv6
                                           /64) that have not sent a whole first head */
    unsigned shutdown_grace_s;          /* 10: how long kw_http_stop waits for requests */
    int access_log_fd;                  /* one JSON line per request; -1: off */
    bool secure_cookies;                /* mark the session cookie Secure (behind TLS) */
    const char *public_origin;          /* "https://keys.example.com": the console's origin;
                                           NULL: the Host each request was sent to */
    unsigned signin_failures_per_email; /* 5 per window, then 429 */
    unsigned signin_failures_per_addr;  /* 20 per window, then 429 */
    unsigned signin_window_s;           /* 900 */
    unsigned password_check_threads;    /* 1: threads that check sign-in passwords */
    unsigned password_check_queue;      /* 16 sign-ins waiting for a check, then 503 */
    unsigned password_checks_per_s;     /* 1: checks started per second at most; 0: any */
    const char *trusted_proxies;        /* "10.0.0.0/8, fd00::/8": proxies whose
                                           X-Forwarded-For or Forwarded names the client;
                                           NULL or "": none */
} kw_http_options;

void kw_http_options_defaults(kw_http_options *o);

/*
 * Binds and starts serving svc (borrowed: it must outlive the server).
 * Call kw_http_ready once whatever must precede traffic is done.
 */
kw_status kw_http_start(kw_service *svc, const kw_http_options *o, kw_http_server **out,
                        kw_error *err);

/* Announces on stderr, as the JSON event "listening", that the server is ready. */
void kw_http_ready(const kw_http_server *srv);

/* Writes a JSON line {"time","event","detail"} about the server to stderr. */
void kw_http_event(const kw_http_server *srv, const char *event, const char *detail);

/* "http://127.0.0.1:8080": the address clients reach this server at. */
const char *kw_http_url(const kw_http_server *srv);

/*
 * Serves an already connected socket (taken) as if it had been accepted
 * from addr: tests and fuzzing feed raw bytes through socketpairs this way.
 */
void kw_http_add_connection(kw_http_server *srv, int fd, const struct sockaddr *addr,
                            socklen_t len);

/*
 * Graceful stop: stops accepting connections, lets requests in flight
 * finish (up to shutdown_grace_s), then closes every connection and frees
 * the server. The service stays open: close it afterwards to write the
 * pending last-used times.
 */
void kw_http_stop(kw_http_server *srv);

/* One route of the API: what /openapi.json documents and the tests check. */
typedef struct {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "/v1/accounts/{account_id}/keys" */
} kw_http_route_info;

/* The served routes, in table order. */
const kw_http_route_info *kw_http_route_info_at(size_t i);
size_t kw_http_route_count(void);

#endif
