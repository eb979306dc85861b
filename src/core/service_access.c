/*
 * service_access.c - who may manage keys: root keys, console users, and the
 * audit log of what they did.
 */
#include "core/service_internal.h"

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "core/ids.h"
#include "core/keyfmt.h"
#include "core/validate.h"

kw_status kw_service_root_key_create(kw_service *svc, const char *actor, const char *name,
                                     kw_root_key *out, char secret[KW_KEY_BUFSZ], kw_error *err)
{
    memset(out, 0, sizeof *out);
    secret[0] = '\0';
    kw_status st = kw_validate_name(name, "name", out->name, err);
    if (st != KW_OK)
        return st;
    out->created_at = kw_service_now(svc);
    out->last_used_at = KW_TIME_NONE;
    kw_audit au = kw_service_audit(out->created_at, actor, "root_key.create");
    for (int attempt = 0; attempt < 2; attempt++) {
        uint8_t hash[KW_HASH_BYTES];
        uint32_t version = kw_service_mint(svc, KW_ROOT_ENVIRONMENT, secret, out->masked, hash);
        kw_id_new("rk", out->id);
        st = svc->store->ops->root_key_insert(svc->store, out, hash, version, &au);
        if (st != KW_ERR_CONFLICT)
            break;
    }
    if (st == KW_OK)
        return KW_OK;
    sodium_memzero(secret, KW_KEY_BUFSZ);
    return kw_service_store_error(st, "creating the root key", err);
}

kw_status kw_service_root_key_list(kw_service *svc, kw_root_key_list *out, kw_error *err)
{
    kw_status st = svc->store->ops->root_key_list(svc->store, out);
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "listing root keys", err);
}

kw_status kw_service_root_key_delete(kw_service *svc, const char *actor, const char *id,
                                     kw_error *err)
{
    kw_status st = kw_validate_id(id, "rk", "root key id", err);
    if (st != KW_OK)
        return st;
    kw_audit au = kw_service_audit(kw_service_now(svc), actor, "root_key.delete");
    st = svc->store->ops->root_key_delete(svc->store, id, &au);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, st, "Root key not found.");
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "deleting the root key", err);
}

kw_status kw_service_root_key_authenticate(kw_service *svc, const char *key, size_t len,
                                           kw_root_key *out, kw_error *err)
{
    memset(out, 0, sizeof *out);
    kw_keyfmt_parts parts;
    if (!kw_keyfmt_parse(key, len, svc->prefix, &parts) ||
        parts.environment_len != strlen(KW_ROOT_ENVIRONMENT) ||
        memcmp(parts.environment, KW_ROOT_ENVIRONMENT, parts.environment_len) != 0)
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "A valid root key is required.");
    kw_status st = KW_ERR_NOT_FOUND;
    for (size_t i = 0; i < kw_pepper_count(svc->pepper) && st == KW_ERR_NOT_FOUND; i++) {
        uint8_t hash[KW_HASH_BYTES];
        kw_pepper_hash(svc->pepper, i, key, len, hash);
        st = svc->store->ops->root_key_find(svc->store, hash, kw_pepper_version(svc->pepper, i),
                                            out);
    }
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "A valid root key is required.");
    if (st != KW_OK)
        return kw_service_store_error(st, "checking the root key", err);
    kw_lastused_note(svc->lastused, out->id, kw_service_now(svc));
    return KW_OK;
}

kw_status kw_service_user_add(kw_service *svc, const char *actor, const char *account_id,
                              const char *email, const char *password, size_t len, kw_user *out,
                              kw_error *err)
{
    memset(out, 0, sizeof *out);
    kw_account acc;
    kw_status st = kw_validate_email(email, out->email, err);
    if (st != KW_OK)
        return st;
    if (len < KW_PASSWORD_MIN || len > KW_PASSWORD_MAX || memchr(password, '\0', len))
        return kw_error_set(err, KW_ERR_INVALID,
                            "password must be %d to %d characters long, without NUL bytes.",
                            KW_PASSWORD_MIN, KW_PASSWORD_MAX);
    st = kw_service_account_get(svc, account_id, &acc, err);
    if (st != KW_OK)
        return st;
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        return kw_error_set(err, KW_ERR_INTERNAL, "out of memory while hashing the password.");
    kw_id_new("usr", out->id);
    snprintf(out->account_id, sizeof out->account_id, "%s", account_id);
    out->created_at = kw_service_now(svc);
    kw_audit au = kw_service_audit(out->created_at, actor, "user.add");
    st = svc->store->ops->user_insert(svc->store, out, hash, &au);
    sodium_memzero(hash, sizeof hash);
    if (st == KW_ERR_CONFLICT)
        return kw_error_set(err, st, "A user with that email already exists.");
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "adding the user", err);
}

/* A stand-in hash so that an unknown email costs as much as a wrong
 * password: the answer's timing does not tell which one was wrong. */
static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void on_make_dummy(void)
{
    if (crypto_pwhash_str(dummy_hash, "keyward-dummy-password", 22,
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        dummy_hash[0] = '\0';
}

kw_status kw_service_user_login(kw_service *svc, const char *email, const char *password,
                                size_t len, kw_user *out, kw_error *err)
{
    memset(out, 0, sizeof *out);
    char normalized[KW_EMAIL_BUFSZ];
    char stored[crypto_pwhash_STRBYTES] = {0};
    kw_status st = kw_validate_email(email, normalized, NULL);
    if (st == KW_OK && len <= KW_PASSWORD_MAX)
        st =
            svc->store->ops->user_find_by_email(svc->store, normalized, out, stored, sizeof stored);
    else
        st = KW_ERR_NOT_FOUND;
    if (st != KW_OK && st != KW_ERR_NOT_FOUND)
        return kw_service_store_error(st, "signing in", err);
    pthread_once(&dummy_once, on_make_dummy);
    const char *against = st == KW_OK ? stored : dummy_hash;
    bool ok = crypto_pwhash_str_verify(against, password, len) == 0 && st == KW_OK;
    sodium_memzero(stored, sizeof stored);
    if (!ok) {
        memset(out, 0, sizeof *out);
        return kw_error_set(err, KW_ERR_UNAUTHORIZED, "The email or password is incorrect.");
    }
    return KW_OK;
}

void kw_service_generate_password(char out[KW_GENERATED_PASSWORD_LEN + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (size_t i = 0; i < KW_GENERATED_PASSWORD_LEN; i++)
        out[i] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    out[KW_GENERATED_PASSWORD_LEN] = '\0';
}

kw_status kw_service_bootstrap(kw_service *svc, kw_account *account, kw_user *user,
                               char password[KW_GENERATED_PASSWORD_LEN + 1], kw_root_key *root_key,
                               char root_secret[KW_KEY_BUFSZ], kw_error *err)
{
    memset(account, 0, sizeof *account);
    memset(user, 0, sizeof *user);
    memset(root_key, 0, sizeof *root_key);
    int64_t now = kw_service_now(svc);
    kw_id_new("acc", account->id);
    snprintf(account->name, sizeof account->name, "Default");
    account->created_at = now;
    account->key_limit = svc->max_keys;
    kw_id_new("usr", user->id);
    snprintf(user->account_id, sizeof user->account_id, "%s", account->id);
    snprintf(user->email, sizeof user->email, "admin@localhost");
    user->created_at = now;
    kw_id_new("rk", root_key->id);
    snprintf(root_key->name, sizeof root_key->name, "first run");
    root_key->created_at = now;
    root_key->last_used_at = KW_TIME_NONE;

    kw_service_generate_password(password);
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, password, KW_GENERATED_PASSWORD_LEN,
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        sodium_memzero(password, KW_GENERATED_PASSWORD_LEN + 1);
        return kw_error_set(err, KW_ERR_INTERNAL, "Out of memory while hashing the password.");
    }
    uint8_t rk_hash[KW_HASH_BYTES];
    uint32_t version =
        kw_service_mint(svc, KW_ROOT_ENVIRONMENT, root_secret, root_key->masked, rk_hash);
    kw_audit au = kw_service_audit(now, "first-run", "bootstrap");
    kw_status st = svc->store->ops->bootstrap(svc->store, account, user, hash, root_key, rk_hash,
                                              version, &au);
    sodium_memzero(hash, sizeof hash);
    if (st == KW_OK)
        return KW_OK;
    sodium_memzero(password, KW_GENERATED_PASSWORD_LEN + 1);
    sodium_memzero(root_secret, KW_KEY_BUFSZ);
    if (st == KW_ERR_CONFLICT)
        return kw_error_set(err, st, "The store is not empty.");
    return kw_service_store_error(st, "preparing the first run", err);
}

kw_status kw_service_key_count_active(kw_service *svc, int64_t *count, kw_error *err)
{
    *count = 0;
    kw_status st = svc->store->ops->key_count_active(svc->store, kw_service_now(svc), count);
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "counting keys", err);
}

kw_status kw_service_audit_list(kw_service *svc, const char *account_id, size_t limit,
                                kw_audit_list *out, kw_error *err)
{
    memset(out, 0, sizeof *out);
    if (account_id) {
        kw_status st = kw_validate_id(account_id, "acc", "account id", err);
        if (st != KW_OK)
            return st;
    }
    if (limit == 0 || limit > 10000)
        return kw_error_set(err, KW_ERR_INVALID, "limit must be between 1 and 10000.");
    kw_status st = svc->store->ops->audit_list(svc->store, account_id, limit, out);
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "reading the audit log", err);
}

kw_status kw_service_audit_page(kw_service *svc, const char *account_id, int64_t before,
                                size_t limit, kw_audit_list *out, int64_t *next, kw_error *err)
{
    memset(out, 0, sizeof *out);
    *next = 0;
    kw_status st = kw_validate_id(account_id, "acc", "account id", err);
    if (st != KW_OK)
        return st;
    if (before < 0)
        return kw_error_set(err, KW_ERR_INVALID, "before must be a position (0: the newest).");
    if (limit == 0 || limit > KW_AUDIT_PAGE_MAX)
        return kw_error_set(err, KW_ERR_INVALID, "limit must be between 1 and %d.",
                            KW_AUDIT_PAGE_MAX);
    /* An account that does not exist has no log to show: 404, like its keys. */
    kw_account account;
    st = svc->store->ops->account_get(svc->store, account_id, &account);
    if (st == KW_ERR_NOT_FOUND)
        return kw_error_set(err, KW_ERR_NOT_FOUND, "Account not found.");
    if (st != KW_OK)
        return kw_service_store_error(st, "reading the account", err);
    /* One more than asked tells whether anything older remains. */
    st = svc->store->ops->audit_page(svc->store, account_id, before, limit + 1, out);
    if (st != KW_OK)
        return kw_service_store_error(st, "reading the audit log", err);
    if (out->count > limit) {
        out->count = limit;
        *next = out->items[limit - 1].seq;
    }
    return KW_OK;
}

kw_status kw_service_audit_prune(kw_service *svc, int64_t before, int64_t *removed, kw_error *err)
{
    *removed = 0;
    kw_status st = svc->store->ops->audit_prune(svc->store, before, removed);
    return st == KW_OK ? KW_OK : kw_service_store_error(st, "pruning the audit log", err);
}
