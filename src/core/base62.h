/*
 * base62.h - fixed-width base62 ([0-9A-Za-z]) of big-endian byte strings.
 *
 * Fixed width keeps every key the same length whatever its value, so the
 * shape check can be exact.
 */
#ifndef KW_BASE62_H
#define KW_BASE62_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest input kw_base62_encode accepts, in bytes. */
#define KW_BASE62_MAX_BYTES 64

/*
 * Writes the n-byte big-endian number at in as exactly `width` base62
 * digits (most significant first, zero-padded) to out; no NUL is written.
 * Returns false if the number needs more than width digits or n is too big.
 * The scratch copy of the input is wiped.
 */
bool kw_base62_encode(const uint8_t *in, size_t n, char *out, size_t width);

/* true when c is a base62 digit. */
bool kw_base62_is_digit(char c);

/* Decodes up to 10 base62 digits into *out; false on a non-digit or overflow. */
bool kw_base62_decode_u64(const char *s, size_t n, uint64_t *out);

#endif
