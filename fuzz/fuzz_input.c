/*
 * fuzz_input - libFuzzer target for everything keyward parses from users:
 * keys (kw_keyfmt_parse), names, environments and emails (validate.c),
 * pepper keyring text (kw_pepper_load), X-Forwarded-For and Forwarded
 * headers and trusted_proxies lists (clientaddr.c), and Origin and Host
 * headers (origin.c). It checks invariants, not just the absence of
 * crashes: whatever is accepted must be well-formed.
 *
 * Run with `make fuzz` (FUZZ_SECONDS per run, default 60).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <unictype.h>
#include <unistr.h>

#include "core/keyfmt.h"
#include "core/pepper.h"
#include "core/validate.h"
#include "http/clientaddr.h"
#include "http/origin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_key(const char *s, size_t n)
{
    kw_keyfmt_parts parts;
    if (!kw_keyfmt_parse(s, n, NULL, &parts))
        return;
    /* Accepted: prefix_env_ then exactly 49 base62 characters. */
    if (parts.prefix_len + 1 + parts.environment_len + 1 + 49 != n ||
        !kw_keyfmt_environment_valid(parts.environment, parts.environment_len))
        abort();
    char masked[KW_MASKED_BUFSZ];
    kw_keyfmt_mask(s, n, masked);
    if (strlen(masked) >= sizeof masked || strcmp(masked, "invalid") == 0)
        abort();
}

static void check_name(const char *s)
{
    char out[KW_NAME_BUFSZ];
    if (kw_validate_name(s, "name", out, NULL) != KW_OK)
        return;
    size_t n = strlen(out);
    if (n == 0 || n > KW_NAME_MAX * 4 || !kw_utf8_valid(out, n) || out[0] == ' ' ||
        out[n - 1] == ' ' || strstr(s, out) == NULL)
        abort();
    /* Nothing invisible inside, nothing blank at either end. */
    ucs4_t cp = 0;
    for (size_t i = 0; i < n;) {
        int len = u8_mbtoucr(&cp, (const uint8_t *)out + i, n - i);
        if (len <= 0 || uc_is_general_category(cp, UC_CATEGORY_Cc) ||
            uc_is_general_category(cp, UC_CATEGORY_Cf) ||
            uc_is_property_default_ignorable_code_point(cp) ||
            ((i == 0 || i + (size_t)len == n) && (uc_is_property_white_space(cp) || cp == 0x2800)))
            abort();
        i += (size_t)len;
    }
}

/* A client named by a header is the peer or an address, which prints as one. */
static void check_forwarded(const char *s)
{
    static kw_proxies *everyone;
    if (!everyone && kw_proxies_parse("0.0.0.0/0, ::/0", &everyone, NULL) != KW_OK)
        abort();
    kw_ip peer, client, again;
    if (!kw_ip_parse("192.0.2.1", 9, &peer))
        abort();
    for (int header = 0; header < 2; header++) {
        client = kw_client_ip(everyone, &peer, header ? NULL : s, header ? s : NULL);
        char text[KW_IP_TEXT_BUFSZ];
        kw_ip_format(&client, text);
        if (!kw_ip_parse(text, strlen(text), &again) || memcmp(&again, &client, sizeof again))
            abort();
    }
    kw_proxies *p = NULL;
    if (kw_proxies_parse(s, &p, NULL) == KW_OK && p && !strchr(s, '.') && !strchr(s, ':'))
        abort(); /* a range needs an address */
    kw_proxies_free(p);
}

/* An origin that matches itself as public_url is scheme://host[:port] and nothing more. */
static void check_origin(const char *s)
{
    if (kw_origin_matches(s, NULL, s))
        abort(); /* "http://..." is never a Host */
    if (!kw_origin_matches(s, s, NULL))
        return;
    const char *rest = strstr(s, "://");
    if (!rest || strpbrk(rest + 3, "/@?# \t\r\n") || !kw_origin_url_ok(s))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    check_key(s, size);
    check_name(s);
    char email[KW_EMAIL_BUFSZ];
    if (kw_validate_email(s, email, NULL) == KW_OK && strlen(email) != strlen(s))
        abort();
    if (kw_validate_environment(s, NULL) == KW_OK && !kw_keyfmt_environment_valid(s, strlen(s)))
        abort();
    check_forwarded(s);
    check_origin(s);
    kw_pepper *p = NULL;
    if (kw_pepper_load(NULL, s, false, &p, NULL) == KW_OK) {
        if (kw_pepper_count(p) == 0 || kw_pepper_count(p) > KW_PEPPER_VERSIONS)
            abort();
        for (size_t i = 1; i < kw_pepper_count(p); i++)
            if (kw_pepper_version(p, i) >= kw_pepper_version(p, i - 1))
                abort();
        kw_pepper_free(p);
    }
    sodium_memzero(s, size);
    free(s);
    return 0;
}
