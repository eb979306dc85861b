/*
 * base62.c - fixed-width base62 by repeated long division.
 */
#include "core/base62.h"

#include <string.h>

#include <sodium.h>

static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

bool kw_base62_encode(const uint8_t *in, size_t n, char *out, size_t width)
{
    uint8_t num[KW_BASE62_MAX_BYTES];
    if (n > sizeof num)
        return false;
    memcpy(num, in, n);
    /* Each pass divides the big-endian number by 62 in place; the
     * remainder is the next digit from the right. */
    for (size_t i = width; i-- > 0;) {
        unsigned rem = 0;
        for (size_t j = 0; j < n; j++) {
            unsigned cur = (rem << 8) | num[j];
            num[j] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[i] = digits[rem];
    }
    bool fits = sodium_is_zero(num, n);
    sodium_memzero(num, sizeof num);
    return fits;
}

bool kw_base62_is_digit(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int digit_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'Z')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 36;
    return -1;
}

bool kw_base62_decode_u64(const char *s, size_t n, uint64_t *out)
{
    if (n == 0 || n > 10) /* 62^10 < 2^64: ten digits never overflow */
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        int d = digit_value(s[i]);
        if (d < 0)
            return false;
        v = v * 62 + (uint64_t)d;
    }
    *out = v;
    return true;
}
