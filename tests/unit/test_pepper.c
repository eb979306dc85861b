#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "core/pepper.h"
#include "testutil.h"

#define HEX_A "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define HEX_B "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void hash_of(const kw_pepper *p, size_t index, const char *msg, uint8_t out[32])
{
    kw_pepper_hash(p, index, msg, strlen(msg), out);
}

static void test_first_start_creates_a_private_file(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/pepper", dir);
    kw_pepper *p = NULL;
    kw_error err;
    assert_int_equal(kw_pepper_load(path, NULL, true, &p, &err), KW_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(kw_pepper_count(p), 1);
    assert_int_equal(kw_pepper_version(p, 0), 1);
    uint8_t h1[32], h2[32];
    hash_of(p, 0, "message", h1);
    kw_pepper_free(p);

    /* Loading again gives the same pepper. */
    assert_int_equal(kw_pepper_load(path, NULL, true, &p, &err), KW_OK);
    hash_of(p, 0, "message", h2);
    assert_memory_equal(h1, h2, 32);
    kw_pepper_free(p);
    tu_rmtree(dir);
    free(dir);
}

static void test_group_or_other_access_is_refused(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/pepper", dir);
    kw_pepper *p = NULL;
    kw_error err;
    assert_int_equal(kw_pepper_load(path, NULL, true, &p, &err), KW_OK);
    kw_pepper_free(p);
    const mode_t modes[] = {0640, 0604, 0620, 0602, 0610, 0644};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        assert_int_equal(chmod(path, modes[i]), 0);
        assert_int_equal(kw_pepper_load(path, NULL, true, &p, &err), KW_ERR_INVALID);
        assert_null(p);
        assert_non_null(strstr(err.message, "group or others"));
    }
    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(kw_pepper_load(path, NULL, true, &p, &err), KW_OK);
    kw_pepper_free(p);
    tu_rmtree(dir);
    free(dir);
}

static void test_a_named_file_must_exist(void **state)
{
    (void)state;
    char *dir = tu_tempdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/missing", dir);
    kw_pepper *p = NULL;
    kw_error err;
    assert_int_equal(kw_pepper_load(path, NULL, false, &p, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "missing"));
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);
    tu_rmtree(dir);
    free(dir);
}

static void test_keyring_text(void **state)
{
    (void)state;
    kw_pepper *p = NULL, *a = NULL;
    kw_error err;
    assert_int_equal(kw_pepper_load(NULL, "# rotated\n1:" HEX_A "\n2:" HEX_B "\n", false, &p, &err),
                     KW_OK);
    assert_int_equal(kw_pepper_count(p), 2);
    assert_int_equal(kw_pepper_version(p, 0), 2); /* highest first */
    assert_int_equal(kw_pepper_load(NULL, HEX_A, false, &a, &err), KW_OK);
    assert_int_equal(kw_pepper_version(a, 0), 1);
    uint8_t h1[32], h2[32];
    hash_of(p, 1, "kw_x", h1);
    hash_of(a, 0, "kw_x", h2);
    assert_memory_equal(h1, h2, 32);
    hash_of(p, 0, "kw_x", h1);
    assert_memory_not_equal(h1, h2, 32);
    /* It is HMAC-SHA-256 under the pepper. */
    unsigned char key[32];
    sodium_hex2bin(key, 32, HEX_A, 64, NULL, NULL, NULL);
    crypto_auth_hmacsha256(h1, (const unsigned char *)"kw_x", 4, key);
    assert_memory_equal(h1, h2, 32);
    kw_pepper_free(p);
    kw_pepper_free(a);
}

static void test_bad_keyring_text_is_refused_without_quoting_it(void **state)
{
    (void)state;
    const char *bad[] = {"",         "# nothing", "abc",     "1:" HEX_A " 1:" HEX_B,
                         "0:" HEX_A, "x:" HEX_A,  HEX_A "0", "1:" HEX_A ",zz",
                         NULL};
    for (const char **b = bad; *b; b++) {
        kw_pepper *p = NULL;
        kw_error err;
        assert_int_equal(kw_pepper_load(NULL, *b, false, &p, &err), KW_ERR_INVALID);
        assert_null(p);
        assert_null(strstr(err.message, "00112233"));
        assert_null(strstr(err.message, "ffeedd"));
    }
}

struct race {
    const char *path;
    uint8_t hash[32];
};

static void *on_race(void *arg)
{
    struct race *r = arg;
    kw_pepper *p = NULL;
    if (kw_pepper_load(r->path, NULL, true, &p, NULL) == KW_OK) {
        hash_of(p, 0, "same", r->hash);
        kw_pepper_free(p);
    }
    return NULL;
}

static void test_concurrent_first_starts_agree(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        char *dir = tu_tempdir();
        char path[4200];
        snprintf(path, sizeof path, "%s/pepper", dir);
        struct race r[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
            r[i].path = path;
            memset(r[i].hash, 0, 32);
            pthread_create(&t[i], NULL, on_race, &r[i]);
        }
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        for (int i = 1; i < 8; i++)
            assert_memory_equal(r[0].hash, r[i].hash, 32);
        assert_false(sodium_is_zero(r[0].hash, 32));
        tu_rmtree(dir);
        free(dir);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_start_creates_a_private_file),
        cmocka_unit_test(test_group_or_other_access_is_refused),
        cmocka_unit_test(test_a_named_file_must_exist),
        cmocka_unit_test(test_keyring_text),
        cmocka_unit_test(test_bad_keyring_text_is_refused_without_quoting_it),
        cmocka_unit_test(test_concurrent_first_starts_agree),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
