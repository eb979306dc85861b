/*
 * lastused.c - an open-addressing table of id -> newest use time.
 */
#include "core/lastused.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_SLOTS 64

struct kw_lastused {
    pthread_mutex_t mu;
    kw_touch *slots; /* id[0] == '\0' marks a free slot */
    size_t cap;      /* a power of two */
    size_t count;
};

static size_t hash_id(const char *s)
{
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static kw_touch *find_slot(kw_touch *slots, size_t cap, const char *id)
{
    size_t i = hash_id(id) & (cap - 1);
    while (slots[i].id[0] && strcmp(slots[i].id, id) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

/* Doubles the table; keeps it at most half full so probes stay short. */
static int grow(kw_lastused *lu)
{
    size_t cap = lu->cap * 2;
    kw_touch *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < lu->cap; i++)
        if (lu->slots[i].id[0])
            *find_slot(slots, cap, lu->slots[i].id) = lu->slots[i];
    free(lu->slots);
    lu->slots = slots;
    lu->cap = cap;
    return 0;
}

kw_lastused *kw_lastused_new(void)
{
    kw_lastused *lu = calloc(1, sizeof *lu);
    if (!lu)
        return NULL;
    lu->slots = calloc(INITIAL_SLOTS, sizeof *lu->slots);
    if (!lu->slots) {
        free(lu);
        return NULL;
    }
    lu->cap = INITIAL_SLOTS;
    pthread_mutex_init(&lu->mu, NULL);
    return lu;
}

void kw_lastused_free(kw_lastused *lu)
{
    if (!lu)
        return;
    pthread_mutex_destroy(&lu->mu);
    free(lu->slots);
    free(lu);
}

int kw_lastused_note(kw_lastused *lu, const char *id, int64_t t)
{
    size_t len = strlen(id);
    if (len >= KW_ID_BUFSZ)
        return -1;
    int rc = 0;
    pthread_mutex_lock(&lu->mu);
    if ((lu->count + 1) * 2 > lu->cap && grow(lu) != 0) {
        rc = -1;
    } else {
        kw_touch *slot = find_slot(lu->slots, lu->cap, id);
        if (!slot->id[0]) {
            memcpy(slot->id, id, len + 1);
            slot->at = t;
            lu->count++;
        } else if (t > slot->at) {
            slot->at = t;
        }
    }
    pthread_mutex_unlock(&lu->mu);
    return rc;
}

size_t kw_lastused_take(kw_lastused *lu, kw_touch **out)
{
    *out = NULL;
    pthread_mutex_lock(&lu->mu);
    size_t n = 0;
    kw_touch *items = lu->count ? malloc(lu->count * sizeof *items) : NULL;
    if (items) {
        for (size_t i = 0; i < lu->cap; i++) {
            if (lu->slots[i].id[0]) {
                items[n++] = lu->slots[i];
                lu->slots[i].id[0] = '\0';
            }
        }
        lu->count = 0;
    }
    pthread_mutex_unlock(&lu->mu);
    *out = items;
    return n;
}
