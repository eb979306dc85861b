/*
 * timefmt.h - RFC 3339 timestamps ("2026-11-27T01:02:03Z"), read with any
 * offset and written in UTC.
 *
 * keyward's times are Unix seconds within years 0000 to 9999 in UTC, the
 * years RFC 3339 can write. An optional time that is absent is never one of
 * them: it is KW_TIME_NONE (core/model.h), which no parse can produce.
 */
#ifndef KW_TIME_H
#define KW_TIME_H

#include <stdint.h>

#include "core/status.h"

#define KW_TIME_BUFSZ 21

#define KW_TIME_MIN ((int64_t)-62167219200) /* 0000-01-01T00:00:00Z */
#define KW_TIME_MAX ((int64_t)253402300799) /* 9999-12-31T23:59:59Z */

/*
 * Formats Unix seconds t as RFC 3339 UTC into out. A t outside
 * [KW_TIME_MIN, KW_TIME_MAX] is written as the nearer end of that range.
 */
void kw_time_format(int64_t t, char out[KW_TIME_BUFSZ]);

/*
 * Parses an RFC 3339 date-time into Unix seconds: "T" and "Z" in either
 * case, "Z" or a numeric offset up to ±23:59 (the grammar's range),
 * fractional seconds accepted and dropped (rounding toward the earlier
 * second). Second 60 is accepted only where a leap second can be, at
 * 23:59:60 UTC on the last day of a month, and read as 23:59:59 UTC: Unix
 * time has no number for the leap second itself, and an expiry rounded
 * down never outlives the instant asked for. The result must lie within
 * [KW_TIME_MIN, KW_TIME_MAX]. Returns KW_OK, or KW_ERR_INVALID with a
 * sentence naming `field` in *err (which never quotes s).
 */
kw_status kw_time_parse(const char *s, const char *field, int64_t *out, kw_error *err);

/* The system clock in Unix seconds. */
int64_t kw_time_now(void);

#endif
