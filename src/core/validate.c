/*
 * validate.c - checks on user-supplied text.
 *
 * Unicode decoding and character properties come from libunistring, so the
 * classes below follow the Unicode version it implements, not ranges kept
 * by hand.
 */
#include "core/validate.h"

#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unictype.h>
#include <unistr.h>

#include "core/ids.h"
#include "core/json.h"
#include "core/keyfmt.h"

#define METADATA_NAME_MAX 32
/* Input past this is refused unparsed: no whitespace makes 1 KiB of JSON this long. */
#define METADATA_TEXT_MAX (16 * KW_METADATA_MAX)

bool kw_utf8_valid(const char *s, size_t n)
{
    return u8_check((const uint8_t *)s, n) == NULL;
}

/*
 * Characters that show as nothing but space: White_Space, and U+2800
 * BRAILLE PATTERN BLANK, a symbol to Unicode (the braille cell without dots)
 * that renders as an empty gap. They are trimmed from the ends of a name,
 * and a name of nothing else is empty; inside a name they are allowed
 * unless is_forbidden refuses them (tab, line separator), since braille
 * text spaces its words with U+2800. The Hangul fillers (U+115F, U+1160,
 * U+3164, U+FFA0) are not listed: they are Default_Ignorable, refused
 * wherever they stand.
 */
static bool is_blank(ucs4_t cp)
{
    return uc_is_property_white_space(cp) || cp == 0x2800;
}

/*
 * Why a name may not hold cp, as the end of "must not contain ...", or NULL
 * when it may. Refused: controls (Cc); format characters (Cf: direction
 * marks and overrides, joiners, soft hyphen, BOM, tags) and every other
 * Default_Ignorable_Code_Point (variation selectors, fillers, unassigned
 * ignorables), which render as nothing and let one name pass for another in
 * a list; line and paragraph separators; noncharacters.
 */
static const char *forbidden_reason(ucs4_t cp)
{
    if (uc_is_general_category(cp, UC_CATEGORY_Cc))
        return "control characters";
    if (uc_is_general_category(cp, UC_CATEGORY_Cf) ||
        uc_is_property_default_ignorable_code_point(cp))
        return "invisible or formatting characters";
    if (uc_is_general_category(cp, UC_CATEGORY_Zl) || uc_is_general_category(cp, UC_CATEGORY_Zp))
        return "line or paragraph separators";
    if (uc_is_property_not_a_character(cp))
        return "noncharacters";
    return NULL;
}

/* Decodes the code point at s (n > 0 bytes of valid UTF-8) into *cp; its length. */
static size_t decode(const char *s, size_t n, ucs4_t *cp)
{
    int len = u8_mbtoucr(cp, (const uint8_t *)s, n);
    return len > 0 ? (size_t)len : 1; /* never on checked input; never loop on it */
}

kw_status kw_validate_name(const char *in, const char *field, char out[KW_NAME_BUFSZ],
                           kw_error *err)
{
    if (!in)
        return kw_error_set(err, KW_ERR_INVALID, "%s is required.", field);
    size_t n = strlen(in);
    if (!kw_utf8_valid(in, n))
        return kw_error_set(err, KW_ERR_INVALID, "%s must be valid UTF-8.", field);

    /* The first and last characters that are not blank. */
    size_t start = n, end = 0, chars = 0;
    ucs4_t cp = 0;
    for (size_t i = 0; i < n;) {
        size_t len = decode(in + i, n - i, &cp);
        if (!is_blank(cp)) {
            if (start == n)
                start = i;
            end = i + len;
        }
        i += len;
    }
    if (start == n)
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s must not be empty: it needs at least one visible character.",
                            field);
    for (size_t i = start; i < end;) {
        size_t len = decode(in + i, end - i, &cp);
        const char *reason = forbidden_reason(cp);
        if (reason)
            return kw_error_set(err, KW_ERR_INVALID, "%s must not contain %s (found U+%04X).",
                                field, reason, (unsigned)cp);
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

/* [a-z][a-z0-9_]{0,31} */
static bool metadata_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > METADATA_NAME_MAX || name[0] < 'a' || name[0] > 'z')
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_'))
            return false;
    return true;
}

/*
 * How a message names member `index` (from 0) called name: quoted when it
 * is short printable ASCII, else by its position only, so that a message
 * never repeats control characters or a long text.
 */
static void metadata_member_label(const char *name, size_t index, char *out, size_t size)
{
    bool printable = strlen(name) <= METADATA_NAME_MAX * 2;
    for (const char *p = name; printable && *p; p++)
        printable = *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
    if (printable)
        snprintf(out, size, "metadata member \"%s\"", name);
    else
        snprintf(out, size, "metadata member %zu", index + 1);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_NULL:
        return "null";
    default:
        return "a value of another kind";
    }
}

/* Checks the members of object root (see kw_validate_metadata). */
static kw_status check_metadata_members(json_t *root, kw_error *err)
{
    if (json_object_size(root) > KW_METADATA_MEMBERS)
        return kw_error_set(err, KW_ERR_INVALID,
                            "metadata must have at most %d members; it has %zu.",
                            KW_METADATA_MEMBERS, json_object_size(root));
    const char *name;
    json_t *value;
    size_t index = 0;
    json_object_foreach(root, name, value)
    {
        char label[96];
        metadata_member_label(name, index++, label, sizeof label);
        if (!metadata_name_ok(name))
            return kw_error_set(err, KW_ERR_INVALID,
                                "%s: a member name must be a lowercase letter, then up to 31 "
                                "lowercase letters, digits or underscores.",
                                label);
        if (!json_is_string(value) && !json_is_number(value) && !json_is_boolean(value))
            return kw_error_set(err, KW_ERR_INVALID,
                                "%s must be a string, a number or a boolean, not %s.", label,
                                json_kind(value));
    }
    return KW_OK;
}

kw_status kw_validate_metadata(const char *text, char out[KW_METADATA_BUFSZ], kw_error *err)
{
    out[0] = '\0';
    if (!text || strlen(text) > METADATA_TEXT_MAX)
        return kw_error_set(err, KW_ERR_INVALID,
                            "metadata must be a JSON object of at most %d bytes.", KW_METADATA_MAX);
    json_error_t je;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return kw_error_set(err, KW_ERR_INVALID,
                            "metadata must be valid JSON (error at line %d, column %d).", je.line,
                            je.column);
    kw_status st = json_is_object(root)
                       ? check_metadata_members(root, err)
                       : kw_error_set(err, KW_ERR_INVALID, "metadata must be a JSON object.");
    char *compact = st == KW_OK ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (st != KW_OK)
        return st;
    if (!compact)
        return kw_error_set(err, KW_ERR_INTERNAL, "out of memory.");
    size_t n = strlen(compact);
    if (n > KW_METADATA_MAX)
        st = kw_error_set(err, KW_ERR_INVALID,
                          "metadata must be at most %d bytes once written compactly; it is %zu.",
                          KW_METADATA_MAX, n);
    else
        memcpy(out, compact, n + 1);
    kw_json_free(compact);
    return st;
}
