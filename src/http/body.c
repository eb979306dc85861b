/*
 * body.c - reading a JSON request body: media type, UTF-8, JSON syntax,
 * no duplicate members, and exactly the members a route accepts.
 *
 * Messages never quote the body: it may hold a key. An unknown member's
 * name is quoted only when it is short and plain (a key never is).
 */
#include "http/http_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* True for "application/json", optionally with parameters; a charset must be UTF-8. */
static bool is_json_media_type(const char *value)
{
    static const char type[] = "application/json";
    if (!value || strncasecmp(value, type, sizeof type - 1) != 0)
        return false;
    const char *rest = value + sizeof type - 1;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (*rest == '\0')
        return true;
    if (*rest != ';')
        return false;
    const char *charset = strcasestr(rest, "charset=");
    if (!charset)
        return true;
    charset += strlen("charset=");
    if (*charset == '"')
        charset++;
    return strncasecmp(charset, "utf-8", 5) == 0 &&
           (charset[5] == '\0' || charset[5] == '"' || charset[5] == ';' || charset[5] == ' ');
}

/* A member name fit to quote in a message: short, plain ASCII. */
static bool quotable(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_' && name[i] != '-')
            return false;
    return true;
}

static const kw_http_field *find_field(const kw_http_field *fields, const char *name)
{
    for (; fields->name; fields++)
        if (strcmp(fields->name, name) == 0)
            return fields;
    return NULL;
}

static bool type_ok(kw_field_type type, const json_t *value)
{
    switch (type) {
    case KW_FIELD_STRING:
        return json_is_string(value);
    case KW_FIELD_STRING_OR_NULL:
        return json_is_string(value) || json_is_null(value);
    case KW_FIELD_INTEGER:
        return json_is_integer(value);
    case KW_FIELD_BOOLEAN:
        return json_is_boolean(value);
    case KW_FIELD_OBJECT_OR_NULL:
        return json_is_object(value) || json_is_null(value);
    }
    return false;
}

static const char *type_name(kw_field_type type)
{
    switch (type) {
    case KW_FIELD_STRING:
        return "a string";
    case KW_FIELD_STRING_OR_NULL:
        return "a string or null";
    case KW_FIELD_INTEGER:
        return "an integer";
    case KW_FIELD_BOOLEAN:
        return "true or false";
    case KW_FIELD_OBJECT_OR_NULL:
        return "an object or null";
    }
    return "of another type";
}

static bool check_members(kw_http_req *req, const json_t *obj, const kw_http_field *fields)
{
    char message[128];
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)obj, name, value)
    {
        const kw_http_field *f = find_field(fields, name);
        if (!f) {
            if (quotable(name))
                snprintf(message, sizeof message, "Unknown field \"%s\".", name);
            else
                snprintf(message, sizeof message, "The request body has an unknown field.");
            kw_http_reply_error(req, 400, message);
            return false;
        }
        if (!type_ok(f->type, value)) {
            snprintf(message, sizeof message, "\"%s\" must be %s.", f->name, type_name(f->type));
            kw_http_reply_error(req, 400, message);
            return false;
        }
    }
    for (; fields->name; fields++) {
        if (fields->required && !json_object_get(obj, fields->name)) {
            snprintf(message, sizeof message, "\"%s\" is required.", fields->name);
            kw_http_reply_error(req, 400, message);
            return false;
        }
    }
    return true;
}

/* The media type and a non-empty body; false after replying 415 or 400. */
static bool check_body(kw_http_req *req)
{
    if (!is_json_media_type(req->content_type)) {
        kw_http_reply_error(req, 415, "The request body must be application/json.");
        return false;
    }
    if (req->body_len == 0) {
        kw_http_reply_error(req, 400, "The request body must be a JSON object.");
        return false;
    }
    return true;
}

static json_t *parse_json(kw_http_req *req, const kw_http_field *fields)
{
    json_error_t jerr;
    json_t *doc =
        json_loadb(req->body ? req->body : "", req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        const char *message = "The request body is not valid JSON.";
        switch (json_error_code(&jerr)) {
        case json_error_invalid_utf8:
            message = "The request body is not valid UTF-8.";
            break;
        case json_error_duplicate_key:
            message = "The request body names a field twice.";
            break;
        case json_error_null_character:
        case json_error_null_byte_in_key:
            message = "The request body contains a NUL character.";
            break;
        default:
            break;
        }
        kw_http_reply_error(req, 400, message);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        kw_http_reply_error(req, 400, "The request body must be a JSON object.");
        return NULL;
    }
    if (!check_members(req, doc, fields)) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

json_t *kw_http_read_json(kw_http_req *req, const kw_http_field *fields)
{
    return check_body(req) ? parse_json(req, fields) : NULL;
}

/* ---- the common case, without building a tree ---- */

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * A string of printable ASCII without escapes at *p: its text is
 * [*start, *p - 1) once *p is past the closing quote.
 */
static bool plain_string(const char **p, const char *end, const char **start)
{
    const char *s = *p;
    if (s == end || *s != '"')
        return false;
    *start = ++s;
    while (s < end && *s != '"') {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
        s++;
    }
    if (s == end)
        return false;
    *p = s + 1;
    return true;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/*
 * Reads the body when it is the plain case: an object whose members are
 * each one of fields, once, of its type, with values that are null or
 * strings of printable ASCII without escapes, and with every required
 * field present. Any such body is valid JSON that parse_json would accept
 * with the same values; anything else returns false untouched, and
 * parse_json gives it its full reading and its exact error. On success
 * each string value is ended with a NUL in place of its closing quote.
 */
static bool read_plain(kw_http_req *req, const kw_http_field *fields, kw_http_value *values,
                       size_t count)
{
    const char *p = req->body, *end = req->body + req->body_len;
    char *ends[KW_HTTP_MAX_FIELDS] = {NULL};
    for (size_t i = 0; i < count; i++)
        values[i] = (kw_http_value){NULL, 0, false};
    p = skip_ws(p, end);
    if (p == end || *p++ != '{')
        return false;
    p = skip_ws(p, end);
    if (p < end && *p == '}')
        return false; /* {}: a required field is missing, or nothing to read */
    for (;;) {
        const char *name;
        if (!plain_string(&p, end, &name))
            return false;
        size_t name_len = (size_t)(p - 1 - name), f = 0;
        while (f < count &&
               (strncmp(fields[f].name, name, name_len) != 0 || fields[f].name[name_len] != '\0'))
            f++;
        if (f == count || values[f].present)
            return false;
        if (fields[f].type != KW_FIELD_STRING && fields[f].type != KW_FIELD_STRING_OR_NULL)
            return false; /* not a string: the parser reads it */
        p = skip_ws(p, end);
        if (p == end || *p++ != ':')
            return false;
        p = skip_ws(p, end);
        values[f].present = true;
        if ((size_t)(end - p) >= 4 && memcmp(p, "null", 4) == 0) {
            if (fields[f].type != KW_FIELD_STRING_OR_NULL)
                return false;
            p += 4;
        } else {
            const char *value;
            if (!plain_string(&p, end, &value))
                return false;
            values[f].value = value;
            values[f].len = (size_t)(p - 1 - value);
            ends[f] = req->body + (p - 1 - req->body);
        }
        p = skip_ws(p, end);
        if (p == end)
            return false;
        if (*p == '}')
            break;
        if (*p++ != ',')
            return false;
        p = skip_ws(p, end);
    }
    if (skip_ws(p + 1, end) != end)
        return false;
    for (size_t f = 0; f < count; f++)
        if (fields[f].required && !values[f].present)
            return false;
    for (size_t f = 0; f < count; f++)
        if (ends[f])
            *ends[f] = '\0';
    return true;
}

bool kw_http_read_values(kw_http_req *req, const kw_http_field *fields, kw_http_value *values,
                         json_t **doc)
{
    *doc = NULL;
    size_t count = 0;
    while (fields[count].name)
        count++;
    if (count > KW_HTTP_MAX_FIELDS) { /* a route asking for more than the room here */
        kw_http_reply_error(req, 500, "An internal error occurred.");
        return false;
    }
    if (!check_body(req))
        return false;
    if (read_plain(req, fields, values, count))
        return true;
    *doc = parse_json(req, fields);
    if (!*doc)
        return false;
    for (size_t f = 0; f < count; f++) {
        const json_t *v = json_object_get(*doc, fields[f].name);
        values[f].present = v != NULL;
        values[f].value = json_string_value(v);
        values[f].len = values[f].value ? json_string_length(v) : 0;
    }
    return true;
}

const char *kw_http_string(const json_t *body, const char *name)
{
    return json_string_value(json_object_get(body, name));
}

/* ---- query parameters ---- */

typedef struct {
    const char *const *allowed;
    const char *name;
    const char *value;
    unsigned counts[8]; /* how often each allowed name appears */
    bool unknown;
} query_scan;

static enum MHD_Result scan_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    (void)value_size;
    query_scan *q = cls;
    size_t i = 0;
    while (q->allowed[i] &&
           (strlen(q->allowed[i]) != key_size || memcmp(q->allowed[i], key, key_size) != 0))
        i++;
    if (!q->allowed[i] || i >= sizeof q->counts / sizeof q->counts[0]) {
        q->unknown = true;
        return MHD_NO;
    }
    q->counts[i]++;
    if (strcmp(q->allowed[i], q->name) == 0)
        q->value = value ? value : "";
    return MHD_YES;
}

const char *kw_http_query(kw_http_req *req, const char *name, const char *const *allowed, bool *bad)
{
    query_scan q = {.allowed = allowed, .name = name};
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, scan_param, &q);
    *bad = true;
    if (q.unknown) {
        kw_http_reply_error(req, 400, "The query has an unknown parameter.");
        return NULL;
    }
    for (size_t i = 0; allowed[i]; i++) {
        if (q.counts[i] > 1) {
            char message[96];
            snprintf(message, sizeof message, "The query names \"%s\" twice.", allowed[i]);
            kw_http_reply_error(req, 400, message);
            return NULL;
        }
    }
    *bad = false;
    return q.value;
}
