/*
 * lastused.h - pending last-used times, batched so that verification never
 * waits for a write transaction.
 *
 * A verification records (id, time) here under a short mutex; the service
 * drains the table periodically and writes it in one transaction. Only the
 * newest time per id is kept, so the table holds at most one entry per key
 * used since the last drain.
 */
#ifndef KW_LASTUSED_H
#define KW_LASTUSED_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE)
#error "core/lastused.h is in the service layer, which core and store must not include"
#endif

#include <stddef.h>
#include <stdint.h>

#include "core/model.h"

typedef struct kw_lastused kw_lastused;

/* A new empty table, or NULL when out of memory. */
kw_lastused *kw_lastused_new(void);
void kw_lastused_free(kw_lastused *lu);

/* Remembers that id was used at t (keeps the later of two times). Returns
 * -1 when out of memory (the time is then dropped), else 0. */
int kw_lastused_note(kw_lastused *lu, const char *id, int64_t t);

/* Moves every pending entry into a new array *out (caller frees) and
 * returns how many there are; the table is left empty. */
size_t kw_lastused_take(kw_lastused *lu, kw_touch **out);

#endif
