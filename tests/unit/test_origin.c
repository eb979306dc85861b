/*
 * The Origin check of the console: scheme, host and port compared part by
 * part, default ports equal to absent ones, case-insensitive scheme and
 * host, and no prefix, suffix, path or user-info trick.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "http/origin.h"

typedef struct {
    const char *origin;     /* the Origin header */
    const char *public_url; /* NULL: compare with host */
    const char *host;       /* the Host header */
    bool match;
} origin_case;

static const origin_case cases[] = {
    /* the Host the request was sent to */
    {"http://127.0.0.1:8080", NULL, "127.0.0.1:8080", true},
    {"https://127.0.0.1:8080", NULL, "127.0.0.1:8080", true}, /* TLS ended by a proxy */
    {"http://keys.example.com", NULL, "keys.example.com", true},
    {"http://keys.example.com:80", NULL, "keys.example.com", true},
    {"http://keys.example.com", NULL, "keys.example.com:80", true},
    {"https://keys.example.com", NULL, "keys.example.com:443", true},
    {"https://keys.example.com:443", NULL, "keys.example.com", true},
    {"HTTP://KEYS.Example.COM", NULL, "keys.example.com", true},
    {"http://[::1]:8080", NULL, "[::1]:8080", true},
    {"http://[::1]:8080", NULL, "[0::1]:8080", false}, /* compared as written */
    {"http://keys.example.com:8080", NULL, "keys.example.com", false},
    {"http://keys.example.com", NULL, "keys.example.com:8080", false},
    {"https://keys.example.com", NULL, "keys.example.com:80", false},
    {"http://keys.example.com", NULL, "keys.example.com:443", false},
    {"http://127.0.0.1:8080", NULL, "127.0.0.1:8081", false},
    {"http://127.0.0.1:8080", NULL, NULL, false},
    {"http://127.0.0.1:8080", NULL, "", false},
    {"http://127.0.0.1:8080", NULL, "127.0.0.1:8080/x", false},
    {"http://127.0.0.1:8080", NULL, "user@127.0.0.1:8080", false},
    /* prefix and suffix tricks */
    {"http://127.0.0.1:8080.evil.example", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:8080@evil.example", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:8080/", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:8080/console", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:8080?x", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:8080#x", NULL, "127.0.0.1:8080", false},
    {"http://user@127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:80800", NULL, "127.0.0.1:80800", false},
    {"http://127.0.0.1:08080", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1:", NULL, "127.0.0.1", false},
    {"http://127.0.0.1:65536", NULL, "127.0.0.1:65536", false},
    {"http://evil.127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    {"http://127.0.0.1", NULL, "127.0.0.1.evil", false},
    {"ftp://127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    {"http:/127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    {"//127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    {"127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    {"null", NULL, "127.0.0.1:8080", false},
    {"", NULL, "127.0.0.1:8080", false},
    {NULL, NULL, "127.0.0.1:8080", false},
    {"http://", NULL, "", false},
    {"http://[::1]", NULL, "[::1", false},
    {"http://[]", NULL, "[]", false},
    {"http://[::1]x", NULL, "[::1]x", false},
    {"http://127.0.0.1:8080 ", NULL, "127.0.0.1:8080", false},
    {" http://127.0.0.1:8080", NULL, "127.0.0.1:8080", false},
    /* public_url, whatever the Host */
    {"https://keys.example.com", "https://keys.example.com", "10.0.0.5:8080", true},
    {"https://keys.example.com", "https://keys.example.com:443", NULL, true},
    {"https://keys.example.com:443", "https://keys.example.com", NULL, true},
    {"https://KEYS.example.com", "https://keys.example.com", NULL, true},
    {"https://keys.example.com", "https://keys.example.com/keyward", NULL, true},
    {"https://keys.example.com:8443", "https://keys.example.com:8443", NULL, true},
    {"http://keys.example.com", "https://keys.example.com", "keys.example.com", false},
    {"https://keys.example.com", "http://keys.example.com", NULL, false},
    {"https://keys.example.com:8443", "https://keys.example.com", NULL, false},
    {"https://keys.example.com.evil", "https://keys.example.com", NULL, false},
    {"https://keys.example.co", "https://keys.example.com", NULL, false},
    {"https://keys.example.com/", "https://keys.example.com", NULL, false},
    {"https://keys.example.com@evil", "https://keys.example.com", NULL, false},
    {"null", "https://keys.example.com", NULL, false},
    {"https://keys.example.com", "keys.example.com", NULL, false},
};

static void test_origin_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const origin_case *c = &cases[i];
        if (kw_origin_matches(c->origin, c->public_url, c->host) != c->match)
            fail_msg("Origin %s, public_url %s, Host %s: want %s", c->origin ? c->origin : "(none)",
                     c->public_url ? c->public_url : "(none)", c->host ? c->host : "(none)",
                     c->match ? "a match" : "no match");
    }
}

static void test_usable_public_urls(void **state)
{
    (void)state;
    assert_true(kw_origin_url_ok("https://keys.example.com"));
    assert_true(kw_origin_url_ok("http://127.0.0.1:8080"));
    assert_true(kw_origin_url_ok("https://example.com/keyward"));
    assert_true(kw_origin_url_ok("https://[2001:db8::1]:8443"));
    assert_false(kw_origin_url_ok("https://"));
    assert_false(kw_origin_url_ok("https://user@example.com"));
    assert_false(kw_origin_url_ok("https://example.com:99999"));
    assert_false(kw_origin_url_ok("https://example.com?x"));
    assert_false(kw_origin_url_ok("ftp://example.com"));
    assert_false(kw_origin_url_ok(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin_table),
        cmocka_unit_test(test_usable_public_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
