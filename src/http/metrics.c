/*
 * metrics.c - request and verification counters, rendered in the
 * Prometheus text exposition format. Counting is lock-free (relaxed
 * atomics); a scrape reads each counter once, so a scrape that races with
 * requests is off by at most those requests.
 */
#include "http/http_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 32

/* Statuses counted one by one; any other lands in "other". */
static const unsigned statuses[] = {200, 201, 204, 400, 401, 403, 404, 405,
                                    409, 413, 414, 415, 429, 431, 500, 503};
#define STATUS_SLOTS (sizeof statuses / sizeof statuses[0] + 1)

/* Latency histogram bounds in microseconds (le="0.0001" ... "1"). */
static const uint64_t bounds_us[] = {100,   250,   500,    1000,   2500,   5000,   10000,
                                     25000, 50000, 100000, 250000, 500000, 1000000};
#define BUCKETS (sizeof bounds_us / sizeof bounds_us[0] + 1)

#define VERIFY_CODES 6 /* VALID ... DISABLED */

struct kw_http_metrics {
    atomic_uint_fast64_t requests[MAX_ROUTES + 1][STATUS_SLOTS];
    atomic_uint_fast64_t buckets[MAX_ROUTES + 1][BUCKETS];
    atomic_uint_fast64_t sum_ns[MAX_ROUTES + 1];
    atomic_uint_fast64_t verify[VERIFY_CODES];
    atomic_uint_fast64_t password[KW_PASSWORD_EVENT_COUNT];
};

kw_http_metrics *kw_http_metrics_new(void)
{
    if (kw_http_route_count() > MAX_ROUTES)
        return NULL;
    return calloc(1, sizeof(kw_http_metrics));
}

void kw_http_metrics_free(kw_http_metrics *m)
{
    free(m);
}

static size_t status_slot(unsigned status)
{
    for (size_t i = 0; i < STATUS_SLOTS - 1; i++)
        if (statuses[i] == status)
            return i;
    return STATUS_SLOTS - 1;
}

/* Routes past the table (no route matched) share the last row. */
static size_t route_row(size_t route)
{
    return route < kw_http_route_count() ? route : MAX_ROUTES;
}

void kw_http_metrics_request(kw_http_metrics *m, size_t route, unsigned status, uint64_t ns)
{
    size_t r = route_row(route);
    atomic_fetch_add_explicit(&m->requests[r][status_slot(status)], 1, memory_order_relaxed);
    size_t b = 0;
    while (b < BUCKETS - 1 && ns > bounds_us[b] * 1000)
        b++;
    atomic_fetch_add_explicit(&m->buckets[r][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_ns[r], ns, memory_order_relaxed);
}

void kw_http_metrics_verify(kw_http_metrics *m, kw_verify_code code)
{
    if ((unsigned)code < VERIFY_CODES)
        atomic_fetch_add_explicit(&m->verify[code], 1, memory_order_relaxed);
}

void kw_http_metrics_password(kw_http_metrics *m, kw_password_event event)
{
    if ((unsigned)event < KW_PASSWORD_EVENT_COUNT)
        atomic_fetch_add_explicit(&m->password[event], 1, memory_order_relaxed);
}

typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} text;

__attribute__((format(printf, 2, 3))) static void put(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = t->failed ? 0 : vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (t->failed || n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n) * 2;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
}

static void route_labels(size_t r, const char **method, const char **pattern)
{
    const kw_http_route_info *info = kw_http_route_info_at(r);
    *method = info ? info->method : "any";
    *pattern = info ? info->pattern : "unmatched";
}

static uint64_t load(const atomic_uint_fast64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* The verification index and its change feed (core/keysync.h). */
static void put_index(text *t, const kw_index_stats *x)
{
    put(t,
        "# HELP keyward_verify_index_ready 1 when verifications may be answered from memory "
        "(every key loaded; on several nodes, also a lease held).\n"
        "# TYPE keyward_verify_index_ready gauge\nkeyward_verify_index_ready %d\n"
        "# HELP keyward_verify_index_overflow 1 when the store holds more keys than "
        "verify_cache_entries: the store answers every verification.\n"
        "# TYPE keyward_verify_index_overflow gauge\nkeyward_verify_index_overflow %d\n"
        "# HELP keyward_verify_index_keys Keys held in memory for verification.\n"
        "# TYPE keyward_verify_index_keys gauge\nkeyward_verify_index_keys %llu\n"
        "# HELP keyward_verify_index_bytes Memory the verification index uses.\n"
        "# TYPE keyward_verify_index_bytes gauge\nkeyward_verify_index_bytes %llu\n",
        x->ready && (!x->leases || x->lease_held), x->overflow, (unsigned long long)x->entries,
        (unsigned long long)x->bytes);
    put(t,
        "# HELP keyward_verify_index_lookups_total Verification lookups, answered from memory "
        "(hit) or left to the store (miss).\n"
        "# TYPE keyward_verify_index_lookups_total counter\n"
        "keyward_verify_index_lookups_total{result=\"hit\"} %llu\n"
        "keyward_verify_index_lookups_total{result=\"miss\"} %llu\n"
        "# HELP keyward_verify_store_lookups_total Key lookups the store answered for "
        "verifications.\n"
        "# TYPE keyward_verify_store_lookups_total counter\n"
        "keyward_verify_store_lookups_total %llu\n"
        "# HELP keyward_verify_index_invalidations_total Changes from the change feed applied "
        "to the index, one key each.\n"
        "# TYPE keyward_verify_index_invalidations_total counter\n"
        "keyward_verify_index_invalidations_total %llu\n"
        "# HELP keyward_verify_index_reloads_total Whole loads of the index from the store.\n"
        "# TYPE keyward_verify_index_reloads_total counter\n"
        "keyward_verify_index_reloads_total %llu\n",
        (unsigned long long)x->hits, (unsigned long long)x->misses,
        (unsigned long long)x->store_lookups, (unsigned long long)x->invalidations,
        (unsigned long long)x->reloads);
    put(t,
        "# HELP keyward_change_feed_position The change-feed position this node has applied.\n"
        "# TYPE keyward_change_feed_position gauge\nkeyward_change_feed_position %lld\n"
        "# HELP keyward_change_feed_head The newest change-feed position this node has seen.\n"
        "# TYPE keyward_change_feed_head gauge\nkeyward_change_feed_head %lld\n"
        "# HELP keyward_change_feed_lag Changes seen but not yet applied.\n"
        "# TYPE keyward_change_feed_lag gauge\nkeyward_change_feed_lag %lld\n",
        (long long)x->applied, (long long)x->head,
        (long long)(x->head > x->applied ? x->head - x->applied : 0));
    if (x->caught_up_ms_ago >= 0)
        put(t,
            "# HELP keyward_change_feed_caught_up_age_seconds Since the index was last known "
            "to hold every change.\n"
            "# TYPE keyward_change_feed_caught_up_age_seconds gauge\n"
            "keyward_change_feed_caught_up_age_seconds %.3f\n",
            (double)x->caught_up_ms_ago / 1e3);
    if (x->leases)
        put(t,
            "# HELP keyward_node_lease_held 1 while this node holds its lease.\n"
            "# TYPE keyward_node_lease_held gauge\nkeyward_node_lease_held %d\n"
            "# HELP keyward_node_lease_remaining_seconds How long the lease holds without a "
            "renewal.\n"
            "# TYPE keyward_node_lease_remaining_seconds gauge\n"
            "keyward_node_lease_remaining_seconds %.3f\n"
            "# HELP keyward_node_lease_renewals_total Leases granted to this node.\n"
            "# TYPE keyward_node_lease_renewals_total counter\n"
            "keyward_node_lease_renewals_total %llu\n",
            x->lease_held, (double)x->lease_remaining_ms / 1e3, (unsigned long long)x->renewals);
}

char *kw_http_metrics_render(const kw_http_metrics *m, int64_t active_keys,
                             const kw_index_stats *index, size_t *len)
{
    text t = {malloc(16384), 0, 16384, false};
    if (!t.data)
        return NULL;
    size_t rows = kw_http_route_count();
    const char *method, *pattern;

    put(&t,
        "# HELP keyward_build_info The running keyward version.\n"
        "# TYPE keyward_build_info gauge\nkeyward_build_info{version=\"%s\"} 1\n",
        KW_VERSION);

    put(&t, "# HELP keyward_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE keyward_http_requests_total counter\n");
    for (size_t r = 0; r <= rows; r++) {
        size_t row = r == rows ? MAX_ROUTES : r;
        route_labels(r, &method, &pattern);
        for (size_t s = 0; s < STATUS_SLOTS; s++) {
            uint64_t n = load(&m->requests[row][s]);
            if (n == 0)
                continue;
            char status[8];
            if (s < STATUS_SLOTS - 1)
                snprintf(status, sizeof status, "%u", statuses[s]);
            else
                snprintf(status, sizeof status, "other");
            put(&t, "keyward_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
                pattern, method, status, (unsigned long long)n);
        }
    }

    put(&t, "# HELP keyward_http_request_duration_seconds Time from request to response sent.\n"
            "# TYPE keyward_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r <= rows; r++) {
        size_t row = r == rows ? MAX_ROUTES : r;
        route_labels(r, &method, &pattern);
        uint64_t cumulative = 0;
        for (size_t b = 0; b < BUCKETS; b++)
            cumulative += load(&m->buckets[row][b]);
        if (cumulative == 0)
            continue;
        cumulative = 0;
        for (size_t b = 0; b < BUCKETS; b++) {
            cumulative += load(&m->buckets[row][b]);
            char le[16];
            if (b < BUCKETS - 1)
                snprintf(le, sizeof le, "%g", (double)bounds_us[b] / 1e6);
            else
                snprintf(le, sizeof le, "+Inf");
            put(&t,
                "keyward_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                "le=\"%s\"} %llu\n",
                pattern, method, le, (unsigned long long)cumulative);
        }
        put(&t,
            "keyward_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n"
            "keyward_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n",
            pattern, method, (double)load(&m->sum_ns[row]) / 1e9, pattern, method,
            (unsigned long long)cumulative);
    }

    put(&t, "# HELP keyward_verifications_total Key verifications, by result code.\n"
            "# TYPE keyward_verifications_total counter\n");
    for (int c = 0; c < VERIFY_CODES; c++)
        put(&t, "keyward_verifications_total{code=\"%s\"} %llu\n",
            kw_verify_code_name((kw_verify_code)c), (unsigned long long)load(&m->verify[c]));

    put(&t,
        "# HELP keyward_password_checks_total Passwords checked (argon2id) for sign-ins.\n"
        "# TYPE keyward_password_checks_total counter\nkeyward_password_checks_total %llu\n"
        "# HELP keyward_password_queue_rejected_total Sign-ins answered 503 because the "
        "password-check queue was full.\n"
        "# TYPE keyward_password_queue_rejected_total counter\n"
        "keyward_password_queue_rejected_total %llu\n",
        (unsigned long long)load(&m->password[KW_PASSWORD_CHECKED]),
        (unsigned long long)load(&m->password[KW_PASSWORD_REJECTED]));

    if (active_keys >= 0)
        put(&t,
            "# HELP keyward_active_keys Unexpired keys of all accounts.\n"
            "# TYPE keyward_active_keys gauge\nkeyward_active_keys %lld\n",
            (long long)active_keys);

    if (index)
        put_index(&t, index);

    if (t.failed) {
        free(t.data);
        return NULL;
    }
    *len = t.len;
    return t.data;
}
