/*
 * clientaddr.h - who the client is: the peer of the connection, or, when
 * that peer is a trusted reverse proxy, the address the proxies name in
 * X-Forwarded-For or Forwarded (RFC 7239).
 *
 * The headers are read from the right, the end the nearest proxy appends
 * to: hops that are trusted proxies are skipped, and the first address that
 * is not one is the client. Whatever a client writes itself stays to the
 * left of that and is never reached. A header that cannot be read (a
 * malformed entry on the way, "unknown" or an obfuscated name where the
 * client should be, or two headers that disagree) gives the peer's address:
 * never a guess, never text from the header.
 */
#ifndef KW_CLIENTADDR_H
#define KW_CLIENTADDR_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/clientaddr.h is in the http layer, which core, store and service must not include"
#endif

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/status.h"

/* An address as 16 bytes of IPv6; an IPv4 address is IPv4-mapped (::ffff:a.b.c.d). */
typedef struct {
    uint8_t b[16];
} kw_ip;

/* Room for an address as text and a NUL (INET6_ADDRSTRLEN). */
#define KW_IP_TEXT_BUFSZ 46

/* Parses the len bytes at s as a bare IPv4 or IPv6 address. */
bool kw_ip_parse(const char *s, size_t len, kw_ip *out);

/* The address of an AF_INET or AF_INET6 socket address; false for another family. */
bool kw_ip_from_sockaddr(const struct sockaddr *sa, kw_ip *out);

/* The address as text; an IPv4-mapped one as plain IPv4 ("192.0.2.1"). */
void kw_ip_format(const kw_ip *ip, char out[KW_IP_TEXT_BUFSZ]);

/* A set of address ranges: the trusted proxies. */
typedef struct kw_proxies kw_proxies;

/*
 * Parses a comma-separated list of addresses and CIDR ranges
 * ("10.0.0.0/8, 192.0.2.7, fd00::/8"). An IPv4 range also matches its
 * IPv4-mapped IPv6 form. Bits past the prefix are ignored. *out is NULL
 * for an empty list (no proxy is trusted), else the caller frees it.
 * KW_ERR_INVALID names the entry by its position, never by its text.
 */
kw_status kw_proxies_parse(const char *list, kw_proxies **out, kw_error *err);
void kw_proxies_free(kw_proxies *proxies);

/* True when ip lies in one of the ranges (never for a NULL list). */
bool kw_proxies_trust(const kw_proxies *proxies, const kw_ip *ip);

/*
 * The client of a request whose connection came from peer. xff and
 * forwarded are the values of the X-Forwarded-For and Forwarded headers
 * (several of one name joined with commas, in order), or NULL when absent.
 * They are read only when peer is trusted; when both are present they
 * must name the same client.
 */
kw_ip kw_client_ip(const kw_proxies *proxies, const kw_ip *peer, const char *xff,
                   const char *forwarded);

#endif
