/*
 * The key lifecycle through the service: create, list, show, delete,
 * verify, the limit, bad input, and what reaches the database files.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/service.h"
#include "core/service_internal.h" /* white box: to count store lookups */
#include "testutil.h"

static int64_t fake_now = 1795741323;

static int64_t fake_clock(void)
{
    return fake_now;
}

typedef struct {
    char *dir;
    kw_service *svc;
    kw_account acc;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->dir = tu_tempdir();
    kw_config cfg;
    tu_config(&cfg, f->dir);
    cfg.clock = fake_clock;
    fake_now = 1795741323;
    kw_error err;
    if (kw_service_open(&cfg, &f->svc, &err) != KW_OK ||
        kw_service_account_create(f->svc, "test", "Acme", &f->acc, &err) != KW_OK) {
        fprintf(stderr, "setup: %s\n", err.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kw_service_close(f->svc);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static kw_verify_code verify(kw_service *svc, const char *key, const char *env)
{
    kw_verify_result r;
    kw_error err;
    assert_int_equal(kw_service_key_verify(svc, key, strlen(key), env, &r, &err), KW_OK);
    return r.code;
}

static void test_create_then_verify(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "Production CRM", NULL,
                                           KW_TIME_NONE, &k, secret, &err),
                     KW_OK);
    assert_memory_equal(secret, "kw_production_", 14);
    assert_string_equal(k.environment, "production");
    assert_string_equal(k.name, "Production CRM");
    assert_string_equal(k.account_id, f->acc.id);
    assert_int_equal(k.created_at, fake_now);
    assert_int_equal(k.last_used_at, KW_TIME_NONE);

    kw_verify_result r;
    assert_int_equal(kw_service_key_verify(f->svc, secret, strlen(secret), NULL, &r, &err), KW_OK);
    assert_int_equal(r.code, KW_VERIFY_VALID);
    assert_string_equal(r.key.id, k.id);
    assert_string_equal(r.key.account_id, f->acc.id);
    assert_string_equal(r.key.name, "Production CRM");
    assert_int_equal(verify(f->svc, secret, "production"), KW_VERIFY_VALID);
    assert_int_equal(verify(f->svc, secret, "staging"), KW_VERIFY_ENVIRONMENT_MISMATCH);
    assert_int_equal(kw_service_key_verify(f->svc, secret, strlen(secret), "Prod", &r, &err),
                     KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "environment"));

    kw_key shown;
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &shown, &err), KW_OK);
    assert_string_equal(shown.masked, k.masked);
    assert_null(strstr(shown.masked, secret + 14));
}

static void test_list_is_newest_first_with_counts(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    const char *names[] = {"first", "second", "third"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, names[i], "staging",
                                               KW_TIME_NONE, &k, secret, &err),
                         KW_OK);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, 3);
    assert_int_equal(list.active_count, 3);
    assert_int_equal(list.key_limit, 25);
    assert_string_equal(list.items[0].name, "third");
    assert_string_equal(list.items[2].name, "first");
    kw_key_list_free(&list);
}

static void test_delete_is_immediate_and_final(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "old", NULL, KW_TIME_NONE, &k,
                                           secret, &err),
                     KW_OK);
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_VALID);
    assert_int_equal(kw_service_key_delete(f->svc, "test", f->acc.id, k.id, &err), KW_OK);
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_NOT_FOUND);
    assert_int_equal(kw_service_key_delete(f->svc, "test", f->acc.id, k.id, &err),
                     KW_ERR_NOT_FOUND);
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &k, &err), KW_ERR_NOT_FOUND);

    /* The audit log keeps the deletion, with id and name. */
    kw_audit_list log;
    assert_int_equal(kw_service_audit_list(f->svc, f->acc.id, 10, &log, &err), KW_OK);
    assert_true(log.count >= 2);
    assert_string_equal(log.items[0].action, "key.delete");
    assert_string_equal(log.items[0].key_name, "old");
    assert_string_equal(log.items[0].actor, "test");
    kw_audit_list_free(&log);
}

static void test_limit_refuses_the_26th_and_creates_nothing(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    for (int i = 0; i < 25; i++)
        assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "k", NULL, KW_TIME_NONE,
                                               &k, secret, &err),
                         KW_OK);
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "k26", NULL, KW_TIME_NONE, &k,
                                           secret, &err),
                     KW_ERR_LIMIT);
    assert_non_null(strstr(err.message, "25"));
    assert_string_equal(secret, "");
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, 25);
    assert_int_equal(list.active_count, 25);
    kw_key_list_free(&list);

    /* Deleting one frees a slot: zero-downtime rotation. */
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(kw_service_key_delete(f->svc, "test", f->acc.id, list.items[3].id, &err),
                     KW_OK);
    kw_key_list_free(&list);
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "new", NULL, KW_TIME_NONE, &k,
                                           secret, &err),
                     KW_OK);
}

static void test_expired_keys_fail_and_free_their_slot(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(
        kw_service_key_create(f->svc, "test", f->acc.id, "temp", NULL, fake_now, &k, secret, &err),
        KW_ERR_INVALID); /* not in the future */
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "temp", NULL, fake_now + 60,
                                           &k, secret, &err),
                     KW_OK);
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_VALID);
    fake_now += 60;
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_EXPIRED);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, 1);
    assert_int_equal(list.active_count, 0);
    kw_key_list_free(&list);
}

/* The number of keys the account holds, expired or not, and of audit entries. */
static void count_keys_and_entries(fixture *f, size_t *keys, size_t *entries)
{
    kw_key_list list;
    kw_audit_list audit;
    kw_error err;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(kw_service_audit_list(f->svc, NULL, 1000, &audit, &err), KW_OK);
    *keys = list.count;
    *entries = audit.count;
    kw_key_list_free(&list);
    kw_audit_list_free(&audit);
}

/*
 * "Never expires" is KW_TIME_NONE, apart from every time: the epoch, and any
 * time up to now, is refused as past and creates nothing, whatever the
 * clock says; the last second of year 9999 is the latest expiry.
 */
static void test_expiry_boundaries(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    size_t keys, entries, keys_after, entries_after;
    count_keys_and_entries(f, &keys, &entries);
    const int64_t past[] = {0, -1, 1, KW_TIME_MIN, fake_now - 1, fake_now};
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "past", NULL, past[i], &k,
                                               secret, &err),
                         KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "expires_at must be in the future"));
        assert_string_equal(secret, "");
    }
    assert_non_null(strstr(err.message, "2026-11-27T01:02:03Z has already passed"));
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "far", NULL, KW_TIME_MAX + 1,
                                           &k, secret, &err),
                     KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "9999-12-31T23:59:59Z"));
    count_keys_and_entries(f, &keys_after, &entries_after);
    assert_int_equal(keys_after, keys);
    assert_int_equal(entries_after, entries);

    /* The epoch as a clock reading: 0 is a time there too, not "never". */
    int64_t saved = fake_now;
    fake_now = 0;
    assert_int_equal(
        kw_service_key_create(f->svc, "test", f->acc.id, "epoch", NULL, 0, &k, secret, &err),
        KW_ERR_INVALID);
    fake_now = saved;

    char never[KW_KEY_BUFSZ], soon[KW_KEY_BUFSZ], last[KW_KEY_BUFSZ];
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "never", NULL, KW_TIME_NONE,
                                           &k, never, &err),
                     KW_OK);
    assert_int_equal(k.expires_at, KW_TIME_NONE);
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &k, &err), KW_OK);
    assert_int_equal(k.expires_at, KW_TIME_NONE);
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "soon", NULL, fake_now + 1,
                                           &k, soon, &err),
                     KW_OK);
    assert_int_equal(k.expires_at, fake_now + 1);
    assert_int_equal(
        kw_service_key_create(f->svc, "test", f->acc.id, "last", NULL, KW_TIME_MAX, &k, last, &err),
        KW_OK);
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &k, &err), KW_OK);
    assert_int_equal(k.expires_at, KW_TIME_MAX);
    assert_int_equal(verify(f->svc, soon, NULL), KW_VERIFY_VALID);
    fake_now += 1;
    assert_int_equal(verify(f->svc, soon, NULL), KW_VERIFY_EXPIRED);
    assert_int_equal(verify(f->svc, never, NULL), KW_VERIFY_VALID);
    assert_int_equal(verify(f->svc, last, NULL), KW_VERIFY_VALID);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, 3);
    assert_int_equal(list.active_count, 2);
    kw_key_list_free(&list);
}

static void test_bad_input_is_refused_and_creates_nothing(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    char long_name[102];
    memset(long_name, 'n', 101);
    long_name[101] = '\0';
    const char *bad_names[] = {"",         "  ",           long_name, "a\x01z", "a\x1b[31mred",
                               "bad\xc3(", "\xed\xa0\x80", NULL};
    for (const char **n = bad_names; *n; n++) {
        assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, *n, NULL, KW_TIME_NONE,
                                               &k, secret, &err),
                         KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "name"));
    }
    const char *bad_envs[] = {"",     "Production", "prod-1", "1prod", "abcdefghijklmnopq",
                              "root", NULL};
    for (const char **e = bad_envs; *e; e++) {
        assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "ok", *e, KW_TIME_NONE,
                                               &k, secret, &err),
                         KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "environment"));
    }
    assert_int_equal(kw_service_key_create(f->svc, "test", "acc_nope", "ok", NULL, KW_TIME_NONE, &k,
                                           secret, &err),
                     KW_ERR_INVALID);
    assert_int_equal(kw_service_key_create(f->svc, "test", "acc_0000000000000000000000", "ok", NULL,
                                           KW_TIME_NONE, &k, secret, &err),
                     KW_ERR_NOT_FOUND);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, 0);
    kw_key_list_free(&list);
    kw_audit_list log;
    assert_int_equal(kw_service_audit_list(f->svc, f->acc.id, 100, &log, &err), KW_OK);
    assert_int_equal(log.count, 1); /* only account.create */
    kw_audit_list_free(&log);
}

static void test_another_accounts_key_is_not_found(void **state)
{
    fixture *f = *state;
    kw_account other;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(kw_service_account_create(f->svc, "test", "Other", &other, &err), KW_OK);
    assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "mine", NULL, KW_TIME_NONE,
                                           &k, secret, &err),
                     KW_OK);
    kw_key seen;
    assert_int_equal(kw_service_key_get(f->svc, other.id, k.id, &seen, &err), KW_ERR_NOT_FOUND);
    assert_int_equal(kw_service_key_delete(f->svc, "test", other.id, k.id, &err), KW_ERR_NOT_FOUND);
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_VALID);
}

static void test_malformed_keys(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(
        kw_service_key_create(f->svc, "test", f->acc.id, "k", NULL, KW_TIME_NONE, &k, secret, &err),
        KW_OK);
    assert_int_equal(verify(f->svc, "", NULL), KW_VERIFY_MALFORMED);
    assert_int_equal(verify(f->svc, "hello", NULL), KW_VERIFY_MALFORMED);
    char copy[KW_KEY_BUFSZ];
    strcpy(copy, secret);
    copy[20] = copy[20] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(f->svc, copy, NULL), KW_VERIFY_MALFORMED);
    /* A well-formed key that was never issued. */
    char forged[KW_KEY_BUFSZ];
    kw_keyfmt_generate("kw", "production", forged);
    assert_int_equal(verify(f->svc, forged, NULL), KW_VERIFY_NOT_FOUND);
    /* Another deployment's prefix. */
    kw_keyfmt_generate("acme", "production", forged);
    assert_int_equal(verify(f->svc, forged, NULL), KW_VERIFY_MALFORMED);
}

static const kw_store_ops *real_ops;
static int lookups;

static kw_status on_counted_key_find(kw_store *s, const uint8_t hash[KW_HASH_BYTES],
                                     uint32_t pepper_version, kw_key *out)
{
    lookups++;
    return real_ops->key_find(s, hash, pepper_version, out);
}

static void test_malformed_keys_never_reach_the_store(void **state)
{
    fixture *f = *state;
    static kw_store_ops counted;
    real_ops = f->svc->store->ops;
    counted = *real_ops;
    counted.key_find = on_counted_key_find;
    f->svc->store->ops = &counted;
    lookups = 0;

    char key[KW_KEY_BUFSZ];
    kw_keyfmt_generate("kw", "production", key);
    size_t len = strlen(key);
    for (size_t i = 0; i < len; i++) {
        char bad[KW_KEY_BUFSZ];
        memcpy(bad, key, len + 1);
        bad[i] = bad[i] == 'x' ? 'y' : 'x';
        assert_int_equal(verify(f->svc, bad, NULL), KW_VERIFY_MALFORMED);
    }
    assert_int_equal(verify(f->svc, "kw_production_", NULL), KW_VERIFY_MALFORMED);
    assert_int_equal(lookups, 0);
    kw_keyfmt_generate("kw", "root", key); /* a root key is no account key */
    assert_int_equal(verify(f->svc, key, NULL), KW_VERIFY_NOT_FOUND);
    assert_int_equal(lookups, 0);
    kw_keyfmt_generate("kw", "staging", key); /* well-formed: one indexed lookup */
    assert_int_equal(verify(f->svc, key, NULL), KW_VERIFY_NOT_FOUND);
    assert_int_equal(lookups, 1);
    f->svc->store->ops = real_ops;
}

static void test_last_used_is_written_in_batches(void **state)
{
    fixture *f = *state;
    kw_key k;
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    assert_int_equal(
        kw_service_key_create(f->svc, "test", f->acc.id, "k", NULL, KW_TIME_NONE, &k, secret, &err),
        KW_OK);
    fake_now += 100;
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_VALID);
    assert_int_equal(kw_service_flush_last_used(f->svc), KW_OK);
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &k, &err), KW_OK);
    assert_int_equal(k.last_used_at, fake_now);
    /* Failed verifications do not count as use. */
    fake_now += 100;
    assert_int_equal(verify(f->svc, secret, "staging"), KW_VERIFY_ENVIRONMENT_MISMATCH);
    assert_int_equal(kw_service_flush_last_used(f->svc), KW_OK);
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &k, &err), KW_OK);
    assert_int_equal(k.last_used_at, fake_now - 100);
}

/*
 * On PostgreSQL: true when text appears in the text form of any stored row
 * (keys, accounts, the audit log). The query divides by zero on a match.
 */
static bool in_postgres_rows(const char *dir, const char *text)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT 1 / (CASE WHEN position('%s' in (SELECT coalesce(string_agg(x, ' '), '') "
             "FROM (SELECT t::text AS x FROM api_keys t UNION ALL SELECT t::text FROM accounts t "
             "UNION ALL SELECT t::text FROM audit_log t) rows)) > 0 THEN 0 ELSE 1 END)",
             text);
    const char *state = tu_pg_exec(tu_store_url(dir), sql);
    assert_true(state[0] == '\0' || strcmp(state, "22012") == 0);
    return strcmp(state, "22012") == 0;
}

/* On SQLite: true when text appears in the database, its WAL or the pepper file. */
static bool in_sqlite_files(const char *dir, const char *text)
{
    const char *files[] = {"keyward.db", "keyward.db-wal", "keyward.db-shm", "pepper"};
    bool found = false;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        size_t len;
        unsigned char *bytes = tu_read_file(path, &len);
        if (i == 0)
            assert_non_null(bytes); /* the database itself must be searched */
        if (bytes)
            found = found || tu_contains(bytes, len, text);
        free(bytes);
    }
    return found;
}

static void test_no_plaintext_reaches_the_database_files(void **state)
{
    fixture *f = *state;
    enum { N = 20 };
    char secrets[N][KW_KEY_BUFSZ];
    kw_key keys[N];
    kw_error err;
    for (int i = 0; i < N; i++) {
        assert_int_equal(kw_service_key_create(f->svc, "test", f->acc.id, "k", NULL, KW_TIME_NONE,
                                               &keys[i], secrets[i], &err),
                         KW_OK);
        assert_int_equal(verify(f->svc, secrets[i], NULL), KW_VERIFY_VALID);
    }
    assert_int_equal(kw_service_flush_last_used(f->svc), KW_OK);
    bool postgres = tu_pg_server() != NULL;
    for (int i = 0; i < N; i++) {
        /* The search finds what is stored (the id), so a miss means something. */
        assert_true(postgres ? in_postgres_rows(f->dir, keys[i].id)
                             : in_sqlite_files(f->dir, keys[i].id));
        /* nor the whole key, nor any 16 of its 43 secret characters */
        char part[17];
        memcpy(part, secrets[i] + 14 + 8, 16);
        part[16] = '\0';
        const char *needles[] = {secrets[i], part};
        for (size_t n = 0; n < 2; n++)
            assert_false(postgres ? in_postgres_rows(f->dir, needles[n])
                                  : in_sqlite_files(f->dir, needles[n]));
    }
}

static void test_pepper_rotation_keeps_old_keys(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    kw_config cfg;
    tu_config(&cfg, dir);
    cfg.pepper = "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    kw_service *svc;
    kw_error err;
    kw_account acc;
    kw_key k;
    char old_key[KW_KEY_BUFSZ], new_key[KW_KEY_BUFSZ];
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    assert_int_equal(kw_service_account_create(svc, "test", "Acme", &acc, &err), KW_OK);
    assert_int_equal(
        kw_service_key_create(svc, "test", acc.id, "old", NULL, KW_TIME_NONE, &k, old_key, &err),
        KW_OK);
    kw_service_close(svc);

    cfg.pepper = "1:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
                 "2:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    assert_int_equal(verify(svc, old_key, NULL), KW_VERIFY_VALID);
    assert_int_equal(
        kw_service_key_create(svc, "test", acc.id, "new", NULL, KW_TIME_NONE, &k, new_key, &err),
        KW_OK);
    assert_int_equal(verify(svc, new_key, NULL), KW_VERIFY_VALID);
    kw_service_close(svc);

    /* Another pepper under a version the database knows is refused outright. */
    cfg.pepper = "1:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    svc = NULL;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_ERR_INVALID);
    assert_null(svc);
    assert_non_null(strstr(err.message, "pepper (version 1)"));
    assert_null(strstr(err.message, "ffeedd"));

    /* A database copied without the pepper cannot test a key. */
    cfg.pepper = "3:0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    assert_int_equal(verify(svc, old_key, NULL), KW_VERIFY_NOT_FOUND);
    assert_int_equal(verify(svc, new_key, NULL), KW_VERIFY_NOT_FOUND);
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

static void test_exposed_pepper_file_refuses_to_start(void **state)
{
    fixture *f = *state;
    char path[4200];
    snprintf(path, sizeof path, "%s/pepper", f->dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    chmod(path, 0640);
    kw_config cfg;
    tu_config(&cfg, f->dir);
    kw_service *svc = NULL;
    kw_error err;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_ERR_INVALID);
    assert_null(svc);
    assert_non_null(strstr(err.message, "pepper"));
    chmod(path, 0600);
}

static void test_missing_pepper_beside_data_is_not_recreated(void **state)
{
    fixture *f = *state; /* its store holds an account */
    char path[4200];
    snprintf(path, sizeof path, "%s/pepper", f->dir);
    assert_int_equal(unlink(path), 0);
    kw_config cfg;
    tu_config(&cfg, f->dir);
    kw_service *svc = NULL;
    kw_error err;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_ERR_INVALID);
    assert_null(svc);
    assert_non_null(strstr(err.message, "is missing, and the database already holds keys"));
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0); /* no new pepper invented */
}

static void test_bad_config_is_refused(void **state)
{
    (void)state;
    kw_config cfg;
    kw_service *svc = NULL;
    kw_error err;
    char *dir = tu_tempdir();
    tu_config(&cfg, dir);
    cfg.key_prefix = "K";
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_ERR_INVALID);
    tu_config(&cfg, dir);
    cfg.max_keys_per_account = 0;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_ERR_INVALID);
    tu_config(&cfg, dir);
    cfg.store_url = "mysql://db";
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_ERR_INVALID);
    assert_null(svc);
    tu_rmtree(dir);
    free(dir);
}

/* ---- the key lifecycle ---- */

static kw_key make(fixture *f, const char *name, int64_t expires_at, char secret[KW_KEY_BUFSZ])
{
    kw_key k;
    kw_error err;
    kw_key_spec spec = {.name = name, .expires_at = expires_at, .metadata = "{\"tier\": \"gold\"}"};
    assert_int_equal(kw_service_key_create_spec(f->svc, "test", f->acc.id, &spec, &k, secret, &err),
                     KW_OK);
    assert_string_equal(k.metadata, "{\"tier\":\"gold\"}");
    return k;
}

static void test_roll_grace_by_the_clock(void **state)
{
    fixture *f = *state;
    char old_secret[KW_KEY_BUFSZ], new_secret[KW_KEY_BUFSZ];
    kw_key old = make(f, "Rolled", fake_now + 30 * 86400, old_secret);
    kw_key fresh, previous;
    kw_error err;
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, old.id, 3600, &fresh,
                                         new_secret, &previous, &err),
                     KW_OK);
    assert_string_not_equal(new_secret, old_secret);
    assert_string_equal(fresh.rolled_from, old.id);
    assert_string_equal(previous.rolled_to, fresh.id);
    assert_string_equal(fresh.metadata, "{\"tier\":\"gold\"}");
    assert_int_equal(previous.expires_at, fake_now + 3600);
    assert_int_equal(fresh.expires_at, fake_now + 30 * 86400); /* the same lifetime again */
    assert_int_equal(kw_key_state(&previous, fake_now), KW_KEY_EXPIRING);
    assert_int_equal(verify(f->svc, new_secret, NULL), KW_VERIFY_VALID);
    assert_int_equal(verify(f->svc, old_secret, NULL), KW_VERIFY_VALID);
    fake_now += 3599;
    assert_int_equal(verify(f->svc, old_secret, NULL), KW_VERIFY_VALID);
    fake_now += 1;
    assert_int_equal(verify(f->svc, old_secret, NULL), KW_VERIFY_EXPIRED);
    assert_int_equal(verify(f->svc, new_secret, NULL), KW_VERIFY_VALID);
    /* Once rolled, or expired, no second roll. */
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, old.id, 0, &fresh, new_secret,
                                         &previous, &err),
                     KW_ERR_KEY_STATE);
    assert_string_equal(new_secret, "");
    sodium_memzero(old_secret, sizeof old_secret);
}

static void test_roll_refusals_and_the_limit(void **state)
{
    fixture *f = *state;
    char secret[KW_KEY_BUFSZ];
    kw_key keys[25];
    for (int i = 0; i < 25; i++)
        keys[i] = make(f, "Full", KW_TIME_NONE, secret);
    kw_key fresh, previous;
    kw_error err;
    /* At the limit a roll still succeeds: 26 keys during the grace period. */
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[0].id, 60, &fresh, secret,
                                         &previous, &err),
                     KW_OK);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.active_count, 26);
    kw_key_list_free(&list);
    /* Rolled already. */
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[0].id, 60, &fresh, secret,
                                         &previous, &err),
                     KW_ERR_KEY_STATE);
    /* Disabled. */
    kw_key_patch off = {.has_enabled = true, .enabled = false};
    kw_key k;
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, keys[1].id, &off, &k, &err),
                     KW_OK);
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[1].id, 60, &fresh, secret,
                                         &previous, &err),
                     KW_ERR_KEY_STATE);
    /* Expired (grace 0 ends it at once). */
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[2].id, 0, &fresh, secret,
                                         &previous, &err),
                     KW_OK);
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[2].id, 0, &fresh, secret,
                                         &previous, &err),
                     KW_ERR_KEY_STATE);
    /* Bad grace: refused before anything. */
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[3].id, -1, &fresh, secret,
                                         &previous, &err),
                     KW_ERR_INVALID);
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, keys[3].id,
                                         KW_ROLL_GRACE_MAX_S + 1, &fresh, secret, &previous, &err),
                     KW_ERR_INVALID);
    assert_int_equal(kw_service_key_roll(f->svc, "test", f->acc.id, "key_0000000000000000000000",
                                         60, &fresh, secret, &previous, &err),
                     KW_ERR_NOT_FOUND);
}

static void test_disable_and_enable(void **state)
{
    fixture *f = *state;
    char secret[KW_KEY_BUFSZ];
    kw_key k = make(f, "Toggle", KW_TIME_NONE, secret);
    kw_key out;
    kw_error err;
    kw_key_patch off = {.has_enabled = true, .enabled = false};
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &off, &out, &err),
                     KW_OK);
    assert_false(out.enabled);
    assert_int_equal(kw_key_state(&out, fake_now), KW_KEY_DISABLED);
    assert_int_equal(verify(f->svc, secret, NULL), KW_VERIFY_DISABLED);
    assert_string_equal(kw_verify_code_name(KW_VERIFY_DISABLED), "DISABLED");
    /* A disabled key still occupies its slot. */
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.active_count, 1);
    kw_key_list_free(&list);
    kw_key_patch on = {.has_enabled = true, .enabled = true};
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &on, &out, &err),
                     KW_OK);
    kw_verify_result r;
    assert_int_equal(kw_service_key_verify(f->svc, secret, strlen(secret), NULL, &r, &err), KW_OK);
    assert_int_equal(r.code, KW_VERIFY_VALID);
    assert_string_equal(r.key.metadata, "{\"tier\":\"gold\"}");

    kw_audit_list log;
    assert_int_equal(kw_service_audit_list(f->svc, f->acc.id, 3, &log, &err), KW_OK);
    assert_string_equal(log.items[0].action, "key.enable");
    assert_string_equal(log.items[1].action, "key.disable");
    kw_audit_list_free(&log);
    sodium_memzero(secret, sizeof secret);
}

/* Each bad patch is refused with KW_ERR_INVALID and changes nothing at all. */
static void test_bad_patches_change_nothing(void **state)
{
    fixture *f = *state;
    char secret[KW_KEY_BUFSZ];
    kw_key k = make(f, "Kept", KW_TIME_NONE, secret);
    char big[1200];
    memset(big, 0, sizeof big);
    strcat(big, "{\"a\":\"");
    memset(big + strlen(big), 'x', 1020);
    strcat(big, "\"}");
    char many[512] = "{";
    for (int i = 0; i < 17; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"m%d\":%d", i ? "," : "", i,
                 i);
    strcat(many, "}");
    const char *bad_metadata[] = {
        big,
        many,
        "{\"Bad\":1}",
        "{\"a-b\":1}",
        "{\"\":1}",
        "{\"a\":null}",
        "{\"a\":[1]}",
        "{\"a\":{}}",
        "[1,2]",
        "\"text\"",
        "{\"a\":1",
        "not json",
        "{\"a\":1,\"a\":2}",
    };
    size_t audits = 0;
    kw_audit_list log;
    kw_error err;
    assert_int_equal(kw_service_audit_list(f->svc, f->acc.id, 1000, &log, &err), KW_OK);
    audits = log.count;
    kw_audit_list_free(&log);
    kw_key out;
    for (size_t i = 0; i < sizeof bad_metadata / sizeof bad_metadata[0]; i++) {
        kw_key_patch p = {.has_metadata = true, .metadata = bad_metadata[i]};
        assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &p, &out, &err),
                         KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "metadata"));
        /* Nor does a valid member beside it get through. */
        kw_key_patch both = {
            .has_name = true, .name = "Changed", .has_metadata = true, .metadata = bad_metadata[i]};
        assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &both, &out, &err),
                         KW_ERR_INVALID);
        kw_key_spec spec = {.name = "New", .expires_at = KW_TIME_NONE, .metadata = bad_metadata[i]};
        assert_int_equal(
            kw_service_key_create_spec(f->svc, "test", f->acc.id, &spec, &out, secret, &err),
            KW_ERR_INVALID);
    }
    kw_key_patch bad_name = {.has_name = true, .name = "", .has_enabled = true, .enabled = false};
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &bad_name, &out, &err),
                     KW_ERR_INVALID);
    kw_key_patch past = {.has_expires_at = true, .expires_at = fake_now, .has_enabled = true};
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &past, &out, &err),
                     KW_ERR_INVALID);
    kw_key_patch empty = {0};
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &empty, &out, &err),
                     KW_ERR_INVALID);

    kw_key now;
    assert_int_equal(kw_service_key_get(f->svc, f->acc.id, k.id, &now, &err), KW_OK);
    assert_memory_equal(&now, &k, sizeof now);
    assert_int_equal(kw_service_audit_list(f->svc, f->acc.id, 1000, &log, &err), KW_OK);
    assert_int_equal(log.count, audits);
    kw_audit_list_free(&log);
    kw_key_list list;
    assert_int_equal(kw_service_key_list(f->svc, f->acc.id, &list, &err), KW_OK);
    assert_int_equal(list.count, 1);
    kw_key_list_free(&list);

    /* And a good patch of several members is one key.update. */
    kw_key_patch good = {.has_name = true,
                         .name = "  Renamed ",
                         .has_expires_at = true,
                         .expires_at = fake_now + 60,
                         .has_metadata = true,
                         .metadata = ""};
    assert_int_equal(kw_service_key_update(f->svc, "test", f->acc.id, k.id, &good, &out, &err),
                     KW_OK);
    assert_string_equal(out.name, "Renamed");
    assert_int_equal(out.expires_at, fake_now + 60);
    assert_string_equal(out.metadata, "");
    assert_int_equal(kw_service_audit_list(f->svc, f->acc.id, 1, &log, &err), KW_OK);
    assert_string_equal(log.items[0].action, "key.update");
    kw_audit_list_free(&log);
}

static void test_revoke_all_and_audit_pages(void **state)
{
    fixture *f = *state;
    char s1[KW_KEY_BUFSZ], s2[KW_KEY_BUFSZ];
    make(f, "One", KW_TIME_NONE, s1);
    kw_key_spec staging = {.name = "Two", .environment = "staging", .expires_at = KW_TIME_NONE};
    kw_key k;
    kw_error err;
    assert_int_equal(kw_service_key_create_spec(f->svc, "test", f->acc.id, &staging, &k, s2, &err),
                     KW_OK);
    kw_service_set_source_ip("203.0.113.5");
    int revoked = -1;
    assert_int_equal(
        kw_service_key_revoke_all(f->svc, "test", f->acc.id, "production", &revoked, &err), KW_OK);
    kw_service_set_source_ip(NULL);
    assert_int_equal(revoked, 1);
    assert_int_equal(verify(f->svc, s1, NULL), KW_VERIFY_NOT_FOUND);
    assert_int_equal(verify(f->svc, s2, NULL), KW_VERIFY_VALID);
    assert_int_equal(kw_service_key_revoke_all(f->svc, "test", f->acc.id, "Bad!", &revoked, &err),
                     KW_ERR_INVALID);

    /* Pages: newest first, next = the oldest seq, 0 at the end. */
    kw_audit_list page;
    int64_t next = -1;
    assert_int_equal(kw_service_audit_page(f->svc, f->acc.id, 0, 1, &page, &next, &err), KW_OK);
    assert_int_equal(page.count, 1);
    assert_string_equal(page.items[0].action, "key.revoke");
    assert_string_equal(page.items[0].source_ip, "203.0.113.5");
    assert_int_equal(next, page.items[0].seq);
    kw_audit_list_free(&page);
    assert_int_equal(
        kw_service_audit_page(f->svc, f->acc.id, next, KW_AUDIT_PAGE_MAX, &page, &next, &err),
        KW_OK);
    assert_int_equal(page.count, 3); /* two creates and account.create */
    assert_int_equal(next, 0);
    assert_string_equal(page.items[0].source_ip, ""); /* set only for the revoke */
    kw_audit_list_free(&page);
    assert_int_equal(kw_service_audit_page(f->svc, f->acc.id, 0, 0, &page, &next, &err),
                     KW_ERR_INVALID);
    assert_int_equal(
        kw_service_audit_page(f->svc, f->acc.id, 0, KW_AUDIT_PAGE_MAX + 1, &page, &next, &err),
        KW_ERR_INVALID);

    /* The retention's prune: everything before now + 1 goes. */
    int64_t removed = 0;
    assert_int_equal(kw_service_audit_prune(f->svc, fake_now + 1, &removed, &err), KW_OK);
    assert_int_equal(removed, 4);
    sodium_memzero(s1, sizeof s1);
    sodium_memzero(s2, sizeof s2);
}

/* The clock of the retention test, read by the service's flusher thread too. */
static _Atomic int64_t retention_now;

static int64_t retention_clock(void)
{
    return atomic_load(&retention_now);
}

/* How many audit entries the account has (at most one page). */
static size_t audit_count(kw_service *svc, const char *account_id)
{
    kw_audit_list page;
    int64_t next = 0;
    kw_error err;
    assert_int_equal(
        kw_service_audit_page(svc, account_id, 0, KW_AUDIT_PAGE_MAX, &page, &next, &err), KW_OK);
    size_t n = page.count;
    kw_audit_list_free(&page);
    return n;
}

/* With audit_retention_days set, the service prunes on its own, without a call. */
static void test_retention_prunes_old_entries_on_its_own(void **state)
{
    (void)state;
    const int64_t today = 1795741323;
    char *dir = tu_tempdir();
    kw_config cfg;
    tu_config(&cfg, dir);
    cfg.clock = retention_clock;
    cfg.audit_retention_days = 1;
    cfg.last_used_interval_ms = 20; /* the upkeep runs with the flusher */
    atomic_store(&retention_now, today - 3 * 86400);
    kw_service *svc;
    kw_error err;
    kw_account old, recent;
    assert_int_equal(kw_service_open(&cfg, &svc, &err), KW_OK);
    assert_int_equal(kw_service_account_create(svc, "test", "Old", &old, &err), KW_OK);
    usleep(100 * 1000); /* several upkeep rounds: nothing is older than a day yet */
    assert_int_equal(audit_count(svc, old.id), 1);
    atomic_store(&retention_now, today);
    assert_int_equal(kw_service_account_create(svc, "test", "Recent", &recent, &err), KW_OK);
    /* Bounded wait for the next round (20 ms apart), not a timing assertion. */
    for (int i = 0; i < 250 && audit_count(svc, old.id) != 0; i++)
        usleep(20 * 1000);
    assert_int_equal(audit_count(svc, old.id), 0);
    assert_int_equal(audit_count(svc, recent.id), 1);
    kw_service_close(svc);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retention_prunes_old_entries_on_its_own),
        cmocka_unit_test_setup_teardown(test_create_then_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_is_newest_first_with_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_is_immediate_and_final, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limit_refuses_the_26th_and_creates_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expired_keys_fail_and_free_their_slot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_expiry_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input_is_refused_and_creates_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_another_accounts_key_is_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_keys_never_reach_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_used_is_written_in_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_plaintext_reaches_the_database_files, setup,
                                        teardown),
        cmocka_unit_test(test_pepper_rotation_keeps_old_keys),
        cmocka_unit_test_setup_teardown(test_exposed_pepper_file_refuses_to_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_pepper_beside_data_is_not_recreated, setup,
                                        teardown),
        cmocka_unit_test(test_bad_config_is_refused),
        cmocka_unit_test_setup_teardown(test_roll_grace_by_the_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roll_refusals_and_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disable_and_enable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_patches_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revoke_all_and_audit_pages, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
