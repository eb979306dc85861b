/*
 * config.c - where the CLI's settings come from: a flag beats an
 * environment variable, which beats the config file, which beats the
 * default. The pepper is the exception: it comes only from KEYWARD_PEPPER,
 * because a secret never goes through argv or a world-readable file.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cli/cli.h"

static const struct setting {
    const char *key;  /* name in the config file; NULL: not settable there */
    const char *env;  /* environment variable */
    const char *flag; /* command-line option; NULL: none */
    long min, max;    /* range of an integer setting; max 0: a string */
} settings[KW_CLI_SETTING_COUNT] = {
    [KW_CLI_DATA_DIR] = {"data_dir", "KEYWARD_DATA_DIR", "--data-dir", 0, 0},
    [KW_CLI_STORE] = {"store", "KEYWARD_STORE", "--store", 0, 0},
    [KW_CLI_CONFIG] = {NULL, "KEYWARD_CONFIG", "--config", 0, 0},
    [KW_CLI_PEPPER_FILE] = {"pepper_file", "KEYWARD_PEPPER_FILE", "--pepper-file", 0, 0},
    [KW_CLI_KEY_PREFIX] = {"key_prefix", "KEYWARD_KEY_PREFIX", "--key-prefix", 0, 0},
    [KW_CLI_MAX_KEYS] = {"max_keys_per_account", "KEYWARD_MAX_KEYS_PER_ACCOUNT",
                         "--max-keys-per-account", 1, 100000},
    [KW_CLI_LAST_USED_INTERVAL] = {"last_used_interval_ms", "KEYWARD_LAST_USED_INTERVAL_MS", NULL,
                                   10, 3600000},
    [KW_CLI_VERIFY_CACHE] = {"verify_cache_entries", "KEYWARD_VERIFY_CACHE_ENTRIES", NULL, 0,
                             67108864},
    [KW_CLI_NODE_LEASE] = {"node_lease_ms", "KEYWARD_NODE_LEASE_MS", NULL, 100, 60000},
    [KW_CLI_SESSION_IDLE] = {"session_idle_s", "KEYWARD_SESSION_IDLE_S", NULL, 60, 604800},
    [KW_CLI_SESSION_ABSOLUTE] = {"session_absolute_s", "KEYWARD_SESSION_ABSOLUTE_S", NULL, 60,
                                 2592000},
    [KW_CLI_AUDIT_RETENTION] = {"audit_retention_days", "KEYWARD_AUDIT_RETENTION_DAYS", NULL, 0,
                                KW_AUDIT_RETENTION_MAX_DAYS},
    [KW_CLI_LISTEN] = {"listen", "KEYWARD_LISTEN", "--listen", 0, 0},
    [KW_CLI_THREADS] = {"threads", "KEYWARD_THREADS", "--threads", 1, 256},
    [KW_CLI_MAX_BODY_BYTES] = {"max_body_bytes", "KEYWARD_MAX_BODY_BYTES", NULL, 1024, 16777216},
    [KW_CLI_MAX_HEADER_BYTES] = {"max_header_bytes", "KEYWARD_MAX_HEADER_BYTES", NULL, 1024,
                                 1048576},
    [KW_CLI_MAX_CONNECTIONS] = {"max_connections", "KEYWARD_MAX_CONNECTIONS", NULL, 1, 1000000},
    [KW_CLI_MAX_CONNECTIONS_PER_IP] = {"max_connections_per_ip", "KEYWARD_MAX_CONNECTIONS_PER_IP",
                                       NULL, 1, 1000000},
    [KW_CLI_IDLE_TIMEOUT] = {"idle_timeout_s", "KEYWARD_IDLE_TIMEOUT_S", NULL, 1, 86400},
    [KW_CLI_REQUEST_HEAD_TIMEOUT] = {"request_head_timeout_s", "KEYWARD_REQUEST_HEAD_TIMEOUT_S",
                                     NULL, 1, 3600},
    [KW_CLI_WAITING_PER_IP] = {"waiting_connections_per_ip", "KEYWARD_WAITING_CONNECTIONS_PER_IP",
                               NULL, 1, 1000000},
    [KW_CLI_ACCESS_LOG] = {"access_log", "KEYWARD_ACCESS_LOG", NULL, 0, 0},
    [KW_CLI_SECURE_COOKIES] = {"secure_cookies", "KEYWARD_SECURE_COOKIES", NULL, 0, 0},
    [KW_CLI_PUBLIC_URL] = {"public_url", "KEYWARD_PUBLIC_URL", NULL, 0, 0},
    [KW_CLI_PASSWORD_CHECK_THREADS] = {"password_check_threads", "KEYWARD_PASSWORD_CHECK_THREADS",
                                       NULL, 1, 64},
    [KW_CLI_PASSWORD_CHECK_QUEUE] = {"password_check_queue", "KEYWARD_PASSWORD_CHECK_QUEUE", NULL,
                                     1, 65536},
    [KW_CLI_PASSWORD_CHECKS_PER_S] = {"password_checks_per_s", "KEYWARD_PASSWORD_CHECKS_PER_S",
                                      NULL, 0, 10000},
    [KW_CLI_TRUSTED_PROXIES] = {"trusted_proxies", "KEYWARD_TRUSTED_PROXIES", NULL, 0, 0},
};

int kw_cli_init(kw_cli *cli)
{
    int rc = KW_CLI_EXIT_OK;
    memset(cli, 0, sizeof *cli);
    kw_config_defaults(&cli->cfg);
    char *p = getenv("KEYWARD_PEPPER");
    if (p && *p) {
        size_t len = strlen(p);
        cli->pepper = malloc(len + 1);
        if (cli->pepper) {
            memcpy(cli->pepper, p, len + 1);
        } else {
            /* Never fall back to the pepper file: it would hash differently. */
            kw_cli_errorf("out of memory reading KEYWARD_PEPPER");
            rc = KW_CLI_EXIT_FAIL;
        }
        /* Wipe the original too: it would otherwise stay readable in
         * /proc/PID/environ for as long as the process runs. */
        sodium_memzero(p, len);
    }
    unsetenv("KEYWARD_PEPPER");
    return rc;
}

static void drop_pepper(kw_cli *cli)
{
    if (cli->pepper) {
        sodium_memzero(cli->pepper, strlen(cli->pepper));
        free(cli->pepper);
        cli->pepper = NULL;
    }
}

void kw_cli_cleanup(kw_cli *cli)
{
    drop_pepper(cli);
    for (size_t i = 0; i < KW_CLI_SETTING_COUNT; i++) {
        free(cli->file[i]);
        cli->file[i] = NULL;
    }
}

bool kw_cli_parse_int(const char *s, long min, long max, long *out)
{
    /* strtol alone would accept leading white space and a '+'. */
    if (!s || !(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1]))))
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/*
 * Handles one line of the config file: stores a known key's value in
 * cli->file. Returns NULL, or a static description of what is wrong.
 */
static const char *config_line(kw_cli *cli, char *line)
{
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
        return NULL;
    char *eq = strchr(s, '=');
    if (!eq)
        return "expected 'key = value'";
    *eq = '\0';
    const char *key = trim(s);
    const char *value = trim(eq + 1);
    for (size_t i = 0; i < KW_CLI_SETTING_COUNT; i++) {
        const struct setting *st = &settings[i];
        if (!st->key || strcmp(key, st->key) != 0)
            continue;
        long n;
        if (*value == '\0')
            return "missing value";
        if (st->max && !kw_cli_parse_int(value, st->min, st->max, &n))
            return "not an integer in the allowed range";
        free(cli->file[i]);
        cli->file[i] = strdup(value);
        return cli->file[i] ? NULL : "out of memory";
    }
    return "unknown setting";
}

/* Reads the config file at path into cli->file. Returns 0, or 2 after printing why. */
static int read_config(kw_cli *cli, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        kw_cli_errorf("cannot read config file %s: %s", path, strerror(errno));
        return KW_CLI_EXIT_USAGE;
    }
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = KW_CLI_EXIT_OK;
    while (rc == KW_CLI_EXIT_OK && getline(&line, &cap, f) >= 0) {
        lineno++;
        const char *problem = config_line(cli, line);
        if (problem) {
            kw_cli_errorf("config file %s, line %ld: %s", path, lineno, problem);
            rc = KW_CLI_EXIT_USAGE;
        }
    }
    if (rc == KW_CLI_EXIT_OK && ferror(f)) {
        kw_cli_errorf("cannot read config file %s", path);
        rc = KW_CLI_EXIT_USAGE;
    }
    free(line);
    fclose(f);
    return rc;
}

/* The value of setting i and, for messages, where it came from; NULL if unset. */
static const char *lookup(const kw_cli *cli, size_t i, const char **from)
{
    const char *env = getenv(settings[i].env);
    if (cli->flag[i]) {
        *from = settings[i].flag;
        return cli->flag[i];
    }
    if (env && *env) {
        *from = settings[i].env;
        return env;
    }
    *from = "the config file";
    return cli->file[i];
}

int kw_cli_resolve(kw_cli *cli)
{
    const char *from;
    /* Not lookup(): the config file cannot name another config file. */
    const char *config = cli->flag[KW_CLI_CONFIG];
    const char *env = getenv(settings[KW_CLI_CONFIG].env);
    if (!config && env && *env)
        config = env;
    if (config) {
        int rc = read_config(cli, config);
        if (rc != KW_CLI_EXIT_OK)
            return rc;
    }
    kw_config *cfg = &cli->cfg;
    kw_config_defaults(cfg);
    const char **strings[KW_CLI_SETTING_COUNT] = {
        [KW_CLI_DATA_DIR] = &cfg->data_dir,
        [KW_CLI_STORE] = &cfg->store_url,
        [KW_CLI_PEPPER_FILE] = &cfg->pepper_file,
        [KW_CLI_KEY_PREFIX] = &cfg->key_prefix,
    };
    int *ints[KW_CLI_SETTING_COUNT] = {
        [KW_CLI_MAX_KEYS] = &cfg->max_keys_per_account,
        [KW_CLI_LAST_USED_INTERVAL] = &cfg->last_used_interval_ms,
        [KW_CLI_VERIFY_CACHE] = &cfg->verify_cache_entries,
        [KW_CLI_NODE_LEASE] = &cfg->node_lease_ms,
        [KW_CLI_SESSION_IDLE] = &cfg->session_idle_s,
        [KW_CLI_SESSION_ABSOLUTE] = &cfg->session_absolute_s,
        [KW_CLI_AUDIT_RETENTION] = &cfg->audit_retention_days,
    };
    for (size_t i = 0; i < KW_CLI_SETTING_COUNT; i++) {
        const char *value = lookup(cli, i, &from);
        long n = 0;
        if (!value)
            continue;
        if (settings[i].max && !kw_cli_parse_int(value, settings[i].min, settings[i].max, &n)) {
            kw_cli_errorf("%s must be an integer from %ld to %ld", from, settings[i].min,
                          settings[i].max);
            return KW_CLI_EXIT_USAGE;
        }
        if (strings[i])
            *strings[i] = value;
        else if (ints[i])
            *ints[i] = (int)n;
    }
    cfg->pepper = cli->pepper;
    cfg->node = cli->node;
    return KW_CLI_EXIT_OK;
}

const char *kw_cli_setting_value(const kw_cli *cli, kw_cli_setting setting)
{
    const char *from;
    return lookup(cli, setting, &from);
}

int kw_cli_open(kw_cli *cli, kw_service **svc)
{
    *svc = NULL;
    int rc = kw_cli_resolve(cli);
    if (rc != KW_CLI_EXIT_OK) {
        drop_pepper(cli);
        return rc;
    }
    kw_error err;
    kw_status st = kw_service_open(&cli->cfg, svc, &err);
    /* The service holds the pepper in its own guarded memory from here on. */
    cli->cfg.pepper = NULL;
    drop_pepper(cli);
    if (st != KW_OK)
        return kw_cli_fail(&err);
    return KW_CLI_EXIT_OK;
}
