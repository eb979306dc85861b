/*
 * store_cases.h - the cases every store backend must pass, shared by
 * tests/unit/test_store_<backend>.c: accounts, keys and the key limit,
 * deletes, touch, root keys, users, the audit log, pepper checks.
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
 * store's kw_store pointer.
 */
size_t sc_cases(struct CMUnitTest *out, CMFixtureFunction setup, CMFixtureFunction teardown);

/* Inserts account `id` (name "Account <id>") with an audit entry; asserts KW_OK. */
void sc_add_account(kw_store *s, const char *id);

/* The number of audit entries of all accounts. */
size_t sc_audit_count(kw_store *s);

#endif
