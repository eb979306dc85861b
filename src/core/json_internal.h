/*
 * json_internal.h - a seam of json.c for tests: they replace the final
 * release of the wiping allocator to see a block's bytes once they have
 * been wiped, and so fail when the wipe is gone. Only tests and json.c may
 * include it; every library of the build refuses it.
 */
#ifndef KW_JSON_INTERNAL_H
#define KW_JSON_INTERNAL_H

#if (defined(KW_LAYER_CORE) && !defined(KW_JSON_SEAM_OWNER)) || defined(KW_LAYER_STORE) ||         \
    defined(KW_LAYER_SERVICE) || defined(KW_LAYER_HTTP) || defined(KW_LAYER_CLI)
#error "core/json_internal.h is a test seam of json.c: only tests may include it"
#endif

#include <stddef.h>

/*
 * Gives a block back to the system. block is what malloc returned; the len
 * bytes at data are what jansson used, wiped just before the call.
 */
typedef void kw_json_release_fn(void *block, const void *data, size_t len);

/*
 * Makes fn the final release of every block the wiping allocator frees
 * (NULL: plain free). Not thread-safe: call it while no other thread uses
 * jansson.
 */
void kw_json_set_release(kw_json_release_fn *fn);

#endif
