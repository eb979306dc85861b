/*
 * ids.h - opaque random identifiers: acc_…, key_…, usr_…, rk_….
 *
 * An id is its kind, an underscore and 22 base62 characters of 128 random
 * bits: never sequential, never derived from the object.
 */
#ifndef KW_IDS_H
#define KW_IDS_H

#include <stdbool.h>

#include "core/model.h"

#define KW_ID_RANDOM_CHARS 22

/* Writes a new id of the given kind into out. */
void kw_id_new(const char *kind, char out[KW_ID_BUFSZ]);

/* true when s is shaped like an id of the given kind. */
bool kw_id_valid(const char *s, const char *kind);

#endif
