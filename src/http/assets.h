/*
 * assets.h - files built into the binary (tools/embed.c writes them): the
 * OpenAPI document and the console's pages, scripts and styles.
 */
#ifndef KW_ASSETS_H
#define KW_ASSETS_H

#if defined(KW_LAYER_CORE) || defined(KW_LAYER_STORE) || defined(KW_LAYER_SERVICE)
#error "http/assets.h is in the http layer, which core, store and service must not include"
#endif

#include <stddef.h>

typedef struct {
    const char *name; /* "openapi.json" */
    const unsigned char *data;
    size_t len;
} kw_asset;

extern const kw_asset kw_assets[];
extern const size_t kw_asset_count;

/* The asset called name, or NULL. */
const kw_asset *kw_asset_find(const char *name);

#endif
