#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/validate.h"

static void test_utf8(void **state)
{
    (void)state;
    assert_true(kw_utf8_valid("plain", 5));
    assert_true(kw_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\x91", 9)); /* é € 🔑 */
    assert_false(kw_utf8_valid("\xc3", 1));                                /* truncated */
    assert_false(kw_utf8_valid("\xc0\xaf", 2));                            /* overlong */
    assert_false(kw_utf8_valid("\xe0\x80\xaf", 3));                        /* overlong */
    assert_false(kw_utf8_valid("\xed\xa0\x80", 3));                        /* surrogate */
    assert_false(kw_utf8_valid("\xf4\x90\x80\x80", 4));                    /* > U+10FFFF */
    assert_false(kw_utf8_valid("\xff", 1));
    assert_false(kw_utf8_valid("a\x80", 2));
}

static void test_names_are_trimmed(void **state)
{
    (void)state;
    char out[KW_NAME_BUFSZ];
    kw_error err;
    assert_int_equal(kw_validate_name("  Production CRM \t", "name", out, &err), KW_OK);
    assert_string_equal(out, "Production CRM");
    assert_int_equal(kw_validate_name("Caf\xc3\xa9 \xf0\x9f\x94\x91", "name", out, &err), KW_OK);
}

static void test_bad_names_are_refused_with_the_field_named(void **state)
{
    (void)state;
    char out[KW_NAME_BUFSZ];
    kw_error err;
    char long_name[102];
    memset(long_name, 'a', 101);
    long_name[101] = '\0';
    const char *bad[] = {"",
                         "   ",
                         "\t\n",
                         long_name,
                         "a\x01"
                         "b",
                         "a\x7f",
                         "a\xc2\x85"
                         "b",
                         "a\xe2\x80\xae"
                         "b",
                         "bad\xff",
                         "\xc0\xaf",
                         NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(kw_validate_name(*b, "name", out, &err), KW_ERR_INVALID);
        assert_int_equal(err.status, KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "name"));
    }
    assert_int_equal(kw_validate_name(NULL, "name", out, &err), KW_ERR_INVALID);
}

/* Writes cp as UTF-8 at p; returns the number of bytes. */
static size_t put_utf8(char *p, unsigned cp)
{
    if (cp < 0x80) {
        p[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        p[0] = (char)(0xC0 | cp >> 6);
        p[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        p[0] = (char)(0xE0 | cp >> 12);
        p[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        p[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    p[0] = (char)(0xF0 | cp >> 18);
    p[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    p[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    p[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* "<before>U+cp<after>" as a C string in buf. */
static const char *with(char *buf, const char *before, unsigned cp, const char *after)
{
    size_t n = strlen(before);
    memcpy(buf, before, n);
    n += put_utf8(buf + n, cp);
    strcpy(buf + n, after);
    return buf;
}

typedef struct {
    unsigned cp;
    const char *reason; /* a part of the message */
} refused_char;

/*
 * Every character that renders as nothing, formats or reorders text, or is
 * a control, separator or noncharacter, is refused wherever it stands in a
 * name, and the message names the field and the character.
 */
static void test_invisible_and_formatting_characters_are_refused(void **state)
{
    (void)state;
    static const refused_char table[] = {
        /* Cf: format characters */
        {0x00AD, "invisible"},  /* SOFT HYPHEN */
        {0x0600, "invisible"},  /* ARABIC NUMBER SIGN */
        {0x061C, "invisible"},  /* ARABIC LETTER MARK */
        {0x06DD, "invisible"},  /* ARABIC END OF AYAH */
        {0x070F, "invisible"},  /* SYRIAC ABBREVIATION MARK */
        {0x180E, "invisible"},  /* MONGOLIAN VOWEL SEPARATOR */
        {0x200B, "invisible"},  /* ZERO WIDTH SPACE */
        {0x200C, "invisible"},  /* ZERO WIDTH NON-JOINER */
        {0x200D, "invisible"},  /* ZERO WIDTH JOINER */
        {0x200E, "invisible"},  /* LEFT-TO-RIGHT MARK */
        {0x200F, "invisible"},  /* RIGHT-TO-LEFT MARK */
        {0x202A, "invisible"},  /* LEFT-TO-RIGHT EMBEDDING */
        {0x202E, "invisible"},  /* RIGHT-TO-LEFT OVERRIDE */
        {0x2060, "invisible"},  /* WORD JOINER */
        {0x2061, "invisible"},  /* FUNCTION APPLICATION */
        {0x2064, "invisible"},  /* INVISIBLE PLUS */
        {0x2066, "invisible"},  /* LEFT-TO-RIGHT ISOLATE */
        {0x2069, "invisible"},  /* POP DIRECTIONAL ISOLATE */
        {0x206A, "invisible"},  /* INHIBIT SYMMETRIC SWAPPING */
        {0x206F, "invisible"},  /* NOMINAL DIGIT SHAPES */
        {0xFEFF, "invisible"},  /* ZERO WIDTH NO-BREAK SPACE (BOM) */
        {0xFFF9, "invisible"},  /* INTERLINEAR ANNOTATION ANCHOR */
        {0xFFFB, "invisible"},  /* INTERLINEAR ANNOTATION TERMINATOR */
        {0x110BD, "invisible"}, /* KAITHI NUMBER SIGN */
        {0x1BCA0, "invisible"}, /* SHORTHAND FORMAT LETTER OVERLAP */
        {0x1D173, "invisible"}, /* MUSICAL SYMBOL BEGIN BEAM */
        {0xE0001, "invisible"}, /* LANGUAGE TAG */
        {0xE0020, "invisible"}, /* TAG SPACE */
        {0xE0041, "invisible"}, /* TAG LATIN CAPITAL LETTER A */
        {0xE007F, "invisible"}, /* CANCEL TAG */
        /* Default_Ignorable_Code_Point outside Cf */
        {0x034F, "invisible"},  /* COMBINING GRAPHEME JOINER */
        {0x115F, "invisible"},  /* HANGUL CHOSEONG FILLER */
        {0x1160, "invisible"},  /* HANGUL JUNGSEONG FILLER */
        {0x17B4, "invisible"},  /* KHMER VOWEL INHERENT AQ */
        {0x180B, "invisible"},  /* MONGOLIAN FREE VARIATION SELECTOR ONE */
        {0x3164, "invisible"},  /* HANGUL FILLER */
        {0xFE00, "invisible"},  /* VARIATION SELECTOR-1 */
        {0xFE0F, "invisible"},  /* VARIATION SELECTOR-16 */
        {0xFFA0, "invisible"},  /* HALFWIDTH HANGUL FILLER */
        {0xE0100, "invisible"}, /* VARIATION SELECTOR-17 */
        {0xE01EF, "invisible"}, /* VARIATION SELECTOR-256 */
        {0x2065, "invisible"},  /* unassigned, default ignorable */
        {0xFFF0, "invisible"},  /* unassigned, default ignorable */
        {0xE0000, "invisible"}, /* unassigned, default ignorable */
        {0xE0FFF, "invisible"}, /* unassigned, default ignorable */
        /* Cc: controls */
        {0x0001, "control"},
        {0x0009, "control"}, /* inside a name; trimmed at its ends */
        {0x001F, "control"},
        {0x007F, "control"},
        {0x0080, "control"},
        {0x0085, "control"}, /* NEXT LINE */
        {0x009F, "control"},
        /* Zl, Zp */
        {0x2028, "line or paragraph separator"},
        {0x2029, "line or paragraph separator"},
        /* noncharacters */
        {0xFDD0, "noncharacter"},
        {0xFDEF, "noncharacter"},
        {0xFFFE, "noncharacter"},
        {0xFFFF, "noncharacter"},
        {0x1FFFE, "noncharacter"},
        {0x10FFFF, "noncharacter"},
    };
    char buf[64], out[KW_NAME_BUFSZ], want[16];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const refused_char *c = &table[i];
        snprintf(want, sizeof want, "U+%04X", c->cp);
        const char *names[] = {with(buf, "a", c->cp, "b"), NULL, NULL, NULL};
        char start[64], end[64], alone[64];
        /* At the ends too, unless trimming removes it there (blank controls). */
        if (!(c->cp == 0x09 || c->cp == 0x85 || c->cp == 0x2028 || c->cp == 0x2029)) {
            names[1] = with(start, "", c->cp, "Acme");
            names[2] = with(end, "Acme ", c->cp, "");
            names[3] = with(alone, "", c->cp, "");
        }
        for (size_t j = 0; j < 4 && names[j]; j++) {
            kw_error err = {0};
            memset(out, 'x', sizeof out);
            if (kw_validate_name(names[j], "name", out, &err) != KW_ERR_INVALID)
                fail_msg("U+%04X (form %zu) was accepted", c->cp, j);
            if (!strstr(err.message, "name must not contain") || !strstr(err.message, want) ||
                !strstr(err.message, c->reason))
                fail_msg("U+%04X (form %zu): \"%s\"", c->cp, j, err.message);
        }
    }
}

/* Names made only of white space and blanks are empty, whatever the blank. */
static void test_blank_names_are_empty(void **state)
{
    (void)state;
    static const unsigned blanks[] = {
        0x0020, 0x0009, 0x000A, 0x000B, 0x000C, 0x000D, 0x0085, 0x00A0, 0x1680,
        0x2000, 0x2007, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0x2800,
    };
    char buf[64], out[KW_NAME_BUFSZ], all[256] = "";
    size_t n = 0;
    for (size_t i = 0; i < sizeof blanks / sizeof blanks[0]; i++) {
        kw_error err = {0};
        assert_int_equal(kw_validate_name(with(buf, " ", blanks[i], " "), "name", out, &err),
                         KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "name must not be empty"));
        n += put_utf8(all + n, blanks[i]);
        /* Trimmed from the ends of a real name. */
        assert_int_equal(kw_validate_name(with(buf, "", blanks[i], "Acme"), "name", out, &err),
                         KW_OK);
        assert_string_equal(out, "Acme");
        assert_int_equal(kw_validate_name(with(buf, "Acme", blanks[i], ""), "name", out, &err),
                         KW_OK);
        assert_string_equal(out, "Acme");
    }
    all[n] = '\0';
    kw_error err = {0};
    assert_int_equal(kw_validate_name(all, "name", out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "must not be empty"));
    /* The Hangul fillers are refused as invisible, alone or not. */
    assert_int_equal(kw_validate_name(with(buf, " ", 0x3164, " "), "name", out, &err),
                     KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "U+3164"));
}

/* What a name may hold: any script, combining marks, emoji, inner spaces. */
static void test_visible_text_is_accepted(void **state)
{
    (void)state;
    static const char *const good[] = {
        "Production CRM",
        "Caf\xc3\xa9",                                      /* é precomposed */
        "Cafe\xcc\x81",                                     /* e + COMBINING ACUTE */
        "\xf0\x9f\x94\x91 vault",                           /* 🔑 */
        "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7",         /* Arabic */
        "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d",                 /* Hebrew */
        "\xed\x95\x9c\xea\xb5\xad",                         /* Hangul syllables */
        "\xe0\xa4\x95\xe0\xa5\x8d\xe0\xa4\xb7",             /* Devanagari with virama */
        "\xe6\x9d\xb1\xe4\xba\xac\xe3\x80\x80\xe5\xa4\xa7", /* CJK, IDEOGRAPHIC SPACE inside */
        "a\xc2\xa0"
        "b",                                    /* NO-BREAK SPACE inside */
        "\xe2\xa0\x81\xe2\xa0\x80\xe2\xa0\x83", /* braille words, blank cell inside */
        "\xee\x80\x80 private",                 /* U+E000, private use */
    };
    char out[KW_NAME_BUFSZ];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        kw_error err = {0};
        if (kw_validate_name(good[i], "name", out, &err) != KW_OK)
            fail_msg("\"%s\" refused: %s", good[i], err.message);
        assert_string_equal(out, good[i]);
    }
}

static void test_one_hundred_characters_are_allowed(void **state)
{
    (void)state;
    char out[KW_NAME_BUFSZ], hundred[101], wide[401];
    kw_error err;
    memset(hundred, 'x', 100);
    hundred[100] = '\0';
    assert_int_equal(kw_validate_name(hundred, "name", out, &err), KW_OK);
    for (int i = 0; i < 100; i++)
        memcpy(wide + 4 * i, "\xf0\x9f\x94\x91", 4); /* 100 four-byte characters */
    wide[400] = '\0';
    assert_int_equal(kw_validate_name(wide, "name", out, &err), KW_OK);
    assert_string_equal(out, wide);
}

static void test_environments(void **state)
{
    (void)state;
    kw_error err;
    assert_int_equal(kw_validate_environment("production", &err), KW_OK);
    assert_int_equal(kw_validate_environment("staging", &err), KW_OK);
    assert_int_equal(kw_validate_environment("dev2", &err), KW_OK);
    const char *bad[] = {"", "Prod", "1abc", "pro-d", "abcdefghijklmnopq", "root", "a b", NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(kw_validate_environment(*b, &err), KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "environment"));
    }
    assert_int_equal(kw_validate_environment(NULL, &err), KW_ERR_INVALID);
}

static void test_emails(void **state)
{
    (void)state;
    char out[KW_EMAIL_BUFSZ];
    kw_error err;
    assert_int_equal(kw_validate_email("Admin@Example.COM", out, &err), KW_OK);
    assert_string_equal(out, "admin@example.com");
    assert_int_equal(kw_validate_email("admin@localhost", out, &err), KW_OK);
    const char *bad[] = {"",        "a",         "@x.com", "a@",     "a@b@c",
                         "a b@c.d", "a@b_c.com", "a@.com", "a@com.", "\xc3\xa9@x.com",
                         NULL};
    for (const char **b = bad; *b; b++)
        assert_int_equal(kw_validate_email(*b, out, &err), KW_ERR_INVALID);
}

static void test_ids(void **state)
{
    (void)state;
    kw_error err;
    assert_int_equal(kw_validate_id("acc_0123456789abcdefghijKL", "acc", "account id", &err),
                     KW_OK);
    assert_int_equal(kw_validate_id("key_0123456789abcdefghijKL", "acc", "account id", &err),
                     KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "account id"));
    assert_int_equal(kw_validate_id("acc_short", "acc", "account id", &err), KW_ERR_INVALID);
    assert_int_equal(kw_validate_id("acc_0123456789abcdefghij_L", "acc", "account id", &err),
                     KW_ERR_INVALID);
}

/* Writes {"m0":0,...} of n members to out. */
static void members(char *out, size_t size, int n)
{
    snprintf(out, size, "{");
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s\"m%d\":%d", i ? "," : "", i, i);
    snprintf(out + strlen(out), size - strlen(out), "}");
}

static void test_metadata(void **state)
{
    (void)state;
    char out[KW_METADATA_BUFSZ];
    kw_error err;
    /* Compact, members in their given order, kinds kept. */
    assert_int_equal(kw_validate_metadata(
                         " { \"z\" : \"1\", \"a_1\": 2.5, \"ok\": true, \"n\": -3 } ", out, &err),
                     KW_OK);
    assert_string_equal(out, "{\"z\":\"1\",\"a_1\":2.5,\"ok\":true,\"n\":-3}");
    assert_int_equal(kw_validate_metadata("{}", out, &err), KW_OK);
    assert_string_equal(out, "{}");
    char text[4096];
    members(text, sizeof text, KW_METADATA_MEMBERS);
    assert_int_equal(kw_validate_metadata(text, out, &err), KW_OK);
    members(text, sizeof text, KW_METADATA_MEMBERS + 1);
    assert_int_equal(kw_validate_metadata(text, out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "16 members"));
    assert_string_equal(out, "");

    /* 1024 bytes once compact pass; 1025 do not, whatever the spacing. */
    snprintf(text, sizeof text, "{\"a\":\"");
    size_t fill = KW_METADATA_MAX - strlen("{\"a\":\"\"}");
    memset(text + strlen(text), 'x', fill);
    text[6 + fill] = '\0';
    strcat(text, "\"}");
    assert_int_equal(kw_validate_metadata(text, out, &err), KW_OK);
    assert_int_equal(strlen(out), KW_METADATA_MAX);
    text[6] = ' ';
    memmove(text + 7, text + 6, strlen(text + 6) + 1);
    text[6] = 'y';
    assert_int_equal(kw_validate_metadata(text, out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "1024 bytes"));

    /* The member at fault is named. */
    assert_int_equal(kw_validate_metadata("{\"ok\":1,\"Bad\":1}", out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "\"Bad\""));
    assert_int_equal(kw_validate_metadata("{\"ok\":1,\"plan\":null}", out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "\"plan\""));
    assert_non_null(strstr(err.message, "null"));
    assert_int_equal(kw_validate_metadata("{\"tags\":[1]}", out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "\"tags\""));
    assert_int_equal(kw_validate_metadata("{\"o\":{\"a\":1}}", out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "\"o\""));
    /* A name that cannot be shown is named by its position. */
    assert_int_equal(kw_validate_metadata("{\"a\":1,\"\\u0007x\":1}", out, &err), KW_ERR_INVALID);
    assert_non_null(strstr(err.message, "member 2"));
    assert_null(strchr(err.message, '\a'));

    const char *bad[] = {
        "",           "[]",         "\"s\"",       "1",
        "null",       "{",          "{\"a\":1,}",  "{\"a\":1,\"a\":2}",
        "{\"1a\":1}", "{\"_a\":1}", "{\"a-b\":1}", "{\"abcdefghijabcdefghijabcdefghijabc\":1}",
        NULL};
    for (const char **b = bad; *b; b++) {
        assert_int_equal(kw_validate_metadata(*b, out, &err), KW_ERR_INVALID);
        assert_non_null(strstr(err.message, "metadata"));
    }
    assert_int_equal(kw_validate_metadata("{\"abcdefghijabcdefghijabcdefghijab\":1}", out, &err),
                     KW_OK);
    assert_int_equal(kw_validate_metadata(NULL, out, &err), KW_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_names_are_trimmed),
        cmocka_unit_test(test_bad_names_are_refused_with_the_field_named),
        cmocka_unit_test(test_invisible_and_formatting_characters_are_refused),
        cmocka_unit_test(test_blank_names_are_empty),
        cmocka_unit_test(test_visible_text_is_accepted),
        cmocka_unit_test(test_one_hundred_characters_are_allowed),
        cmocka_unit_test(test_environments),
        cmocka_unit_test(test_emails),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_metadata),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
