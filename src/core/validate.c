/*
 * validate.c - checks on user-supplied text.
 */
#include "core/validate.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "core/ids.h"
#include "core/keyfmt.h"

/*
 * Decodes one UTF-8 sequence at s (n bytes left) into *cp and returns its
 * length, or 0 when it is malformed: truncated, overlong, a surrogate, or
 * above U+10FFFF.
 */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t min, v;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, min = 0x80, v = s[0] & 0x1Fu;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, min = 0x800, v = s[0] & 0x0Fu;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, v = s[0] & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

bool kw_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_decode(p + i, n - i, &cp);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

static bool is_space(uint32_t cp)
{
    return cp == ' ' || (cp >= '\t' && cp <= '\r') || cp == 0xA0;
}

/* Characters a name may not hold: controls, and those that reorder or
 * break the text around them (Trojan Source-style spoofing in lists). */
static bool is_forbidden(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x200E || cp == 0x200F || cp == 0xFEFF || cp == 0xFFFE ||
           cp == 0xFFFF;
}

kw_status kw_validate_name(const char *in, const char *field, char out[KW_NAME_BUFSZ],
                           kw_error *err)
{
    if (!in)
        return kw_error_set(err, KW_ERR_INVALID, "%s is required.", field);
    const unsigned char *s = (const unsigned char *)in;
    size_t n = strlen(in);
    if (!kw_utf8_valid(in, n))
        return kw_error_set(err, KW_ERR_INVALID, "%s must be valid UTF-8.", field);

    /* Find the first and last non-space code points. */
    size_t start = n, end = 0, chars = 0;
    uint32_t cp = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_decode(s + i, n - i, &cp);
        if (len == 0) /* cannot happen after kw_utf8_valid; never loop on it */
            return kw_error_set(err, KW_ERR_INVALID, "%s must be valid UTF-8.", field);
        if (!is_space(cp)) {
            if (start == n)
                start = i;
            end = i + len;
        }
        i += len;
    }
    if (start == n)
        return kw_error_set(err, KW_ERR_INVALID, "%s must not be empty.", field);
    for (size_t i = start; i < end;) {
        size_t len = utf8_decode(s + i, end - i, &cp);
        if (len == 0 || is_forbidden(cp))
            return kw_error_set(err, KW_ERR_INVALID,
                                "%s must not contain control or direction-changing characters.",
                                field);
        chars++;
        i += len;
    }
    if (chars > KW_NAME_MAX)
        return kw_error_set(err, KW_ERR_INVALID, "%s must be 1 to %d characters long.", field,
                            KW_NAME_MAX);
    memcpy(out, in + start, end - start);
    out[end - start] = '\0';
    return KW_OK;
}

kw_status kw_validate_environment(const char *env, kw_error *err)
{
    if (!env || !kw_keyfmt_environment_valid(env, strlen(env)))
        return kw_error_set(err, KW_ERR_INVALID,
                            "environment must be a lowercase label: a letter, then up to 15 "
                            "letters or digits (e.g. production, staging).");
    if (strcmp(env, KW_ROOT_ENVIRONMENT) == 0)
        return kw_error_set(err, KW_ERR_INVALID, "environment \"root\" is reserved for root keys.");
    return KW_OK;
}

kw_status kw_validate_email(const char *in, char out[KW_EMAIL_BUFSZ], kw_error *err)
{
    size_t n = in ? strlen(in) : 0;
    const char *at = in ? strchr(in, '@') : NULL;
    bool ok = n >= 3 && n <= KW_EMAIL_MAX && at && at != in && at - in <= 64 && at[1] &&
              !strchr(at + 1, '@') && at[1] != '.' && in[n - 1] != '.';
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        bool in_domain = in + i > at;
        if (c <= ' ' || c >= 0x7F || strchr("\"(),:;<>[\\]", c) ||
            (in_domain && !isalnum(c) && c != '.' && c != '-'))
            ok = false;
    }
    if (!ok)
        return kw_error_set(err, KW_ERR_INVALID, "email must be an address like name@example.com.");
    for (size_t i = 0; i <= n; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    return KW_OK;
}

kw_status kw_validate_id(const char *id, const char *kind, const char *field, kw_error *err)
{
    if (!kw_id_valid(id, kind))
        return kw_error_set(err, KW_ERR_INVALID, "%s must be an id of the form %s_….", field, kind);
    return KW_OK;
}
