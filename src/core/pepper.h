/*
 * pepper.h - the server secret under which keys are hashed.
 *
 * A pepper keyring holds one or more 32-byte peppers, each with a version.
 * New keys are hashed under the highest version; every stored hash records
 * its version, so older keys keep verifying after a new pepper is added.
 *
 * Text form (the pepper file, or the KEYWARD_PEPPER variable): entries
 * separated by white space or commas, each "VERSION:HEX" with 64 hex digits
 * (a bare HEX is version 1); lines starting with '#' are comments.
 *
 * The keyring lives in guarded, read-only memory (sodium_malloc) and holds
 * the HMAC-SHA-256 states already keyed with each pepper, so a hash costs
 * two compression calls, not four. It is never written to the database,
 * a log or an error message.
 */
#ifndef KW_PEPPER_H
#define KW_PEPPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model.h"
#include "core/status.h"

#define KW_PEPPER_BYTES    32
#define KW_PEPPER_VERSIONS 16

typedef struct kw_pepper kw_pepper;

/*
 * Loads the keyring from `text` when it is not NULL, else from the file at
 * `path`. A file readable or writable by group or others is refused. When
 * the file does not exist and `create` is true, a new one (version 1, mode
 * 0600) is created atomically: concurrent first starts agree on one pepper.
 * On success *out is owned by the caller (kw_pepper_free).
 */
kw_status kw_pepper_load(const char *path, const char *text, bool create, kw_pepper **out,
                         kw_error *err);

/* Wipes and frees the keyring. */
void kw_pepper_free(kw_pepper *p);

/* Number of versions in the keyring; index 0 is the current (highest) one. */
size_t kw_pepper_count(const kw_pepper *p);
uint32_t kw_pepper_version(const kw_pepper *p, size_t index);

/* HMAC-SHA-256 of the len bytes at msg under the pepper at `index`. */
void kw_pepper_hash(const kw_pepper *p, size_t index, const char *msg, size_t len,
                    uint8_t out[KW_HASH_BYTES]);

#endif
