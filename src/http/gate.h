/*
 * gate.h - where connections wait for their first request head.
 *
 * The gate owns the listening socket. It accepts each connection and holds
 * it, on one epoll thread, until the first request head has arrived whole
 * (read with MSG_PEEK, so the bytes stay in the socket), then checks that
 * head (framing.h) and hands the connection to libmicrohttpd. A head that
 * is refused is answered here, in keyward's JSON error format, and the
 * connection closed. Heads that do not come in time are cut off.
 *
 * Connections still waiting are what slow-header floods are made of, so
 * they are budgeted apart from served ones: each client (an IPv4 address,
 * or an IPv6 /64, the block one host usually holds) may have only a few
 * waiting at once, and when too many wait in all, the oldest goes first.
 */
#ifndef KW_HTTP_GATE_H
#define KW_HTTP_GATE_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/gate.h is in the http layer, which core, store and service must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/status.h"
#include "http/framing.h"

typedef struct kw_gate kw_gate;

/* Takes the connection fd (whose first head is in its socket); closes it on failure. */
typedef void (*kw_gate_handoff)(void *cls, int fd, const struct sockaddr *addr, socklen_t len);
/* Called on the gate's thread about four times a second. */
typedef void (*kw_gate_tick)(void *cls, uint64_t now_ns);
/* A connection refused or cut off: status 0 when closed without an answer. */
typedef void (*kw_gate_refused)(void *cls, unsigned status, const char *message);

typedef struct {
    unsigned head_timeout_s;   /* a whole head within this long of accept, else cut off */
    unsigned waiting_per_peer; /* waiting connections per client (IPv4 address or IPv6 /64) */
    unsigned waiting_max;      /* waiting connections in all; past it the oldest is closed */
    unsigned max_per_peer;     /* waiting and served connections per client */
    kw_framing_limits limits;
    kw_gate_handoff handoff;
    kw_gate_tick tick;
    kw_gate_refused refused;
    void *cls;
} kw_gate_options;

/* Starts the gate's thread on listen_fd (taken: closed by kw_gate_stop). */
kw_status kw_gate_start(int listen_fd, const kw_gate_options *o, kw_gate **out, kw_error *err);

/*
 * Adds a connection as if it had been accepted (tests and fuzzing feed
 * socketpairs this way). fd is taken. Thread-safe.
 */
void kw_gate_add(kw_gate *g, int fd, const struct sockaddr *addr, socklen_t len);

/*
 * Counts a connection of the client at addr that libmicrohttpd serves
 * (delta +1 when it starts, -1 when it ends), against max_per_peer.
 * Thread-safe.
 */
void kw_gate_served(kw_gate *g, const struct sockaddr *addr, socklen_t len, int delta);

/* From now on new connections are closed at once, and waiting ones too. */
void kw_gate_drain(kw_gate *g);

/*
 * Stops the thread and closes the listening socket and every waiting
 * connection: no connection is handed over after it returns. kw_gate_served
 * may still be called until kw_gate_free.
 */
void kw_gate_stop(kw_gate *g);
void kw_gate_free(kw_gate *g);

/* The budget group of a client address: 4 and the IPv4 address, or 6 and the /64 prefix. */
typedef struct {
    uint8_t bytes[9];
} kw_gate_peer;

kw_gate_peer kw_gate_peer_of(const struct sockaddr *addr, socklen_t len);

/*
 * The bytes of a complete JSON error response that closes the connection,
 * as keyward answers anywhere; returns its length (0 if out does not fit).
 */
size_t kw_gate_error_response(unsigned status, const char *message, char *out, size_t size);

#endif
