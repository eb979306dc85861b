/*
 * json.c - JSON forms of keyward's objects, and a wiping allocator for
 * jansson.
 */
#include "core/json.h"

/* The seam's owner: the header refuses every other file of the libraries. */
#define KW_JSON_SEAM_OWNER
#include "core/json_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "core/timefmt.h"

/* Each block carries its size in a 16-byte header (keeping malloc's
 * alignment) so that the free function knows how much to wipe. */
#define HEADER 16

static void *wiping_malloc(size_t n)
{
    unsigned char *p = malloc(n + HEADER);
    if (!p)
        return NULL;
    *(size_t *)(void *)p = n;
    return p + HEADER;
}

static void release_block(void *block, const void *data, size_t len)
{
    (void)data;
    (void)len;
    free(block);
}

/* free, unless a test looks at the wiped bytes first (core/json_internal.h). */
static kw_json_release_fn *release = release_block;

void kw_json_set_release(kw_json_release_fn *fn)
{
    release = fn ? fn : release_block;
}

static void wiping_free(void *ptr)
{
    if (!ptr)
        return;
    unsigned char *base = (unsigned char *)ptr - HEADER;
    size_t n = *(size_t *)(void *)base;
    sodium_memzero(ptr, n);
    release(base, ptr, n);
}

void kw_json_init(void)
{
    json_set_alloc_funcs(wiping_malloc, wiping_free);
}

void kw_json_free(void *p)
{
    json_free_t free_fn;
    json_get_alloc_funcs(NULL, &free_fn);
    free_fn(p);
}

/* An RFC 3339 UTC string, or JSON null for KW_TIME_NONE (an absent time). */
static json_t *time_or_null(int64_t t)
{
    if (t == KW_TIME_NONE)
        return json_null();
    char buf[KW_TIME_BUFSZ];
    kw_time_format(t, buf);
    return json_string(buf);
}

json_t *kw_json_account(const kw_account *a)
{
    return json_pack("{s:s, s:s, s:o, s:i}", "id", a->id, "name", a->name, "created_at",
                     time_or_null(a->created_at), "key_limit", a->key_limit);
}

/* A key's metadata (compact JSON object text) as an object; null when it has none. */
static json_t *metadata_or_null(const char *text)
{
    if (!text || !*text)
        return json_null();
    json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return json_null();
    }
    return doc;
}

static json_t *string_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

json_t *kw_json_key(const kw_key *k)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:b, s:s, s:o, s:o, s:o}", "id",
                     k->id, "account_id", k->account_id, "name", k->name, "environment",
                     k->environment, "masked", k->masked, "created_at", time_or_null(k->created_at),
                     "last_used_at", time_or_null(k->last_used_at), "expires_at",
                     time_or_null(k->expires_at), "enabled", k->enabled, "status",
                     kw_key_state_name(kw_key_state(k, kw_time_now())), "rolled_from",
                     string_or_null(k->rolled_from), "rolled_to", string_or_null(k->rolled_to),
                     "metadata", metadata_or_null(k->metadata));
}

json_t *kw_json_root_key(const kw_root_key *rk)
{
    return json_pack("{s:s, s:s, s:s, s:o, s:o}", "id", rk->id, "name", rk->name, "masked",
                     rk->masked, "created_at", time_or_null(rk->created_at), "last_used_at",
                     time_or_null(rk->last_used_at));
}

json_t *kw_json_user(const kw_user *u)
{
    return json_pack("{s:s, s:s, s:s, s:o}", "id", u->id, "email", u->email, "account_id",
                     u->account_id, "created_at", time_or_null(u->created_at));
}

json_t *kw_json_audit_entry(const kw_audit_entry *e)
{
    return json_pack("{s:I, s:o, s:s, s:s, s:o, s:o, s:o, s:o}", "seq", (json_int_t)e->seq, "at",
                     time_or_null(e->at), "actor", e->actor, "action", e->action, "account_id",
                     string_or_null(e->account_id), "key_id", string_or_null(e->key_id), "key_name",
                     string_or_null(e->key_name), "source_ip", string_or_null(e->source_ip));
}

/* ---- audit cursors ---- */

/*
 * A cursor is the position (an entry's seq) and a tag binding it to its
 * account: 8 bytes of seq, big-endian, then the first 8 bytes of
 * BLAKE2b(account id, seq), in base64url without padding. A cursor that
 * was changed, cut, or made for another account does not decode.
 */
#define CURSOR_BYTES 16

static void cursor_tag(const char *account_id, const unsigned char seq[8], unsigned char tag[8])
{
    unsigned char full[crypto_generichash_BYTES_MIN];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof full);
    crypto_generichash_update(&st, (const unsigned char *)"keyward audit cursor", 20);
    crypto_generichash_update(&st, (const unsigned char *)account_id, strlen(account_id) + 1);
    crypto_generichash_update(&st, seq, 8);
    crypto_generichash_final(&st, full, sizeof full);
    memcpy(tag, full, 8);
}

void kw_json_audit_cursor(const char *account_id, int64_t seq, char out[KW_AUDIT_CURSOR_BUFSZ])
{
    unsigned char raw[CURSOR_BYTES];
    uint64_t u = (uint64_t)seq;
    for (int i = 7; i >= 0; i--, u >>= 8)
        raw[i] = (unsigned char)(u & 0xff);
    cursor_tag(account_id, raw, raw + 8);
    sodium_bin2base64(out, KW_AUDIT_CURSOR_BUFSZ, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

bool kw_json_audit_cursor_parse(const char *account_id, const char *text, int64_t *seq)
{
    unsigned char raw[CURSOR_BYTES], tag[8];
    size_t len = 0;
    if (strlen(text) >= KW_AUDIT_CURSOR_BUFSZ ||
        sodium_base642bin(raw, sizeof raw, text, strlen(text), NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len != sizeof raw)
        return false;
    cursor_tag(account_id, raw, tag);
    if (sodium_memcmp(tag, raw + 8, sizeof tag) != 0)
        return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = (u << 8) | raw[i];
    if (u == 0 || u > INT64_MAX)
        return false;
    *seq = (int64_t)u;
    return true;
}

json_t *kw_json_key_list(const kw_key_list *list)
{
    json_t *keys = json_array();
    if (!keys)
        return NULL;
    for (size_t i = 0; i < list->count; i++) {
        if (json_array_append_new(keys, kw_json_key(&list->items[i])) != 0) {
            json_decref(keys);
            return NULL;
        }
    }
    return json_pack("{s:o, s:i, s:i}", "keys", keys, "active_count", list->active_count,
                     "key_limit", list->key_limit);
}

json_t *kw_json_verify_result(const kw_verify_result *r)
{
    if (r->code != KW_VERIFY_VALID)
        return json_pack("{s:b, s:s}", "valid", 0, "code", kw_verify_code_name(r->code));
    json_t *doc = json_pack("{s:b, s:s, s:s, s:s, s:s, s:s}", "valid", 1, "code", "VALID",
                            "account_id", r->key.account_id, "key_id", r->key.id, "name",
                            r->key.name, "environment", r->key.environment);
    if (doc && r->key.metadata[0] &&
        json_object_set_new(doc, "metadata", metadata_or_null(r->key.metadata)) != 0) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

/* The letter of a two-character escape (\n, \", ...) for c, or 0. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case '\b':
        return 'b';
    case '\f':
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return 0;
    }
}

/* Appends s as a JSON string body (no quotes), escaped as jansson's dumper does. */
static bool put_escaped(char **p, const char *end, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc = short_escape(c);
        size_t need = esc ? 2 : c < 0x20 ? 6 : 1;
        if ((size_t)(end - *p) <= need)
            return false;
        if (esc) {
            *(*p)++ = '\\';
            *(*p)++ = esc;
        } else if (c < 0x20) {
            memcpy(*p, "\\u00", 4);
            (*p)[4] = hex[c >> 4];
            (*p)[5] = hex[c & 15];
            *p += 6;
        } else {
            *(*p)++ = (char)c;
        }
    }
    return true;
}

static bool put_raw(char **p, const char *end, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(end - *p) <= n)
        return false;
    memcpy(*p, s, n);
    *p += n;
    return true;
}

size_t kw_json_verify_text(const kw_verify_result *r, char *out, size_t size)
{
    char *p = out;
    const char *end = out + size;
    bool ok;
    if (r->code != KW_VERIFY_VALID) {
        ok = put_raw(&p, end, "{\"valid\":false,\"code\":\"") &&
             put_raw(&p, end, kw_verify_code_name(r->code)) && put_raw(&p, end, "\"}");
    } else {
        ok = put_raw(&p, end, "{\"valid\":true,\"code\":\"VALID\",\"account_id\":\"") &&
             put_escaped(&p, end, r->key.account_id) && put_raw(&p, end, "\",\"key_id\":\"") &&
             put_escaped(&p, end, r->key.id) && put_raw(&p, end, "\",\"name\":\"") &&
             put_escaped(&p, end, r->key.name) && put_raw(&p, end, "\",\"environment\":\"") &&
             put_escaped(&p, end, r->key.environment) && put_raw(&p, end, "\"");
        /* The metadata is stored as jansson's compact text already. */
        if (ok && r->key.metadata[0])
            ok = put_raw(&p, end, ",\"metadata\":") && put_raw(&p, end, r->key.metadata);
        ok = ok && put_raw(&p, end, "}");
    }
    if (!ok || p >= end)
        return 0;
    *p = '\0';
    return (size_t)(p - out);
}

json_t *kw_json_key_created(const kw_key *k, const char *secret)
{
    return json_pack("{s:o, s:s}", "key", kw_json_key(k), "secret", secret);
}

json_t *kw_json_root_key_created(const kw_root_key *rk, const char *secret)
{
    return json_pack("{s:o, s:s}", "root_key", kw_json_root_key(rk), "secret", secret);
}
