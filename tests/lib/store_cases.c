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
#include <time.h>
#include <unistd.h>

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
    kw_key k = {
        .created_at = NOW, .last_used_at = KW_TIME_NONE, .expires_at = expires_at, .enabled = true};
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

    assert_int_equal(s->ops->session_insert(s, h[0], "usr_1", NOW, NOW + 3600, NULL), KW_OK);
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
    assert_int_equal(s->ops->session_insert(s, h[1], "usr_1", NOW, NOW + 199, NULL), KW_OK);
    assert_int_equal(s->ops->session_insert(s, h[2], "usr_1", NOW, NOW + 200, NULL), KW_OK);
    assert_int_equal(s->ops->session_insert(s, h[3], "usr_1", NOW, NOW + 201, NULL), KW_OK);
    assert_session(s, h[1], NOW, NOW, NOW + 199); /* a find purges nothing */
    assert_int_equal(s->ops->session_insert(s, h[4], "usr_1", NOW + 200, NOW + 900, NULL), KW_OK);
    assert_int_equal(s->ops->session_find(s, h[1], &found), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->session_find(s, h[2], &found), KW_ERR_NOT_FOUND);
    assert_session(s, h[3], NOW, NOW, NOW + 201);
    assert_session(s, h[4], NOW + 200, NOW + 200, NOW + 900);
    assert_session(s, h[0], NOW, NOW + 100, NOW + 3600);

    /* delete removes that session only, once. */
    assert_int_equal(s->ops->session_delete(s, h[0], NULL), KW_OK);
    assert_int_equal(s->ops->session_find(s, h[0], &found), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->session_delete(s, h[0], NULL), KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->session_delete(s, h[5], NULL), KW_ERR_NOT_FOUND);
    assert_session(s, h[3], NOW, NOW, NOW + 201);
    assert_session(s, h[4], NOW + 200, NOW + 200, NOW + 900);
}

/* ---- the change feed and the key scan ---- */

/* The backend's way to insert a key behind the store's back (sc_cases). */
static void (*insert_old_key)(void **state);

const kw_audit sc_feed_audit = {.at = NOW, .actor = "cli", .action = "test"};

/* A hash of its own for each n below 2^24. */
void sc_feed_hash(uint8_t hash[KW_HASH_BYTES], int n)
{
    memset(hash, 0x5C, KW_HASH_BYTES);
    hash[0] = (uint8_t)(n >> 16);
    hash[1] = (uint8_t)(n >> 8);
    hash[2] = (uint8_t)n;
}

/* Inserts key `id` of acc_a with hash n and pepper version 2, its change recorded at `at`. */
kw_status sc_feed_key(kw_store *s, const char *id, int n, int64_t at, int64_t *seq)
{
    kw_key k = {.created_at = NOW,
                .last_used_at = KW_TIME_NONE,
                .expires_at = NOW + 3600,
                .enabled = true,
                .account_id = "acc_a",
                .name = "feed",
                .environment = "staging",
                .masked = "m"};
    snprintf(k.id, sizeof k.id, "%s", id);
    uint8_t hash[KW_HASH_BYTES];
    sc_feed_hash(hash, n);
    kw_audit au = sc_feed_audit;
    au.at = at;
    return s->ops->key_insert(s, &k, hash, 2, 1000000, NOW, &au, seq);
}

int64_t sc_feed_head(kw_store *s)
{
    int64_t head = -1;
    assert_int_equal(s->ops->feed_head(s, &head), KW_OK);
    return head;
}

/* Every change after `after` (at most 100000): the caller frees items. */
static kw_key_change_list feed_since(kw_store *s, int64_t after)
{
    kw_key_change_list list = {0};
    assert_int_equal(s->ops->changes_since(s, after, 100000, &list), KW_OK);
    return list;
}

enum { FEED_WRITERS = 4, FEED_KEYS = 30 };

typedef struct {
    kw_store *store;
    int thread;
    int n;
    int64_t seq[2 * FEED_KEYS];
    char id[2 * FEED_KEYS][KW_ID_BUFSZ];
    bool deleted[2 * FEED_KEYS];
    int failures;
} feed_writer;

static void *on_feed_write(void *arg)
{
    feed_writer *w = arg;
    for (int i = 0; i < FEED_KEYS; i++) {
        char id[KW_ID_BUFSZ];
        snprintf(id, sizeof id, "key_w%d_%d", w->thread, i);
        int64_t seq = 0;
        if (sc_feed_key(w->store, id, w->thread * 1000 + i, NOW, &seq) != KW_OK) {
            w->failures++;
            continue;
        }
        snprintf(w->id[w->n], KW_ID_BUFSZ, "%s", id);
        w->seq[w->n++] = seq;
        if (i % 3 == 0) {
            if (w->store->ops->key_delete(w->store, "acc_a", id, &sc_feed_audit, &seq) != KW_OK) {
                w->failures++;
                continue;
            }
            snprintf(w->id[w->n], KW_ID_BUFSZ, "%s", id);
            w->deleted[w->n] = true;
            w->seq[w->n++] = seq;
        }
    }
    return NULL;
}

typedef struct {
    kw_store *store;
    volatile int *stop;
    long reads;
    int gaps;
} feed_reader;

/* A reader never sees position N + 1 before N: the feed it reads has no hole. */
static void *on_feed_read(void *arg)
{
    feed_reader *r = arg;
    while (!*r->stop) {
        kw_key_change_list list = {0};
        if (r->store->ops->changes_since(r->store, 0, 100000, &list) != KW_OK) {
            r->gaps++;
            continue;
        }
        for (size_t i = 0; i < list.count; i++)
            if (list.items[i].seq != (int64_t)i + 1)
                r->gaps++;
        free(list.items);
        r->reads++;
    }
    return NULL;
}

/*
 * Writers on several threads: every change gets its own position, the
 * positions are 1..N without a hole at every moment a reader looks, and
 * each names the key its writer was told.
 */
static void test_feed_positions_are_contiguous_across_writers(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    assert_int_equal(sc_feed_head(s), 0);
    static feed_writer w[FEED_WRITERS];
    pthread_t t[FEED_WRITERS], rt;
    volatile int stop = 0;
    feed_reader r = {.store = s, .stop = &stop};
    assert_int_equal(pthread_create(&rt, NULL, on_feed_read, &r), 0);
    for (int i = 0; i < FEED_WRITERS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].store = s;
        w[i].thread = i;
        assert_int_equal(pthread_create(&t[i], NULL, on_feed_write, &w[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < FEED_WRITERS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
        total += w[i].n;
    }
    stop = 1;
    pthread_join(rt, NULL);
    assert_int_equal(r.gaps, 0);
    assert_true(r.reads > 0);
    assert_int_equal(sc_feed_head(s), total);

    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, total);
    for (int i = 0; i < FEED_WRITERS; i++)
        for (int j = 0; j < w[i].n; j++) {
            int64_t seq = w[i].seq[j];
            assert_true(seq >= 1 && seq <= total);
            const kw_key_change *ch = &list.items[seq - 1];
            assert_int_equal(ch->seq, seq);
            assert_string_equal(ch->row.key.id, w[i].id[j]);
            /* A deleted key is gone in its insert's entry too: the state is now's. */
            bool gone = w[i].deleted[j] || (j + 1 < w[i].n && w[i].deleted[j + 1]);
            assert_int_equal(ch->present, !gone);
        }
    free(list.items);
}

/*
 * A create and a delete append one change each; a refused create or
 * delete, and every write that cannot change a verification answer,
 * append none.
 */
static void test_only_key_changes_enter_the_feed(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    kw_user u = {.id = "usr_a", .account_id = "acc_a", .email = "a@example.com", .created_at = NOW};
    assert_int_equal(s->ops->user_insert(s, &u, "$argon2id$stub", &sc_feed_audit), KW_OK);
    assert_int_equal(sc_feed_head(s), 0);
    int64_t seq = 0;
    assert_int_equal(sc_feed_key(s, "key_1", 1, NOW, &seq), KW_OK);
    assert_int_equal(seq, 1);
    assert_int_equal(sc_feed_head(s), 1);

    kw_touch touch[2] = {{"key_1", NOW + 5}, {"rk_1", NOW + 5}};
    assert_int_equal(s->ops->touch(s, touch, 2), KW_OK);
    kw_root_key rk = {
        .id = "rk_1", .name = "r", .masked = "m", .created_at = NOW, .last_used_at = KW_TIME_NONE};
    uint8_t hash[KW_HASH_BYTES];
    sc_feed_hash(hash, 900);
    assert_int_equal(s->ops->root_key_insert(s, &rk, hash, 2, &sc_feed_audit), KW_OK);
    assert_int_equal(s->ops->touch(s, touch, 2), KW_OK);
    assert_int_equal(s->ops->root_key_delete(s, "rk_1", &sc_feed_audit), KW_OK);
    sc_feed_hash(hash, 901);
    assert_int_equal(s->ops->session_insert(s, hash, "usr_a", NOW, NOW + 60, NULL), KW_OK);
    assert_int_equal(s->ops->session_touch(s, hash, NOW + 1), KW_OK);
    assert_int_equal(s->ops->session_delete(s, hash, NULL), KW_OK);
    sc_add_account(s, "acc_b");
    sc_feed_hash(hash, 902);
    assert_int_equal(s->ops->pepper_check(s, 2, hash), KW_OK);
    seq = -7;
    assert_int_equal(sc_feed_key(s, "key_1", 2, NOW, &seq), KW_ERR_CONFLICT); /* same id */
    assert_int_equal(sc_feed_key(s, "key_2", 1, NOW, &seq), KW_ERR_CONFLICT); /* same hash */
    assert_int_equal(s->ops->key_delete(s, "acc_b", "key_1", &sc_feed_audit, &seq),
                     KW_ERR_NOT_FOUND);
    assert_int_equal(seq, -7); /* untouched when nothing was recorded */
    assert_int_equal(sc_feed_head(s), 1);

    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_1", &sc_feed_audit, &seq), KW_OK);
    assert_int_equal(seq, 2);
    assert_int_equal(sc_feed_head(s), 2);
    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, 2);
    free(list.items);
}

/*
 * Each change comes with its key's state now: the whole record, hash
 * included, or only its id when the key is gone: the feed holds no hash
 * to give back.
 */
static void test_changes_since_reports_present_and_gone(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    assert_int_equal(sc_feed_key(s, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(sc_feed_key(s, "key_2", 2, NOW, NULL), KW_OK);
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_1", &sc_feed_audit, NULL), KW_OK);
    kw_touch touch = {"key_2", NOW + 9};
    assert_int_equal(s->ops->touch(s, &touch, 1), KW_OK);

    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, 3);
    uint8_t h2[KW_HASH_BYTES];
    sc_feed_hash(h2, 2);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(list.items[i].seq, (int64_t)i + 1);
    /* key_1: created, then deleted; both entries say it is gone, by its id alone. */
    static const kw_key_row gone = {.key.id = "key_1"};
    for (size_t i = 0; i < 3; i += 2) {
        assert_false(list.items[i].present);
        assert_memory_equal(&list.items[i].row, &gone, sizeof gone);
    }
    const kw_key_row *row = &list.items[1].row;
    assert_true(list.items[1].present);
    assert_memory_equal(row->hash, h2, KW_HASH_BYTES);
    assert_int_equal(row->pepper_version, 2);
    assert_string_equal(row->key.id, "key_2");
    assert_string_equal(row->key.account_id, "acc_a");
    assert_string_equal(row->key.name, "feed");
    assert_string_equal(row->key.environment, "staging");
    assert_string_equal(row->key.masked, "m");
    assert_int_equal(row->key.created_at, NOW);
    assert_int_equal(row->key.expires_at, NOW + 3600);
    assert_int_equal(row->key.last_used_at, NOW + 9);
    free(list.items);

    /* After a position, and at most `limit`. */
    assert_int_equal(s->ops->changes_since(s, 1, 1, &list), KW_OK);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.items[0].seq, 2);
    free(list.items);
    list = feed_since(s, 3);
    assert_int_equal(list.count, 0);
    free(list.items);
}

/* Pruning removes old entries, never the newest, and leaves a gap a reader can see. */
static void test_feed_prune_leaves_a_visible_gap(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    assert_int_equal(sc_feed_key(s, "key_1", 1, NOW, NULL), KW_OK);
    assert_int_equal(sc_feed_key(s, "key_2", 2, NOW + 1, NULL), KW_OK);
    assert_int_equal(sc_feed_key(s, "key_3", 3, NOW + 10, NULL), KW_OK);
    assert_int_equal(sc_feed_key(s, "key_4", 4, NOW + 20, NULL), KW_OK);
    assert_int_equal(s->ops->feed_prune(s, NOW), KW_OK); /* before NOW: nothing */
    kw_key_change_list list = feed_since(s, 0);
    assert_int_equal(list.count, 4);
    free(list.items);

    assert_int_equal(s->ops->feed_prune(s, NOW + 10), KW_OK);
    list = feed_since(s, 0);
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].seq, 3); /* not 0 + 1: scan again */
    free(list.items);
    list = feed_since(s, 2); /* a reader at 2 missed nothing */
    assert_int_equal(list.count, 2);
    assert_int_equal(list.items[0].seq, 3);
    free(list.items);

    assert_int_equal(s->ops->feed_prune(s, NOW + 1000), KW_OK);
    list = feed_since(s, 0);
    assert_int_equal(list.count, 1); /* the newest stays */
    assert_int_equal(list.items[0].seq, 4);
    free(list.items);
    assert_int_equal(sc_feed_head(s), 4);
    int64_t seq = 0;
    assert_int_equal(sc_feed_key(s, "key_5", 5, NOW + 30, &seq), KW_OK);
    assert_int_equal(seq, 5); /* positions go on from the head */
}

typedef struct {
    kw_store *store;
    volatile int *stop;
    volatile int written;
    volatile int failures;
} scan_writer;

static void *on_scan_write(void *arg)
{
    scan_writer *w = arg;
    while (!*w->stop && w->written < 5000) {
        char id[KW_ID_BUFSZ];
        snprintf(id, sizeof id, "key_s%d", w->written);
        if (sc_feed_key(w->store, id, 10000 + w->written, NOW, NULL) == KW_OK)
            w->written++;
        else
            w->failures++;
    }
    return NULL;
}

typedef struct {
    long rows;
    long stop_after; /* 0: never */
    bool slow;
    bool hash_ok;
} scan_count;

static kw_status on_scan_row(void *ctx, const kw_key_row *row)
{
    scan_count *c = ctx;
    c->rows++;
    if (row->pepper_version == 2) {
        uint8_t want[KW_HASH_BYTES];
        sc_feed_hash(want, 10000 + atoi(row->key.id + 5));
        c->hash_ok = c->hash_ok && memcmp(want, row->hash, KW_HASH_BYTES) == 0;
    }
    if (c->slow && c->rows < 20) {
        struct timespec pause = {0, 5000000L}; /* writers commit meanwhile */
        nanosleep(&pause, NULL);
    }
    return c->stop_after && c->rows >= c->stop_after ? KW_ERR_INTERNAL : KW_OK;
}

/*
 * A scan sees the rows and the head of one moment while writers go on: a
 * key from before the feed existed (inserted behind the store's back) is
 * read like any other, and every other row is one change of the feed.
 */
static void test_key_scan_is_one_snapshot(void **state)
{
    kw_store *s = *(kw_store **)*state;
    sc_add_account(s, "acc_a");
    insert_old_key(state);
    volatile int stop = 0;
    scan_writer w = {.store = s, .stop = &stop};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, on_scan_write, &w), 0);
    while (w.written < 20 && !w.failures) {
        struct timespec pause = {0, 1000000L};
        nanosleep(&pause, NULL);
    }
    int moved = 0;
    for (int round = 0; round < 10; round++) {
        scan_count c = {.slow = true, .hash_ok = true};
        int64_t head = -1;
        assert_int_equal(s->ops->key_scan(s, on_scan_row, &c, &head), KW_OK);
        assert_int_equal(c.rows, head + 1);
        assert_true(c.hash_ok);
        moved += sc_feed_head(s) > head;
    }
    stop = 1;
    pthread_join(t, NULL);
    assert_int_equal(w.failures, 0);
    assert_true(moved > 0); /* the writer did commit during scans */

    scan_count c = {.stop_after = 3};
    int64_t head = -1;
    assert_int_equal(s->ops->key_scan(s, on_scan_row, &c, &head), KW_ERR_INTERNAL);
    assert_int_equal(c.rows, 3);
    assert_int_equal(head, -1);
}

/* The resident set of this process in bytes (0 when unknown). */

static long resident_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

typedef struct {
    long rows;
    long base;
    long peak;
} big_scan;

static kw_status on_big_row(void *ctx, const kw_key_row *row)
{
    (void)row;
    big_scan *b = ctx;
    if (++b->rows % 10000 == 0) {
        long grown = resident_bytes() - b->base;
        if (grown > b->peak)
            b->peak = grown;
    }
    return KW_OK;
}

void sc_scan_many(kw_store *s, long keys, long rss_limit)
{
    big_scan b = {.base = resident_bytes()};
    int64_t head = -1;
    assert_int_equal(s->ops->key_scan(s, on_big_row, &b, &head), KW_OK);
    assert_int_equal(b.rows, keys);
    assert_int_equal(head, 0);
    fprintf(stderr, "# scan of %ld keys: resident set grew by at most %ld KiB\n", keys,
            b.peak / 1024);
#ifndef __SANITIZE_ADDRESS__ /* its quarantine keeps freed batches resident */
    assert_true(b.peak < rss_limit);
#else
    (void)rss_limit;
#endif
}

/* ---- the key lifecycle: update, roll, revoke; audit pages, prune, source_ip ---- */

/* The audit entries of account_id, newest first (at most 1000): the caller frees. */
static kw_audit_list account_log(kw_store *s, const char *account_id)
{
    kw_audit_list log;
    assert_int_equal(s->ops->audit_list(s, account_id, 1000, &log), KW_OK);
    return log;
}

/* Asserts that the changes after `after` name exactly ids, in this order. */
static void assert_feed_names(kw_store *s, int64_t after, const char *const *ids, size_t n)
{
    kw_key_change_list list = feed_since(s, after);
    assert_int_equal(list.count, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(list.items[i].seq, after + 1 + (int64_t)i);
        assert_string_equal(list.items[i].row.key.id, ids[i]);
    }
    free(list.items);
}

static void test_key_update(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    assert_int_equal(add_key(s, "key_1", "acc_a", 1, NEVER, 10), KW_OK);
    kw_key k;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_1", &k), KW_OK);
    assert_true(k.enabled); /* the default */
    assert_string_equal(k.metadata, "");
    assert_string_equal(k.rolled_from, "");
    assert_string_equal(k.rolled_to, "");

    int64_t head = sc_feed_head(s), seq = 0;
    kw_audit au = {.at = NOW + 1, .actor = "cli", .action = "key.update", .source_ip = "10.0.0.9"};
    kw_key_update u = {.name = "Renamed",
                       .enabled = 0,
                       .set_expires_at = true,
                       .expires_at = NOW + 99,
                       .set_metadata = true,
                       .metadata = "{\"team\":\"ops\"}"};
    kw_key out;
    assert_int_equal(s->ops->key_update(s, "acc_a", "key_1", &u, &au, &out, &seq), KW_OK);
    assert_int_equal(seq, head + 1);
    assert_string_equal(out.name, "Renamed");
    assert_false(out.enabled);
    assert_int_equal(out.expires_at, NOW + 99);
    assert_string_equal(out.metadata, "{\"team\":\"ops\"}");
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_1", &k), KW_OK);
    assert_memory_equal(&k, &out, sizeof k);
    const char *const one[] = {"key_1"};
    assert_feed_names(s, head, one, 1);
    kw_key_change_list list = feed_since(s, head);
    assert_true(list.items[0].present);
    assert_false(list.items[0].row.key.enabled); /* the feed reads the row as it now is */
    assert_string_equal(list.items[0].row.key.metadata, "{\"team\":\"ops\"}");
    free(list.items);
    kw_audit_list log = account_log(s, "acc_a");
    assert_string_equal(log.items[0].action, "key.update");
    assert_string_equal(log.items[0].key_id, "key_1");
    assert_string_equal(log.items[0].key_name, "Renamed");
    assert_string_equal(log.items[0].source_ip, "10.0.0.9");
    kw_audit_list_free(&log);

    /* Only what is set changes: enable, clear metadata and expiry. */
    kw_key_update back = {.enabled = 1,
                          .set_expires_at = true,
                          .expires_at = NEVER,
                          .set_metadata = true,
                          .metadata = NULL};
    assert_int_equal(s->ops->key_update(s, "acc_a", "key_1", &back, &au, &out, NULL), KW_OK);
    assert_string_equal(out.name, "Renamed");
    assert_true(out.enabled);
    assert_int_equal(out.expires_at, NEVER);
    assert_string_equal(out.metadata, "");

    /* Another account's key, or none: not found, and nothing written. */
    size_t audits = sc_audit_count(s);
    head = sc_feed_head(s);
    assert_int_equal(s->ops->key_update(s, "acc_b", "key_1", &u, &au, &out, NULL),
                     KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_update(s, "acc_a", "key_zz", &u, &au, &out, NULL),
                     KW_ERR_NOT_FOUND);
    assert_int_equal(sc_audit_count(s), audits);
    assert_int_equal(sc_feed_head(s), head);
}

static void test_key_roll(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    kw_key old = make_key("key_old1", "acc_a", NOW + 1000);
    snprintf(old.metadata, sizeof old.metadata, "{\"n\":1}");
    old.enabled = true;
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 1);
    /* At its limit already: a roll checks none. */
    assert_int_equal(s->ops->key_insert(s, &old, hash, 1, 1, NOW, &cli_audit, NULL), KW_OK);

    kw_key k = {.created_at = NOW + 10, .last_used_at = NEVER, .masked = "kw_production_...new"};
    snprintf(k.id, sizeof k.id, "key_new1");
    make_hash(hash, 2);
    int64_t head = sc_feed_head(s), seq = 0;
    kw_audit au = {.at = NOW + 10, .actor = "cli", .action = "key.roll"};
    kw_key fresh, previous;
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_old1", &k, hash, 1, NOW + 10, 3600, &au,
                                      &fresh, &previous, &seq),
                     KW_OK);
    assert_int_equal(seq, head + 2);
    const char *const both[] = {"key_old1", "key_new1"};
    assert_feed_names(s, head, both, 2);
    /* The links, what the new key inherits, and its lifetime again. */
    assert_string_equal(fresh.rolled_from, "key_old1");
    assert_string_equal(fresh.rolled_to, "");
    assert_string_equal(fresh.name, "Name of key_old1");
    assert_string_equal(fresh.environment, "production");
    assert_string_equal(fresh.metadata, "{\"n\":1}");
    assert_true(fresh.enabled);
    assert_int_equal(fresh.expires_at, NOW + 10 + 1000);
    assert_string_equal(previous.rolled_to, "key_new1");
    /* The old key's own expiry (NOW + 1000) is sooner than the grace's end. */
    assert_int_equal(previous.expires_at, NOW + 1000);
    kw_key stored;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_new1", &stored), KW_OK);
    assert_memory_equal(&stored, &fresh, sizeof stored);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_old1", &stored), KW_OK);
    assert_memory_equal(&stored, &previous, sizeof stored);
    kw_audit_list log = account_log(s, "acc_a");
    assert_string_equal(log.items[0].action, "key.roll");
    assert_string_equal(log.items[0].key_id, "key_old1");
    kw_audit_list_free(&log);

    /* Refused, writing nothing: rolled already, disabled, expired, missing. */
    size_t audits = sc_audit_count(s);
    head = sc_feed_head(s);
    snprintf(k.id, sizeof k.id, "key_new2");
    make_hash(hash, 3);
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_old1", &k, hash, 1, NOW + 10, 60, &au,
                                      &fresh, &previous, NULL),
                     KW_ERR_KEY_STATE);
    kw_key_update off = {.enabled = 0};
    assert_int_equal(s->ops->key_update(s, "acc_a", "key_new1", &off, &au, &stored, NULL), KW_OK);
    audits++;
    head++;
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_new1", &k, hash, 1, NOW + 10, 60, &au,
                                      &fresh, &previous, NULL),
                     KW_ERR_KEY_STATE);
    assert_int_equal(add_key(s, "key_exp", "acc_a", 4, NOW + 5, 100), KW_OK);
    audits++;
    head++;
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_exp", &k, hash, 1, NOW + 5, 60, &au, &fresh,
                                      &previous, NULL),
                     KW_ERR_KEY_STATE);
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_zz", &k, hash, 1, NOW + 5, 60, &au, &fresh,
                                      &previous, NULL),
                     KW_ERR_NOT_FOUND);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_new2", &stored), KW_ERR_NOT_FOUND);
    assert_int_equal(sc_audit_count(s), audits);
    assert_int_equal(sc_feed_head(s), head);

    /* Deleting the replacement leaves the old key unrolled, in the feed,
     * and free to be rolled again within its grace period. */
    kw_audit del = {.at = NOW + 11, .actor = "cli", .action = "key.delete"};
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_new1", &del, &seq), KW_OK);
    const char *const unrolled[] = {"key_new1", "key_old1"};
    assert_feed_names(s, head, unrolled, 2);
    assert_int_equal(seq, head + 2);
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_old1", &stored), KW_OK);
    assert_string_equal(stored.rolled_to, "");
    assert_int_equal(stored.expires_at, NOW + 1000); /* its grace stays as it was */
    kw_key again = k;
    snprintf(again.id, sizeof again.id, "key_new3");
    uint8_t again_hash[KW_HASH_BYTES];
    make_hash(again_hash, 6);
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_old1", &again, again_hash, 1, NOW + 12, 60,
                                      &au, &fresh, &previous, NULL),
                     KW_OK);
    assert_string_equal(previous.rolled_to, "key_new3");
    /* A key that replaced none changes nothing else when deleted. */
    head = sc_feed_head(s);
    assert_int_equal(s->ops->key_delete(s, "acc_a", "key_exp", &del, &seq), KW_OK);
    assert_int_equal(seq, head + 1);

    /* A key that never expires: the grace's end; and the new one never expires either. */
    assert_int_equal(add_key(s, "key_forever", "acc_a", 5, NEVER, 100), KW_OK);
    assert_int_equal(s->ops->key_roll(s, "acc_a", "key_forever", &k, hash, 1, NOW + 20, 0, &au,
                                      &fresh, &previous, NULL),
                     KW_OK);
    assert_int_equal(previous.expires_at, NOW + 20);
    assert_false(kw_key_active(&previous, NOW + 20)); /* grace 0: over at once */
    assert_int_equal(fresh.expires_at, NEVER);
}

static void test_key_revoke(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    kw_key k = make_key("key_s1", "acc_a", NEVER);
    snprintf(k.environment, sizeof k.environment, "staging");
    uint8_t hash[KW_HASH_BYTES];
    make_hash(hash, 1);
    assert_int_equal(s->ops->key_insert(s, &k, hash, 1, 100, NOW, &cli_audit, NULL), KW_OK);
    assert_int_equal(add_key(s, "key_p1", "acc_a", 2, NEVER, 100), KW_OK);
    assert_int_equal(add_key(s, "key_p2", "acc_a", 3, NOW - 5, 100), KW_OK); /* expired too */
    assert_int_equal(add_key(s, "key_b1", "acc_b", 4, NEVER, 100), KW_OK);

    size_t audits = sc_audit_count(s);
    int64_t head = sc_feed_head(s), seq = 0;
    int count = -1;
    kw_audit au = {.at = NOW + 1, .actor = "cli", .action = "key.revoke", .source_ip = "::1"};
    assert_int_equal(s->ops->key_revoke(s, "acc_a", "production", &au, &count, &seq), KW_OK);
    assert_int_equal(count, 2);
    assert_int_equal(seq, head + 2);
    kw_key_change_list list = feed_since(s, head);
    assert_int_equal(list.count, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_false(list.items[i].present);
        assert_true(strcmp(list.items[i].row.key.id, "key_p1") == 0 ||
                    strcmp(list.items[i].row.key.id, "key_p2") == 0);
    }
    free(list.items);
    assert_int_equal(sc_audit_count(s), audits + 2);
    kw_audit_list log = account_log(s, "acc_a");
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(log.items[i].action, "key.revoke");
        assert_string_equal(log.items[i].source_ip, "::1");
        assert_string_equal(log.items[i].key_name, strcmp(log.items[i].key_id, "key_p1") == 0
                                                       ? "Name of key_p1"
                                                       : "Name of key_p2");
    }
    kw_audit_list_free(&log);
    kw_key got;
    assert_int_equal(s->ops->key_get(s, "acc_a", "key_s1", &got), KW_OK);
    assert_int_equal(s->ops->key_get(s, "acc_b", "key_b1", &got), KW_OK);

    /* Nothing left in production: no change, no entry; then every environment. */
    head = sc_feed_head(s);
    assert_int_equal(s->ops->key_revoke(s, "acc_a", "production", &au, &count, &seq), KW_OK);
    assert_int_equal(count, 0);
    assert_int_equal(sc_feed_head(s), head);
    assert_int_equal(s->ops->key_revoke(s, "acc_a", NULL, &au, &count, &seq), KW_OK);
    assert_int_equal(count, 1);
    assert_int_equal(key_count(s, "acc_a"), 0);
    assert_int_equal(key_count(s, "acc_b"), 1);
    assert_int_equal(s->ops->key_revoke(s, "acc_zz", NULL, &au, &count, &seq), KW_ERR_NOT_FOUND);
}

enum { RACE_KEYS = 40 };

typedef struct {
    kw_store *store;
    int inserted; /* how many of the keys were inserted (in order) */
} race_writer;

static void *on_race_insert(void *arg)
{
    race_writer *w = arg;
    for (int i = 0; i < RACE_KEYS; i++) {
        char id[KW_ID_BUFSZ];
        snprintf(id, sizeof id, "key_race%d", i);
        if (add_key(w->store, id, "acc_a", 100 + i, NEVER, 1000) != KW_OK)
            break;
        w->inserted = i + 1;
    }
    return NULL;
}

/*
 * Creates racing a revoke: every key whose insert committed before the
 * revoke is gone, every later one stays, so the survivors are exactly
 * the keys after the revoke's count; an untouched account keeps its key.
 */
static void test_key_revoke_races_creates(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    assert_int_equal(add_key(s, "key_b1", "acc_b", 1, NEVER, 100), KW_OK);
    race_writer w = {.store = s};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, on_race_insert, &w), 0);
    usleep(2000);
    int count = 0;
    kw_audit au = {.at = NOW, .actor = "cli", .action = "key.revoke"};
    assert_int_equal(s->ops->key_revoke(s, "acc_a", NULL, &au, &count, NULL), KW_OK);
    pthread_join(t, NULL);
    assert_int_equal(w.inserted, RACE_KEYS);
    kw_key_list list;
    assert_int_equal(s->ops->key_list(s, "acc_a", NOW, &list), KW_OK);
    assert_int_equal((int)list.count, RACE_KEYS - count);
    for (size_t i = 0; i < list.count; i++) {
        int n = atoi(list.items[i].id + strlen("key_race"));
        assert_true(n >= count); /* inserted after the revoke */
    }
    kw_key_list_free(&list);
    assert_int_equal(key_count(s, "acc_b"), 1);
}

/* Pages of 3 while entries keep arriving between reads: each entry of the start once, in order. */
static void test_audit_pages_by_position(void **state)
{
    kw_store *s = fixture_store(state);
    sc_add_account(s, "acc_a");
    sc_add_account(s, "acc_b");
    for (int i = 0; i < 10; i++) {
        char id[KW_ID_BUFSZ];
        snprintf(id, sizeof id, "key_p%d", i);
        assert_int_equal(add_key(s, id, i % 2 ? "acc_a" : "acc_b", i, NEVER, 100), KW_OK);
    }
    kw_audit_list all = account_log(s, "acc_a"); /* 5 keys + account.create */
    assert_int_equal(all.count, 6);
    size_t seen = 0;
    int64_t before = 0;
    char id[KW_ID_BUFSZ] = "";
    for (int page = 0; page < 10; page++) {
        kw_audit_list list;
        assert_int_equal(s->ops->audit_page(s, "acc_a", before, 3, &list), KW_OK);
        /* A newcomer arrives between two reads; it is newer than every page. */
        snprintf(id, sizeof id, "key_late%d", page);
        assert_int_equal(add_key(s, id, "acc_a", 50 + page, NEVER, 100), KW_OK);
        for (size_t i = 0; i < list.count; i++) {
            assert_true(seen < all.count);
            assert_int_equal(list.items[i].seq, all.items[seen].seq);
            assert_string_equal(list.items[i].account_id, "acc_a");
            seen++;
        }
        if (list.count == 0) {
            kw_audit_list_free(&list);
            break;
        }
        before = list.items[list.count - 1].seq;
        kw_audit_list_free(&list);
    }
    assert_int_equal(seen, all.count);
    kw_audit_list_free(&all);
    /* Before 0 starts at the newest. */
    kw_audit_list first;
    assert_int_equal(s->ops->audit_page(s, "acc_a", 0, 1, &first), KW_OK);
    assert_int_equal(first.count, 1);
    assert_string_equal(first.items[0].key_id, id);
    kw_audit_list_free(&first);
}

static void test_audit_prune_and_source_ip(void **state)
{
    kw_store *s = fixture_store(state);
    kw_account a = {.id = "acc_a", .name = "A", .created_at = NOW};
    kw_audit au = {
        .at = NOW - 100, .actor = "cli", .action = "account.create", .source_ip = "2001:db8::1"};
    assert_int_equal(s->ops->account_insert(s, &a, &au), KW_OK);
    kw_user u = {.id = "usr_1", .account_id = "acc_a", .email = "a@example.com", .created_at = NOW};
    au = (kw_audit){.at = NOW - 50, .actor = "cli", .action = "user.add"};
    assert_int_equal(s->ops->user_insert(s, &u, "$argon2id$stub", &au), KW_OK);
    /* A sign-in and a sign-out: the user acts, for its account. */
    uint8_t h[KW_HASH_BYTES];
    make_hash(h, 9);
    au = (kw_audit){.at = NOW, .action = "session.create", .source_ip = "192.0.2.7"};
    assert_int_equal(s->ops->session_insert(s, h, "usr_1", NOW, NOW + 60, &au), KW_OK);
    au = (kw_audit){.at = NOW + 1, .action = "session.delete", .source_ip = "192.0.2.7"};
    assert_int_equal(s->ops->session_delete(s, h, &au), KW_OK);
    /* A sign-out of no session writes nothing. */
    assert_int_equal(s->ops->session_delete(s, h, &au), KW_ERR_NOT_FOUND);

    kw_audit_list log = account_log(s, "acc_a");
    assert_int_equal(log.count, 4);
    assert_string_equal(log.items[0].action, "session.delete");
    assert_string_equal(log.items[0].actor, "user:usr_1");
    assert_string_equal(log.items[0].source_ip, "192.0.2.7");
    assert_string_equal(log.items[1].action, "session.create");
    assert_string_equal(log.items[1].actor, "user:usr_1");
    assert_string_equal(log.items[1].account_id, "acc_a");
    assert_string_equal(log.items[2].source_ip, ""); /* unknown: NULL */
    assert_string_equal(log.items[3].source_ip, "2001:db8::1");
    kw_audit_list_free(&log);

    /* Only entries older than the bound go; a second prune finds none. */
    int64_t removed = -1;
    assert_int_equal(s->ops->audit_prune(s, NOW - 50, &removed), KW_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(s->ops->audit_prune(s, NOW - 50, &removed), KW_OK);
    assert_int_equal(removed, 0);
    log = account_log(s, "acc_a");
    assert_int_equal(log.count, 3);
    assert_string_equal(log.items[2].action, "user.add");
    kw_audit_list_free(&log);
    assert_int_equal(s->ops->audit_prune(s, NOW + 2, &removed), KW_OK);
    assert_int_equal(removed, 3);
    assert_int_equal(sc_audit_count(s), 0);
}

size_t sc_cases(struct CMUnitTest *out, CMFixtureFunction setup, CMFixtureFunction teardown,
                void (*old_key)(void **state))
{
    insert_old_key = old_key;
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
        cmocka_unit_test_setup_teardown(test_feed_positions_are_contiguous_across_writers, NULL,
                                        NULL),
        cmocka_unit_test_setup_teardown(test_only_key_changes_enter_the_feed, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_changes_since_reports_present_and_gone, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_feed_prune_leaves_a_visible_gap, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_key_scan_is_one_snapshot, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_key_update, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_key_roll, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_key_revoke, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_key_revoke_races_creates, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_audit_pages_by_position, NULL, NULL),
        cmocka_unit_test_setup_teardown(test_audit_prune_and_source_ip, NULL, NULL),
    };
    size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++) {
        out[i] = cases[i];
        out[i].setup_func = setup;
        out[i].teardown_func = teardown;
    }
    return n;
}
