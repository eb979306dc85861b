/*
 * conntrack.h - deadlines for the connections libmicrohttpd serves.
 *
 * libmicrohttpd's own timeout restarts with every byte, so a client that
 * trickles one byte every few seconds would never time out. Here each
 * connection carries a deadline by which its current request must have
 * arrived whole; the gate's thread calls kw_conntrack_expire a few times a
 * second, which shuts down the sockets past theirs. libmicrohttpd then
 * sees the connection fail and closes it.
 *
 * Entries are added and removed from libmicrohttpd's connection
 * notifications: the CLOSED one comes before libmicrohttpd closes the
 * socket, so a shut-down descriptor is never one already reused.
 */
#ifndef KW_HTTP_CONNTRACK_H
#define KW_HTTP_CONNTRACK_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/conntrack.h is in the http layer, which core, store and service must not include"
#endif

#include <stdint.h>

typedef struct kw_conntrack kw_conntrack;
typedef struct kw_conntrack_entry kw_conntrack_entry;

kw_conntrack *kw_conntrack_new(void);
/* Frees the table; entries still in it are freed too. */
void kw_conntrack_free(kw_conntrack *t);

/* A new connection on socket fd, due by deadline_ns (monotonic; 0: none). NULL: out of memory. */
kw_conntrack_entry *kw_conntrack_add(kw_conntrack *t, int fd, uint64_t deadline_ns);
void kw_conntrack_remove(kw_conntrack *t, kw_conntrack_entry *e);

/* Sets the deadline (0: none). Lock-free: called for every request. */
void kw_conntrack_set_deadline(kw_conntrack_entry *e, uint64_t deadline_ns);

/* Shuts down the connections past their deadline; returns how many. */
unsigned kw_conntrack_expire(kw_conntrack *t, uint64_t now_ns);

#endif
