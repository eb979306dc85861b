/*
 * store_cases.c - the store contract, as cmocka cases that every backend's
 * test runs against a fresh store of its own (see store_cases.h).
 */
#include "store_cases.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW   ((int64_t)1700000000)
#define NEVER KW_TIME_NONE

static const kw_audit cli_audit = {.at = NOW, .actor = "cli", .action = "test"};

/* The store of the backend's fixture, whose first member it is. */
static kw_store *fixture_store(void **state)
{
    return *(kw_store **)*state;
}

typedef struct {
    kw_store *store;
    int thread;
    int ok;
    int limited;
} insert_job;

static void make_hash(uint8_t hash[KW_HASH_BYTES], int n)
{
    for (int i = 0; i < KW_HASH_BYTES; i++)
        hash[i] = (uint8_t)(n * 31 + i);
}

void sc_add_account(kw_store *s, const char *id)
{
    kw_account a = {.created_at = NOW};
    snprintf(a.id, sizeof a.id, "%s", id);
    snprintf(a.name, sizeof a.name, "Account %s", id);
    assert_int_equal(s->ops->account_insert(s, &a, &cli_audit), KW_OK);
}

static kw_key make_key(const char *id, const char *account_id, int64_t expires_at)
{
    kw_key k = {.created_at = NOW, .last_used_at = KW_TIME_NONE, .expires_at = expires_at};
    snprintf(k.id, sizeof k.id, "%s", id);
    snprintf(k.account_id, sizeof k.account_id, "%s", account_id);
    snprintf(k.name, sizeof k.name, "Name of %s", id);
    snprintf(k.environment, sizeof k.environment, "production");
    snprintf(k.masked, sizeof k.masked, "kw_production_AbCd...%s", id + 4);
    return k;
}

/* Inserts key `id` of account_id with hash number n, under `limit`. */
static kw_status add_key(kw_store *s, const char *id, const char *account_id, int n,
                         int64_t expires_at, int limit)
{
    kw_key k = make_key(id, account_id, expires_at);
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, n);
    return s->ops->key_insert(s, &k, hash, 1, limit, NOW, &cli_audit, NULL);
}

size_t sc_audit_count(kw_store *s)
{
    kw_audit_list list;
    assert_int_equal(s->ops->audit_list(s, NULL, 1000000, &list), KW_OK);
    size_t n = list.count;
    kw_audit_list_free(&list);
    return n;
}

static size_t key_count(kw_store *s, const char *account_id)
{
    kw_key_list list;
    assert_int_equal(s->ops->key_list(s, account_id, NOW, &list), KW_OK);
    size_t n = list.count;
    kw_key_list_free(&list);
    return n;
}

static void test_accounts(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    kw_account a;
    assert_int_equal(s->ops->account_get(s, "acc_a", &a), KW_OK);
    assert_string_equal(a.id, "acc_a");
    assert_string_equal(a.name, "Account acc_a");
    assert_int_equal(a.created_at, NOW);
    assert_int_equal(s->ops->account_get(s, "acc_zz", &a), KW_ERR_NOT_FOUND);
    kw_account dup = {.id = "acc_a", .name = "again", .created_at = NOW};
    assert_int_equal(s->ops->account_insert(s, &dup, &cli_audit), KW_ERR_CONFLICT);
    /* An audit row that cannot be written takes the account with it. */
    kw_account lost = {.id = "acc_c", .name = "lost", .created_at = NOW};
    kw_audit bad = {.at = NOW, .actor = NULL, .action = "account.create"};
    assert_int_equal(s->ops->account_insert(s, &lost, &bad), KW_ERR_INTERNAL);
    assert_int_equal(s->ops->account_get(s, "acc_c", &a), KW_ERR_NOT_FOUND);
    kw_account_list list;
    assert_int_equal(s->ops->account_list(s, &list), KW_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].id, "acc_a");
    assert_string_equal(list.items[1].id, "acc_b");
    kw_account_list_free(&list);

    kw_audit_list log;
    assert_int_equal(s->ops->audit_list(s, "acc_b", 10, &log), KW_OK);
    assert_int_equal(log.count, 1);
    assert_string_equal(log.items[0].account_id, "acc_b");
    assert_string_equal(log.items[0].actor, "cli");
    assert_string_equal(log.items[0].key_id, "");
    kw_audit_list_free(&log);
}

static void test_key_round_trip(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 25), KW_OK);
    assert_int_equal(add_key(s, "key_2", "acc_a", 2, NOW + 60, 25), KW_OK);
    assert_int_equal(add_key(s, "key_3", "acc_nope", 3, NEVER, 25), KW_ERR_NOT_FOUND);

    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_2", &k), KW_OK);
    assert_string_equal(k.id, "key_2");
    assert_string_equal(k.account_id, "acc_a");
    assert_string_equal(k.name, "Name of key_2");
    assert_string_equal(k.environment, "production");
    assert_string_equal(k.masked, "kw_production_AbCd...2");
    assert_int_equal(k.created_at, NOW);
    assert_int_equal(k.last_used_at, KW_TIME_NONE);
    assert_int_equal(k.expires_at, NOW + 60);

    kw_key_list list;
    assert_int_equal(s->ops->key_list(s, "acc_a", NOW, &list), KW_OK);
    assert_int_equal(list.count, 2);
    assert_int_equal(list.active_count, 2);
    assert_int_equal(list.key_limit, 0);
    assert_string_equal(list.items[0].id, "key_2"); /* newest first */
    assert_string_equal(list.items[1].id, "key_1");
    kw_key_list_free(&list);
    assert_int_equal(s->ops->key_list(s, "acc_a", NOW + 60, &list), KW_OK);
    assert_int_equal(list.active_count, 1);
    kw_key_list_free(&list);

    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 1);
    assert_int_equal(s->ops->key_find(s, hash, 1, &k), KW_OK);
    assert_string_equal(k.id, "key_1");
    assert_string_equal(k.account_id, "acc_a");
    assert_int_equal(k.expires_at, KW_TIME_NONE);
    assert_int_equal(s->ops->key_find(s, hash, 2, &k), KW_ERR_NOT_FOUND);
    make_hash(hash, 9);
    assert_int_equal(s->ops->key_find(s, hash, 1, &k), KW_ERR_NOT_FOUND);
}

static void test_limit_is_enforced_and_refusal_writes_nothing(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "key_%d", i);
        assert_int_equal(add_key(s, id, "acc_a", i, NEVER, 3), KW_OK);
    }
    size_t audits = sc_audit_count(s);
    assert_int_equal(add_key(s, "key_x", "acc_a", 10, NEVER, 3), KW_ERR_LIMIT);
    assert_int_equal(sc_audit_count(s), audits);
    assert_int_equal(key_count(s, "acc_a"), 3);
    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_x", &k), KW_ERR_NOT_FOUND);
}

static void test_expired_keys_do_not_count(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_old1", "acc_a", 1, NOW - 10, 3), KW_OK);
    assert_int_equal(add_key(s, "key_old2", "acc_a", 2, NOW, 3), KW_OK); /* expires now */
    assert_int_equal(add_key(s, "key_a", "acc_a", 3, NEVER, 3), KW_OK);
    assert_int_equal(add_key(s, "key_b", "acc_a", 4, NOW + 1, 3), KW_OK);
    assert_int_equal(add_key(s, "key_c", "acc_a", 5, NEVER, 3), KW_OK);
    assert_int_equal(add_key(s, "key_d", "acc_a", 6, NEVER, 3), KW_ERR_LIMIT);
    kw_key_list list;
    assert_int_equal(s->ops->key_list(s, "acc_a", NOW, &list), KW_OK);
    assert_int_equal(list.count, 5);
    assert_int_equal(list.active_count, 3);
    kw_key_list_free(&list);
}

/*
 * An expiry at the epoch, or before it, is a time like any other (already
 * past), never "no expiry": the list, the active count and the key limit
 * all see those keys as expired, and only NEVER as unexpiring.
 */
static void test_expiry_at_the_epoch_is_a_time(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_epoch", "acc_a", 1, 0, 2), KW_OK);
    assert_int_equal(add_key(s, "key_before", "acc_a", 2, -1, 2), KW_OK);
    assert_int_equal(add_key(s, "key_never", "acc_a", 3, NEVER, 2), KW_OK);
    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_epoch", &k), KW_OK);
    assert_int_equal(k.expires_at, 0);
    assert_false(kw_key_active(&k, NOW));
    assert_int_equal(k.last_used_at, KW_TIME_NONE);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_before", &k), KW_OK);
    assert_int_equal(k.expires_at, -1);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_never", &k), KW_OK);
    assert_int_equal(k.expires_at, KW_TIME_NONE);
    assert_true(kw_key_active(&k, INT64_MAX));

    kw_key_list list;
    assert_int_equal(s->ops->key_list(s, "acc_a", NOW, &list), KW_OK);
    assert_int_equal(list.count, 3);
    assert_int_equal(list.active_count, 1);
    kw_key_list_free(&list);
    int64_t active = -1;
    assert_int_equal(s->ops->key_count_active(s, NOW, &active), KW_OK);
    assert_int_equal(active, 1);
    /* With a limit of 2, one more unexpiring key fits, and then no more. */
    assert_int_equal(add_key(s, "key_more", "acc_a", 4, NEVER, 2), KW_OK);
    assert_int_equal(add_key(s, "key_full", "acc_a", 5, NEVER, 2), KW_ERR_LIMIT);
    assert_int_equal(s->ops->key_count_active(s, NOW, &active), KW_OK);
    assert_int_equal(active, 2);
}

static void test_duplicate_hash_conflicts(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 25), KW_OK);
    size_t audits = sc_audit_count(s);
    assert_int_equal(add_key(s, "key_2", "acc_a", 1, NEVER, 25), KW_ERR_CONFLICT);
    assert_int_equal(sc_audit_count(s), audits);
    assert_int_equal(key_count(s, "acc_a"), 1);
}

static void test_other_account_sees_nothing(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 25), KW_OK);
    size_t audits = sc_audit_count(s);
    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_b", "key_1", &k), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_delete(s, "acc_b", "key_1", &cli_audit, NULL), KW_ERR_NOT_FOUND);
    assert_int_equal(sc_audit_count(s), audits);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_1", &k), KW_OK);
    assert_int_equal(key_count(s, "acc_b"), 0);
}

static void test_delete(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 25), KW_OK);
    kw_audit au = {.at = NOW + 5, .actor = "user:usr_x", .action = "key.delete"};
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_1", &au, NULL), KW_OK);
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 1);
    kw_key k;
    assert_int_equal(s->ops->key_find(s, hash, 1, &k), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_1", &k), KW_ERR_NOT_FOUND);

    kw_audit_list log;
    assert_int_equal(s->ops->audit_list(s, "acc_a", 1, &log), KW_OK);
    assert_int_equal(log.count, 1);
    assert_string_equal(log.items[0].action, "key.delete");
    assert_string_equal(log.items[0].actor, "user:usr_x");
    assert_string_equal(log.items[0].key_id, "key_1");
    assert_string_equal(log.items[0].key_name, "Name of key_1");
    assert_int_equal(log.items[0].at, NOW + 5);
    kw_audit_list_free(&log);

    size_t audits = sc_audit_count(s);
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_1", &au, NULL), KW_ERR_NOT_FOUND);
    assert_int_equal(sc_audit_count(s), audits);
    /* The slot is free again, and so is the hash. */
    assert_int_equal(add_key(s, "key_2", "acc_a", 1, NEVER, 1), KW_OK);
}

static void test_audit_list_newest_first(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 25), KW_OK);
    kw_audit_list log;
    assert_int_equal(s->ops->audit_list(s, NULL, 2, &log), KW_OK);
    assert_int_equal(log.count, 2);
    assert_string_equal(log.items[0].key_id, "key_1");
    assert_string_equal(log.items[1].account_id, "acc_b");
    assert_true(log.items[0].seq > log.items[1].seq);
    kw_audit_list_free(&log);
}

static void test_touch_only_raises(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 25), KW_OK);
    kw_root_key rk = {.id = "rk_1",
                      .name = "ops",
                      .masked = "kw_root_Ab...",
                      .created_at = NOW,
                      .last_used_at = KW_TIME_NONE};
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 50);
    assert_int_equal(s->ops->root_key_insert(s, &rk, hash, 1, &cli_audit), KW_OK);

    kw_touch t[4] = {{"key_1", NOW + 100}, {"rk_1", NOW + 50}, {"key_gone", NOW}, {"zz", NOW}};
    assert_int_equal(s->ops->touch(s, t, 4), KW_OK);
    kw_touch older[2] = {{"key_1", NOW + 10}, {"rk_1", NOW + 10}};
    assert_int_equal(s->ops->touch(s, older, 2), KW_OK);
    assert_int_equal(s->ops->touch(s, NULL, 0), KW_OK);

    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_1", &k), KW_OK);
    assert_int_equal(k.last_used_at, NOW + 100);
    kw_root_key found;
    assert_int_equal(s->ops->root_key_find(s, hash, 1, &found), KW_OK);
    assert_int_equal(found.last_used_at, NOW + 50);
}

static void test_root_keys(void **state)
{
    kw_store *s = fixture_store(state);
    uint8_t h1[KW_HASH_BYTES], h2[KW_HASH_BYTES];
    make_hash(h1, 1);
    make_hash(h2, 2);
    kw_root_key a = {.id = "rk_a",
                     .name = "deploy",
                     .masked = "kw_root_Aa...",
                     .created_at = NOW,
                     .last_used_at = KW_TIME_NONE};
    kw_root_key b = {.id = "rk_b",
                     .name = "ops",
                     .masked = "kw_root_Bb...",
                     .created_at = NOW,
                     .last_used_at = KW_TIME_NONE};
    assert_int_equal(s->ops->root_key_insert(s, &a, h1, 3, &cli_audit), KW_OK);
    assert_int_equal(s->ops->root_key_insert(s, &b, h2, 3, &cli_audit), KW_OK);
    kw_root_key dup = {.id = "rk_c",
                       .name = "dup",
                       .masked = "m",
                       .created_at = NOW,
                       .last_used_at = KW_TIME_NONE};
    assert_int_equal(s->ops->root_key_insert(s, &dup, h1, 3, &cli_audit), KW_ERR_CONFLICT);

    kw_root_key_list list;
    assert_int_equal(s->ops->root_key_list(s, &list), KW_OK);
    assert_int_equal(list.count, 2);
    assert_string_equal(list.items[0].id, "rk_b");
    assert_string_equal(list.items[1].name, "deploy");
    kw_root_key_list_free(&list);

    kw_root_key found;
    assert_int_equal(s->ops->root_key_find(s, h1, 3, &found), KW_OK);
    assert_string_equal(found.id, "rk_a");
    assert_string_equal(found.masked, "kw_root_Aa...");
    assert_int_equal(found.created_at, NOW);
    assert_int_equal(s->ops->root_key_find(s, h1, 1, &found), KW_ERR_NOT_FOUND);

    kw_audit del = {.at = NOW, .actor = "cli", .action = "root_key.delete"};
    assert_int_equal(s->ops->root_key_delete(s, "rk_a", &del), KW_OK);
    assert_int_equal(s->ops->root_key_delete(s, "rk_a", &del), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->root_key_find(s, h1, 3, &found), KW_ERR_NOT_FOUND);
    kw_audit_list log;
    assert_int_equal(s->ops->audit_list(s, NULL, 1, &log), KW_OK);
    assert_string_equal(log.items[0].action, "root_key.delete");
    assert_string_equal(log.items[0].key_id, "rk_a");
    assert_string_equal(log.items[0].key_name, "deploy");
    assert_string_equal(log.items[0].account_id, "");
    kw_audit_list_free(&log);
}

static void test_users(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    const char *phash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";
    kw_user u = {
        .id = "usr_1", .account_id = "acc_a", .email = "Admin@Example.com", .created_at = NOW};
    assert_int_equal(s->ops->user_insert(s, &u, phash, &cli_audit), KW_OK);
    kw_user again = {
        .id = "usr_2", .account_id = "acc_a", .email = "admin@example.COM", .created_at = NOW};
    size_t audits = sc_audit_count(s);
    assert_int_equal(s->ops->user_insert(s, &again, phash, &cli_audit), KW_ERR_CONFLICT);
    kw_user orphan = {.id = "usr_3", .account_id = "acc_no", .email = "o@x", .created_at = NOW};
    assert_int_equal(s->ops->user_insert(s, &orphan, phash, &cli_audit), KW_ERR_NOT_FOUND);
    assert_int_equal(sc_audit_count(s), audits);

    kw_user found;
    char buf[256];
    assert_int_equal(s->ops->user_find_by_email(s, "ADMIN@example.com", &found, buf, sizeof buf),
                     KW_OK);
    assert_string_equal(found.id, "usr_1");
    assert_string_equal(found.account_id, "acc_a");
    assert_string_equal(found.email, "Admin@Example.com");
    assert_int_equal(found.created_at, NOW);
    assert_string_equal(buf, phash);
    char small[8];
    assert_int_equal(s->ops->user_find_by_email(s, "admin@example.com", &found, small, 8),
                     KW_ERR_INTERNAL);
    assert_int_equal(s->ops->user_find_by_email(s, "nobody@example.com", &found, buf, sizeof buf),
                     KW_ERR_NOT_FOUND);

    kw_audit_list log;
    assert_int_equal(s->ops->audit_list(s, "acc_a", 1, &log), KW_OK);
    assert_string_equal(log.items[0].account_id, "acc_a");
    assert_string_equal(log.items[0].key_name, "");
    kw_audit_list_free(&log);
}

static void *insert_thread(void *arg)
{
    insert_job *job = arg;
    for (int i = 0; i < 10; i++) {
        char id[32];
        snprintf(id, sizeof id, "key_t%di%d", job->thread, i);
        kw_status st = add_key(job->store, id, "acc_a", 1000 + job->thread * 100 + i, NEVER, 25);
        if (st == KW_OK)
            job->ok++;
        else if (st == KW_ERR_LIMIT)
            job->limited++;
    }
    return NULL;
}

static void test_concurrent_inserts_respect_the_limit(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    pthread_t t[8];
    insert_job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (insert_job){.store = s, .thread = i};
        assert_int_equal(pthread_create(&t[i], NULL, insert_thread, &jobs[i]), 0);
    }
    int ok = 0, limited = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        ok += jobs[i].ok;
        limited += jobs[i].limited;
    }
    assert_int_equal(ok, 25);
    assert_int_equal(limited, 80 - 25);
    assert_int_equal(key_count(s, "acc_a"), 25);
    assert_int_equal(sc_audit_count(s), 1 + 25);
}

static void test_pepper_check_values(void **state)
{
    kw_store *s = fixture_store(state);
    uint8_t a[KW_HASH_BYTES], b[KW_HASH_BYTES];
    memset(a, 0xaa, sizeof a);
    memset(b, 0xbb, sizeof b);
    assert_int_equal(s->ops->pepper_check(s, 1, a), KW_OK); /* first: stored */
    assert_int_equal(s->ops->pepper_check(s, 1, a), KW_OK);
    assert_int_equal(s->ops->pepper_check(s, 1, b), KW_ERR_CONFLICT);
    assert_int_equal(s->ops->pepper_check(s, 2, b), KW_OK);
    assert_int_equal(s->ops->pepper_check(s, 1, a), KW_OK); /* b changed nothing */
}

/* Asserts session `hash` is found, with user usr_1 and these times. */
static void assert_session(kw_store *s, const uint8_t hash[KW_HASH_BYTES], int64_t created_at,
                           int64_t last_seen_at, int64_t expires_at)
{
    kw_session found;
    memset(&found, 0x5a, sizeof found);
    assert_int_equal(s->ops->session_find(s, hash, &found), KW_OK);
    assert_string_equal(found.user.id, "usr_1");
    assert_string_equal(found.user.account_id, "acc_a");
    assert_string_equal(found.user.email, "Admin@Example.com");
    assert_int_equal(found.user.created_at, NOW - 7);
    assert_int_equal(found.created_at, created_at);
    assert_int_equal(found.last_seen_at, last_seen_at);
    assert_int_equal(found.expires_at, expires_at);
}

static void test_sessions(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    kw_user u = {
        .id = "usr_1", .account_id = "acc_a", .email = "Admin@Example.com", .created_at = NOW - 7};
    assert_int_equal(s->ops->user_insert(s, &u, "$argon2id$stub", &cli_audit), KW_OK);
    uint8_t h[6][KW_HASH_BYTES];
    for (int i = 0; i < 6; i++)
        make_hash(h[i], 200 + i);

    assert_int_equal(s->ops->session_insert(s, h[0], "usr_1", NOW, NOW + 3600), KW_OK);
    assert_session(s, h[0], NOW, NOW, NOW + 3600);
    kw_session found;
    assert_int_equal(s->ops->session_find(s, h[5], &found), KW_ERR_NOT_FOUND);

    /* touch raises last_seen_at, never lowers it, and leaves the rest alone. */
    assert_int_equal(s->ops->session_touch(s, h[0], NOW + 100), KW_OK);
    assert_session(s, h[0], NOW, NOW + 100, NOW + 3600);
    assert_int_equal(s->ops->session_touch(s, h[0], NOW + 50), KW_OK);
    assert_session(s, h[0], NOW, NOW + 100, NOW + 3600);
    assert_int_equal(s->ops->session_touch(s, h[0], NOW + 100), KW_OK);
    assert_session(s, h[0], NOW, NOW + 100, NOW + 3600);

    /* An insert at NOW + 200 removes the sessions that end at or before it. */
    assert_int_equal(s->ops->session_insert(s, h[1], "usr_1", NOW, NOW + 199), KW_OK);
    assert_int_equal(s->ops->session_insert(s, h[2], "usr_1", NOW, NOW + 200), KW_OK);
    assert_int_equal(s->ops->session_insert(s, h[3], "usr_1", NOW, NOW + 201), KW_OK);
    assert_session(s, h[1], NOW, NOW, NOW + 199); /* a find purges nothing */
    assert_int_equal(s->ops->session_insert(s, h[4], "usr_1", NOW + 200, NOW + 900), KW_OK);
    assert_int_equal(s->ops->session_find(s, h[1], &found), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->session_find(s, h[2], &found), KW_ERR_NOT_FOUND);
    assert_session(s, h[3], NOW, NOW, NOW + 201);
    assert_session(s, h[4], NOW + 200, NOW + 200, NOW + 900);
    assert_session(s, h[0], NOW, NOW + 100, NOW + 3600);

    /* delete removes that session only, once. */
    assert_int_equal(s->ops->session_delete(s, h[0]), KW_OK);
    assert_int_equal(s->ops->session_find(s, h[0], &found), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->session_delete(s, h[0]), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->session_delete(s, h[5]), KW_ERR_NOT_FOUND);
    assert_session(s, h[3], NOW, NOW, NOW + 201);
    assert_session(s, h[4], NOW + 200, NOW + 200, NOW + 900);
}

size_t sc_cases(struct CMUnitTest *out, CMFixtureFunction setup, CMFixtureFunction teardown)
{
    const struct CMUnitTest cases[] = {
        cmocka_unit_test_setup_teardown(test_accounts, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_key_round_trip, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_limit_is_enforced_and_refusal_writes_nothing, NULL,
                                        NULL),
        cmocka_unit_test_setup_teardown(test_expired_keys_do_not_count, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_expiry_at_the_epoch_is_a_time, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_duplicate_hash_conflicts, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_other_account_sees_nothing, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_delete, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_audit_list_newest_first, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_touch_only_raises, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_root_keys, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_users, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_concurrent_inserts_respect_the_limit, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_pepper_check_values, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_sessions, NULL, NULL),
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        out[i] = cases[i];
        out[i].setup_func = setup;
        out[i].teardown_func = teardown;
    }
    return n;
}
