/*
 * bench_verify - the single-thread verify rate of the key service, next to
 * the raw libsodium HMAC-SHA-256 rate measured in the same run.
 *
 * Usage: bench_verify [KEYS [SECONDS]]   (defaults: 2000 keys, 2 s a figure)
 *
 * It makes a throw-away data dir, creates KEYS keys over KEYS/25 accounts,
 * then verifies them round-robin. Figures are operations per second; the
 * ratio line is what to compare between machines.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/service.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs fn(i) in batches until `seconds` pass; returns operations per second. */
static double rate(double seconds, void (*fn)(size_t i, void *ctx), void *ctx)
{
    size_t n = 0;
    double start = now_s(), elapsed;
    do {
        for (int b = 0; b < 1000; b++, n++)
            fn(n, ctx);
        elapsed = now_s() - start;
    } while (elapsed < seconds);
    return (double)n / elapsed;
}

typedef struct {
    kw_service *svc;
    char (*keys)[KW_KEY_BUFSZ];
    size_t count;
    unsigned char pepper[32];
    volatile unsigned sink;
} bench;

static void on_hmac(size_t i, void *ctx)
{
    bench *b = ctx;
    const char *k = b->keys[i % b->count];
    unsigned char mac[32];
    crypto_auth_hmacsha256(mac, (const unsigned char *)k, strlen(k), b->pepper);
    b->sink += mac[0];
}

static void on_verify(size_t i, void *ctx)
{
    bench *b = ctx;
    const char *k = b->keys[i % b->count];
    kw_verify_result r;
    kw_service_key_verify(b->svc, k, strlen(k), NULL, &r, NULL);
    if (r.code != KW_VERIFY_VALID) {
        fprintf(stderr, "bench_verify: a valid key did not verify\n");
        exit(1);
    }
}

static void on_malformed(size_t i, void *ctx)
{
    bench *b = ctx;
    char k[KW_KEY_BUFSZ];
    memcpy(k, b->keys[i % b->count], KW_KEY_BUFSZ);
    k[20] ^= 1;
    kw_verify_result r;
    kw_service_key_verify(b->svc, k, strlen(k), NULL, &r, NULL);
    b->sink += (unsigned)r.code;
}

int main(int argc, char **argv)
{
    size_t nkeys = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 2000;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (nkeys == 0 || seconds <= 0 || sodium_init() < 0) {
        fprintf(stderr, "usage: bench_verify [KEYS [SECONDS]]\n");
        return 2;
    }
    char dir[] = "/tmp/keyward-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    kw_config cfg;
    kw_config_defaults(&cfg);
    cfg.data_dir = dir;
    bench b = {.count = nkeys};
    b.keys = calloc(nkeys, sizeof *b.keys);
    kw_error err;
    if (kw_service_open(&cfg, &b.svc, &err) != KW_OK) {
        fprintf(stderr, "bench_verify: %s\n", err.message);
        return 1;
    }
    kw_account acc = {0};
    for (size_t i = 0; i < nkeys; i++) {
        kw_key k;
        if ((i % 25 == 0 && kw_service_account_create(b.svc, "bench", "bench", &acc, &err)) ||
            kw_service_key_create(b.svc, "bench", acc.id, "bench", NULL, KW_TIME_NONE, &k,
                                  b.keys[i], &err)) {
            fprintf(stderr, "bench_verify: %s\n", err.message);
            return 1;
        }
    }
    randombytes_buf(b.pepper, sizeof b.pepper);

    double hmac = rate(seconds, on_hmac, &b);
    double verify = rate(seconds, on_verify, &b);
    double malformed = rate(seconds, on_malformed, &b);
    printf("keys in store:                 %zu\n", nkeys);
    printf("libsodium HMAC-SHA-256:        %10.0f /s  (%.2f us)\n", hmac, 1e6 / hmac);
    printf("keyward verify (valid key):    %10.0f /s  (%.2f us)\n", verify, 1e6 / verify);
    printf("keyward verify (bad checksum): %10.0f /s  (%.2f us)\n", malformed, 1e6 / malformed);
    printf("ratio verify/HMAC:             %10.3f\n", verify / hmac);

    kw_service_close(b.svc);
    sodium_memzero(b.keys, nkeys * sizeof *b.keys);
    free(b.keys);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
