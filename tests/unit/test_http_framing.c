/*
 * The strict reading of request heads (src/http/framing.c) and the client
 * groups of the gate's budgets (src/http/gate.c): tables of heads that
 * must pass, must be refused (with which status), or must wait for more.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "http/framing.h"
#include "http/gate.h"

static const kw_framing_limits limits = {8192, 16384};

/* The verdict on a head given as a C string with explicit length (it may hold NULs). */
static kw_head_state scan(const char *head, size_t len, unsigned *status)
{
    kw_framing_verdict v = {0, NULL};
    size_t head_len = 0;
    kw_head_state st = kw_framing_scan_head(head, len, &limits, &head_len, &v);
    *status = st == KW_HEAD_REFUSED ? v.status : 0;
    if (st == KW_HEAD_REFUSED)
        assert_non_null(v.message);
    if (st == KW_HEAD_COMPLETE)
        assert_true(head_len <= len);
    return st;
}

#define S(lit) (lit), sizeof(lit) - 1

static const struct {
    const char *head;
    size_t len;
    unsigned status; /* 0: accepted */
} cases[] = {
    /* acceptable */
    {S("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0},
    {S("GET /healthz HTTP/1.0\r\n\r\n"), 0},
    {S("POST /v1/keys/verify HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 12\r\n\r\n"), 0},
    {S("POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), 0},
    {S("POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n"), 0},
    {S("GET /a?b=c&d=%20 HTTP/1.1\r\nHost: [::1]:80\r\nX-A:\t v \t\r\nX-E:\r\n\r\n"), 0},
    {S("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 0},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xc3\xa9\r\n\r\n"), 0},
    /* request line */
    {S("GET  / HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET / HTTP/1.1 \r\nHost: x\r\n\r\n"), 400},
    {S("GET /\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\nHost: x\n\n"), 400},
    {S("GET / HTTP/1.1\rHost: x\r\n\r\n"), 400},
    {S("G(T / HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET /a\x00junk HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET / HTTP/1.x\r\nHost: x\r\n\r\n"), 400},
    {S("GET / http/1.1\r\nHost: x\r\n\r\n"), 400},
    {S("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505},
    {S("GET / HTTP/0.9\r\nHost: x\r\n\r\n"), 505},
    {S("GET / HTTP/1.2\r\nHost: x\r\n\r\n"), 505},
    /* field lines */
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\n Host: x\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX A: a\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX\x00: a\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-\xc3\xa9: a\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-Api-Key: abc\x00junk\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7f\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\n\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n"), 400},
    /* body framing */
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:1 \r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\t\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16385\r\n\r\n"), 413},
    {S("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
     400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
     400},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"), 501},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 501},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
       "Transfer-Encoding: chunked\r\n\r\n"),
     501},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n"), 501},
    {S("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n"), 501},
    /* Host */
    {S("GET / HTTP/1.1\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n"), 400},
    {S("GET / HTTP/1.0\r\nHost: x\r\nhost: y\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400},
    {S("GET / HTTP/1.1\r\nHost: user@evil\r\n\r\n"), 400},
};

static void test_heads_are_accepted_or_refused_with_their_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned status;
        kw_head_state st = scan(cases[i].head, cases[i].len, &status);
        if (st == KW_HEAD_INCOMPLETE || status != cases[i].status)
            fail_msg("case %zu (%.40s...): state %d status %u, want %u", i, cases[i].head, st,
                     status, cases[i].status);
    }
}

/* Every proper prefix of an acceptable head waits for more; of a refused one, it waits or refuses.
 */
static void test_prefixes_wait_and_refusals_come_early(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t n = 0; n < cases[i].len; n++) {
            unsigned status;
            kw_head_state st = scan(cases[i].head, n, &status);
            if (cases[i].status == 0 && st != KW_HEAD_INCOMPLETE)
                fail_msg("case %zu: prefix of %zu bytes: state %d", i, n, st);
            if (st == KW_HEAD_COMPLETE)
                fail_msg("case %zu: prefix of %zu bytes is complete", i, n);
        }
    }
    /* a NUL in the target is refused before the line is finished */
    unsigned status;
    assert_int_equal(scan(S("GET /a\x00"), &status), KW_HEAD_REFUSED);
    assert_int_equal(status, 400);
    assert_int_equal(scan(S("GET / HTTP/1.1\r\nX: \x01"), &status), KW_HEAD_REFUSED);
    assert_int_equal(scan(S("GET / HTTP/1.1\r\n b"), &status), KW_HEAD_REFUSED);
}

static void test_only_the_head_is_read(void **state)
{
    (void)state;
    static const char req[] = "POST /v1/keys/verify HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n"
                              "\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    kw_framing_verdict v = {0, NULL};
    size_t head_len = 0;
    assert_int_equal(kw_framing_scan_head(req, sizeof req - 1, &limits, &head_len, &v),
                     KW_HEAD_COMPLETE);
    assert_int_equal(head_len, strstr(req, "\r\n\r\n") + 4 - req);
}

static void test_sizes_give_414_and_431(void **state)
{
    (void)state;
    static char buf[20000];
    unsigned status;
    /* a request line that never ends: 414 once past the limit, not silence */
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "GET /", 5);
    assert_int_equal(scan(buf, 8192, &status), KW_HEAD_INCOMPLETE);
    assert_int_equal(scan(buf, 8193, &status), KW_HEAD_REFUSED);
    assert_int_equal(status, 414);
    /* many query parameters */
    size_t n = (size_t)snprintf(buf, sizeof buf, "GET /healthz?");
    while (n < 9000)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "a=1&");
    n += (size_t)snprintf(buf + n, sizeof buf - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(scan(buf, n, &status), KW_HEAD_REFUSED);
    assert_int_equal(status, 414);
    /* many small header fields: 431 at the 65th */
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < KW_FRAMING_MAX_FIELDS; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "X: 1\r\n");
    assert_int_equal(scan(buf, n, &status), KW_HEAD_REFUSED);
    assert_int_equal(status, 431);
    /* headers past the byte limit */
    n = (size_t)snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(buf + n, 'b', 8200);
    n += 8200;
    assert_int_equal(scan(buf, n, &status), KW_HEAD_REFUSED);
    assert_int_equal(status, 431);
}

static struct sockaddr_in v4(const char *text)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, text, &a.sin_addr), 1);
    return a;
}

static struct sockaddr_in6 v6(const char *text)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, text, &a.sin6_addr), 1);
    return a;
}

static kw_gate_peer peer4(const char *text)
{
    struct sockaddr_in a = v4(text);
    return kw_gate_peer_of((struct sockaddr *)&a, sizeof a);
}

static kw_gate_peer peer6(const char *text)
{
    struct sockaddr_in6 a = v6(text);
    return kw_gate_peer_of((struct sockaddr *)&a, sizeof a);
}

static bool same(kw_gate_peer a, kw_gate_peer b)
{
    return memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0;
}

static void test_clients_are_grouped_by_ipv4_address_and_ipv6_64(void **state)
{
    (void)state;
    assert_true(same(peer4("192.0.2.1"), peer4("192.0.2.1")));
    assert_false(same(peer4("192.0.2.1"), peer4("192.0.2.2")));
    /* one /64: one client, whatever the interface identifier */
    assert_true(same(peer6("2001:db8:1:2::1"), peer6("2001:db8:1:2:ffff:ffff:ffff:ffff")));
    assert_false(same(peer6("2001:db8:1:2::1"), peer6("2001:db8:1:3::1")));
    /* an IPv4-mapped address is the IPv4 client */
    assert_true(same(peer6("::ffff:192.0.2.1"), peer4("192.0.2.1")));
    assert_false(same(peer6("::ffff:192.0.2.1"), peer4("192.0.2.2")));
    /* an IPv4 address never shares a group with an IPv6 prefix of the same bytes */
    assert_false(same(peer4("32.1.13.184"), peer6("2001:db8::1")));
}

static void test_error_responses_are_json_and_close(void **state)
{
    (void)state;
    char out[1024];
    size_t n = kw_gate_error_response(400, "A header value holds a control byte.", out, sizeof out);
    assert_true(n > 0);
    out[n] = '\0';
    assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request\r\n"));
    assert_non_null(strstr(out, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(out, "Connection: close\r\n"));
    assert_non_null(strstr(out, "X-Content-Type-Options: nosniff\r\n"));
    assert_non_null(strstr(out, "Cache-Control: no-store\r\n"));
    assert_non_null(strstr(out, "\r\n\r\n{\"error\":{\"code\":\"invalid_request\",\"message\":"
                                "\"A header value holds a control byte.\"}}"));
    assert_int_equal(kw_gate_error_response(400, "x", out, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads_are_accepted_or_refused_with_their_status),
        cmocka_unit_test(test_prefixes_wait_and_refusals_come_early),
        cmocka_unit_test(test_only_the_head_is_read),
        cmocka_unit_test(test_sizes_give_414_and_431),
        cmocka_unit_test(test_clients_are_grouped_by_ipv4_address_and_ipv6_64),
        cmocka_unit_test(test_error_responses_are_json_and_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
