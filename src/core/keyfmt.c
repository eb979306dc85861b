/*
 * keyfmt.c - generating, parsing and masking keys.
 */
#include "core/keyfmt.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>
#include <zlib.h>

#include "core/base62.h"

#define TAIL_CHARS (KW_SECRET_CHARS + KW_CHECKSUM_CHARS)

/* The longest masked form: prefix, "_", environment, "_", 4 characters, "…"
 * (3 bytes of UTF-8), 4 characters and a NUL. */
_Static_assert(KW_PREFIX_MAX + 1 + KW_ENV_MAX + 1 + 4 + 3 + 4 + 1 <= KW_MASKED_BUFSZ,
               "KW_MASKED_BUFSZ cannot hold every masked key");

/* [a-z][a-z0-9]{min-1,max-1}: the shape shared by prefixes and environments. */
static bool label_valid(const char *s, size_t len, size_t min, size_t max)
{
    if (len < min || len > max || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

bool kw_keyfmt_prefix_valid(const char *s)
{
    return s && label_valid(s, strlen(s), 2, KW_PREFIX_MAX);
}

bool kw_keyfmt_environment_valid(const char *s, size_t len)
{
    return s && label_valid(s, len, 1, KW_ENV_MAX);
}

static void checksum(const char *key, size_t len, char out[KW_CHECKSUM_CHARS])
{
    uint32_t crc = (uint32_t)crc32(0L, (const Bytef *)key, (uInt)len);
    uint8_t be[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
    kw_base62_encode(be, sizeof be, out, KW_CHECKSUM_CHARS);
}

bool kw_keyfmt_generate(const char *prefix, const char *environment, char out[KW_KEY_BUFSZ])
{
    if (!kw_keyfmt_prefix_valid(prefix) ||
        !kw_keyfmt_environment_valid(environment, environment ? strlen(environment) : 0))
        return false;
    int head = snprintf(out, KW_KEY_BUFSZ, "%s_%s_", prefix, environment);
    uint8_t secret[KW_SECRET_BYTES];
    randombytes_buf(secret, sizeof secret);
    /* 62^43 > 2^256, so 32 bytes always fit in 43 digits. */
    kw_base62_encode(secret, sizeof secret, out + head, KW_SECRET_CHARS);
    sodium_memzero(secret, sizeof secret);
    size_t body = (size_t)head + KW_SECRET_CHARS;
    checksum(out, body, out + body);
    out[body + KW_CHECKSUM_CHARS] = '\0';
    return true;
}

bool kw_keyfmt_parse(const char *key, size_t len, const char *expected_prefix,
                     kw_keyfmt_parts *parts)
{
    if (!key || len > KW_KEY_MAX || len < 2 + 1 + 1 + 1 + TAIL_CHARS)
        return false;
    const char *end = key + len;
    const char *us1 = memchr(key, '_', len);
    if (!us1)
        return false;
    const char *env = us1 + 1;
    const char *us2 = memchr(env, '_', (size_t)(end - env));
    if (!us2 || end - (us2 + 1) != TAIL_CHARS)
        return false;
    size_t prefix_len = (size_t)(us1 - key), env_len = (size_t)(us2 - env);
    if (!label_valid(key, prefix_len, 2, KW_PREFIX_MAX) ||
        !label_valid(env, env_len, 1, KW_ENV_MAX))
        return false;
    if (expected_prefix &&
        (strlen(expected_prefix) != prefix_len || memcmp(key, expected_prefix, prefix_len) != 0))
        return false;
    const char *tail = us2 + 1;
    for (size_t i = 0; i < TAIL_CHARS; i++)
        if (!kw_base62_is_digit(tail[i]))
            return false;
    char expect[KW_CHECKSUM_CHARS];
    checksum(key, len - KW_CHECKSUM_CHARS, expect);
    if (memcmp(expect, end - KW_CHECKSUM_CHARS, KW_CHECKSUM_CHARS) != 0)
        return false;
    if (parts) {
        parts->prefix = key;
        parts->prefix_len = prefix_len;
        parts->environment = env;
        parts->environment_len = env_len;
    }
    return true;
}

void kw_keyfmt_mask(const char *key, size_t len, char out[KW_MASKED_BUFSZ])
{
    kw_keyfmt_parts p;
    if (!kw_keyfmt_parse(key, len, NULL, &p)) {
        snprintf(out, KW_MASKED_BUFSZ, "invalid");
        return;
    }
    const char *secret = p.environment + p.environment_len + 1;
    snprintf(out, KW_MASKED_BUFSZ, "%.*s_%.*s_%.4s\xe2\x80\xa6%.4s", (int)p.prefix_len, p.prefix,
             (int)p.environment_len, p.environment, secret, key + len - 4);
}
