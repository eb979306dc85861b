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
        bool ok =
            json_is_string(value) || (f->type == KW_FIELD_STRING_OR_NULL && json_is_null(value));
        if (!ok) {
            snprintf(message, sizeof message, "\"%s\" must be a string%s.", f->name,
                     f->type == KW_FIELD_STRING_OR_NULL ? " or null" : "");
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

json_t *kw_http_read_json(kw_http_req *req, const kw_http_field *fields)
{
    if (!is_json_media_type(kw_http_header(req, MHD_HTTP_HEADER_CONTENT_TYPE))) {
        kw_http_reply_error(req, 415, "The request body must be application/json.");
        return NULL;
    }
    if (req->body_len == 0) {
        kw_http_reply_error(req, 400, "The request body must be a JSON object.");
        return NULL;
    }
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

const char *kw_http_string(const json_t *body, const char *name)
{
    return json_string_value(json_object_get(body, name));
}
