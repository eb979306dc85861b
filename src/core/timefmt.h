/*
 * timefmt.h - RFC 3339 UTC timestamps ("2026-11-27T01:02:03Z").
 */
#ifndef KW_TIMEFMT_H
#define KW_TIMEFMT_H

#include <stdbool.h>
#include <stdint.h>

#define KW_TIME_BUFSZ 21

/* Formats Unix seconds t as RFC 3339 UTC into out. */
void kw_time_format(int64_t t, char out[KW_TIME_BUFSZ]);

/*
 * Parses an RFC 3339 timestamp with a "Z" or numeric offset (fractional
 * seconds are accepted and dropped) into Unix seconds. false if malformed.
 */
bool kw_time_parse(const char *s, int64_t *out);

/* The system clock in Unix seconds. */
int64_t kw_time_now(void);

#endif
