/*
 * ratelimit.h - counts attempts per key (an email, a client address) in
 * fixed windows, so that password guessing is refused early with 429.
 *
 * An attempt takes its slot before the password is checked, atomically:
 * however many attempts run in parallel, at most `limit` of them per key
 * and window get as far as the check. One that turns out not to count (a
 * success, a check that never ran) gives its slot back.
 */
#ifndef KW_RATELIMIT_H
#define KW_RATELIMIT_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/ratelimit.h is in the http layer, which core, store and service must not include"
#endif

#include <stddef.h>
#include <stdint.h>

typedef struct kw_ratelimit kw_ratelimit;

/* At most `limit` attempts per key in each `window_s`; NULL when out of memory. */
kw_ratelimit *kw_ratelimit_new(unsigned limit, unsigned window_s);
void kw_ratelimit_free(kw_ratelimit *rl);

/*
 * Takes one of key's slots in the current window: returns 0 when it took
 * one, else the seconds until the window ends (at least 1) and takes none.
 */
unsigned kw_ratelimit_take(kw_ratelimit *rl, const char *key, int64_t now);

/*
 * Gives back a slot that kw_ratelimit_take took at time taken_at, unless
 * key's window has started again since (that slot is gone already).
 */
void kw_ratelimit_give_back(kw_ratelimit *rl, const char *key, int64_t taken_at);

/* Forgets key's attempts (after a success). */
void kw_ratelimit_reset(kw_ratelimit *rl, const char *key);

#endif
