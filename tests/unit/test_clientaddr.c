/*
 * The client's address behind trusted proxies: addresses, CIDR ranges
 * (IPv4, IPv6, IPv4-mapped IPv6), and X-Forwarded-For and Forwarded read
 * from the right, with every malformed header falling back to the peer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "http/clientaddr.h"

static kw_ip ip(const char *text)
{
    kw_ip out;
    if (!kw_ip_parse(text, strlen(text), &out))
        fail_msg("not an address: %s", text);
    return out;
}

static const char *text(const kw_ip *a)
{
    static char buf[KW_IP_TEXT_BUFSZ];
    kw_ip_format(a, buf);
    return buf;
}

static kw_proxies *proxies(const char *list)
{
    kw_proxies *p = NULL;
    kw_error err;
    if (kw_proxies_parse(list, &p, &err) != KW_OK)
        fail_msg("%s: %s", list, err.message);
    return p;
}

static void test_addresses_parse_and_format(void **state)
{
    (void)state;
    kw_ip a;
    assert_string_equal(text(&(kw_ip){0}), "::");
    a = ip("192.0.2.1");
    assert_string_equal(text(&a), "192.0.2.1");
    a = ip("::ffff:192.0.2.1"); /* IPv4-mapped: the same address */
    assert_string_equal(text(&a), "192.0.2.1");
    a = ip("2001:DB8::1");
    assert_string_equal(text(&a), "2001:db8::1");
    static const char *const bad[] = {"",          "192.0.2",      "192.0.2.256", "192.0.2.01",
                                      " 1.2.3.4",  "1.2.3.4 ",     "1.2.3.4:80",  "[::1]",
                                      "fe80::1%1", "2001:db8:::1", "unknown",     "localhost"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (kw_ip_parse(bad[i], strlen(bad[i]), &a))
            fail_msg("%s parsed as an address", bad[i]);
    assert_false(kw_ip_parse("1.2.3.4\0junk", 12, &a));

    struct sockaddr_in v4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "198.51.100.7", &v4.sin_addr);
    assert_true(kw_ip_from_sockaddr((struct sockaddr *)&v4, &a));
    assert_string_equal(text(&a), "198.51.100.7");
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:198.51.100.7", &v6.sin6_addr);
    kw_ip b;
    assert_true(kw_ip_from_sockaddr((struct sockaddr *)&v6, &b));
    assert_memory_equal(&a, &b, sizeof a);
    struct sockaddr other = {.sa_family = AF_UNIX};
    assert_false(kw_ip_from_sockaddr(&other, &a));
}

static void test_cidr_ranges(void **state)
{
    (void)state;
    kw_proxies *p = proxies(" 10.0.0.0/8 ,192.0.2.7, fd00::/8,\t2001:db8:1::/48, 172.16.5.9/12");
    static const struct {
        const char *addr;
        bool trusted;
    } cases[] = {
        {"10.0.0.0", true},         {"10.255.255.255", true}, {"11.0.0.0", false},
        {"9.255.255.255", false},   {"192.0.2.7", true},      {"192.0.2.8", false},
        {"::ffff:10.1.2.3", true}, /* IPv4-mapped IPv6 matches the IPv4 range */
        {"::ffff:192.0.2.7", true}, {"::10.1.2.3", false}, /* IPv4-compatible is another address */
        {"fd12:3456::1", true},     {"fe00::1", false},       {"2001:db8:1:ffff::1", true},
        {"2001:db8:2::1", false},   {"172.16.0.1", true}, /* the bits past /12 are ignored */
        {"172.31.255.255", true},   {"172.32.0.0", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kw_ip a = ip(cases[i].addr);
        if (kw_proxies_trust(p, &a) != cases[i].trusted)
            fail_msg("%s: want %s", cases[i].addr, cases[i].trusted ? "trusted" : "not trusted");
    }
    kw_proxies_free(p);

    p = proxies("::ffff:10.0.0.0/104");
    kw_ip a = ip("10.9.9.9");
    assert_true(kw_proxies_trust(p, &a));
    kw_proxies_free(p);
    p = proxies("0.0.0.0/0");
    a = ip("203.0.113.1");
    assert_true(kw_proxies_trust(p, &a));
    a = ip("2001:db8::1");
    assert_false(kw_proxies_trust(p, &a));
    kw_proxies_free(p);
    p = proxies("::/0");
    assert_true(kw_proxies_trust(p, &a));
    kw_proxies_free(p);
}

static void test_empty_and_invalid_lists(void **state)
{
    (void)state;
    kw_proxies *p = (kw_proxies *)1;
    kw_error err;
    assert_int_equal(kw_proxies_parse(NULL, &p, &err), KW_OK);
    assert_null(p);
    assert_int_equal(kw_proxies_parse("  ", &p, &err), KW_OK);
    assert_null(p);
    kw_ip a = ip("127.0.0.1");
    assert_false(kw_proxies_trust(NULL, &a));
    static const struct {
        const char *list;
        const char *entry;
    } bad[] = {
        {"10.0.0.0/33", "entry 1 "},
        {"10.0.0.0/8,", "entry 2 "},
        {"10.0.0.0/8,,fd00::/8", "entry 2 "},
        {"10.0.0.0/8, fd00::/129", "entry 2 "},
        {"10.0.0.0/", "entry 1 "},
        {"10.0.0.0/08", "entry 1 "},
        {"10.0.0.0/-1", "entry 1 "},
        {"10.0.0.0/8/8", "entry 1 "},
        {"10.0.0.0 /8", "entry 1 "},
        {"localhost", "entry 1 "},
        {"10.0.0.0/8 192.0.2.1", "entry 1 "},
        {"a, b", "entry 1 "},
        {"[::1]", "entry 1 "},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = NULL;
        if (kw_proxies_parse(bad[i].list, &p, &err) != KW_ERR_INVALID)
            fail_msg("accepted: %s", bad[i].list);
        assert_null(p);
        if (!strstr(err.message, bad[i].entry) || !strstr(err.message, "trusted_proxies"))
            fail_msg("%s: message %s", bad[i].list, err.message);
    }
    /* The message names the entry, never its text. */
    assert_int_equal(kw_proxies_parse("secret-looking-word", &p, &err), KW_ERR_INVALID);
    assert_null(strstr(err.message, "secret-looking-word"));
}

typedef struct {
    const char *peer;
    const char *xff;       /* NULL: no header */
    const char *forwarded; /* NULL: no header */
    const char *client;
} client_case;

/* Trusted: 127.0.0.1, 10.0.0.0/8, fd00::/8. */
static const client_case client_cases[] = {
    /* no header, or an untrusted peer: the peer */
    {"127.0.0.1", NULL, NULL, "127.0.0.1"},
    {"203.0.113.9", "198.51.100.1", NULL, "203.0.113.9"},
    {"203.0.113.9", NULL, "for=198.51.100.1", "203.0.113.9"},
    {"127.0.0.2", "198.51.100.1", NULL, "127.0.0.2"},
    /* X-Forwarded-For, from the right */
    {"127.0.0.1", "198.51.100.1", NULL, "198.51.100.1"},
    {"127.0.0.1", "198.51.100.1, 10.0.0.2", NULL, "198.51.100.1"},
    {"127.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.2", NULL, "198.51.100.1"},
    {"127.0.0.1", "garbage, 198.51.100.1", NULL, "198.51.100.1"}, /* left of the client */
    {"127.0.0.1", "\"x, 198.51.100.1", NULL, "198.51.100.1"},
    {"127.0.0.1", "10.0.0.3,10.0.0.2", NULL, "10.0.0.3"}, /* all trusted: the leftmost */
    {"127.0.0.1", "198.51.100.1,,  ,10.0.0.2 ", NULL, "198.51.100.1"},
    {"127.0.0.1", "198.51.100.1:4711", NULL, "198.51.100.1"},
    {"127.0.0.1", "2001:db8::7", NULL, "2001:db8::7"},
    {"127.0.0.1", "[2001:db8::7]:4711, fd00::1", NULL, "2001:db8::7"},
    {"127.0.0.1", "::ffff:198.51.100.1", NULL, "198.51.100.1"},
    {"::ffff:127.0.0.1", "198.51.100.1", NULL, "198.51.100.1"}, /* a mapped peer */
    {"fd00::5", "198.51.100.1", NULL, "198.51.100.1"},
    /* X-Forwarded-For that cannot tell: the peer */
    {"127.0.0.1", "", NULL, "127.0.0.1"},
    {"127.0.0.1", " , ", NULL, "127.0.0.1"},
    {"127.0.0.1", "198.51.100.1, garbage", NULL, "127.0.0.1"},
    {"127.0.0.1", "198.51.100.1, 10.0.0.2 junk", NULL, "127.0.0.1"},
    {"127.0.0.1", "unknown", NULL, "127.0.0.1"},
    {"127.0.0.1", "198.51.100.1, unknown", NULL, "127.0.0.1"},
    {"127.0.0.1", "_hidden", NULL, "127.0.0.1"},
    {"127.0.0.1", "198.51.100.256", NULL, "127.0.0.1"},
    {"127.0.0.1", "198.51.100.1:99999", NULL, "127.0.0.1"},
    {"127.0.0.1", "198.51.100.1:", NULL, "127.0.0.1"},
    {"127.0.0.1", "[198.51.100.1]", NULL, "127.0.0.1"},
    {"127.0.0.1", "[2001:db8::7", NULL, "127.0.0.1"},
    {"127.0.0.1", "2001:db8::7:80:", NULL, "127.0.0.1"},
    {"127.0.0.1", "example.com", NULL, "127.0.0.1"},
    /* Forwarded (RFC 7239) */
    {"127.0.0.1", NULL, "for=198.51.100.1", "198.51.100.1"},
    {"127.0.0.1", NULL, "For=198.51.100.1;proto=https;by=10.0.0.2", "198.51.100.1"},
    {"127.0.0.1", NULL, "proto=https; for=198.51.100.1", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=\"198.51.100.1:4711\"", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"},
    {"127.0.0.1", NULL, "for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"},
    {"127.0.0.1", NULL, "for=\"\\[2001:db8::1\\]\"", "2001:db8::1"}, /* quoted-pairs */
    {"127.0.0.1", NULL, "for=6.6.6.6, for=198.51.100.1, for=10.0.0.2", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=198.51.100.1;host=\"a,b;c\", for=10.0.0.2", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=garbage, for=198.51.100.1", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=\"[fd00::3]\", for=10.0.0.2", "fd00::3"}, /* all trusted */
    {"127.0.0.1", NULL, "for=198.51.100.1;;proto=http", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=\"198.51.100.1:_port\"", "198.51.100.1"},
    {"127.0.0.1", NULL, "for=198.51.100.1:4711", "127.0.0.1"}, /* a port must be quoted */
    /* Forwarded that cannot tell: the peer */
    {"127.0.0.1", NULL, "for=unknown", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=198.51.100.1, for=unknown", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=_hidden", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=\"_hidden:_port\"", "127.0.0.1"},
    {"127.0.0.1", NULL, "proto=https", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=198.51.100.1;for=203.0.113.1", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=2001:db8::1", "127.0.0.1"},     /* IPv6 must be quoted */
    {"127.0.0.1", NULL, "for=\"2001:db8::1\"", "127.0.0.1"}, /* ... and bracketed */
    {"127.0.0.1", NULL, "for=\"198.51.100.1", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=198.51.100.1 x", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=", "127.0.0.1"},
    {"127.0.0.1", NULL, "=198.51.100.1", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=\"\"", "127.0.0.1"},
    {"127.0.0.1", NULL, "for=\"198.51.100.1\x01\"", "127.0.0.1"},
    /* both: they must agree */
    {"127.0.0.1", "198.51.100.1", "for=198.51.100.1", "198.51.100.1"},
    {"127.0.0.1", "203.0.113.66", "for=198.51.100.1", "127.0.0.1"},
    {"127.0.0.1", "198.51.100.1", "for=unknown", "127.0.0.1"},
};

static void test_client_from_the_headers(void **state)
{
    (void)state;
    kw_proxies *p = proxies("127.0.0.1, 10.0.0.0/8, fd00::/8");
    for (size_t i = 0; i < sizeof client_cases / sizeof client_cases[0]; i++) {
        const client_case *c = &client_cases[i];
        kw_ip peer = ip(c->peer);
        kw_ip got = kw_client_ip(p, &peer, c->xff, c->forwarded);
        char want[KW_IP_TEXT_BUFSZ];
        snprintf(want, sizeof want, "%s", c->client);
        if (strcmp(text(&got), want) != 0)
            fail_msg("peer %s, X-Forwarded-For %s, Forwarded %s: got %s, want %s", c->peer,
                     c->xff ? c->xff : "(none)", c->forwarded ? c->forwarded : "(none)", text(&got),
                     want);
    }
    /* No list: nobody is trusted. */
    kw_ip peer = ip("127.0.0.1");
    kw_ip got = kw_client_ip(NULL, &peer, "198.51.100.1", NULL);
    assert_string_equal(text(&got), "127.0.0.1");
    kw_proxies_free(p);
}

static void test_long_headers(void **state)
{
    (void)state;
    kw_proxies *p = proxies("10.0.0.0/8");
    kw_ip peer = ip("10.0.0.1");
    char list[8192] = "";
    /* Hundreds of client-written entries on the left change nothing. */
    for (int i = 0; i < 400; i++)
        strcat(list, "6.6.6.6, ");
    strcat(list, "198.51.100.1, 10.0.0.2");
    kw_ip got = kw_client_ip(p, &peer, list, NULL);
    assert_string_equal(text(&got), "198.51.100.1");
    /* More trusted hops than are read: the peer. */
    list[0] = '\0';
    for (int i = 0; i < 40; i++)
        strcat(list, "10.0.0.9, ");
    strcat(list, "10.0.0.2");
    got = kw_client_ip(p, &peer, list, NULL);
    assert_string_equal(text(&got), "10.0.0.1");
    /* A node longer than any address. */
    char forwarded[200];
    snprintf(forwarded, sizeof forwarded, "for=\"[%0150d]\"", 0);
    got = kw_client_ip(p, &peer, NULL, forwarded);
    assert_string_equal(text(&got), "10.0.0.1");
    kw_proxies_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_parse_and_format),
        cmocka_unit_test(test_cidr_ranges),
        cmocka_unit_test(test_empty_and_invalid_lists),
        cmocka_unit_test(test_client_from_the_headers),
        cmocka_unit_test(test_long_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
