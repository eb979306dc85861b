/*
 * cmd_serve.c - `keyward serve`: runs the HTTP API until SIGTERM or SIGINT,
 * then stops gracefully (requests in flight finish, pending last-used
 * times are written).
 *
 * On an empty store the first start creates the account "Default", the
 * console user admin@localhost and a root key, and prints the password and
 * the root key on stdout, once. The access log goes to stderr, so the two
 * never share a stream.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"
#include "core/json.h"
#include "http/http.h"
#include "http/origin.h"

static char public_origin[512];

/* Fills o from the settings (already range-checked by kw_cli_open). Returns 0 or 2. */
static int options(const kw_cli *cli, kw_http_options *o)
{
    kw_http_options_defaults(o);
    const char *v;
    long n;
    if ((v = kw_cli_setting_value(cli, KW_CLI_LISTEN)))
        o->listen = v;
    struct {
        kw_cli_setting setting;
        unsigned *u;
        size_t *z;
    } ints[] = {
        {KW_CLI_THREADS, &o->threads, NULL},
        {KW_CLI_MAX_BODY_BYTES, NULL, &o->max_body_bytes},
        {KW_CLI_MAX_HEADER_BYTES, NULL, &o->max_header_bytes},
        {KW_CLI_MAX_CONNECTIONS, &o->max_connections, NULL},
        {KW_CLI_MAX_CONNECTIONS_PER_IP, &o->max_connections_per_ip, NULL},
        {KW_CLI_IDLE_TIMEOUT, &o->idle_timeout_s, NULL},
        {KW_CLI_REQUEST_HEAD_TIMEOUT, &o->request_head_timeout_s, NULL},
        {KW_CLI_WAITING_PER_IP, &o->waiting_per_ip, NULL},
        {KW_CLI_PASSWORD_CHECK_THREADS, &o->password_check_threads, NULL},
        {KW_CLI_PASSWORD_CHECK_QUEUE, &o->password_check_queue, NULL},
        {KW_CLI_PASSWORD_CHECKS_PER_S, &o->password_checks_per_s, NULL},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        v = kw_cli_setting_value(cli, ints[i].setting);
        if (!v || !kw_cli_parse_int(v, 0, 16777216, &n))
            continue;
        if (ints[i].u)
            *ints[i].u = (unsigned)n;
        else
            *ints[i].z = (size_t)n;
    }
    v = kw_cli_setting_value(cli, KW_CLI_SECURE_COOKIES);
    if (v && strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
        kw_cli_errorf("secure_cookies must be on or off");
        return KW_CLI_EXIT_USAGE;
    }
    o->secure_cookies = v && strcmp(v, "on") == 0;
    v = kw_cli_setting_value(cli, KW_CLI_PUBLIC_URL);
    if (v && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
        kw_cli_errorf("public_url must start with http:// or https://");
        return KW_CLI_EXIT_USAGE;
    }
    if (v && !kw_origin_url_ok(v)) {
        kw_cli_errorf("public_url must be http:// or https://, a host, maybe a port and a path");
        return KW_CLI_EXIT_USAGE;
    }
    if (v) {
        /* The origin is the URL without a trailing slash; https implies Secure cookies. */
        snprintf(public_origin, sizeof public_origin, "%s", v);
        size_t end = strlen(public_origin);
        while (end > 0 && public_origin[end - 1] == '/')
            public_origin[--end] = '\0';
        o->public_origin = public_origin;
        if (strncmp(v, "https://", 8) == 0)
            o->secure_cookies = true;
    }
    o->trusted_proxies = kw_cli_setting_value(cli, KW_CLI_TRUSTED_PROXIES);
    v = kw_cli_setting_value(cli, KW_CLI_ACCESS_LOG);
    if (v && strcmp(v, "off") == 0) {
        o->access_log_fd = -1;
    } else if (v && strcmp(v, "stderr") != 0) {
        kw_cli_errorf("access_log must be stderr or off");
        return KW_CLI_EXIT_USAGE;
    }
    return KW_CLI_EXIT_OK;
}

/* Prints what the first run created; the only time password and root key are shown. */
static int print_first_run(const kw_cli *cli, const char *url, const kw_account *acc,
                           const kw_user *user, const char *password, const kw_root_key *rk,
                           const char *secret)
{
    if (cli->json) {
        json_t *doc = json_pack("{s:s, s:o, s:o, s:s, s:o, s:s}", "console_url", url, "account",
                                kw_json_account(acc), "user", kw_json_user(user), "password",
                                password, "root_key", kw_json_root_key(rk), "secret", secret);
        int rc = doc ? kw_cli_print_json(doc) : KW_CLI_EXIT_FAIL;
        json_decref(doc);
        return rc;
    }
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "\nFirst run: created the account \"%s\" (%s), its console user and a "
                     "root key.\nThe password and the root key are shown only this once: store "
                     "them now.\n\n"
                     "  Console:   %s\n"
                     "  Email:     %s\n"
                     "  Password:  %s\n"
                     "  Root key:  %s   (Authorization: Bearer <root key>)\n",
                     acc->name, acc->id, url, user->email, password, secret);
    int rc = n > 0 && (size_t)n < sizeof text ? kw_cli_print_secret(text) : KW_CLI_EXIT_FAIL;
    sodium_memzero(text, sizeof text);
    return rc;
}

#define FIRST_RUN_TRIES 30 /* a second apart: rides out a database restarting */

/*
 * Bootstraps an empty store, retrying while the store is unavailable.
 * Returns 0 (also when the store was not empty) or 1.
 */
static int first_run(const kw_cli *cli, const kw_http_server *srv, kw_service *svc, const char *url)
{
    kw_account acc;
    kw_user user;
    kw_root_key rk;
    char password[KW_GENERATED_PASSWORD_LEN + 1];
    char secret[KW_KEY_BUFSZ];
    kw_error err;
    kw_status st = kw_service_bootstrap(svc, &acc, &user, password, &rk, secret, &err);
    for (int i = 1; st == KW_ERR_UNAVAILABLE && i < FIRST_RUN_TRIES; i++) {
        kw_http_event(srv, "waiting", "the store is unavailable; retrying the first-run check");
        sleep(1);
        st = kw_service_bootstrap(svc, &acc, &user, password, &rk, secret, &err);
    }
    if (st == KW_ERR_CONFLICT)
        return KW_CLI_EXIT_OK;
    if (st != KW_OK)
        return kw_cli_fail(&err);
    int rc = print_first_run(cli, url, &acc, &user, password, &rk, secret);
    sodium_memzero(password, sizeof password);
    sodium_memzero(secret, sizeof secret);
    return rc;
}

int kw_cli_serve(kw_cli *cli, int argc, char **argv)
{
    const kw_cli_opt opts[] = {
        {"listen", &cli->flag[KW_CLI_LISTEN], NULL, false},
        {"threads", &cli->flag[KW_CLI_THREADS], NULL, false},
        {NULL, NULL, NULL, false},
    };
    const kw_cli_spec spec = {
        .usage = "serve [--listen 127.0.0.1:8080] [--threads N] [--max-keys-per-account 25]",
        .help = "Runs the HTTP API and the web console until SIGTERM or SIGINT, then stops\n"
                "gracefully. On an empty store it first creates the account \"Default\", the\n"
                "console user admin@localhost and a root key, and prints them once.\n"
                "Port 0 picks a free port. One JSON access-log line per request goes to\n"
                "stderr. Limits: max_body_bytes (16384), max_header_bytes (8192),\n"
                "max_connections (4096), max_connections_per_ip (256), idle_timeout_s (30),\n"
                "request_head_timeout_s (10), waiting_connections_per_ip (16),\n"
                "access_log (stderr|off). Console: public_url (its origin), secure_cookies\n"
                "(on|off), session_idle_s (1800), session_absolute_s (43200). Sign-in:\n"
                "password_check_threads (1) and password_check_queue (16; past it, 503),\n"
                "trusted_proxies (CIDRs whose X-Forwarded-For or Forwarded names the client).\n"
                "All as config keys or KEYWARD_* variables.",
        .opts = opts,
    };
    /* Block the stop signals in every thread (the service's and the server's
     * inherit the mask); this thread waits for them with sigwait. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    kw_service *svc;
    /* This process answers verifications: it keeps every key in memory. */
    cli->node = true;
    int rc = kw_cli_begin(cli, &spec, argc, argv, &svc);
    if (rc != KW_CLI_RUN)
        return rc;
    kw_http_options o;
    rc = options(cli, &o);
    kw_http_server *srv = NULL;
    kw_error err;
    if (rc == KW_CLI_EXIT_OK && kw_http_start(svc, &o, &srv, &err) != KW_OK) {
        rc = kw_cli_fail(&err);
        if (err.status == KW_ERR_INVALID) /* a bad listen address is wrong usage */
            rc = KW_CLI_EXIT_USAGE;
    }
    char console[160];
    if (rc == KW_CLI_EXIT_OK) {
        snprintf(console, sizeof console, "%s/", kw_http_url(srv));
        rc = first_run(cli, srv, svc, console);
    }
    if (rc == KW_CLI_EXIT_OK) {
        kw_http_ready(srv);
        if (!cli->json)
            /* Ctrl-C means something only on a terminal, not under systemd. */
            printf("keyward is serving at %s%s\n", console,
                   isatty(STDIN_FILENO) ? " (stop it with Ctrl-C)" : "");
        fflush(stdout);
        int sig = 0;
        sigwait(&stop, &sig);
    }
    kw_http_stop(srv);
    kw_service_close(svc);
    return rc;
}
