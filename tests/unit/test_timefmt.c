#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/model.h"
#include "core/timefmt.h"

static void test_format(void **state)
{
    (void)state;
    char buf[KW_TIME_BUFSZ];
    kw_time_format(0, buf);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    kw_time_format(1795741323, buf);
    assert_string_equal(buf, "2026-11-27T01:02:03Z");
    kw_time_format(-1, buf);
    assert_string_equal(buf, "1969-12-31T23:59:59Z");
    kw_time_format(KW_TIME_MAX, buf);
    assert_string_equal(buf, "9999-12-31T23:59:59Z");
    kw_time_format(KW_TIME_MIN, buf);
    assert_string_equal(buf, "0000-01-01T00:00:00Z");
    /* Outside the range: the nearer end, never a wrapped or made-up time. */
    kw_time_format(KW_TIME_MAX + 1, buf);
    assert_string_equal(buf, "9999-12-31T23:59:59Z");
    kw_time_format(KW_TIME_NONE, buf);
    assert_string_equal(buf, "0000-01-01T00:00:00Z");
}

/* kw_time_format agrees with the C library, and kw_time_parse reads it back. */
static void test_format_and_parse_round_trip(void **state)
{
    (void)state;
    const int64_t step = 999983; /* a prime number of seconds: every hour, weekday, leap day */
    for (int64_t t = KW_TIME_MIN; t <= KW_TIME_MAX; t += step) {
        char buf[KW_TIME_BUFSZ], want[80];
        kw_time_format(t, buf);
        time_t tt = (time_t)t;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert_string_equal(buf, want);
        int64_t back = 0;
        assert_int_equal(kw_time_parse(buf, "t", &back, NULL), KW_OK);
        assert_int_equal(back, t);
    }
}

typedef struct {
    const char *text;
    int64_t want;
} good_case;

static void test_parse_accepts_rfc3339(void **state)
{
    (void)state;
    static const good_case cases[] = {
        {"2026-11-27T01:02:03Z", 1795741323},
        {"2026-11-27T02:02:03.123+01:00", 1795741323},
        {"2024-02-29T12:00:00Z", 1709208000},
        /* The epoch is a time like any other, however it is written. */
        {"1970-01-01T00:00:00Z", 0},
        {"1970-01-01T01:00:00+01:00", 0},
        {"1969-12-31T23:00:00-01:00", 0},
        {"1970-01-01t00:00:00z", 0},
        {"1969-12-31T23:59:59Z", -1},
        /* The widest real-world offsets, and the widest of the grammar. */
        {"2026-11-27T15:02:03+14:00", 1795741323},
        {"2026-11-26T13:02:03-12:00", 1795741323},
        {"2026-11-28T01:01:03+23:59", 1795741323},
        {"2026-11-27T01:02:03-00:00", 1795741323},
        /* Fractions of a second are dropped, rounding toward the earlier second. */
        {"2026-11-27T01:02:03.999999999Z", 1795741323},
        {"2026-11-27T01:02:03.0Z", 1795741323},
        /* The ends of RFC 3339's years. */
        {"9999-12-31T23:59:59Z", KW_TIME_MAX},
        {"9999-12-31T23:59:59.999Z", KW_TIME_MAX},
        {"9999-12-31T22:59:59-01:00", KW_TIME_MAX},
        {"0000-01-01T00:00:00Z", KW_TIME_MIN},
        /* A leap second is read as the second before it, 23:59:59 UTC. */
        {"2016-12-31T23:59:60Z", 1483228799},
        {"2016-12-31T23:59:60.5Z", 1483228799},
        {"2017-01-01T00:59:60+01:00", 1483228799},
        {"2016-12-31T18:59:60-05:00", 1483228799},
        {"2026-06-30T23:59:60Z", 1782863999},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t t = 42;
        kw_error err = {0};
        if (kw_time_parse(cases[i].text, "expires_at", &t, &err) != KW_OK)
            fail_msg("%s: %s", cases[i].text, err.message);
        if (t != cases[i].want)
            fail_msg("%s: %lld, want %lld", cases[i].text, (long long)t, (long long)cases[i].want);
        assert_true(t != KW_TIME_NONE);
    }
}

typedef struct {
    const char *text;
    const char *says; /* a part of the message */
} bad_case;

static void test_parse_refuses_with_a_reason(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"", "RFC 3339"},
        {"tomorrow", "RFC 3339"},
        {"2026-11-27", "RFC 3339"},
        {"2026-11-27 01:02:03Z", "RFC 3339"},
        {"2026-11-27T01:02:03", "RFC 3339"},
        {"2026-11-27T01:02:03+0100", "RFC 3339"},
        {"2026-11-27T01:02:03+01", "RFC 3339"},
        {"2026-11-27T01:02:03Zjunk", "RFC 3339"},
        {"2026-11-27T01:02:03.Z", "RFC 3339"},
        {"2026-11-27T01:02:03,5Z", "RFC 3339"},
        {"2026-11-27T1:02:03Z", "RFC 3339"},
        {"+2026-11-27T01:02:03Z", "RFC 3339"},
        {"10000-01-01T00:00:00Z", "RFC 3339"},
        {"2026-13-01T00:00:00Z", "does not exist"},
        {"2026-00-01T00:00:00Z", "does not exist"},
        {"2026-04-31T00:00:00Z", "does not exist"},
        {"2025-02-29T00:00:00Z", "does not exist"},
        {"2100-02-29T00:00:00Z", "does not exist"},
        {"2026-11-27T24:00:00Z", "does not exist"},
        {"2026-11-27T01:60:00Z", "does not exist"},
        {"2026-11-27T01:02:61Z", "does not exist"},
        {"2026-11-27T01:02:03+24:00", "does not exist"},
        {"2026-11-27T01:02:03-24:00", "does not exist"},
        {"2026-11-27T01:02:03+14:60", "does not exist"},
        /* Second 60 anywhere but at a month's last second (UTC). */
        {"2026-06-15T12:00:60Z", "leap second"},
        {"2026-06-29T23:59:60Z", "leap second"},
        {"2016-12-31T23:58:60Z", "leap second"},
        {"2016-12-31T23:59:60+01:00", "leap second"},
        /* Beyond the ends once converted to UTC. */
        {"9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59Z"},
        {"9999-12-31T12:00:00-12:00", "9999-12-31T23:59:59Z"},
        {"0000-01-01T00:00:00+00:01", "0000-01-01T00:00:00Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t t = 42;
        kw_error err = {0};
        if (kw_time_parse(cases[i].text, "expires_at", &t, &err) != KW_ERR_INVALID)
            fail_msg("%s was accepted as %lld", cases[i].text, (long long)t);
        assert_int_equal(err.status, KW_ERR_INVALID);
        assert_int_equal(t, 42); /* untouched */
        if (!strstr(err.message, "expires_at") || !strstr(err.message, cases[i].says))
            fail_msg("%s: \"%s\" does not say \"%s\"", cases[i].text, err.message, cases[i].says);
    }
    int64_t t;
    assert_int_equal(kw_time_parse(NULL, "expires_at", &t, NULL), KW_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_and_parse_round_trip),
        cmocka_unit_test(test_parse_accepts_rfc3339),
        cmocka_unit_test(test_parse_refuses_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
