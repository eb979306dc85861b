/*
 * json.h - the JSON form of keyward's objects, shared by the CLI and HTTP
 * so that both print exactly the same documents.
 *
 * kw_json_init() makes jansson wipe every block it frees, so that a key or
 * password that passed through a JSON document does not linger in freed
 * heap memory. Call it once at start-up, before any other jansson call.
 *
 * Each kw_json_* constructor returns a new reference (caller json_decref's)
 * or NULL when out of memory. Absent times are JSON null.
 */
#ifndef KW_JSON_H
#define KW_JSON_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/model.h"

void kw_json_init(void);

/* Frees (and wipes) a string returned by json_dumps once kw_json_init has run. */
void kw_json_free(void *p);

json_t *kw_json_account(const kw_account *a);
/* A key, with its "status" (kw_key_state) at the system clock's now. */
json_t *kw_json_key(const kw_key *k);
json_t *kw_json_root_key(const kw_root_key *rk);
json_t *kw_json_user(const kw_user *u);
json_t *kw_json_audit_entry(const kw_audit_entry *e);
/*
 * The opaque cursor of an account's audit log at position seq (> 0), as
 * next_cursor shows it: base64url, bound to the account. _parse returns
 * false for a text that is not such a cursor of that account.
 */
#define KW_AUDIT_CURSOR_BUFSZ 32
void kw_json_audit_cursor(const char *account_id, int64_t seq, char out[KW_AUDIT_CURSOR_BUFSZ]);
bool kw_json_audit_cursor_parse(const char *account_id, const char *text, int64_t *seq);
/* {"keys": [...], "active_count": N, "key_limit": N} */
json_t *kw_json_key_list(const kw_key_list *list);
/* {"valid": true, "code": "VALID", "account_id", "key_id", "name", "environment"}
 * (and "metadata", an object, when the key has metadata)
 * or {"valid": false, "code": "..."} */
json_t *kw_json_verify_result(const kw_verify_result *r);
/*
 * The compact text of kw_json_verify_result(r), byte for byte, written to
 * out without building a JSON tree: the hot path of verification. Returns
 * its length, or 0 when it does not fit in size bytes (NUL included).
 */
size_t kw_json_verify_text(const kw_verify_result *r, char *out, size_t size);

/* {"key": {...}, "secret": "..."}: the one document that holds a secret. */
json_t *kw_json_key_created(const kw_key *k, const char *secret);
/* {"root_key": {...}, "secret": "..."} */
json_t *kw_json_root_key_created(const kw_root_key *rk, const char *secret);

#endif
