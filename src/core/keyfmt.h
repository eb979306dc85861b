/*
 * keyfmt.h - the key format: {prefix}_{environment}_{secret}{checksum}.
 *
 * prefix       [a-z][a-z0-9]{1,9}, deployment-wide ("kw")
 * environment  [a-z][a-z0-9]{0,15} ("production"; KW_ENV_MAX characters at
 *              most); root keys use "root"
 * secret       32 CSPRNG bytes, base62, fixed width 43
 * checksum     CRC-32 of everything before it, base62, fixed width 6
 *
 * Parsing checks shape and checksum only: it computes no hash and touches
 * no store, so garbage is refused for the price of a CRC.
 */
#ifndef KW_KEYFMT_H
#define KW_KEYFMT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/model.h"

#define KW_PREFIX_MAX       10
#define KW_SECRET_BYTES     32
#define KW_SECRET_CHARS     43
#define KW_CHECKSUM_CHARS   6
#define KW_KEY_MAX          (KW_PREFIX_MAX + 1 + KW_ENV_MAX + 1 + KW_SECRET_CHARS + KW_CHECKSUM_CHARS)
#define KW_KEY_BUFSZ        (KW_KEY_MAX + 1)
#define KW_ROOT_ENVIRONMENT "root"

/* A parsed key: views into the parsed string, which must outlive them. */
typedef struct {
    const char *prefix;
    size_t prefix_len;
    const char *environment;
    size_t environment_len;
} kw_keyfmt_parts;

/* true when s is a valid deployment prefix. */
bool kw_keyfmt_prefix_valid(const char *s);

/* true when the len bytes at s form a valid environment label. */
bool kw_keyfmt_environment_valid(const char *s, size_t len);

/*
 * Writes a new key with a fresh secret into out (NUL-terminated). Returns
 * false if prefix or environment is not valid. The caller wipes out.
 */
bool kw_keyfmt_generate(const char *prefix, const char *environment, char out[KW_KEY_BUFSZ]);

/*
 * true when the len bytes at key have the key shape with a matching checksum
 * and, when expected_prefix is not NULL, that prefix. Fills *parts if given.
 */
bool kw_keyfmt_parse(const char *key, size_t len, const char *expected_prefix,
                     kw_keyfmt_parts *parts);

/*
 * The masked form of a parsed key, {prefix}_{environment}_{first 4}…{last 4}:
 * enough to recognise a key, never enough to use it.
 */
void kw_keyfmt_mask(const char *key, size_t len, char out[KW_MASKED_BUFSZ]);

#endif
