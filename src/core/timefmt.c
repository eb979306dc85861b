/*
 * timefmt.c - RFC 3339 formatting and parsing, by calendar arithmetic.
 *
 * The conversions between days and civil dates are Howard Hinnant's
 * days_from_civil and civil_from_days (proleptic Gregorian calendar): no
 * time zone database, no time_t range, the same answer on every machine.
 */
#include "core/timefmt.h"

#include <stdbool.h>
#include <string.h>
#include <time.h>

#define DAY 86400

/* Days from 1970-01-01 to y-m-d. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The date `days` days after 1970-01-01. */
static void civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Floor division of t by a day, and the seconds left over (0..86399). */
static int64_t day_of(int64_t t, int64_t *secs)
{
    int64_t days = t / DAY - (t % DAY < 0);
    *secs = t - days * DAY;
    return days;
}

/* Writes the n low decimal digits of v (v >= 0) at p. */
static void put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

void kw_time_format(int64_t t, char out[KW_TIME_BUFSZ])
{
    if (t < KW_TIME_MIN)
        t = KW_TIME_MIN;
    if (t > KW_TIME_MAX)
        t = KW_TIME_MAX;
    int64_t secs, y;
    int m, d;
    civil_from_days(day_of(t, &secs), &y, &m, &d);
    memcpy(out, "0000-00-00T00:00:00Z", KW_TIME_BUFSZ);
    put_digits(out, y, 4);
    put_digits(out + 5, m, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, secs / 3600, 2);
    put_digits(out + 14, secs / 60 % 60, 2);
    put_digits(out + 17, secs % 60, 2);
}

static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* The fields of a date-time as written, before any range check. */
typedef struct {
    int y, mo, d, h, mi, se;
    int sign, oh, om; /* the offset east of UTC: sign (+1, -1), hours, minutes */
} fields;

/* Reads the RFC 3339 grammar into *f; false when s does not follow it. */
static bool scan(const char *s, fields *f)
{
    if (strlen(s) < 20 || !digits(s, 4, &f->y) || s[4] != '-' || !digits(s + 5, 2, &f->mo) ||
        s[7] != '-' || !digits(s + 8, 2, &f->d) || (s[10] != 'T' && s[10] != 't') ||
        !digits(s + 11, 2, &f->h) || s[13] != ':' || !digits(s + 14, 2, &f->mi) || s[16] != ':' ||
        !digits(s + 17, 2, &f->se))
        return false;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    f->sign = 1;
    f->oh = f->om = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return true;
    f->sign = *p == '-' ? -1 : 1;
    return (*p == '+' || *p == '-') && strlen(p) == 6 && digits(p + 1, 2, &f->oh) && p[3] == ':' &&
           digits(p + 4, 2, &f->om);
}

static bool is_leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Every field within the ranges of RFC 3339 section 5.7 (second 60 included). */
static bool fields_exist(const fields *f)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (f->mo < 1 || f->mo > 12 || f->d < 1 || f->d > mdays[f->mo - 1] ||
        (f->mo == 2 && f->d == 29 && !is_leap_year(f->y)))
        return false;
    return f->h <= 23 && f->mi <= 59 && f->se <= 60 && f->oh <= 23 && f->om <= 59;
}

kw_status kw_time_parse(const char *s, const char *field, int64_t *out, kw_error *err)
{
    fields f;
    if (!s || !scan(s, &f))
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s must be an RFC 3339 date-time such as 2026-11-27T01:02:03Z or "
                            "2026-11-27T02:02:03+01:00.",
                            field);
    if (!fields_exist(&f))
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s holds a date, time or offset that does not exist (months 01-12, "
                            "days of the month, hours 00-23, minutes and seconds 00-59, offsets "
                            "up to +23:59 or -23:59).",
                            field);
    int se = f.se == 60 ? 59 : f.se;
    int64_t t = days_from_civil(f.y, f.mo, f.d) * DAY + f.h * 3600 + f.mi * 60 + se -
                f.sign * (f.oh * 3600 + f.om * 60);
    if (f.se == 60) {
        /* A leap second follows 23:59:59 UTC of a month's last day. */
        int64_t secs, y;
        int m, d;
        civil_from_days(day_of(t + 1, &secs), &y, &m, &d);
        if (secs != 0 || d != 1)
            return kw_error_set(err, KW_ERR_INVALID,
                                "%s has second 60, which is only a leap second: at 23:59:60 UTC "
                                "on the last day of a month.",
                                field);
    }
    if (t < KW_TIME_MIN || t > KW_TIME_MAX)
        return kw_error_set(err, KW_ERR_INVALID,
                            "%s must lie between 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z "
                            "once converted to UTC.",
                            field);
    *out = t;
    return KW_OK;
}

int64_t kw_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}
