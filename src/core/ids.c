/*
 * ids.c - random opaque identifiers.
 */
#include "core/ids.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/base62.h"

void kw_id_new(const char *kind, char out[KW_ID_BUFSZ])
{
    uint8_t raw[16];
    randombytes_buf(raw, sizeof raw);
    int n = snprintf(out, KW_ID_BUFSZ, "%s_", kind);
    /* 62^22 > 2^128: 16 random bytes always fit in 22 digits. */
    kw_base62_encode(raw, sizeof raw, out + n, KW_ID_RANDOM_CHARS);
    out[n + KW_ID_RANDOM_CHARS] = '\0';
}

bool kw_id_valid(const char *s, const char *kind)
{
    if (!s || !kind)
        return false;
    size_t k = strlen(kind);
    if (strncmp(s, kind, k) != 0 || s[k] != '_' || strlen(s + k + 1) != KW_ID_RANDOM_CHARS)
        return false;
    for (const char *p = s + k + 1; *p; p++)
        if (!kw_base62_is_digit(*p))
            return false;
    return true;
}
