/*
 * fuzz_http - libFuzzer target over keyward's whole request path: raw
 * bytes go through a socketpair into the real server (kw_http_start on a
 * temporary SQLite store), so they pass the gate's head check, libmicrohttpd,
 * the per-request checks, routing, body limits, JSON decoding and the
 * handlers, exactly as from a network client.
 *
 * Each input is one connection's bytes: written whole, then the write side
 * is shut, then the harness reads until the server closes. Placeholders in
 * the input stand for real credentials of the store, so that the corpus
 * reaches the authorised routes: @ROOT@ (a root key), @KEY@ (a live API
 * key), @ACC@ (its account id), @KID@ (its key id).
 *
 * Invariants checked besides crashes, leaks and undefined behaviour (the
 * sanitizers): every answer is a well-formed HTTP/1.1 response; an answer
 * to anything but the console's pages and documents is JSON; the server
 * always closes the connection once the input has ended; no answer ever
 * holds the root key.
 *
 * Run with `make fuzz` (scripts/fuzz.sh).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "core/service.h"
#include "http/http.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kw_service *svc;
static kw_http_server *srv;
static char root_key[KW_KEY_BUFSZ];
static char api_key[KW_KEY_BUFSZ];
static char account_id[64];
static char key_id[64];
static char data_dir[64];
static char *input;    /* the input with placeholders replaced */
static char *response; /* what the server answered */
#define INPUT_CAP    (1 << 16)
#define RESPONSE_CAP (1 << 20)

static void die(const char *what, const kw_error *err)
{
    fprintf(stderr, "fuzz_http: %s: %s\n", what, err ? err->message : "failed");
    abort();
}

/* At exit: stops the server and removes the store. */
static void finish(void)
{
    kw_http_stop(srv);
    srv = NULL;
    if (svc)
        kw_service_close(svc);
    svc = NULL;
    static const char *const files[] = {"keyward.db", "keyward.db-wal", "keyward.db-shm", "pepper"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[sizeof data_dir + 32];
        snprintf(path, sizeof path, "%s/%s", data_dir, files[i]);
        unlink(path);
    }
    rmdir(data_dir);
    free(input);
    free(response);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* In memory when it can be: the store commits often, and disks are slow. */
    snprintf(data_dir, sizeof data_dir, "%s/kw-fuzz-http-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(data_dir))
        die("mkdtemp", NULL);
    atexit(finish);
    kw_config cfg;
    kw_config_defaults(&cfg);
    cfg.data_dir = data_dir;
    kw_error err;
    if (kw_service_open(&cfg, &svc, &err) != KW_OK)
        die("opening the store", &err);
    kw_account acc;
    kw_user user;
    kw_root_key rk;
    char password[KW_GENERATED_PASSWORD_LEN + 1];
    if (kw_service_bootstrap(svc, &acc, &user, password, &rk, root_key, &err) != KW_OK)
        die("first run", &err);
    snprintf(account_id, sizeof account_id, "%s", acc.id);
    kw_key key;
    if (kw_service_key_create(svc, "fuzz", acc.id, "fuzz", NULL, KW_TIME_NONE, &key, api_key,
                              &err) != KW_OK)
        die("creating a key", &err);
    snprintf(key_id, sizeof key_id, "%s", key.id);
    kw_http_options o;
    kw_http_options_defaults(&o);
    o.listen = "127.0.0.1:0";
    o.threads = 2;
    o.access_log_fd = -1;
    o.request_head_timeout_s = 5;
    o.idle_timeout_s = 5; /* so every wait of the server's own ends within 5 s */
    if (kw_http_start(svc, &o, &srv, &err) != KW_OK)
        die("starting the server", &err);
    input = malloc(INPUT_CAP);
    response = malloc(RESPONSE_CAP + 1);
    if (!input || !response)
        die("out of memory", NULL);
    return 0;
}

/* Copies data into input, replacing the placeholders; returns the length. */
static size_t expand(const uint8_t *data, size_t size)
{
    static const struct {
        const char *name;
        const char *value;
    } subst[] = {
        {"@ROOT@", root_key}, {"@KEY@", api_key}, {"@ACC@", account_id}, {"@KID@", key_id}};
    size_t n = 0;
    for (size_t i = 0; i < size && n < INPUT_CAP - 128;) {
        bool replaced = false;
        for (size_t k = 0; k < sizeof subst / sizeof subst[0]; k++) {
            size_t len = strlen(subst[k].name);
            if (size - i >= len && memcmp(data + i, subst[k].name, len) == 0) {
                size_t vlen = strlen(subst[k].value);
                memcpy(input + n, subst[k].value, vlen);
                n += vlen;
                i += len;
                replaced = true;
                break;
            }
        }
        if (!replaced)
            input[n++] = (char)data[i++];
    }
    return n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes the input and reads the answer until the server closes; returns its length. */
static size_t converse(int fd, const char *in, size_t len)
{
    size_t sent = 0, got = 0;
    bool shut = false;
    /* Far beyond the server's own 5 s deadlines: only a real hang (or a
     * starved machine) gets here. */
    uint64_t deadline = now_ms() + 60000;
    while (now_ms() < deadline) {
        if (sent == len && !shut) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        struct pollfd p = {fd, (short)(POLLIN | (shut ? 0 : POLLOUT)), 0};
        if (poll(&p, 1, 1000) < 0) {
            if (errno == EINTR) /* libFuzzer's timer signal */
                continue;
            break;
        }
        if (p.revents & POLLOUT) {
            ssize_t w = send(fd, in + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0)
                sent += (size_t)w;
            else
                sent = len; /* the server closed: stop writing */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, response + got, RESPONSE_CAP - got, MSG_DONTWAIT);
            if (r == 0 || (r < 0 && got == RESPONSE_CAP))
                return got;
            if (r > 0)
                got += (size_t)r;
            else if (p.revents & (POLLHUP | POLLERR))
                return got;
        }
    }
    fprintf(stderr, "fuzz_http: the server did not close the connection within 60 s\n");
    if (getenv("FUZZ_HANG_WAIT")) { /* leave the process for a debugger to look at */
        fprintf(stderr, "fuzz_http: sent %zu of %zu bytes, got %zu; pid %d waits\n", sent, len, got,
                (int)getpid());
        for (;;)
            pause();
    }
    abort();
}

/* Every response in out[0..n) is well-formed; JSON where it must be. */
static void check_responses(const char *out, size_t n, bool chunked)
{
    response[n] = '\0';
    if (memmem(out, n, root_key, strlen(root_key))) {
        fprintf(stderr, "fuzz_http: an answer holds the root key\n");
        abort();
    }
    size_t at = 0;
    while (at < n) {
        const char *r = out + at;
        const char *end = memmem(r, n - at, "\r\n\r\n", 4);
        if (strncmp(r, "HTTP/1.1 ", 9) != 0 || !end)
            break; /* cut off by the connection's end: nothing more to check */
        unsigned status = (unsigned)strtoul(r + 9, NULL, 10);
        if (status < 100 || status > 599)
            abort();
        const char *cl = memmem(r, (size_t)(end - r), "Content-Length: ", 16);
        size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
        const char *ct = memmem(r, (size_t)(end - r), "Content-Type: ", 14);
        bool json = ct && strncmp(ct + 14, "application/json", 16) == 0;
        /*
         * An error answer is JSON. libmicrohttpd answers a few heads it
         * cannot parse itself, but never the first one of a connection (the
         * gate reads it), and its chunk decoder answers malformed chunks.
         */
        if (status >= 400 && !json && at == 0 && !chunked) {
            fprintf(stderr, "fuzz_http: a %u answer that is not JSON\n", status);
            abort();
        }
        at = (size_t)(end - out) + 4 + body;
    }
}

/* True when word (lower case) occurs in the n bytes at s, in any case. */
static bool contains_nocase(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);
    for (size_t i = 0; i + w <= n; i++) {
        size_t k = 0;
        while (k < w && (s[i + k] | 0x20) == word[k])
            k++;
        if (k == w)
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = expand(data, size);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
        abort();
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    peer.sin_addr.s_addr = htonl(0x7f000001);
    kw_http_add_connection(srv, pair[0], (struct sockaddr *)&peer, sizeof peer);
    size_t n = converse(pair[1], input, len);
    close(pair[1]);
    check_responses(response, n, contains_nocase(input, len, "chunked"));
    sodium_memzero(input, len);
    return 0;
}
