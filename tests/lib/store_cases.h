/*
 * store_cases.h - the cases every store backend must pass, shared by
 * tests/unit/test_store_<backend>.c: accounts, keys and the key limit,
 * deletes, touch, root keys, users, the audit log, pepper checks, sessions,
 * the change feed and the key scan, and the key lifecycle (update, roll,
 * revoke, audit pages and prune).
 */
#ifndef KW_STORE_CASES_H
#define KW_STORE_CASES_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store/store.h"

/* The most cases sc_cases writes. */
#define SC_CASES_MAX 32

/*
 * Writes the shared cases to out (room for SC_CASES_MAX) and returns their
 * number. Each runs between setup and teardown, which give it a fresh,
 * migrated store: the fixture they put in *state must begin with that
 * store's kw_store pointer. old_key inserts, behind the store's back, key
 * "key_old" of acc_a (pepper version 1), as a database from before the
 * change feed would hold it.
 */
size_t sc_cases(struct CMUnitTest *out, CMFixtureFunction setup, CMFixtureFunction teardown,
                void (*old_key)(void **state));

/* Inserts account `id` (name "Account <id>") with an audit entry; asserts KW_OK. */
void sc_add_account(kw_store *s, const char *id);

/* The number of audit entries of all accounts. */
size_t sc_audit_count(kw_store *s);

/* The audit entry of the feed cases' writes. */
extern const kw_audit sc_feed_audit;

/* Inserts key `id` of acc_a with hash n and pepper version 2, its change recorded at `at`. */
kw_status sc_feed_key(kw_store *s, const char *id, int n, int64_t at, int64_t *seq);

/*
 * Scans the store, which holds `keys` keys and no feed entry, as a stream:
 * every row comes, and the resident set grows by less than rss_limit bytes.
 */
void sc_scan_many(kw_store *s, long keys, long rss_limit);

/* A hash of its own for each n below 2^24. */
void sc_feed_hash(uint8_t hash[KW_HASH_BYTES], int n);

/* The feed head; asserts the store answers. */
int64_t sc_feed_head(kw_store *s);

#endif
