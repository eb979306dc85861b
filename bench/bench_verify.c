/*
 * bench_verify - the single-thread verify rate of the key service, with a
 * small store and with a large one, next to the raw libsodium HMAC-SHA-256
 * rate measured in the same run.
 *
 * Usage: bench_verify [KEYS [SECONDS]]   (defaults: 1000000 keys, 2 s a figure)
 *
 * It makes two throw-away SQLite stores, one of 1,000 keys and one of KEYS
 * keys (written in one transaction, hashed under the store's own pepper),
 * opens each as a serving node (every key in memory, core/keysync.h) and
 * verifies keys picked at random. It prints the rates, their ratio, the
 * index's memory per key (its own count and the process's RSS growth) and
 * forged keys (well-formed, correct checksum, stored nowhere) against valid
 * ones, with the store queries they cost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "core/ids.h"
#include "core/keyfmt.h"
#include "core/service.h"
#include "core/service_internal.h" /* kw_service_mint: keys made without a transaction each */

#define SMALL 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Resident set size of this process, in bytes. */
static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

#define BATCH 1000

typedef struct {
    kw_service *svc;
    char (*keys)[KW_KEY_BUFSZ];
    char (*forged)[KW_KEY_BUFSZ];
    size_t count;
    unsigned char pepper[32];
    uint64_t rng;
    char batch[BATCH][KW_KEY_BUFSZ]; /* the keys of the batch being timed */
    volatile unsigned sink;
} bench;

/* xorshift64: a random pick costs nothing next to a verification. */
static size_t pick(bench *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (size_t)(b->rng % b->count);
}

/*
 * Runs fn over batches of keys picked at random from `from` (count keys)
 * until `seconds` of fn's own time pass; returns operations per second.
 * Each batch is copied out of the big array before its clock starts: a
 * server reads the key from the request it just received, never from a
 * cold array of a million keys, and that miss is not the index's cost.
 */
static double rate(double seconds, void (*fn)(bench *b, const char *key), bench *b,
                   char (*from)[KW_KEY_BUFSZ])
{
    size_t n = 0;
    double timed = 0;
    do {
        for (int i = 0; i < BATCH; i++)
            memcpy(b->batch[i], from[pick(b)], KW_KEY_BUFSZ);
        double start = now_s();
        for (int i = 0; i < BATCH; i++, n++)
            fn(b, b->batch[i]);
        timed += now_s() - start;
    } while (timed < seconds);
    return (double)n / timed;
}

static void on_hmac(bench *b, const char *k)
{
    unsigned char mac[32];
    crypto_auth_hmacsha256(mac, (const unsigned char *)k, strlen(k), b->pepper);
    b->sink += mac[0];
}

static void on_verify(bench *b, const char *k)
{
    kw_verify_result r;
    kw_service_key_verify(b->svc, k, strlen(k), NULL, &r, NULL);
    if (r.code != KW_VERIFY_VALID) {
        fprintf(stderr, "bench_verify: a valid key did not verify\n");
        exit(1);
    }
}

static void on_forged(bench *b, const char *k)
{
    kw_verify_result r;
    kw_service_key_verify(b->svc, k, strlen(k), NULL, &r, NULL);
    if (r.code != KW_VERIFY_NOT_FOUND) {
        fprintf(stderr, "bench_verify: a forged key was not refused\n");
        exit(1);
    }
}

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "bench_verify: %s: %s\n", what, why);
    return 1;
}

static kw_service *open_node(const char *dir, bool node, kw_error *err)
{
    kw_config cfg;
    kw_config_defaults(&cfg);
    cfg.data_dir = dir;
    cfg.node = node;
    kw_service *svc = NULL;
    return kw_service_open(&cfg, &svc, err) == KW_OK ? svc : NULL;
}

/*
 * Fills dir's store with n keys (25 per account) in one transaction,
 * keeping their secrets in keys: a million creates through the service
 * would be a million transactions.
 */
static int fill(const char *dir, size_t n, char (*keys)[KW_KEY_BUFSZ])
{
    kw_error err;
    kw_service *svc = open_node(dir, false, &err);
    if (!svc)
        return fail("open", err.message);
    char path[4200];
    snprintf(path, sizeof path, "%s/keyward.db", dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *acc = NULL, *key = NULL;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO accounts(id, name, created_at) VALUES (?, ?, ?)",
                                -1, &acc, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO api_keys(id, account_id, name, environment, masked, "
                                "hash, pepper_version, created_at, expires_at) "
                                "VALUES (?, ?, ?, 'production', ?, ?, ?, ?, NULL)",
                                -1, &key, NULL);
    int64_t now = (int64_t)time(NULL);
    char account[KW_ID_BUFSZ] = "";
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        if (i % 25 == 0) {
            kw_id_new("acc", account);
            sqlite3_reset(acc);
            sqlite3_bind_text(acc, 1, account, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(acc, 2, "bench", -1, SQLITE_STATIC);
            sqlite3_bind_int64(acc, 3, now);
            rc = sqlite3_step(acc) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        }
        char id[KW_ID_BUFSZ], masked[KW_MASKED_BUFSZ], name[32];
        uint8_t hash[KW_HASH_BYTES];
        uint32_t version = kw_service_mint(svc, "production", keys[i], masked, hash);
        kw_id_new("key", id);
        snprintf(name, sizeof name, "bench %zu", i);
        sqlite3_reset(key);
        sqlite3_bind_text(key, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(key, 2, account, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(key, 3, name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(key, 4, masked, -1, SQLITE_TRANSIENT);
        sqlite3_bind_blob(key, 5, hash, sizeof hash, SQLITE_TRANSIENT);
        sqlite3_bind_int64(key, 6, version);
        sqlite3_bind_int64(key, 7, now);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(key) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        fail("filling the store", sqlite3_errmsg(db));
    sqlite3_finalize(acc);
    sqlite3_finalize(key);
    sqlite3_close(db);
    kw_service_close(svc);
    return rc == SQLITE_OK ? 0 : 1;
}

typedef struct {
    double load_s;
    double verify;
    double forged;
    long rss_growth;
    kw_index_stats stats;
    uint64_t forged_lookups;
} result;

static int run(size_t n, double seconds, bench *b, result *out)
{
    char dir[] = "/tmp/keyward-bench-XXXXXX";
    if (!mkdtemp(dir))
        return fail("mkdtemp", "cannot make a temp dir");
    b->count = n;
    int rc = fill(dir, n, b->keys);
    kw_error err;
    long rss = rss_bytes();
    double t0 = now_s();
    b->svc = rc == 0 ? open_node(dir, true, &err) : NULL;
    if (rc == 0 && !b->svc)
        rc = fail("open", err.message);
    if (rc == 0) {
        out->load_s = now_s() - t0;
        out->rss_growth = rss_bytes() - rss;
        out->verify = rate(seconds, on_verify, b, b->keys);
        kw_index_stats before;
        kw_service_index_stats(b->svc, &before);
        size_t count = b->count;
        b->count = SMALL;
        out->forged = rate(seconds, on_forged, b, b->forged);
        b->count = count;
        kw_service_index_stats(b->svc, &out->stats);
        out->forged_lookups = out->stats.store_lookups - before.store_lookups;
    }
    kw_service_close(b->svc);
    b->svc = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}

int main(int argc, char **argv)
{
    size_t nkeys = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 1000000;
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    if (nkeys < SMALL || seconds <= 0 || sodium_init() < 0) {
        fprintf(stderr, "usage: bench_verify [KEYS (>= %d) [SECONDS]]\n", SMALL);
        return 2;
    }
    static bench b = {.rng = 0x9e3779b97f4a7c15u};
    b.keys = calloc(nkeys, sizeof *b.keys);
    b.forged = calloc(SMALL, sizeof *b.forged);
    if (!b.keys || !b.forged)
        return fail("calloc", "out of memory");
    for (size_t i = 0; i < SMALL; i++)
        kw_keyfmt_generate("kw", "production", b.forged[i]);
    randombytes_buf(b.pepper, sizeof b.pepper);

    result small = {0}, large = {0};
    if (run(SMALL, seconds, &b, &small) != 0)
        return 1;
    b.count = SMALL;
    double hmac = rate(seconds, on_hmac, &b, b.keys);
    if (run(nkeys, seconds, &b, &large) != 0)
        return 1;

    printf("libsodium HMAC-SHA-256:                 %10.0f /s  (%.2f us)\n", hmac, 1e6 / hmac);
    printf("verify, %7zu keys, random pick:       %10.0f /s  (%.2f us)  verify/HMAC %.3f\n",
           (size_t)SMALL, small.verify, 1e6 / small.verify, small.verify / hmac);
    printf("verify, %7zu keys, random pick:       %10.0f /s  (%.2f us)  verify/HMAC %.3f\n", nkeys,
           large.verify, 1e6 / large.verify, large.verify / hmac);
    printf("ratio %zu keys / %d keys:             %10.3f\n", nkeys, SMALL,
           large.verify / small.verify);
    printf("forged keys / valid keys, %7zu keys: %10.3f  (%llu store queries for %.0f forged)\n",
           nkeys, large.forged / large.verify, (unsigned long long)large.forged_lookups,
           large.forged * seconds);
    printf("index of %zu keys: loaded in %.2f s; %.0f bytes/key by its own count, %.0f "
           "bytes/key of RSS growth\n",
           (size_t)large.stats.entries, large.load_s,
           (double)large.stats.bytes / (double)large.stats.entries,
           (double)large.rss_growth / (double)large.stats.entries);

    sodium_memzero(b.keys, nkeys * sizeof *b.keys);
    free(b.keys);
    free(b.forged);
    return 0;
}
