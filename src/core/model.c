/*
 * model.c - releasing lists, the expiry rule, a key's state, and the names
 * of verification codes.
 */
#include "core/model.h"

#include <stdlib.h>

bool kw_key_active(const kw_key *k, int64_t now)
{
    return k->expires_at == KW_TIME_NONE || k->expires_at > now;
}

/* Expired wins over disabled: an expired key is done whatever else it is. */
kw_key_state_code kw_key_state(const kw_key *k, int64_t now)
{
    if (!kw_key_active(k, now))
        return KW_KEY_EXPIRED;
    if (!k->enabled)
        return KW_KEY_DISABLED;
    if (k->rolled_to[0] ||
        (k->expires_at != KW_TIME_NONE && k->expires_at - now <= KW_EXPIRING_SOON_S))
        return KW_KEY_EXPIRING;
    return KW_KEY_ACTIVE;
}

const char *kw_key_state_name(kw_key_state_code state)
{
    switch (state) {
    case KW_KEY_ACTIVE:
        return "active";
    case KW_KEY_EXPIRING:
        return "expiring";
    case KW_KEY_EXPIRED:
        return "expired";
    case KW_KEY_DISABLED:
        return "disabled";
    }
    return "expired";
}

void kw_account_list_free(kw_account_list *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void kw_key_list_free(kw_key_list *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void kw_root_key_list_free(kw_root_key_list *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

void kw_audit_list_free(kw_audit_list *list)
{
    if (!list)
        return;
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

const char *kw_verify_code_name(kw_verify_code code)
{
    switch (code) {
    case KW_VERIFY_VALID:
        return "VALID";
    case KW_VERIFY_MALFORMED:
        return "MALFORMED";
    case KW_VERIFY_NOT_FOUND:
        return "NOT_FOUND";
    case KW_VERIFY_EXPIRED:
        return "EXPIRED";
    case KW_VERIFY_ENVIRONMENT_MISMATCH:
        return "ENVIRONMENT_MISMATCH";
    case KW_VERIFY_DISABLED:
        return "DISABLED";
    }
    return "MALFORMED";
}
