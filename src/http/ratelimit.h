/*
 * ratelimit.h - counts failures per key (an email, a client address) in
 * fixed windows, so that password guessing is refused early with 429.
 */
#ifndef KW_RATELIMIT_H
#define KW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct kw_ratelimit kw_ratelimit;

/* At most `limit` failures per key in each `window_s`; NULL when out of memory. */
kw_ratelimit *kw_ratelimit_new(unsigned limit, unsigned window_s);
void kw_ratelimit_free(kw_ratelimit *rl);

/* Seconds until key may try again (0: it may try now). */
unsigned kw_ratelimit_wait(kw_ratelimit *rl, const char *key, int64_t now);

/* Counts one failure of key. */
void kw_ratelimit_fail(kw_ratelimit *rl, const char *key, int64_t now);

/* Forgets key's failures (after a success). */
void kw_ratelimit_reset(kw_ratelimit *rl, const char *key);

#endif
