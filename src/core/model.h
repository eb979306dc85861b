/*
 * model.h - the objects keyward manages, as plain fixed-size records.
 *
 * Records own no heap memory, so they can be copied and returned by value.
 * Lists own one heap array each and are released with their _free function.
 * No record ever holds a plaintext key or password.
 */
#ifndef KW_MODEL_H
#define KW_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KW_ID_BUFSZ     32  /* "key_" + 22 base62 characters + NUL, with room */
#define KW_NAME_MAX     100 /* characters (code points) after trimming */
#define KW_NAME_BUFSZ   (KW_NAME_MAX * 4 + 1)
#define KW_ENV_MAX      16
#define KW_ENV_BUFSZ    (KW_ENV_MAX + 1)
#define KW_MASKED_BUFSZ 48
#define KW_EMAIL_MAX    254
#define KW_EMAIL_BUFSZ  (KW_EMAIL_MAX + 1)
#define KW_ACTOR_BUFSZ  64
#define KW_HASH_BYTES   32
/* A key's metadata: a JSON object of at most 16 members, serialized
 * compactly in at most 1 KiB (core/validate.h checks it). */
#define KW_METADATA_MAX     1024
#define KW_METADATA_BUFSZ   (KW_METADATA_MAX + 1)
#define KW_METADATA_MEMBERS 16
#define KW_SOURCE_IP_BUFSZ  46 /* INET6_ADDRSTRLEN */
/* Keys expiring within this many seconds are "expiring" (kw_key_state). */
#define KW_EXPIRING_SOON_S (7 * 86400)

/*
 * Times are Unix seconds, UTC. An optional time that is absent (a key that
 * never expires, a key never used) is KW_TIME_NONE, never 0: the epoch is
 * a time like any other. KW_TIME_NONE lies outside every time keyward
 * parses or reads from its clock (core/timefmt.h: years 0000 to 9999), is
 * stored as NULL and shown as JSON null. Being the smallest value, a check
 * that forgot it would find a never-expiring key expired: it fails closed.
 */
#define KW_TIME_NONE INT64_MIN

typedef struct {
    char id[KW_ID_BUFSZ];
    char name[KW_NAME_BUFSZ];
    int64_t created_at;
    int key_limit;
} kw_account;

typedef struct {
    char id[KW_ID_BUFSZ];
    char account_id[KW_ID_BUFSZ];
    char name[KW_NAME_BUFSZ];
    char environment[KW_ENV_BUFSZ];
    char masked[KW_MASKED_BUFSZ];
    int64_t created_at;
    int64_t last_used_at;             /* KW_TIME_NONE: never used */
    int64_t expires_at;               /* KW_TIME_NONE: never expires */
    bool enabled;                     /* false: verification answers DISABLED */
    char rolled_from[KW_ID_BUFSZ];    /* the key this one replaced by a roll; "" none */
    char rolled_to[KW_ID_BUFSZ];      /* the key that replaced this one; "" none */
    char metadata[KW_METADATA_BUFSZ]; /* compact JSON object text; "" none */
} kw_key;

typedef struct {
    char id[KW_ID_BUFSZ];
    char name[KW_NAME_BUFSZ];
    char masked[KW_MASKED_BUFSZ];
    int64_t created_at;
    int64_t last_used_at; /* KW_TIME_NONE: never used */
} kw_root_key;

typedef struct {
    char id[KW_ID_BUFSZ];
    char account_id[KW_ID_BUFSZ];
    char email[KW_EMAIL_BUFSZ];
    int64_t created_at;
} kw_user;

/* A console session: who signed in, and when it ends. Never the token. */
typedef struct {
    kw_user user;
    int64_t created_at;
    int64_t last_seen_at;
    int64_t expires_at; /* the absolute end, whatever the activity */
} kw_session;

typedef struct {
    int64_t seq;
    int64_t at;
    char actor[KW_ACTOR_BUFSZ];
    char action[32];
    char account_id[KW_ID_BUFSZ];
    char key_id[KW_ID_BUFSZ];
    char key_name[KW_NAME_BUFSZ];
    char source_ip[KW_SOURCE_IP_BUFSZ]; /* "" when not known (the CLI) */
} kw_audit_entry;

/*
 * One pending last-used time: the newest verification of an id. The
 * service collects them (core/lastused.h) and the store writes them.
 */
typedef struct {
    char id[KW_ID_BUFSZ]; /* "key_…" or "rk_…" */
    int64_t at;
} kw_touch;

typedef struct {
    kw_account *items;
    size_t count;
} kw_account_list;

typedef struct {
    kw_key *items; /* newest first */
    size_t count;
    int active_count; /* keys that are not expired */
    int key_limit;
} kw_key_list;

typedef struct {
    kw_root_key *items;
    size_t count;
} kw_root_key_list;

typedef struct {
    kw_audit_entry *items; /* newest first */
    size_t count;
} kw_audit_list;

/* True when key k is unexpired at `now`: it never expires, or expires later.
 * A disabled key is active in this sense: it still occupies its slot. */
bool kw_key_active(const kw_key *k, int64_t now);

/* What the console and the key object's "status" show. */
typedef enum {
    KW_KEY_ACTIVE = 0,
    KW_KEY_EXPIRING, /* unexpired, and rolled (in its grace period) or expiring
                        within KW_EXPIRING_SOON_S */
    KW_KEY_EXPIRED,
    KW_KEY_DISABLED, /* disabled and unexpired */
} kw_key_state_code;

kw_key_state_code kw_key_state(const kw_key *k, int64_t now);
/* "active", "expiring", "expired", "disabled" */
const char *kw_key_state_name(kw_key_state_code state);

void kw_account_list_free(kw_account_list *list);
void kw_key_list_free(kw_key_list *list);
void kw_root_key_list_free(kw_root_key_list *list);
void kw_audit_list_free(kw_audit_list *list);

/* The outcome of verifying a key; the API's "code" values. */
typedef enum {
    KW_VERIFY_VALID = 0,
    KW_VERIFY_MALFORMED,
    KW_VERIFY_NOT_FOUND,
    KW_VERIFY_EXPIRED,
    KW_VERIFY_ENVIRONMENT_MISMATCH,
    KW_VERIFY_DISABLED,
} kw_verify_code;

typedef struct {
    kw_verify_code code;
    kw_key key; /* filled only when code is KW_VERIFY_VALID */
} kw_verify_result;

/* "VALID", "MALFORMED", ... */
const char *kw_verify_code_name(kw_verify_code code);

#endif
